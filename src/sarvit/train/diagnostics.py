"""Training diagnostics: what a stalled or collapsing run needs to explain itself.

Every ``every`` steps (the log interval) :class:`TrainingProbe` measures, on the device, for the batch of that
step:

* the gradient norm of the task loss and of each weighted regularizer term (``weight_i * term_i``), over all
  trainable weights, over the last block alone and over the query and key rows of the last block's ``qkv`` (one
  ``torch.autograd.grad`` per part, before the step's own backward);
* per head of the last block: the entropy of the [CLS] attention over the patches (renormalised over the
  patches; ``log(k*k)`` is flat) and the spatial entropy of the maps S (Eq. 5-8);
* the smallest map mass ``sum ReLU(S - mean S)`` of the batch (the denominator of every ``dH/dS``);
* the last block's update-to-weight ratio ``||W_after - W_before|| / ||W_before||`` of the step.

The values accumulate in one device tensor; :meth:`TrainingProbe.read` (once an epoch) is the only host
synchronisation. :func:`stall_warning` says when the task loss has not moved from its first value after a
fraction of the schedule.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from ..losses import spatial_entropy
from ..models import Capture, has_class_token
from ..models.pyramids import capture_blocks

__all__ = ["TrainingProbe", "stall_warning", "STALL_FRACTION", "STALL_TOLERANCE", "map_mass"]

STALL_FRACTION = 0.2     # of the epochs: by then a learning run's task loss has left its first value
STALL_TOLERANCE = 0.02   # relative change of the task loss that still counts as "not moved"


def map_mass(S: torch.Tensor) -> torch.Tensor:
    """``sum ReLU(S - mean S)`` of each map: ``S [B, H, h, w]`` -> ``[B, H]`` (the spatial entropy's denominator,
    less its ``N * eps``)."""
    flat = S.flatten(2)
    return torch.relu(flat - flat.mean(dim=-1, keepdim=True)).sum(dim=-1)


def _norm(grads: Sequence[Optional[torch.Tensor]], like: torch.Tensor) -> torch.Tensor:
    present = [g for g in grads if g is not None]
    if not present:
        return like.new_zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in present]))


def _query_key_rows(attn: nn.Module) -> list[tuple[torch.Tensor, int]]:
    """``(weight or bias, rows)``: the leading rows of each that make queries and keys (timm's fused ``qkv``: its
    first two thirds; PVT-v2's ``q`` and the first half of its ``kv``; CvT's ``proj_q`` / ``proj_k``: all of
    them)."""
    qkv = getattr(attn, "qkv", None)
    if isinstance(qkv, nn.Linear):
        layers = [(qkv, 2 / 3)]
    elif isinstance(getattr(attn, "kv", None), nn.Linear):
        layers = [(attn.q, 1), (attn.kv, 1 / 2)]
    else:
        layers = [(attn.proj_q, 1), (attn.proj_k, 1)]
    return [(p, round(p.shape[0] * share)) for layer, share in layers for p in (layer.weight, layer.bias)
            if p is not None]


class TrainingProbe:
    """Device-side diagnostics of a run, sampled every ``every`` steps; ``read()`` gives the epoch's means.

    Args:
        model: the sarvit ViT (``RegularizedModel.model``); its last block is ``model.blocks[-1]`` (a pyramid's: its last stage's).
        params: the trainable weights the optimizer updates (the overall gradient norm is over these).
        term_names: the regularizer terms, in the order of the step's ``terms`` tensor.
        every: measure at steps ``0, every, 2 * every, ...`` of an epoch.
        report_initial: give ``initial_task_loss`` with the first read (False for a resumed run).

    Keys of :meth:`read` (``diag_`` prefixed): ``grad_task``, ``grad_task_last``, ``grad_task_qk``,
    ``grad_<term>``, ``grad_<term>_last``, ``grad_<term>_qk``, ``update_ratio_last``, ``min_map_mass``, ``attention_entropy_h<i>``,
    ``spatial_entropy_h<i>``, ``task_loss`` (the sampled steps' mean) and, first epoch only,
    ``initial_task_loss``.
    """

    def __init__(self, model: nn.Module, params: Sequence[torch.Tensor], term_names: Sequence[str],
                 every: int, report_initial: bool = True) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every!r}")
        self.model = model
        self.params = list(params)
        last = {id(p) for p in capture_blocks(model)[-1].parameters()}
        self.last_params = [p for p in self.params if id(p) in last]
        # the query and key rows of the last block's projections: where the task's gradient is weak while the
        # maps are flat
        self.qk_params = [(p, rows) for p, rows in _query_key_rows(capture_blocks(model)[-1].attn)
                          if any(p is q for q in self.params)]
        self.term_names = tuple(name.replace("-", "_") for name in term_names)
        self.every = every
        self.maps = has_class_token(model)
        heads = capture_blocks(model)[-1].attn.num_heads if self.maps else 0
        self.keys = (["grad_task", "grad_task_last"]
                     + ["grad_task_qk"]
                     + [key for name in self.term_names
                        for key in (f"grad_{name}", f"grad_{name}_last", f"grad_{name}_qk")]
                     + ["update_ratio_last", "task_loss"]
                     + (["min_map_mass"] + [f"attention_entropy_h{h}" for h in range(heads)]
                        + [f"spatial_entropy_h{h}" for h in range(heads)] if self.maps else []))
        self._sums: Optional[torch.Tensor] = None
        self._count = 0
        self._before: Optional[list[torch.Tensor]] = None
        self._pending: Optional[list[torch.Tensor]] = None
        self._initial: Optional[torch.Tensor] = None
        self._initial_read = not report_initial  # a resumed run's first loss is not the run's first

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def measure(self, x: Optional[torch.Tensor], task_loss: torch.Tensor, terms: Optional[torch.Tensor],
                weights: torch.Tensor) -> None:
        """Before the step's backward (the graph is kept): gradient norms of each part and the map statistics;
        the last block's weights are copied for :meth:`after_update`."""
        parts = [task_loss] + ([] if terms is None else [weights[i] * terms[i] for i in range(len(terms))])
        values = []
        for part in parts:
            if part.requires_grad:
                grads = torch.autograd.grad(part, self.params, retain_graph=True, allow_unused=True)
            else:  # a weight-0 or constant term has no gradient
                grads = [None] * len(self.params)
            by_id = {id(p): g for p, g in zip(self.params, grads)}
            qk = [None if by_id[id(p)] is None else by_id[id(p)][:rows] for p, rows in self.qk_params]
            values += [_norm(grads, task_loss), _norm([by_id[id(p)] for p in self.last_params], task_loss),
                       _norm(qk, task_loss)]
        self._pending = values + [task_loss.new_zeros(()), task_loss.detach().float()]
        if self.maps:  # without one image tensor (several crops) the map statistics are NaN this time
            self._pending += (self._map_statistics(x) if x is not None
                              else [task_loss.new_full((), float("nan"))] * (len(self.keys) - len(self._pending)))
        if self._initial is None:
            self._initial = task_loss.detach().float().clone()
        self._before = [p.detach().clone() for p in self.last_params]

    @torch.no_grad()
    def _map_statistics(self, x: torch.Tensor) -> list[torch.Tensor]:
        # in eval mode: no drop path or dropout, so the probe draws no random numbers (a resumed run stays exact)
        was_training = self.model.training
        self.model.eval()
        try:
            _, captured = self.model(x, capture=Capture(maps=True, cls_attention=True))
        finally:
            self.model.train(was_training)
        S, attention = captured["maps"].float(), captured["cls_attention"].float().flatten(2)
        attention = attention / attention.sum(dim=-1, keepdim=True)
        attention_entropy = -(attention * attention.clamp_min(1e-12).log()).sum(dim=-1).mean(dim=0)  # [H]
        entropy = spatial_entropy(S, check_finite=False).mean(dim=0)  # [H]
        return [map_mass(S).min(), *attention_entropy.unbind(), *entropy.unbind()]

    @torch.no_grad()
    def after_update(self) -> None:
        """After the optimizer step of a measured step: the last block's update-to-weight ratio; the
        measurement joins the epoch's sums."""
        if self._pending is None:
            return
        if self.last_params:
            change = torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm((p.detach() - b).float()) for p, b in zip(self.last_params, self._before)]))
            size = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(b.float()) for b in self._before]))
            self._pending[self.keys.index("update_ratio_last")] = change / size.clamp_min(1e-12)
        values = torch.stack(self._pending).double()
        self._sums = values if self._sums is None else self._sums + values
        self._count += 1
        self._pending = self._before = None

    def read(self) -> dict[str, float]:
        """The means of this epoch's measurements (one host sync), then a fresh epoch; {} if none was taken."""
        if self._sums is None:
            return {}
        means = (self._sums / self._count).tolist()
        result = {f"diag_{key}": value for key, value in zip(self.keys, means)}
        if not self._initial_read and self._initial is not None:
            result["diag_initial_task_loss"] = float(self._initial)
            self._initial_read = True
        self._sums, self._count = None, 0
        return result


