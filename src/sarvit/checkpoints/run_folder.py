"""A run folder belongs to one run: a lock while a run writes there, no fresh run over an old one, and the
repair of what a crash can leave behind.

* **Lock**: ``<folder>/.sarvit.lock``, held with ``fcntl.flock`` for the whole run, holds the owner's pid, host,
  start time and command. A second run on the folder stops at once naming them. The kernel drops the lock when its
  process dies (even by ``kill -9``), so a stale file never blocks. Where ``fcntl`` does not exist (Windows) the
  file itself is the lock, created with ``O_EXCL`` and removed when the run ends: a run killed before it could
  remove it leaves it behind, and the next run stops naming the file, to be deleted once that run is known dead.
* **One run per folder**: a fresh run into a folder holding a run (``last.pth``, ``best.pth`` or logged epochs)
  stops, unless it resumes that folder's checkpoint or ``--overwrite`` moves the old files into
  ``<folder>/replaced-<time>/`` (nothing is deleted).
* **Crash repair** (on the next start, lock held): temporary files of interrupted atomic writes are removed; a
  ``best.pth`` one write behind ``last.pth`` is completed and ``log.jsonl`` made the checkpoint's history
  (see :func:`reconcile`).

Write order of an epoch: ``last.pth``, then ``best.pth`` (when the epoch improved), then the log line. Each file is
replaced atomically, so a crash between two writes leaves only: ``best.pth`` behind a ``last.pth`` that names its
own epoch as the best (completed on resume from ``last.pth`` itself), or a log line missing (the log is rewritten
from the checkpoint's history on resume).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import SarvitError
from .files import copy_atomic, read_log, refuse_link, write_text

try:
    import fcntl
except ImportError:  # no POSIX locks (Windows): the lock file's existence is the lock
    fcntl = None

__all__ = ["LOCK_NAME", "RunFolder", "check_resumable", "reconcile"]

LOCK_NAME = ".sarvit.lock"
CHECKPOINTS = ("last.pth", "best.pth")
# What a run writes into its folder; --overwrite moves these aside.
RUN_FILES = (*CHECKPOINTS, "log.jsonl", "config.yaml", "curves.png", "tensorboard", "attention")


class RunFolder:
    """A run's output folder, locked by this process until :meth:`release`.

    Use :meth:`claim` (before loading any data, so a folder that cannot be written fails at once).
    """

    def __init__(self, path: Path, lock_fd: int, created: tuple[Path, ...] = ()) -> None:
        self.path, self._lock_fd = path, lock_fd
        self._created = created  # the folders claim made, deepest first: removed again if left empty

    @classmethod
    def claim(cls, path: os.PathLike, *, resume: Optional[os.PathLike] = None, overwrite: bool = False,
              say: Callable[[str], None] = print) -> "RunFolder":
        """Create and lock ``path``, refuse a fresh run over an old one, remove leftover temporary files.

        ``resume``: the checkpoint this run continues; a folder holding a run is fine when that checkpoint is
        one of its own. ``overwrite``: move an old run's files into ``replaced-<time>/`` instead of refusing.
        """
        path = Path(os.path.abspath(Path(path).expanduser()))
        created = tuple(folder for folder in (path, *path.parents) if not os.path.lexists(folder))
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SarvitError(f"--output-dir {path}: cannot create the folder ({error.strerror or error})") from None
        for name in (LOCK_NAME, *RUN_FILES):
            refuse_link(path / name)
        folder = cls(path, _lock(path), created)
        try:
            folder._check_owner(resume, overwrite, say)
            folder._remove_leftovers(say)
        except BaseException:
            folder.release()
            raise
        return folder

    def release(self) -> None:
        """Remove the lock file and unlock (a run waiting to open the file re-checks that it is still there)."""
        if self._lock_fd < 0:
            return
        with contextlib.suppress(OSError):  # only our own lock file (never a file put there since)
            if os.lstat(self.path / LOCK_NAME).st_ino == os.fstat(self._lock_fd).st_ino:
                (self.path / LOCK_NAME).unlink()
        os.close(self._lock_fd)
        self._lock_fd = -1
        for folder in self._created:  # a run that failed before writing anything leaves no empty folder
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote there
                break

    def held_run(self) -> list[str]:
        """What in the folder says a run lives here: its checkpoints and a non-empty log."""
        found = [name for name in CHECKPOINTS if (self.path / name).is_file()]
        log = self.path / "log.jsonl"
        if log.is_file() and log.stat().st_size > 0:
            found.append(f"log.jsonl with {len(read_log(log))} epoch(s)")
        return found

    def _check_owner(self, resume: Optional[os.PathLike], overwrite: bool, say: Callable[[str], None]) -> None:
        held = self.held_run()
        if not held:
            return
        resumed = _checkpoint_file(resume) if resume is not None and _inside(Path(resume), self.path) else None
        if resumed is not None:
            later = self._later_than(resumed)
            if not later:
                return
            if not overwrite:
                raise SarvitError(
                    f"--resume {resume}: {self.path} holds epochs after it ({', '.join(later)}), which the resumed "
                    f"run would overwrite; resume {self.path / 'last.pth'}, or pass --overwrite to move the later "
                    f"files into {self.path}/replaced-<time>/ first")
        elif not overwrite:
            raise SarvitError(
                f"--output-dir {self.path} already holds a run ({', '.join(held)}); continue it with --resume "
                f"{self.path}, pick a new --output-dir, or pass --overwrite to move its files into "
                f"{self.path}/replaced-<time>/")
        aside = self.path / time.strftime("replaced-%Y%m%d-%H%M%S")
        aside.mkdir()
        moved = [name for name in RUN_FILES if os.path.lexists(self.path / name)]
        for name in moved:
            if resumed is not None and name == resumed.name:  # the checkpoint this run reads stays; a copy goes
                copy_atomic(resumed, aside / name)
            else:
                os.replace(self.path / name, aside / name)
        say(f"--overwrite: moved the old run's {', '.join(moved)} into {aside}/")

    def _later_than(self, resumed: Path) -> list[str]:
        """What in the folder is newer than the checkpoint ``resumed`` (one of the folder's files)."""
        epoch = _epoch_of(resumed)
        later = [f"{name} at epoch {held + 1}" for name in CHECKPOINTS
                 if (held := _epoch_of(self.path / name)) is not None and held > epoch]
        logged = read_log(self.path / "log.jsonl")
        if len(logged) > epoch + 1:
            later.append(f"log.jsonl with {len(logged)} epochs")
        return later

    def _remove_leftovers(self, say: Callable[[str], None]) -> None:
        leftovers = [file for file in self.path.glob(".*.tmp") if file.is_file()]
        if leftovers:
            size = sum(file.stat().st_size for file in leftovers)
            for file in leftovers:
                file.unlink()
            say(f"removed {len(leftovers)} temporary file(s) ({size / 2 ** 20:.1f} MiB) left by an interrupted write "
                f"in {self.path}")


# What a training checkpoint must hold to be continued, and the type of each field.
_RESUMABLE = {"model": dict, "optimizer": dict, "scheduler": dict, "epoch": int, "global_step": int,
              "best_top1": (int, float), "best_epoch": int, "history": list, "rng": list, "config": dict}


def check_resumable(checkpoint: dict, path: os.PathLike) -> None:
    """A sarvit training checkpoint has every field a resumed run reads, each of the right type."""
    missing = [key for key in _RESUMABLE if key not in checkpoint]
    if missing:
        raise SarvitError(f"--resume {path}: the checkpoint lacks {', '.join(missing)}; a training run's "
                          f"last.pth or best.pth holds {', '.join(_RESUMABLE)}")
    for key, kind in _RESUMABLE.items():
        value = checkpoint[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise SarvitError(f"--resume {path}: the checkpoint's {key!r} should be {expected}, found "
                              f"{type(value).__name__} {value!r:.60}")
    damaged = [line for line in checkpoint["history"] if not isinstance(line, dict) or not isinstance(line.get("epoch"), int)]
    if damaged:
        raise SarvitError(f"--resume {path}: the checkpoint's history should be one object per epoch, found "
                          f"{damaged[0]!r:.60}")
    if not checkpoint["rng"] or checkpoint["epoch"] < 0 or not -1 <= checkpoint["best_epoch"] <= checkpoint["epoch"]:
        raise SarvitError(f"--resume {path}: inconsistent checkpoint (epoch {checkpoint['epoch']}, best_epoch "
                          f"{checkpoint['best_epoch']}, {len(checkpoint['rng'])} random states)")


def reconcile(checkpoint: dict, resumed: Path, say: Callable[[str], None] = print) -> None:
    """Bring the folder of ``resumed`` (the checkpoint a run continues) in line with it.

    ``log.jsonl`` becomes the checkpoint's history (lines of later epochs, or a line lost to a crash, fixed).
    ``best.pth`` is written after ``last.pth``; a crash between the two leaves ``last.pth`` naming its own epoch
    as the best while ``best.pth`` still holds an earlier one (or is absent): ``last.pth`` is copied over it.
    """
    log = resumed.parent / "log.jsonl"
    history = "".join(json.dumps(line) + "\n" for line in checkpoint["history"])
    if not log.is_file() or log.read_text(errors="replace") != history:  # a torn last line differs too
        held = f"{len(read_log(log))} readable" if log.is_file() else "no"
        write_text(history, log)
        say(f"log.jsonl had {held} epoch line(s); rewritten to the {len(checkpoint['history'])} that "
            f"{resumed.name} holds")
    best = resumed.parent / "best.pth"
    if resumed.name != "last.pth" or int(checkpoint["best_epoch"]) != int(checkpoint["epoch"]):
        return
    held = _epoch_of(best)
    if held != int(checkpoint["epoch"]):
        copy_atomic(resumed, best)
        was = "was missing" if held is None else f"held epoch {held + 1}"
        say(f"best.pth {was}; last.pth says epoch {int(checkpoint['epoch']) + 1} is the best: copied it to {best} "
            "(a run stopped between the two writes)")


def _epoch_of(path: Path) -> Optional[int]:
    if not path.is_file():
        return None
    try:  # mmap: the epoch without reading every tensor
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # unreadable or not a training checkpoint: it is not the best epoch either
        return -1


def _checkpoint_file(path: os.PathLike) -> Optional[Path]:
    path = Path(path).expanduser()
    path = path / "last.pth" if path.is_dir() else path
    return path if path.is_file() else None


def _inside(file: Path, folder: Path) -> bool:
    file = file.expanduser()
    parent = file if file.is_dir() else file.parent
    try:
        return parent.resolve() == folder.resolve()
    except OSError:
        return False


def _lock(path: Path) -> int:
    """Create ``path/.sarvit.lock`` holding who owns it, ``flock`` it (non-blocking); the descriptor stays open.

    The lock is written to a fresh temporary file (``O_EXCL``) first, locked, then put in place with ``link``
    (which fails rather than replace a live lock) or, over the stale lock of a dead run, ``rename``: no existing
    file is ever opened for writing, so a link planted as the lock file cannot make the run overwrite its target.
    Without ``fcntl`` the lock file is created with ``O_EXCL`` instead (no link followed either), and an existing
    one means the folder is held.
    """
    lock = path / LOCK_NAME
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
             "command": " ".join(["sarvit", *sys.argv[1:]]) if sys.argv else "sarvit"}
    refuse_link(lock)
    if fcntl is None:
        return _lock_exclusive(lock, path, owner)
    try:
        fd, temp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=path)
    except OSError as error:
        raise SarvitError(f"--output-dir {path}: cannot write there ({error.strerror or error}); "
                          "pick a folder you can write to") from None
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, (json.dumps(owner) + "\n").encode())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows this file yet
        while True:
            try:
                os.link(temp, lock)  # no lock file: ours is the lock
                break
            except FileExistsError:
                pass
            except FileNotFoundError:  # our temporary file removed as a leftover by a run claiming it meanwhile
                raise SarvitError(f"--output-dir {path} was claimed by another run at the same moment; "
                                  "pick another --output-dir") from None
            if _take_stale(lock, temp, path):
                break
        return fd
    except BaseException:
        os.close(fd)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def _lock_exclusive(lock: Path, path: Path, owner: dict) -> int:
    """The lock without ``fcntl``: the file's existence (``O_EXCL`` fails on any name there, a link included)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with open(lock, "rb") as file:
            holder = _holder(file.fileno())
        raise SarvitError(f"--output-dir {path} is in use by another run ({holder}); wait for it to end or stop "
                          f"it, or pick another --output-dir (if no run holds it, delete {lock})") from None
    except OSError as error:
        raise SarvitError(f"--output-dir {path}: cannot write there ({error.strerror or error}); "
                          "pick a folder you can write to") from None
    try:
        os.write(fd, (json.dumps(owner) + "\n").encode())
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(lock)
        raise
    return fd


def _take_stale(lock: Path, temp: str, path: Path) -> bool:
    """Replace the lock file of a run that has ended by ``temp`` (True); raise if a live run holds it, False
    if it vanished meanwhile (try again)."""
    try:
        old = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as error:  # a link put there since the check
        raise SarvitError(f"--output-dir {path}: cannot use {lock} ({error.strerror or error}); remove it") from None
    try:
        if not stat.S_ISREG(os.fstat(old).st_mode):
            raise SarvitError(f"--output-dir {path}: {lock} is not a lock file; remove it")
        try:
            fcntl.flock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SarvitError(f"--output-dir {path} is in use by another run ({_holder(old)}); wait for it to end or "
                              "stop it, or pick another --output-dir") from None
        try:  # the file we hold must still be the one at the path (its owner may have removed it meanwhile)
            if os.lstat(lock).st_ino != os.fstat(old).st_ino:
                return False
        except FileNotFoundError:
            return False
        os.replace(temp, lock)
        return True
    finally:
        os.close(old)


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)  # os.pread is POSIX only
        owner = json.loads(os.read(fd, 4096).decode() or "{}")
        return (f"process {owner['pid']} on {owner['host']}, started {owner['started']}: {owner['command']}")
    except (OSError, ValueError, KeyError):
        return "a process that has not yet written its name"
