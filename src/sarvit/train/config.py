"""How `sarvit train` / `sarvit eval` turn options into a run's configuration (the options are in sarvit.options).

The parser carries no defaults, so the parsed namespace holds exactly what the user typed. The resolved
configuration is layered, later layers winning::

    DEFAULTS (the option table's)  <  the recipe (sarvit.train.recipes; --recipe or chosen from the device and
    the data)  <  PRETEXT_DEFAULTS (only with --pretext)  <  inherit (a --finetune / --weights checkpoint's
    architecture)  <  base (a resumed checkpoint's own config)  <  --config run.yaml  <  the command line

and finally the SAR switches are resolved (:func:`resolve_sar`). The result is a plain ``dict`` keyed by
the option's ``dest`` (``config.yaml`` in the output folder holds it and can be fed back with ``--config``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import yaml

from ..checkpoints import write_text
from ..data import canonical_dataset_name
from ..data.layout import infer_dataset_name
from ..data.survey import DataSurvey, survey
from ..errors import SarvitError
from ..options import check_values, defaults, dest_of_spelling
from .recipes import RECIPES, apply_recipe, choose_recipe, get_recipe, recipe_line
from .regularizers import resolve_regularizers

__all__ = [
    "DEFAULTS", "SAR_COMPONENTS", "resolve_config", "resolve_run", "resolve_sar", "load_yaml_config",
    "save_config",
]

DEFAULTS: dict[str, Any] = {**defaults("eval"), **defaults("train")}   # dest -> the option table's default
OPTION_NAMES: dict[str, str] = {**dest_of_spelling("eval"), **dest_of_spelling("train")}  # spelling -> dest

# DeiT's model and input side, where neither the user, a checkpoint nor a recipe gives one.
DEIT_MODEL, DEIT_INPUT_SIZE = "deit_small_patch16_224", 224

# A pretext run's labels are the pretext's (the rotation): a mixed image has no single one, so no Mixup/CutMix
# unless asked for.
PRETEXT_DEFAULTS: dict[str, Any] = {"mixup": 0.0, "cutmix": 0.0}

# SAR: the loss and the two removals of Eq. 10-11; --sar/--no-sar sets all three at once.
SAR_COMPONENTS = ("sar_loss", "remove_last_skip", "remove_last_norm")

# Written to config.yaml as resolved from the options (SAR's loss and --reg as one list of terms);
# recomputed, not read, when the file is fed back with --config.
DERIVED_KEYS = ("regularizers",)


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
        raise SarvitError(f"--config: expected a YAML text file, could not read {file} ({error.reason if isinstance(error, UnicodeDecodeError) else error.strerror})") from None
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


def resolve_sar(config: dict[str, Any], given: set[str]) -> None:
    """Turn ``--sar`` / the component flags into the three component switches, in place.

    ``--sar`` (the default) / ``--no-sar`` sets all three. Naming a component (``--sar-loss``,
    ``--use-blob``, ``--remove-last-skip``, ``--remove-last-norm``, ``--use-nosn``) without ``--sar``
    switches on only the components named: the reference code's ``--use-blob`` / ``--use-nosn`` thus
    mean what they meant there. ``--no-sar-loss`` / ``--keep-last-*`` turn one component off.
    """
    if config.pop("use_nosn", False):
        for key in ("remove_last_skip", "remove_last_norm"):
            if config.get(key) is None:
                config[key] = True
            given.add(key)
    named_on = any(config.get(key) is True and key in given for key in SAR_COMPONENTS)
    base = config["sar"] is not False if "sar" in given or not named_on else False  # unset (None): on
    for key in SAR_COMPONENTS:
        if config.get(key) is None:
            config[key] = bool(base)
    config["sar"] = all(config[key] for key in SAR_COMPONENTS)


ARCH_KEYS = ("model", "input_size", "patch_size", "depth", "embed_dim", "num_heads")


def resolve_config(cli: dict[str, Any], base: Optional[dict[str, Any]] = None,
                   inherit: Optional[dict[str, Any]] = None, training: bool = True) -> dict[str, Any]:
    """The configuration of :func:`resolve_run`, without its notes."""
    return resolve_run(cli, base, inherit, training)[0]


def resolve_run(cli: dict[str, Any], base: Optional[dict[str, Any]] = None,
                inherit: Optional[dict[str, Any]] = None, training: bool = True) -> tuple[dict[str, Any], list[str]]:
    """``(config, notes)``: DEFAULTS < the recipe < inherit < base < --config YAML < the command line.

    ``base``: a resumed run's stored configuration. ``inherit``: the architecture (:data:`ARCH_KEYS`)
    of a ``--finetune`` checkpoint, used where the user names none. ``training``: ``sarvit train``, whose
    recipe is ``--recipe`` or chosen from the device and the data (:func:`~sarvit.train.recipes.choose_recipe`);
    ``sarvit eval`` uses ``quick`` on the synthetic set, else ``deit``. ``notes``: the lines a run prints
    first (the recipe and why it was chosen; options ignored).
    """
    file = load_yaml_config(cli["config"]) if cli.get("config") else {}
    cli = checked_values(cli)
    given = set(inherit or {}) | set(base or {}) | set(file) | set(cli)
    upper = {**(inherit or {}), **(base or {}), **file, **cli}
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
            source = f"--config {cli['config']}" if key in file else "the checkpoint's run"
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
    config = dict(DEFAULTS)
    apply_recipe(config, RECIPES[name], given, upper, _survey, PRETEXT_DEFAULTS if upper.get("pretext") else None)
    if training and base is None:
        notes.insert(0, recipe_line(name, reason))
    if config["model"] is None:
        config["model"] = DEIT_MODEL
    if config["input_size"] is None:
        config["input_size"] = DEIT_INPUT_SIZE
    if base is None:
        resolve_sar(config, given)
    else:  # a resumed run's switches are resolved already: only what is given now changes them
        given = set(file) | set(cli)
        if config.pop("use_nosn", False):
            config["remove_last_skip"] = config["remove_last_norm"] = True
            given |= {"remove_last_skip", "remove_last_norm"}
        if "sar" in given:
            for key in SAR_COMPONENTS:
                if key not in given:
                    config[key] = bool(config["sar"])
        config["sar"] = all(config[key] for key in SAR_COMPONENTS)
    resolve_regularizers(config, given)  # may switch the SAR loss on (--reg spatial-entropy)
    config["sar"] = all(config[key] for key in SAR_COMPONENTS)
    config.pop("config", None)
    _check(config)
    return config, notes


def trainable_dataset_name(data_path: str) -> str:
    """The data set kind of ``data_path`` (:func:`sarvit.data.infer_dataset_name`), one that classifies."""
    name = infer_dataset_name(data_path)
    if name in ("voc", "masks"):
        kind = "PASCAL VOC" if name == "voc" else "images with masks (images/ + masks/)"
        raise SarvitError(f"--data-path {data_path} holds {kind}, for segment-eval, analyze and visualize, not "
                          "training; name the classification set with --data-set")
    return name


def _device_of(config: dict[str, Any]) -> str:
    """The device the run asks for; ``auto`` or none: CUDA when available (as training resolves it)."""
    if config.get("device") and str(config["device"]) != "auto":
        return str(config["device"])
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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


# How a run was invoked rather than what it is: fed back with --config, these would resume or evaluate.
INVOCATION_KEYS = ("resume", "eval", "config", "use_ema", "json", "overwrite")


def save_config(config: dict[str, Any], path: os.PathLike) -> None:
    """The resolved configuration as YAML; ``--config`` with it repeats the run from the start."""
    run = {key: value for key, value in config.items() if key not in INVOCATION_KEYS}
    write_text(yaml.safe_dump(run, sort_keys=True), path)
