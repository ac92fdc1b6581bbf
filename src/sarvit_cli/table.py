"""The one option table of the `sarvit` command: every subcommand's options, each with one name, meaning, default.

Standard library only (no torch, no ``sarvit`` package), so that ``sarvit --help`` and argument errors answer at
once and every room may read the table. A row names the commands that take it; every long spelling is accepted
with ``-`` and with ``_`` (generated, not listed). Adding an option is one row::

    Option("hflip", ROOM_AUGMENT, "horizontal flip probability (0: off)", TRAIN, type=float, default=0.5,
           metavar="P"),

The self-supervised rows live in :mod:`sarvit_cli.rows_ssl`, the subcommands in :mod:`sarvit_cli.commands`,
the row's fields in :mod:`sarvit_cli.schema`; this module joins them into the one table.
:mod:`sarvit_cli.parser` builds the argparse parsers from it, ``docs/hooks/cli_reference.py`` the CLI
reference page; :func:`defaults` gives the table's values (``train`` / ``eval`` layer them in ``sarvit.train.config``).
:mod:`sarvit.options` adds the check of a configuration's values against it (:func:`sarvit.options.check_values`).
"""
from __future__ import annotations

from typing import Any

from .commands import COMMANDS
from .rows_ssl import SSL_OPTIONS
# the groups, rooms and row types are read from here too (sarvit_cli.table.LAYERED, ROOMS, Option)
from .schema import (ALL, ANALYSIS, DATA_USERS, EVAL, EXPERIMENT, EXPORT, FEATURES, LAYERED, LEARN, PRETRAIN,
                     ROOM_ANALYSIS, ROOM_AUGMENT, ROOM_DATA, ROOM_EXPERIMENT, ROOM_MODEL, ROOM_OPTIM, ROOM_RUN,
                     ROOM_SAR, ROOM_SSL, ROOMS, SSL, TRAIN, Command, Option)
from .values import AT_LEAST_1, DEVICE, NON_NEGATIVE, POSITIVE, PROBABILITY, Range, float_list

__all__ = ["COMMANDS", "OPTIONS", "Command", "Option", "Range", "defaults", "dest_of_spelling",
           "options_of", "shown_default", "spellings"]


