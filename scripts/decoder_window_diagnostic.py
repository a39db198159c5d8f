"""Does a tokenizer decoder lose accuracy on chains longer than its training crops?

For every chain of a split longer than the window (default 256, the stage-2 crop length), encode the whole chain
(the user-facing path), then decode its token row twice: whole, and in overlapping windows of the tokens (stride
half a window; each window gets its own BOS/EOS and, for a sequence-conditioned decoder, its slice of the
sequence). Each window's residues are scored against the truth twice with the same metrics (lDDT-CA, and CA RMSD
after superposing the window alone): once as the window decoding placed them, once as the whole-chain decoding
placed them. The tokens are the same in both, so any difference is the decoder's: a decoder that handles long
inputs as well as short ones scores the two alike.

    python scripts/decoder_window_diagnostic.py --data runs/dev_chains --split valid \\
        --out benchmarks/results/tokenizer_window_diagnostic.json [--weights DIR] [--window 256]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.cli.common import one_line_errors
from openesm3.generation.structure_tokens import encode_structure
from openesm3.geometry.alignment import kabsch
from openesm3.geometry.lddt import lddt
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.training.data import ProteinDataset, sequence_to_ids
from openesm3.training.tokenizer.evaluate import bootstrap_mean, record_to_chain
from openesm3.training.tokenizer.model import decoder_sequence
from openesm3.utils.atomic import atomic_write_json


def window_starts(length: int, window: int) -> list[int]:
    """Starts of windows of ``window`` residues, stride ``window // 2``, the last one ending at the chain's end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, window // 2))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def _decode_ca(decoder: StructureDecoder, tokens: torch.Tensor, seq_ids: torch.Tensor | None) -> torch.Tensor:
    """CA coordinates [n, 3] decoded from ``tokens`` [1, n + 2] (BOS, codes, EOS)."""
    n = tokens.shape[1] - 2
    sequence = None
    if seq_ids is not None:
        sequence = decoder_sequence(seq_ids, torch.ones(1, n, dtype=torch.bool), torch.tensor([True]))
    return decoder(tokens, sequence_tokens=sequence).backbone[0, 1 : n + 1, 1]


def _score(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    return float(lddt(pred, true, mask).score), float(kabsch(pred[mask], true[mask]).rmsd)


@torch.no_grad()
@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="structure_encoder/ + structure_decoder/ (default: shipped)")
    parser.add_argument("--data", type=Path, default=Path("runs/dev_chains"), help="an ingested shard dataset")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--min-excess", type=int, default=20, help="score chains longer than window + this")
    parser.add_argument("--without-sequence", action="store_true", help="decode from the tokens alone")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.window < 16:
        parser.error(f"--window must be at least 16, got {args.window}")
    torch.set_num_threads(args.threads)
    encoder, decoder = load_structure_tokenizer(args.weights)
    use_sequence = decoder.config.sequence_conditioning and not args.without_sequence
    dataset = ProteinDataset(args.data)
    proteins = []
    for i, split in enumerate(dataset.splits):
        if split != args.split:
            continue
        record = dataset[i]
        n = record.length
        if n <= args.window + args.min_excess:
            continue
        encoded = encode_structure(record_to_chain(record), encoder, max_length=None)
        mask = torch.from_numpy(encoded.chains[0].residue_mask)
        tokens = torch.from_numpy(encoded.tokens)[None]
        seq_ids = torch.tensor(sequence_to_ids(record.sequence), dtype=torch.long)[None] if use_sequence else None
        true_ca = torch.nan_to_num(torch.tensor(record.atom37[:, 1], dtype=torch.float32))
        whole = _decode_ca(decoder, tokens, seq_ids)
        in_window, in_whole = [], []
        for s in window_starts(n, args.window):
            e = s + args.window
            m = mask[s:e]
            if int(m.sum()) < 3:
                continue
            window_tokens = torch.cat([tokens[:, :1], tokens[:, 1 + s : 1 + e], tokens[:, n + 1 : n + 2]], dim=1)
            window_seq = None if seq_ids is None else seq_ids[:, s:e]
            in_window.append(_score(_decode_ca(decoder, window_tokens, window_seq), true_ca[s:e], m))
            in_whole.append(_score(whole[s:e], true_ca[s:e], m))
        w, f = np.mean(in_window, axis=0), np.mean(in_whole, axis=0)
        proteins.append(
            {
                "name": record.name,
                "length": n,
                "windows": len(in_window),
                "window_lddt_ca": float(w[0]),
                "window_ca_rmsd": float(w[1]),
                "whole_lddt_ca": float(f[0]),
                "whole_ca_rmsd": float(f[1]),
            }
        )
        print(
            f"{record.name} L={n}: windows lDDT-CA {w[0]:.3f} CA RMSD {w[1]:.2f} | "
            f"same residues in the whole decoding {f[0]:.3f} {f[1]:.2f}",
            file=sys.stderr,
        )
    if not proteins:
        raise SystemExit(f"no {args.split} chain is longer than {args.window + args.min_excess} residues")
    d_lddt = np.array([p["window_lddt_ca"] - p["whole_lddt_ca"] for p in proteins])
    d_rmsd = np.array([p["window_ca_rmsd"] - p["whole_ca_rmsd"] for p in proteins])
    summary = {
        "n_proteins": len(proteins),
        "window_lddt_ca_mean": float(np.mean([p["window_lddt_ca"] for p in proteins])),
        "whole_lddt_ca_mean": float(np.mean([p["whole_lddt_ca"] for p in proteins])),
        "window_ca_rmsd_mean": float(np.mean([p["window_ca_rmsd"] for p in proteins])),
        "whole_ca_rmsd_mean": float(np.mean([p["whole_ca_rmsd"] for p in proteins])),
        "lddt_ca_window_minus_whole": bootstrap_mean(d_lddt, np.random.default_rng(0))
        | {"window_better_fraction": float(np.mean(d_lddt > 0))},
        "ca_rmsd_window_minus_whole": bootstrap_mean(d_rmsd, np.random.default_rng(0))
        | {"window_better_fraction": float(np.mean(d_rmsd < 0))},
    }
    print(
        f"{len(proteins)} chains: lDDT-CA windows {summary['window_lddt_ca_mean']:.3f} vs whole "
        f"{summary['whole_lddt_ca_mean']:.3f}; CA RMSD windows {summary['window_ca_rmsd_mean']:.2f} vs whole "
        f"{summary['whole_ca_rmsd_mean']:.2f}"
    )
    if args.out is not None:
        atomic_write_json(
            args.out,
            {
                "weights": str(args.weights or "bundled"),
                "split": args.split,
                "window": args.window,
                "with_sequence": use_sequence,
                "summary": summary,
                "proteins": proteins,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
