"""``report.md``, ``results.json`` and the PNGs of a grid, written into its experiment folder."""
from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Optional, Sequence

from ..checkpoints import write_text
from .grids import Grid
from .plots import plot_bars, plot_curves, plot_sweep
from .results import collect, to_json
from .stats import MIN_PAIRS_FOR_VERDICT

__all__ = ["write_report"]


def _cell_table(results: dict) -> list[str]:
    metrics = results["metrics"]
    head = "| cell | flags | seeds | " + " | ".join(label for _, label, *_ in metrics) + " |"
    lines = [head, "|" + "---|" * (3 + len(metrics))]
    for name, cell in results["cells"].items():
        n = max(s.n for s in cell["summary"].values())
        values = " | ".join(cell["summary"][key].text(3 if key == "entropy" else 2) for key, *_ in metrics)
        lines.append(f"| {name} | `{' '.join(cell['flags'])}` | {n} | {values} |")
    return lines


def _difference_table(results: dict) -> list[str]:
    lines = ["| cell | vs | metric | paired seeds | difference [95 % CI] | |", "|---|---|---|---|---|---|"]
    for name, cell in results["cells"].items():
        for key, label, *_ in results["metrics"]:
            difference = cell["vs_baseline"].get(key)
            if difference is None:
                continue
            digits = 3 if key == "entropy" else 2
            lines.append(f"| {name} | {cell['baseline']} | {label} | {difference.n} | {difference.text(digits)} | "
                         f"{difference.verdict()} |")
    return lines if len(lines) > 2 else ["(no cell has a finished baseline to compare with yet)"]


def _over_init_table(results: dict) -> list[str]:
    lines = ["| cell | paired seeds | final k-NN top-1 - at initialisation [95 % CI] | |", "|---|---|---|---|"]
    for name, cell in results["cells"].items():
        if cell["over_init"] is not None:
            lines.append(f"| {name} | {cell['over_init'].n} | {cell['over_init'].text(2)} | "
                         f"{cell['over_init'].verdict('at initialisation')} |")
    return lines if len(lines) > 2 else ["(no finished run logged its k-NN at initialisation, `knn_init_top1`; "
                                         "runs made before sarvit logged it hold it in last.pth's `knn_at_init`)"]


def _noise_sentence(results: dict) -> str:
    """One plain sentence on the accuracy differences: which stand out of the noise, which do not."""
    clear, noise = [], []
    for name, cell in results["cells"].items():
        difference = cell["vs_baseline"].get("best_top1")
        if difference is not None and difference.within_noise is not None:
            (noise if difference.within_noise else clear).append(f"{name} ({difference.mean:+.2f})")
    parts = []
    if noise:
        parts.append("Best top-1 within noise of the baseline (the 95 % interval contains 0): " + ", ".join(noise) + ".")
    if clear:
        parts.append("Best top-1 different from the baseline beyond the noise: " + ", ".join(clear) + ".")
    return " ".join(parts) or f"Too few paired seeds to judge any difference (at least {MIN_PAIRS_FOR_VERDICT} are needed)."


def render_markdown(results: dict, grid: Grid, pictures: Sequence[Path], header: dict) -> str:
    lines = [f"# sarvit experiment {grid.name}", "", grid.description + ".", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", "## Per cell (mean ± std over seeds)", "", *_cell_table(results), "",
              "Best top-1: the highest validation top-1 over the epochs; the other columns are the last epoch's. "
              "Spatial entropy: mean over the validation images of the last block's [CLS] maps (lower: more "
              "concentrated). Jaccard: attention against the objects' masks (synthetic set only)."
              + (" Pretraining grids: the evaluation network (DINO's teacher, MoCo-v3's momentum encoder) is scored; "
                 "k-NN top-1 every epoch, the linear probe at the end." if grid.command == "pretrain" else ""), "",
              "## Difference to the baseline (paired by seed, Student t)", "", *_difference_table(results), "",
              _noise_sentence(results), ""]
    if grid.command == "pretrain":
        lines += ["## k-NN over the network at initialisation (paired by seed, Student t)", "",
                  "Each run's final k-NN top-1 against its own network before the first step (same seed).", "",
                  *_over_init_table(results), ""]
    if results["missing"]:
        lines += [f"Not finished (left out of the statistics): {', '.join(results['missing'])}.", ""]
    lines += ["## The papers' figures (theirs, for orientation)", "", f"{grid.paper_source}.", ""]
    if grid.paper_rows:  # a grid with no paper figure gets no empty table
        lines += ["| paper row | paper value |", "|---|---|",
                  *(f"| {row.label} | {row.value} |" for row in grid.paper_rows), "",
                  "Their setting (ViT-S/16, ImageNet, 100-300 epochs) is not this grid's unless `--scale paper` ran "
                  "on the same data; compare directions, not numbers.", ""]
    if pictures:
        lines += ["## Plots", "", *(f"![{p.stem}]({p.name})" for p in pictures), ""]
    return "\n".join(lines)


def _finite(value):
    """``value`` with every non-finite float (NaN, inf) replaced by None, through dicts and lists."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and not math.isfinite(value):
        return None  # numpy's floats too
    return value


def write_report(grid: Grid, exp_dir: Path, seeds: Sequence[int], header: Optional[dict] = None) -> dict[str, Path]:
    """Collect the finished runs of ``exp_dir`` and write ``results.json``, ``report.md`` and the PNGs."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    results = collect(grid, exp_dir, seeds)
    header = {"seeds": ", ".join(str(s) for s in seeds), **(header or {})}
    pictures = [p for p in (plot_bars(results, exp_dir / "bars.png"),
                            plot_sweep(results, grid, exp_dir / f"accuracy_vs_{(grid.sweep or '').replace(' ', '_')}.png"),
                            plot_curves(results, exp_dir / "curves.png")) if p is not None]
    paths = {"report": exp_dir / "report.md", "results": exp_dir / "results.json"}
    write_text(render_markdown(results, grid, pictures, header), paths["report"])
    papers = {"source": grid.paper_source, "rows": {row.label: row.value for row in grid.paper_rows}}
    data = {**to_json(results), **header, "papers": papers}
    # strict JSON: a NaN (a diverged run's figure) is null, not the bare NaN other readers reject
    write_text(json.dumps(_finite(data), indent=1, default=float, allow_nan=False) + "\n", paths["results"])
    paths.update({p.stem: p for p in pictures})
    return paths
