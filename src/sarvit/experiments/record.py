"""``experiment.json``: how the grid in an experiment folder was run (grid, scale, data set, options, seeds).

It is written before the first run, so an interrupted call leaves it too; the calls of one experiment add their
seeds to it, and ``--report-only`` reports what it says instead of the call's own (unused) options.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from ..errors import SarvitError

__all__ = ["RECORD", "DamagedRecord", "read_record", "add_to_record", "describe"]

RECORD = "experiment.json"
# what makes two calls one experiment (their seeds may differ)
_SAME = ("grid", "scale", "data_set", "train_args")


class DamagedRecord(Exception):
    """The folder's record cannot be read or is not a record."""


def describe(scale: str, data_set: str, train_args) -> dict[str, str]:
    """The report's header lines for an experiment."""
    return {"scale": scale, "data set": data_set, "extra train options": " ".join(train_args) or "none"}


def _is_record(record) -> bool:
    if not isinstance(record, dict):
        return False
    if not all(isinstance(record.get(key), str) for key in ("grid", "scale", "data_set")):
        return False
    options, seeds = record.get("train_args"), record.get("seeds")
    return (isinstance(options, list) and all(isinstance(option, str) for option in options)
            and isinstance(seeds, list) and bool(seeds) and len(set(seeds)) == len(seeds)
            and all(type(seed) is int and 0 <= seed < 2 ** 32 for seed in seeds))


def read_record(exp_dir: Path) -> Optional[dict]:
    """The record of ``exp_dir`` (None: it has none); :class:`DamagedRecord` where it is unreadable or malformed."""
    path = Path(exp_dir) / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DamagedRecord(f"{path}: {error}") from None
    if not _is_record(record):
        raise DamagedRecord(f"{path}: expected {{grid, scale, data_set: text; train_args: a list of text; seeds: "
                            "distinct integers 0..2**32-1}")
    return record


def add_to_record(exp_dir: Path, record: dict, say: Callable[[str], None] = print) -> dict:
    """Write ``record`` as the folder's, with the seeds of the folder's earlier calls of the same experiment first;
    returns what was written. A folder recording another experiment is refused and left as it is; a damaged record
    is replaced (``say`` tells which)."""
    try:
        earlier = read_record(exp_dir)
    except DamagedRecord as error:
        say(f"{error}: replaced by this call's record")
        earlier = None
    if earlier is not None:
        if any(earlier[key] != record[key] for key in _SAME):
            told = ", ".join(f"{key} {earlier[key]!r}" for key in _SAME)
            raise SarvitError(f"{Path(exp_dir)} holds the runs of another experiment ({told}; {RECORD}): use "
                              "another --exp-dir, or call it with those settings")
        record = {**record, "seeds": earlier["seeds"] + [s for s in record["seeds"] if s not in earlier["seeds"]]}
    Path(exp_dir).mkdir(parents=True, exist_ok=True)
    (Path(exp_dir) / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record