O = Option
OPTIONS: tuple[Option, ...] = (
    # run
    O("config", ROOM_RUN, "options from a YAML file; the command line wins", LEARN, metavar="YAML"),
    O("recipe", ROOM_RUN, "a set of defaults: deit (the papers' ImageNet recipe), small-data (from scratch on "
      "thousands of images), quick (a small ViT at 32 px, minutes on a CPU); every option overrides it (default: "
      "chosen from the device and the data set's size, printed at the start)", TRAIN, metavar="NAME"),
    O("output-dir", ROOM_RUN, "where results go (train: output/<data set>-<time>; segment-eval, analyze: the "
      "folder of the weights; visualize: its attention_maps/; experiment: output/experiments/<grid>-<scale>-<data "
      "set>); a result file already there is kept and the next free name (_2, _3, ...) used",
      DATA_USERS, metavar="DIR"),
    O("exp-dir", ROOM_RUN, "the experiment folder: --output-dir", EXPERIMENT, dest="output_dir", metavar="DIR"),
    O("weights", ROOM_RUN, "load these weights into the model (a sarvit checkpoint, which also brings its "
      "architecture, or a timm/DeiT state dict, then give --model); train: start from them, same head", ALL,
      aliases=("pretrained-weights", "checkpoint"), metavar="CKPT"),
    O("resume", ROOM_RUN, "continue a run from its checkpoint (or its folder)", TRAIN, metavar="CKPT"),
    O("finetune", ROOM_RUN, "start from these weights (sarvit or timm), new head for the data set's classes",
      TRAIN, metavar="CKPT"),
    O("eval", ROOM_RUN, "only evaluate --resume CKPT (as `sarvit eval --weights CKPT`)", TRAIN, default=False,
      switch=True),
    O("ema", ROOM_RUN, "evaluate (export) the checkpoint's EMA weights", EVAL + EXPORT, default=False, switch=True,
      dest="use_ema"),
    O("plain", ROOM_RUN, "export a model without SAR surgery under its own timm name, loadable without sarvit "
      "(default: as sar_vit, which `import sarvit` registers with timm)", EXPORT, default=False, switch=True),
    O("json", ROOM_RUN, "also write the results to this JSON file (segment-eval, analyze: default "
      "OUTPUT_DIR/<command>.json)", EVAL + ("segment-eval", "analyze"), metavar="FILE"),
    O("device", ROOM_RUN, "cpu, cuda or cuda:N (default: cuda when available)", ALL, metavar="DEV", within=DEVICE),
    O("seed", ROOM_RUN, "random seed (training draws the same synthetic images for every seed; analysis commands draw them with it)", ALL, type=int, default=0, within=NON_NEGATIVE),
    O("amp", ROOM_RUN, "mixed precision (default: on with CUDA, off on CPU)", LEARN, switch=True, off=("no-amp",)),
    O("amp-dtype", ROOM_RUN, "autocast dtype; fp16 uses a gradient scaler", LEARN, default="bf16",
      choices=("bf16", "fp16")),
    O("skip-nonfinite", ROOM_RUN, "skip and count steps whose loss is NaN/inf instead of stopping "
      "(one host sync per step)", TRAIN, default=False, switch=True),
    O("max-skipped-steps", ROOM_RUN, "with --skip-nonfinite: stop after this many skipped steps in a row", TRAIN,
      type=int, default=25, metavar="N", within=AT_LEAST_1),
    O("skip-bad-images", ROOM_RUN, "leave out (and count) the image files that cannot be decoded, instead of "
      "stopping before training with the list of them", LEARN, default=False, switch=True),
    O("overwrite", ROOM_RUN, "start afresh in an --output-dir that holds a run: its files move into "
      "OUTPUT_DIR/replaced-<time>/ (nothing is deleted)", TRAIN, default=False, switch=True),
    O("deterministic", ROOM_RUN, "deterministic algorithms (slower on GPU)", TRAIN, default=False, switch=True),
    O("log-interval", ROOM_RUN, "steps between progress updates and non-finite checks", TRAIN, type=int,
      default=50, metavar="STEPS", within=AT_LEAST_1),
    O("diagnostics", ROOM_RUN, "measure every --log-interval steps: gradient norms per loss term, per-head "
      "attention and spatial entropy, the smallest map mass, the last block's update ratio (log.jsonl train_diag_*, "
      "TensorBoard, curves.png); not with --compile", TRAIN, default=True, switch=True, off=("no-diagnostics",)),
    O("attention-every", ROOM_RUN, "draw the attention of a few fixed validation images to "
      "attention/epoch_NNN.png and TensorBoard every N epochs and at the end (0: never; default: about five "
      "pictures a run)", TRAIN, type=int, metavar="N", within=NON_NEGATIVE),
    O("tensorboard", ROOM_RUN, "write TensorBoard events", TRAIN, default=True, switch=True,
      off=("no-tensorboard",)),
    O("compile", ROOM_RUN, "torch.compile the model with its loss terms, after DDP, as timm's --torchcompile "
      "(evaluation stays eager)", TRAIN, default=False, switch=True, aliases=("torchcompile",)),
    O("compile-backend", ROOM_RUN, "torch.compile backend for --compile", TRAIN, default="inductor",
      metavar="NAME"),
    O("compile-mode", ROOM_RUN, "torch.compile mode for --compile (default: torch's; reduce-overhead: CUDA "
      "graphs, no launch overhead)", TRAIN, aliases=("torchcompile-mode",),
      choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")),
    # data
    O("data-set", ROOM_DATA, "synthetic (built in), cifar10, cifar100, flowers, pets, imagenet, imnet-100, "
      "imagenette, imagewoof, folder; "
      "voc (segment-eval, visualize, analyze)", DATA_USERS, default="synthetic", aliases=("dataset",), metavar="NAME"),
    O("data-path", ROOM_DATA, "root folder of the data set (voc: VOC2012, VOCdevkit or the folder holding it)",
      DATA_USERS, metavar="DIR"),
    O("voc-path", ROOM_DATA, "the reference spelling of --data-set voc --data-path DIR", ANALYSIS, dest="data_path",
      metavar="DIR", sets={"data_set": "voc"}),
    O("split", ROOM_DATA, "voc image list (ImageSets/Segmentation/<split>.txt)", ANALYSIS, default="val"),
    O("ood", ROOM_DATA, "evaluate an ImageNet-1k classifier on the out-of-distribution set at --data-path: "
      "imagenet-a or imagenet-r (200 WordNet-id folders, scored on those 200 classes), imagenet-c "
      "(<corruption>/<severity>/<wnid>/: top-1 error per corruption and severity, CE against AlexNet, mCE; JSON "
      "and heat map into --output-dir, default the weights' folder)", EVAL,
      choices=("imagenet-a", "imagenet-r", "imagenet-c"), metavar="SET"),
    O("corrupt", ROOM_DATA, "evaluate on the data set's evaluation split corrupted on the fly with ImageNet-C's "
      "corruptions: NAME:SEVERITY, NAME (severities 1-5), all (the 15 x 5), extra (the 4 held-out ones), "
      "comma-separated; the same images for the same --seed (needs sarvit[corruptions])", EVAL,
      metavar="NAME[:SEVERITY]"),
    O("baseline", ROOM_DATA, "with --corrupt: a baseline model's corruption.json (or its folder) from the same "
      "--corrupt evaluation; adds CE and relative CE against it", EVAL, metavar="JSON|DIR"),
    O("subset-ratio", ROOM_DATA, "train on this class-balanced fraction of the training set", LEARN, type=float,
      default=1.0, metavar="R", within=Range(0, 1, low_open=True)),
    O("download", ROOM_DATA, "download torchvision data sets", LEARN, default=False, switch=True),
    O("pretext", ROOM_DATA, "self-supervised task in place of the data set's labels: rotation (4 classes: each image "
      "rotated by 0/90/180/270 degrees)", LEARN, choices=("rotation",), metavar="TASK"),
    O("num-samples", ROOM_DATA, "number of images: train, eval: the synthetic set's training images (validation: a "
      "fifth); segment-eval, analyze: 500 synthetic or all; visualize: 8", ALL, type=int, metavar="N",
      within=AT_LEAST_1),
    O("num-classes", ROOM_DATA, "synthetic only: number of shape classes (default: all 10)", LEARN, type=int,
      metavar="K", within=Range(2)),
    O("num-workers", ROOM_DATA, "data-loading processes per process, capped by its CPUs (a quarter of them on a "
      "CPU device)", ALL, type=int, default=10, aliases=("workers", "-j"), metavar="N", within=NON_NEGATIVE),
    O("resident-data", ROOM_DATA, "decode the data set once onto the device and augment it there in batches "
      "(kornia; auto: on a CUDA device when both splits fit in a quarter of its free memory; docs/gpu.md)", TRAIN,
      default="auto", choices=("auto", "on", "off")),
    O("pin-mem", ROOM_DATA, "pin host memory for faster host-to-GPU copies", LEARN, default=True, switch=True,
      off=("no-pin-mem",)),
    O("batch-size", ROOM_DATA, "images per process and step", ALL, type=int, default=64, aliases=("-b",),
      metavar="N", within=AT_LEAST_1),
    O("test-dir", ROOM_DATA, "image files and/or folders of images (instead of a data set)", ("visualize",),
      aliases=("image-path", "images"), nargs="+", metavar="PATH"),
    # model
    O("model", ROOM_MODEL, "timm ViT name (default: a checkpoint's; else deit_small_patch16_224, "
      "vit_tiny_patch16_224 on synthetic)", ALL, aliases=("arch",), metavar="NAME"),
    O("input-size", ROOM_MODEL, "image side (default: a checkpoint's, read from the weights; else 224, 32 on "
      "synthetic)", ALL, type=int, aliases=("img-size", "image-size"), metavar="PX", within=AT_LEAST_1),
    O("patch-size", ROOM_MODEL, "override the model's patch side", ALL, type=int, metavar="N", within=AT_LEAST_1),
    O("depth", ROOM_MODEL, "override the model's number of blocks", LEARN, type=int, metavar="N", within=AT_LEAST_1),
    O("embed-dim", ROOM_MODEL, "override the model's width", LEARN, type=int, metavar="N", within=AT_LEAST_1),
    O("num-heads", ROOM_MODEL, "override the model's number of heads", LEARN, type=int, metavar="N", within=AT_LEAST_1),
    O("drop", ROOM_MODEL, "dropout rate", LEARN, type=float, default=0.0, metavar="P",
      within=Range(0, 1, high_open=True)),
    O("drop-path", ROOM_MODEL, "stochastic depth rate", LEARN, type=float, default=0.1, metavar="P",
      within=PROBABILITY),
    # SAR
    O("sar", ROOM_SAR, "SAR: spatial-entropy loss + last-block skip and LayerNorm removal (default: a "
      "checkpoint's; analysis of plain weights: read from them; else on)", ALL, switch=True, off=("no-sar",)),
    O("lambda", ROOM_SAR, "weight of the spatial-entropy loss", LEARN, type=float, default=0.01,
      aliases=("blob-weight",), dest="lam", metavar="W", within=NON_NEGATIVE),
    O("sar-loss-gate", ROOM_SAR, "the spatial-entropy weight opens as the task loss falls below chance "
      "(ln classes): fully at this fraction below it; 0: always on (the papers' exact form); see "
      "docs/results-sar-stall.md", LEARN, type=float, default=0.05, metavar="DROP", within=NON_NEGATIVE),
    O("sar-loss", ROOM_SAR, "add lambda * spatial entropy to the loss", LEARN, switch=True, aliases=("use-blob",),
      off=("no-sar-loss",)),
    O("remove-last-skip", ROOM_SAR, "remove the last block's attention skip connection (Eq. 10)", LEARN,
      switch=True, off=("keep-last-skip",)),
    O("remove-last-norm", ROOM_SAR, "remove the LayerNorm before the last MLP (Eq. 11)", LEARN, switch=True,
      off=("keep-last-norm",)),
    O("use-nosn", ROOM_SAR, "reference spelling of --remove-last-skip --remove-last-norm", ALL, default=False,
      switch=True),
    O("remove-last-mlp-skip", ROOM_SAR, "also remove the last MLP skip (ablation, not SAR)", LEARN, default=False,
      switch=True),
    O("similarity", ROOM_SAR, "similarity of the [CLS] query with the patch keys", LEARN, default="dot",
      choices=("dot", "cosine")),
    O("query", ROOM_SAR, "the query S is read from: cls, or for a model without [CLS] mean (average patch query) "
      "or pooled (query of the average patch embedding)", LEARN, default="cls", choices=("cls", "mean", "pooled")),
    O("reg", ROOM_SAR, "add a loss term (repeatable): NAME is one of sarvit.losses.REGULARIZERS (an unknown name "
      "is refused with the list); WEIGHT: default the term's paper value (spatial-entropy: --lambda), 0 turns it off; "
      "@BLOCK: the block whose attention distance and patch-similarity read (default -1, the last); see README",
      TRAIN, repeat=True, metavar="NAME[:WEIGHT][@BLOCK]"),
    # optimisation
    O("epochs", ROOM_OPTIM, "training epochs", TRAIN, type=int, default=300, metavar="N", within=AT_LEAST_1),
    O("opt", ROOM_OPTIM, "timm optimizer name", TRAIN, default="adamw", metavar="NAME"),
    O("opt-eps", ROOM_OPTIM, "optimizer eps", TRAIN, type=float, default=1e-8, metavar="EPS", within=POSITIVE),
    O("opt-betas", ROOM_OPTIM, "optimizer betas", TRAIN, type=float_list, metavar="B1,B2",
      within=Range(0, 1, high_open=True)),
    O("momentum", ROOM_OPTIM, "SGD momentum", TRAIN, type=float, default=0.9, metavar="M", within=NON_NEGATIVE),
    O("weight-decay", ROOM_OPTIM, "weight decay", TRAIN, type=float, default=0.05, metavar="WD", within=NON_NEGATIVE),
    O("clip-grad", ROOM_OPTIM, "clip gradient norm", TRAIN, type=float, metavar="NORM", within=POSITIVE),
    O("sched", ROOM_OPTIM, "timm scheduler (cosine, step, ...)", TRAIN, default="cosine", metavar="NAME"),
    O("lr", ROOM_OPTIM, "learning rate for a global batch of 512, scaled linearly to the real one", TRAIN,
      type=float, default=5e-4, metavar="LR", within=NON_NEGATIVE),
    O("unscale-lr", ROOM_OPTIM, "use --lr as given, unscaled", TRAIN, default=False, switch=True),
    O("warmup-lr", ROOM_OPTIM, "warmup start lr", TRAIN, type=float, default=1e-6, metavar="LR", within=NON_NEGATIVE),
    O("min-lr", ROOM_OPTIM, "final lr", TRAIN, type=float, default=1e-5, metavar="LR", within=NON_NEGATIVE),
    O("warmup-epochs", ROOM_OPTIM, "linear warmup epochs", TRAIN, type=int, default=5, metavar="N",
      within=NON_NEGATIVE),
    O("decay-epochs", ROOM_OPTIM, "step scheduler: epochs between decays", TRAIN, type=float, default=30,
      metavar="N", within=POSITIVE),
    O("decay-rate", ROOM_OPTIM, "step scheduler: decay factor", TRAIN, type=float, default=0.1, aliases=("dr",),
      metavar="R", within=POSITIVE),
    O("model-ema", ROOM_OPTIM, "keep an exponential moving average of the weights (timm ModelEmaV3)", TRAIN,
      default=True, switch=True, off=("no-model-ema",)),
    O("model-ema-decay", ROOM_OPTIM, "EMA decay per step (recipes other than deit: tied to the run's length)",
      TRAIN, type=float, default=0.99996, metavar="D", within=PROBABILITY),
    O("model-ema-warmup", ROOM_OPTIM, "timm's EMA warm-up: the decay grows from 0 to --model-ema-decay, so an "
      "early average follows the model", TRAIN, default=False, switch=True, off=("no-model-ema-warmup",)),
    # augmentation
    O("crop-scale", ROOM_AUGMENT, "area range of the training random-resized crop (timm's --scale)", TRAIN,
      type=float_list, default=[0.08, 1.0], metavar="MIN,MAX"),
    O("hflip", ROOM_AUGMENT, "horizontal flip probability (0: off, e.g. for digits or text)", TRAIN, type=float,
      default=0.5, metavar="P", within=PROBABILITY),
    O("color-jitter", ROOM_AUGMENT, "colour jitter", TRAIN, type=float, default=0.3, metavar="F", within=NON_NEGATIVE),
    O("aa", ROOM_AUGMENT, "timm auto-augment policy or none", TRAIN, default="rand-m9-mstd0.5-inc1",
      metavar="POLICY"),
    O("smoothing", ROOM_AUGMENT, "label smoothing", TRAIN, type=float, default=0.1, metavar="E",
      within=Range(0, 1, high_open=True)),
    O("train-interpolation", ROOM_AUGMENT, "resize interpolation", TRAIN, default="bicubic",
      choices=("bicubic", "bilinear", "nearest")),
    O("repeated-aug", ROOM_AUGMENT, "repeated augmentation (3 views per image across processes; every epoch "
      "still covers the whole training set)", TRAIN,
      default=True, switch=True, off=("no-repeated-aug",)),
    O("reprob", ROOM_AUGMENT, "random erasing probability", TRAIN, type=float, default=0.25, metavar="P",
      within=PROBABILITY),
    O("remode", ROOM_AUGMENT, "random erasing mode", TRAIN, default="pixel"),
    O("recount", ROOM_AUGMENT, "random erasing count", TRAIN, type=int, default=1, within=AT_LEAST_1),
    O("mixup", ROOM_AUGMENT, "mixup alpha (0: off)", TRAIN, type=float, default=0.8, metavar="ALPHA",
      within=NON_NEGATIVE),
    O("cutmix", ROOM_AUGMENT, "cutmix alpha (0: off)", TRAIN, type=float, default=1.0, metavar="ALPHA",
      within=NON_NEGATIVE),
    O("cutmix-minmax", ROOM_AUGMENT, "cutmix box ratio range (overrides --cutmix)", TRAIN, type=float_list,
      metavar="MIN,MAX", within=PROBABILITY),
    O("mixup-prob", ROOM_AUGMENT, "probability of mixup or cutmix per batch", TRAIN, type=float, default=1.0,
      metavar="P", within=PROBABILITY),
    O("mixup-switch-prob", ROOM_AUGMENT, "probability of cutmix instead of mixup when both are on", TRAIN,
      type=float, default=0.5, metavar="P", within=PROBABILITY),
    O("mixup-mode", ROOM_AUGMENT, "mixup granularity", TRAIN, default="batch", choices=("batch", "pair", "elem")),
    # analysis
    O("threshold", ROOM_ANALYSIS, "mass fraction kept by the attention threshold (DINO's --threshold)", ANALYSIS,
      type=float, default=0.6, within=PROBABILITY),
    O("pretraining", ROOM_ANALYSIS, "accepted for the reference scripts: the weights are evaluated as trained",
      ANALYSIS, default="supervised", choices=("supervised",)),
    O("dpi", ROOM_ANALYSIS, "PNG resolution", ("visualize",), type=int, default=100, within=AT_LEAST_1),
    # experiment
    O("list", ROOM_EXPERIMENT, "show every grid's cells and their train flags", EXPERIMENT, default=False,
      switch=True),
    O("seeds", ROOM_EXPERIMENT, "seeds per cell: a count (seeds 0..N-1) or a comma list", EXPERIMENT, default="3",
      metavar="N|S1,S2,.."),
    O("scale", ROOM_EXPERIMENT, "tiny: a CPU runs a grid in minutes; quick: the quick recipe as `sarvit train` "
      "chooses it for the data; small: the synthetic quick demo; paper: "
      "ViT-S/16 with DeiT's recipe and the papers' epochs", EXPERIMENT, default="tiny",
      choices=("tiny", "quick", "small", "paper")),
    O("jobs", ROOM_EXPERIMENT, "runs at once (CPU: processes sharing the cores; GPUs: CUDA_VISIBLE_DEVICES "
      "round-robin)", EXPERIMENT, type=int, default=1, metavar="N", within=AT_LEAST_1),
    O("report-only", ROOM_EXPERIMENT, "train nothing; report the finished runs", EXPERIMENT, default=False,
      switch=True),
    O("dry-run", ROOM_EXPERIMENT, "print each run's `sarvit train` command and stop", EXPERIMENT, default=False,
      switch=True),
    # then the self-supervised block (sarvit pretrain, knn, linear-probe): sarvit_cli.rows_ssl
) + SSL_OPTIONS
del O


def spellings(option: Option, names: tuple[str, ...] = ()) -> list[str]:
    """Every command-line spelling of ``names`` (default: the option's on-spellings), with ``-`` and ``_``."""
    found: list[str] = []
    for name in names or (option.name, *option.aliases):
        variants = [name] if name.startswith("-") else [f"--{name}", f"--{name.replace('-', '_')}",
                                                         f"--{name.replace('_', '-')}"]
        for spelling in variants:
            if spelling not in found:
                found.append(spelling)
    return found


def options_of(command: str) -> list[Option]:
    """The rows of ``command``, in table order."""
    if command not in COMMANDS:
        raise KeyError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")
    return [option for option in OPTIONS if command in option.commands]


def defaults(command: str) -> dict[str, Any]:
    """``{dest: default}`` of ``command``'s options (the first row of a dest gives its default)."""
    out: dict[str, Any] = {}
    for option in options_of(command):
        out.setdefault(option.dest, option.default)
    return out


def dest_of_spelling(command: str) -> dict[str, str]:
    """Each long spelling of ``command``'s options without dashes (``blob-weight``, ``blob_weight``, ``lam``) -> dest."""
    names: dict[str, str] = {}
    for option in options_of(command):
        for spelling in spellings(option, (option.name, *option.aliases, *option.off)) + [option.dest]:
            if spelling.startswith("--") or not spelling.startswith("-"):
                names.setdefault(spelling.lstrip("-"), option.dest)
    return names


def shown_default(value: Any) -> str:
    """A default as ``--help`` shows it: ``on``/``off`` for booleans."""
    return "off" if value is False else "on" if value is True else str(value)
