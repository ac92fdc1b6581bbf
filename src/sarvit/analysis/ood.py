"""`sarvit eval --ood imagenet-a|imagenet-r|imagenet-c` and `sarvit eval --corrupt NAME[:SEVERITY]`.

* ImageNet-A / -R: folders named by 200 WordNet ids (``root/<wnid>/*.jpg``); a 1000-class classifier is scored on
  those 200 classes only, through the index list timm ships (``timm/data/_info/imagenet_{a,r}_indices.txt``), as
  their authors score it (the arg-max over the 200 logits).
* ImageNet-C: ``root/<corruption>/<severity>/<wnid>/*.JPEG`` (15 corruptions x 5 severities, and the 4 extra ones
  when present): top-1 error per corruption and severity, CE against AlexNet and mCE
  (:mod:`sarvit.analysis.corruption_scores`), a JSON file and a heat map.
* ``--corrupt``: the data set's own evaluation split (any data set sarvit reads) corrupted on the fly
  (:class:`sarvit.data.corruptions.CorruptedDataset`), with CE and relative CE against ``--baseline``.
"""
from __future__ import annotations

import argparse
import json
import pkgutil
import sys
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from ..checkpoints import load_model, write_json
from ..data import build_transform, load_rgb_image
from ..data.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES, CorruptedDataset, parse_corruptions
from ..errors import SarvitError
from ..options import defaults
from .commands import _json_path
from .corruption_scores import alexnet_scores, baseline_scores, corruption_table, save_heatmap
from .inputs import make_loader, model_image_size

__all__ = ["OOD_SETS", "class_subset", "imagenet_c_folders", "ood_folder", "run_eval", "top1_error"]

OOD_SETS = ("imagenet-a", "imagenet-r", "imagenet-c")
_IMAGENET_CLASSES = 1000


def _timm_list(name: str) -> list[str]:
    return pkgutil.get_data("timm.data", f"_info/{name}").decode("utf-8").split()


def class_subset(name: str) -> tuple[list[str], list[int]]:
    """``(wnids, indices)`` of ``"imagenet-1k"``, ``"imagenet-a"`` or ``"imagenet-r"``: the classes' WordNet ids
    and their logit indices in an ImageNet-1k classifier (timm's lists)."""
    if name == "imagenet-1k":
        wnids = _timm_list("imagenet_synsets.txt")
        return wnids, list(range(len(wnids)))
    stem = name.replace("-", "_")
    return _timm_list(f"{stem}_synsets.txt"), [int(index) for index in _timm_list(f"{stem}_indices.txt")]


def ood_folder(root: Path, classes: list[str], transform, what: str) -> Dataset:
    """An ImageFolder of WordNet-id folders whose targets are positions in ``classes`` (not folder order)."""
    if not root.is_dir():
        raise SarvitError(f"{what}: expected a folder of WordNet-id folders, {root} is not a folder")
    folders = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    unknown = [name for name in folders if name not in classes]
    if not folders or unknown:
        raise SarvitError(f"{what}: expected folders named by its WordNet ids (n01498041, ...) in {root}, found "
                          f"{', '.join(unknown[:5]) or 'none'}")
    dataset = ImageFolder(str(root), transform=transform, loader=load_rgb_image)
    position = {wnid: classes.index(wnid) for wnid in dataset.classes}
    dataset.samples = [(path, position[dataset.classes[target]]) for path, target in dataset.samples]
    dataset.targets = [target for _, target in dataset.samples]
    return dataset


def imagenet_c_folders(root: Path) -> dict[str, dict[int, Path]]:
    """``{corruption: {severity: folder}}`` of an ImageNet-C tree (``root/<corruption>/<severity>/<wnid>/``)."""
    found: dict[str, dict[int, Path]] = {}
    for name in (*CORRUPTIONS, *EXTRA_CORRUPTIONS):
        for severity in SEVERITIES:
            folder = root / name / str(severity)
            if folder.is_dir():
                found.setdefault(name, {})[severity] = folder
    if not found:
        present = sorted(entry.name for entry in root.iterdir()) if root.is_dir() else []
        raise SarvitError(f"imagenet-c: expected <corruption>/<severity>/<wnid>/ folders in {root} (corruptions "
                          f"{', '.join(CORRUPTIONS[:3])}, ...; severities 1-5), found {', '.join(present[:6]) or 'nothing'}")
    return found


