"""OpenESM3: an open, exact and fast implementation of ESM3 (Hayes et al., 2024).

Layers, lowest first (nothing imports a higher layer): ``constants``/``config`` -> ``structure`` (numpy,
biotite) -> ``geometry`` (torch, fp32) -> ``tokenizers`` -> ``layers``/``models`` -> ``checkpoints`` ->
``generation``/``training`` -> ``cli``.
"""

__version__ = "0.1.0"
