"""The named grids of `sarvit experiment`: which `sarvit train` runs each one makes, and the papers' figures.

A grid is a list of cells; a cell is one arm of the comparison (a set of `sarvit train` flags) and names the
cell it is compared against (its baseline, paired by seed). The scale flags (``tiny``, ``small``, ``paper``)
come first on every run's command line, the cell's flags after them, the user's pass-through options last.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import SarvitError
from ..losses import REGULARIZERS

__all__ = ["Cell", "Grid", "GRIDS", "SCALES", "get_grid", "scale_flags", "describe_grids"]


@dataclass(frozen=True)
class Cell:
    """One arm: its folder name, its `sarvit train` flags, the cell it is compared with, a plot position."""

    name: str
    flags: tuple[str, ...]
    baseline: Optional[str] = None     # None: this cell is a baseline
    arm: str = ""                      # the series it belongs to in plots (default: its name)
    x: Optional[float] = None          # subset ratio or lambda, for the x-axis of a sweep plot

    @property
    def series(self) -> str:
        return self.arm or self.name


@dataclass(frozen=True)
class PaperRow:
    """A figure quoted from the papers, labelled with where it comes from."""

    label: str
    value: str


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    cells: tuple[Cell, ...]
    paper_epochs: int                  # the schedule of the papers' table, used by --scale paper
    sweep: Optional[str] = None        # x-axis name of a sweep plot ("subset ratio", "lambda")
    paper_source: str = ""
    paper_rows: tuple[PaperRow, ...] = field(default_factory=tuple)
    command: str = "train"             # the sarvit command of every run: train, or pretrain (self-supervised)
    own_models: bool = False          # the cells name their models: scales leave the architecture alone

    def cell(self, name: str) -> Cell:
        for cell in self.cells:
            if cell.name == name:
                return cell
        raise KeyError(name)


_BASELINE = ("--no-sar",)
_SAR = ("--sar",)

_ABLATION = Grid(
    name="ablation",
    description="Tab. 1c: the parts of SAR one at a time (rows A-F)",
    cells=(
        Cell("A-baseline", _BASELINE),
        Cell("B-no-msa-skip", ("--remove-last-skip",), baseline="A-baseline"),
        Cell("C-no-msa-skip-no-ln", ("--use-nosn",), baseline="A-baseline"),
        Cell("D-C-no-mlp-skip", ("--use-nosn", "--remove-last-mlp-skip"), baseline="A-baseline"),
        Cell("E-loss-only", ("--use-blob",), baseline="A-baseline"),
        Cell("F-sar", _SAR, baseline="A-baseline"),
    ),
    paper_epochs=100,
    paper_source="SAR journal / ICLR draft, Tab. 1c: ViT-S/16 on ImageNet-100, 100 epochs, top-1 %",
    paper_rows=(PaperRow("A baseline", "74.22"), PaperRow("B A + no MSA skip", "74.64 (+0.42)"),
                PaperRow("C B + no LN", "75.72 (+1.5)"), PaperRow("D C + no MLP skip", "73.76 (-0.46)"),
                PaperRow("E A + spatial entropy loss", "74.78 (+0.56)"), PaperRow("F A + SAR", "76.72 (+2.5)")),
)

_LAMBDAS = (0.0, 0.001, 0.01, 0.1)
_LAMBDA = Grid(
    name="lambda",
    description="Tab. 1a: the loss weight lambda with the last-block surgery on (lambda 0 = row C)",
    cells=tuple(Cell(f"lambda-{lam:g}", ("--sar", "--lambda", f"{lam:g}"),
                     baseline=None if lam == 0 else "lambda-0", arm="SAR", x=lam) for lam in _LAMBDAS),
    paper_epochs=100,
    sweep="lambda",
    paper_source="SAR journal / ICLR draft, Tab. 1a: ViT-S/16 + SAR on ImageNet-100, 100 epochs, top-1 %",
    paper_rows=(PaperRow("lambda 0", "75.72"), PaperRow("lambda 0.001", "75.82"), PaperRow("lambda 0.005", "76.16"),
                PaperRow("lambda 0.01", "76.72"), PaperRow("lambda 0.05", "76.22"), PaperRow("lambda 0.1", "75.88")),
)

_RATIOS = (0.25, 0.5, 0.75, 1.0)
_SUBSET_ARMS = (("baseline", _BASELINE), ("sar", _SAR), ("drloc", ("--no-sar", "--reg", "drloc")),
                ("sar+drloc", ("--sar", "--reg", "drloc")))
_SUBSETS = Grid(
    name="subsets",
    description="Tab. 3: a fraction of the training set; SAR, DRLoc and both against the baseline at each ratio",
    cells=tuple(Cell(f"{arm}-r{ratio:g}", (*flags, "--subset-ratio", f"{ratio:g}"),
                     baseline=None if arm == "baseline" else f"baseline-r{ratio:g}", arm=arm, x=ratio)
                for ratio in _RATIOS for arm, flags in _SUBSET_ARMS),
    paper_epochs=100,
    sweep="subset ratio",
    paper_source="SAR ICLR draft Tab. 8 / journal Tab. 3: ViT-S/16 on ImageNet-100 subsets, 100 epochs, top-1 % "
                 "(the journal adds DRLoc; its text gives SAR - DRLoc = 6.9 points at 75 %)",
    paper_rows=(PaperRow("25 %: baseline / SAR", "21.66 / 29.06 (+7.4)"),
                PaperRow("50 %: baseline / SAR", "29.86 / 38.02 (+8.16)"),
                PaperRow("75 %: baseline / SAR", "35.62 / 46.12 (+10.5)"),
                PaperRow("100 %: baseline / SAR", "74.22 / 76.72 (+2.5)")),
)

REGULARIZER_NAMES = tuple(REGULARIZERS)  # one cell per registered term, in the registry's order
_REGULARIZERS = Grid(
    name="regularizers",
    description="each --reg regularizer (plain architecture, loss added) against the baseline",
    cells=(Cell("baseline", _BASELINE),
           *(Cell(name, ("--no-sar", "--reg", name), baseline="baseline") for name in REGULARIZER_NAMES)),
    paper_epochs=100,
    paper_source="SAR ICLR draft Tab. 13: ViT-S/16 on ImageNet-1K, 300 epochs, top-1 % (App. B: TV 'drastically "
                 "underperforms' the spatial entropy loss, no figure given)",
    paper_rows=(PaperRow("baseline", "79.8"), PaperRow("+ DRLoc", "80.2 (+0.4)"), PaperRow("+ SAR", "80.7 (+0.9)")),
)

_JACCARD = Grid(
    name="jaccard",
    description="Tab. 11: attention Jaccard against the object masks, SAR against the baseline",
    cells=(Cell("baseline", _BASELINE), Cell("sar", _SAR, baseline="baseline")),
    paper_epochs=300,
    paper_source="SAR journal Tab. 11 / ICLR draft Tab. 6: ViT-S/16 trained on ImageNet-1K, Jaccard % on "
                 "PASCAL VOC-12 (60 % attention mass, best head)",
    paper_rows=(PaperRow("ViT-S/16", "19.18"), PaperRow("ViT-S/16 + SAR", "31.19 (+12.01)")),
)

_SSL = Grid(
    name="ssl",
    description="App. C.2 / Tab. 9: SAR on self-supervised pretraining (`sarvit pretrain`); each run scored by the "
                "k-NN and linear probe of its teacher / momentum encoder and by its attention Jaccard",
    cells=(Cell("dino", ("--method", "dino", "--no-sar")), Cell("dino-sar", ("--method", "dino", "--sar"),
                                                               baseline="dino"),
           Cell("mocov3", ("--method", "mocov3", "--no-sar")), Cell("mocov3-sar", ("--method", "mocov3", "--sar"),
                                                                   baseline="mocov3")),
    paper_epochs=300,
    paper_source="SAR ICLR draft, App. C.2 Tab. 9: ViT-S/16 pretrained on ImageNet-100 for 300 epochs; (a) linear-"
                 "probe top-1 % on ImageNet-100, (b) attention Jaccard % on PASCAL VOC-12",
    paper_rows=(PaperRow("MoCo-v3: linear top-1 / Jaccard", "77.60 / 27.40"),
                PaperRow("MoCo-v3 + SAR: linear top-1 / Jaccard", "78.88 (+1.28) / 33.10 (+6.17)"),
                PaperRow("DINO: linear top-1 / Jaccard", "77.42 / 35.06"),
                PaperRow("DINO + SAR: linear top-1 / Jaccard", "79.90 (+2.48) / 35.28 (+0.22)")),
    command="pretrain",
)

# The hybrid VTs keep their own architecture at every scale (own_models): the scales set the input size, recipe
# and schedule only; PVT's overall stride is 32, so the tiny scale trains at 96 px (a 3x3 last grid). timm's
# PVT-v2 and Swin (no [CLS] token: the mean patch query) have the same stride; at 96 and 224 px Swin's last
# stage is one window.
_HYBRID_MODELS = (("t2t", ("--model", "t2t_vit_14", "--patch-size", "16")),
                  ("pvt", ("--model", "pvt_small", "--patch-size", "32")),
                  ("cvt", ("--model", "cvt_13", "--patch-size", "16")),
                  ("pvt_v2", ("--model", "pvt_v2_b0", "--query", "mean")),
                  ("swin", ("--model", "swin_tiny_patch4_window7_224", "--query", "mean")))
_HYBRIDS = Grid(
    name="hybrids",
    description="Tab. 9-10: SAR plugged into the hybrid VTs T2T-ViT-14, PVT-Small and CvT-13, each vs its baseline; "
                "also timm's PVT-v2-b0 and Swin-T (not in the papers) with the mean patch query",
    cells=tuple(cell for family, model in _HYBRID_MODELS
                for cell in (Cell(f"{family}-baseline", (*model, *_BASELINE), arm="baseline"),
                             Cell(f"{family}-sar", (*model, *_SAR), baseline=f"{family}-baseline", arm="SAR"))),
    paper_epochs=100,
    paper_source="SAR journal Tab. 9 (ImageNet-100, 100 epochs) and Tab. 10 (ImageNet-1K, 300 epochs): T2T, PVT and "
                 "CvT with and without SAR (the stored text of the journal has the captions, not the figures)",
    own_models=True,
)


_REAL = Grid(
    name="real",
    description="issue 18 on real images (`python -m sarvit.data.real_images`: sklearn digits in several layouts, "
                "scikit-image's LFW faces and photo crops): SAR as shipped (loss gated by the task's progress), its "
                "two parts alone, and SAR with the papers' always-on loss, against --no-sar",
    cells=(Cell("no-sar", _BASELINE), Cell("sar", _SAR, baseline="no-sar"),
           Cell("surgery-only", ("--use-nosn",), baseline="no-sar"),
           Cell("loss-only", ("--use-blob",), baseline="no-sar"),
           Cell("sar-always-on", (*_SAR, "--sar-loss-gate", "0"), baseline="no-sar")),
    paper_epochs=100,
    paper_source="no paper figure: the papers train on ImageNet-scale sets",
)

GRIDS: dict[str, Grid] = {grid.name: grid for grid in (_ABLATION, _LAMBDA, _SUBSETS, _REGULARIZERS, _JACCARD, _SSL,
                                                       _HYBRIDS, _REAL)}

# tiny: a CPU runs a whole grid in minutes; quick: the recipe `sarvit train` picks on a CPU; small: the synthetic quick-demo defaults of `sarvit train`
# (its 15 epochs at every subset ratio; minutes per run); paper: ViT-S/16 at 224 px with DeiT's recipe and the papers' schedule.
_TINY_SIZE = ("--depth", "2", "--embed-dim", "64", "--num-heads", "2")
_TINY_RUN = ("--epochs", "4", "--batch-size", "32", "--warmup-epochs", "1")
_TINY = ("--input-size", "32", "--patch-size", "4", *_TINY_SIZE, *_TINY_RUN)
_TINY_SYNTHETIC = ("--num-samples", "600")
_PAPER_MODEL = ("--model", "deit_small_patch16_224", "--input-size", "224", "--patch-size", "16", "--depth", "12",
                "--embed-dim", "384", "--num-heads", "6")
# DeiT's recipe by name: its values are the recipe's (sarvit/recipes/deit.yaml over the option table's defaults,
# resolved by sarvit.train.config as for `sarvit train --recipe deit`), also on the synthetic set, whose own
# choice would be the quick recipe.
_DEIT_RECIPE = ("--recipe", "deit")
SCALES = ("tiny", "quick", "small", "paper")


def scale_flags(scale: str, grid: Grid, data_set: str) -> tuple[str, ...]:
    """The `sarvit train` (or `sarvit pretrain`) flags of a scale for this grid and data set."""
    synthetic = data_set == "synthetic"
    if grid.command == "pretrain":  # the pretraining recipes: tiny (small is tiny) or the methods' official ones
        if scale not in SCALES:
            raise SarvitError(f"--scale: expected one of {', '.join(SCALES)}, got {scale!r}")
        return ("--scale", "paper", "--epochs", str(grid.paper_epochs)) if scale == "paper" else ("--scale", "tiny")
    if grid.own_models and scale in SCALES:
        size = {"tiny": ("--input-size", "96", *_TINY_SIZE, *_TINY_RUN), "small": ("--input-size", "96", "--epochs", "15"),
                "paper": ("--input-size", "224", *_DEIT_RECIPE, "--epochs", str(grid.paper_epochs))}[scale]
        return size + (_TINY_SYNTHETIC if synthetic and scale == "tiny" else ())
    if scale == "tiny":
        return _TINY + (_TINY_SYNTHETIC if synthetic else ())
    if scale == "quick":  # what `sarvit train` chooses on a CPU for this data set (the quick recipe), unchanged
        return ()
    if scale == "small":  # the epochs are pinned: every subset ratio trains as long, as in the papers' tables
        return ("--epochs", "15") if synthetic else ("--model", "vit_tiny_patch16_224", "--input-size", "64",
                                                     "--patch-size", "8", "--epochs", "100")
    if scale == "paper":
        return _PAPER_MODEL + _DEIT_RECIPE + ("--epochs", str(grid.paper_epochs))
    raise SarvitError(f"--scale: expected one of {', '.join(SCALES)}, got {scale!r}")


def get_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise SarvitError(f"unknown grid {name!r}; expected one of {', '.join(GRIDS)} (`sarvit experiment --list`)")
    return GRIDS[name]


def describe_grids() -> str:
    """`sarvit experiment --list`: every grid, its cells and their flags."""
    lines = []
    for grid in GRIDS.values():
        lines.append(f"{grid.name}: {grid.description}")
        for cell in grid.cells:
            against = f"   (vs {cell.baseline})" if cell.baseline else "   (baseline)"
            lines.append(f"  {cell.name:<22} {' '.join(cell.flags)}{against}")
    lines.append("scales: tiny (CPU minutes per grid), quick (the quick recipe as chosen for the data), small (the synthetic quick demo), paper (ViT-S/16, DeiT "
                 "recipe, the papers' epochs)")
    return "\n".join(lines)
