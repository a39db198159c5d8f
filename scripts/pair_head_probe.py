"""Can a pair head read chain geometry out of a trained tokenizer decoder? Heads fitted on a frozen decoder.

Finding 13 of docs/tokenizer_training.md saw the decoder's pair head (distogram, binned directions, PAE) learn almost
nothing in 600 stage-2 steps at the stage's learning rate. This probe separates the head from the trunk: it decodes
chains once with a trained decoder (frozen), keeps the final per-residue features and the decoded backbone, and fits
only pair heads on them, many steps at a head's learning rate, with the distogram, binned-direction and PAE losses of
stage 2 (PAE targets: the frozen decoding's own aligned errors). The heads:

- ``shipped``: the decoder's own head, not refitted (the reference);
- ``spec``: the spec's head (:class:`~openesm3.layers.structure_heads.PairwiseHead`), freshly initialised;
- ``spec_init``: the spec's head starting from the decoder's own weights;
- ``spec_bias``: the spec's head with biases in its two linear layers;
- ``geometry``: the spec's head plus the decoded structure as pair input: radial features of the decoded virtual-C-beta
  distance and the six decoded direction dot products, projected and added before the GELU (an input a trained
  tokenizer's decoder could take; the released decoder has none, and the library has no such option).

Training chains are encoded with 0.1 A of coordinate noise (as stage 2's token renditions), decoded whole from tokens
alone, and cut into crops of ``--crop`` residues. Scored on the whole chains of the split (tokens alone, as the CLI):
cross-entropies by sequence separation, and pTM against the true TM-score of the decoding. ``--noise`` sets the
training encodings' noise; ``--cross-fit K`` fits the heads on the scored split itself instead, in K folds of whole
clusters, each fold scored by heads fitted on the others (chains the decoder has not seen, like the scored ones).
``--plddt`` also refits the decoder's per-residue pLDDT head, from its own weights, on the same chains.

    python scripts/pair_head_probe.py --data runs/dev_chains --out benchmarks/results/tokenizer_pair_head_probe.json
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from openesm3 import constants as C
from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.cli.common import one_line_errors
from openesm3.geometry.metrics import tm_score
from openesm3.layers.structure_heads import PairwiseHead, pae_and_ptm
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.training.data import ProteinDataset, ProteinRecord
from openesm3.training.tokenizer import losses as L
from openesm3.training.tokenizer.calibrate import (
    DecodedChain,
    cluster_folds,
    decode_chain,
    fit_pair_head,
    fit_plddt_head,
    pair_losses,
    r_difference,
    score_plddt,
    summarize_plddt,
)
from openesm3.utils.atomic import atomic_write_json

SEPARATION_BINS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 64), (65, 100_000))
HEADS = ("shipped", "spec", "spec_init", "spec_bias", "geometry")
RBF_CENTRES = torch.linspace(2.0, 22.0, 16)
RBF_WIDTH = 1.25


def pair_geometry(pred: Tensor) -> Tensor:
    """[L, L, 22] pair input from a decoded backbone [L, 3, 3]: 16 radial features of the virtual-C-beta distance
    and the six direction dot products of :func:`~openesm3.training.tokenizer.losses.direction_dot_products`."""
    cb = L.virtual_cb(pred)
    d = (cb[:, None, :] - cb[None, :, :]).norm(dim=-1)  # not cdist: its matmul form is inexact near 0
    rbf = torch.exp(-(((d[..., None] - RBF_CENTRES.to(d.device)) / RBF_WIDTH) ** 2))
    return torch.cat([rbf, L.direction_dot_products(pred[None])[0]], dim=-1)


class ProbeHead(nn.Module):
    """The spec's pairwise head, optionally with biases and with a projected pair-geometry input."""

    def __init__(self, d_model: int, pair_dim: int, *, bias: bool = False, geometry: bool = False) -> None:
        super().__init__()
        n_out = C.DISTOGRAM_N_BINS + C.DIRECTION_N_BINS * C.DIRECTION_N_PAIRS + C.PAE_N_BINS
        self.down = nn.Linear(d_model, pair_dim, bias=False)
        self.linear1 = nn.Linear(pair_dim, pair_dim, bias=bias)
        self.norm = nn.LayerNorm(pair_dim, eps=C.LAYER_NORM_EPS)
        self.linear2 = nn.Linear(pair_dim, n_out, bias=bias)
        self.geometry = nn.Linear(22, pair_dim, bias=False) if geometry else None

    @classmethod
    def from_spec(cls, head: PairwiseHead, d_model: int) -> ProbeHead:
        probe = cls(d_model, head.pair_dim)
        probe.load_state_dict(head.state_dict())
        return probe

    def forward(self, x: Tensor, pred: Tensor) -> Tensor:
        q, k = self.down(x).chunk(2, dim=-1)
        pair = torch.cat([q[None, :, :] * k[:, None, :], q[None, :, :] - k[:, None, :]], dim=-1)
        h = self.linear1(pair)
        if self.geometry is not None:
            h = h + self.geometry(pair_geometry(pred))
        return self.linear2(self.norm(F.gelu(h)))


