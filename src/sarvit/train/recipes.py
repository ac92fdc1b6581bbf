"""Recipes: coherent sets of `sarvit train` defaults, chosen by ``--recipe NAME`` or from the device and the data.

A recipe sits between the option table's defaults and everything the user gives (``--config`` files, the
command line, a resumed run's stored configuration), so every option still overrides it. Its ``values`` are
plain option values; its ``derived`` values are functions of the configuration resolved so far and of a
:class:`~sarvit.data.survey.DataSurvey` (how many training images, how big), computed in order and only for
options nobody gave. Adding a recipe is one entry in :data:`RECIPES`.

* ``deit`` - the papers' ImageNet recipe (DeiT's: ViT-S/16 at 224 px, 300 epochs, AdamW lr 5e-4 per 512 images,
  5 warm-up epochs, RandAugment, mixup 0.8 / cutmix 1.0, random erasing 0.25, repeated augmentation, EMA 0.99996).
* ``small-data`` - training from scratch on a few thousand images, the papers' small-data protocol (El-Nouby et
  al. 2021, used by SAR's Tab. 2: ViT-S/16 with DeiT's augmentation, 5,000 epochs of Flowers-102's 2,040 images,
  i.e. about 10 M images seen) scaled to the data: epochs = 10.2 M / images (100 to 5,000), the input size and
  patch from the images' size (32 px / patch 4 for small images, 64 / 8, else 224 / 16), lr 1e-3 per 512
  images at batch 128, no repeated augmentation, a warm-up of 5 % of the epochs, and an EMA whose decay is tied
  to the run's length (timm's warm-up on).
* ``quick`` - the CPU demo for any data set: a 4-block, 128-wide ViT at 32 px with 4-px patches (an 8 x 8 grid;
  at another ``--input-size`` the patch follows, 16 px at 224), no mixup, RandAugment, erasing or repeated
  augmentation, random-resized crops of 35-100 % of the image (80-100 % on the synthetic set), about 45,000 images seen (15 epochs of the
  synthetic set's 3,000; a few minutes on two CPU cores; with 30,000 the model still underfit, train top-1
  below val), lr 1.6e-2 per 512 images, one warm-up epoch per 20.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..data.survey import SURVEY_OPTIONS, DataSurvey
from ..errors import SarvitError

__all__ = ["RECIPES", "Recipe", "choose_recipe", "apply_recipe"]

Derived = Callable[[dict, DataSurvey], Any]


@dataclass(frozen=True)
class Recipe:
    """``doc``: one line shown at the start of a run. ``values``: option dest -> value. ``derived``: option dest
    -> ``f(config, survey)``, evaluated in order where the option is given by nobody."""

    name: str
    doc: str
    values: dict[str, Any]
    derived: dict[str, Derived] = field(default_factory=dict)


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(high, max(low, round(value))))


def _epochs_for(images_seen: float, low: int, high: int, unknown: int) -> Derived:
    """Epochs that show the model about ``images_seen`` images, within ``[low, high]``."""
    return lambda config, data: unknown if not data.images else _clamp(images_seen / data.images, low, high)


def _warmup_epochs(fraction: float) -> Derived:
    return lambda config, data: max(1, round(fraction * config["epochs"])) if config["epochs"] > 1 else 0


def _ema_decay_for_run(config: dict, data: DataSurvey) -> float:
    """An EMA time constant of a tenth of the run's optimizer steps (within DeiT's 0.99996 and 0.99)."""
    steps = config["epochs"] * max(1, (data.images or 50_000) // max(1, config["batch_size"]))
    return round(min(0.99996, max(0.99, 1.0 - 10.0 / steps)), 6)


def _size_from_images(config: dict, data: DataSurvey) -> int:
    side = data.side or 224
    return 32 if side <= 48 else 64 if side <= 112 else 224


def _batch_for(largest: int) -> Derived:
    """``largest``, or for a set of few images the power of two that gives at least two steps an epoch."""
    def batch_size(config: dict, data: DataSurvey) -> int:
        if not data.images or data.images >= 2 * largest:
            return largest
        return max(2, 1 << max(1, (data.images // 2).bit_length() - 1))
    return batch_size


def _patch_for_size(config: dict, data: DataSurvey) -> int:
    """A grid of 8 x 8 patches for small inputs, ViT-S/16's 14 x 14 at 224 px."""
    return 16 if config["input_size"] >= 224 else max(2, config["input_size"] // 8)


def _quick_crop_scale(config: dict, data: DataSurvey) -> list[float]:
    """35-100 % of the image; 80-100 % on the synthetic set, whose small objects lie anywhere in the picture: a
    smaller crop often cuts the object out (measured: 4 epochs of the demo, val top-1 22 % at 35 %, 30.5 % at 80 %)."""
    return [0.8, 1.0] if config["data_set"] == "synthetic" else [0.35, 1.0]


QUICK_IMAGES_SEEN = 45_000
SMALL_DATA_IMAGES_SEEN = 5_000 * 2_040

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("deit", "DeiT's ImageNet recipe, as in the papers (ViT-S/16 at 224 px, 300 epochs)",
           {"model": "deit_small_patch16_224", "input_size": 224}),
    Recipe("small-data", "from scratch on a small data set: the papers' small-data protocol (El-Nouby et al.) "
           "scaled to the data",
           {"model": "deit_small_patch16_224", "lr": 1e-3, "min_lr": 1e-5, "drop_path": 0.1,
            "repeated_aug": False, "model_ema": True, "model_ema_warmup": True},
           {"batch_size": _batch_for(128), "input_size": _size_from_images, "patch_size": _patch_for_size,
            "epochs": _epochs_for(SMALL_DATA_IMAGES_SEEN, 100, 5_000, unknown=300),
            "warmup_epochs": _warmup_epochs(0.05), "model_ema_decay": _ema_decay_for_run}),
    Recipe("quick", "the CPU demo: a small ViT at 32 px that trains in minutes",
           {"model": "vit_tiny_patch16_224", "input_size": 32, "depth": 4, "embed_dim": 128,
            "num_heads": 4, "lr": 1.6e-2, "min_lr": 1e-5, "drop_path": 0.0, "mixup": 0.0,
            "cutmix": 0.0, "model_ema": False, "model_ema_warmup": True, "repeated_aug": False, "reprob": 0.0,
            "aa": None},
           {"num_samples": lambda config, data: 3_000 if config["data_set"] == "synthetic" else None,
            "crop_scale": _quick_crop_scale,
            "batch_size": _batch_for(64), "patch_size": _patch_for_size,
            "epochs": _epochs_for(QUICK_IMAGES_SEEN, 2, 100, unknown=10),
            "warmup_epochs": _warmup_epochs(0.05), "model_ema_decay": _ema_decay_for_run}),
)}

