"""Short stage-1 probes of tokenizer recipes at equal steps (docs/tokenizer_training.md, "How the recipe was chosen").

Trains the stage-1 networks (encoder, codebook, decoder) from scratch on random crops of the train split with the
library's model and objective, and prints, every ``--every`` steps, on 32 fixed 128-residue crops of the valid split:
CA RMSD after superposition (median), how many crops fit their mirror image better, lDDT-CA, and how much the
codes say about the local backbone (phi/psi error of the per-code circular mean, codes fitted on the train crops
seen so far: lower is more informative).

    python scripts/probe_stage1.py --data runs/dev_chains --steps 1000 decoder.position_features=16 \\
        decoder.frame_mode=chain losses.backbone_fape=1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from openesm3.cli.common import one_line_errors
from openesm3.geometry.alignment import kabsch
from openesm3.geometry.lddt import lddt
from openesm3.structure.sidechain_geometry import backbone_phi_psi
from openesm3.training.config import apply_overrides
from openesm3.training.data import ProteinDataset, ProteinRecord, collate_proteins
from openesm3.training.tokenizer.config import TokenizerTrainConfig
from openesm3.training.tokenizer.model import StructureTokenizerModel
from openesm3.training.tokenizer.objective import TokenizerObjective


def crops(
    dataset: ProteinDataset, pool: np.ndarray, p: np.ndarray | None, n: int, size: int, rng: np.random.Generator
) -> list[ProteinRecord]:
    """``n`` random windows of at most ``size`` residues from the records at ``pool`` (weights ``p``)."""
    out: list[ProteinRecord] = []
    while len(out) < n:
        record = dataset[int(rng.choice(pool, p=p))]
        crop = min(size, record.length)
        if crop < 16:
            continue
        start = int(rng.integers(0, record.length - crop + 1))
        keep = np.arange(start, start + crop)
        out.append(record.select(keep))
    return out


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="runs/dev_chains")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="save the model state here at the end")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. decoder.frame_mode=chain")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    config = apply_overrides(TokenizerTrainConfig(), args.overrides)
    dataset = ProteinDataset(args.data)
    splits = np.array(dataset.splits)
    train = np.flatnonzero(splits == "train")
    valid = np.flatnonzero(splits == "valid")
    clusters = np.array(dataset.clusters)[train]
    _, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
    p = 1.0 / counts[inverse]
    p /= p.sum()
    model = StructureTokenizerModel(config.encoder, config.decoder, stage=1, encoder_positions="sequential")
    objective = TokenizerObjective(config.losses)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    valid_batch = collate_proteins(crops(dataset, valid[:32], None, 32, 128, np.random.default_rng(123)))
    n_codes = config.encoder.n_codes
    sums = np.zeros((2, 2, n_codes))  # (phi, psi) x (sin, cos) x code
    start = time.time()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            model.eval()
            sums[:] = 0
            fit_rng = np.random.default_rng(7)
            for _ in range(8):  # per-code circular means of phi/psi over 64 fixed train crops
                fit = collate_proteins(crops(dataset, train, p, 8, 128, fit_rng))
                with torch.no_grad():
                    coords = torch.where(fit.atom37_mask[..., :3, None], fit.atom37[..., :3, :], float("nan"))
                    positions = torch.arange(1, fit.mask.shape[1] + 1).expand_as(fit.mask)
                    z, rm = model.encoder.encode_features(coords, mask=fit.mask, residue_index=positions)
                    codes = model.encoder.codebook(z, rm).indices.numpy()
                for k in range(fit.mask.shape[0]):
                    mk = rm[k].numpy()
                    angles = backbone_phi_psi(fit.atom37[k, :, :3].numpy(), mk)
                    for a in range(2):
                        ok = np.isfinite(angles[a]) & mk
                        np.add.at(sums[a, 0], codes[k][ok], np.sin(angles[a][ok]))
                        np.add.at(sums[a, 1], codes[k][ok], np.cos(angles[a][ok]))
            with torch.no_grad():
                fwd = model(valid_batch)
                _, metrics = objective(model, valid_batch)
            pred = fwd.pred_backbone[..., 1, :].float()
            true = fwd.true_backbone[..., 1, :]
            m = fwd.residue_mask
            rmsd = torch.stack([kabsch(pred[k][m[k]], true[k][m[k]]).rmsd for k in range(len(m))])
            mirror = torch.stack([kabsch(-pred[k][m[k]], true[k][m[k]]).rmsd for k in range(len(m))])
            score = lddt(pred, true, m).score
            errs = [[], []]
            means = np.arctan2(sums[:, 0], sums[:, 1])  # [2, codes]
            for k in range(len(m)):
                angles = backbone_phi_psi(fwd.true_backbone[k].numpy(), m[k].numpy())
                codes = fwd.tokens[k].numpy()
                for a in range(2):
                    ok = np.isfinite(angles[a]) & (codes < n_codes)
                    d = np.angle(np.exp(1j * (angles[a][ok] - means[a][codes[ok]])))
                    errs[a].append(np.abs(d))
            mae = [np.degrees(np.concatenate(e).mean()) for e in errs]
            losses = " ".join(f"{k[5:]} {float(v):.3f}" for k, v in metrics.items() if k.startswith("loss_"))
            print(
                f"step {step} {time.time() - start:.0f}s RMSD {float(rmsd.median()):.2f} "
                f"mirrored {int((mirror < rmsd).sum())}/{len(m)} lDDT {float(score.mean()):.3f} "
                f"code phi/psi MAE {mae[0]:.1f}/{mae[1]:.1f} perplexity {float(metrics['codebook_perplexity']):.0f} "
                f"| {losses}",
                flush=True,
            )
        if step == args.steps:
            break
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 50)
        batch = collate_proteins(crops(dataset, train, p, args.batch, args.crop, rng))
        loss, _ = objective(model, batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    if args.save:
        torch.save(model.state_dict(), args.save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
