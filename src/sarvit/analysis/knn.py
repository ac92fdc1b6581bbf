"""`sarvit knn`: DINO's weighted k-NN evaluation of a frozen network's [CLS] features on a labelled data set.

A `sarvit pretrain` checkpoint's ``model`` is its teacher (DINO) / momentum encoder (MoCo-v3) backbone, so
``--weights`` of a pretraining run evaluates what the papers evaluate; any sarvit or timm weights work too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import fresh_path, load_model, write_json
from ..data import build_dataset, build_transform
from ..errors import SarvitError
from ..options import defaults
from ..train.build import eval_loader
from ..train.distributed import DistInfo
from ..train.ssl.pretrain import knn_of

__all__ = ["frozen_network", "knn_evaluate", "run_knn", "report"]


def frozen_network(config: dict[str, Any]):
    """``(model, bank_loader, query_loader, num_classes, info)``: the network of ``config["weights"]`` in eval mode
    with no gradients, and loaders of the data set's training and evaluation splits without augmentation."""
    model, info = load_model(config["weights"], config.get("device"), img_size=config.get("input_size"))
    model.requires_grad_(False)
    size = info["timm_kwargs"].get("img_size") or 224
    size = size[0] if isinstance(size, (tuple, list)) else size
    transform = build_transform(False, size)
    synthetic = {"img_size": size} if config["data_set"] == "synthetic" else {}
    count = config.get("num_samples")
    common = dict(root=config.get("data_path"), download=bool(config.get("download")), transform=transform)
    bank, _ = build_dataset(config["data_set"], train=True, **common, **synthetic,
                            **({"num_samples": count} if count else {}))
    queries, num_classes = build_dataset(config["data_set"], train=False, **common, **synthetic,
                                         **({"num_samples": max(1, count // 5)} if count else {}))
    device = next(model.parameters()).device
    dist_info = DistInfo(device=device)
    loaders = {"batch_size": config["batch_size"], "num_workers": config["num_workers"], "pin_mem": False}
    print(f"loaded {info['weights']}: {info['model']} {info['timm_kwargs']} on {info['device']}; "
          f"{len(bank)} training / {len(queries)} evaluation images of {config['data_set']}", file=sys.stderr)
    return (model, eval_loader(bank, loaders, dist_info), eval_loader(queries, loaders, dist_info), num_classes,
            info)


def knn_evaluate(config: dict[str, Any]) -> dict[str, Any]:
    """``{"top1", "top5", "k", "temperature", "weights", "data_set"}`` of the k-NN classifier."""
    model, bank, queries, num_classes, info = frozen_network(config)
    metrics = knn_of(model, bank, queries, num_classes, next(model.parameters()).device, k=config["nb_knn"],
                     temperature=config["temperature"])
    return {**metrics, "k": config["nb_knn"], "temperature": config["temperature"], "weights": info["weights"],
            "data_set": config["data_set"]}


def report(command: str, config: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Print the top-1/top-5 line and write the JSON (``--json`` or ``<weights folder>/<command>.json``)."""
    print(f"{command} of {metrics['weights']} on {config['data_set']}: top-1 {metrics['top1']:.2f}%  "
          f"top-5 {metrics['top5']:.2f}%")
    weights = Path(config["weights"]).expanduser()
    wanted = Path(config["json"]) if config.get("json") else (weights if weights.is_dir() else weights.parent) / \
        f"{command}.json"
    path = write_json(metrics, fresh_path(wanted))
    print(f"wrote {path}")
    return path


def run_knn(args: argparse.Namespace) -> int:
    config = {**defaults("knn"), **{k: v for k, v in vars(args).items() if k not in ("run", "command")}}
    if config["nb_knn"] < 1:
        raise SarvitError(f"--nb-knn: expected at least 1 neighbour, got {config['nb_knn']}")
    with torch.no_grad():
        metrics = knn_evaluate(config)
    report("knn", config, metrics)
    return 0
