"""Print whole-epoch training throughput (img/s) of `sarvit train` with and without SAR.

    python benchmarks/bench_train.py                      # the default quick run's model on synthetic data
    python benchmarks/bench_train.py --pairs 3 --epochs 2 -- --model vit_small_patch16_224 --input-size 224

Runs alternate (SAR, no SAR, no SAR, SAR, ...) so that drifting load and order hit both alike; each run's first
epoch is dropped as warm-up, and the figure is the median img/s of the remaining epochs over all runs
of that kind. Arguments after `--` go to `sarvit train` unchanged.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
from pathlib import Path

import torch

import sarvit
from sarvit.cli import main as sarvit_main


def epoch_throughputs(sar: bool, epochs: int, extra: list[str], workdir: Path, index: int) -> list[float]:
    out = workdir / f"{'sar' if sar else 'plain'}-{index}"
    argv = ["train", "--sar" if sar else "--no-sar", "--epochs", str(epochs), "--output-dir", str(out),
            "--no-tensorboard", *extra]
    with contextlib.redirect_stdout(io.StringIO()):
        code = sarvit_main(argv)
    if code != 0:
        raise SystemExit(f"sarvit {' '.join(argv)} exited with {code}")
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [line["img_per_s"] for line in lines[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="runs of each kind")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is dropped)")
    parser.add_argument("extra", nargs="*", help="options for `sarvit train` (after --)")
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"sarvit {sarvit.__version__}, torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    figures: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as workdir:
        for index in range(args.pairs):
            for sar in ((True, False) if index % 2 == 0 else (False, True)):
                figures[sar] += epoch_throughputs(sar, args.epochs, args.extra, Path(workdir), index)
    with_sar, without = statistics.median(figures[True]), statistics.median(figures[False])
    print(f"whole-epoch throughput, median of {len(figures[True])} epochs each:")
    print(f"  without SAR {without:9.1f} img/s")
    print(f"  with SAR    {with_sar:9.1f} img/s")
    print(f"  SAR costs   {100 * (without / with_sar - 1):+8.2f} % time per image")


if __name__ == "__main__":
    main()
