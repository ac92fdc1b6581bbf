"""`sarvit pretrain` that SIGKILLs itself right after writing last.pth of epoch KILL_AFTER (0-based), for
tests/test_ssl_pretrain.py: ``python ssl_fault_driver.py KILL_AFTER [pretrain options]``."""
import os
import signal
import sys

import sarvit.train.ssl.pretrain as pretrain
from sarvit.cli import main


def install(kill_after: int) -> None:
    save = pretrain.save_atomic

    def save_then_die(content, path):
        written = save(content, path)
        if content["epoch"] >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return written

    pretrain.save_atomic = save_then_die


if __name__ == "__main__":
    install(int(sys.argv[1]))
    sys.exit(main(["pretrain", *sys.argv[2:]]))
