"""The configuration of `sarvit pretrain`: the option table's defaults, then the ``--method`` / ``--scale``
recipe, then what the user typed (a resumed run: the options stored in its checkpoint, then what was typed)."""
from __future__ import annotations

from typing import Any, Optional

from ...errors import SarvitError
from ...options import check_values, defaults
from ..regularizers import resolve_regularizers

__all__ = ["RECIPES", "resolve_pretrain_config"]

_TINY_MODEL = {"model": "vit_tiny_patch16_224", "input_size": 32, "patch_size": 4, "depth": 4, "embed_dim": 128,
               "num_heads": 4, "batch_size": 64, "num_samples": 1000, "epochs": 8, "num_workers": 0}
_PAPER_MODEL = {"model": "vit_small_patch16_224", "input_size": 224, "epochs": 300}

# DINO's official ViT-S/16 recipe (and the appendix's 10 local crops); MoCo-v3's paper recipe for ViT-S.
_DINO = {"lr": 5e-4, "min_lr": 1e-6, "warmup_epochs": 10, "weight_decay": 0.04, "weight_decay_end": 0.4,
         "clip_grad": 3.0, "local_crops_number": 10, "local_size": 96, "global_crops_scale": [0.4, 1.0],
         "local_crops_scale": [0.05, 0.4], "out_dim": 65536, "norm_last_layer": True, "freeze_last_layer": 1,
         "momentum_teacher": 0.996, "teacher_temp": 0.07, "warmup_teacher_temp": 0.04,
         "warmup_teacher_temp_epochs": 30, "drop_path": 0.1, "weight_init": "timm"}
_MOCO = {"lr": 1.5e-4, "min_lr": 0.0, "warmup_epochs": 40, "weight_decay": 0.1, "weight_decay_end": 0.1,
         "clip_grad": None, "global_crops_scale": [0.08, 1.0], "local_crops_number": 0, "moco_t": 0.2, "moco_m": 0.99,
         "moco_dim": 256, "moco_mlp_dim": 4096, "drop_path": 0.0, "weight_init": "moco"}

# tiny: the same recipes on a 4-block, 128-wide ViT at 32 px (8 x 8 patches), 16 px local crops, smaller heads;
# schedules shortened with the run (warm-ups of one epoch, the temperature warm-up over half the run).
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("dino", "paper"): {**_PAPER_MODEL, **_DINO, "batch_size": 64},
    ("mocov3", "paper"): {**_PAPER_MODEL, **_MOCO, "batch_size": 128},
    ("dino", "tiny"): {**_DINO, **_TINY_MODEL, "lr": 2e-3, "warmup_epochs": 1, "local_crops_number": 4,
                       "local_size": 16, "out_dim": 1024, "warmup_teacher_temp_epochs": 5},
    ("mocov3", "tiny"): {**_MOCO, **_TINY_MODEL, "lr": 1.5e-3, "warmup_epochs": 1, "moco_dim": 64,
                         "moco_mlp_dim": 512},
}
# what the recipes set without an option: the head widths, and the learning rate (per 256 images) of the linear
# probe at the end of the run (DINO's 1e-3 at paper scale; the tiny run's few, small features need more)
HEAD_WIDTHS = {"tiny": {"hidden_dim": 512, "bottleneck_dim": 64, "probe_lr": 0.1},
               "paper": {"hidden_dim": 2048, "bottleneck_dim": 256, "probe_lr": 1e-3}}
# keys of a stored configuration that a resumed run takes from the command line only
_INVOCATION = ("resume", "overwrite")


def _vit_models() -> set[str]:
    """timm's models built by its VisionTransformer class, which has the ``weight_init`` modes."""
    import timm

    return set(timm.list_models(module=["vision_transformer", "deit"]))


def resolve_pretrain_config(typed: dict[str, Any], stored: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The run's configuration: table defaults < recipe < ``stored`` (a resumed run's options) < ``typed``.

    ``--sar`` switches on SAR's spatial-entropy loss (weight ``--lambda``) and the last-block surgery; ``--reg``
    terms come on top, resolved as `sarvit train` resolves them (``config["regularizers"]``).
    """
    base = dict(stored or {})
    if stored is not None:  # a run stored before --weight-init existed started from timm's initialisation
        base.setdefault("weight_init", "timm")
    method = typed.get("method", base.get("method", "dino"))
    scale = typed.get("scale", base.get("scale", "tiny"))
    scale = "tiny" if scale == "small" else scale
    config = {**defaults("pretrain"), **RECIPES[(method, scale)], **HEAD_WIDTHS[scale],
              **{k: v for k, v in base.items() if k not in _INVOCATION}, **typed}
    config.update(method=method, scale=scale)
    config = check_values("pretrain", config)
    if config["weight_init"] != "timm" and config["model"].split(".")[0] not in _vit_models():
        if "weight_init" in typed:
            raise SarvitError(f"--weight-init {config['weight_init']}: an initialisation of timm's VisionTransformer; "
                              f"--model {config['model']} is not one (give --weight-init timm)")
        config["weight_init"] = "timm"  # the recipe's MoCo-v3 init is for timm's ViT classes (printed, documented)
    if config.get("data_set") != "synthetic" and "num_samples" not in typed:
        config["num_samples"] = None  # the tiny recipe's image count is the synthetic set's
    sar = bool(config.get("sar"))
    config["sar_loss"] = sar
    config["remove_last_skip"] = config["remove_last_norm"] = sar
    given = set(typed) | ({"lam"} if "lam" in base else set())
    resolve_regularizers(config, given)
    if method == "mocov3" and config["local_crops_number"]:
        raise SarvitError("--local-crops-number: MoCo-v3 trains on two views; local crops are DINO's (give 0)")
    return config
