"""How precise per-residue relative frames must be for a chain-composed decoder (``decoder.frame_mode=chain``).

Takes real valid-split chains, computes each residue's frame relative to the previous one, perturbs every relative
rotation by a random rotation of RMS angle ``sigma`` degrees, composes the frames back along the chain and scores
the CA trace (lDDT-CA, RMSD after superposition) against the truth. Errors accumulate along the chain, so this is
the best a chain-composed decoder can do when its relative frames are off by ``sigma``.

    python scripts/chain_drift.py --data runs/dev_chains --limit 30
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from openesm3.cli.common import one_line_errors
from openesm3.geometry.alignment import kabsch
from openesm3.geometry.lddt import lddt
from openesm3.geometry.rigid import Rigid
from openesm3.training.data import ProteinDataset


def axis_angle(v: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of rotation vectors v [..., 3] (Rodrigues)."""
    angle = v.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    k = v / angle
    zero = torch.zeros_like(k[..., 0])
    cross = torch.stack(
        [zero, -k[..., 2], k[..., 1], k[..., 2], zero, -k[..., 0], -k[..., 1], k[..., 0], zero], dim=-1
    ).unflatten(-1, (3, 3))
    a = angle[..., None]
    return torch.eye(3) + torch.sin(a) * cross + (1 - torch.cos(a)) * cross @ cross


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--sigmas", default="1,2,5,10,20", help="RMS rotation error per residue, degrees")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    dataset = ProteinDataset(args.data)
    chains = []
    for i, split in enumerate(dataset.splits):
        if split != "valid":
            continue
        record = dataset[i]
        keep = record.atom37_mask[:, :3].all(-1)
        x = torch.tensor(record.atom37[:, :3])[torch.from_numpy(keep)]
        if len(x) >= 20:
            chains.append(x)
        if len(chains) == args.limit:
            break
    print(f"{len(chains)} valid-split chains")
    for sigma in (float(s) for s in args.sigmas.split(",")):
        scores, rmsds = [], []
        for x in chains:
            frames, _ = Rigid.from_backbone(x[:, 0], x[:, 1], x[:, 2])
            relative = frames[:-1].invert().compose(frames[1:])
            noise = axis_angle(torch.randn(len(x) - 1, 3) * np.radians(sigma) / np.sqrt(3))
            relative = Rigid(relative.rot @ noise, relative.trans)
            ca = Rigid.cat([frames[:1], relative], 0).cumulative_compose().trans
            scores.append(float(lddt(ca[None], x[None, :, 1], torch.ones(1, len(x), dtype=torch.bool)).score))
            rmsds.append(float(kabsch(ca, x[:, 1]).rmsd))
        print(f"sigma {sigma:4.1f} deg: lDDT-CA median {np.median(scores):.3f}, CA RMSD {np.median(rmsds):.2f} A")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
