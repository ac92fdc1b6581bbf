"""What one forward pass hands back besides the logits: [CLS] maps, chosen blocks' attention, final tokens.

Every block's ``attn`` stays timm's own ``Attention`` (or Eva's ``EvaAttention``) running its own ``forward`` (fused or not, as its
``fused_attn`` says). q and k are read with forward hooks on ``attn.q_norm`` and ``attn.k_norm``: timm's
``Attention.forward`` calls them on the per-head q and k right before attending
(``q, k = self.q_norm(q), self.k_norm(k)``, the same line in timm 1.0.29 and 1.0.31); without q/k norm they
are ``nn.Identity`` and their hooks still fire. The final tokens come from a hook on ``model.norm``. Which
query the maps use, and Eva's rotary embedding, are :mod:`sarvit.models.query`'s.

The hooks are installed once per model (:func:`enable_capture`) and stay idle, keeping nothing, unless a
capture asks for their key: ``torch.compile`` does not notice hooks added or removed after it traced a model,
so hooks registered per call would be silently skipped by a compiled model; a flag they read is guarded.

Any model whose ``blocks[i].attn`` is timm's ``Attention`` and whose ``patch_embed`` / ``norm`` /
``num_prefix_tokens`` follow timm's ``VisionTransformer`` can capture by wrapping its forward:

    >>> import timm
    >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=0)
    >>> x = torch.randn(1, 3, 32, 32)
    >>> with capturing(model, Capture(tokens=True), patch_grid(model, x)) as captured:
    ...     features = model.forward_head(model.forward_features(x))
    >>> tuple(captured["tokens"].shape)  # [B, C, k, k]
    (1, 192, 4, 4)
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_choice, check_model
from ..errors import SarvitError, SarvitTypeError
from .query import ATTENTIONS, QUERIES, hook_keys, install_hooks, key_grid, query_and_keys, rotated_qk

__all__ = ["Capture", "SAR_KWARGS", "begin_capture", "capture_request", "capturing", "disarm_capture", "enable_capture",
           "end_capture", "has_class_token", "patch_grid"]


def has_class_token(model: nn.Module) -> bool:
    """Whether ``model`` has the [CLS] query that SAR's maps are read from (ARViT has none)."""
    if not isinstance(model, nn.Module):
        raise SarvitTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return bool(getattr(model, "has_class_token", getattr(model, "cls_token", None) is not None))


@dataclass(frozen=True)
class Capture:
    """What to capture from one forward pass; every field defaults to off.

    ``maps``: the last block's S ``[B, H, k, k]`` float32, ``<q_cls, k_patch> * scale`` after q/k norm.
    ``cls_attention``: the last block's post-softmax [CLS] attention over patches ``[B, H, k, k]`` float32.
    ``attention_blocks``: block indices (negative counts from the end) whose full post-softmax attention
    ``[B, H, T, T]`` float32 over all T tokens (prefix tokens first) is captured as ``{index: A}``.
    ``tokens``: the final patch tokens (after the model's final norm, prefix tokens dropped) ``[B, C, k, k]``.
    """

    maps: bool = False
    cls_attention: bool = False
    attention_blocks: tuple[int, ...] = ()
    tokens: bool = False

    def __post_init__(self) -> None:
        blocks = tuple(self.attention_blocks)  # a list is accepted and stored as a tuple
        if any(isinstance(index, bool) or not isinstance(index, int) for index in blocks):
            raise SarvitTypeError(f"attention_blocks must be block indices (ints), got {self.attention_blocks!r}")
        object.__setattr__(self, "attention_blocks", blocks)

    @property
    def empty(self) -> bool:
        return not (self.maps or self.cls_attention or self.attention_blocks or self.tokens)


SAR_KWARGS = ("return_maps", "return_attention", "capture")  # what a SAR model's forward takes beyond timm's


