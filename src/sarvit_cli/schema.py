"""The vocabulary of the option table (:mod:`sarvit_cli.table`): a row (:class:`Option`), a subcommand
(:class:`Command`), the groups of commands a row names, and the help sections (rooms) in `--help`'s order.

Standard library only, like the table, so that ``sarvit --help`` imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = ["ALL", "ANALYSIS", "DATA_USERS", "EVAL", "EXPERIMENT", "EXPORT", "FEATURES", "LAYERED", "LEARN",
           "PRETRAIN", "ROOMS", "ROOM_ANALYSIS", "ROOM_AUGMENT", "ROOM_DATA", "ROOM_EXPERIMENT", "ROOM_MODEL",
           "ROOM_OPTIM", "ROOM_RUN", "ROOM_SAR", "ROOM_SSL", "SSL", "TRAIN", "Command", "Option"]

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

# Self-supervised pretraining and the evaluation of frozen features: their rows (sarvit_cli.rows_ssl) are the
# block at the end of OPTIONS; sarvit.train.ssl.recipes layers their defaults (table < --method/--scale recipe <
# command line).
PRETRAIN, FEATURES = ("pretrain",), ("knn", "linear-probe")
SSL = PRETRAIN + FEATURES
LAYERED = LEARN + SSL             # the commands whose parsers hold only what was typed (no defaults filled)


@dataclass(frozen=True)
class Option:
    """One row: ``name`` is the canonical long spelling without dashes.

    ``aliases``: other spellings (long ones without dashes, short ones as ``"-b"``). A ``switch`` is a
    boolean: ``name``/``aliases`` turn it on, ``off`` spellings turn it off. ``sets``: other values the
    option also sets when given (``--voc-path DIR`` is ``--data-set voc --data-path DIR``). ``within``: the
    values allowed (a :class:`~sarvit_cli.values.Range` for numbers, a :class:`~sarvit_cli.values.Pattern`
    for text), checked by :func:`sarvit.options.check_values`. ``repeat``: each use appends its value to a list
    (``--reg tv --reg drloc``).
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
