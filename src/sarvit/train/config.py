"""The options of `sarvit train` / `sarvit eval`: DeiT's recipe, SAR's switches, the reference spellings.

Every option is declared once in :func:`add_train_options` with its default; the parser itself carries
no defaults (``argparse.SUPPRESS``), so the parsed namespace holds exactly what the user typed. The
resolved configuration is then layered, later layers winning::

    DEFAULTS  <  QUICK_DEFAULTS (only for the built-in synthetic dataset)  <  base (a resumed checkpoint's
    own config)  <  --config run.yaml  <  the command line

and finally the SAR switches are resolved (:func:`resolve_sar`). The result is a plain ``dict`` keyed by
the option's ``dest`` (``config.yaml`` in the output folder holds it and can be fed back with ``--config``).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Optional

import yaml

from ..data import canonical_dataset_name
from ..errors import SarvitError

__all__ = [
    "DEFAULTS", "QUICK_DEFAULTS", "SAR_COMPONENTS", "add_train_options", "add_eval_options",
    "resolve_config", "resolve_sar", "load_yaml_config", "save_config",
]

DEFAULTS: dict[str, Any] = {}        # dest -> DeiT's default (filled by add_train_options)
OPTION_NAMES: dict[str, str] = {}    # every long spelling without dashes ("blob-weight", "blob_weight") -> dest

# The built-in synthetic set (32 px procedural objects, 8x8 patch grid) trains a small ViT in minutes on a laptop CPU;
# these values replace DeiT's for every option the user does not set when --data-set is synthetic.
QUICK_DEFAULTS: dict[str, Any] = {
    "model": "vit_tiny_patch16_224", "input_size": 32, "patch_size": 4, "depth": 4, "embed_dim": 128,
    "num_heads": 4, "epochs": 10, "batch_size": 64, "lr": 1.6e-2, "warmup_epochs": 1, "min_lr": 1e-5,
    "drop_path": 0.0, "mixup": 0.0, "cutmix": 0.0, "model_ema": False, "repeated_aug": False,
    "reprob": 0.0, "aa": None, "num_samples": 3000,
}
DEIT_MODEL = "deit_small_patch16_224"    # the model when --model is not given and the data set is not synthetic

# SAR: the loss and the two removals of Eq. 10-11; --sar/--no-sar sets all three at once.
SAR_COMPONENTS = ("sar_loss", "remove_last_skip", "remove_last_norm")


def _fmt(value: Any) -> str:
    return "off" if value is None or value is False else "on" if value is True else str(value)


class _Declare:
    """Adds options to a parser, records their defaults and spellings, shows the default in the help."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser, self.group = parser, parser

    def section(self, title: str) -> None:
        self.group = self.parser.add_argument_group(title)

    def _note(self, names, dest: str, default: Any) -> None:
        DEFAULTS.setdefault(dest, default)
        for name in (*names, dest):
            key = name.lstrip("-")
            OPTION_NAMES[key] = OPTION_NAMES[key.replace("-", "_")] = OPTION_NAMES[key.replace("_", "-")] = dest

    def opt(self, *names: str, dest: str, default: Any = None, help: str, quick: bool = False, **kwargs) -> None:
        notes = [f"default: {_fmt(default)}"] if default is not None else []
        if dest in QUICK_DEFAULTS:
            notes.append(f"{_fmt(QUICK_DEFAULTS[dest])} on synthetic")
        shown = f"{help} ({'; '.join(notes)})" if notes else help
        self.group.add_argument(*names, dest=dest, default=argparse.SUPPRESS, help=shown, **kwargs)
        self._note(names, dest, default)

    def switch(self, on: tuple, off: tuple, *, dest: str, default: Any, help: str) -> None:
        """A boolean with its on- and off-spellings (``--x/--no-x``) sharing one dest."""
        notes = [f"default: {_fmt(default)}"] if default is not None else []
        if dest in QUICK_DEFAULTS:
            notes.append(f"{_fmt(QUICK_DEFAULTS[dest])} on synthetic")
        if on:
            self.group.add_argument(*on, dest=dest, action="store_true", default=argparse.SUPPRESS,
                                    help=f"{help} ({'; '.join(notes)})" if notes else help)
        if off:
            self.group.add_argument(*off, dest=dest, action="store_false", default=argparse.SUPPRESS,
                                    help=f"turn off: {help}" if on else help)
        self._note(on + off, dest, default)


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.replace(",", " ").split()]


