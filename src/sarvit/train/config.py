"""One typed run configuration (:class:`TrainConfig`) for `sarvit train` / `sarvit eval`, built by one function.

:func:`resolve_run` layers, later layers winning, the way timm's ``train.py`` does (the option rows are in
:mod:`sarvit.options`; the parsers carry no defaults, so the command line's layer holds what the user typed)::

    the option table's defaults  <  the recipe's YAML file (+ PRETEXT_VALUES with --pretext)
      <  a --finetune / --weights checkpoint's architecture  <  a resumed run's stored configuration
      <  --config run.yaml  <  the command line

then the recipe's derived values fill the options no layer gave (:mod:`sarvit.train.derived`), and SAR's sugar
is expanded in one place (:func:`expand_sar`): ``--sar`` / ``--no-sar``, ``--use-nosn``, ``--use-blob`` /
``--sar-loss``, ``--lambda`` become the two surgery switches and the list of loss terms (``regularizers``), in
which SAR's loss is the ``spatial-entropy`` term like any ``--reg``. Resuming is the same function with the
stored configuration as a layer: only what is given now changes it.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

import yaml

from ..checkpoints import resolve_device, write_text
from ..data import canonical_dataset_name
from ..data.layout import infer_dataset_name
from ..data.survey import DataSurvey, survey
from ..errors import SarvitError
from ..models.pyramids import is_pyramid
from ..options import check_values, defaults, dest_of_spelling, float_list, options_of
from .derived import derive
from .recipes import PRETEXT_VALUES, choose_recipe, get_recipe, recipe_line
from .regularizers import resolve_regularizers

__all__ = ["DEFAULTS", "SAR_COMPONENTS", "TrainConfig", "expand_sar", "load_yaml_config", "resolve_config",
           "resolve_run", "save_config"]

DEFAULTS: dict[str, Any] = {**defaults("eval"), **defaults("train")}   # dest -> the option table's default
OPTION_NAMES: dict[str, str] = {**dest_of_spelling("eval"), **dest_of_spelling("train")}  # spelling -> dest

# SAR: the loss and the two removals of Eq. 10-11; --sar/--no-sar sets all three at once.
SAR_COMPONENTS = ("sar_loss", "remove_last_skip", "remove_last_norm")
# Printed when a run on a user's data gets SAR without asking: what the default is, why, and what was measured
# (docs/results-sar-stall.md, 2026-12-01: the quick recipe on the real-image sets, paired seeds).
SAR_DEFAULT_NOTE = ("note: SAR is on by default (the papers' method; its loss waits until the task learns, "
                    "--sar-loss-gate). Measured with the quick recipe: on scikit-learn digits (5 seeds, 30 epochs) "
                    "best val top-1 +9.0 points against --no-sar, 95 % interval [+5.1, +12.9], most of it from the "
                    "last-block surgery; within noise on photo crops (+1.8 [-1.4, +5.1]) and on LFW faces at the 100 "
                    "epochs the recipe gives that set (+0.62 [-0.01, +1.26], 10 seeds; 0.9 lower when cut to 30 "
                    "epochs); see the docs' SAR-stall results. --no-sar turns it off.")
# Options that only stand for others (expanded by expand_sar) or name the --config file: not fields.
SUGAR = ("use_nosn", "config")
# Written to config.yaml as resolved; recomputed, not read, when the file is fed back with --config.
DERIVED_KEYS = ("regularizers",)
ARCH_KEYS = ("model", "input_size", "patch_size", "depth", "embed_dim", "num_heads")
# How a run was invoked rather than what it is: fed back with --config, these would resume or evaluate.
INVOCATION_KEYS = ("resume", "eval", "config", "use_ema", "json", "overwrite")


def _field_type(option) -> Any:
    if option.switch:
        return Optional[bool]
    if option.type is float_list:
        return Optional[list[float]]
    if option.repeat or option.nargs == "+":
        return Optional[list[str]]
    return Optional[option.type or str]


def _mapping_methods() -> dict[str, Any]:
    """Read access by dest, as for the dict the configuration used to be (``config["lr"]``, ``config.get``)."""
    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__dataclass_fields__ else default

    def __contains__(self, key: object) -> bool:
        return key in self.__dataclass_fields__

    def keys(self):
        return self.__dataclass_fields__.keys()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what checkpoints and ``config.yaml`` store)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    return {"__getitem__": __getitem__, "get": get, "__contains__": __contains__, "keys": keys,
            "to_dict": to_dict, "replace": replace}


def _fields() -> list[tuple[str, Any, dataclasses.Field]]:
    rows: dict[str, Any] = {}
    for command in ("train", "eval"):
        for option in options_of(command):
            if option.dest not in SUGAR:
                rows.setdefault(option.dest, option)
    fields = [(dest, _field_type(option), dataclasses.field(default=None)) for dest, option in rows.items()]
    return fields + [("regularizers", list[dict[str, Any]], dataclasses.field(default_factory=list))]


# One field per option of `train` and `eval` (typed from its row), plus the resolved loss terms. Generated from
# the option table, so that a new row is a new field; defined here at module level, so it pickles.
TrainConfig = dataclasses.make_dataclass("TrainConfig", _fields(), frozen=True, namespace=_mapping_methods())
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = """A resolved run configuration (frozen): one typed field per option dest of `sarvit train` and
`sarvit eval`, plus ``regularizers`` (the loss terms, :class:`~sarvit.train.regularizers.RegTerm` dicts) and
``sar`` (all of SAR's components on). Build it with :func:`resolve_config`; change it with ``.replace(...)``.
Also readable by dest as a mapping (``config["lr"]``, ``config.get("lr")``); ``to_dict()`` gives plain data."""
FIELDS = frozenset(TrainConfig.__dataclass_fields__)


def load_yaml_config(path: str) -> dict[str, Any]:
    """A ``--config`` file as ``{dest: value}``; keys may use any spelling of an option."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SarvitError(f"--config: expected a YAML file, {file} does not exist")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise SarvitError(f"--config: {file} is not valid YAML: {error}") from None
    except (UnicodeDecodeError, OSError) as error:  # a binary file, or one that cannot be read
        why = error.reason if isinstance(error, UnicodeDecodeError) else error.strerror
        raise SarvitError(f"--config: expected a YAML text file, could not read {file} ({why})") from None
    if not isinstance(data, dict):
        raise SarvitError(f"--config: expected a mapping of option: value in {file}, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if key in DERIVED_KEYS:  # a saved config.yaml's resolved values: recomputed from the options
            continue
        dest = OPTION_NAMES.get(str(key).lstrip("-"))
        if dest is None or dest == "config":
            raise SarvitError(f"--config: {file} has the unknown option {key!r}; see `sarvit train --help`")
        out[dest] = value
    return checked_values(out, f"--config {file}")


def checked_values(values: dict[str, Any], source: str = "") -> dict[str, Any]:
    """``values`` checked against the rows of ``train`` and ``eval`` (:func:`sarvit.options.check_values`)."""
    return check_values("eval", check_values("train", values, source), source)


def stored_layer(stored: dict[str, Any], source: str) -> dict[str, Any]:
    """A checkpoint's stored configuration as a layer: checked, without the keys that are no option any more
    (sarvit 0.1 / 0.2 wrote a few) and without the resolved terms (recomputed from the options)."""
    known = {key: value for key, value in stored.items() if key in FIELDS or key in SUGAR}
    known.pop("regularizers", None)
    return checked_values(known, source)


def expand_sar(layer: dict[str, Any]) -> dict[str, Any]:
    """One layer's SAR switches as the three components (the layer's own component values win).

    ``sar`` (``--sar`` / ``--no-sar``) sets all three; ``use_nosn`` (the reference's ``--use-nosn``) switches both
    removals on. Components no layer names are settled by :func:`_settle_components`.
    """
    layer = dict(layer)
    if layer.pop("use_nosn", False):
        for key in ("remove_last_skip", "remove_last_norm"):
            layer.setdefault(key, True)
    sar = layer.pop("sar", None)
    if sar is not None:
        for key in SAR_COMPONENTS:
            layer.setdefault(key, bool(sar))
    return layer


def _settle_components(config: dict[str, Any]) -> None:
    """Components no layer named: on (SAR is the default), unless some layer switched a component on without
    ``--sar`` -- then only the components named are on (the reference's ``--use-blob`` / ``--use-nosn``)."""
    named_on = any(config.get(key) is True for key in SAR_COMPONENTS)
    for key in SAR_COMPONENTS:
        if config.get(key) is None:
            config[key] = not named_on


def resolve_config(cli: dict[str, Any], base: Optional[dict[str, Any]] = None,
                   inherit: Optional[dict[str, Any]] = None, training: bool = True) -> TrainConfig:
    """The configuration of :func:`resolve_run`, without its notes."""
    return resolve_run(cli, base, inherit, training)[0]


def resolve_run(cli: dict[str, Any], base: Optional[dict[str, Any]] = None,
                inherit: Optional[dict[str, Any]] = None, training: bool = True) -> tuple[TrainConfig, list[str]]:
    """``(config, notes)`` from the layers of the module's docstring.

    ``cli``: ``{dest: value}`` of what was typed. ``base``: a resumed (or evaluated) run's stored configuration
    (:func:`stored_layer`). ``inherit``: the architecture (:data:`ARCH_KEYS`) of a ``--finetune`` checkpoint,
    used where the user names none. ``training``: ``sarvit train``, whose recipe is ``--recipe`` or chosen from
    the device and the data (:func:`~sarvit.train.recipes.choose_recipe`); ``sarvit eval`` uses ``quick`` on the
    synthetic set, else ``deit``. ``notes``: the lines a run prints first (the recipe and why; options ignored).
    """
    config_file = cli.get("config")
    file = load_yaml_config(config_file) if config_file else {}
    cli = {key: value for key, value in checked_values(cli).items() if key != "config"}
    raw = (inherit or {}, base or {}, file, cli)
    upper = {key: value for layer in map(expand_sar, raw) for key, value in layer.items()}
    given = set(upper)
    # the options named as such (not through --sar): a resumed run's stored ones give way to those named now
    named = set(file) | set(cli) | (set() if base is not None else set(inherit or {}))
    notes: list[str] = []
    if upper.get("data_set") is None and upper.get("data_path"):  # never the synthetic set in place of a folder
        upper["data_set"] = trainable_dataset_name(str(upper["data_path"]))
        notes.append(f"data set: {upper['data_set']} (read from the layout of --data-path {upper['data_path']})")
    data_set = canonical_dataset_name(str(upper.get("data_set") or DEFAULTS["data_set"]))
    upper["data_set"] = data_set
    if data_set != "synthetic":  # a synthetic run's generator options, reused on another data set
        for key in ("num_samples", "num_classes"):
            if key in cli or upper.get(key) is None:
                continue
            source = f"--config {config_file}" if key in file else "the checkpoint's run"
            notes.append(f"note: {key} from {source} is ignored: it applies to the synthetic data set only")
            upper[key] = None
    if upper.get("data_path"):  # stored absolute, so that the run's config works from any folder
        upper["data_path"] = str(Path(str(upper["data_path"])).expanduser().resolve())
    reason = None
    if upper.get("recipe"):
        name = get_recipe(upper["recipe"]).name
    elif training:
        name, reason = choose_recipe(data_set, _device_of(upper), _survey(upper))
    else:
        name = "quick" if data_set == "synthetic" else "deit"
    upper["recipe"] = name
    recipe = {**get_recipe(name).values, **(PRETEXT_VALUES if upper.get("pretext") else {})}
    if "model" in upper:  # a model the user names keeps its own depth, width and heads
        for key in ("depth", "embed_dim", "num_heads"):
            recipe.pop(key, None)
    config = {**DEFAULTS, **recipe, **upper}
    # a pyramid's stem is no ViT patch (PVT-v2 takes none): the recipe does not derive one for it
    derive(name, config, given | ({"patch_size"} if is_pyramid(str(config["model"])) else set()), _survey)
    if training and base is None:
        notes.insert(0, recipe_line(name, reason, config))
    _settle_components(config)
    resolve_regularizers(config, named)
    config["sar"] = all(config[key] for key in SAR_COMPONENTS)
    if training and base is None and config["sar"] and data_set != "synthetic" and not given & set(SAR_COMPONENTS):
        notes.insert(1, SAR_DEFAULT_NOTE)
    _check(config)
    return TrainConfig(**{key: value for key, value in config.items() if key in FIELDS}), notes


def trainable_dataset_name(data_path: str) -> str:
    """The data set kind of ``data_path`` (:func:`sarvit.data.infer_dataset_name`), one that classifies."""
    name = infer_dataset_name(data_path)
    if name in ("voc", "masks"):
        kind = "PASCAL VOC" if name == "voc" else "images with masks (images/ + masks/)"
        raise SarvitError(f"--data-path {data_path} holds {kind}, for segment-eval, analyze and visualize, not "
                          "training; name the classification set with --data-set")
    return name


def _device_of(config: dict[str, Any]) -> str:
    """The device the run asks for; ``auto`` or none: the one training will pick."""
    device = config.get("device")
    return str(device) if device and str(device) != "auto" else resolve_device(None).type


def _survey(config: dict[str, Any]) -> DataSurvey:
    return survey(config["data_set"], config.get("data_path"), num_samples=config.get("num_samples"),
                  subset_ratio=float(config.get("subset_ratio") or 1.0))


def _check(config: dict[str, Any]) -> None:
    """What no single option's row can say: values that must agree with each other."""
    width, heads = config.get("embed_dim"), config.get("num_heads")
    if width and heads and width % heads:
        raise SarvitError(f"--num-heads {heads} does not divide --embed-dim {width}: each head takes an equal share "
                          "of the width; pick a number of heads that divides it")
    for key, count in (("opt_betas", 2), ("cutmix_minmax", 2)):
        if config.get(key) is not None and len(config[key]) != count:
            raise SarvitError(f"--{key.replace('_', '-')} {config[key]}: expected {count} numbers")
    starts = [f"--{key}" for key in ("resume", "finetune", "weights") if config.get(key)]
    if len(starts) > 1:
        raise SarvitError(f"give one of --resume (continue a run), --finetune (new head) or --weights (start from "
                          f"weights), not {' and '.join(starts)}")


def save_config(config: TrainConfig, path: os.PathLike) -> None:
    """The resolved configuration as YAML; ``--config`` with it repeats the run from the start."""
    run = {key: value for key, value in config.to_dict().items() if key not in INVOCATION_KEYS}
    write_text(yaml.safe_dump(run, sort_keys=True), path)
