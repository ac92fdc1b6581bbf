"""`sarvit train` and `sarvit eval`: resolve the configuration, hand over to :mod:`.runner`.

Their options are rows of :mod:`sarvit.options`; :mod:`sarvit.cli` parses them and calls :func:`run_train`
or :func:`run_eval` with the namespace of what the user typed.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Optional

from ..checkpoints import FORMAT, load_checkpoint, resolve_checkpoint_path, stored_spec
from ..errors import SarvitError
from .config import ARCH_KEYS, INVOCATION_KEYS, resolve_run, stored_layer
from .distributed import cleanup_distributed

__all__ = ["run_train", "run_eval", "config_from_args"]

# Keys of a stored run configuration that a resumed run does not take over (it must not load weights again).
_RUN_KEYS = (*INVOCATION_KEYS, "finetune", "weights")


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {key: value for key, value in vars(args).items() if key not in ("run", "command")}


def config_from_args(args: argparse.Namespace, evaluating: bool = False) -> tuple[dict[str, Any], Optional[dict]]:
    """The resolved configuration, and the checkpoint it continues (``--resume``) or evaluates (``--weights``).

    Prints (rank 0) the lines the resolution notes: the recipe and why it was chosen, options it ignores.

    Resuming a sarvit checkpoint starts from the configuration stored in it, so ``sarvit train
    --resume out/last.pth`` continues the run as it was; options given now override it. Evaluating one
    does the same (its data set and model). ``--finetune`` / ``--weights`` in ``train`` bring the
    checkpoint's architecture where the user names no ``--model``.
    """
    cli = _given(args)
    if evaluating and "resume" in cli:  # `sarvit train --eval --resume CKPT`, the reference code's evaluation
        cli["weights"] = cli.pop("resume")
    checkpoint, base, inherit = None, None, None
    continued = cli.get("weights") if evaluating else cli.get("resume")
    if continued:
        checkpoint = load_checkpoint(continued)
        if checkpoint.get("format") == FORMAT:
            stored = checkpoint.get("config")
            if not isinstance(stored, dict):
                raise SarvitError(f"{continued}: the checkpoint's 'config' should be the run's options (a dict), "
                                  f"found {type(stored).__name__}")
            base = stored_layer({k: v for k, v in stored.items() if k not in _RUN_KEYS},
                                f"{continued} (the options stored in the checkpoint)")
            if not evaluating:  # the run continues where its checkpoint is now (moved or not, any working folder)
                base["output_dir"] = str(resolve_checkpoint_path(continued).parent.absolute())
    start = None if evaluating else cli.get("finetune") or cli.get("weights")
    if start and "model" not in cli:  # train the architecture the weights belong to
        source = load_checkpoint(start)
        if source.get("format") == FORMAT:
            inherit = {k: source["config"][k] for k in ARCH_KEYS if k in source.get("config", {})}
    if evaluating and checkpoint is not None:
        _refuse_unhonoured(cli, checkpoint, continued)
    config, notes = resolve_run(cli, base, inherit, training=not evaluating)
    if int(os.environ.get("RANK", "0")) == 0:
        for line in notes:
            print(line, flush=True)
    return config, checkpoint


def _refuse_unhonoured(cli: dict[str, Any], checkpoint: dict, path: str) -> None:
    """A sarvit checkpoint rebuilds its own model: an architecture or SAR option given to ``eval`` that differs
    from it cannot be honoured, and is refused rather than ignored."""
    spec = stored_spec(checkpoint)
    if spec is None:
        return
    stored = {"model": spec.name, "input_size": spec.input_size,
              **{key: spec.timm_kwargs.get(key) for key in ("patch_size", "depth", "embed_dim", "num_heads")}}
    removals = ("remove_last_skip", "remove_last_norm")
    for key in removals:
        stored[key] = bool(spec.sar.get(key))
    if "sar" in cli or cli.get("use_nosn"):
        wanted = bool(cli.get("sar", True)) or bool(cli.get("use_nosn"))
        cli = {**{key: wanted for key in removals}, **cli}
    differ = [f"--{key.replace('_', '-')} {cli[key]} (it has {stored[key]})" for key in stored
              if key in cli and cli[key] is not None and cli[key] != stored[key]]
    if differ:
        raise SarvitError(f"--weights {path} rebuilds the model it was trained as, so {', '.join(differ)} cannot "
                          "apply; leave these options out (to train another model from these weights use "
                          "`sarvit train --finetune`)")


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
            top5 = "" if last.get("val_top5") is None else f", top-5 {last['val_top5']:.2f}%"
            print(f"final: val top-1 {last['val_top1']:.2f}%{top5} (epoch {last['epoch'] + 1}); "
                  f"best top-1 {result.best_top1:.2f}% (epoch {result.best_epoch + 1})")
        print(f"wrote {result.output_dir}/")
        for name, path in result.paths.items():
            if isinstance(path, list):  # the attention pictures, one per drawn epoch
                shown = ", ".join(item.name for item in path)
                path = f"{path[0].parent}/ {shown}"
            print(f"  {name:<12}{path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .checkpoint_eval import evaluate_checkpoint

    config, checkpoint = config_from_args(args, evaluating=True)
    try:
        metrics = evaluate_checkpoint(config, checkpoint)
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{metrics['checkpoint']} on {metrics['data_set']} ({metrics['images']} images): "
              f"top-1 {metrics['top1']:.2f}%" + ("" if metrics["top5"] is None else f"  top-5 {metrics['top5']:.2f}%")
              + f"  loss {metrics['loss']:.4f}"
              + (f"  spatial entropy {metrics['entropy']:.4f}" if metrics["entropy"] is not None else "")
              + (f"  attention Jaccard {metrics['jaccard']:.1f}%" if "jaccard" in metrics else ""))
        if config.get("json"):
            print(f"wrote {config['json']}")
    return 0

