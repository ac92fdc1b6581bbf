"""`sarvit train` with one fault injected, for tests/test_faults.py: ``python fault_driver.py FAULT [train options]``.

FAULT is one of:
  none                     no fault
  between-writes:E         SIGKILL itself right after writing last.pth of an epoch >= E that is its own best,
                           i.e. between the last.pth and best.pth writes of that epoch
  inside-write:N           SIGKILL itself halfway through the N-th checkpoint write (a torn temporary file stays)
  slow-steps:S             sleep S seconds before every optimizer step (a run that holds its folder a while)
"""
import os
import signal
import sys
import time
from pathlib import Path

import torch

import sarvit.train.loop as loop
import sarvit.train.runner as runner
from sarvit.cli import main


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(fault: str) -> None:
    kind, _, value = fault.partition(":")
    if kind == "between-writes":
        save = runner.save_atomic

        def save_then_die(content, path):
            written = save(content, path)
            if Path(path).name == "last.pth" and content["best_epoch"] == content["epoch"] >= int(value):
                die()
            return written

        runner.save_atomic = save_then_die
    elif kind == "inside-write":
        real, calls = torch.save, [0]

        def torn(obj, file, *args, **kwargs):
            calls[0] += 1
            if calls[0] == int(value):
                file.write(b"PK\x03\x04 half a checkpoint")
                file.flush()
                die()
            return real(obj, file, *args, **kwargs)

        torch.save = torn
    elif kind == "slow-steps":
        step = loop._backward_and_step

        def slow(*args, **kwargs):
            time.sleep(float(value))
            return step(*args, **kwargs)

        loop._backward_and_step = slow
    elif kind != "none":
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    install(sys.argv[1])
    sys.exit(main(["train", *sys.argv[2:]]))