def add_data_options(d: _Declare) -> None:
    d.section("data")
    d.opt("--data-set", "--data_set", "--dataset", dest="data_set", default="synthetic", metavar="NAME",
          help="synthetic (built in), cifar10, cifar100, flowers, pets, imagenet, imnet-100 or folder")
    d.opt("--data-path", "--data_path", dest="data_path", metavar="DIR", help="root folder of the data set")
    d.opt("--subset-ratio", dest="subset_ratio", type=float, default=1.0, metavar="R",
          help="train on this class-balanced fraction of the training set")
    d.switch(("--download",), (), dest="download", default=False, help="download torchvision data sets")
    d.opt("--num-samples", dest="num_samples", type=int, metavar="N",
          help="synthetic only: training images (validation: a fifth of them)")
    d.opt("--num-classes", dest="num_classes", type=int, metavar="K",
          help="synthetic only: number of shape classes (default: all 10)")
    d.opt("--num-workers", "--num_workers", "--workers", "-j", dest="num_workers", type=int, default=10,
          metavar="N", help="data-loading processes per GPU/process, capped by the CPUs per process")
    d.switch(("--pin-mem",), ("--no-pin-mem",), dest="pin_mem", default=True,
             help="pin host memory for faster host-to-GPU copies")
    d.opt("--batch-size", "--batch_size", "-b", dest="batch_size", type=int, default=64, metavar="N",
          help="images per process and step")


def add_model_options(d: _Declare) -> None:
    d.section("model")
    d.opt("--model", dest="model", default=None, metavar="NAME",
          help=f"timm ViT name ({DEIT_MODEL} unless the data set is synthetic)")
    d.opt("--input-size", "--input_size", dest="input_size", type=int, default=224, metavar="PX",
          help="image side")
    for flag, dest, what in (("--patch-size", "patch_size", "patch side"), ("--depth", "depth", "blocks"),
                             ("--embed-dim", "embed_dim", "width"), ("--num-heads", "num_heads", "heads")):
        d.opt(flag, dest=dest, type=int, metavar="N", help=f"override the timm model's {what}")
    d.opt("--drop", dest="drop", type=float, default=0.0, metavar="P", help="dropout rate")
    d.opt("--drop-path", "--drop_path", dest="drop_path", type=float, default=0.1, metavar="P",
          help="stochastic depth rate")


def add_sar_options(d: _Declare) -> None:
    d.section("SAR (naming a component switches on only the components named; see README)")
    d.switch(("--sar",), ("--no-sar",), dest="sar", default=True,
             help="SAR: spatial-entropy loss + last-block skip and LayerNorm removal")
    d.opt("--lambda", "--blob-weight", "--blob_weight", dest="lam", type=float, default=0.01, metavar="W",
          help="weight of the spatial-entropy loss")
    d.switch(("--sar-loss", "--use-blob", "--use_blob"), ("--no-sar-loss",), dest="sar_loss", default=None,
             help="add lambda * spatial entropy to the loss")
    d.switch(("--remove-last-skip",), ("--keep-last-skip",), dest="remove_last_skip", default=None,
             help="remove the last block's attention skip connection (Eq. 10)")
    d.switch(("--remove-last-norm",), ("--keep-last-norm",), dest="remove_last_norm", default=None,
             help="remove the LayerNorm before the last MLP (Eq. 11)")
    d.switch(("--use-nosn", "--use_nosn"), (), dest="use_nosn", default=False,
             help="reference spelling of --remove-last-skip --remove-last-norm")
    d.switch(("--remove-last-mlp-skip",), (), dest="remove_last_mlp_skip", default=False,
             help="also remove the last MLP skip (ablation, not SAR)")
    d.opt("--similarity", dest="similarity", choices=("dot", "cosine"), default="dot",
          help="similarity of the [CLS] query with the patch keys")


