"""`sarvit experiment NAME [options] [-- sarvit train options]`: run a named grid, then write its report.

Its options are rows of :mod:`sarvit.options`; :mod:`sarvit.cli` parses them (the words after ``--`` as
``args.train_args``) and calls :func:`run_experiment`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional, Sequence

from ..errors import SarvitError
from .grids import GRIDS, describe_grids, get_grid, scale_flags
from .record import RECORD, DamagedRecord, add_to_record, describe, read_record

__all__ = ["run_experiment", "parse_seeds"]


MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> [0, 1, 2]; ``"0,4,7"`` -> [0, 4, 7]."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()] if "," in text else None
        count = None if seeds is not None else int(text)
    except ValueError:
        raise SarvitError(f"--seeds: expected a count or a comma list of integers, got {text!r}") from None
    if count is not None:
        if count > MAX_SEEDS:
            raise SarvitError(f"--seeds {text}: expected at most {MAX_SEEDS} seeds (each is a training run)")
        seeds = list(range(count))
    # each run seeds numpy (through timm's random_seed), which takes 32 bits
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) >= 2 ** 32:
        raise SarvitError(f"--seeds: expected at least one seed, distinct, from 0 to 2**32 - 1, got {text!r}")
    return seeds


def _data_set(name: str) -> str:
    from ..data import canonical_dataset_name

    return canonical_dataset_name(name)


def _report_only_record(exp_dir: Path, grid_name: str) -> tuple[dict[str, str], Optional[list[int]]]:
    """The header of a report of the runs in ``exp_dir`` and the seeds its record names (None: no usable record)."""
    try:
        record = read_record(exp_dir)
    except DamagedRecord as error:
        return {"runs": f"unknown ({error}); each run's config.yaml says how it ran"}, None
    if record is None:
        return {"runs": f"not run by `sarvit experiment` (no {RECORD}): each run's config.yaml says how it ran"}, None
    if record["grid"] != grid_name:
        raise SarvitError(f"--report-only: {exp_dir} holds the runs of grid {record['grid']!r}, not {grid_name!r} "
                          f"(say `sarvit experiment {record['grid']} --report-only`)")
    return describe(record["scale"], record["data_set"], record["train_args"]), record["seeds"]


def run_experiment(args: argparse.Namespace, train_command: Optional[Sequence[str]] = None) -> int:
    from .report import write_report
    from .runner import TRAIN_COMMAND, check_plans, plan_runs, run_grid

    if args.list:
        print(describe_grids())
        return 0
    if not args.name:
        raise SarvitError(f"name a grid: {', '.join(GRIDS)} (or --list)")
    grid = get_grid(args.name)
    seeds = parse_seeds(str(args.seeds))
    data_set = _data_set(args.data_set)
    exp_dir = Path(args.output_dir or Path("output") / "experiments" / f"{grid.name}-{args.scale}-{data_set}")
    data_flags = ("--data-set", data_set) + (("--data-path", args.data_path) if args.data_path else ())
    base = (*data_flags, *scale_flags(args.scale, grid, data_set))
    plans = plan_runs(grid, exp_dir, seeds, base, list(args.train_args))
    if args.dry_run:
        for plan in plans:
            print(f"{plan.label}: sarvit {grid.command} {' '.join(plan.args)}")
        return 0
    # --report-only: the report describes the runs in the folder, not this call's (unused) options
    header = describe(args.scale, data_set, args.train_args)
    if args.report_only:
        header, stored_seeds = _report_only_record(exp_dir, grid.name)
        if stored_seeds is not None and stored_seeds != seeds:
            print(f"--report-only: the runs in {exp_dir} have seeds {', '.join(map(str, stored_seeds))} "
                  f"(its {RECORD}); reporting those, not this call's {', '.join(map(str, seeds))}", flush=True)
            seeds = stored_seeds
    outcome = None
    if not args.report_only:
        started = time.monotonic()
        check_plans(plans)  # refused before the record changes
        # before the runs, so an interrupted call leaves its record; the seeds of earlier calls are reported too
        record = {"grid": grid.name, "scale": args.scale, "data_set": data_set, "seeds": seeds,
                  "train_args": list(args.train_args)}
        reported = add_to_record(exp_dir, record, say=lambda line: print(line, flush=True))["seeds"]
        print(f"sarvit experiment {grid.name}: {len(grid.cells)} cells x {len(seeds)} seeds = {len(plans)} runs "
              f"in {exp_dir}/ (scale {args.scale}, {data_set}, {args.jobs} at a time)", flush=True)
        seeds = reported
        command = train_command or (*TRAIN_COMMAND[:-1], grid.command)  # `sarvit train` or `sarvit pretrain`
        outcome = run_grid(plans, jobs=args.jobs, train_command=command,
                           say=lambda line: print(line, flush=True))
        header["wall time of this call"] = f"{time.monotonic() - started:.0f} s"
    if args.report_only and not exp_dir.is_dir():
        raise SarvitError(f"--report-only: no experiment folder at {exp_dir}; run the grid first (without "
                          "--report-only) or give the --exp-dir it wrote")
    paths = write_report(grid, exp_dir, seeds, header)
    print(f"wrote {paths['report']} and {paths['results']}")
    if outcome is not None and not outcome.ok:
        print(f"{len(outcome.failed)} of {outcome.total} runs failed:")
        for label, log, code in outcome.failed:
            print(f"  {label} (exit code {code}): {log}")
        return 1
    return 0
