"""Training and evaluation: DeiT's recipe on timm's parts, plus SAR's loss and last-block surgery.

* :func:`resolve_config` - a typed :class:`TrainConfig` from the option layers (``sarvit.train.config``).
* :func:`train` - a whole run from a resolved config, also under ``torchrun``.
* :func:`evaluate_checkpoint` - top-1/top-5/loss/spatial entropy of a checkpoint.
* :class:`TrainingTask` (:class:`SupervisedTask`, :class:`RotationTask`) - what a batch becomes.
* :func:`train_one_epoch` / :func:`evaluate` - the loop itself, for custom scripts.
"""
from .config import DEFAULTS, TrainConfig, resolve_config
from .recipes import RECIPES, Recipe
from .loop import LoopState, NonFiniteLoss, Optimization, StepSettings, evaluate, train_one_epoch
from .runner import TrainResult, evaluate_checkpoint, train
from .tasks import RotationTask, SupervisedTask, TaskOutput, TrainingTask

__all__ = [
    "DEFAULTS", "RECIPES", "LoopState", "NonFiniteLoss", "Optimization", "Recipe", "RotationTask", "StepSettings",
    "SupervisedTask", "TaskOutput", "TrainConfig", "TrainResult", "TrainingTask", "evaluate", "evaluate_checkpoint",
    "resolve_config", "train", "train_one_epoch",
]