def stall_warning(history: Sequence[dict], epochs: int, fraction: float = STALL_FRACTION,
                  tolerance: float = STALL_TOLERANCE) -> Optional[str]:
    """A warning once ``fraction`` of the ``epochs`` are done and the task loss (``train_ce``) of the last epoch
    is within ``tolerance`` (relative) of the run's first measured task loss (``train_diag_initial_task_loss``
    of the first line); None otherwise. Said once: only at the first epoch past the fraction.

    >>> lines = [{"epoch": 0, "train_diag_initial_task_loss": 2.30, "train_ce": 2.31},
    ...          {"epoch": 1, "train_ce": 2.30}]
    >>> stall_warning(lines, epochs=10)[:44]
    'warning: after 2 of 10 epochs the task loss '
    """
    if not history:
        return None
    first = next((line.get("train_diag_initial_task_loss") for line in history
                  if line.get("train_diag_initial_task_loss") is not None), None)
    line = history[-1]
    done = line["epoch"] + 1
    if first is None or line.get("train_ce") is None or done != max(1, math.ceil(fraction * epochs)):
        return None
    if abs(line["train_ce"] - first) > tolerance * abs(first):
        return None
    return (f"warning: after {done} of {epochs} epochs the task loss {line['train_ce']:.4f} has not moved from its "
            f"first value {first:.4f} (within {tolerance:.0%}): the run is not learning; the diagnostics in "
            "log.jsonl (train_diag_*: gradient norms per term, attention entropy per head, the last block's "
            "update ratio) and curves.png say where it stalls")
