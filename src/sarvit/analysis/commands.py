"""``sarvit segment-eval | visualize | analyze``: thin command-line layers over :mod:`sarvit.analysis`.

Their options (with the reference scripts' spellings ``--pretrained_weights``, ``--voc_path``,
``--pretraining supervised``, ``--test-dir``, ``--output_dir``, ``--data_set``) are rows of
:mod:`sarvit.options`; :mod:`sarvit.cli` parses them and calls these functions.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import SarvitError
from ..losses import spatial_entropy
from .attention import attention_maps
from .loading import load_model_for_analysis, model_image_size
from .report import HeadStatsMeter, format_head_table
from .segmentation import JaccardMeter, segmentation_jaccard

__all__ = ["run_segment_eval", "run_visualize", "run_analyze"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MASK_DATASETS = ("voc", "synthetic")
DEFAULT_SYNTHETIC_SAMPLES = 500


# --------------------------------------------------------------------------------------------- helpers
def _load(args):
    if not 0.0 < args.threshold <= 1.0:
        raise SarvitError(f"--threshold: expected a mass fraction in (0, 1], got {args.threshold}")
    if args.batch_size < 1:
        raise SarvitError(f"--batch-size: expected a positive number, got {args.batch_size}")
    model, info = load_model_for_analysis(
        args.weights, args.device, model_name=args.model, img_size=args.input_size,
        patch_size=args.patch_size, sar=True if args.use_nosn else args.sar,
    )
    print(f"loaded {info['weights']} ({info['source']}): {info['model']} {info['timm_kwargs']}, "
          f"SAR {info['sar'] or 'off'}, on {info['device']}", file=sys.stderr)
    return model, info


def _dataset_name(args) -> str:
    return args.data_set.strip().lower().replace("_", "-")


def _limit(dataset: Dataset, count: int | None) -> Dataset:
    if count is None or count >= len(dataset):
        return dataset
    if count < 1:
        raise SarvitError(f"--num-samples: expected a positive number, got {count}")
    return Subset(dataset, range(count))


def _mask_dataset(args, img_size: int, num_classes: int, default_synthetic: int) -> tuple[Dataset, str]:
    """Items ``(image, foreground, valid-or-None-marker)`` for voc / synthetic; returns ``(dataset, description)``."""
    from ..data import SyntheticObjects, VOCForeground

    name = _dataset_name(args)
    if name == "voc":
        if not args.data_path:
            raise SarvitError("--data-set voc: expected the VOC 2012 folder in --data-path (alias --voc_path)")
        dataset = VOCForeground(args.data_path, split=args.split, img_size=img_size)
        return _limit(dataset, args.num_samples), f"voc ({args.split}) at {dataset.voc_dir}"
    if name == "synthetic":
        classes = num_classes if 2 <= num_classes <= 12 else 10
        count = args.num_samples or default_synthetic
        dataset = SyntheticObjects(num_samples=count, num_classes=classes, img_size=img_size, seed=args.seed,
                                   train=False, return_mask=True)
        return _MappedItems(dataset, _as_mask_triple), f"synthetic (val, {count} images, seed {args.seed})"
    raise SarvitError(f"--data-set: expected one of {', '.join(MASK_DATASETS)} (datasets with masks), got {args.data_set!r}")


class _MappedItems(Dataset):
    """``dataset`` with ``reshape`` applied to each item (the commands need items of one shape)."""

    def __init__(self, dataset: Dataset, reshape) -> None:
        self.dataset, self.reshape = dataset, reshape

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.reshape(self.dataset[index])


def _as_mask_triple(item):
    """SyntheticObjects' ``(image, target, mask)`` -> ``(image, mask, all-valid mask)``, as VOCForeground gives."""
    image, _, mask = item
    return image, mask, torch.ones_like(mask)


def _image_only(item):
    return item[0]


