"""Checkpoints and result files: the one place that writes them, and that turns a checkpoint back into a model.

* :func:`write_checkpoint` / :func:`load_checkpoint` - tensors and plain data, atomic, ``weights_only=True``.
* :func:`write_json` - atomic JSON results; :func:`fresh_path` - a result file's name that overwrites nothing.
* :func:`read_log` - a run's ``log.jsonl`` epoch lines (the one reader; a bad line ends them).
* :func:`load_model` - a checkpoint (or plain timm/DeiT weights) -> model in eval mode, via ``ModelSpec``.
* :func:`export_checkpoint` - a checkpoint as timm's hub format (``sarvit export``).
* :class:`RunFolder` - a training run's folder: locked by one run, crash leftovers repaired (:func:`reconcile`).
"""
from .files import (FORMAT, VERSION, checkpoint_content, copy_atomic, extract_state_dict, fresh_path, load_checkpoint,
                    read_log, refuse_link, resolve_checkpoint_path, save_atomic, write_atomic, write_checkpoint,
                    write_json, write_text)
from .export import EXPORT_FILES, export_checkpoint
from .models import checkpoint_spec, load_model, model_from_checkpoint, resolve_device, stored_spec
from .run_folder import LOCK_NAME, RunFolder, check_resumable, reconcile

__all__ = [
    "EXPORT_FILES", "FORMAT", "LOCK_NAME", "RunFolder", "VERSION", "check_resumable", "checkpoint_content", "copy_atomic",
    "export_checkpoint", "reconcile", "write_text", "write_atomic", "refuse_link", "checkpoint_spec",
    "extract_state_dict", "fresh_path", "load_checkpoint", "load_model", "model_from_checkpoint", "read_log",
    "resolve_checkpoint_path", "resolve_device", "save_atomic", "stored_spec", "write_checkpoint", "write_json",
]
