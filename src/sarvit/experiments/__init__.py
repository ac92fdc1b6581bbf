"""Grids of `sarvit train` runs over seeds, their statistics and reports (`sarvit experiment`).

The runs are subprocesses (`python -m sarvit train`), so nothing here imports the training code.
"""
from .grids import GRIDS, SCALES, Cell, Grid, get_grid, scale_flags
from .runner import RunPlan, plan_runs, run_grid, run_state
from .stats import PairedDifference, Summary, paired_difference, summarize

__all__ = ["GRIDS", "SCALES", "Cell", "Grid", "get_grid", "scale_flags", "RunPlan", "plan_runs", "run_grid",
           "run_state", "PairedDifference", "Summary", "paired_difference", "summarize"]
