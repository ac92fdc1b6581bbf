"""Checkpoints and result files: the one place that writes them, and that turns a checkpoint back into a model.

* :func:`write_checkpoint` / :func:`load_checkpoint` - tensors and plain data, atomic, ``weights_only=True``.
* :func:`write_json` - atomic JSON results; :func:`fresh_path` - a result file's name that overwrites nothing.
* :func:`load_model` - a checkpoint (or plain timm/DeiT weights) -> model in eval mode, via ``ModelSpec``.
"""
from .files import (FORMAT, VERSION, checkpoint_content, extract_state_dict, fresh_path, load_checkpoint,
                    resolve_checkpoint_path, save_atomic, write_checkpoint, write_json)
from .models import checkpoint_spec, load_model, model_from_checkpoint, resolve_device, stored_spec

__all__ = [
    "FORMAT", "VERSION", "checkpoint_content", "checkpoint_spec", "extract_state_dict", "fresh_path", "load_checkpoint", "load_model",
    "model_from_checkpoint", "resolve_checkpoint_path", "resolve_device", "save_atomic", "stored_spec",
    "write_checkpoint", "write_json",
]
