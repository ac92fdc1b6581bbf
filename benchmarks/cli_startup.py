"""Print how long the `sarvit` command line takes to answer, each in a fresh Python process.

    python benchmarks/cli_startup.py              # 5 runs of each, median and min of the wall time
    python benchmarks/cli_startup.py --repeats 11

Rows: a bare `python -c pass` (the floor); `import torch` alone; the `sarvit` script (sarvit_cli.main, no torch)
answering `--help`, `--version`, `train --help` and a bad argument; `python -m sarvit --help` (imports sarvit,
hence torch and timm); `import sarvit`. The source tree's src/ comes first on the path, so the figures are this
checkout's. Also prints the machine and its load, since a shared machine's figures vary with it.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LAUNCHER = "import sys; from sarvit_cli import main; sys.exit(main())"
ROWS = [
    ("python -c pass", ["-c", "pass"]),
    ("import torch", ["-c", "import torch"]),
    ("sarvit --help", ["-c", LAUNCHER, "--help"]),
    ("sarvit --version", ["-c", LAUNCHER, "--version"]),
    ("sarvit train --help", ["-c", LAUNCHER, "train", "--help"]),
    ("sarvit train --bogus", ["-c", LAUNCHER, "train", "--bogus"]),
    ("python -m sarvit --help", ["-m", "sarvit", "--help"]),
    ("import sarvit", ["-c", "import sarvit"]),
]


def _wall_time(arguments: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per row (default: 5)")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load:.2f}")
    print(f"{'command':<26} {'median s':>9} {'min s':>7}")
    for name, arguments in ROWS:
        _wall_time(arguments)  # warm the file cache
        times = [_wall_time(arguments) for _ in range(args.repeats)]
        print(f"{name:<26} {statistics.median(times):>9.2f} {min(times):>7.2f}")


if __name__ == "__main__":
    main()