def capture_request(kwargs: dict) -> tuple[dict, Optional[Capture], bool]:
    """Takes :data:`SAR_KWARGS` out of a forward call's ``kwargs``: ``(the rest, the Capture asked for or None,
    whether the answer is the tuple (logits, S[, attention]))``; ``return_maps`` / ``return_attention`` stand for a
    Capture of the maps / the [CLS] attention.

    Example:
        >>> rest, capture, as_tuple = capture_request({"return_maps": True, "pre_logits": False})
        >>> rest, capture.maps, capture.cls_attention, as_tuple
        ({'pre_logits': False}, True, False, True)
    """
    kwargs = dict(kwargs)
    return_maps, return_attention = kwargs.pop("return_maps", False), kwargs.pop("return_attention", False)
    capture = kwargs.pop("capture", None)
    as_tuple = bool(return_maps or return_attention)
    if as_tuple:
        if capture is not None:
            raise SarvitError("capture: pass either capture= or return_maps/return_attention, not both")
        capture = Capture(maps=bool(return_maps), cls_attention=bool(return_attention))
    if capture is not None and not isinstance(capture, Capture):
        raise SarvitTypeError(f"capture must be a sarvit.models.Capture, got {type(capture).__name__}")
    return kwargs, capture, as_tuple


def patch_grid(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    """The ``(k_h, k_w)`` patch grid a timm-style model makes of ``images [B, C, H, W]``."""
    check_model(model)
    if getattr(model, "dynamic_img_size", False):
        return tuple(model.patch_embed.dynamic_feat_size(images.shape[-2:]))
    return tuple(model.patch_embed.grid_size)


def _block_indices(model: nn.Module, capture: Capture, query: str) -> tuple[int | None, tuple[int, ...]]:
    """The block whose [CLS] row is wanted (or None) and the attention blocks, indices in 0..depth-1."""
    depth = len(model.blocks)
    attention_blocks = []
    for index in capture.attention_blocks:
        if not -depth <= index < depth:
            raise SarvitError(f"attention_blocks: block {index} is outside 0..{depth - 1} (depth {depth})")
        if index % depth not in attention_blocks:
            attention_blocks.append(index % depth)
    cls_block = None
    if capture.maps or capture.cls_attention:
        if query == "cls" and not has_class_token(model):
            raise SarvitError(
                f"query: capturing maps or cls_attention with query='cls' needs a [CLS] query; this "
                f"{type(model).__name__} has no class token (use 'mean' or 'pooled')"
            )
        cls_block = depth - 1
    for index in attention_blocks + ([] if cls_block is None else [cls_block]):
        attn = model.blocks[index].attn
        if not isinstance(attn, ATTENTIONS):
            raise SarvitError(
                f"capture needs timm's Attention in blocks[{index}].attn, found {type(attn).__name__}"
            )
    return cls_block, tuple(attention_blocks)


class _Recorder:
    """A model's capture state: the hook keys the running capture wants, what those hooks kept, and the plan of
    the capture under way (set by :func:`begin_capture`, read by :func:`end_capture`)."""

    def __init__(self) -> None:
        self.wanted: tuple = ()
        self.kept: dict = {}
        self.plan: _Plan | None = None
        self.as_tuple: bool | None = None  # how a SAR model's forward hook answers this call (None: logits only)


@dataclass(frozen=True)
class _Plan:
    capture: Capture
    cls_block: int | None
    attention_blocks: tuple[int, ...]
    keys: tuple
    grid: tuple[int, int]
    similarity: str
    query: str


class _Keep:
    """A forward hook that keeps its module's output under ``key`` while a capture wants that key.

    A callable object (not a closure) so that ``copy.deepcopy`` of the model (EMA) hooks the copy's recorder,
    and so that the model pickles.
    """

    def __init__(self, recorder: _Recorder, key) -> None:
        self.recorder, self.key = recorder, key

    def __call__(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        if self.key in self.recorder.wanted:
            self.recorder.kept[self.key] = output


def enable_capture(model: nn.Module) -> _Recorder:
    """Install ``model``'s idle capture hooks once (later calls return the same recorder).

    Hooks go on ``q_norm`` / ``k_norm`` of every ``blocks[i].attn`` that is timm's ``Attention`` and on
    ``model.norm``. :func:`capturing` calls this itself; a model that may be compiled calls it when built
    (``create_model`` does), so that the compiled graph contains the hooks from its first trace.
    """
    recorder = model.__dict__.get("_capture_recorder") if isinstance(model, nn.Module) else None
    if recorder is None:
        check_model(model)
        recorder = _Recorder()
        for index, block in enumerate(model.blocks):
            if isinstance(block.attn, ATTENTIONS):
                block.attn.q_norm.register_forward_hook(_Keep(recorder, (index, "q")))
                block.attn.k_norm.register_forward_hook(_Keep(recorder, (index, "k")))
                install_hooks(recorder, index, block)
        if isinstance(getattr(model, "norm", None), nn.Module):
            model.norm.register_forward_hook(_Keep(recorder, "tokens"))
        model.__dict__["_capture_recorder"] = recorder
    return recorder


def _to_grid(per_patch: torch.Tensor, grid: tuple[int, int], what: str) -> torch.Tensor:
    """``[B, X, N]`` with N patches -> ``[B, X, k_h, k_w]``."""
    if per_patch.shape[-1] != grid[0] * grid[1]:
        raise SarvitError(
            f"capture of {what} expected {grid[0]}x{grid[1]} = {grid[0] * grid[1]} patch tokens, "
            f"found {per_patch.shape[-1]} (patch dropout changes the token count)"
        )
    return per_patch.reshape(*per_patch.shape[:-1], *grid)


def _wanted_keys(model: nn.Module, capture: Capture, query: str) -> tuple[int | None, tuple[int, ...], tuple]:
    """The maps' block (or None), the attention blocks, and the hook keys this capture needs."""
    cls_block, attention_blocks = _block_indices(model, capture, query)
    qk_blocks = dict.fromkeys(attention_blocks + (() if cls_block is None else (cls_block,)))
    keys = tuple((index, part) for index in qk_blocks for part in ("q", "k"))
    for index in qk_blocks:
        keys += hook_keys(model.blocks[index], index, query if index == cls_block else None)
    keys = tuple(dict.fromkeys(keys))
    if capture.tokens:
        if not isinstance(getattr(model, "norm", None), nn.Module):
            raise SarvitError(f"capturing tokens needs a final `norm` module; this {type(model).__name__} has none")
        keys += ("tokens",)
    return cls_block, attention_blocks, keys


def begin_capture(model: nn.Module, capture: Capture, grid: tuple[int, int], *, similarity: str = "dot",
                  query: str = "cls") -> None:
    """Arm ``model``'s hooks for ``capture`` (checked against the model) before its forward pass; the pass's
    results are then read by :func:`end_capture`. :func:`capturing` pairs the two around a ``with``."""
    check_choice(query, "query", QUERIES)
    cls_block, attention_blocks, keys = _wanted_keys(check_model(model), capture, query)
    recorder = enable_capture(model)
    recorder.kept.clear()  # the same dict object stays: a compiled graph writes into the one it traced
    recorder.wanted = keys
    recorder.plan = _Plan(capture, cls_block, attention_blocks, keys, tuple(grid), similarity, query)


def disarm_capture(model: nn.Module) -> None:
    """Idle hooks, nothing kept (also after a failed forward pass)."""
    recorder = enable_capture(model)
    recorder.wanted, recorder.plan = (), None
    recorder.kept.clear()


def end_capture(model: nn.Module) -> dict:
    """What the forward pass since :func:`begin_capture` kept, as asked (keys ``maps``, ``cls_attention``,
    ``attention``, ``tokens``); the hooks are idle again and keep no tensor. ``{}`` when nothing was armed."""
    recorder = enable_capture(model)
    plan, kept = recorder.plan, dict(recorder.kept)
    disarm_capture(model)
    if plan is None:
        return {}
    missing = [key for key in plan.keys if key not in kept]
    if missing:
        raise SarvitError(f"capture: the forward pass inside `capturing` never ran the hooked modules {missing}")
    captured: dict = {}
    capture, grid, prefix = plan.capture, plan.grid, model.num_prefix_tokens
    with torch.autocast(next(iter(kept.values())).device.type, enabled=False):  # float32 maps under autocast too
        if plan.cls_block is not None:
            q_cls, k = query_and_keys(model.blocks[plan.cls_block], kept, plan.cls_block, plan.query, prefix)
            row = torch.einsum("bhd,bhnd->bhn", q_cls, k) * model.blocks[plan.cls_block].attn.scale
            if capture.maps:
                if plan.similarity == "cosine":  # Eq. 15: no scale, unit-norm query and keys
                    patch_keys = F.normalize(k[:, :, prefix:], dim=-1)
                    maps = torch.einsum("bhd,bhnd->bhn", F.normalize(q_cls, dim=-1), patch_keys)
                else:
                    maps = row[:, :, prefix:]
                captured["maps"] = _to_grid(maps, key_grid(model.blocks[plan.cls_block], grid), "maps")
            if capture.cls_attention:
                captured["cls_attention"] = _to_grid(row.softmax(dim=-1)[:, :, prefix:],
                                                     key_grid(model.blocks[plan.cls_block], grid), "cls_attention")
        if plan.attention_blocks:
            captured["attention"] = {index: _attention(model, kept, index, prefix) for index in plan.attention_blocks}
    if capture.tokens:
        captured["tokens"] = _to_grid(kept["tokens"][:, prefix:].transpose(1, 2), grid, "tokens")
    return captured


@contextmanager
def capturing(
    model: nn.Module, capture: Capture, grid: tuple[int, int], *, similarity: str = "dot", query: str = "cls"
) -> Iterator[dict]:
    """Capture from the one forward pass of ``model`` run inside the ``with``; on leaving, the yielded dict
    holds exactly what ``capture`` asked for (keys ``maps``, ``cls_attention``, ``attention``, ``tokens``).

    Args:
        model: has ``blocks`` whose ``attn`` is timm's ``Attention``, ``num_prefix_tokens`` and, for
            ``tokens``, a final ``norm``; maps and cls_attention need a [CLS] token at position 0.
        capture: what to capture. An empty one touches nothing (no hooks) and yields an empty dict.
        grid: the patch grid ``(k_h, k_w)`` of this forward's images (:func:`patch_grid`).
        similarity: ``"dot"`` for S = ``<q_cls, k> * scale`` (Eq. 4) or ``"cosine"`` (Eq. 15, unit q and k).
        query: which query S is read from, ``"cls"``, ``"mean"`` or ``"pooled"`` (:mod:`sarvit.models.query`).

    Maps and attention are float32 even under autocast. After the ``with`` the hooks are idle again and
    keep no tensor.
    """
    if not isinstance(capture, Capture):
        raise SarvitTypeError(f"capture must be a sarvit.models.Capture, got {type(capture).__name__}")
    captured: dict = {}
    if capture.empty:
        yield captured
        return
    begin_capture(model, capture, grid, similarity=similarity, query=query)
    try:
        yield captured
    except BaseException:
        disarm_capture(model)
        raise
    captured.update(end_capture(model))


def _attention(model: nn.Module, kept: dict, index: int, prefix: int) -> torch.Tensor:
    """Block ``index``'s post-softmax attention ``[B, H, T, T]`` in float32 from its kept q and k."""
    q, k = rotated_qk(model.blocks[index], kept, index, prefix)
    return (q @ k.transpose(-2, -1) * model.blocks[index].attn.scale).softmax(dim=-1)
