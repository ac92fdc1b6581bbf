"""Run a grid: one ordinary `sarvit train` run folder per cell and seed, in subprocesses, resumable.

``<exp-dir>/<cell>/seed<N>/`` is the run's ``--output-dir``. Whether a run has finished is read from the
run's own files: its ``config.yaml`` says how many epochs it trains, its ``log.jsonl`` how many it has
logged. A finished run is never started again; an unfinished one with a ``last.pth`` continues with
``--resume``; any other starts afresh. ``command.json`` beside them records the options the run was
planned with, so that the same folder is not silently reused for a different experiment.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml

from ..errors import SarvitError
from ..train.pace import duration_words
from .grids import Grid

__all__ = ["RunPlan", "plan_runs", "run_state", "run_grid", "TRAIN_COMMAND", "GridOutcome"]

TRAIN_COMMAND = (sys.executable, "-m", "sarvit", "train")
# The experiment decides these for every run; given after `--` they would break the grid's layout.
OWNED_OPTIONS = ("--output-dir", "--output_dir", "--seed", "--resume", "--finetune", "--eval", "--config")


@dataclass(frozen=True)
class RunPlan:
    cell: str
    seed: int
    folder: Path
    args: tuple[str, ...]          # the `sarvit train` options, without --resume

    @property
    def label(self) -> str:
        return f"{self.cell}/seed{self.seed}"

    @property
    def console(self) -> Path:
        """stdout and stderr of the run's process."""
        return self.folder / "train.out"


def _check_pass_through(train_args: Sequence[str]) -> None:
    for arg in train_args:
        if arg.split("=", 1)[0] in OWNED_OPTIONS:
            raise SarvitError(f"{arg.split('=', 1)[0]} is set by the experiment for every run (folder and seed); "
                              "leave it out of the options after --")


def plan_runs(grid: Grid, exp_dir: Path, seeds: Sequence[int], base_flags: Sequence[str],
              train_args: Sequence[str]) -> list[RunPlan]:
    """Every run of the grid, seed-major (seed 0 of every cell first) so a partial grid is already paired."""
    _check_pass_through(train_args)
    plans = []
    for seed in seeds:
        for cell in grid.cells:
            folder = Path(exp_dir) / cell.name / f"seed{seed}"
            args = (*base_flags, *cell.flags, *train_args, "--seed", str(seed), "--output-dir", str(folder))
            plans.append(RunPlan(cell.name, seed, folder, args))
    return plans


def run_state(folder: Path) -> str:
    """``finished``, ``resumable`` (a checkpoint to continue from) or ``new``, from the run's own files."""
    folder = Path(folder)
    config_file, log_file = folder / "config.yaml", folder / "log.jsonl"
    if config_file.is_file() and log_file.is_file():
        try:
            epochs = int((yaml.safe_load(config_file.read_text()) or {}).get("epochs", 0))
        except (yaml.YAMLError, TypeError, ValueError):
            epochs = 0
        logged = set()
        for line in log_file.read_text().splitlines():
            try:
                logged.add(int(json.loads(line)["epoch"]))
            except (ValueError, KeyError, TypeError):
                break  # a line cut short by a crash ends what the log can vouch for
        if epochs > 0 and logged >= set(range(epochs)):
            return "finished"
    return "resumable" if (folder / "last.pth").is_file() else "new"


def _record_command(plan: RunPlan) -> None:
    """Write ``command.json``, or refuse when the folder holds a run planned with other options."""
    record = plan.folder / "command.json"
    if record.is_file():
        stored = json.loads(record.read_text()).get("args")
        if stored != list(plan.args):
            raise SarvitError(
                f"{plan.folder} holds a run started with other options:\n  {' '.join(stored or [])}\nnow:\n  "
                f"{' '.join(plan.args)}\nuse another --exp-dir, or the options it was started with")
        return
    plan.folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"args": list(plan.args)}, indent=1) + "\n")


@dataclass
class GridOutcome:
    total: int
    skipped: list[str]           # finished before this call
    completed: list[str]
    failed: list[tuple[str, Path, int]]  # label, console log, exit code

    @property
    def ok(self) -> bool:
        return not self.failed


def _devices(jobs: int) -> list[Optional[str]]:
    """One CUDA_VISIBLE_DEVICES value per job slot (round-robin over the GPUs), or None on CPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g for g in visible.split(",") if g.strip()]
    else:
        try:
            import torch

            gpus = [str(i) for i in range(torch.cuda.device_count())]
        except ImportError:
            gpus = []
    if not gpus:
        return [None] * jobs
    return [gpus[slot % len(gpus)] for slot in range(jobs)]


def _environment(device: Optional[str], jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    if "OMP_NUM_THREADS" not in env:  # several runs at once share the cores instead of oversubscribing them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    return env


def _eta(durations: list[float], remaining: int, jobs: int) -> str:
    if not durations or remaining <= 0:
        return ""
    seconds = sum(durations) / len(durations) * remaining / max(1, min(jobs, remaining))
    return f", about {duration_words(seconds)} left"


def run_grid(plans: Sequence[RunPlan], jobs: int = 1, train_command: Sequence[str] = TRAIN_COMMAND,
             say: Callable[[str], None] = print) -> GridOutcome:
    """Run every unfinished plan (``jobs`` at a time); a failing run is reported and the others go on."""
    if jobs < 1:
        raise SarvitError(f"--jobs must be at least 1, got {jobs}")
    outcome = GridOutcome(total=len(plans), skipped=[], completed=[], failed=[])
    todo = []
    for plan in plans:
        _record_command(plan)
        if run_state(plan.folder) == "finished":
            outcome.skipped.append(plan.label)
        else:
            todo.append(plan)
    if outcome.skipped:
        say(f"{len(outcome.skipped)} of {len(plans)} runs finished before, kept as they are")
    slots: queue.Queue = queue.Queue()
    for device in _devices(jobs):
        slots.put(device)
    lock = threading.Lock()
    durations: list[float] = []

    def run_one(plan: RunPlan) -> None:
        device = slots.get()
        try:
            state = run_state(plan.folder)
            resume = ("--resume", str(plan.folder / "last.pth")) if state == "resumable" else ()
            started = time.monotonic()
            with plan.console.open("a") as console:
                console.write(f"$ sarvit {train_command[-1]} {' '.join(plan.args + resume)}\n")
                console.flush()
                code = subprocess.call([*train_command, *plan.args, *resume], stdout=console,
                                       stderr=subprocess.STDOUT, env=_environment(device, jobs))
            elapsed = time.monotonic() - started
        finally:
            slots.put(device)
        with lock:
            durations.append(elapsed)
            # A run killed after its final checkpoint but before its log line resumes to "nothing to train"
            # (exit 2) after rewriting the log from that checkpoint: finished, not failed.
            if (code == 0 or resume) and run_state(plan.folder) == "finished":
                outcome.completed.append(plan.label)
                verdict = f"done in {elapsed:.0f} s" + (" (resumed)" if resume else "")
            else:
                outcome.failed.append((plan.label, plan.console, code))
                verdict = f"FAILED (exit code {code}), see {plan.console}"
            done = len(outcome.skipped) + len(outcome.completed) + len(outcome.failed)
            say(f"[{done}/{len(plans)}] {plan.label} {verdict}{_eta(durations, len(plans) - done, jobs)}")

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in [pool.submit(run_one, plan) for plan in todo]:
            future.result()
    finally:  # on Ctrl-C the running runs stop with it (same process group); queued ones must not start
        pool.shutdown(wait=True, cancel_futures=True)
    return outcome
