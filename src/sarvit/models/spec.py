"""ModelSpec: what a model is, as plain data; the one description that turns a checkpoint back into a model."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from ..checks import check_model
from ..errors import SarvitError, SarvitTypeError
from .arvit import ARViT
from .pyramids import PYRAMIDS, pyramid_spec_kwargs
from .sar_vit import create_model, sar_config

__all__ = ["ModelSpec", "SAR_SWITCHES", "infer_model_kwargs"]

SAR_SWITCHES = ("remove_last_skip", "remove_last_norm", "remove_last_mlp_skip", "similarity", "query")  # create_model's


@dataclass(frozen=True)
class ModelSpec:
    """A model as plain data: the timm ``name``, the last-block ``sar`` switches and the ``timm_kwargs``.

    ``ModelSpec(name, sar, timm_kwargs).build()`` is ``create_model(name, sar=False, **sar, **timm_kwargs)``:
    every switch left out of ``sar`` is off. Checkpoints store :meth:`to_dict` under ``model_config``.

    Example:
        >>> spec = ModelSpec("vit_tiny_patch16_224", {"remove_last_skip": True, "remove_last_norm": True},
        ...                  {"img_size": 32, "patch_size": 8, "num_classes": 10})
        >>> model = spec.build()
        >>> ModelSpec.from_dict(spec.to_dict()) == spec
        True
    """

    name: str
    sar: dict = field(default_factory=dict)
    timm_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SarvitError(f"name: a model spec needs a timm model name, got {self.name!r}")
        unknown = sorted(set(self.sar) - set(SAR_SWITCHES))
        if unknown:
            raise SarvitError(f"sar: unknown SAR switches {unknown}; expected some of {', '.join(SAR_SWITCHES)}")
        object.__setattr__(self, "sar", dict(self.sar))
        object.__setattr__(self, "timm_kwargs", dict(self.timm_kwargs))

    @property
    def num_classes(self) -> int | None:
        return self.timm_kwargs.get("num_classes")

    @property
    def input_size(self) -> int | None:
        return self.timm_kwargs.get("img_size")

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "sar", "timm_kwargs"}``, plain data (what checkpoints store)."""
        return {"name": self.name, "sar": dict(self.sar), "timm_kwargs": dict(self.timm_kwargs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        """The inverse of :meth:`to_dict`; also reads sarvit 0.1's ``model_config`` (whose extra
        ``num_classes`` and ``input_size`` repeat ``timm_kwargs``)."""
        if not isinstance(data, Mapping):
            raise SarvitTypeError(f"data must be a dict with 'name', 'sar', 'timm_kwargs', got {type(data).__name__}")
        if not data.get("name"):
            raise SarvitError(f"data: a model spec needs 'name', 'sar', 'timm_kwargs', got {dict(data)!r:.200}")
        return cls(str(data["name"]), dict(data.get("sar") or {}), dict(data.get("timm_kwargs") or {}))

    def replace(self, *, name: str | None = None, sar: Mapping | None = None, **timm_kwargs) -> "ModelSpec":
        """A copy with ``name``/``sar`` replaced and ``timm_kwargs`` updated (a ``None`` value removes the key)."""
        kwargs = {**self.timm_kwargs, **timm_kwargs}
        return ModelSpec(name or self.name, dict(self.sar if sar is None else sar),
                         {key: value for key, value in kwargs.items() if value is not None})

    def build(self) -> nn.Module:
        """The model this spec describes, freshly initialised (load weights with :func:`sarvit.load_weights`)."""
        try:
            return create_model(self.name, sar=False, **self.sar, **self.timm_kwargs)
        except SarvitError:
            raise
        except (TypeError, ValueError, RuntimeError, AssertionError) as error:
            raise SarvitError(f"could not build {self.name!r} with {self.timm_kwargs} and SAR switches {self.sar}: "
                              f"{error}") from None

    @classmethod
    def of(cls, model: nn.Module) -> "ModelSpec":
        """The spec of a model built by :func:`sarvit.create_model`, read from the model itself.

        The name comes from timm's ``pretrained_cfg``; the grid, width, depth, heads and class count from
        the modules. Training-only options (drop rates) cannot be read back and are left out. Raises
        :class:`SarvitError` when the rebuilt model's weights would not have the model's shapes.
        """
        if not isinstance(model, PYRAMIDS):
            check_model(model)
        name = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
        if not name:
            raise SarvitError(f"model: {type(model).__name__} does not name its timm architecture (pretrained_cfg)")
        if isinstance(model, PYRAMIDS):
            return cls._checked(name, sar_config(model), pyramid_spec_kwargs(model), model)
        block = model.blocks[0]
        timm_kwargs = {
            "img_size": tuple(model.patch_embed.img_size)[0] if model.patch_embed.img_size else None,
            "patch_size": tuple(model.patch_embed.patch_size)[0],
            "num_classes": model.num_classes,
            "embed_dim": model.embed_dim,
            "depth": len(model.blocks),
            "num_heads": block.attn.num_heads,
            "qkv_bias": _query_projection(block.attn).bias is not None,
        }
        fc1 = getattr(getattr(block, "mlp", None), "fc1", None)
        if isinstance(fc1, nn.Linear) and fc1.out_features % model.embed_dim == 0 and type(block.mlp).__name__ == "Mlp":
            timm_kwargs["mlp_ratio"] = fc1.out_features // model.embed_dim
        if isinstance(model, ARViT):  # its choices where the thesis is silent, which the shapes do not all show
            timm_kwargs.update(global_pool=model.global_pool, post_norm=model.post_norm, act_layer=model.act_layer)
        return cls._checked(name, sar_config(model), {k: v for k, v in timm_kwargs.items() if v is not None}, model)

    @classmethod
    def _checked(cls, name: str, sar: dict, timm_kwargs: dict, model: nn.Module) -> "ModelSpec":
        """The spec, once a model rebuilt from it has ``model``'s weight shapes."""
        spec = cls(name, sar, timm_kwargs)
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            rebuilt = spec.build()
        theirs = {key: tuple(value.shape) for key, value in rebuilt.state_dict().items()}
        ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        if theirs != ours:
            differing = sorted(set(theirs.items()) ^ set(ours.items()))[:5]
            raise SarvitError(f"ModelSpec.of: {name!r} rebuilt from what the model shows differs in {differing}")
        return spec


def _query_projection(attn: nn.Module) -> nn.Linear:
    """The linear layer that makes the queries: timm's fused ``qkv``, or CvT's ``proj_q``."""
    return attn.qkv if isinstance(getattr(attn, "qkv", None), nn.Linear) else attn.proj_q


def infer_model_kwargs(state: Mapping[str, torch.Tensor]) -> dict:
    """What a ViT state dict says about its build: ``patch_size``, ``img_size``, ``num_classes`` (when present),
    ``embed_dim``, ``depth``, ``mlp_ratio``, ``qkv_bias``,
    and ``remove_last_norm`` (True when the last block has no ``norm2``, i.e. it was trained with SAR's surgery)."""
    if not isinstance(state, Mapping):
        raise SarvitTypeError(f"state must be a state dict (parameter names to tensors), got {type(state).__name__}")
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
