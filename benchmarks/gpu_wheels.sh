#!/usr/bin/env bash
# Wheels that benchmarks/gpu.py needs on an air-gapped GPU node, beyond what the node already has
# (Python, PyTorch, transformers, tokenizers, sentencepiece, safetensors, numpy, PyYAML, psutil,
# tensorboard). On the node:  pip install --no-index --find-links DIR megatron-core packaging
#
#   bash benchmarks/gpu_wheels.sh DIR [--python 3.12]
#
# Only megatron-core, in the range pyproject.toml declares (the version the tests run; unpinned,
# Python 3.12 would get a newer one), and `packaging` (megatron-core wants >= 24.2; the node's may
# be older): its other requirements (torch, numpy) are on the node, and resolving them here
# would download torch.
# TransformerEngine is not fetched: its CUDA wheels are hundreds of MB, far over the 60 MB budget;
# without it gpu.py uses Megatron's local layer spec and says so in its JSON.
set -euo pipefail

usage() { echo "usage: bash benchmarks/gpu_wheels.sh DIR [--python 3.12]" >&2; exit 2; }
dir=""
python_version="3.12"
while [ $# -gt 0 ]; do
  case "$1" in
    --python) [ $# -ge 2 ] || usage; python_version="$2"; shift 2 ;;
    --python=*) python_version="${1#--python=}"; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_wheels.sh: error: unknown option $1" >&2; usage ;;
    *) [ -z "$dir" ] || { echo "gpu_wheels.sh: error: one DIR only (got $dir and $1)" >&2; usage; }; dir="$1"; shift ;;
  esac
done
[ -n "$dir" ] || usage
case "$python_version" in 3.[0-9]|3.[0-9][0-9]) ;; *) echo "gpu_wheels.sh: error: --python wants X.Y, got $python_version" >&2; exit 2 ;; esac

limit_mb=60
pyproject="$(cd "$(dirname "$0")/.." && pwd)/pyproject.toml"
megatron_spec=$(grep -o '"megatron-core[^"]*"' "$pyproject" | head -1 | tr -d '"')
[ -n "$megatron_spec" ] || { echo "gpu_wheels.sh: error: no megatron-core requirement in $pyproject" >&2; exit 2; }
pip_cmd=(python3 -m pip)
if [ -n "${PIP:-}" ]; then read -r -a pip_cmd <<< "$PIP"; fi
mkdir -p "$dir"
# Wheels only (no sdists to build on the node), for CPython X.Y on manylinux x86-64.
"${pip_cmd[@]}" download --dest "$dir" --no-deps --only-binary=:all: \
  --python-version "$python_version" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --platform linux_x86_64 --platform any \
  "$megatron_spec" "packaging>=24.2"

total_bytes=$(find "$dir" -maxdepth 1 -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
echo "wheels in $dir (Python $python_version):"
find "$dir" -maxdepth 1 -name '*.whl' -printf '  %f  %s bytes\n' | sort
total_mb=$(awk -v b="$total_bytes" 'BEGIN {printf "%.1f", b / 1e6}')
echo "total: $total_mb MB (limit $limit_mb MB)"
if awk -v b="$total_bytes" -v l="$limit_mb" 'BEGIN {exit !(b > l * 1e6)}'; then
  echo "gpu_wheels.sh: error: $total_mb MB of wheels is over the $limit_mb MB limit" >&2
  exit 1
fi
