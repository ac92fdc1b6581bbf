"""The per-head report of ``sarvit analyze`` as text."""
from __future__ import annotations

__all__ = ["format_head_table"]


def format_head_table(summary: dict) -> str:
    """A text table of :func:`sarvit.analysis.runs.head_report`'s result: one row per head and a mean row."""
    header = f"{'head':>6}  {'spatial entropy':>15}  {'(std)':>7}  {'components':>10}  {'one blob':>8}"
    lines = [header, "-" * len(header)]
    for row in summary["per_head"]:
        lines.append(
            f"{row['head']:>6}  {row['spatial_entropy']:>15.4f}  {row['spatial_entropy_std']:>7.4f}  "
            f"{row['components']:>10.2f}  {100 * row['single_component']:>7.1f}%"
        )
    if summary.get("mean"):
        mean = summary["mean"]
        lines.append("-" * len(header))
        lines.append(
            f"{'mean':>6}  {mean['spatial_entropy']:>15.4f}  {'':>7}  {mean['components']:>10.2f}  "
            f"{100 * mean['single_component']:>7.1f}%"
        )
    return "\n".join(lines)
