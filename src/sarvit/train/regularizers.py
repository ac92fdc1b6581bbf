"""The regularizers of a run: ``--reg NAME[:WEIGHT][@BLOCK]`` resolved into a list of terms, and the module
that computes every term from the model's one forward pass.

The loss of a step is ``criterion(logits, y) + sum_i weight_i * term_i``, the terms taken from what one
``model(x, capture=Capture(...))`` hands back (only what the chosen terms read is captured; blocks nobody
asked about keep their fused attention). SAR's loss is one of these terms: ``--sar`` / ``--sar-loss`` /
``--use-blob`` with ``--lambda W`` resolve to ``spatial-entropy:W``, the same code path as
``--reg spatial-entropy:W``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..errors import SarvitError
from ..losses import REGULARIZERS
from ..models import Capture
from ..models.hybrids import ConvAttention
from ..models.pyramids import capture_blocks

__all__ = ["RegTerm", "DEFAULT_BLOCK", "parse_reg", "resolve_regularizers", "log_key", "RegularizedModel"]

DEFAULT_BLOCK = -1  # the attention terms read the last block's attention unless @BLOCK says otherwise

# Options the train step passes to a registry factory: the spatial entropy must not check its maps for
# NaN on the host (a sync per step); a non-finite loss is caught by the step's own device-side flag.
_STEP_OPTIONS: dict[str, dict[str, Any]] = {"spatial-entropy": {"check_finite": False}}


def _reads_attention(name: str) -> bool:
    return "attention" in REGULARIZERS[name].needs


@dataclass(frozen=True)
class RegTerm:
    """One resolved term: a registry name, its weight and, for the attention terms, the block it reads."""

    name: str
    weight: float
    block: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, **({} if self.block is None else {"block": self.block})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RegTerm":
        return cls(str(data["name"]), float(data["weight"]), data.get("block"))


def log_key(name: str) -> str:
    """The metric name of a term: ``reg_<name>`` with ``-`` as ``_`` (``train_reg_spatial_entropy`` in log.jsonl)."""
    return "reg_" + name.replace("-", "_")


def parse_reg(text: str) -> tuple[str, Optional[float], Optional[int]]:
    """``"NAME[:WEIGHT][@BLOCK]"`` -> ``(name, weight or None, block or None)``, checked against the registry.

    >>> parse_reg("distance:0.02@-2")
    ('distance', 0.02, -2)
    """
    spec = str(text).strip()
    rest, _, block_text = spec.partition("@")
    name, _, weight_text = rest.partition(":")
    name = name.strip()
    if name not in REGULARIZERS:
        raise SarvitError(f"--reg {spec}: unknown regularizer {name!r}; expected one of {', '.join(REGULARIZERS)}")
    weight = None
    if weight_text.strip():
        try:
            weight = float(weight_text)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight < 0:
            raise SarvitError(f"--reg {spec}: the weight must be a finite number >= 0, got {weight_text.strip()!r}")
    elif ":" in rest:
        raise SarvitError(f"--reg {spec}: a weight must follow ':' (NAME:WEIGHT), found none")
    block = None
    if "@" in spec:
        if not _reads_attention(name):
            readers = ", ".join(n for n in REGULARIZERS if _reads_attention(n))
            raise SarvitError(f"--reg {spec}: {name} reads the last block's output, not a chosen block; @BLOCK "
                              f"applies to {readers}")
        try:
            block = int(block_text)
        except ValueError:
            raise SarvitError(f"--reg {spec}: @BLOCK must be a block index (an integer, negative counts from the "
                              f"end), got {block_text.strip()!r}") from None
    return name, weight, block


def resolve_regularizers(config: dict[str, Any], given: set[str]) -> None:
    """Resolve ``config["reg"]`` and SAR's loss switch into ``config["regularizers"]`` (a list of
    :meth:`RegTerm.to_dict`), in place; ``sar_loss`` and ``lam`` are made to agree with it.

    SAR's loss (``sar_loss`` with weight ``lam``) is the term ``spatial-entropy:lam``. ``--reg spatial-entropy``
    names the same term: without a weight it takes ``--lambda``, and it switches the loss on even with
    ``--no-sar`` (which then keeps only the last-block surgery off). A term of weight 0 is left out.
    ``given``: the options the user set (``--lambda`` given with a different ``spatial-entropy:W`` is an error).
    """
    specs = config.get("reg") or []
    if isinstance(specs, str):
        specs = [specs]
    parsed = [parse_reg(spec) for spec in specs]
    names = [name for name, _, _ in parsed]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SarvitError(f"--reg {repeated[0]} is given more than once; give each regularizer once")
    lam = float(config["lam"])
    terms = []
    for name, weight, block in parsed:
        if name == "spatial-entropy":
            if weight is not None and "lam" in given and weight != lam:
                raise SarvitError(f"--lambda {lam:g} and --reg spatial-entropy:{weight:g} both weight the spatial "
                                  "entropy; give one of them")
            if config.get("sar_loss") is False and "sar_loss" in given:
                raise SarvitError("--no-sar-loss and --reg spatial-entropy contradict each other; give one of them")
            weight = lam if weight is None else weight
            config["sar_loss"], config["lam"] = weight > 0, weight
        elif weight is None:
            weight = REGULARIZERS[name].default_weight
        if _reads_attention(name) and block is None:
            block = DEFAULT_BLOCK
        terms.append(RegTerm(name, weight, block))
    if config.get("sar_loss") and "spatial-entropy" not in names:
        terms.insert(0, RegTerm("spatial-entropy", lam))
    config["regularizers"] = [term.to_dict() for term in terms if term.weight > 0]


class RegularizedModel(nn.Module):
    """A model and the modules of its regularizer terms as one module: ``forward(x) -> (logits, terms)``.

    ``terms`` is a float32 ``[n]`` tensor of the unweighted term values in the order of ``terms`` (None
    without terms, when the model runs its plain forward). Wrapping both in one module lets one
    ``DistributedDataParallel`` synchronise the gradients of the model and of the regularizers' own
    parameters (DRLoc's head); the optimizer takes ``parameters()`` of this module.

    Args:
        model: a sarvit model (its forward takes ``capture=``; :func:`sarvit.create_model`).
        terms: the terms (:class:`RegTerm`, or their dicts); an attention term's block must exist.
    """

    def __init__(self, model: nn.Module, terms: Sequence[RegTerm | dict]) -> None:
        super().__init__()
        self.model = model
        self.terms = tuple(term if isinstance(term, RegTerm) else RegTerm.from_dict(term) for term in terms)
        attention_blocks = capture_blocks(model)  # a pyramid's (PVT-v2, Swin) are its last stage's
        depth = len(attention_blocks)
        self.regularizers = nn.ModuleDict()
        blocks = []
        for term in self.terms:
            info = REGULARIZERS[term.name]
            if _reads_attention(term.name):
                if not -depth <= term.block < depth:
                    raise SarvitError(f"--reg {term.name}@{term.block}: the model has {depth} blocks; give @BLOCK in "
                                      f"0..{depth - 1} (or -{depth}..-1 from the end)")
                if isinstance(attention_blocks[term.block].attn, ConvAttention):
                    raise SarvitError(f"--reg {term.name}: CvT's attention is [T, 1 + T/4] (every token against "
                                      "the stride-2 keys), not the square patch-to-patch attention it reads")
                blocks.append(term.block % depth)
            options = _STEP_OPTIONS.get(term.name, {})
            self.regularizers[term.name] = info.factory(embed_dim=model.num_features,
                                                        num_prefix_tokens=getattr(model, "num_prefix_tokens", 0),
                                                        **options)
        needs = {need for term in self.terms for need in REGULARIZERS[term.name].needs}
        self.capture = Capture(maps="maps" in needs, attention_blocks=tuple(dict.fromkeys(blocks)),
                               tokens="tokens" in needs)
        self._blocks = [None if term.block is None else term.block % depth for term in self.terms]

    def no_weight_decay(self) -> set[str]:
        """The model's own no-decay names (position embedding, [CLS] token) under this module's prefix."""
        own = getattr(self.model, "no_weight_decay", None)
        return {f"model.{name}" for name in (own() if own is not None else ())}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if not self.terms:
            return self.model(x), None
        logits, captured = self.model(x, capture=self.capture)
        values = []
        for term, block in zip(self.terms, self._blocks):
            inputs = {"maps": captured.get("maps"), "tokens": captured.get("tokens"), "images": x,
                      "attention": None if block is None else captured["attention"][block]}
            module = self.regularizers[term.name]
            values.append(module(*(inputs[need] for need in REGULARIZERS[term.name].needs)).float())
        return logits, torch.stack(values)

    def load_trained_state(self, state: dict) -> None:
        """Load the regularizers' own weights (``regularizers.state_dict()`` of a checkpoint; DRLoc's head).

        Raises SarvitError when ``state`` holds weights of other terms than this module's.
        """
        theirs, ours = _owners(state), _owners(self.regularizers.state_dict())
        if theirs != ours:
            raise SarvitError(f"the checkpoint holds trained weights of the regularizers {', '.join(theirs) or 'none'},"
                              f" this run's terms have weights for {', '.join(ours) or 'none'}")
        self.regularizers.load_state_dict(state)

    def describe(self) -> str:
        """``"spatial-entropy 0.01, distance 0.01 on block -1"`` ("" without terms)."""
        return ", ".join(f"{term.name} {term.weight:g}" + ("" if term.block is None else f" on block {term.block}")
                         for term in self.terms)

    def extra_repr(self) -> str:
        return self.describe()


def _owners(state: dict) -> list[str]:
    """The terms a state dict of ``RegularizedModel.regularizers`` holds weights for."""
    return sorted({key.split(".", 1)[0] for key in state})
