#!/usr/bin/env bash
# Runs `openesm3 featurize` on every structure of the dev set (../shared/data/dev by default), writing one JSON
# with all files, and fails if any file fails. Usage: scripts/featurize_all.sh [DEV_DIR] [OUT_JSON]
# (OPENESM3="python -m openesm3" runs it from a source checkout without installing).
set -euo pipefail
dev=${1:-"$(dirname "$0")/../../shared/data/dev"}
out=${2:-featurize_dev.json}
mapfile -t files < <(find "$dev" -name '*.pdb.gz' | sort)
echo "featurizing ${#files[@]} files from $dev" >&2
start=$SECONDS
${OPENESM3:-openesm3} featurize "${files[@]}" --quiet --json "$out"
echo "all ${#files[@]} files featurized in $((SECONDS - start)) s -> $out" >&2
