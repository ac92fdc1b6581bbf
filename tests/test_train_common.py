"""Shared helpers of the training tests (a tiny ViT on a tiny synthetic set), and a check of the helpers."""
from __future__ import annotations

import pytest
import torch

from sarvit.cli import parse_args
from sarvit.train.config import resolve_config

TINY = [
    "--model", "vit_tiny_patch16_224", "--input-size", "32", "--patch-size", "8", "--depth", "2",
    "--embed-dim", "48", "--num-heads", "3", "--num-samples", "96", "--num-classes", "4", "--batch-size", "16",
    "--epochs", "2", "--num-workers", "0", "--no-tensorboard", "--warmup-epochs", "0", "--lr", "0.02",
    "--device", "cpu", "--log-interval", "2",
]


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Tiny models run fastest on one thread, and a shared 2-core machine stalls OpenMP's second one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config_of(*argv: str, command: str = "train") -> dict:
    """The resolved configuration of ``sarvit <command> argv`` (no checkpoint is opened)."""
    given = {k: v for k, v in vars(parse_args([command, *argv])).items() if k not in ("run", "command")}
    return resolve_config(given)


def tiny_argv(output_dir, *extra: str) -> list[str]:
    return [*TINY, "--output-dir", str(output_dir), *extra]


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_config_resolves():
    config = config_of(*TINY)
    assert config["model"] == "vit_tiny_patch16_224" and config["depth"] == 2 and config["num_samples"] == 96
    assert config["sar"] and config["sar_loss"] and config["remove_last_skip"] and config["remove_last_norm"]
