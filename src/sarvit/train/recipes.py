"""Recipes: coherent sets of `sarvit train` defaults, chosen by ``--recipe NAME`` or from the device and the data.

A recipe is a YAML file of option values, ``sarvit/recipes/<name>.yaml`` (a valid ``--config`` file too), plus
the options it derives from the data (:mod:`sarvit.train.derived`). It sits just above the option table's
defaults, under everything the user gives (``--config`` files, the command line, a resumed run's stored
configuration), so every option still overrides it. Adding a recipe: a YAML file, a :data:`RECIPES` entry and
its rules in :data:`sarvit.train.derived.RULES`.

* ``deit`` - the papers' ImageNet recipe (DeiT's: ViT-S/16 at 224 px, 300 epochs, AdamW lr 5e-4 per 512 images,
  5 warm-up epochs, RandAugment, mixup 0.8 / cutmix 1.0, random erasing 0.25, repeated augmentation, EMA 0.99996;
  the option table's defaults).
* ``small-data`` - training from scratch on a few thousand images, the papers' small-data protocol (El-Nouby et
  al. 2021, used by SAR's Tab. 2: ViT-S/16 with DeiT's augmentation, 5,000 epochs of Flowers-102's 2,040 images,
  i.e. about 10 M images seen) scaled to the data: lr 1e-3 per 512 images, no repeated augmentation, an EMA
  with timm's warm-up; epochs, input size, patch, batch, warm-up and EMA decay derived from the data.
* ``quick`` - the CPU demo for any data set: a 4-block, 128-wide ViT at 32-64 px (at another ``--input-size`` the
  patch follows), no mixup, RandAugment, erasing or repeated augmentation, lr 4e-3 per 512 images (5e-4 at its
  batch of 64: at 2e-3 small ViTs stayed at chance on real images), about
  45,000 images seen (15 epochs of the synthetic set's 3,000; a few minutes on two CPU cores; with 30,000 the
  model still underfit, train top-1 below val).

A run with ``--pretext`` also gets :data:`PRETEXT_VALUES` at the recipe's level: a mixed image has no single
rotation, so no Mixup/CutMix unless asked for.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional

import yaml

from ..data.survey import DataSurvey
from ..errors import SarvitError
from ..options import check_values
from .derived import RULES, Rule

__all__ = ["PRETEXT_VALUES", "RECIPES", "Recipe", "choose_recipe", "get_recipe", "recipe_line"]

PRETEXT_VALUES: dict[str, Any] = {"mixup": 0.0, "cutmix": 0.0}


@dataclass(frozen=True)
class Recipe:
    """``doc``: one line shown at the start of a run. :attr:`values` (option dest -> value) are read from
    ``sarvit/recipes/<name>.yaml``; :attr:`derived` are the recipe's rules (:mod:`sarvit.train.derived`)."""

    name: str
    doc: str

    @property
    def values(self) -> dict[str, Any]:
        return dict(_values(self.name))

    @property
    def derived(self) -> dict[str, Rule]:
        return RULES[self.name]


@functools.lru_cache(maxsize=None)
def _values(name: str) -> dict[str, Any]:
    text = (resources.files("sarvit") / "recipes" / f"{name}.yaml").read_text()
    return check_values("train", yaml.safe_load(text) or {}, f"recipes/{name}.yaml")


RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("deit", "DeiT's ImageNet recipe, as in the papers (ViT-S/16 at 224 px, 300 epochs)"),
    Recipe("small-data", "from scratch on a small data set: the papers' small-data protocol (El-Nouby et al.) "
           "scaled to the data"),
    Recipe("quick", "the CPU demo: a small ViT at the images' own size (32-64 px) that trains in minutes"),
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


def recipe_line(name: str, reason: Optional[str], config: Optional[dict] = None) -> str:
    """The line a run prints first: which recipe and why (with ``config``, the quick recipe's choices from the data)."""
    from .derived import quick_choices

    why = f"chosen because {reason}" if reason else "as asked by --recipe"
    chosen = f" It takes {quick_choices(config)}." if name == "quick" and config is not None else ""
    return f"recipe {name} - {RECIPES[name].doc}; {why}.{chosen} Every option overrides it."
