"""``sarvit segment-eval | visualize | analyze``: call :mod:`sarvit.analysis` with the parsed options, print.

Their options (with the reference scripts' spellings ``--pretrained_weights``, ``--voc_path``,
``--pretraining supervised``, ``--test-dir``, ``--output_dir``, ``--data_set``) are rows of
:mod:`sarvit.options`; :mod:`sarvit.cli` parses them and calls these functions.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..checkpoints import fresh_path, load_model, write_json
from ..errors import SarvitError
from .inputs import (ImageFiles, dataset_name, image_dataset, image_files, image_ids, input_normalization, limit,
                     make_loader, mask_dataset, model_image_size, png_names)
from .report import format_head_table
from .runs import draw_attention, head_report, segmentation_report

__all__ = ["run_segment_eval", "run_visualize", "run_analyze"]

DEFAULT_SYNTHETIC_SAMPLES = 500


# --------------------------------------------------------------------------------------------- helpers
def _load(args):
    if not 0.0 < args.threshold <= 1.0:
        raise SarvitError(f"--threshold: expected a mass fraction in (0, 1], got {args.threshold}")
    model, info = load_model(args.weights, args.device, model_name=args.model, img_size=args.input_size,
                             patch_size=args.patch_size, sar=True if args.use_nosn else args.sar)
    print(f"loaded {info['weights']} ({info['source']}): {info['model']} {info['timm_kwargs']}, "
          f"SAR {info['sar'] or 'off'}, on {info['device']}", file=sys.stderr)
    return model, info


def _image_size(args, model, info) -> int:
    return model_image_size(model, args.input_size or info["input_size"])


def _data(args, model, info, default_samples: int, *, masks: bool):
    pick = mask_dataset if masks else image_dataset
    return pick(args.data_set, args.data_path, img_size=_image_size(args, model, info), num_classes=model.num_classes,
                split=args.split, num_samples=args.num_samples, seed=args.seed, default_samples=default_samples)


def _loader(dataset, args, model):
    return make_loader(dataset, args.batch_size, args.num_workers, next(model.parameters()).device)


def _output_dir(args) -> Path:
    """``--output-dir``, else the folder of the weights analysed."""
    if args.output_dir:
        return Path(args.output_dir)
    weights = Path(args.weights).expanduser()
    return weights if weights.is_dir() else weights.parent


MAX_DPI = 1200


def _json_path(args, default_name: str) -> Path:
    """``--json`` or OUTPUT_DIR/default_name; a file already there is kept and the next free name used."""
    wanted = Path(args.json) if args.json else _output_dir(args) / default_name
    if wanted.is_dir():  # not a file to keep beside: `--json /etc` must not write /etc_2
        raise SarvitError(f"--json {wanted}: expected a file name, that is a folder (e.g. {wanted / default_name})")
    path = fresh_path(wanted)
    if path != wanted:
        print(f"{wanted} exists: kept, writing {path.name} beside it", file=sys.stderr)
    return path


def _model_summary(info: dict) -> dict:
    return {key: info[key] for key in ("weights", "source", "model", "timm_kwargs", "sar", "device")}


# --------------------------------------------------------------------------------------------- commands
def run_segment_eval(args) -> int:
    model, info = _load(args)
    dataset, description = _data(args, model, info, DEFAULT_SYNTHETIC_SAMPLES, masks=True)
    summary = segmentation_report(model, _loader(dataset, args, model), args.threshold, image_ids(dataset))
    if not summary["count"]:
        raise SarvitError(f"{description}: expected images, found none")
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
        "per_image": summary["per_image"],
    }
    print(f"segment-eval: {description}, threshold {args.threshold:g} of the attention mass")
    print("head  mean Jaccard  best for")
    for head, (value, wins) in enumerate(zip(summary["per_head"], summary["best_head_counts"])):
        print(f"{head:>4}  {100 * value:>12.2f}  {wins:>8}")
    print(f"Jaccard (best head per image, mean over {summary['count']} images): {100 * summary['jaccard']:.2f}")
    print(f"wrote {write_json(payload, _json_path(args, 'segment_eval.json'))}")
    return 0


def run_visualize(args) -> int:
    model, info = _load(args)
    output_dir = Path(args.output_dir) if args.output_dir else _output_dir(args) / "attention_maps"
    if args.test_dir:
        files = image_files(args.test_dir)
        dataset, titles, names = ImageFiles(files, _image_size(args, model, info)), [str(f) for f in files], png_names(files)
    else:
        dataset, _ = _data(args, model, info, 8, masks=True)
        dataset = limit(dataset, 8) if args.num_samples is None else dataset
        ids = image_ids(dataset)
        name = dataset_name(args.data_set, args.data_path)
        titles = [ids[i] if ids is not None else f"{name}_{i:04d}" for i in range(len(dataset))]
        names = [f"{title}_attention.png" for title in titles]
    mean, std = input_normalization(dataset)

    def batches():
        start = 0
        for batch in _loader(dataset, args, model):
            images, foreground, valid = (batch, None, None) if args.test_dir else (batch[0], batch[2], batch[3])
            end = start + len(images)
            yield images, foreground, valid, titles[start:end], names[start:end]
            start = end

    if args.dpi > MAX_DPI:  # a figure of a few inches at 100000 dpi is gigapixels: refused before drawing
        raise SarvitError(f"--dpi {args.dpi}: expected at most {MAX_DPI} (pictures are a few inches wide)")
    written = draw_attention(model, batches(), output_dir, keep=args.threshold, dpi=args.dpi,
                             mean=mean, std=std)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} attention picture{'s' if len(written) != 1 else ''} in {output_dir}", file=sys.stderr)
    return 0


def run_analyze(args) -> int:
    model, info = _load(args)
    dataset, description = _data(args, model, info, DEFAULT_SYNTHETIC_SAMPLES, masks=False)
    summary = head_report(model, _loader(dataset, args, model))
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
    print(f"wrote {write_json(payload, _json_path(args, 'analyze.json'))}")
    return 0
