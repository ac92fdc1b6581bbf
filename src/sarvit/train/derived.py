"""The recipes' derived values: every option a recipe computes from the data instead of fixing, in one place.

A rule is ``rule(config, data) -> value``: ``config`` is the configuration resolved so far (a dict keyed by
option dest), ``data`` the :class:`~sarvit.data.survey.DataSurvey` of the training set (how many images, how
big). :data:`RULES` lists, per recipe, the options it derives, in the order they are computed; a rule runs only
for an option nobody gave (no ``--config`` file, command line, resumed run or fine-tuned checkpoint), so every
option still overrides it. Changing a rule is an edit of one function below.

* ``epochs`` - about a fixed number of images seen: ``small-data`` 10.2 M (5,000 epochs of Flowers-102's 2,040
  images, the papers' protocol; 100 to 5,000 epochs), ``quick`` 45,000 (15 epochs of the synthetic set's 3,000;
  2 to 100 epochs).
* ``warmup_epochs`` - 5 % of the epochs, at least one (none for a one-epoch run).
* ``model_ema_decay`` - an EMA time constant of a tenth of the run's optimizer steps, within [0.99, 0.99996].
* ``input_size`` (``small-data``) - from the images' side: 32 px up to 48-px images, 64 up to 112, else 224.
* ``patch_size`` - an 8 x 8 grid for small inputs, ViT-S/16's 14 x 14 at 224 px.
* ``batch_size`` - the recipe's (128, ``quick`` 64), or for a set of few images the power of two that still
  gives two steps an epoch.
* ``num_samples`` (``quick``) - 3,000 synthetic images (other data sets: all of theirs).
* ``input_size`` (``quick``) - the images' own side within 32-64 px (32 px for the synthetic set).
* ``crop_scale`` (``quick``) - from the data for every set: the smallest crop enlarges the image's pixels by at
  most 12 % (80-100 % at the images' own size).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..data.survey import SURVEY_OPTIONS, DataSurvey

__all__ = ["RULES", "derive"]

Rule = Callable[[dict, DataSurvey], Any]

QUICK_IMAGES_SEEN = 45_000
SMALL_DATA_IMAGES_SEEN = 5_000 * 2_040
QUICK_SYNTHETIC_SAMPLES = 3_000


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(high, max(low, round(value))))


def epochs_for(images_seen: float, low: int, high: int, unknown: int) -> Rule:
    """Epochs that show the model about ``images_seen`` images, within ``[low, high]`` (``unknown``: the
    training set's size is not known)."""
    return lambda config, data: unknown if not data.images else _clamp(images_seen / data.images, low, high)


def warmup_epochs(fraction: float) -> Rule:
    """``fraction`` of the epochs, at least one epoch (a run of one epoch has none)."""
    return lambda config, data: max(1, round(fraction * config["epochs"])) if config["epochs"] > 1 else 0


def ema_decay_for_run(config: dict, data: DataSurvey) -> float:
    """An EMA time constant of a tenth of the run's optimizer steps (within DeiT's 0.99996 and 0.99)."""
    steps = config["epochs"] * max(1, (data.images or 50_000) // max(1, config["batch_size"]))
    return round(min(0.99996, max(0.99, 1.0 - 10.0 / steps)), 6)


def input_size_from_images(config: dict, data: DataSurvey) -> int:
    side = data.side or 224
    return 32 if side <= 48 else 64 if side <= 112 else 224


def batch_for(largest: int) -> Rule:
    """``largest``, or for a set of few images the power of two that gives at least two steps an epoch."""
    def batch_size(config: dict, data: DataSurvey) -> int:
        if not data.images or data.images >= 2 * largest:
            return largest
        return max(2, 1 << max(1, (data.images // 2).bit_length() - 1))
    return batch_size


def patch_for_size(config: dict, data: DataSurvey) -> int:
    """A grid of 8 x 8 patches for small inputs, ViT-S/16's 14 x 14 at 224 px."""
    return 16 if config["input_size"] >= 224 else max(2, config["input_size"] // 8)


def quick_num_samples(config: dict, data: DataSurvey) -> Optional[int]:
    return QUICK_SYNTHETIC_SAMPLES if config["data_set"] == "synthetic" else None


QUICK_SIZES = (32, 64)   # the quick recipe's input side: the images' own, within these bounds
MAX_MAGNIFICATION = 1.12  # a random-resized crop may enlarge the image's own pixels by at most this (per side)


def quick_input_size(config: dict, data: DataSurvey) -> int:
    """The images' own side (a multiple of 8, for the 8 x 8 grid) within :data:`QUICK_SIZES`, so that a small
    object keeps its pixels (a 64-px image at 32 px halves a 24-px digit); 32 px when the side is unknown or the
    images are drawn at the input size (synthetic)."""
    low, high = QUICK_SIZES
    return low if not data.side else int(min(high, max(low, 8 * round(data.side / 8))))


def crop_scale_for(input_size: int, side: Optional[int]) -> list[float]:
    """The random-resized crops' area range from the data: the smallest crop of a ``side``-px image shown at
    ``input_size`` px enlarges the image's pixels by at most :data:`MAX_MAGNIFICATION` per side (area at least
    ``(input_size / (1.12 * side))**2``, within DeiT's 8 % and 100 %). An image drawn at the input size
    (``side`` None: synthetic) counts as ``input_size`` px: 80-100 %, the crops measured best on the synthetic
    set (4 epochs of the demo: val top-1 22 % at 35 %, 30.5 % at 80 %).

    >>> crop_scale_for(64, 64), crop_scale_for(224, 500)
    ([0.8, 1.0], [0.16, 1.0])
    """
    side = side or input_size
    return [round(min(1.0, max(0.08, (input_size / (MAX_MAGNIFICATION * side)) ** 2)), 2), 1.0]


def quick_crop_scale(config: dict, data: DataSurvey) -> list[float]:
    return crop_scale_for(config["input_size"], data.side)


def quick_choices(config: dict) -> str:
    """The quick recipe's data-dependent choices, for the line a run prints first."""
    low = round(100 * config["crop_scale"][0])
    return (f"input {config['input_size']} px (the images' own side within {QUICK_SIZES[0]}-{QUICK_SIZES[1]} px), "
            f"crops of {low}-100 % of the image (a crop enlarges the image's pixels by at most "
            f"{round(100 * (MAX_MAGNIFICATION - 1))} %, so a small object stays in the picture)")


RULES: dict[str, dict[str, Rule]] = {
    "deit": {},
    "small-data": {"batch_size": batch_for(128), "input_size": input_size_from_images, "patch_size": patch_for_size,
                   "epochs": epochs_for(SMALL_DATA_IMAGES_SEEN, 100, 5_000, unknown=300),
                   "warmup_epochs": warmup_epochs(0.05), "model_ema_decay": ema_decay_for_run},
    "quick": {"num_samples": quick_num_samples, "input_size": quick_input_size, "crop_scale": quick_crop_scale,
              "batch_size": batch_for(64),
              "patch_size": patch_for_size, "epochs": epochs_for(QUICK_IMAGES_SEEN, 2, 100, unknown=10),
              "warmup_epochs": warmup_epochs(0.05), "model_ema_decay": ema_decay_for_run},
}


def derive(recipe: str, config: dict[str, Any], given: set[str], survey: Callable[[dict], DataSurvey]) -> None:
    """Fill in ``config`` (in place) the options ``recipe`` derives and nobody gave (not in ``given``).

    ``survey(config)`` is called only when a rule runs, and again after a rule changes an option the survey
    reads (the synthetic set's size): later rules see the data as it will be.
    """
    data: Optional[DataSurvey] = None
    for key, rule in RULES[recipe].items():
        if key in given:
            continue
        if data is None:
            data = survey(config)
        before = config.get(key)
        config[key] = rule(config, data)
        if key in SURVEY_OPTIONS and config[key] != before:
            data = None
