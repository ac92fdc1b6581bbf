"""Read a grid's run folders into per-run metrics, and gather them into per-cell statistics."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from ..checkpoints import read_log
from .grids import Grid
from .runner import run_state
from .stats import paired_difference, summarize

__all__ = ["METRICS", "SSL_METRICS", "metrics_of", "read_history", "run_metrics", "collect", "to_json"]

# (key, label, log.jsonl key, how): "max" over epochs, or the "final" epoch's value
METRICS = (
    ("best_top1", "best top-1 (%)", "val_top1", "max"),
    ("final_top1", "final top-1 (%)", "val_top1", "final"),
    ("entropy", "spatial entropy", "val_entropy", "final"),
    ("jaccard", "attention Jaccard (%)", "val_jaccard", "final"),
    ("train_top1", "final train top-1 (%)", "train_top1", "final"),  # near 100 while val is not: overfitting
)
# `sarvit pretrain` runs: the evaluation network's k-NN top-1 every epoch, its linear probe at the end
SSL_METRICS = (
    ("init_top1", "k-NN top-1 at initialisation (%)", "knn_init_top1", "final"),
    ("best_top1", "best k-NN top-1 (%)", "knn_top1", "max"),
    ("final_top1", "final k-NN top-1 (%)", "knn_top1", "final"),
    ("linear_top1", "linear-probe top-1 (%)", "linear_top1", "final"),
    ("entropy", "spatial entropy", "val_entropy", "final"),
    ("jaccard", "attention Jaccard (%)", "val_jaccard", "final"),
)


def metrics_of(grid: Grid) -> tuple:
    """The figures a grid's runs are scored by: ``(key, label, log.jsonl key, "max" | "final")`` rows."""
    return SSL_METRICS if grid.command == "pretrain" else METRICS


def read_history(folder: Path) -> list[dict]:
    """The epochs of a run's ``log.jsonl`` (:func:`sarvit.checkpoints.read_log`: a bad line ends them)."""
    return read_log(Path(folder) / "log.jsonl")


def run_metrics(history: Sequence[dict], metrics: Sequence = METRICS) -> dict[str, Optional[float]]:
    """Best and final val top-1, final spatial entropy and Jaccard of one run (None where not logged); ``metrics``:
    the rows to read (:func:`metrics_of`)."""
    out: dict[str, Optional[float]] = {}
    for key, _, source, how in metrics:
        values = [float(line[source]) for line in history if _is_number(line.get(source))]
        out[key] = (max(values) if how == "max" else values[-1]) if values else None
    return out


def _is_number(value) -> bool:
    """A finite number (a damaged log's strings and NaNs are not figures to average)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def collect(grid: Grid, exp_dir: Path, seeds: Sequence[int]) -> dict:
    """Per cell: each finished seed's metrics and curve, mean ± std, and the paired difference to its baseline."""
    exp_dir = Path(exp_dir)
    cells, missing = {}, []
    metrics = metrics_of(grid)
    curve_key = next(source for key, _, source, _ in metrics if key == "best_top1")
    for cell in grid.cells:
        runs, curves = {}, {}
        for seed in seeds:
            folder = exp_dir / cell.name / f"seed{seed}"
            if run_state(folder) != "finished":
                missing.append(f"{cell.name}/seed{seed}")
                continue
            history = read_history(folder)
            runs[seed] = run_metrics(history, metrics)
            curves[seed] = [float(line[curve_key]) if _is_number(line.get(curve_key)) else None for line in history]
        cells[cell.name] = {"flags": list(cell.flags), "baseline": cell.baseline, "arm": cell.series, "x": cell.x,
                            "runs": runs, "curves": curves,
                            "summary": {key: summarize([r[key] for r in runs.values()]) for key, *_ in metrics}}
    for name, cell in cells.items():
        base = cells.get(cell["baseline"]) if cell["baseline"] else None
        cell["vs_baseline"] = {} if base is None else {
            key: paired_difference({s: r[key] for s, r in cell["runs"].items()},
                                   {s: r[key] for s, r in base["runs"].items()}) for key, *_ in metrics}
    for cell in cells.values():  # pretraining: the final k-NN against the same run's network at initialisation
        cell["over_init"] = None if grid.command != "pretrain" else paired_difference(
            {s: r["final_top1"] for s, r in cell["runs"].items()}, {s: r["init_top1"] for s, r in cell["runs"].items()})
    return {"grid": grid.name, "cells": cells, "missing": missing, "metrics": metrics}


def to_json(results: dict) -> dict:
    """``results`` as plain data (summaries and differences become dicts, seeds become strings)."""
    cells = {}
    for name, cell in results["cells"].items():
        cells[name] = {
            "flags": cell["flags"], "baseline": cell["baseline"], "arm": cell["arm"], "x": cell["x"],
            "runs": {f"seed{s}": metrics for s, metrics in cell["runs"].items()},
            "summary": {key: value.to_dict() for key, value in cell["summary"].items()},
            "vs_baseline": {key: (value.to_dict() if value is not None else None)
                            for key, value in cell["vs_baseline"].items()},
            "over_init": cell["over_init"].to_dict() if cell["over_init"] is not None else None,
        }
    return {**{k: v for k, v in results.items() if k not in ("cells", "metrics")}, "cells": cells}
