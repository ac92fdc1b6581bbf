#!/usr/bin/env bash
# Every GPU check and figure in one command (from the repository root):  bash benchmarks/gpu_check.sh
# Runs the CUDA tests, then benchmarks/gpu_check.py (exactness vs scipy, sync-free, loss times, ViT-S/16 steps).
# Estimated at about 5 minutes on one H100 (not yet run on one); exits 0 with a message when there is no CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device here; nothing to check (run it on a machine with a GPU)"
    exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "== pytest -m cuda"
python3 -m pytest -q -m cuda -p no:cacheprovider tests
tests_status=$?
echo "== benchmarks/gpu_check.py"
python3 benchmarks/gpu_check.py "$@"
check_status=$?
echo "== pytest -m cuda: $([ $tests_status -eq 0 ] && echo passed || echo FAILED), gpu_check.py: $([ $check_status -eq 0 ] && echo passed || echo FAILED)"
exit $(( tests_status || check_status ))