def complete(record: ProteinRecord) -> bool:
    return record.length >= 8 and bool(record.atom37_mask[:, :3].all())


def fit(
    head: nn.Module, train: list[DecodedChain], *, steps: int, lr: float, crop_size: int, batch: int, seed: int
) -> list:
    """Fit a probe head to the distogram, direction and PAE terms of crops of ``train``."""
    return fit_pair_head(
        head,
        train,
        steps=steps,
        lr=lr,
        crop_length=crop_size,
        batch=batch,
        seed=seed,
        logits=lambda c: head(c.features, c.pred),
    )


@torch.no_grad()
def score_chains(head: nn.Module, chains: list[DecodedChain]) -> list[dict]:
    """Per chain: mean cross-entropy of each term, the same by separation bin, and the pTM."""
    rows = []
    for d in chains:
        logits = head(d.features, d.pred)
        terms = pair_losses(logits, d)
        n = d.features.shape[0]
        sep = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()
        row: dict = {"mean": {}, "by_separation": {}}
        for k, ce in terms.items():
            row["mean"][k] = float(ce.mean())
            row["by_separation"][k] = [
                float(ce[(sep >= lo) & (sep <= hi)].mean()) if bool(((sep >= lo) & (sep <= hi)).any()) else math.nan
                for lo, hi in SEPARATION_BINS
            ]
        _, ptm = pae_and_ptm(PairwiseHead.split(logits)[2][None], torch.ones(1, n, dtype=torch.bool))
        row["ptm"] = float(ptm[0])
        rows.append(row)
    return rows


