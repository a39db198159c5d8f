"""Several protein chains of one structure, in file order, with the concatenated views ESM3 uses.

ESM3 reads a complex as one sequence whose chains are joined by the chain-break token ``|`` (spec §1-2);
:meth:`ProteinComplex.sequence_with_breaks` and :meth:`ProteinComplex.atom37_with_breaks` give that layout.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.structure import residue_constants as RC
from openesm3.structure.chain import ProteinChain

if TYPE_CHECKING:
    from openesm3.structure.io import StructureFormat

# Chain ids given to the chains of a complex that has none, in order (the SDK's single-letter ids, then digits
# and lowercase letters, all of which fit the PDB format's one column; a longer id needs mmCIF output).
DEFAULT_CHAIN_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz"


def default_chain_ids(n_chains: int) -> tuple[str, ...]:
    """``A, B, C, ...`` for ``n_chains`` chains (``A``..``z`` first, then ``A1, B1, ...``)."""
    base = DEFAULT_CHAIN_IDS
    return tuple(base[i % len(base)] + (str(i // len(base)) if i >= len(base) else "") for i in range(n_chains))


@dataclass(frozen=True, eq=False)
class ProteinComplex:
    """An ordered tuple of chains with distinct ids. N = total number of residues.

    Attributes:
        chains: the chains, in file order.
        name: where the complex comes from (e.g. the file stem).
    """

    chains: tuple[ProteinChain, ...]
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "chains", tuple(self.chains))
        if not self.chains:
            raise ValueError(f"ProteinComplex {self.name!r}: needs at least one chain")
        ids = [chain.chain_id for chain in self.chains]
        if len(set(ids)) != len(ids):
            raise ValueError(f"ProteinComplex {self.name!r}: chain ids must be distinct, got {ids}")

    @classmethod
    def from_chains(cls, chains: Iterable[ProteinChain], name: str = "") -> ProteinComplex:
        return cls(tuple(chains), name)

    # ---- container protocol ------------------------------------------------------------------------------
    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(chain.chain_id for chain in self.chains)

    def __len__(self) -> int:
        """Total number of residues over all chains."""
        return sum(len(chain) for chain in self.chains)

    def __iter__(self) -> Iterator[ProteinChain]:
        return iter(self.chains)

    def __contains__(self, chain_id: object) -> bool:
        return chain_id in self.chain_ids

    def __getitem__(self, chain_id: str) -> ProteinChain:
        for chain in self.chains:
            if chain.chain_id == chain_id:
                return chain
        raise InputError(f"{self.name or 'structure'}: no chain {chain_id!r}; chains: {', '.join(self.chain_ids)}")

    def select(self, chain_ids: Iterable[str]) -> ProteinComplex:
        """The complex restricted to ``chain_ids``, in the order given; an id given twice is refused, as
        ``load_structure(chains=...)`` refuses it (a chain is kept once, so it would silently give one copy)."""
        if isinstance(chain_ids, str):  # one id, not its characters
            chain_ids = [chain_ids]
        chain_ids = list(chain_ids)
        repeated = [c for c in dict.fromkeys(chain_ids) if chain_ids.count(c) > 1]
        if repeated:
            raise InputError(
                f"{self.name or 'structure'}: chain {', '.join(map(repr, repeated))} given more than once; a chain is "
                "kept once: give each chain id once, in the order wanted"
            )
        chosen = tuple(self[cid] for cid in chain_ids)
        if not chosen:
            raise InputError(f"{self.name or 'structure'}: no chain selected; chains: {', '.join(self.chain_ids)}")
        return ProteinComplex(chosen, self.name)

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.chain_id}:{len(c)}" for c in self.chains)
        return f"ProteinComplex(name={self.name!r}, chains=[{parts}])"

    # ---- concatenated views ([N, ...], chains in order) --------------------------------------------------
    @property
    def sequence(self) -> str:
        """All chains' sequences concatenated, without separators (length N)."""
        return "".join(chain.sequence for chain in self.chains)

    def sequence_with_breaks(self, separator: str = C.SEQUENCE_CHAINBREAK_CHAR) -> str:
        """Chains joined by ESM3's chain-break character ``|`` (length N + n_chains - 1)."""
        return separator.join(chain.sequence for chain in self.chains)

    @property
    def atom37(self) -> np.ndarray:
        """[N, 37, 3] float32."""
        return np.concatenate([chain.atom37 for chain in self.chains])

    @property
    def atom37_mask(self) -> np.ndarray:
        """[N, 37] bool."""
        return np.concatenate([chain.atom37_mask for chain in self.chains])

    @property
    def residue_index(self) -> np.ndarray:
        """[N] int64 author residue numbers."""
        return np.concatenate([chain.residue_index for chain in self.chains])

    @property
    def chain_index(self) -> np.ndarray:
        """[N] int64: position of each residue's chain in :attr:`chains`."""
        return np.repeat(np.arange(len(self.chains)), [len(chain) for chain in self.chains])

    def chain_breaks(self) -> np.ndarray:
        """[N] bool: each chain's :meth:`ProteinChain.chain_breaks`, plus True at the start of chains 2, 3, ..."""
        parts = []
        for k, chain in enumerate(self.chains):
            breaks = chain.chain_breaks()
            if k > 0 and len(chain):
                breaks[0] = True
            parts.append(breaks)
        return np.concatenate(parts)

    def atom37_with_breaks(self) -> np.ndarray:
        """[N + n_chains - 1, 37, 3] float32 aligned with :meth:`sequence_with_breaks`: NaN rows at the ``|``."""
        gap = np.full((1, RC.N_ATOM37, 3), np.nan, dtype=np.float32)
        parts: list[np.ndarray] = []
        for k, chain in enumerate(self.chains):
            if k:
                parts.append(gap)
            parts.append(chain.atom37)
        return np.concatenate(parts)

    # ---- output ------------------------------------------------------------------------------------------
    def to_pdb(self, path: str | os.PathLike[str]) -> None:
        self.write(path, "pdb")

    def to_mmcif(self, path: str | os.PathLike[str]) -> None:
        self.write(path, "cif")

    def to_pdb_string(self) -> str:
        from openesm3.structure.io import to_pdb_string  # noqa: PLC0415

        return to_pdb_string(self)

    def write(self, path: str | os.PathLike[str], format: StructureFormat | None = None) -> None:
        from openesm3.structure.io import write_structure  # noqa: PLC0415

        write_structure(self, path, format=format)
