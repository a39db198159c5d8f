"""``openesm3 train-tokenizer``: train the structure VQ-VAE (stage 1 or 2) from a config file and overrides.

Example::

    openesm3 train-tokenizer --config configs/tokenizer_v2_stage1.toml data.path=runs/dev_chains
    openesm3 train-tokenizer --config configs/tokenizer_v2_stage2.toml init_from=runs/tokenizer_v2_stage1

The run resumes from its latest checkpoint when restarted with the same ``out_dir``. ``--export-only`` writes the
networks of the run's latest checkpoint (or of ``--checkpoint DIR``) to ``out_dir/export`` without training, e.g.
for a run that was stopped before its last step.
"""

from __future__ import annotations

import argparse
import sys
import warnings


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from openesm3.training.config import add_config_arguments

    parser = subparsers.add_parser(
        "train-tokenizer",
        help="train the structure tokenizer (VQ-VAE stage 1 or 2)",
        description="Train the structure tokenizer (paper A.1.7.3). Settings: a .toml/.json file, then KEY=VALUE "
        "overrides (e.g. stage=2 init_from=RUN max_steps=1000 data.path=DIR). See docs/tokenizer_training.md.",
    )
    add_config_arguments(parser)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--export-only", action="store_true", help="export the latest checkpoint of out_dir (no training)"
    )
    parser.add_argument("--checkpoint", default=None, help="with --export-only: this checkpoint directory instead")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (the same as progress=false)")
    parser.set_defaults(handler=run)


def _show_warning(message: Warning | str, *args: object, **kwargs: object) -> None:
    """A warning (e.g. resuming with changed settings) as one line, not Python's file:line plus source line."""
    print(f"openesm3 train-tokenizer: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from openesm3.cli.common import set_threads
    from openesm3.training.config import config_from_args
    from openesm3.training.tokenizer.config import TokenizerTrainConfig
    from openesm3.training.tokenizer.run import export_checkpoint, train_tokenizer

    set_threads(args.threads)
    config = config_from_args(TokenizerTrainConfig, args)
    if args.quiet:
        config = replace(config, progress=False)
    if args.checkpoint and not args.export_only:
        print("openesm3 train-tokenizer: error: --checkpoint goes with --export-only", file=sys.stderr)
        return 2
    if args.export_only:
        checkpoint, enc, dec = export_checkpoint(config, args.checkpoint or config.out_dir)
        print(f"exported {checkpoint}: encoder to {enc} and decoder to {dec}")
        return 0
    args.device = config.device  # the config's, for a --record (which resolves auto as for the other commands)
    out = train_tokenizer(config)
    r = out.result
    if r.train_loss is None:  # the last step always logs, so no step ran: the run had already reached max_steps
        print(f"already at step {r.step} (max_steps): nothing to train; checkpoint {r.checkpoint}")
    else:
        print(f"trained to step {r.step}; last train loss {r.train_loss}; checkpoint {r.checkpoint}")
    if r.valid:
        print("validation: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.valid.items())))
    if out.encoder_dir is not None:
        print(f"exported encoder to {out.encoder_dir} and decoder to {out.decoder_dir}")
    return 0