def summarize(rows: list[dict], true_tm: list[float]) -> dict:
    p, t = np.array([r["ptm"] for r in rows]), np.array(true_tm)
    terms = ("distogram", "direction", "pae")
    return {
        "by_separation": {k: np.nanmean([r["by_separation"][k] for r in rows], axis=0).tolist() for k in terms},
        "mean_ce": {k: float(np.mean([r["mean"][k] for r in rows])) for k in terms},
        "ptm_vs_tm_r": float(np.corrcoef(p, t)[0, 1]),
        "mean_ptm": float(p.mean()),
        "mean_tm": float(t.mean()),
        "ptm": p.tolist(),  # per scored chain, in the order of the top-level "chains"
    }


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ingested chain records (openesm3.training.ingest)")
    parser.add_argument("--weights", default=None, help="tokenizer directory (default: the bundled tokenizer)")
    parser.add_argument("--split", default="valid", help="the split scored")
    parser.add_argument("--train-limit", type=int, default=400, help="training chains decoded for the heads")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.1, help="coordinate noise (A) of the training encodings")
    parser.add_argument("--heads", default=",".join(HEADS), help="comma-separated, of: " + ", ".join(HEADS))
    parser.add_argument(
        "--cross-fit",
        type=int,
        default=0,
        help="K > 1: fit the heads on the scored split itself, K folds by cluster (each fold scored by heads fitted "
        "on the other folds' decodings), instead of on training chains",
    )
    parser.add_argument(
        "--plddt", action="store_true", help="also refit the decoder's pLDDT head on the same chains (its own init)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    unknown = set(args.heads.split(",")) - set(HEADS)
    if unknown:
        raise SystemExit(f"--heads: unknown {', '.join(sorted(unknown))} (known: {', '.join(HEADS)})")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    encoder, decoder = load_structure_tokenizer(args.weights)
    dataset = ProteinDataset(args.data)
    t0 = time.perf_counter()
    train: list[DecodedChain] = []
    scored: list[DecodedChain] = []
    true_tm: list[float] = []
    clusters: list[str] = []
    for i, split in enumerate(dataset.splits):
        if split == "train" and len(train) < args.train_limit and args.cross_fit <= 1:
            r = dataset[i]
            if complete(r):
                train.append(decode_chain(encoder, decoder, r, noise=args.noise, seed=args.seed * 100_003 + i))
        elif split == args.split:
            r = dataset[i]
            if complete(r):
                d = decode_chain(encoder, decoder, r)
                scored.append(d)
                clusters.append(r.cluster or r.name)
                true_tm.append(float(tm_score(d.pred[:, 1], d.true[:, 1]).score))
    print(f"decoded {len(train)} training and {len(scored)} {args.split} chains in {time.perf_counter() - t0:.0f} s")
    if len(scored) < 2:
        raise SystemExit(f"{args.data}: split {args.split!r} has {len(scored)} chains with every backbone atom; need 2")
    if args.cross_fit > 1 and len(set(clusters)) < args.cross_fit:
        raise SystemExit(f"--cross-fit {args.cross_fit}: split {args.split!r} has only {len(set(clusters))} clusters")
    if args.cross_fit <= 1 and not train and (args.heads != "shipped" or args.plddt):
        raise SystemExit(f"{args.data}: no training chains with every backbone atom to fit the heads on")

    d_model, pair_dim = decoder.config.d_model, decoder.config.pairwise_dim
    heads = {
        "shipped": lambda: ProbeHead.from_spec(decoder.pairwise_head, d_model),
        "spec": lambda: ProbeHead(d_model, pair_dim),
        "spec_init": lambda: ProbeHead.from_spec(copy.deepcopy(decoder.pairwise_head), d_model),
        "spec_bias": lambda: ProbeHead(d_model, pair_dim, bias=True),
        "geometry": lambda: ProbeHead(d_model, pair_dim, geometry=True),
    }
    results: dict = {
        "weights": args.weights or "bundled",
        "train_chains": len(train),
        "scored_chains": len(scored),
        "split": args.split,
        "steps": args.steps,
        "lr": args.lr,
        "crop": args.crop,
        "batch": args.batch,
        "noise": args.noise,
        "cross_fit": args.cross_fit,
        "separation_bins": [list(b) for b in SEPARATION_BINS],
        "chains": [d.name for d in scored],
        "true_tm": true_tm,
        "uniform": {"distogram": math.log(64), "direction": math.log(16), "pae": math.log(64)},
        "heads": {},
    }
    folds = cluster_folds(clusters, args.cross_fit) if args.cross_fit > 1 else []
    for name in args.heads.split(","):
        torch.manual_seed(args.seed)
        head = heads[name]()
        t0 = time.perf_counter()
        if args.cross_fit > 1:
            rows: list[dict] = [{}] * len(scored)
            curve = []
            for f in range(args.cross_fit):
                torch.manual_seed(args.seed)
                head = heads[name]()
                fit_on = [d for d, g in zip(scored, folds, strict=True) if g != f]
                if name != "shipped":
                    curve.append(
                        fit(
                            head,
                            fit_on,
                            steps=args.steps,
                            lr=args.lr,
                            crop_size=args.crop,
                            batch=args.batch,
                            seed=args.seed,
                        )
                    )
                held = [i for i, g in enumerate(folds) if g == f]
                for i, row in zip(held, score_chains(head, [scored[i] for i in held]), strict=True):
                    rows[i] = row
        else:
            curve = (
                []
                if name == "shipped"
                else fit(
                    head, train, steps=args.steps, lr=args.lr, crop_size=args.crop, batch=args.batch, seed=args.seed
                )
            )
            rows = score_chains(head, scored)
        fitted = time.perf_counter() - t0
        result = summarize(rows, true_tm)
        result.update(curve=curve, fit_seconds=fitted)
        if "shipped" in results["heads"]:
            result["r_minus_shipped"] = r_difference(result["ptm"], results["heads"]["shipped"]["ptm"], true_tm)
        results["heads"][name] = result
        sep = result["by_separation"]
        print(
            f"{name:10s} fit {fitted:5.0f} s | CE distogram {result['mean_ce']['distogram']:.3f} "
            f"(|i-j|=1: {sep['distogram'][0]:.2f}) direction {result['mean_ce']['direction']:.3f} "
            f"(|i-j|=1: {sep['direction'][0]:.2f}) PAE {result['mean_ce']['pae']:.3f} | "
            f"pTM r {result['ptm_vs_tm_r']:.2f} mean pTM {result['mean_ptm']:.2f} vs TM {result['mean_tm']:.2f}",
            flush=True,
        )
        if args.out is not None:
            atomic_write_json(args.out, results)
    if args.plddt:
        results["plddt"] = plddt_probe(decoder, train, scored, folds, args)
        for name, r in results["plddt"].items():
            print(
                f"pLDDT {name:8s} r per residue {r['r_per_residue']:.2f}, per protein {r['r_per_protein']:.2f}; "
                f"mean pLDDT {r['mean_plddt']:.2f} vs lDDT-CA {r['mean_lddt_ca']:.2f}",
                flush=True,
            )
        if args.out is not None:
            atomic_write_json(args.out, results)
    return 0


def plddt_probe(
    decoder: StructureDecoder,
    train: list[DecodedChain],
    scored: list[DecodedChain],
    folds: list[int],
    args: argparse.Namespace,
) -> dict:
    """The decoder's pLDDT head as shipped, and refitted from its own weights on the training chains or, with
    cross-fit folds, on the other folds of the scored split."""
    out = {"shipped": summarize_plddt(score_plddt(decoder.plddt_head, scored))}
    settings = {"steps": args.steps, "lr": args.lr / 3, "batch": args.batch, "seed": args.seed}
    if folds:
        rows: list[dict] = [{}] * len(scored)
        for f in sorted(set(folds)):
            head = copy.deepcopy(decoder.plddt_head)
            fit_plddt_head(head, [d for d, g in zip(scored, folds, strict=True) if g != f], **settings)
            held = [i for i, g in enumerate(folds) if g == f]
            for i, row in zip(held, score_plddt(head, [scored[i] for i in held]), strict=True):
                rows[i] = row
    else:
        head = copy.deepcopy(decoder.plddt_head)
        fit_plddt_head(head, train, **settings)
        rows = score_plddt(head, scored)
    out["refit"] = summarize_plddt(rows)
    out["refit"]["r_per_protein_minus_shipped"] = r_difference(
        out["refit"]["mean_plddt_per_chain"],
        out["shipped"]["mean_plddt_per_chain"],
        out["shipped"]["lddt_ca_per_chain"],
    )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
