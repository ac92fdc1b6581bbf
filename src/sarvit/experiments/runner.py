"""Run a grid: one ordinary `sarvit train` run folder per cell and seed, in subprocesses, resumable.

``<exp-dir>/<cell>/seed<N>/`` is the run's ``--output-dir``. Whether a run has finished is read from the
run's own files: its ``config.yaml`` says how many epochs it trains, its ``log.jsonl`` how many it has
logged. A finished run is never started again; an unfinished one with a ``last.pth`` continues with
``--resume``; any other starts afresh. ``command.json`` beside them records the options the run was
planned with, so that the same folder is not silently reused for a different experiment.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml
from sarvit_cli.parser import add_options

from ..checkpoints import read_log
from ..errors import SarvitError
from ..train.pace import duration_words
from .grids import Grid

__all__ = ["RunPlan", "plan_runs", "run_state", "run_grid", "TRAIN_COMMAND", "GridOutcome"]

TRAIN_COMMAND = (sys.executable, "-m", "sarvit", "train")
# The experiment decides these for every run; given after `--` (in any spelling) they would break the grid's layout.
OWNED_OPTIONS = ("--output-dir", "--seed", "--resume", "--finetune", "--eval", "--config")
_OWNED_DESTS = {"output_dir": "--output-dir", "seed": "--seed", "resume": "--resume", "finetune": "--finetune",
                "eval": "--eval", "config": "--config"}


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


class _Resolver(argparse.ArgumentParser):
    def error(self, message: str):  # a bad value is the run's own parser's to report
        raise ValueError(message)


def _check_pass_through(train_args: Sequence[str], command: str = "train") -> None:
    """Refuse the options the experiment owns as the runs' parser (`sarvit train` or `sarvit pretrain`) reads them
    (``--resum``, ``--conf=x``, ``--output_dir`` are theirs too), not as spelt."""
    parser = _Resolver(add_help=False)
    add_options(parser, command)
    for index, arg in enumerate(train_args):
        if not arg.startswith("-"):
            continue
        try:  # one option at a time, with the value that follows it, to name the one that is owned
            given, _ = parser.parse_known_args(list(train_args[index:index + 2]))
        except ValueError:
            continue
        owned = [flag for dest, flag in _OWNED_DESTS.items() if dest in vars(given)]
        if owned:
            spelt = arg.split("=", 1)[0]
            named = spelt if spelt == owned[0] else f"{spelt} ({owned[0]})"
            raise SarvitError(f"{named} is set by the experiment for every run (folder "
                              "and seed); leave it out of the options after --")


def plan_runs(grid: Grid, exp_dir: Path, seeds: Sequence[int], base_flags: Sequence[str],
              train_args: Sequence[str]) -> list[RunPlan]:
    """Every run of the grid, seed-major (seed 0 of every cell first) so a partial grid is already paired."""
    _check_pass_through(train_args, grid.command)
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
            stored = yaml.safe_load(config_file.read_text()) or {}
            epochs = int(stored.get("epochs", 0)) if isinstance(stored, dict) else 0
        except (yaml.YAMLError, TypeError, ValueError, UnicodeDecodeError):
            epochs = 0
        logged = {line.get("epoch") for line in read_log(log_file)}  # a line cut short by a crash ends them
        if epochs > 0 and logged >= set(range(epochs)):
            return "finished"
    return "resumable" if (folder / "last.pth").is_file() else "new"


def _stored_args(plan: RunPlan) -> Optional[list]:
    """The options the run in ``plan.folder`` was started with (None: no run yet); refused when they differ."""
    record = plan.folder / "command.json"
    if not record.is_file():
        return None
    try:
        stored = json.loads(record.read_text())
    except (ValueError, UnicodeDecodeError):
        stored = None
    if not isinstance(stored, dict) or not isinstance(stored.get("args"), list):
        raise SarvitError(f"{record} is damaged (expected {{\"args\": [the run's options]}}); it records how "
                          f"the run in {plan.folder} was started: restore it, or remove that run's folder")
    stored = stored["args"]
    if stored != list(plan.args):
        raise SarvitError(
            f"{plan.folder} holds a run started with other options:\n  {' '.join(stored or [])}\nnow:\n  "
            f"{' '.join(plan.args)}\nuse another --exp-dir, or the options it was started with")
    return stored


def check_plans(plans: Sequence[RunPlan]) -> None:
    """Refuse, before anything is written, a grid whose folder holds a run started with other options."""
    for plan in plans:
        _stored_args(plan)


def _record_command(plan: RunPlan) -> None:
    """Write ``command.json`` for a run not started before (one that was is checked by :func:`check_plans`)."""
    record = plan.folder / "command.json"
    if not record.is_file():
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
    check_plans(plans)  # also for callers other than `sarvit experiment`, which checks before its record
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

    children = _Children()

    def run_one(plan: RunPlan) -> None:
        device = slots.get()
        try:
            state = run_state(plan.folder)
            resume = ("--resume", str(plan.folder / "last.pth")) if state == "resumable" else ()
            started = time.monotonic()
            with plan.console.open("a") as console:
                console.write(f"$ sarvit {train_command[-1]} {' '.join(plan.args + resume)}\n")
                console.flush()
                code = children.run([*train_command, *plan.args, *resume], stdout=console,
                                    stderr=subprocess.STDOUT, env=_environment(device, jobs))
            elapsed = time.monotonic() - started
        finally:
            slots.put(device)
        if code is None:  # stopped before it started
            return
        with lock:
            durations.append(elapsed)
            # A run killed after its final checkpoint but before its log line resumes to "nothing to train"
            # (exit 2) after rewriting the log from that checkpoint: finished, not failed.
            if (code == 0 or resume) and run_state(plan.folder) == "finished":
                outcome.completed.append(plan.label)
                verdict = f"done in {elapsed:.0f} s" + (" (resumed)" if resume else "")
            elif children.stopped_by is not None:
                verdict = f"stopped (exit code {code}); the next call resumes it"
            else:
                outcome.failed.append((plan.label, plan.console, code))
                verdict = f"FAILED (exit code {code}), see {plan.console}"
            done = len(outcome.skipped) + len(outcome.completed) + len(outcome.failed)
            say(f"[{done}/{len(plans)}] {plan.label} {verdict}{_eta(durations, len(plans) - done, jobs)}")

    pool = ThreadPoolExecutor(max_workers=jobs)
    with children.forwarding_signals():
        try:
            for future in [pool.submit(run_one, plan) for plan in todo]:
                future.result()
        finally:  # queued runs must not start; running ones are stopped and waited for, never left behind
            children.stop()
            pool.shutdown(wait=True, cancel_futures=True)
    if children.stopped_by is not None:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(children.stopped_by).name}")
    return outcome


class _Children:
    """The grid's training processes. Each runs in its own session, so a terminal's Ctrl-C reaches the experiment
    alone; SIGINT or SIGTERM to the experiment is passed on to every run, which saves and exits, and is waited for."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: the signal handler runs in the main thread
        self.running: set[subprocess.Popen] = set()
        self.closed = False
        self.stopped_by: Optional[int] = None

    def run(self, command: Sequence[str], **kwargs) -> Optional[int]:
        """The exit code of ``command``, or None when the grid was stopped before it could start."""
        with self.lock:
            if self.closed or self.stopped_by is not None:
                return None
            process = subprocess.Popen(list(command), start_new_session=True, **kwargs)
            self.running.add(process)
        try:
            return process.wait()
        finally:
            with self.lock:
                self.running.discard(process)

    def stop(self) -> None:
        """No run starts any more; one still running (the experiment itself failing) is stopped and waited for."""
        with self.lock:
            self.closed = True
            running = list(self.running)
        self._send(running, signal.SIGTERM)
        for process in running:
            process.wait()

    def _on_signal(self, signum: int, frame) -> None:
        with self.lock:
            self.stopped_by = signum
            running = list(self.running)
        self._send(running, signum)

    @staticmethod
    def _send(processes: list, signum: int) -> None:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    @contextlib.contextmanager
    def forwarding_signals(self):
        """While the grid runs (from the main thread), SIGINT and SIGTERM stop it instead of the process."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
