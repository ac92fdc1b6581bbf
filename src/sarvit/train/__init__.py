"""Training and evaluation: DeiT's recipe on timm's parts, plus SAR's loss and last-block surgery.

* :func:`resolve_config` - a typed :class:`TrainConfig` from the option layers (``sarvit.train.config``).
* :func:`train` - a whole run from a resolved config, also under ``torchrun``.
* :func:`evaluate_checkpoint` - top-1/top-5/loss/spatial entropy of a checkpoint.
* :class:`TrainingTask` (:class:`SupervisedTask`, :class:`RotationTask`) - what a batch becomes.
* :func:`train_one_epoch` / :func:`evaluate` - the loop itself, for custom scripts.

The names are imported when first used, so that a light module of this package (``sarvit.train.pace``) imports
without torch.
"""
from importlib import import_module

_LAZY = {
    "DEFAULTS": "config", "TrainConfig": "config", "resolve_config": "config",
    "RECIPES": "recipes", "Recipe": "recipes",
    "LoopState": "loop", "NonFiniteLoss": "loop", "Optimization": "loop", "StepSettings": "loop",
    "evaluate": "loop", "train_one_epoch": "loop",
    "TrainResult": "runner", "evaluate_checkpoint": "checkpoint_eval", "train": "runner",
    "RotationTask": "tasks", "SupervisedTask": "tasks", "TaskOutput": "tasks", "TrainingTask": "tasks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