SMALL_DATA_LIMIT = 100_000   # training images below which a GPU run gets small-data instead of deit


def choose_recipe(data_set: str, device: str, data: DataSurvey) -> tuple[str, str]:
    """``(recipe name, the reason)`` for a run that names no ``--recipe``."""
    if data_set == "synthetic":
        return "quick", "the data set is the built-in synthetic one"
    if not device.startswith("cuda"):
        return "quick", f"the device is {device} (no GPU); --recipe small-data or deit train longer"
    if data.images is None:
        return "deit", "the training set's size is unknown"
    if data.images < SMALL_DATA_LIMIT:
        return "small-data", f"there are {data.images:,} training images (fewer than {SMALL_DATA_LIMIT:,}) and a GPU"
    return "deit", f"there are {data.images:,} training images and a GPU"


def get_recipe(name: str) -> Recipe:
    key = str(name).strip().lower()
    if key not in RECIPES:
        raise SarvitError(f"--recipe: expected one of {', '.join(RECIPES)}, got {name!r}")
    return RECIPES[key]


def apply_recipe(config: dict[str, Any], recipe: Recipe, given: set[str], upper: dict[str, Any],
                 survey: Callable[[dict], DataSurvey], extra: Optional[dict[str, Any]] = None) -> None:
    """Fill ``config`` in place: the recipe's values (then ``extra``, e.g. a pretext task's) under ``upper``
    (what was given), then its derived values for options not in ``given``. ``survey(config)`` is called once,
    and only if a derived value needs it."""
    values = {**recipe.values, **(extra or {})}
    if "model" in upper:  # a model the user names keeps its own depth, width and heads
        for key in ("depth", "embed_dim", "num_heads"):
            values.pop(key, None)
    config.update(values)
    config.update(upper)
    data: Optional[DataSurvey] = None
    for key, derive in recipe.derived.items():
        if key in given:
            continue
        if data is None:
            data = survey(config)
        before = config.get(key)
        config[key] = derive(config, data)
        if key in SURVEY_OPTIONS and config[key] != before:
            data = None  # e.g. the synthetic set's size: the later derived values see the new survey


def recipe_line(name: str, reason: Optional[str]) -> str:
    """The line a run prints first: which recipe and why."""
    why = f"chosen because {reason}" if reason else "as asked by --recipe"
    return f"recipe {name} - {RECIPES[name].doc}; {why}. Every option overrides it."