def add_optim_options(d: _Declare) -> None:
    d.section("optimisation (DeiT)")
    d.opt("--epochs", dest="epochs", type=int, default=300, metavar="N", help="training epochs")
    d.opt("--opt", dest="opt", default="adamw", metavar="NAME", help="timm optimizer name")
    d.opt("--opt-eps", "--opt_eps", dest="opt_eps", type=float, default=1e-8, metavar="EPS", help="optimizer eps")
    d.opt("--opt-betas", "--opt_betas", dest="opt_betas", type=_float_list, metavar="B1,B2", help="optimizer betas")
    d.opt("--momentum", dest="momentum", type=float, default=0.9, metavar="M", help="SGD momentum")
    d.opt("--weight-decay", "--weight_decay", dest="weight_decay", type=float, default=0.05, metavar="WD",
          help="weight decay")
    d.opt("--clip-grad", "--clip_grad", dest="clip_grad", type=float, metavar="NORM", help="clip gradient norm")
    d.opt("--sched", dest="sched", default="cosine", metavar="NAME", help="timm scheduler (cosine, step, ...)")
    d.opt("--lr", dest="lr", type=float, default=5e-4, metavar="LR",
          help="learning rate for a global batch of 512, scaled linearly to the real one")
    d.switch(("--unscale-lr",), (), dest="unscale_lr", default=False, help="use --lr as given, unscaled")
    d.opt("--warmup-lr", "--warmup_lr", dest="warmup_lr", type=float, default=1e-6, metavar="LR", help="warmup start lr")
    d.opt("--min-lr", "--min_lr", dest="min_lr", type=float, default=1e-5, metavar="LR", help="final lr")
    d.opt("--warmup-epochs", "--warmup_epochs", dest="warmup_epochs", type=int, default=5, metavar="N",
          help="linear warmup epochs")
    d.opt("--decay-epochs", "--decay_epochs", dest="decay_epochs", type=float, default=30, metavar="N",
          help="step scheduler: epochs between decays")
    d.opt("--decay-rate", "--decay_rate", "--dr", dest="decay_rate", type=float, default=0.1, metavar="R",
          help="step scheduler: decay factor")
    d.switch(("--model-ema", "--model_ema"), ("--no-model-ema", "--no_model_ema"), dest="model_ema",
             default=True, help="keep an exponential moving average of the weights (timm ModelEmaV3)")
    d.opt("--model-ema-decay", "--model_ema_decay", dest="model_ema_decay", type=float, default=0.99996,
          metavar="D", help="EMA decay per step")


def add_augment_options(d: _Declare) -> None:
    d.section("augmentation (DeiT)")
    d.opt("--color-jitter", "--color_jitter", dest="color_jitter", type=float, default=0.3, metavar="F",
          help="colour jitter")
    d.opt("--aa", dest="aa", default="rand-m9-mstd0.5-inc1", metavar="POLICY", help="timm auto-augment policy or none")
    d.opt("--smoothing", dest="smoothing", type=float, default=0.1, metavar="E", help="label smoothing")
    d.opt("--train-interpolation", "--train_interpolation", dest="train_interpolation", default="bicubic",
          choices=("bicubic", "bilinear", "nearest"), help="resize interpolation")
    d.switch(("--repeated-aug",), ("--no-repeated-aug",), dest="repeated_aug", default=True,
             help="repeated augmentation (3 views per image across processes)")
    d.opt("--reprob", dest="reprob", type=float, default=0.25, metavar="P", help="random erasing probability")
    d.opt("--remode", dest="remode", default="pixel", help="random erasing mode")
    d.opt("--recount", dest="recount", type=int, default=1, help="random erasing count")
    d.opt("--mixup", dest="mixup", type=float, default=0.8, metavar="ALPHA", help="mixup alpha (0: off)")
    d.opt("--cutmix", dest="cutmix", type=float, default=1.0, metavar="ALPHA", help="cutmix alpha (0: off)")
    d.opt("--cutmix-minmax", "--cutmix_minmax", dest="cutmix_minmax", type=_float_list, metavar="MIN,MAX",
          help="cutmix box ratio range (overrides --cutmix)")
    d.opt("--mixup-prob", "--mixup_prob", dest="mixup_prob", type=float, default=1.0, metavar="P",
          help="probability of mixup or cutmix per batch")
    d.opt("--mixup-switch-prob", "--mixup_switch_prob", dest="mixup_switch_prob", type=float, default=0.5,
          metavar="P", help="probability of cutmix instead of mixup when both are on")
    d.opt("--mixup-mode", "--mixup_mode", dest="mixup_mode", default="batch", choices=("batch", "pair", "elem"),
          help="mixup granularity")


