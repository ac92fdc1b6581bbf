"""`sarvit export`: a sarvit checkpoint as timm's hub format, for timm, detectors and anyone without sarvit's files.

The folder holds ``config.json`` (``architecture``, ``model_args``, ``pretrained_cfg``, written by timm's own
``save_for_hf``), ``model.safetensors`` (the weights) and ``model.pth`` (``{"model": state_dict}``, the layout
detection frameworks load). A SAR model is exported as ``sar_vit`` (:mod:`sarvit.models.hub`): after
``import sarvit``, ``timm.create_model("local-dir:OUT_DIR", pretrained=True)`` rebuilds it with its surgery and
its ``S``. ``plain=True`` exports a model without SAR surgery under its own timm name, loadable without sarvit.
Only the backbone and its classifier are exported: the regularizers' own weights (DRLoc's head) stay behind.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import save_for_hf
from torch import nn

from ..errors import SarvitError
from ..models import SAR_VIT, ModelSpec
from .files import PathLike, load_checkpoint, resolve_checkpoint_path
from .models import checkpoint_spec, stored_spec

__all__ = ["EXPORT_FILES", "export_checkpoint", "export_model", "run_export"]

EXPORT_FILES = ("config.json", "model.safetensors", "model.pth")
# what sarvit's transforms normalise with (sarvit.data.build_transform), whatever the base name's timm default
_DATA_CONFIG = {"mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}


def export_model(spec: ModelSpec, state_dict: dict, *, plain: bool = False) -> nn.Module:
    """A freshly built timm model holding ``state_dict``, named as the export will name it.

    ``plain``: the spec's own timm name (refused for a model with a last-block removal on, which a stock
    timm model would compute differently); otherwise ``sar_vit`` with ``base`` = the spec's name.
    """
    # the removals change what the model computes; the other switches (similarity, query) only how S is read
    switched_on = sorted(key for key, value in spec.sar.items() if key.startswith("remove_") and value)
    if plain and switched_on:
        raise SarvitError(f"plain=True: the model's last block has {', '.join(switched_on)} on, which a stock timm "
                          f"{spec.name!r} does not compute; export it without plain (as {SAR_VIT!r})")
    if plain:
        model = timm.create_model(spec.name, **spec.timm_kwargs)
    else:
        model = timm.create_model(SAR_VIT, base=spec.name, sar=dict(spec.sar), **spec.timm_kwargs)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise SarvitError(f"the weights do not fit {spec.name!r} with {spec.timm_kwargs}: missing "
                          f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return model.eval()


def export_checkpoint(source: PathLike, out_dir: PathLike, *, plain: bool = False, ema: bool = False) -> dict:
    """Write :data:`EXPORT_FILES` for the sarvit checkpoint (or run folder) ``source`` into ``out_dir``.

    ``out_dir`` must be new or empty; the files appear together (written beside it, then moved in).
    ``ema``: export the checkpoint's EMA weights. Returns ``{"architecture", "model_args", "files"}``.
    """
    path = resolve_checkpoint_path(source)
    checkpoint = load_checkpoint(path)
    if stored_spec(checkpoint) is None:
        raise SarvitError(f"{path}: expected a sarvit checkpoint or run folder (it names its model); plain timm "
                          "weights need no export, timm.create_model(name, pretrained_cfg_overlay=...) loads them")
    weights = "model_ema" if ema else "model"
    if weights not in checkpoint:
        raise SarvitError(f"{path} holds no {weights!r} weights (keys: {', '.join(sorted(checkpoint))})")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SarvitError(f"{out}: expected a new or empty folder for the export, it already holds files")
    model = export_model(checkpoint_spec(checkpoint, path), checkpoint[weights], plain=plain)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_for_hf(model, staging, safe_serialization=True, data_config=_DATA_CONFIG)
        torch.save({"model": model.state_dict()}, staging / "model.pth")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    config = json.loads((out / "config.json").read_text())
    return {"architecture": config["architecture"], "model_args": config.get("model_args", {}),
            "files": [str(out / name) for name in EXPORT_FILES]}


def run_export(args: argparse.Namespace) -> int:
    """`sarvit export RUN_OR_CHECKPOINT OUT_DIR [--plain] [--ema]`."""
    if not args.source or not args.out_dir:
        raise SarvitError("expected RUN_OR_CHECKPOINT and OUT_DIR: sarvit export output/run exported/")
    done = export_checkpoint(args.source, args.out_dir, plain=args.plain, ema=args.use_ema)
    print(f"wrote {args.out_dir}/ ({done['architecture']}, {done['model_args']})")
    for name in done["files"]:
        print(f"  {name}")
    loads = "after `import sarvit`, " if done["architecture"] == SAR_VIT else ""
    print(f"{loads}timm.create_model(\"local-dir:{args.out_dir}\", pretrained=True) rebuilds it")
    return 0
