#!/usr/bin/env bash
# Regenerates the Python code for every proto under protos/ into pantree_common/generated/
# (or into the folder given as the first argument, to check for drift).
# The proto package equals the Python import path (pantree.<step>.v1), so nothing is rewritten.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=${1:-pantree_common/generated}
rm -rf "$out/pantree"
mapfile -t protos < <(cd protos && find pantree -name '*.proto' | sort)
for proto in "${protos[@]}"; do mkdir -p "$out/$(dirname "$proto")"; done
"$python" -m grpc_tools.protoc -I protos -I third_party/googleapis \
  --plugin=protoc-gen-mypy="$(dirname "$python")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$python")/protoc-gen-mypy_grpc" \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  "${protos[@]}" 2> >(grep -v "^Writing mypy" >&2)
find "$out/pantree" -type d -exec touch {}/__init__.py \;
