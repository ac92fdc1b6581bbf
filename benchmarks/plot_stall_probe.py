"""Curves of `sar_stall_probe.py` outputs: task loss, smallest map mass, mean [CLS] attention entropy per arm.

    python benchmarks/plot_stall_probe.py OUT.png probe-*.out
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(out: str, files: list[str]) -> None:
    series = defaultdict(list)
    for name in files:
        for line in open(name):
            if line.startswith("{"):
                row = json.loads(line)
                series[f"{row['arm']} (seed {row['seed']})"].append(row)
    panels = (("task loss (train CE)", lambda r: r["ce"], False),
              ("smallest map mass sum ReLU(S - mean)", lambda r: r["diag_min_map_mass"], True),
              ("[CLS] attention entropy, head mean (ln 64 = 4.16 flat)",
               lambda r: sum(r[f"diag_attention_entropy_h{h}"] for h in range(4)) / 4, False))
    figure, axes = plt.subplots(1, len(panels), figsize=(14, 3.8))
    for axis, (title, value, log) in zip(axes, panels):
        for label, rows in series.items():
            axis.plot([r["epoch"] for r in rows], [value(r) for r in rows], marker="o", ms=3, label=label)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("epoch")
        if log:
            axis.set_yscale("log")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
