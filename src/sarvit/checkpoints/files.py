"""Checkpoint and results files: atomic writes, safe reads (``torch.load(weights_only=True)``).

A sarvit checkpoint is a dict of tensors and plain data::

    format: "sarvit-checkpoint", version: 2 (0.1 wrote 1; both load)
    model: state dict                          model_config: ModelSpec.to_dict() - enough to rebuild the model
    ... whatever else the writer adds (a training run: optimizer, scheduler, epoch, rng states, config, ...,
    and ``regularizers``: the state dict of its loss terms' own modules, DRLoc's head, when it has any)

Only ``model`` and ``model_config`` make the model: readers that rebuild it ignore the rest.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

import torch

from ..errors import SarvitError
from ..models import ModelSpec

__all__ = ["FORMAT", "VERSION", "PathLike", "checkpoint_content", "copy_atomic", "fresh_path", "save_atomic",
           "read_log", "write_atomic", "write_json", "write_text", "write_checkpoint", "refuse_link",
           "load_checkpoint",
           "extract_state_dict", "resolve_checkpoint_path", "without_wrapper_prefixes"]

FORMAT = "sarvit-checkpoint"
VERSION = 2
PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_atomic(path: PathLike, write: Callable, mode: str = "wb") -> Path:
    """Write through ``write(file)`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A crash at any moment leaves either the previous file or the new one, never a torn file. The temporary file is
    created with ``O_EXCL`` (no link followed) and the rename replaces a name, never the file a link points to; a
    symbolic link at ``path`` is refused. The file gets the mode an ordinary ``open`` would give it (0644 under the
    usual umask), not ``mkstemp``'s private 0600. A failed write (a full disk, a read-only folder) is a
    :class:`SarvitError` naming the file, the previous file kept; an interrupt stays a ``KeyboardInterrupt``.
    """
    path = Path(path)
    refuse_link(path)
    if path.is_dir():
        raise SarvitError(f"cannot write {path}: it is a folder; expected a file name")
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(temp, 0o666 & ~_umask())
        with os.fdopen(handle, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as error:
        if temp is not None and os.path.lexists(temp):
            os.unlink(temp)
        cause = _root_cause(error)
        if isinstance(cause, KeyboardInterrupt) and cause is not error:  # torch.save's C++ writer wraps it
            raise KeyboardInterrupt from None
        if isinstance(cause, OSError):
            kept = "the previous file is kept" if path.exists() else "nothing was written"
            raise SarvitError(f"cannot write {path}: {cause.strerror or cause}; {kept}") from None
        raise
    return path


def _root_cause(error: BaseException) -> BaseException:
    """The first OSError or KeyboardInterrupt in ``error``'s chain (torch.save raises a RuntimeError from its
    C++ writer with the real cause chained), else ``error`` itself."""
    seen, current = set(), error
    while current is not None and id(current) not in seen:
        if isinstance(current, (OSError, KeyboardInterrupt)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return error


def refuse_link(path: PathLike) -> None:
    """A symbolic link at ``path`` is refused: sarvit writes no file through a link (one planted in a shared
    folder would make it overwrite the file the link points to)."""
    if os.path.islink(path):
        raise SarvitError(f"{path} is a symbolic link (to {os.readlink(path)}); sarvit writes no file through a "
                          "link: remove it or write elsewhere")


def save_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda file: torch.save(obj, file), "wb")


def write_json(payload: Any, path: PathLike) -> Path:
    """``payload`` as indented JSON at ``path``, atomically: the one writer of sarvit's result files."""
    def dump(file) -> None:
        json.dump(payload, file, indent=2)
        file.write("\n")

    return write_atomic(path, dump, "w")


def write_text(text: str, path: PathLike) -> Path:
    """``text`` at ``path``, atomically (a run's ``log.jsonl``)."""
    return write_atomic(path, lambda file: file.write(text), "w")


def read_log(path: PathLike) -> list[dict]:
    """The epoch lines of a run's ``log.jsonl`` at ``path``, in order; ``[]`` when there is no such file.

    One policy for a bad line, for every reader: the first line that is not a JSON object (a line cut short by a
    crash, a damaged byte, a bare number) ends what the log vouches for, so the lines before it are returned and
    nothing after it (a later line cannot be trusted to follow it). Blank lines are skipped. The checkpoint, not
    the log, is the run's record: :func:`reconcile` rewrites the file from it when they differ.

    Example:
        >>> import tempfile, pathlib
        >>> log = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
        >>> _ = log.write_text('{"epoch": 0}\\n{"epoch": 1}\\n{"epo')
        >>> read_log(log)
        [{'epoch': 0}, {'epoch': 1}]
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if not isinstance(entry, dict):
            break
        lines.append(entry)
    return lines


def copy_atomic(source: PathLike, path: PathLike) -> Path:
    """A copy of the file ``source`` at ``path``, atomically."""
    def copy(file) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, file)

    return write_atomic(path, copy, "wb")


def write_checkpoint(path: PathLike, model: dict, spec: ModelSpec, **content: Any) -> Path:
    """Write a sarvit checkpoint: the ``model`` state dict, ``spec`` as ``model_config``, and ``content``
    (tensors and plain data only, so :func:`load_checkpoint` reads it with ``weights_only=True``)."""
    return save_atomic(checkpoint_content(model, spec, **content), path)


def checkpoint_content(model: dict, spec: ModelSpec, **content: Any) -> dict:
    """What :func:`write_checkpoint` writes, for a caller that writes the same content to several files."""
    return {**content, "format": FORMAT, "version": VERSION, "model": model, "model_config": spec.to_dict()}


def resolve_checkpoint_path(path: PathLike) -> Path:
    """``path`` itself, or ``path/last.pth`` when ``path`` is a run folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / "last.pth"
        if not candidate.is_file():
            raise SarvitError(f"checkpoint: {path} is a folder without last.pth")
        return candidate
    if not path.is_file():
        raise SarvitError(f"checkpoint: expected a file, {path} does not exist")
    return path


def load_checkpoint(path: PathLike) -> dict:
    """Load a checkpoint safely (``weights_only=True``); a raw state dict comes back as ``{"model": sd}``."""
    path = resolve_checkpoint_path(path)
    try:
        with _namespace_allowed():
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refusals, truncated zip files, not a torch file at all
        raise SarvitError(_unloadable(path, error)) from None
    if not isinstance(data, dict):
        raise SarvitError(f"checkpoint: expected a dict in {path}, found {type(data).__name__}")
    if data.get("format") == FORMAT:
        for key in ("model", "model_ema"):  # written from a compiled or DDP-wrapped model by other code
            if isinstance(data.get(key), dict):
                data[key] = without_wrapper_prefixes(data[key])
        weights = data.get("model")
        if not isinstance(weights, dict) or not all(isinstance(value, torch.Tensor) for value in weights.values()):
            raise SarvitError(f"checkpoint: {path} is a sarvit checkpoint whose 'model' should be a state dict "
                              f"(names -> tensors), found {type(weights).__name__}")
        _refuse_nonfinite(data, path)
        return data
    data = {"model": extract_state_dict(data, path)}
    _refuse_nonfinite(data, path)
    return data


def _refuse_nonfinite(data: dict, path: Path) -> None:
    """Weights holding NaN or inf evaluate to nonsense (top-1 at chance, Jaccard 0) and train no further."""
    for key in ("model", "model_ema"):
        weights = data.get(key)
        if not isinstance(weights, dict):
            continue
        broken = [name for name, value in weights.items()
                  if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]
        if broken:
            raise SarvitError(f"checkpoint: the {key!r} weights in {path} hold NaN or inf values ({len(broken)} "
                              f"tensor(s), first {broken[0]}); use an earlier checkpoint of the run")


# how the files torch.save writes begin: a zip archive (torch >= 1.6) or a pickle (protocol 2 or later)
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _unloadable(path: Path, error: Exception) -> str:
    """Why ``path`` did not load, in words that are true for it. torch's own message is not quoted: for a file
    that holds other Python objects it advises ``weights_only=False``, i.e. running whatever the file contains."""
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError as read_error:
        return f"checkpoint: cannot read {path} ({read_error.strerror or read_error})"
    if not head.startswith(_TORCH_MAGIC):
        return (f"checkpoint: {path} is not a PyTorch checkpoint (it begins {head!r}; expected a file written by "
                "torch.save, e.g. a run's last.pth or best.pth)")
    if isinstance(error, pickle.UnpicklingError) or "weights_only" in str(error):
        return (f"checkpoint: {path} holds Python objects beyond tensors and plain data, which sarvit does not "
                "load (unpickling them could run code); expected a state dict or a sarvit checkpoint")
    return f"checkpoint: {path} is a damaged or truncated PyTorch file ({type(error).__name__})"


@contextlib.contextmanager
def _namespace_allowed():
    """DeiT (and the reference SAR code) store ``args``, an ``argparse.Namespace`` of plain values, in
    their checkpoints; allow that one class so those files load under ``weights_only=True``."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if safe_globals is not None:
        with safe_globals([argparse.Namespace]):
            yield
        return
    add = getattr(torch.serialization, "add_safe_globals", None)  # torch 2.4
    if add is not None:
        add([argparse.Namespace])
    yield


# Where checkpoints of other codebases keep the weights, and the prefixes their wrappers add to every key.
_WEIGHT_KEYS = ("model", "state_dict", "model_state_dict", "module")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.")


def extract_state_dict(data: dict, path: PathLike = "checkpoint") -> dict:
    """The model weights of a DeiT/timm-style checkpoint (under ``model``, ``state_dict``, ... or the dict
    itself), without the prefixes DDP, ``torch.compile`` or a backbone wrapper put on every key."""
    for key in _WEIGHT_KEYS:
        if isinstance(data.get(key), dict):
            data = data[key]
            break
    if not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise SarvitError(f"checkpoint: expected model weights (a state dict) in {path}, found keys {list(data)[:10]}")
    return without_wrapper_prefixes(data)


def without_wrapper_prefixes(state: dict) -> dict:
    """``state`` without the prefix DDP (``module.``), ``torch.compile`` (``_orig_mod.``) or a backbone wrapper
    puts on every key (each stripped when all keys carry it, so ``_orig_mod.module.`` goes too)."""
    for prefix in _WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def fresh_path(path: PathLike) -> Path:
    """``path``, or if a file is there already the first free ``<stem>_<n><suffix>`` beside it (n = 2, 3, ...):
    result files are never overwritten silently."""
    original = candidate = Path(path)
    number = 2
    while candidate.exists():
        candidate = original.with_name(f"{original.stem}_{number}{original.suffix}")
        number += 1
    return candidate
