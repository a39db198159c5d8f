"""Geometry in torch, always fp32: rigid frames, superposition and structure-comparison metrics."""

from openesm3.geometry.alignment import Superposition, kabsch, rmsd
from openesm3.geometry.lddt import LDDT, lddt, lddt_all_atom, lddt_ca
from openesm3.geometry.metrics import GDT, TMScore, gdt, gdt_ha, gdt_ts, tm_d0, tm_score
from openesm3.geometry.rigid import Rigid, gram_schmidt

__all__ = [
    "GDT",
    "LDDT",
    "Rigid",
    "Superposition",
    "TMScore",
    "gdt",
    "gdt_ha",
    "gdt_ts",
    "gram_schmidt",
    "kabsch",
    "lddt",
    "lddt_all_atom",
    "lddt_ca",
    "rmsd",
    "tm_d0",
    "tm_score",
]
