"""``openesm3 convert SRC OUT``: official ``.pth`` weights -> our format (``model.safetensors`` + ``config.json``).

SRC is an official file, or a directory laid out like the official release (``data/weights/*.pth``). With a
file, OUT becomes the model directory. With a directory, every official file found (or only the one of
``--model-type``) is written to ``OUT/<model_type>/``, the layout :func:`openesm3.checkpoints.loading.resolve_weights`
looks for. ``--model-type auto`` recognises a file by its key names. Generic over the official key-map
registry: a network that registers its key map is convertible.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DTYPES = ("fp32", "bf16", "fp16")
DESCRIPTION = """Convert official ESM3 weights (.pth) to the OpenESM3 format (model.safetensors + config.json).

SRC is an official file, or a directory laid out like the official release (data/weights/*.pth). With a file,
OUT becomes the model directory. With a directory, every official file found (or only the one of
--model-type) is written to OUT/<model_type>/, where OpenESM3 looks for weights (pass OUT, or set
OPENESM3_WEIGHTS=OUT). --dtype bf16 halves the files and loads without any fp32 copy. A file whose checksums
(CRC-32) do not match, e.g. a damaged download, is refused."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert official ESM3 weight files to the OpenESM3 format",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, help="official .pth file, or a directory laid out like the release")
    parser.add_argument("out", help="output directory")  # text: pathlib would read ./- as -
    parser.add_argument(
        "--model-type", default="auto", help="auto (recognise by key names) or one of the registered networks"
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="fp32", help="dtype of the saved weights (bf16 halves size and memory)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="JSON file with the network's config fields, for official-format files that are not the release",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from openesm3.checkpoints.format import (
        CONFIG_FILE,
        WEIGHTS_FILE,
        config_from_dict,
        refuse_foreign_config,
        save_pretrained,
    )
    from openesm3.checkpoints.loading import load_official, model_directory_of
    from openesm3.checkpoints.official import (
        OFFICIAL_KEY_MAPS,
        OFFICIAL_WEIGHT_FILES,
        check_official_file_checksums,
        detect_model_type,
        load_official_state_dict,
        resolve_official_file,
    )
    from openesm3.cli.common import check_output_dir, refuse_stdout
    from openesm3.errors import OpenESM3Error, WeightsError

    refuse_stdout(args.out, "OUT", "convert writes a directory of weights")
    # --config is read and checked before any weight file is touched: checksumming the trunk takes minutes
    fields = None if args.config is None else _read_config_fields(args.config)
    out_dir = Path(args.out)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    known = sorted(OFFICIAL_KEY_MAPS)
    if args.model_type != "auto" and args.model_type not in OFFICIAL_KEY_MAPS:
        raise WeightsError(f"--model-type {args.model_type!r} is not convertible; choose auto or one of {known}")

    ours = model_directory_of(args.src)  # a model directory of ours, or SRC itself
    already = WeightsError(
        f"{ours}: already in the OpenESM3 format ({CONFIG_FILE} + {WEIGHTS_FILE}); load it as it is, nothing to convert"
    )
    if args.src.is_file() and ours != args.src:
        raise already
    jobs: list[tuple[Path, str | None, Path]] = []  # (file, model type or None = detect, output dir)
    if args.src.is_file():
        jobs.append((args.src, None if args.model_type == "auto" else args.model_type, out_dir))
    elif args.src.is_dir():
        types = known if args.model_type == "auto" else [args.model_type]
        not_found: OpenESM3Error | None = None
        for model_type in types:
            if model_type not in OFFICIAL_WEIGHT_FILES:
                continue
            try:
                file = resolve_official_file(args.src, model_type)
            except OpenESM3Error as exc:
                not_found = exc
                continue
            jobs.append((file, model_type, out_dir / model_type))
        if not jobs:
            if (ours / CONFIG_FILE).is_file() and (ours / WEIGHTS_FILE).is_file():
                raise already
            # a weights root of ours (convert's own output for a release): one model directory per network
            converted = [
                t for t in types if all((args.src / t / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE))
            ]
            if converted:
                raise WeightsError(
                    f"{args.src}: already holds OpenESM3-format weights ("
                    + ", ".join(f"{t}/" for t in converted)
                    + f"); give it as it is to --weights, or set OPENESM3_WEIGHTS={args.src}; nothing to convert"
                )
            if args.model_type != "auto" and not_found is not None:
                raise not_found
            names = ", ".join(OFFICIAL_WEIGHT_FILES[t] for t in known if t in OFFICIAL_WEIGHT_FILES)
            raise WeightsError(f"{args.src}: no official weight file found ({names}; looked in data/weights/ too)")
    else:
        raise WeightsError(f"{args.src}: no such file or directory")

    if fields is not None and len(jobs) > 1:  # each network would be built to the one config given
        raise WeightsError(
            f"{args.config}: --config is one network's config, but {args.src} holds {len(jobs)} official files ("
            + ", ".join(file.name for file, _, _ in jobs)
            + "): give --model-type NAME to convert only the network it describes"
        )
    if fields is not None:
        file, model_type, out = jobs[0]
        _check_config_fields(fields, args.config, model_type)  # a typo shows before any weight file is read
        if model_type is None:
            # Recognised by its key names now, not after the checksums (minutes for the 5.6 GB trunk): a zip archive
            # is memory-mapped, so this reads its names (the pickle record), not its tensors.
            try:
                state = load_official_state_dict(file)
            except OpenESM3Error:
                check_official_file_checksums(file)  # a damaged download is named as one
                raise
            model_type = detect_model_type(state, source=str(file))
            del state
            try:
                config_from_dict(model_type, fields, str(args.config))
            except WeightsError as exc:
                raise WeightsError(
                    f"{exc} ({file} holds {model_type} weights, recognised by their key names)"
                ) from None
            jobs[0] = (file, model_type, out)

    for _, _, out in jobs:  # every output checked before any network is converted (minutes each), not as it is
        check_output_dir(str(out), "OUT")
        refuse_foreign_config(out / CONFIG_FILE)
    for file, model_type, out in jobs:
        # torch.load skips the zip CRCs; a damaged file would be converted into one without any checksum.
        check_official_file_checksums(file)
        if model_type is None:
            model_type = detect_model_type(load_official_state_dict(file), source=str(file))
        config = None if fields is None else config_from_dict(model_type, fields, str(args.config))
        if dtype == torch.float16:  # bf16 has fp32's range; fp16 would turn larger weights into inf
            limit = torch.finfo(dtype).max
            for key, tensor in load_official_state_dict(file).items():
                if tensor.is_floating_point() and bool((tensor.abs() > limit).any()):
                    raise WeightsError(f"{file}: {key} holds values beyond fp16's range ({limit}); use --dtype bf16")
        model, config = load_official(file, model_type, dtype=dtype, config=config)
        save_pretrained(model, config, out, model_type=model_type)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{file} -> {out} ({model_type}, {n_params:,} parameters, {args.dtype})")
        del model
    return 0


def _read_config_fields(path: Path) -> dict[str, Any]:
    """The config fields of a ``--config`` JSON file: an object of fields, or one held under ``"config"`` (as in
    our ``config.json``)."""
    from openesm3.errors import WeightsError
    from openesm3.utils.text import read_text_file

    try:
        fields = json.loads(read_text_file(path, role="--config", error=WeightsError))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: unreadable config JSON ({exc})") from exc
    fields = fields.get("config", fields) if isinstance(fields, dict) else fields
    if not isinstance(fields, dict):
        raise WeightsError(
            f"{path}: the config must be a JSON object of config fields (or hold one under 'config'), "
            f"not {type(fields).__name__}"
        )
    return fields


def _check_config_fields(fields: dict[str, Any], path: Path, model_type: str | None) -> None:
    """Raise :class:`WeightsError` when ``fields`` cannot be the config of the one network to convert: for a known
    network, its own error; for a file still to be recognised (None), when they fit no convertible network."""
    from openesm3.checkpoints.format import config_from_dict
    from openesm3.checkpoints.official import OFFICIAL_KEY_MAPS
    from openesm3.errors import WeightsError

    if model_type is not None:
        config_from_dict(model_type, fields, str(path))
        return
    problems = []
    for candidate in sorted(OFFICIAL_KEY_MAPS):
        try:
            config_from_dict(candidate, fields, str(path))
            return
        except WeightsError as exc:
            problems.append(f"as {candidate}: {str(exc).removeprefix(f'{path}: ')}")
    raise WeightsError(
        f"{path}: not the config of any convertible network ({'; '.join(problems)}); "
        "--model-type names the network to check it against"
    )
