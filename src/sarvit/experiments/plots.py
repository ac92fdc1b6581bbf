"""The report's pictures: bars with error bars, accuracy along a sweep, validation curves of one seed per arm."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..figures import new_figure, save_figure
from .grids import Grid

__all__ = ["plot_bars", "plot_sweep", "plot_curves"]


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    return save_figure(figure, path)


def plot_bars(results: dict, path: Path) -> Optional[Path]:
    """One panel per metric that any run logged: mean per cell, the standard deviation as error bar."""
    cells = results["cells"]
    panels = [(key, label) for key, label, *_ in results["metrics"] if any(c["summary"][key].n for c in cells.values())]
    if not panels:
        return None
    names = list(cells)
    figure, axes = new_figure(1, len(panels), figsize=(max(4.0, 0.45 * len(names) + 1.5) * len(panels), 3.8),
                                squeeze=False)
    for axis, (key, label) in zip(axes[0], panels):
        summaries = [cells[name]["summary"][key] for name in names]
        means = [s.mean if s.n else 0.0 for s in summaries]
        errors = [s.std or 0.0 for s in summaries]
        colors = ["0.6" if cells[name]["baseline"] is None else "C0" for name in names]
        axis.bar(range(len(names)), means, yerr=errors, capsize=3, color=colors)
        axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        axis.set_title(label)
    figure.suptitle(f"{results['grid']}: mean ± std over seeds (grey: baselines)", fontsize=10)
    return _save(figure, path)


def plot_sweep(results: dict, grid: Grid, path: Path, key: str = "best_top1") -> Optional[Path]:
    """Accuracy against the grid's sweep variable (subset ratio, lambda), one line per arm."""
    if grid.sweep is None:
        return None
    figure, axis = new_figure(figsize=(5.5, 3.8))
    series: dict[str, list] = {}
    for cell in results["cells"].values():
        summary = cell["summary"][key]
        if summary.n:
            series.setdefault(cell["arm"], []).append((cell["x"], summary.mean, summary.std or 0.0))
    for arm, points in series.items():
        points.sort()
        axis.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                      capsize=3, label=arm)
    if not series:
        return None
    if grid.sweep == "lambda":
        axis.set_xscale("symlog", linthresh=1e-3)
    axis.set_xlabel(grid.sweep)
    axis.set_ylabel(dict((k, label) for k, label, *_ in results["metrics"])[key])
    axis.legend(fontsize=8)
    axis.set_title(f"{results['grid']}: mean ± std over seeds", fontsize=10)
    return _save(figure, path)


def plot_curves(results: dict, path: Path) -> Optional[Path]:
    """Validation top-1 (k-NN top-1 for pretraining grids) per epoch of the lowest finished seed of every cell."""
    figure, axis = new_figure(figsize=(6.5, 4.0))
    for name, cell in results["cells"].items():
        if cell["curves"]:
            seed = min(cell["curves"])
            curve = cell["curves"][seed]
            axis.plot(range(1, len(curve) + 1), [float("nan") if v is None else v for v in curve],
                      label=f"{name} (seed {seed})", linestyle="--" if cell["baseline"] is None else "-")
    if not axis.lines:
        return None
    axis.set_xlabel("epoch")
    axis.set_ylabel(dict((k, label) for k, label, *_ in results["metrics"])["best_top1"].replace("best ", ""))
    axis.legend(fontsize=7)
    axis.set_title(f"{results['grid']}: one seed per cell", fontsize=10)
    return _save(figure, path)
