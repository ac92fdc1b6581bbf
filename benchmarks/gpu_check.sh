#!/usr/bin/env bash
# Every GPU check and figure in one command (from the repository root):  bash benchmarks/gpu_check.sh [LOG_DIR]
# 1. the CUDA tests; 2. benchmarks/gpu_check.py (exactness vs scipy, sync-free, loss times, ViT-S/16 steps);
# 3. `sarvit train` + `sarvit eval` end to end on the GPU, eager and --compile; 4. the cost of each --reg term
# on ViT-S/16 bf16. Each stage has its own time limit, so one that hangs costs only its own minutes.
# About 7 minutes on one H200; exits 0 with a message when there is no CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device here; nothing to check (run it on a machine with a GPU)"
    exit 0
fi
runs="${1:-$(mktemp -d)}"
mkdir -p "$runs"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, timm, triton; print('torch', torch.__version__, 'timm', timm.__version__, 'triton', triton.__version__)"
failed=()

stage() {  # stage NAME SECONDS COMMAND...
    local name="$1" seconds="$2"
    shift 2
    echo "== $name (limit ${seconds} s)"
    local start=$SECONDS
    timeout "$seconds" "$@"
    local status=$?
    echo "== $name: exit $status after $((SECONDS - start)) s"
    [ $status -eq 0 ] || failed+=("$name")
}

stage "pytest -m cuda" 150 python3 -m pytest -q -m cuda -p no:cacheprovider tests
stage "gpu_check.py" 200 python3 benchmarks/gpu_check.py --repeats 10
stage "sarvit train (eager)" 50 python3 -m sarvit train --device cuda --epochs 4 --output-dir "$runs/eager"
stage "sarvit eval" 25 python3 -m sarvit eval --weights "$runs/eager/best.pth"
stage "sarvit train --compile" 80 python3 -m sarvit train --device cuda --epochs 4 --compile \
    --output-dir "$runs/compiled"
stage "bench_regularizers.py ViT-S/16 bf16" 70 python3 benchmarks/bench_regularizers.py --device cuda \
    --model vit_small_patch16_224 --input-size 224 --patch-size 16 --depth 12 --embed-dim 384 --num-heads 6 \
    --batch 128 --amp --rounds 15

if [ ${#failed[@]} -eq 0 ]; then echo "== gpu_check: every stage passed"; exit 0; fi
echo "== gpu_check: FAILED: ${failed[*]}"
exit 1
