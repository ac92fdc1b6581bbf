#!/usr/bin/env bash
set -uo pipefail
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
run() { local name=$1 s=$2; shift 2; echo "== $name"; local t=$SECONDS; timeout "$s" "$@"; echo "== $name: exit $? after $((SECONDS-t)) s"; }
run "drloc cuda test" 40 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_losses_drloc.py
run "jaccard small 20% 100 epochs" 230 python3 -m sarvit experiment jaccard --scale small --seeds 5 --jobs 5 --output-dir /tmp/exp/jaccard -- --subset-ratio 0.2 --epochs 100 --no-tensorboard --attention-every 0
run "jaccard report" 20 python3 -m sarvit experiment jaccard --scale small --seeds 5 --report-only --output-dir /tmp/exp/jaccard -- --subset-ratio 0.2 --epochs 100 --no-tensorboard --attention-every 0
run "subsets small" 200 python3 -m sarvit experiment subsets --scale small --jobs 8 --output-dir /tmp/exp/subsets -- --no-tensorboard --attention-every 0
run "subsets report" 20 python3 -m sarvit experiment subsets --scale small --report-only --output-dir /tmp/exp/subsets -- --no-tensorboard --attention-every 0
for g in jaccard subsets; do cp /tmp/exp/$g/report.md $OUT/$g-report.md; cp /tmp/exp/$g/results.json $OUT/$g-results.json; done
cp /tmp/exp/subsets/*subset*.png $OUT/ 2>/dev/null; ls /tmp/exp/subsets /tmp/exp/jaccard
