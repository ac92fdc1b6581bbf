"""Two processes on CPU (gloo) under torchrun train one model (and DRLoc's head), and evaluate the whole set once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from sarvit.cli import main
from test_train_common import one_cpu_thread, state_equal  # noqa: F401 (autouse fixture)

SCRIPT = """
import os, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_train_common import config_of, tiny_argv
from sarvit.train import train
config = config_of(*tiny_argv({out!r}, "--epochs", "2", "--repeated-aug", "--drop-path", "0.1", "--mixup", "0.5",
                              "--reg", "drloc"))
result = train(config)
rank = int(os.environ["RANK"])
torch.save(result.model.state_dict(), os.path.join({out!r}, f"rank{{rank}}.pt"))
torch.save(result.regularizers.state_dict(), os.path.join({out!r}, f"rank{{rank}}-regularizers.pt"))
"""


def test_two_process_gloo_run_trains_one_model(tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert state_equal(rank0, rank1)
    checkpoint = torch.load(out / "last.pth", weights_only=True)
    assert state_equal(checkpoint["model"], rank0) and len(checkpoint["rng"]) == 2
    # DRLoc's head (initialised from each rank's own seed) is synchronised and trained as one with the model
    heads = [torch.load(out / f"rank{rank}-regularizers.pt", weights_only=True) for rank in (0, 1)]
    assert heads[0] and state_equal(*heads) and state_equal(checkpoint["regularizers"], heads[0])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and not (out / "rank1").exists()
    # distributed evaluation saw every image once: a single process gets the same figures
    single = tmp_path / "single.json"
    assert main(["eval", "--weights", str(out / "last.pth"), "--json", str(single), "--num-workers", "0"]) == 0
    metrics = json.loads(single.read_text())
    assert metrics["top1"] == log[-1]["val_top1"] and metrics["images"] == 19
    assert abs(metrics["loss"] - log[-1]["val_loss"]) < 1e-5
