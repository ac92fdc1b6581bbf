#!/usr/bin/env bash
# Every GPU check and figure in one command (from the repository root):  bash benchmarks/gpu_check.sh [LOG_DIR]
# 1. the CUDA tests; 2. benchmarks/gpu_check.py (labelling exactness vs scipy, the fused spatial-entropy op vs the
# reference path on the random and adversarial families, sync-free, loss times fused / reference / scipy loop,
# ViT-S/16 bf16 batch-256 steps plain vs SAR in eager, compiled and reduce-overhead modes); 3. `sarvit train` +
# `sarvit eval` end to end: img/s with the DataLoader and with GPU-resident data, and compiled in reduce-overhead
# mode; 4. the cost of each --reg term on ViT-S/16 bf16; 5. science: the low-data regime, SAR vs --no-sar,
# 5 seeds per arm, 10 runs sharing the GPU, GPU-resident data, then the report's paired intervals.
# Each stage has its own time limit (together under 10 minutes), so one that hangs costs only its own minutes;
# the science report runs even when its grid ran out of time (it pairs the seeds that finished).
# Exits 0 with a message when there is no CUDA device.
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

stage "pytest -m cuda" 120 python3 -m pytest -q -m cuda -p no:cacheprovider tests
stage "gpu_check.py" 200 python3 benchmarks/gpu_check.py --repeats 10
stage "sarvit train (DataLoader)" 45 python3 -m sarvit train --device cuda --epochs 4 --resident-data off \
    --output-dir "$runs/loader"
stage "sarvit eval" 20 python3 -m sarvit eval --weights "$runs/loader/best.pth"
stage "sarvit train (GPU-resident)" 40 python3 -m sarvit train --device cuda --epochs 4 --resident-data on \
    --output-dir "$runs/resident"
stage "sarvit train --compile-mode reduce-overhead (GPU-resident)" 80 python3 -m sarvit train --device cuda \
    --epochs 4 --resident-data on --compile --compile-mode reduce-overhead --output-dir "$runs/compiled"
stage "bench_regularizers.py ViT-S/16 bf16" 60 python3 benchmarks/bench_regularizers.py --device cuda \
    --model vit_small_patch16_224 --input-size 224 --patch-size 16 --depth 12 --embed-dim 384 --num-heads 6 \
    --batch 128 --amp --rounds 12
stage "bench_families.py (SAR's step cost per family)" 60 python3 benchmarks/bench_families.py --device cuda \
    --batch 128 --steps 10
# the README's low-data regime (300 images, 150 epochs), 5 seeds per arm, all 10 runs at once on the one GPU
stage "science: SAR vs --no-sar, 5 seeds (GPU-resident)" 190 python3 -m sarvit experiment jaccard --scale small \
    --seeds 5 --jobs 10 --exp-dir "$runs/science" -- --subset-ratio 0.1 --epochs 150 --batch-size 32 \
    --resident-data on --device cuda
stage "science report (paired 95 % intervals)" 30 python3 -m sarvit experiment jaccard --scale small --seeds 5 \
    --exp-dir "$runs/science" --report-only -- --subset-ratio 0.1 --epochs 150 --batch-size 32 --resident-data on \
    --device cuda

if [ ${#failed[@]} -eq 0 ]; then echo "== gpu_check: every stage passed"; exit 0; fi
echo "== gpu_check: FAILED: ${failed[*]}"
exit 1
