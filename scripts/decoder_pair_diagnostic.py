"""How much of the chain's pair structure a trained tokenizer decoder has learned, by sequence separation.

Besides the pair head's cross-entropies, the table gives the mean absolute error of the decoded CA-CA distances:
where the decoded backbone is right (near pairs) and where it is not (far pairs).

For proteins of a split, encode each structure with the tokenizer's encoder (the user-facing path), decode the
tokens with pair logits, and report the cross-entropy of the decoder's distogram and binned-direction logits against
the true structure, averaged within bins of sequence separation |i - j|. A decoder that knows which residues are
chain neighbours predicts the |i - j| = 1 pairs almost exactly; a decoder that has not learned positions stays near
the uninformed values (binned directions: ln 16 = 2.77 at every separation).

    python scripts/decoder_pair_diagnostic.py --data runs/dev_chains --split valid --limit 20 [--weights DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.cli.common import one_line_errors
from openesm3.generation.structure_tokens import encode_structure
from openesm3.layers.structure_heads import PairwiseHead
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.training.data import ProteinDataset, ProteinRecord
from openesm3.training.tokenizer import losses as L
from openesm3.training.tokenizer.evaluate import record_to_chain
from openesm3.utils.atomic import atomic_write_json

SEPARATION_BINS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 64), (65, 100_000))


@torch.no_grad()
def pair_cross_entropies(
    encoder: StructureEncoder, decoder: StructureDecoder, record: ProteinRecord
) -> dict[str, list[float]] | None:
    """Mean distogram / direction cross-entropy per separation bin for one single-chain record (None if the record
    has no complete backbone)."""
    backbone_mask = torch.from_numpy(record.atom37_mask[:, :3].all(-1))
    if int(backbone_mask.sum()) < 3 or not bool(backbone_mask.all()):
        return None  # keep the pair bookkeeping simple: only chains with every backbone atom
    tokens = torch.from_numpy(encode_structure(record_to_chain(record), encoder, max_length=None).tokens)[None]
    out = decoder(tokens, return_pair_logits=True)
    assert out.pair_logits is not None
    n = record.length
    distogram, directions, _ = PairwiseHead.split(out.pair_logits[:, 1 : n + 1, 1 : n + 1].float())
    true = torch.from_numpy(record.atom37[None, :, :3]).float()
    d_target = L.distogram_targets(true)
    dist_ce = F.cross_entropy(distogram.flatten(0, 2), d_target.flatten(), reduction="none").view_as(d_target)[0]
    r_target = L.direction_targets(true)
    dir_ce = F.cross_entropy(directions.flatten(0, 3), r_target.flatten(), reduction="none").view_as(r_target)
    dir_ce = dir_ce[0].mean(-1)
    sep = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()
    ca_pred = out.backbone[0, 1 : n + 1, 1].float()
    ca_true = true[0, :, 1]
    d_err = (torch.cdist(ca_pred, ca_pred) - torch.cdist(ca_true, ca_true)).abs()
    result: dict[str, list[float]] = {"distogram": [], "direction": [], "ca_distance_error": []}
    for lo, hi in SEPARATION_BINS:
        pairs = (sep >= lo) & (sep <= hi)
        ok = bool(pairs.any())
        result["distogram"].append(float(dist_ce[pairs].mean()) if ok else math.nan)
        result["direction"].append(float(dir_ce[pairs].mean()) if ok else math.nan)
        result["ca_distance_error"].append(float(d_err[pairs].mean()) if ok else math.nan)
    return result


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ingested chain records (openesm3.training.ingest)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--limit", type=int, default=20, help="proteins to score (the split's first ones)")
    parser.add_argument("--weights", default=None, help="tokenizer directory (default: the bundled tokenizer)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args(argv)

    encoder, decoder = load_structure_tokenizer(args.weights)
    dataset = ProteinDataset(args.data)
    positions = [i for i, s in enumerate(dataset.splits) if s == args.split]
    if not positions:
        print(f"error: {args.data} has no records in split {args.split!r}", file=sys.stderr)
        return 2
    rows = []
    for position in positions:
        scores = pair_cross_entropies(encoder, decoder, dataset[position])
        if scores is not None:
            rows.append(scores)
        if len(rows) == args.limit:
            break
    table = {
        "proteins": len(rows),
        "separation_bins": [list(b) for b in SEPARATION_BINS],
        "distogram_ce": np.nanmean([r["distogram"] for r in rows], axis=0).tolist(),
        "direction_ce": np.nanmean([r["direction"] for r in rows], axis=0).tolist(),
        "ca_distance_error": np.nanmean([r["ca_distance_error"] for r in rows], axis=0).tolist(),
        "uniform_direction_ce": math.log(16),
        "uniform_distogram_ce": math.log(64),
    }
    print(
        f"{len(rows)} proteins of split {args.split!r}; uniform: direction {math.log(16):.3f}, "
        f"distogram {math.log(64):.3f}"
    )
    print("|i-j|        distogram CE  direction CE  |CA distance error| (A)")
    columns = (table["distogram_ce"], table["direction_ce"], table["ca_distance_error"])
    for (lo, hi), dce, rce, err in zip(SEPARATION_BINS, *columns, strict=True):
        label = f"{lo}" if lo == hi else (f"{lo}-{hi}" if hi < 100_000 else f">={lo}")
        print(f"{label:<12} {dce:12.3f}  {rce:12.3f}  {err:10.2f}")
    if args.out is not None:
        atomic_write_json(args.out, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
