"""Training and evaluation: DeiT's recipe on timm's parts, plus SAR's loss and last-block surgery.

* :func:`train` - a whole run from a resolved config (``resolve_config``), also under ``torchrun``.
* :func:`evaluate_checkpoint` - top-1/top-5/loss/spatial entropy of a checkpoint.
* :func:`train_one_epoch` / :func:`evaluate` - the loop itself, for custom scripts.
"""
from .config import DEFAULTS, resolve_config
from .recipes import RECIPES, Recipe
from .loop import NonFiniteLoss, StepSettings, evaluate, train_one_epoch
from .runner import TrainResult, evaluate_checkpoint, train

__all__ = [
    "DEFAULTS", "RECIPES", "NonFiniteLoss", "Recipe", "StepSettings", "TrainResult", "evaluate", "evaluate_checkpoint",
    "resolve_config", "train", "train_one_epoch",
]