def add_run_options(d: _Declare) -> None:
    d.section("run")
    d.opt("--config", dest="config", metavar="YAML", help="options from a YAML file; the command line wins")
    d.opt("--output-dir", "--output_dir", dest="output_dir", metavar="DIR",
          help="where checkpoints and logs go (default: output/<data set>-<timestamp>)")
    d.opt("--resume", dest="resume", metavar="CKPT", help="continue a run from its checkpoint (or its folder)")
    d.opt("--finetune", dest="finetune", metavar="CKPT",
          help="start from these weights (sarvit or timm), new head for the data set's classes")
    d.switch(("--eval",), (), dest="eval", default=False, help="only evaluate --resume CKPT (as `sarvit eval`)")
    d.opt("--device", dest="device", metavar="DEV", help="cuda or cpu (default: cuda when available)")
    d.opt("--seed", dest="seed", type=int, default=0, help="random seed")
    d.switch(("--amp",), ("--no-amp",), dest="amp", default=None,
             help="mixed precision (default: on with CUDA, off on CPU)")
    d.opt("--amp-dtype", dest="amp_dtype", choices=("bf16", "fp16"), default="bf16",
          help="autocast dtype; fp16 uses a gradient scaler")
    d.switch(("--skip-nonfinite",), (), dest="skip_nonfinite", default=False,
             help="skip and count steps whose loss is NaN/inf instead of stopping (one host sync per step)")
    d.switch(("--deterministic",), (), dest="deterministic", default=False,
             help="deterministic algorithms (slower on GPU)")
    d.opt("--log-interval", dest="log_interval", type=int, default=50, metavar="STEPS",
          help="steps between progress updates and non-finite checks")
    d.switch(("--tensorboard",), ("--no-tensorboard",), dest="tensorboard", default=True,
             help="write TensorBoard events")


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """All options of `sarvit train` (also accepted by `sarvit eval`, which ignores the training ones)."""
    d = _Declare(parser)
    for add in (add_run_options, add_data_options, add_model_options, add_sar_options, add_optim_options,
                add_augment_options):
        add(d)


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    """`sarvit eval`: the checkpoint, the data, and where to write the result."""
    d = _Declare(parser)
    d.section("evaluation")
    d.opt("--resume", "--weights", "--checkpoint", dest="resume", metavar="CKPT",
          help="checkpoint to evaluate (sarvit, DeiT-style {'model': ...} or a timm state dict)")
    d.switch(("--ema",), (), dest="use_ema", default=False, help="evaluate the checkpoint's EMA weights")
    d.opt("--json", dest="json", metavar="FILE", help="also write the metrics to this JSON file")
    add_data_options(d)
    add_model_options(d)
    add_sar_options(d)
    d.section("run")
    d.opt("--config", dest="config", metavar="YAML", help="options from a YAML file; the command line wins")
    d.opt("--device", dest="device", metavar="DEV", help="cuda or cpu (default: cuda when available)")
    d.switch(("--amp",), ("--no-amp",), dest="amp", default=None, help="mixed precision (default: on with CUDA)")
    d.opt("--amp-dtype", dest="amp_dtype", choices=("bf16", "fp16"), default="bf16", help="autocast dtype")
    d.opt("--seed", dest="seed", type=int, default=0, help="random seed")


