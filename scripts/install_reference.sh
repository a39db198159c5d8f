#!/usr/bin/env bash
# Installs the official ESM3 package (esm 3.2.1.post1 from PyPI) into the active environment as a TEST ORACLE.
# OpenESM3 itself never imports it: only tests/parity and benchmarks/ do, to compare outputs on random weights.
#
# `esm` declares torchvision/torchtext, which would pull gigabytes of CUDA wheels and are not needed to run
# its models, so it is installed with --no-deps; what it really needs at run time is our `ref` extra
# (pyproject.toml). torch must already be installed (CPU machines: pip install torch==2.13.0).
set -euo pipefail
PY=${PYTHON:-python}
"$PY" -c "import torch" 2>/dev/null || { echo "install_reference.sh: install torch first (pip install torch==2.13.0)" >&2; exit 1; }
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('esm') != '3.2.1.post1')" 2>/dev/null; then
  "$PY" -m pip install -q --no-deps "esm==3.2.1.post1"
fi
# The runtime needs, in case the `ref` extra was not installed alongside.
"$PY" -m pip install -q einops "biotite>=1.1" msgpack-numpy biopython scikit-learn attrs pandas cloudpathlib \
  tenacity zstd brotli "transformers<4.48.2" httpx ipython
INFRA_PROVIDER=1 "$PY" -c "import esm.models.esm3, esm.models.vqvae, esm.models.function_decoder" \
  && echo "reference esm 3.2.1.post1 ready (test oracle only)"
