"""`sarvit pretrain`: resolve the configuration (:mod:`.recipes`), hand over to :func:`.pretrain.pretrain`."""
from __future__ import annotations

import argparse
import os

from ...checkpoints import FORMAT, load_checkpoint
from ...errors import SarvitError
from ..distributed import cleanup_distributed
from .recipes import resolve_pretrain_config

__all__ = ["run_pretrain"]


def run_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import pretrain

    typed = {key: value for key, value in vars(args).items() if key not in ("run", "command")}
    stored = None
    if typed.get("resume"):
        checkpoint = load_checkpoint(typed["resume"])
        if checkpoint.get("format") != FORMAT or "task" not in checkpoint:
            raise SarvitError(f"--resume {typed['resume']}: not a `sarvit pretrain` checkpoint")
        stored = checkpoint["config"]
    config = resolve_pretrain_config(typed, stored)
    try:
        result = pretrain(config)
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) == 0 and result.history:
        last = result.history[-1]
        init = f" (at initialisation: {result.knn_at_init['top1']:.2f}%)" if result.knn_at_init else ""
        print(f"final: loss {last['train_loss']:.4f}, k-NN top-1 {last['knn_top1']:.2f}%{init}")
        print(f"wrote {result.output_dir}/ (last.pth: 'model' is the "
              f"{'teacher' if config['method'] == 'dino' else 'momentum encoder'}; config.yaml, log.jsonl)")
    return 0
