"""Evaluating a saved checkpoint (``sarvit eval``): :func:`evaluation_setup` rebuilds the model and the evaluation
split, :func:`evaluate_checkpoint` scores it; the out-of-distribution evaluations (``sarvit.analysis.ood``) share
the setup."""
from __future__ import annotations

from typing import Optional

from ..checkpoints import load_checkpoint, model_from_checkpoint, stored_spec, write_json
from ..errors import SarvitError
from ..models import sar_config
from . import build
from .config import TrainConfig
from .distributed import say, setup_distributed
from .evaluation import attention_jaccard, evaluate

__all__ = ["evaluate_checkpoint", "evaluation_setup"]


def evaluate_checkpoint(config: TrainConfig, checkpoint: Optional[dict] = None) -> dict:
    """Evaluate ``config["weights"]`` on the data set's evaluation split: ``{top1, top5, loss, entropy, images}``.

    A sarvit checkpoint rebuilds its own model; plain weights use the model options of ``config``.
    """
    model, val_set, info = evaluation_setup(config, checkpoint)
    loader = build.eval_loader(val_set, config, info)
    with build.cpu_thread_limit(config, info):
        metrics = evaluate(model, loader, info, build.amp_dtype(config, info.device), attention_jaccard(val_set, model))
    metrics.update({"checkpoint": str(config["weights"]), "data_set": config["data_set"],
                    "model": model.pretrained_cfg.get("architecture"), "sar": sar_config(model)})
    if info.is_main and config.get("json"):
        write_json(metrics, config["json"])
    return metrics


def evaluation_setup(config: TrainConfig, checkpoint: Optional[dict] = None):
    """``(model, val_set, info)`` for evaluating ``config["weights"]``: the model on its device in eval mode,
    the data set's evaluation split at the model's input size, the process's :class:`~sarvit.train.distributed.DistInfo`."""
    info = setup_distributed(config.get("device"))
    path = config.get("weights")
    if not path:
        raise SarvitError("nothing to evaluate: give the checkpoint with --weights CKPT")
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(path)
    spec = stored_spec(checkpoint)
    if spec is not None:
        config = config.replace(input_size=spec.input_size)
    _, val_set, num_classes = build.build_datasets(config, train=False)
    if spec is None:
        spec = build.model_spec(config, num_classes)
    elif spec.num_classes != num_classes:
        raise SarvitError(
            f"{path} classifies {spec.num_classes} classes, the {config['data_set']} evaluation set has "
            f"{num_classes}; evaluate on the data set it was trained on (or fine-tune it with --finetune)")
    if config.get("use_ema") and "model_ema" not in checkpoint:
        raise SarvitError(f"--ema: {path} holds no EMA weights (the run had --no-model-ema)")
    try:
        model, report = model_from_checkpoint(checkpoint, spec, weights="model_ema" if config.get("use_ema") else "model")
    except SarvitError as error:
        raise SarvitError(f"{path}: {error}") from None
    if report.removed_by_surgery:
        say(info, f"note: {report}; pass --no-sar (or --keep-last-norm) if this model was trained without SAR")
    return model.to(info.device).eval(), val_set, info