@torch.no_grad()
def top1_error(model: nn.Module, loader, device: torch.device, indices: Optional[list[int]] = None) -> tuple[float, int]:
    """``(top-1 error in %, images)`` of ``model`` on ``loader``; ``indices``: score only these logits (IN-A/R)."""
    wrong = torch.zeros((), dtype=torch.long, device=device)
    count = 0
    columns = None if indices is None else torch.tensor(indices, device=device)
    for images, targets in loader:
        logits = model(images.to(device, non_blocking=True))
        if columns is not None:
            logits = logits.index_select(1, columns)
        wrong += (logits.argmax(dim=1) != targets.to(device, non_blocking=True)).sum()
        count += targets.shape[0]
    if count == 0:
        raise SarvitError("evaluation: the data set is empty")
    return 100.0 * wrong.item() / count, count


def _imagenet_model(args):
    model, info = load_model(args.weights, args.device, model_name=args.model, img_size=args.input_size,
                             patch_size=args.patch_size, sar=True if args.use_nosn else args.sar)
    if model.num_classes != _IMAGENET_CLASSES:
        raise SarvitError(f"--ood {args.ood}: expected an ImageNet-1k classifier (1000 classes), {args.weights} "
                          f"classifies {model.num_classes}")
    return model, info


def _run_subset(args) -> int:
    """ImageNet-A / -R: top-1 over their 200 classes."""
    model, info = _imagenet_model(args)
    wnids, indices = class_subset(args.ood)
    dataset = ood_folder(Path(args.data_path), wnids, build_transform(False, model_image_size(model)), args.ood)
    device = next(model.parameters()).device
    error, images = top1_error(model, make_loader(dataset, args.batch_size, args.num_workers, device), device, indices)
    result = {"data_set": args.ood, "checkpoint": info["weights"], "top1": 100.0 - error, "error": error,
              "images": images, "classes": len(set(dataset.targets))}
    print(f"{info['weights']} on {args.ood} ({images} images, {result['classes']} of {len(wnids)} classes): "
          f"top-1 {result['top1']:.2f}%")
    _write_results(args, result, args.ood)
    return 0


def _run_imagenet_c(args) -> int:
    model, info = _imagenet_model(args)
    wnids, _ = class_subset("imagenet-1k")
    # ImageNet-C's images are 224 px centre crops already: resize to the model's side, crop nothing more
    transform = build_transform(False, model_image_size(model), eval_crop_ratio=1.0)
    device = next(model.parameters()).device
    errors: dict[str, dict[int, float]] = {}
    for name, by_severity in imagenet_c_folders(Path(args.data_path)).items():
        for severity, folder in by_severity.items():
            dataset = ood_folder(folder, wnids, transform, f"imagenet-c {name}/{severity}")
            loader = make_loader(dataset, args.batch_size, args.num_workers, device)
            errors.setdefault(name, {})[severity] = top1_error(model, loader, device)[0]
            _progress(name, severity, errors[name][severity])
    scores = alexnet_scores(errors)
    print(corruption_table(errors, scores))
    if scores["mce"] is not None:
        print(f"{info['weights']} on imagenet-c: mCE {scores['mce']:.2f} over {scores['mce_corruptions']} of "
              f"{len(CORRUPTIONS)} corruptions")
    result = {"data_set": "imagenet-c", "checkpoint": info["weights"], "errors": errors, **scores}
    _write_results(args, result, "imagenet-c", errors)
    return 0


