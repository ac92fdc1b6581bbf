"""A checkpoint back into a model: the only code that does it, always through :class:`~sarvit.models.ModelSpec`."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from ..errors import SarvitError
from ..models import LoadReport, ModelSpec, infer_model_kwargs, load_weights
from ..models.pyramids import is_pyramid
from .files import FORMAT, PathLike, load_checkpoint, resolve_checkpoint_path

__all__ = ["stored_spec", "checkpoint_spec", "model_from_checkpoint", "load_model", "resolve_device"]

# change nothing a loaded model computes in eval mode (weight_init: how training started; the weights replace it)
_TRAINING_ONLY = ("drop_path_rate", "pretrained", "weight_init")


def stored_spec(checkpoint: dict) -> Optional[ModelSpec]:
    """The :class:`ModelSpec` a sarvit checkpoint carries (0.1's ``model_config`` included); None for plain weights."""
    if checkpoint.get("format") != FORMAT or not isinstance(checkpoint.get("model_config"), dict):
        return None
    return ModelSpec.from_dict(checkpoint["model_config"])


def checkpoint_spec(
    checkpoint: dict,
    path: PathLike = "checkpoint",
    *,
    model_name: str | None = None,
    img_size: int | None = None,
    patch_size: int | None = None,
    num_classes: int | None = None,
    sar: bool | None = None,
) -> ModelSpec:
    """The spec to rebuild ``checkpoint``'s model with; explicit arguments override what it stores.

    A sarvit checkpoint names its own spec. Plain weights (timm / DeiT) need ``model_name`` (it names the
    family and the number of heads); ``patch_size``, ``img_size``, ``num_classes``, ``embed_dim``, ``depth``,
    ``mlp_ratio``, ``qkv_bias`` are read from the weights, and the SAR surgery is taken to be on when the
    last block has no ``norm2`` (the reference code's ``--use-nosn``), unless ``sar`` says otherwise.
    ``sar`` True/False sets both removals of Eq. 10-11 and keeps the stored similarity.
    """
    stored = stored_spec(checkpoint)
    inferred = infer_model_kwargs(checkpoint["model"])
    name = model_name or (stored.name if stored else None)
    if not name:
        raise SarvitError(
            f"{path} holds weights without a model name: pass --model (e.g. --model deit_small_patch16_224); "
            f"the weights say patch_size={inferred.get('patch_size')}, img_size={inferred.get('img_size')}, "
            f"num_classes={inferred.get('num_classes')}"
        )
    timm_kwargs = {k: v for k, v in (stored.timm_kwargs if stored else {}).items() if k not in _TRAINING_ONLY}
    for key in ("patch_size", "img_size", "num_classes", "embed_dim", "depth", "mlp_ratio", "qkv_bias"):
        if key in inferred and not is_pyramid(name):  # a ViT's keys: PVT-v2 / Swin store their whole build
            timm_kwargs.setdefault(key, inferred[key])
    for key, value in (("img_size", img_size), ("patch_size", patch_size), ("num_classes", num_classes)):
        if value is not None and key != "num_classes" and is_pyramid(name) and key not in timm_kwargs:
            if key == "patch_size":  # PVT-v2: an overlapping convolutional stem, which takes any img_size
                raise SarvitError(f"patch_size: {name!r} has an overlapping 7x7 stem, not patches; leave it out")
            continue  # a size PVT-v2 is not built for: it takes any, and the caller feeds it that size
        if value is not None:
            timm_kwargs[key] = value
    switches = dict(stored.sar) if stored else {}
    if sar is None and stored is None:
        sar = inferred.get("remove_last_norm")
    if sar is not None:
        switches.update(remove_last_skip=bool(sar), remove_last_norm=bool(sar))
    return ModelSpec(name, switches, {k: v for k, v in timm_kwargs.items() if v is not None})


def model_from_checkpoint(checkpoint: dict, spec: ModelSpec, *, weights: str = "model") -> tuple[nn.Module, LoadReport]:
    """``spec.build()`` with the checkpoint's ``weights`` (``"model"`` or ``"model_ema"``) loaded."""
    if weights not in checkpoint:
        raise SarvitError(f"the checkpoint holds no {weights!r} weights (keys: {', '.join(sorted(checkpoint))})")
    model = spec.build()
    return model, load_weights(model, checkpoint[weights])


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
    try:  # mps, xpu, ...: what this torch build can use
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        raise SarvitError(f"--device {device}: this PyTorch build cannot run on it ({type(error).__name__}); "
                          "expected 'auto', 'cpu' or 'cuda'") from None
    return device


def load_model(path: PathLike, device: Union[str, torch.device, None] = None, **overrides) -> tuple[nn.Module, dict]:
    """Rebuild a model from weights on disk, in eval mode on ``device``.

    ``path`` is a file or a training run's folder (then its ``last.pth``) holding a sarvit checkpoint or
    plain timm/DeiT weights (wrapper prefixes ``module.``, ``_orig_mod.``, ``backbone.`` are stripped);
    ``overrides`` are :func:`checkpoint_spec`'s keyword arguments.

    Returns:
        ``(model, info)``: ``info`` is plain data describing what was built (``weights``, ``source`` =
        ``"checkpoint"`` or ``"state_dict"``, ``model``, ``timm_kwargs``, ``sar``, ``load_report``, ``device``,
        ``input_size``).
    """
    path = resolve_checkpoint_path(path)
    checkpoint = load_checkpoint(path)
    spec = checkpoint_spec(checkpoint, path, **overrides)
    model, report = model_from_checkpoint(checkpoint, spec)
    device = resolve_device(device)
    model.to(device).eval()
    info = {
        "weights": str(path),
        "source": "checkpoint" if stored_spec(checkpoint) else "state_dict",
        "model": spec.name,
        "timm_kwargs": spec.timm_kwargs,
        "sar": spec.sar,
        "load_report": str(report),
        "device": str(device),
        # the side it was built or trained at (PVT-v2 takes any: its run's --input-size), None if unknown
        "input_size": spec.input_size or (checkpoint.get("config") or {}).get("input_size"),
    }
    return model, info
