"""Corruption errors -> corruption errors normalised by a reference (CE), their mean (mCE), a table and a heat map.

The definitions are Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), Sec. 3: with ``E[s, c]`` a model's top-1 error on corruption ``c`` at severity ``s``,
``CE_c = sum_s E[s, c] / sum_s E_ref[s, c]``, ``mCE`` = the mean of ``CE_c`` over the 15 corruptions, and the
relative ``CE_c = sum_s (E[s, c] - E_clean) / sum_s (E_ref[s, c] - E_ref_clean)``. ImageNet-C's reference is
AlexNet, whose errors the authors publish averaged over the five severities (:data:`ALEXNET_ERRORS`); the four
extra corruptions have no published AlexNet error here and are reported, not normalised. Every error is in
percent; so are CE and mCE (AlexNet = 100).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ..data.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES
from ..errors import SarvitError

__all__ = ["ALEXNET_ERRORS", "alexnet_scores", "baseline_scores", "corruption_table", "heatmap_figure",
           "save_heatmap"]

# AlexNet's top-1 error on ImageNet-C, the mean over severities 1-5 (as a fraction), per corruption: the values
# the authors publish with the benchmark (hendrycks/robustness, ImageNet-C evaluation code) and use for Tab. 1.
ALEXNET_ERRORS = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640, "defocus_blur": 0.819880,
    "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572,
    "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
Errors = Mapping[str, Mapping[int, float]]  # corruption -> severity -> top-1 error (%)


def _mean_of(ce: Mapping[str, Optional[float]]) -> Optional[float]:
    """The mCE: over the 15 corruptions present (the extras only count when nothing else was measured)."""
    main = [value for name, value in ce.items() if name in CORRUPTIONS and value is not None]
    values = main or [value for value in ce.values() if value is not None]
    return float(np.mean(values)) if values else None


def alexnet_scores(errors: Errors) -> dict:
    """``{"ce": {corruption: CE or None}, "mce", "mce_corruptions"}`` normalised by AlexNet's errors.

    A corruption gets a CE only with all five severities measured (AlexNet's constants are five-severity means)
    and only if it is one of the 15; the mCE is the mean over those, ``mce_corruptions`` says how many.

    Example:
        >>> scores = alexnet_scores({"fog": {s: 50.0 for s in range(1, 6)}})
        >>> round(scores["ce"]["fog"], 2), scores["mce_corruptions"]
        (61.03, 1)
    """
    ce = {}
    for name, by_severity in errors.items():
        complete = set(by_severity) == set(SEVERITIES) and name in ALEXNET_ERRORS
        # errors in %, constants as fractions: CE (%) = 100 * mean_s(E / 100) / E_AlexNet
        ce[name] = float(np.mean(list(by_severity.values()))) / ALEXNET_ERRORS[name] if complete else None
    used = [name for name in ce if name in CORRUPTIONS and ce[name] is not None]
    return {"ce": ce, "mce": _mean_of({name: ce[name] for name in used}), "mce_corruptions": len(used),
            "reference": "AlexNet (Hendrycks & Dietterich, ICLR 2019)"}


def baseline_scores(errors: Errors, clean: float, baseline: Errors, baseline_clean: float, source: str) -> dict:
    """CE and relative CE of ``errors`` against a baseline model's errors on the same corrupted images.

    ``{"ce", "mce", "relative_ce", "relative_mce", "reference"}``; a relative CE whose baseline lost nothing to the
    corruption (denominator 0) is None. Raises :class:`SarvitError` when the baseline lacks a measured pair.

    Example:
        >>> scores = baseline_scores({"fog": {1: 30.0, 2: 50.0}}, 10.0, {"fog": {1: 40.0, 2: 60.0}}, 20.0, "b.json")
        >>> round(float(scores["ce"]["fog"]), 2), round(float(scores["relative_ce"]["fog"]), 2)
        (80.0, 100.0)
    """
    missing = [f"{name}:{severity}" for name, by_severity in errors.items() for severity in by_severity
               if severity not in baseline.get(name, {})]
    if missing:
        raise SarvitError(f"--baseline {source}: it has no error for {', '.join(missing[:6])}; evaluate the baseline "
                          "with the same --corrupt (and --seed) first")
    ce, relative = {}, {}
    for name, by_severity in errors.items():
        ours = np.array([by_severity[s] for s in by_severity], dtype=np.float64)
        theirs = np.array([baseline[name][s] for s in by_severity], dtype=np.float64)
        ce[name] = 100.0 * ours.sum() / theirs.sum() if theirs.sum() > 0 else None
        lost = (theirs - baseline_clean).sum()
        relative[name] = 100.0 * (ours - clean).sum() / lost if lost != 0 else None
    return {"ce": ce, "mce": _mean_of(ce), "relative_ce": relative, "relative_mce": _mean_of(relative),
            "reference": f"baseline {source}"}


def _shown(value: Optional[float], width: int = 6) -> str:
    return f"{value:{width}.1f}" if value is not None and math.isfinite(value) else f"{'-':>{width}}"


def corruption_table(errors: Errors, scores: Optional[dict] = None) -> str:
    """A text table: a row per corruption with its error at each severity, its mean, CE (and relative CE)."""
    ce = (scores or {}).get("ce", {})
    relative = (scores or {}).get("relative_ce")
    header = f"{'corruption':<18}" + "".join(f"{'s' + str(s):>7}" for s in SEVERITIES) + f"{'mean':>7}"
    header += f"{'CE':>7}" if scores else ""
    header += f"{'relCE':>7}" if relative is not None else ""
    lines = [header]
    for name in [*CORRUPTIONS, *EXTRA_CORRUPTIONS]:
        if name not in errors:
            continue
        row = errors[name]
        line = f"{name:<18}" + "".join(f" {_shown(row.get(s))}" for s in SEVERITIES)
        line += f" {_shown(float(np.mean(list(row.values()))))}"
        line += f" {_shown(ce.get(name))}" if scores else ""
        line += f" {_shown(relative.get(name))}" if relative is not None else ""
        lines.append(line)
    if scores and scores.get("mce") is not None:
        lines.append(f"mCE {scores['mce']:.1f} (reference: {scores['reference']})"
                     + (f", relative mCE {scores['relative_mce']:.1f}" if scores.get("relative_mce") is not None
                        else ""))
    return "\n".join(lines)


def heatmap_figure(errors: Errors, title: str):
    """A matplotlib ``Figure`` (no pyplot, no backend change): top-1 error per corruption (rows) and severity."""
    from matplotlib.figure import Figure

    names = [name for name in (*CORRUPTIONS, *EXTRA_CORRUPTIONS) if name in errors]
    grid = np.array([[errors[name].get(s, np.nan) for s in SEVERITIES] for name in names], dtype=np.float64)
    figure = Figure(figsize=(5.5, 0.32 * len(names) + 1.4))
    axis = figure.add_subplot()
    image = axis.imshow(grid, cmap="magma_r", vmin=0.0, vmax=100.0, aspect="auto")
    axis.set_xticks(range(len(SEVERITIES)), [str(s) for s in SEVERITIES])
    axis.set_yticks(range(len(names)), [name.replace("_", " ") for name in names], fontsize=8)
    axis.set_xlabel("severity")
    for row, col in zip(*np.nonzero(np.isfinite(grid))):
        value = grid[row, col]
        axis.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=7,
                  color="white" if value > 55 else "black")
    figure.colorbar(image, ax=axis, label="top-1 error (%)")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def save_heatmap(errors: Errors, title: str, path: Path) -> Path:
    heatmap_figure(errors, title).savefig(path, dpi=100, format="png")
    return path
