"""Models for analysis: a sarvit training checkpoint or a plain timm/DeiT state dict -> a SAR model in eval mode."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Union

import torch
from torch import nn

from ..errors import SarvitError
from ..models import create_model, load_weights
from ..train.checkpoint import FORMAT, load_checkpoint, resolve_checkpoint_path

__all__ = ["load_model_for_analysis", "resolve_device", "infer_model_kwargs"]

_SWITCHES = ("sar", "remove_last_skip", "remove_last_norm", "remove_last_mlp_skip", "similarity")  # create_model's


def resolve_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; otherwise the named device (checked)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise SarvitError(f"--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r} ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SarvitError(f"--device {device}: CUDA was asked for, but torch sees no CUDA device")
    return device


def _checkpoint_config(checkpoint: dict) -> dict:
    """The build config a sarvit checkpoint carries: ``{"model": name, "sar": {...}, "timm_kwargs": {...}}``."""
    stored = checkpoint.get("model_config") if checkpoint.get("format") == FORMAT else None
    if not isinstance(stored, dict) or not stored.get("name"):
        return {}
    ignored = ("drop_path_rate", "pretrained")  # training-only: they change nothing the analysis sees
    timm_kwargs = {k: v for k, v in stored.get("timm_kwargs", {}).items() if k not in ignored}
    return {"model": stored["name"], "timm_kwargs": timm_kwargs, "sar": dict(stored.get("sar", {}))}


def infer_model_kwargs(state: dict[str, torch.Tensor]) -> dict:
    """What a ViT state dict says about its build: ``patch_size``, ``img_size``, ``num_classes`` (when present),
    ``embed_dim``, ``depth``, ``mlp_ratio``, ``qkv_bias``,
    and ``remove_last_norm`` (True when the last block has no ``norm2``, i.e. it was trained with SAR's surgery)."""
    found: dict = {}
    proj = state.get("patch_embed.proj.weight")
    if proj is not None and proj.dim() == 4 and proj.shape[-1] == proj.shape[-2]:
        found["patch_size"] = int(proj.shape[-1])
    head = state.get("head.weight")
    if head is not None and head.dim() == 2:
        found["num_classes"] = int(head.shape[0])
    elif "head.weight" not in state and any(k.startswith("blocks.") for k in state):
        found["num_classes"] = 0
    pos = state.get("pos_embed")
    if pos is not None and pos.dim() == 3 and "patch_size" in found:
        prefix = 1 + (1 if "dist_token" in state else 0) + (state["reg_token"].shape[1] if "reg_token" in state else 0)
        for tokens in (pos.shape[1] - prefix, pos.shape[1]):
            side = math.isqrt(max(tokens, 0))
            if tokens > 0 and side * side == tokens:
                found["img_size"] = side * found["patch_size"]
                break
    cls = state.get("cls_token")
    if cls is not None and cls.dim() == 3:
        found["embed_dim"] = int(cls.shape[-1])
    blocks = [int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))]
    if blocks:
        last = max(blocks)
        found["depth"] = last + 1
        found["remove_last_norm"] = f"blocks.{last}.norm2.weight" not in state
        fc1 = state.get("blocks.0.mlp.fc1.weight")
        if fc1 is not None and "embed_dim" in found and fc1.shape[0] % found["embed_dim"] == 0:
            found["mlp_ratio"] = fc1.shape[0] // found["embed_dim"]
        if "blocks.0.attn.qkv.weight" in state:
            found["qkv_bias"] = "blocks.0.attn.qkv.bias" in state
    return found


def load_model_for_analysis(
    path: Union[str, Path],
    device: Union[str, torch.device, None] = None,
    *,
    model_name: str | None = None,
    img_size: int | None = None,
    patch_size: int | None = None,
    num_classes: int | None = None,
    sar: bool | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild a model from weights on disk, in eval mode on ``device``, ready for :func:`attention_maps`.

    ``path`` is a file or a training run's folder (then its ``last.pth``) holding:

    * a sarvit checkpoint - a dict with ``"model"`` (the state dict) and ``"model_config"``
      (``{name, timm_kwargs, sar, ...}``, written by ``sarvit train``); explicit arguments override it;
    * a plain state dict (timm / DeiT weights, or a dict with ``"model"`` and no config) - then
      ``model_name`` is required (it names the family and the number of heads); ``patch_size``, ``img_size``,
      ``num_classes``, ``embed_dim``, ``depth``, ``mlp_ratio``, ``qkv_bias`` are read from the weights unless given, and the SAR surgery is taken to be on when the last block has no ``norm2`` (the
      reference code's ``--use-nosn``), unless ``sar`` says otherwise.

    Wrapper prefixes (``module.``, ``_orig_mod.``, ``backbone.``) are stripped.

    Returns:
        ``(model, info)``: ``info`` is plain data describing what was built (``model``, ``timm_kwargs``,
        ``sar`` switches, ``source`` = ``"checkpoint"`` or ``"state_dict"``, ``device``) for reports.
    """
    path = resolve_checkpoint_path(path)
    checkpoint = load_checkpoint(path)
    config = _checkpoint_config(checkpoint)
    state, source = checkpoint["model"], "checkpoint" if config else "state_dict"
    inferred = infer_model_kwargs(state)

    name = model_name or config.get("model")
    if not name:
        raise SarvitError(
            f"{path} holds weights without a model name: pass --model (e.g. --model deit_small_patch16_224); "
            f"the weights say patch_size={inferred.get('patch_size')}, img_size={inferred.get('img_size')}, "
            f"num_classes={inferred.get('num_classes')}"
        )
    timm_kwargs = dict(config.get("timm_kwargs", {}))
    for key in ("patch_size", "img_size", "num_classes", "embed_dim", "depth", "mlp_ratio", "qkv_bias"):
        if key in inferred:
            timm_kwargs.setdefault(key, inferred[key])
    for key, value in (("img_size", img_size), ("patch_size", patch_size), ("num_classes", num_classes)):
        if value is not None:
            timm_kwargs[key] = value
    timm_kwargs = {k: v for k, v in timm_kwargs.items() if v is not None}

    switches = dict(config.get("sar", {})) if source == "checkpoint" else {}
    if sar is not None:
        switches = {k: v for k, v in switches.items() if k in ("similarity", "remove_last_mlp_skip")}
        switches["sar"] = sar
    elif not switches and "remove_last_norm" in inferred:
        switches["sar"] = inferred["remove_last_norm"]
    switches = {k: v for k, v in switches.items() if k in _SWITCHES and v is not None}
    try:
        model = create_model(name, **switches, **timm_kwargs)
    except SarvitError:
        raise
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        raise SarvitError(f"could not build {name!r} with {timm_kwargs} and SAR switches {switches}: {error}") from None
    report = load_weights(model, state)
    device = resolve_device(device)
    model.to(device).eval()
    info = {
        "weights": str(path),
        "source": source,
        "model": name,
        "timm_kwargs": timm_kwargs,
        "sar": switches,
        "load_report": str(report),
        "device": str(device),
    }
    return model, info


def model_image_size(model: nn.Module) -> int:
    """The square input side the model expects (its ``patch_embed.img_size``)."""
    size = getattr(model.patch_embed, "img_size", None)
    if size is None:
        raise SarvitError("the model has a dynamic input size; pass --img-size")
    if size[0] != size[1]:
        raise SarvitError(f"analysis expects a square input, the model takes {tuple(size)}")
    return int(size[0])


def model_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ``(mean, std)`` the model's pretrained config names (ImageNet's by default)."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD))
