"""`sarvit train` and `sarvit eval`: parse, resolve the configuration, hand over to :mod:`.runner`."""
from __future__ import annotations

import argparse
import os
from typing import Any, Optional

from .checkpoint import FORMAT, load_checkpoint
from .config import ARCH_KEYS, INVOCATION_KEYS, add_eval_options, add_train_options, resolve_config
from .distributed import cleanup_distributed

__all__ = ["register", "run_train", "run_eval", "config_from_args"]

# Keys of a stored run configuration that a resumed run does not take over (it must not fine-tune again).
_RUN_KEYS = (*INVOCATION_KEYS, "finetune")

_TRAIN_HELP = """\
Train a timm ViT with SAR (spatial-entropy loss + last-block surgery) using DeiT's recipe.
With no options: a small ViT with SAR on the built-in synthetic data set, a few minutes on a CPU.
The reference code's spellings are accepted (--use-blob, --use-nosn, --blob-weight, --data-set, ...)."""


def register(subparsers) -> None:
    """Add ``train`` and ``eval`` to the ``sarvit`` command."""
    formatter = argparse.HelpFormatter  # each option's help already states its default
    train = subparsers.add_parser("train", help="train (or fine-tune, or resume) a ViT with SAR",
                                  description=_TRAIN_HELP, formatter_class=formatter)
    add_train_options(train)
    train.set_defaults(run=run_train)
    evaluate = subparsers.add_parser(
        "eval", help="evaluate a checkpoint (top-1/top-5, loss, spatial entropy)", formatter_class=formatter,
        description="Evaluate a checkpoint on a data set's evaluation split. A sarvit checkpoint rebuilds its own "
                    "model and defaults to the data set it was trained on; plain timm/DeiT weights use --model "
                    "and the SAR options.")
    add_eval_options(evaluate)
    evaluate.set_defaults(run=run_eval)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {key: value for key, value in vars(args).items() if key not in ("run", "command")}


def config_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], Optional[dict]]:
    """The resolved configuration, and the ``--resume`` checkpoint when one was given.

    Resuming a sarvit checkpoint starts from the configuration stored in it, so ``sarvit train
    --resume out/last.pth`` continues the run as it was; options given now override it.
    """
    cli = _given(args)
    checkpoint, base, inherit = None, None, None
    if cli.get("resume"):
        checkpoint = load_checkpoint(cli["resume"])
        if checkpoint.get("format") == FORMAT:
            base = {k: v for k, v in checkpoint.get("config", {}).items() if k not in _RUN_KEYS}
    if cli.get("finetune") and "model" not in cli:  # fine-tune the architecture that was pre-trained
        source = load_checkpoint(cli["finetune"])
        if source.get("format") == FORMAT:
            inherit = {k: source["config"][k] for k in ARCH_KEYS if k in source.get("config", {})}
    return resolve_config(cli, base, inherit), checkpoint


def run_train(args: argparse.Namespace) -> int:
    if getattr(args, "eval", False):  # `main.py --eval --resume CKPT` of the reference code
        return run_eval(args)
    from .runner import train

    config, _ = config_from_args(args)
    try:
        result = train(config)
    finally:
        cleanup_distributed()
    if result.paths:
        last = result.history[-1] if result.history else {}
        if last:
            print(f"final: val top-1 {last['val_top1']:.2f}%, top-5 {last['val_top5']:.2f}% (epoch {last['epoch'] + 1}); "
                  f"best top-1 {result.best_top1:.2f}% (epoch {result.best_epoch + 1})")
        print(f"wrote {result.output_dir}/")
        for name, path in result.paths.items():
            print(f"  {name:<12}{path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .runner import evaluate_checkpoint

    config, checkpoint = config_from_args(args)
    try:
        metrics = evaluate_checkpoint(config, checkpoint)
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{metrics['checkpoint']} on {metrics['data_set']} ({metrics['images']} images): "
              f"top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  loss {metrics['loss']:.4f}  "
              f"spatial entropy {metrics['entropy']:.4f}"
              + (f"  attention Jaccard {metrics['jaccard']:.1f}%" if "jaccard" in metrics else ""))
        if config.get("json"):
            print(f"wrote {config['json']}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m sarvit.train.commands train ...` (testing without the rest of the CLI)."""
    import sys

    from ..errors import SarvitError

    parser = argparse.ArgumentParser(prog="sarvit")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SarvitError as error:
        print(f"sarvit {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
