"""Checkpoints: plain tensors and data only (``torch.load(weights_only=True)``), written atomically.

A sarvit checkpoint is a dict::

    format: "sarvit-checkpoint", version: 1
    model: state dict            model_ema: state dict (when EMA is on)
    optimizer, scheduler, scaler: their state dicts (absent when not used)
    epoch: last finished epoch (0-based)       global_step: optimizer steps so far
    best_top1, best_epoch                      metrics: that epoch's log line
    rng: {"torch", "cuda", "numpy", "python"}  the random states at the end of that epoch
    model_config: {name, timm_kwargs, sar, num_classes, input_size}   enough to rebuild the model
    config: the resolved run configuration
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ..errors import SarvitError

__all__ = ["FORMAT", "save_atomic", "load_checkpoint", "extract_state_dict", "rng_state", "set_rng_state",
           "resolve_checkpoint_path"]

FORMAT = "sarvit-checkpoint"
PathLike = Union[str, os.PathLike]


def save_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A crash at any moment leaves either the previous file or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path


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
        raise SarvitError(
            f"checkpoint: could not load {path} with torch.load(weights_only=True): expected a file of tensors "
            f"and plain data ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    if not isinstance(data, dict):
        raise SarvitError(f"checkpoint: expected a dict in {path}, found {type(data).__name__}")
    if data.get("format") == FORMAT:
        return data
    return {"model": extract_state_dict(data, path)}


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
    for prefix in _WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in data):
            data = {key[len(prefix):]: value for key, value in data.items()}
    return data


def rng_state() -> dict:
    """Every random state the training draws from, as tensors and plain Python data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
