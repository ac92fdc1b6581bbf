"""The option rows of self-supervised pretraining (``sarvit pretrain``) and of the evaluation of frozen features
(``sarvit knn``, ``sarvit linear-probe``): the block :mod:`sarvit_cli.table` puts at the end of its one table.

``sarvit.train.ssl.recipes`` layers their defaults (table < --method/--scale recipe < command line).
"""
from __future__ import annotations

from .schema import (FEATURES, PRETRAIN, ROOM_DATA, ROOM_MODEL, ROOM_OPTIM, ROOM_RUN, ROOM_SAR, ROOM_SSL, SSL,
                            Option)
from .values import AT_LEAST_1, DEVICE, NON_NEGATIVE, POSITIVE, PROBABILITY, float_list

__all__ = ["SSL_OPTIONS"]

O = Option
SSL_OPTIONS: tuple[Option, ...] = (
    O("method", ROOM_SSL, "dino (self-distillation with multi-crop) or mocov3 (contrastive, two views)", PRETRAIN,
      default="dino", choices=("dino", "mocov3")),
    O("scale", ROOM_SSL, "tiny: a small ViT at 32 px global / 16 px local crops, minutes on a CPU; paper: ViT-S/16 "
      "at 224 / 96 px with the method's official recipe (small is tiny here)", PRETRAIN, default="tiny",
      choices=("tiny", "small", "paper")),
    O("output-dir", ROOM_RUN, "where the run goes (default: output/pretrain-<method>-<time>)", PRETRAIN,
      metavar="DIR"),
    O("resume", ROOM_RUN, "continue a pretraining run from its checkpoint (or its folder)", PRETRAIN, metavar="CKPT"),
    O("overwrite", ROOM_RUN, "start afresh in an --output-dir that holds a run (its files move aside)", PRETRAIN,
      default=False, switch=True),
    O("weights", ROOM_RUN, "the pretrained checkpoint whose frozen features are evaluated (its teacher / momentum "
      "encoder), or any sarvit or timm weights", FEATURES, aliases=("pretrained-weights", "checkpoint"),
      metavar="CKPT"),
    O("json", ROOM_RUN, "also write the results to this JSON file (default: <weights folder>/<command>.json)",
      FEATURES, metavar="FILE"),
    O("device", ROOM_RUN, "cpu, cuda or cuda:N (default: cuda when available)", SSL, metavar="DEV", within=DEVICE),
    O("seed", ROOM_RUN, "random seed", SSL, type=int, default=0, within=NON_NEGATIVE),
    O("log-interval", ROOM_RUN, "steps between progress updates and non-finite checks", PRETRAIN, type=int,
      default=50, metavar="STEPS", within=AT_LEAST_1),
    O("data-set", ROOM_DATA, "any data set sarvit reads (labels ignored for pretraining)", SSL, default="synthetic",
      aliases=("dataset",), metavar="NAME"),
    O("data-path", ROOM_DATA, "root folder of the data set", SSL, metavar="DIR"),
    O("download", ROOM_DATA, "download torchvision data sets", SSL, default=False, switch=True),
    O("num-samples", ROOM_DATA, "synthetic only: training images (evaluation: a fifth)", SSL, type=int, metavar="N",
      within=AT_LEAST_1),
    O("num-workers", ROOM_DATA, "data-loading processes per process", SSL, type=int, default=10,
      aliases=("workers", "-j"), metavar="N", within=NON_NEGATIVE),
    O("batch-size", ROOM_DATA, "images per process and step (the recipe's unless given)", SSL, type=int, default=64,
      aliases=("-b", "batch-size-per-gpu"), metavar="N", within=AT_LEAST_1),
    O("model", ROOM_MODEL, "timm ViT name (the recipe's: vit_tiny_patch16_224 reshaped / vit_small_patch16_224)",
      PRETRAIN, aliases=("arch",), metavar="NAME"),
    O("input-size", ROOM_MODEL, "global crop side (tiny 32, paper 224)", SSL, type=int,
      aliases=("global-size", "img-size"), metavar="PX", within=AT_LEAST_1),
    O("patch-size", ROOM_MODEL, "override the model's patch side", PRETRAIN, type=int, metavar="N", within=AT_LEAST_1),
    O("depth", ROOM_MODEL, "override the model's number of blocks", PRETRAIN, type=int, metavar="N",
      within=AT_LEAST_1),
    O("embed-dim", ROOM_MODEL, "override the model's width", PRETRAIN, type=int, metavar="N", within=AT_LEAST_1),
    O("num-heads", ROOM_MODEL, "override the model's number of heads", PRETRAIN, type=int, metavar="N",
      within=AT_LEAST_1),
    O("drop-path", ROOM_MODEL, "stochastic depth rate of the student / query encoder", PRETRAIN, type=float,
      default=0.1, metavar="P", within=PROBABILITY),
    O("sar", ROOM_SAR, "SAR on the student / query encoder: spatial-entropy loss (--lambda) + last-block skip and "
      "LayerNorm removal (default: off, the method alone)", PRETRAIN, switch=True, off=("no-sar",)),
    O("lambda", ROOM_SAR, "weight of the spatial-entropy loss", PRETRAIN, type=float, default=0.01,
      aliases=("blob-weight",), dest="lam", metavar="W", within=NON_NEGATIVE),
    O("reg", ROOM_SAR, "add a loss term on the student's global crops (repeatable), as `sarvit train --reg`", PRETRAIN,
      repeat=True, metavar="NAME[:WEIGHT][@BLOCK]"),
    O("epochs", ROOM_OPTIM, "epochs (pretrain: the recipe's; linear-probe: 100)", PRETRAIN + ("linear-probe",),
      type=int, default=300, metavar="N", within=AT_LEAST_1),
    O("lr", ROOM_OPTIM, "learning rate for a global batch of 256, scaled linearly to the real one (the recipe's: "
      "DINO 5e-4, MoCo-v3 1.5e-4; linear-probe 1e-3)", PRETRAIN + ("linear-probe",), type=float, default=5e-4,
      metavar="LR", within=NON_NEGATIVE),
    O("min-lr", ROOM_OPTIM, "final learning rate of the cosine schedule", PRETRAIN, type=float, default=1e-5,
      metavar="LR", within=NON_NEGATIVE),
    O("warmup-epochs", ROOM_OPTIM, "linear learning-rate warm-up epochs", PRETRAIN, type=int, default=5, metavar="N",
      within=NON_NEGATIVE),
    O("weight-decay", ROOM_OPTIM, "weight decay at the start (DINO: cosine to --weight-decay-end)", PRETRAIN,
      type=float, default=0.05, metavar="WD", within=NON_NEGATIVE),
    O("weight-decay-end", ROOM_SSL, "weight decay at the end of the cosine schedule (DINO 0.4; MoCo-v3: constant)",
      PRETRAIN, type=float, metavar="WD", within=NON_NEGATIVE),
    O("clip-grad", ROOM_OPTIM, "clip gradient norm (DINO 3.0)", PRETRAIN, type=float, metavar="NORM",
      within=POSITIVE),
    O("local-crops-number", ROOM_SSL, "DINO: local crops per image (tiny 4, paper 10 as the appendix)", PRETRAIN,
      type=int, metavar="N", within=NON_NEGATIVE),
    O("local-size", ROOM_SSL, "DINO: local crop side (tiny 16, paper 96)", PRETRAIN, type=int, metavar="PX",
      within=AT_LEAST_1),
    O("global-crops-scale", ROOM_SSL, "area range of the global crops (DINO 0.4,1; MoCo-v3 0.08,1)", PRETRAIN,
      type=float_list, metavar="MIN,MAX", within=PROBABILITY),
    O("local-crops-scale", ROOM_SSL, "DINO: area range of the local crops (0.05,0.4)", PRETRAIN, type=float_list,
      metavar="MIN,MAX", within=PROBABILITY),
    O("out-dim", ROOM_SSL, "DINO: prototypes of the head (paper 65536)", PRETRAIN, type=int, metavar="K",
      within=AT_LEAST_1),
    O("norm-last-layer", ROOM_SSL, "DINO: fix the weight norm of the head's last layer (default on)", PRETRAIN,
      switch=True, off=("no-norm-last-layer",)),
    O("freeze-last-layer", ROOM_SSL, "DINO: epochs without gradient to the head's last layer (1)", PRETRAIN,
      type=int, metavar="N", within=NON_NEGATIVE),
    O("momentum-teacher", ROOM_SSL, "DINO: the teacher's EMA momentum at the start, cosine to 1 (0.996)", PRETRAIN,
      type=float, metavar="M", within=PROBABILITY),
    O("teacher-temp", ROOM_SSL, "DINO: teacher temperature after the warm-up (0.07 for ViT-S)", PRETRAIN, type=float,
      metavar="T", within=POSITIVE),
    O("warmup-teacher-temp", ROOM_SSL, "DINO: teacher temperature at the start (0.04)", PRETRAIN, type=float,
      metavar="T", within=POSITIVE),
    O("warmup-teacher-temp-epochs", ROOM_SSL, "DINO: epochs of the teacher temperature's linear warm-up (30)",
      PRETRAIN, type=int, metavar="N", within=NON_NEGATIVE),
    O("weight-init", ROOM_MODEL, "the ViT's initialisation, one of timm's VisionTransformer modes: timm (truncated "
      "normal, std 0.02; DINO's default), moco (MoCo-v3's xavier-uniform, q/k/v each square; the mocov3 default on "
      "timm's ViT/DeiT models, other models keep timm's) or jax (timm's JAX-ViT one)", PRETRAIN,
      choices=("timm", "moco", "jax")),
    O("moco-t", ROOM_SSL, "MoCo-v3: contrastive temperature tau (0.2)", PRETRAIN, type=float, metavar="TAU",
      within=POSITIVE),
    O("moco-m", ROOM_SSL, "MoCo-v3: momentum at the start, cosine to 1 (0.99)", PRETRAIN, type=float, metavar="M",
      within=PROBABILITY),
    O("moco-dim", ROOM_SSL, "MoCo-v3: output width of projector and predictor (256)", PRETRAIN, type=int,
      metavar="D", within=AT_LEAST_1),
    O("moco-mlp-dim", ROOM_SSL, "MoCo-v3: hidden width of projector and predictor (4096)", PRETRAIN, type=int,
      metavar="D", within=AT_LEAST_1),
    O("nb-knn", ROOM_SSL, "k-NN: neighbours that vote", ("knn",), type=int, default=20, aliases=("k",),
      metavar="K", within=AT_LEAST_1),
    O("temperature", ROOM_SSL, "k-NN: temperature of the votes' weights exp(similarity / T)", ("knn",), type=float,
      default=0.07, metavar="T", within=POSITIVE),
    O("n-last-blocks", ROOM_SSL, "linear probe: concatenate the [CLS] token of this many last blocks (DINO: 4 for "
      "ViT-S)", ("linear-probe",), type=int, default=4, metavar="N", within=AT_LEAST_1),
    O("avgpool-patchtokens", ROOM_SSL, "linear probe: also concatenate the average-pooled patch tokens of the last "
      "block", ("linear-probe",), default=False, switch=True),
)
del O