def _run_corrupt(args, pairs: list[tuple[str, int]], baseline: Optional[str]) -> int:
    from ..train.build import eval_loader
    from ..train.commands import config_from_args
    from ..train.distributed import cleanup_distributed
    from ..train.evaluation import evaluate
    from ..train.checkpoint_eval import evaluation_setup

    config, checkpoint = config_from_args(args, evaluating=True)
    reference = _baseline(baseline) if baseline else None
    try:
        model, val_set, info = evaluation_setup(config, checkpoint)

        def measure(name: Optional[str], severity: int = 0) -> dict:  # each process scores its shard
            dataset = CorruptedDataset(val_set, name, severity or 1, seed=int(config["seed"]))
            return evaluate(model, eval_loader(dataset, config, info), info)

        clean = measure(None)
        errors: dict[str, dict[int, float]] = {}
        entropy: dict[str, dict[int, Optional[float]]] = {}
        for name, severity in pairs:
            metrics = measure(name, severity)
            errors.setdefault(name, {})[severity] = 100.0 - metrics["top1"]
            entropy.setdefault(name, {})[severity] = metrics["entropy"]
            if info.is_main:
                _progress(name, severity, errors[name][severity])
    finally:
        cleanup_distributed()
    if not info.is_main:
        return 0
    clean_error = 100.0 - clean["top1"]
    scores = baseline_scores(errors, clean_error, reference["errors"], reference["clean_error"], baseline) \
        if reference else None
    print(f"{config['weights']} on {config['data_set']} ({clean['images']} images), seed {config['seed']}: "
          f"clean top-1 error {clean_error:.2f}%")
    print(corruption_table(errors, scores))
    result = {"data_set": config["data_set"], "checkpoint": str(config["weights"]), "seed": int(config["seed"]),
              "clean_error": clean_error, "clean_entropy": clean["entropy"], "errors": errors, "entropy": entropy,
              **(scores or {})}
    vars(args).update(output_dir=config.get("output_dir"), json=config.get("json"))
    _write_results(args, result, "corruption", errors)
    return 0


def _progress(name: str, severity: int, error: float) -> None:
    print(f"  {name}:{severity} top-1 error {error:.2f}%", file=sys.stderr, flush=True)


def _baseline(source: str) -> dict:
    """The errors of an earlier ``--corrupt`` evaluation: its JSON file, or the folder holding corruption.json."""
    path = Path(source).expanduser()
    path = path / "corruption.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text())
        errors = {name: {int(s): float(e) for s, e in row.items()} for name, row in data["errors"].items()}
        return {"errors": errors, "clean_error": float(data["clean_error"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SarvitError(f"--baseline {source}: expected the corruption.json of a `sarvit eval --corrupt` run "
                          f"(or its folder), could not read {path} ({type(error).__name__}: {error})") from None


def _write_results(args, result: dict, stem: str, errors: Optional[dict] = None) -> None:
    path = write_json(result, _json_path(args, f"{stem}.json"))
    print(f"wrote {path}")
    if errors:
        title = f"{Path(str(result['checkpoint'])).name} on {result['data_set']}"
        if result.get("mce") is not None:
            title += f": mCE {result['mce']:.1f}"
        print(f"wrote {save_heatmap(errors, title, path.with_suffix('.png'))}")


def run_eval(args: argparse.Namespace) -> int:
    """`sarvit eval`: ``--ood`` or ``--corrupt`` here, anything else the classic evaluation (``sarvit.train``)."""
    given = vars(args)
    ood, corrupt, baseline = (given.pop(key, None) for key in ("ood", "corrupt", "baseline"))
    if ood and corrupt:
        raise SarvitError("give --ood SET (a published out-of-distribution set) or --corrupt NAME (your data set, "
                          "corrupted), not both")
    if baseline and not corrupt:
        raise SarvitError("--baseline compares --corrupt evaluations: give --corrupt too")
    if corrupt:
        return _run_corrupt(args, parse_corruptions(corrupt), baseline)
    if ood:
        if not given.get("data_path"):
            raise SarvitError(f"--ood {ood}: expected the set's folder with --data-path")
        for key, value in defaults("eval").items():
            given.setdefault(key, value)
        given["ood"] = ood
        return _run_imagenet_c(args) if ood == "imagenet-c" else _run_subset(args)
    from ..train.commands import run_eval as run_classic_eval

    return run_classic_eval(args)