def _image_ids(dataset: Dataset) -> list[str] | None:
    """The VOC image ids of the items (through a Subset), or None for datasets without ids."""
    if isinstance(dataset, Subset):
        ids = _image_ids(dataset.dataset)
        return None if ids is None else [ids[index] for index in dataset.indices]
    return getattr(dataset, "image_ids", None)


def _loader(dataset: Dataset, args, device: torch.device) -> DataLoader:
    cpus = os.cpu_count() or 1  # --num-workers is capped as in training: all CPUs, a quarter of them on a CPU device
    workers = max(0, min(args.num_workers, max(1, cpus // 4) if device.type == "cpu" else cpus))
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda")


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _write_json(payload: dict, path: Path) -> Path:
    """Atomic JSON write (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(payload, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _json_path(args, default_name: str) -> Path:
    return Path(args.json) if args.json else Path(args.output_dir or ".") / default_name


def _model_summary(info: dict) -> dict:
    return {key: info[key] for key in ("weights", "source", "model", "timm_kwargs", "sar", "device")}


# --------------------------------------------------------------------------------------------- segment-eval
def run_segment_eval(args) -> int:
    model, info = _load(args)
    device = _device(model)
    img_size = model_image_size(model)
    dataset, description = _mask_dataset(args, img_size, model.num_classes, DEFAULT_SYNTHETIC_SAMPLES)
    meter = JaccardMeter(keep=args.threshold)
    best, heads = [], []
    for images, foreground, valid in _loader(dataset, args, device):
        _, _, attention = attention_maps(model, images)
        result = meter.update(attention, foreground, valid)
        best.append(result.best)
        heads.append(result.best_head)
    summary = meter.compute()
    if not summary["count"]:
        raise SarvitError(f"{description}: expected images, found none")
    best_all, heads_all = torch.cat(best).cpu().tolist(), torch.cat(heads).cpu().tolist()
    ids = _image_ids(dataset)
    per_image = [
        {"index": index, **({"id": ids[index]} if ids is not None else {}), "jaccard": value, "best_head": head}
        for index, (value, head) in enumerate(zip(best_all, heads_all))
    ]
    payload = {
        "command": "segment-eval",
        "protocol": "DINO: per image the best head's Jaccard of the mass-thresholded, nearest-upsampled "
        "last-block [CLS] attention with the ground-truth foreground (void ignored); mean over images",
        "dataset": description,
        "threshold": args.threshold,
        "images": summary["count"],
        "jaccard": summary["jaccard"],
        "jaccard_percent": 100.0 * summary["jaccard"],
        "per_head": summary["per_head"],
        "best_head_counts": summary["best_head_counts"],
        "model": _model_summary(info),
        "per_image": per_image,
    }
    print(f"segment-eval: {description}, threshold {args.threshold:g} of the attention mass")
    print("head  mean Jaccard  best for")
    for head, (value, wins) in enumerate(zip(summary["per_head"], summary["best_head_counts"])):
        print(f"{head:>4}  {100 * value:>12.2f}  {wins:>8}")
    print(f"Jaccard (best head per image, mean over {summary['count']} images): {100 * summary['jaccard']:.2f}")
    path = _write_json(payload, _json_path(args, "segment_eval.json"))
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------- visualize
def _image_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SarvitError(f"--test-dir: expected image files ({', '.join(IMAGE_SUFFIXES)}) in {path}, found none")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise SarvitError(f"--test-dir: expected an image file or a folder, {path} does not exist")
    return files


def _png_names(files: list[Path]) -> list[str]:
    """``<stem>_attention.png`` per file; repeated stems get their position prepended."""
    stems = [file.stem for file in files]
    return [
        f"{index:04d}_{stem}_attention.png" if stems.count(stem) > 1 else f"{stem}_attention.png"
        for index, stem in enumerate(stems)
    ]


def run_visualize(args) -> int:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from PIL import Image
    from torchvision.transforms import functional as TF

    from ..data import load_rgb_image
    from .visualize import attention_figure, denormalize, save_figure

    model, info = _load(args)
    device = _device(model)
    img_size = model_image_size(model)
    mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    output_dir = Path(args.output_dir or "attention_maps")
    keep = args.threshold

    if args.test_dir:
        files = _image_files(args.test_dir)
        names = _png_names(files)

        def batches():
            for start in range(0, len(files), args.batch_size):
                chunk = files[start:start + args.batch_size]
                pictures = [load_rgb_image(file).resize((img_size, img_size), Image.BICUBIC) for file in chunk]
                tensors = torch.stack([TF.normalize(TF.to_tensor(p), mean, std) for p in pictures])
                yield tensors, None, None, [str(f) for f in chunk], names[start:start + len(chunk)]
    else:
        dataset, description = _mask_dataset(args, img_size, model.num_classes, 8)
        if args.num_samples is None and len(dataset) > 8:
            dataset = Subset(dataset, range(8))
        ids = _image_ids(dataset)
        labels = [ids[i] if ids is not None else f"{_dataset_name(args)}_{i:04d}" for i in range(len(dataset))]

        def batches():
            start = 0
            for images, foreground, valid in _loader(dataset, args, device):
                chunk = labels[start:start + len(images)]
                start += len(images)
                yield images, foreground, valid, chunk, [f"{label}_attention.png" for label in chunk]

    written = 0
    for images, foreground, valid, titles, png_names in batches():
        _, S, A = attention_maps(model, images)
        entropy = spatial_entropy(S).cpu()
        per_head = None
        if foreground is not None:
            per_head = segmentation_jaccard(A, foreground, valid, keep).per_head.cpu()
        A = A.cpu()
        for index, name in enumerate(png_names):
            title = titles[index]
            if per_head is not None:
                title += f"  (best head IoU {per_head[index].max():.2f})"
            figure = attention_figure(
                denormalize(images[index], mean, std), A[index], entropy[index], keep=keep,
                foreground=None if foreground is None else foreground[index],
                head_jaccard=None if per_head is None else per_head[index].tolist(),
                title=title,
            )
            path = save_figure(figure, output_dir / name, dpi=args.dpi)
            print(f"wrote {path}")
            written += 1
    if not written:
        raise SarvitError("visualize: expected at least one image, found none")
    print(f"{written} attention picture{'s' if written != 1 else ''} in {output_dir}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------- analyze
def _image_dataset(args, img_size: int, num_classes: int) -> tuple[Dataset, str]:
    name = _dataset_name(args)
    if name in MASK_DATASETS:
        dataset, description = _mask_dataset(args, img_size, num_classes, DEFAULT_SYNTHETIC_SAMPLES)
        return _MappedItems(dataset, _image_only), description
    from ..data import build_dataset, build_transform

    dataset, _ = build_dataset(name, args.data_path, train=False, transform=build_transform(False, img_size))
    return _MappedItems(_limit(dataset, args.num_samples), _image_only), f"{name} (eval split) at {args.data_path}"


def run_analyze(args) -> int:
    model, info = _load(args)
    device = _device(model)
    img_size = model_image_size(model)
    dataset, description = _image_dataset(args, img_size, model.num_classes)
    meter = HeadStatsMeter()
    for images in _loader(dataset, args, device):
        _, S, _ = attention_maps(model, images)
        meter.update(S)
    summary = meter.compute()
    if not summary["count"]:
        raise SarvitError(f"{description}: expected images, found none")
    print(f"analyze: {description}, {summary['count']} images; S = last-block [CLS] similarity maps, "
          "components of S > mean (8-connected)")
    print(format_head_table(summary))
    payload = {
        "command": "analyze",
        "dataset": description,
        "images": summary["count"],
        "definition": "spatial entropy of S (Eq. 5-8) and number of 8-connected components of S > mean(S), "
        "per head, averaged over images; single_component = fraction of maps that are one blob",
        "per_head": summary["per_head"],
        "mean": summary["mean"],
        "model": _model_summary(info),
    }
    path = _write_json(payload, _json_path(args, "analyze.json"))
    print(f"wrote {path}")
    return 0