def load_yaml_config(path: str) -> dict[str, Any]:
    """A ``--config`` file as ``{dest: value}``; keys may use any spelling of an option."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SarvitError(f"--config: expected a YAML file, {file} does not exist")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise SarvitError(f"--config: {file} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise SarvitError(f"--config: expected a mapping of option: value in {file}, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        dest = OPTION_NAMES.get(str(key).lstrip("-"))
        if dest is None or dest == "config":
            raise SarvitError(f"--config: {file} has the unknown option {key!r}; see `sarvit train --help`")
        out[dest] = value
    return out


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
    base = config["sar"] if "sar" in given or not named_on else False
    for key in SAR_COMPONENTS:
        if config.get(key) is None:
            config[key] = bool(base)
    config["sar"] = all(config[key] for key in SAR_COMPONENTS)


ARCH_KEYS = ("model", "input_size", "patch_size", "depth", "embed_dim", "num_heads")


def resolve_config(cli: dict[str, Any], base: Optional[dict[str, Any]] = None,
                   inherit: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Layer DEFAULTS < QUICK_DEFAULTS (synthetic) < inherit < base < --config YAML < the command line.

    ``base``: a resumed run's stored configuration. ``inherit``: the architecture (:data:`ARCH_KEYS`)
    of a ``--finetune`` checkpoint, used where the user names none.
    """
    file = load_yaml_config(cli["config"]) if cli.get("config") else {}
    given = set(file) | set(cli)
    config = dict(DEFAULTS)
    upper = {**(base or {}), **file, **cli}
    data_set = canonical_dataset_name(str(upper.get("data_set", config["data_set"])))
    if data_set == "synthetic":
        config.update(QUICK_DEFAULTS)
    for layer in (inherit or {}, base or {}, file, cli):
        config.update(layer)
    config["data_set"] = data_set
    if data_set != "synthetic":  # a resumed synthetic run's generator options do not carry over
        for key in ("num_samples", "num_classes"):
            if key not in file and key not in cli:
                config[key] = None
    if config["model"] is None:
        config["model"] = DEIT_MODEL
    if base is None:
        resolve_sar(config, given)
    else:  # a resumed run's switches are resolved already: only what is given now changes them
        if config.pop("use_nosn", False):
            config["remove_last_skip"] = config["remove_last_norm"] = True
            given |= {"remove_last_skip", "remove_last_norm"}
        if "sar" in given:
            for key in SAR_COMPONENTS:
                if key not in given:
                    config[key] = bool(config["sar"])
        config["sar"] = all(config[key] for key in SAR_COMPONENTS)
    config.pop("config", None)
    _check(config)
    return config


def _check(config: dict[str, Any]) -> None:
    positive = ("epochs", "batch_size", "input_size")
    for key in positive:
        if not isinstance(config[key], int) or config[key] < 1:
            raise SarvitError(f"--{key.replace('_', '-')} must be a positive integer, got {config[key]!r}")
    if not 0.0 < float(config["subset_ratio"]) <= 1.0:
        raise SarvitError(f"--subset-ratio must be in (0, 1], got {config['subset_ratio']}")
    if float(config["lam"]) < 0:
        raise SarvitError(f"--lambda must be >= 0, got {config['lam']}")
    if config.get("resume") and config.get("finetune"):
        raise SarvitError("give --resume (continue a run) or --finetune (start from weights), not both")


# How a run was invoked rather than what it is: fed back with --config, these would resume or evaluate.
INVOCATION_KEYS = ("resume", "eval", "config", "use_ema", "json")


def save_config(config: dict[str, Any], path: os.PathLike) -> None:
    """The resolved configuration as YAML; ``--config`` with it repeats the run from the start."""
    run = {key: value for key, value in config.items() if key not in INVOCATION_KEYS}
    Path(path).write_text(yaml.safe_dump(run, sort_keys=True))


# Record every default and spelling at import, whichever parser is built first.
add_train_options(argparse.ArgumentParser(add_help=False))
add_eval_options(argparse.ArgumentParser(add_help=False))
