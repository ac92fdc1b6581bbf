"""The subcommands of ``sarvit``: each one's help, description, required options and the function that runs it.

Part of the option table (:mod:`sarvit_cli.table` joins it in); standard library only.
"""
from __future__ import annotations

from .schema import Command

__all__ = ["COMMANDS"]

COMMANDS: dict[str, Command] = {
    "train": Command(
        "train (or fine-tune, or resume) a ViT with SAR",
        "Train a timm ViT with SAR (spatial-entropy loss + last-block surgery) using DeiT's recipe. With no options: "
        "a small ViT with SAR on the built-in synthetic data set, a few minutes on a CPU (its quick defaults replace "
        "DeiT's where you give no value; see README). The reference code's spellings are accepted (--use-blob, "
        "--use-nosn, --blob-weight, --data-set, ...).",
        "sarvit.train.commands:run_train"),
    "eval": Command(
        "evaluate a checkpoint (top-1/top-5, loss, spatial entropy)",
        "Evaluate a checkpoint on a data set's evaluation split. A sarvit checkpoint rebuilds its own model and "
        "defaults to the data set it was trained on; plain timm/DeiT weights use --model and the SAR options.",
        "sarvit.analysis.ood:run_eval", required=("weights",)),
    "segment-eval": Command(
        "Jaccard of thresholded [CLS] attention with object masks (DINO's protocol)",
        "DINO's attention-segmentation protocol: per image and head, the last block's post-softmax [CLS] attention "
        "over the patches is thresholded to keep --threshold of its mass, upsampled (nearest) to the image, and "
        "compared with the ground-truth foreground (Jaccard, void pixels ignored); the best head counts per image; "
        "the mean over the set is printed and saved as JSON. Data sets with masks: synthetic (default) and voc.",
        "sarvit.analysis.commands:run_segment_eval", required=("weights",)),
    "visualize": Command(
        "PNGs of every head's attention map, raw and thresholded with its components coloured",
        "One PNG per image: the image (with the ground-truth outline when known), then for every head the raw "
        "last-block [CLS] attention (titled with the head's spatial entropy) and the --threshold-mass thresholded "
        "map with each connected component in its own colour. Images: --test-dir, or synthetic / voc with masks.",
        "sarvit.analysis.commands:run_visualize", required=("weights",)),
    "analyze": Command(
        "per-head mean spatial entropy and number of components over a dataset",
        "Per head: the mean spatial entropy (Eq. 5-8) of the last block's [CLS] similarity maps S and the mean "
        "number of 8-connected components of S > mean(S) over a dataset, as a table and JSON. A SAR model's heads "
        "are a few blobs (low entropy, few components); a plain model's are scattered.",
        "sarvit.analysis.commands:run_analyze", required=("weights",)),
    "experiment": Command(
        "run a named grid of training runs with seeds and a report",
        "Run a named grid of `sarvit train` runs (every cell x every seed), each an ordinary run folder "
        "<exp-dir>/<cell>/seed<N>/, then write report.md, results.json and PNGs into <exp-dir>. Starting the same "
        "command again reruns nothing that finished and resumes what was interrupted. Options after `--` go to "
        "every `sarvit train` run (e.g. `-- --epochs 50 --lr 1e-3`). `sarvit experiment --list` shows the grids.",
        "sarvit.experiments.commands:run_experiment",
        positional=(("name", "?", "NAME", "the grid (see --list)"),), passthrough="train_args"),
    "pretrain": Command(
        "self-supervised pretraining: DINO or MoCo-v3, with SAR's terms on top",
        "Pretrain a timm ViT without labels with DINO (student and EMA teacher, multi-crop, centring and sharpening) "
        "or MoCo-v3 (query and momentum encoders, symmetrised contrastive loss), any --reg term (--sar: SAR's "
        "spatial entropy and last-block surgery) on the student's global crops. --scale tiny trains in minutes on a "
        "CPU; --scale paper is the method's official recipe (torchrun for several GPUs). The checkpoint's 'model' is "
        "the teacher (DINO) / momentum encoder (MoCo-v3) backbone, which knn, linear-probe, segment-eval, analyze, "
        "visualize and `train --finetune` read.",
        "sarvit.train.ssl.commands:run_pretrain"),
    "knn": Command(
        "k-NN classification of frozen features (DINO's evaluation)",
        "Weighted k-NN on the L2-normalised [CLS] features of a frozen network: each evaluation image's k nearest "
        "training images (cosine similarity) vote for their class with weight exp(similarity / T). Prints top-1/"
        "top-5 and writes JSON.",
        "sarvit.analysis.knn:run_knn", required=("weights",)),
    "linear-probe": Command(
        "a linear classifier on frozen features (DINO's / MoCo-v3's linear evaluation)",
        "Train a linear classifier on the frozen network's features ([CLS] of the last --n-last-blocks blocks, "
        "after the final norm, optionally with the average-pooled patch tokens) with SGD (momentum 0.9, no weight "
        "decay) and a cosine schedule; the features are computed once, without augmentation. Prints top-1/top-5 "
        "on the evaluation split and writes JSON.",
        "sarvit.analysis.linear_probe:run_linear_probe", required=("weights",)),
    "export": Command(
        "write a checkpoint in timm's hub format (config.json, model.safetensors) and model.pth for detectors",
        "Write a sarvit checkpoint (or a run folder's last.pth) into OUT_DIR as timm's hub format: config.json "
        "(architecture, model_args, pretrained_cfg), model.safetensors, and model.pth ({\"model\": state_dict}, "
        "for detection frameworks). A SAR model is exported as sar_vit, which keeps its last-block surgery: after "
        "`import sarvit`, timm.create_model(\"local-dir:OUT_DIR\", pretrained=True) rebuilds it (features_only=True "
        "gives its feature maps). Regularizer heads (DRLoc) are not exported.",
        "sarvit.checkpoints.export:run_export",
        positional=(("source", "?", "RUN_OR_CHECKPOINT", "a sarvit checkpoint, or a run folder (its last.pth)"),
                    ("out_dir", "?", "OUT_DIR", "a new or empty folder for the export"))),
}
