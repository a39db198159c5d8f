"""``openesm3 train-tokenizer``: train the structure VQ-VAE (stage 1 or 2) from a config file and overrides.

Example::

    openesm3 train-tokenizer --config configs/tokenizer_v2_stage1.toml data.path=runs/dev_chains
    openesm3 train-tokenizer --config configs/tokenizer_v2_stage2.toml init_from=runs/tokenizer_v2_stage1

The run resumes from its latest checkpoint when restarted with the same ``out_dir``.
"""

from __future__ import annotations

import argparse


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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from openesm3.training.config import config_from_args
    from openesm3.training.tokenizer.config import TokenizerTrainConfig
    from openesm3.training.tokenizer.run import train_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(TokenizerTrainConfig, args)
    out = train_tokenizer(config)
    r = out.result
    print(f"trained to step {r.step}; last train loss {r.train_loss}; checkpoint {r.checkpoint}")
    if r.valid:
        print("validation: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.valid.items())))
    if out.encoder_dir is not None:
        print(f"exported encoder to {out.encoder_dir} and decoder to {out.decoder_dir}")
    return 0
