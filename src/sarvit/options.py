"""The one option table of the `sarvit` command: every subcommand's options, each with one name, meaning, default.

A leaf module (standard library only, importable without torch), so that ``sarvit --help`` and argument
errors answer at once and every room may read the table. A row names the commands that take it; every
long spelling is accepted with ``-`` and with ``_`` (generated, not listed). Adding an option is one row::

    Option("hflip", ROOM_AUGMENT, "horizontal flip probability (0: off)", TRAIN, type=float, default=0.5,
           metavar="P"),

:mod:`sarvit.option_parser` builds the argparse parsers from it, ``docs/hooks/cli_reference.py`` the CLI
reference page; :func:`defaults` gives the table's values (``train`` / ``eval`` layer them in ``sarvit.train.config``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import SarvitError
from .option_values import (AT_LEAST_1, DEVICE, NON_NEGATIVE, POSITIVE, PROBABILITY, Range, check_value,
                            expected, float_list)

__all__ = ["COMMANDS", "OPTIONS", "Command", "Option", "Range", "check_values", "defaults", "dest_of_spelling",
           "options_of", "shown_default", "spellings"]

TRAIN, EVAL = ("train",), ("eval",)
ANALYSIS = ("segment-eval", "visualize", "analyze")
EXPERIMENT = ("experiment",)
EXPORT = ("export",)
LEARN = TRAIN + EVAL              # the commands whose configuration is layered by sarvit.train.config
ALL = LEARN + ANALYSIS
DATA_USERS = ALL + EXPERIMENT     # the commands that name a data set

# Help sections, in the order `--help` shows them.
ROOM_RUN, ROOM_DATA, ROOM_MODEL, ROOM_SAR = "run", "data", "model", "SAR (naming a component switches on only the components named; see README)"
ROOM_OPTIM, ROOM_AUGMENT, ROOM_ANALYSIS = "optimisation (DeiT)", "augmentation (DeiT)", "analysis"
ROOM_EXPERIMENT = "experiment"
ROOM_SSL = "self-supervised (DINO, MoCo-v3; defaults: the --method and --scale recipe's, printed at the start)"
ROOMS = (ROOM_RUN, ROOM_DATA, ROOM_MODEL, ROOM_SAR, ROOM_OPTIM, ROOM_AUGMENT, ROOM_ANALYSIS, ROOM_EXPERIMENT, ROOM_SSL)

# Self-supervised pretraining and the evaluation of frozen features: their rows are the block at the end of
# OPTIONS; sarvit.train.ssl.recipes layers their defaults (table < --method/--scale recipe < command line).
PRETRAIN, FEATURES = ("pretrain",), ("knn", "linear-probe")
SSL = PRETRAIN + FEATURES
LAYERED = LEARN + SSL             # the commands whose parsers hold only what was typed (no defaults filled)


@dataclass(frozen=True)
class Option:
    """One row: ``name`` is the canonical long spelling without dashes.

    ``aliases``: other spellings (long ones without dashes, short ones as ``"-b"``). A ``switch`` is a
    boolean: ``name``/``aliases`` turn it on, ``off`` spellings turn it off. ``sets``: other values the
    option also sets when given (``--voc-path DIR`` is ``--data-set voc --data-path DIR``). ``within``: the
    values allowed (a :class:`Range` for numbers, a :class:`Pattern` for text), checked by :func:`check_values`.
    ``repeat``: each use appends its value to a list (``--reg tv --reg drloc``).
    """

    name: str
    room: str
    help: str
    commands: tuple[str, ...]
    default: Any = None
    aliases: tuple[str, ...] = ()
    dest: str = ""
    switch: bool = False
    off: tuple[str, ...] = ()
    type: Optional[Callable[[str], Any]] = None
    choices: Optional[tuple] = None
    metavar: Optional[str] = None
    nargs: Optional[str] = None
    sets: dict = field(default_factory=dict)
    within: Any = None
    repeat: bool = False

    def __post_init__(self) -> None:
        if not self.dest:
            object.__setattr__(self, "dest", self.name.replace("-", "_"))


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
    # self-supervised pretraining (sarvit pretrain) and frozen-feature evaluation (sarvit knn, linear-probe)
    O("method", ROOM_SSL, "dino (self-distillation with multi-crop) or mocov3 (contrastive, two views)", PRETRAIN,
      default="dino", choices=("dino", "mocov3")),
    O("scale", ROOM_SSL, "tiny: a small ViT at 32 px global / 16 px local crops, minutes on a CPU; paper: ViT-S/16 "
      "at 224 / 96 px with the method's official recipe (small is tiny here)", PRETRAIN, default="tiny",
      choices=("tiny", "small", "paper")),
    O("output-dir", ROOM_RUN, "where the run goes (default: output/pretrain-<method>-<time>)", PRETRAIN,
      metavar="DIR"),
    O("resume", ROOM_RUN, "continue a pretraining run from its checkpoint (or its folder)", PRETRAIN, metavar="CKPT"),
    O("overwrite", ROOM_RUN, "start afresh in an --output-dir that holds a run (its files move aside)", PRETRAIN,
      default=False, switch=True),
    O("weights", ROOM_RUN, "the pretrained checkpoint whose frozen features are evaluated (its teacher / momentum "
      "encoder), or any sarvit or timm weights", FEATURES, aliases=("pretrained-weights", "checkpoint"),
      metavar="CKPT"),
    O("json", ROOM_RUN, "also write the results to this JSON file (default: <weights folder>/<command>.json)",
      FEATURES, metavar="FILE"),
    O("device", ROOM_RUN, "cpu, cuda or cuda:N (default: cuda when available)", SSL, metavar="DEV", within=DEVICE),
    O("seed", ROOM_RUN, "random seed", SSL, type=int, default=0, within=NON_NEGATIVE),
    O("log-interval", ROOM_RUN, "steps between progress updates and non-finite checks", PRETRAIN, type=int,
      default=50, metavar="STEPS", within=AT_LEAST_1),
    O("data-set", ROOM_DATA, "any data set sarvit reads (labels ignored for pretraining)", SSL, default="synthetic",
      aliases=("dataset",), metavar="NAME"),
    O("data-path", ROOM_DATA, "root folder of the data set", SSL, metavar="DIR"),
    O("download", ROOM_DATA, "download torchvision data sets", SSL, default=False, switch=True),
    O("num-samples", ROOM_DATA, "synthetic only: training images (evaluation: a fifth)", SSL, type=int, metavar="N",
      within=AT_LEAST_1),
    O("num-workers", ROOM_DATA, "data-loading processes per process", SSL, type=int, default=10,
      aliases=("workers", "-j"), metavar="N", within=NON_NEGATIVE),
    O("batch-size", ROOM_DATA, "images per process and step (the recipe's unless given)", SSL, type=int, default=64,
      aliases=("-b", "batch-size-per-gpu"), metavar="N", within=AT_LEAST_1),
    O("model", ROOM_MODEL, "timm ViT name (the recipe's: vit_tiny_patch16_224 reshaped / vit_small_patch16_224)",
      PRETRAIN, aliases=("arch",), metavar="NAME"),
    O("input-size", ROOM_MODEL, "global crop side (tiny 32, paper 224)", SSL, type=int,
      aliases=("global-size", "img-size"), metavar="PX", within=AT_LEAST_1),
    O("patch-size", ROOM_MODEL, "override the model's patch side", PRETRAIN, type=int, metavar="N", within=AT_LEAST_1),
    O("depth", ROOM_MODEL, "override the model's number of blocks", PRETRAIN, type=int, metavar="N",
      within=AT_LEAST_1),
    O("embed-dim", ROOM_MODEL, "override the model's width", PRETRAIN, type=int, metavar="N", within=AT_LEAST_1),
    O("num-heads", ROOM_MODEL, "override the model's number of heads", PRETRAIN, type=int, metavar="N",
      within=AT_LEAST_1),
    O("drop-path", ROOM_MODEL, "stochastic depth rate of the student / query encoder", PRETRAIN, type=float,
      default=0.1, metavar="P", within=PROBABILITY),
    O("sar", ROOM_SAR, "SAR on the student / query encoder: spatial-entropy loss (--lambda) + last-block skip and "
      "LayerNorm removal (default: off, the method alone)", PRETRAIN, switch=True, off=("no-sar",)),
    O("lambda", ROOM_SAR, "weight of the spatial-entropy loss", PRETRAIN, type=float, default=0.01,
      aliases=("blob-weight",), dest="lam", metavar="W", within=NON_NEGATIVE),
    O("reg", ROOM_SAR, "add a loss term on the student's global crops (repeatable), as `sarvit train --reg`", PRETRAIN,
      repeat=True, metavar="NAME[:WEIGHT][@BLOCK]"),
    O("epochs", ROOM_OPTIM, "epochs (pretrain: the recipe's; linear-probe: 100)", PRETRAIN + ("linear-probe",),
      type=int, default=300, metavar="N", within=AT_LEAST_1),
    O("lr", ROOM_OPTIM, "learning rate for a global batch of 256, scaled linearly to the real one (the recipe's: "
      "DINO 5e-4, MoCo-v3 1.5e-4; linear-probe 1e-3)", PRETRAIN + ("linear-probe",), type=float, default=5e-4,
      metavar="LR", within=NON_NEGATIVE),
    O("min-lr", ROOM_OPTIM, "final learning rate of the cosine schedule", PRETRAIN, type=float, default=1e-5,
      metavar="LR", within=NON_NEGATIVE),
    O("warmup-epochs", ROOM_OPTIM, "linear learning-rate warm-up epochs", PRETRAIN, type=int, default=5, metavar="N",
      within=NON_NEGATIVE),
    O("weight-decay", ROOM_OPTIM, "weight decay at the start (DINO: cosine to --weight-decay-end)", PRETRAIN,
      type=float, default=0.05, metavar="WD", within=NON_NEGATIVE),
    O("weight-decay-end", ROOM_SSL, "weight decay at the end of the cosine schedule (DINO 0.4; MoCo-v3: constant)",
      PRETRAIN, type=float, metavar="WD", within=NON_NEGATIVE),
    O("clip-grad", ROOM_OPTIM, "clip gradient norm (DINO 3.0)", PRETRAIN, type=float, metavar="NORM",
      within=POSITIVE),
    O("local-crops-number", ROOM_SSL, "DINO: local crops per image (tiny 4, paper 10 as the appendix)", PRETRAIN,
      type=int, metavar="N", within=NON_NEGATIVE),
    O("local-size", ROOM_SSL, "DINO: local crop side (tiny 16, paper 96)", PRETRAIN, type=int, metavar="PX",
      within=AT_LEAST_1),
    O("global-crops-scale", ROOM_SSL, "area range of the global crops (DINO 0.4,1; MoCo-v3 0.08,1)", PRETRAIN,
      type=float_list, metavar="MIN,MAX", within=PROBABILITY),
    O("local-crops-scale", ROOM_SSL, "DINO: area range of the local crops (0.05,0.4)", PRETRAIN, type=float_list,
      metavar="MIN,MAX", within=PROBABILITY),
    O("out-dim", ROOM_SSL, "DINO: prototypes of the head (paper 65536)", PRETRAIN, type=int, metavar="K",
      within=AT_LEAST_1),
    O("norm-last-layer", ROOM_SSL, "DINO: fix the weight norm of the head's last layer (default on)", PRETRAIN,
      switch=True, off=("no-norm-last-layer",)),
    O("freeze-last-layer", ROOM_SSL, "DINO: epochs without gradient to the head's last layer (1)", PRETRAIN,
      type=int, metavar="N", within=NON_NEGATIVE),
    O("momentum-teacher", ROOM_SSL, "DINO: the teacher's EMA momentum at the start, cosine to 1 (0.996)", PRETRAIN,
      type=float, metavar="M", within=PROBABILITY),
    O("teacher-temp", ROOM_SSL, "DINO: teacher temperature after the warm-up (0.07 for ViT-S)", PRETRAIN, type=float,
      metavar="T", within=POSITIVE),
    O("warmup-teacher-temp", ROOM_SSL, "DINO: teacher temperature at the start (0.04)", PRETRAIN, type=float,
      metavar="T", within=POSITIVE),
    O("warmup-teacher-temp-epochs", ROOM_SSL, "DINO: epochs of the teacher temperature's linear warm-up (30)",
      PRETRAIN, type=int, metavar="N", within=NON_NEGATIVE),
    O("moco-t", ROOM_SSL, "MoCo-v3: contrastive temperature tau (0.2)", PRETRAIN, type=float, metavar="TAU",
      within=POSITIVE),
    O("moco-m", ROOM_SSL, "MoCo-v3: momentum at the start, cosine to 1 (0.99)", PRETRAIN, type=float, metavar="M",
      within=PROBABILITY),
    O("moco-dim", ROOM_SSL, "MoCo-v3: output width of projector and predictor (256)", PRETRAIN, type=int,
      metavar="D", within=AT_LEAST_1),
    O("moco-mlp-dim", ROOM_SSL, "MoCo-v3: hidden width of projector and predictor (4096)", PRETRAIN, type=int,
      metavar="D", within=AT_LEAST_1),
    O("nb-knn", ROOM_SSL, "k-NN: neighbours that vote", ("knn",), type=int, default=20, aliases=("k",),
      metavar="K", within=AT_LEAST_1),
    O("temperature", ROOM_SSL, "k-NN: temperature of the votes' weights exp(similarity / T)", ("knn",), type=float,
      default=0.07, metavar="T", within=POSITIVE),
    O("n-last-blocks", ROOM_SSL, "linear probe: concatenate the [CLS] token of this many last blocks (DINO: 4 for "
      "ViT-S)", ("linear-probe",), type=int, default=4, metavar="N", within=AT_LEAST_1),
    O("avgpool-patchtokens", ROOM_SSL, "linear probe: also concatenate the average-pooled patch tokens of the last "
      "block", ("linear-probe",), default=False, switch=True),
)
del O


@dataclass(frozen=True)
class Command:
    """A subcommand: its help, the options it requires, and ``run`` as ``"module:function"`` (imported when run).

    ``positional``: ``(dest, nargs, metavar, help)`` of its positional arguments. ``passthrough``: the dest that
    receives, verbatim, every word after the first ``--``.
    """

    help: str
    description: str
    run: str
    required: tuple[str, ...] = ()
    positional: tuple[tuple[str, str, str, str], ...] = ()
    passthrough: Optional[str] = None


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train (or fine-tune, or resume) a ViT with SAR",
        "Train a timm ViT with SAR (spatial-entropy loss + last-block surgery) using DeiT's recipe. With no options: "
        "a small ViT with SAR on the built-in synthetic data set, a few minutes on a CPU (its quick defaults replace "
        "DeiT's where you give no value; see README). The reference code's spellings are accepted (--use-blob, "
        "--use-nosn, --blob-weight, --data-set, ...).",
        "sarvit.train.commands:run_train"),
    "eval": Command(
        "evaluate a checkpoint (top-1/top-5, loss, spatial entropy)",
        "Evaluate a checkpoint on a data set's evaluation split. A sarvit checkpoint rebuilds its own model and "
        "defaults to the data set it was trained on; plain timm/DeiT weights use --model and the SAR options.",
        "sarvit.analysis.ood:run_eval", required=("weights",)),
    "segment-eval": Command(
        "Jaccard of thresholded [CLS] attention with object masks (DINO's protocol)",
        "DINO's attention-segmentation protocol: per image and head, the last block's post-softmax [CLS] attention "
        "over the patches is thresholded to keep --threshold of its mass, upsampled (nearest) to the image, and "
        "compared with the ground-truth foreground (Jaccard, void pixels ignored); the best head counts per image; "
        "the mean over the set is printed and saved as JSON. Data sets with masks: synthetic (default) and voc.",
        "sarvit.analysis.commands:run_segment_eval", required=("weights",)),
    "visualize": Command(
        "PNGs of every head's attention map, raw and thresholded with its components coloured",
        "One PNG per image: the image (with the ground-truth outline when known), then for every head the raw "
        "last-block [CLS] attention (titled with the head's spatial entropy) and the --threshold-mass thresholded "
        "map with each connected component in its own colour. Images: --test-dir, or synthetic / voc with masks.",
        "sarvit.analysis.commands:run_visualize", required=("weights",)),
    "analyze": Command(
        "per-head mean spatial entropy and number of components over a dataset",
        "Per head: the mean spatial entropy (Eq. 5-8) of the last block's [CLS] similarity maps S and the mean "
        "number of 8-connected components of S > mean(S) over a dataset, as a table and JSON. A SAR model's heads "
        "are a few blobs (low entropy, few components); a plain model's are scattered.",
        "sarvit.analysis.commands:run_analyze", required=("weights",)),
    "experiment": Command(
        "run a named grid of training runs with seeds and a report",
        "Run a named grid of `sarvit train` runs (every cell x every seed), each an ordinary run folder "
        "<exp-dir>/<cell>/seed<N>/, then write report.md, results.json and PNGs into <exp-dir>. Starting the same "
        "command again reruns nothing that finished and resumes what was interrupted. Options after `--` go to "
        "every `sarvit train` run (e.g. `-- --epochs 50 --lr 1e-3`). `sarvit experiment --list` shows the grids.",
        "sarvit.experiments.commands:run_experiment",
        positional=(("name", "?", "NAME", "the grid (see --list)"),), passthrough="train_args"),
    "pretrain": Command(
        "self-supervised pretraining: DINO or MoCo-v3, with SAR's terms on top",
        "Pretrain a timm ViT without labels with DINO (student and EMA teacher, multi-crop, centring and sharpening) "
        "or MoCo-v3 (query and momentum encoders, symmetrised contrastive loss), any --reg term (--sar: SAR's "
        "spatial entropy and last-block surgery) on the student's global crops. --scale tiny trains in minutes on a "
        "CPU; --scale paper is the method's official recipe (torchrun for several GPUs). The checkpoint's 'model' is "
        "the teacher (DINO) / momentum encoder (MoCo-v3) backbone, which knn, linear-probe, segment-eval, analyze, "
        "visualize and `train --finetune` read.",
        "sarvit.train.ssl.commands:run_pretrain"),
    "knn": Command(
        "k-NN classification of frozen features (DINO's evaluation)",
        "Weighted k-NN on the L2-normalised [CLS] features of a frozen network: each evaluation image's k nearest "
        "training images (cosine similarity) vote for their class with weight exp(similarity / T). Prints top-1/"
        "top-5 and writes JSON.",
        "sarvit.analysis.knn:run_knn", required=("weights",)),
    "linear-probe": Command(
        "a linear classifier on frozen features (DINO's / MoCo-v3's linear evaluation)",
        "Train a linear classifier on the frozen network's features ([CLS] of the last --n-last-blocks blocks, "
        "after the final norm, optionally with the average-pooled patch tokens) with SGD (momentum 0.9, no weight "
        "decay) and a cosine schedule; the features are computed once, without augmentation. Prints top-1/top-5 "
        "on the evaluation split and writes JSON.",
        "sarvit.analysis.linear_probe:run_linear_probe", required=("weights",)),
    "export": Command(
        "write a checkpoint in timm's hub format (config.json, model.safetensors) and model.pth for detectors",
        "Write a sarvit checkpoint (or a run folder's last.pth) into OUT_DIR as timm's hub format: config.json "
        "(architecture, model_args, pretrained_cfg), model.safetensors, and model.pth ({\"model\": state_dict}, "
        "for detection frameworks). A SAR model is exported as sar_vit, which keeps its last-block surgery: after "
        "`import sarvit`, timm.create_model(\"local-dir:OUT_DIR\", pretrained=True) rebuilds it (features_only=True "
        "gives its feature maps). Regularizer heads (DRLoc) are not exported.",
        "sarvit.checkpoints.export:run_export",
        positional=(("source", "?", "RUN_OR_CHECKPOINT", "a sarvit checkpoint, or a run folder (its last.pth)"),
                    ("out_dir", "?", "OUT_DIR", "a new or empty folder for the export"))),
}


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


def check_values(command: str, values: dict[str, Any], source: str = "") -> dict[str, Any]:
    """``values`` ({dest: value}) checked against ``command``'s rows: types, ranges, finite numbers, choices.

    Returns them as the options take them (YAML's ``"no"`` is ``False``, ``"0.5"`` is ``0.5``). Keys that are
    no option's dest pass unchanged. Raises :class:`SarvitError` naming the option, the value and what was
    expected; ``source`` (e.g. ``"--config run.yaml"``) says where the value came from.
    """
    rows: dict[str, Option] = {}
    for option in options_of(command):
        rows.setdefault(option.dest, option)
    checked = dict(values)
    for dest, value in values.items():
        option = rows.get(dest)
        if option is None:
            continue
        try:
            checked[dest] = check_value(option, value)
        except (ValueError, TypeError):
            where = f"{source}: " if source else ""
            raise SarvitError(f"{where}--{option.name} {value!r}: expected {expected(option)}") from None
    return checked


def shown_default(value: Any) -> str:
    """A default as ``--help`` shows it: ``on``/``off`` for booleans."""
    return "off" if value is False else "on" if value is True else str(value)
