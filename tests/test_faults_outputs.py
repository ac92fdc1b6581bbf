"""Faults that must lose nothing: links planted in a run folder, a resume from an earlier checkpoint of a finished
run, a full disk and Ctrl-C during a checkpoint write. Each leaves every file written before it byte-identical."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sarvit.checkpoints.files as files
from sarvit import SarvitError
from sarvit.checkpoints import LOCK_NAME, write_json
from sarvit.cli import main
from test_train_common import one_cpu_thread, tiny_argv  # noqa: F401 (autouse fixture)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (not the lock, which belongs to the live run, nor the temporary
    file of a write under way)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and not path.is_symlink() and path.name != LOCK_NAME and path.suffix != ".tmp"}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("name", [LOCK_NAME, "config.yaml", "curves.png", "log.jsonl"])
def test_a_link_in_the_run_folder_is_refused_and_its_target_kept(tmp_path, capsys, name):
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"do not overwrite")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / name).symlink_to(victim)
    assert main(["train", *tiny_argv(folder, "--epochs", "1")]) == 2
    err = one_line_error(capsys)
    assert f"{folder / name} is a symbolic link" in err
    assert victim.read_bytes() == b"do not overwrite" and (folder / name).is_symlink()  # the link is left as found
    assert sorted(p.name for p in folder.iterdir()) == [name]


def test_a_hard_linked_stale_lock_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"do not overwrite")
    folder = tmp_path / "run"
    folder.mkdir()
    os.link(victim, folder / LOCK_NAME)
    assert main(["train", *tiny_argv(folder, "--epochs", "1")]) == 0
    assert victim.read_bytes() == b"do not overwrite" and (folder / "last.pth").is_file()


def test_every_writer_refuses_a_link(tmp_path):
    victim = tmp_path / "precious.json"
    victim.write_text("{}")
    (tmp_path / "results.json").symlink_to(victim)
    with pytest.raises(SarvitError, match="is a symbolic link"):
        write_json({"top1": 1.0}, tmp_path / "results.json")
    assert victim.read_text() == "{}"


def test_resume_from_an_earlier_checkpoint_of_a_finished_run_needs_overwrite(tmp_path, capsys):
    folder = tmp_path / "run"
    assert main(["train", *tiny_argv(folder, "--epochs", "1")]) == 0
    shutil.copyfile(folder / "last.pth", folder / "epoch1.pth")
    assert main(["train", *tiny_argv(folder, "--epochs", "2", "--resume", str(folder))]) == 0
    before = snapshot(folder)
    capsys.readouterr()
    earlier = ["train", *tiny_argv(folder, "--epochs", "3", "--resume", str(folder / "epoch1.pth"))]
    assert main(earlier) == 2
    err = one_line_error(capsys)
    assert "holds epochs after it (last.pth at epoch 2" in err and "--overwrite" in err
    assert snapshot(folder) == before
    assert main([*earlier, "--overwrite"]) == 0
    aside = next(folder.glob("replaced-*"))
    kept = snapshot(aside)
    assert kept and all(kept[name] == before[name] for name in kept)  # the later run's files, byte for byte
    assert {"last.pth", "log.jsonl", "config.yaml"} <= set(kept)
    assert (folder / "epoch1.pth").read_bytes() == before["epoch1.pth"]
    resumed = torch.load(folder / "last.pth", weights_only=True)
    assert resumed["epoch"] == 2 and [line["epoch"] for line in resumed["history"]] == [0, 1, 2]


def test_a_resumed_run_writes_where_its_folder_is_now(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *tiny_argv("run", "--epochs", "1")]) == 0  # a relative --output-dir
    (tmp_path / "moved").mkdir()
    os.replace(tmp_path / "run", tmp_path / "moved" / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    argv = [arg for arg in tiny_argv("unused", "--epochs", "2") if arg not in ("--output-dir", "unused")]
    assert main(["train", *argv, "--resume", str(tmp_path / "moved" / "run")]) == 0
    assert torch.load(tmp_path / "moved" / "run" / "last.pth", weights_only=True)["epoch"] == 1
    assert not list(elsewhere.iterdir()) and not (tmp_path / "run").exists()


def _failing_fdopen(monkeypatch, failure: BaseException, folder: Path, on_write: int, seen: dict):
    """The ``on_write``-th atomic write into ``folder`` fails with ``failure`` halfway, after the folder is
    snapshotted into ``seen["before"]``."""
    real, count = os.fdopen, {"n": 0}

    class Failing:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(bytes(data)[: len(data) // 2])
            raise failure

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

    def fdopen(handle, mode="r", *args, **kwargs):
        file = real(handle, mode, *args, **kwargs)
        count["n"] += 1
        if count["n"] == on_write and "b" in mode:
            seen["before"] = snapshot(folder)
            return Failing(file)
        return file

    monkeypatch.setattr(files.os, "fdopen", fdopen)


@pytest.mark.parametrize("failure, code, words", [
    (OSError(errno.ENOSPC, "No space left on device"), 2, "No space left on device; the previous file is kept"),
    (KeyboardInterrupt(), 130, "interrupted"),
], ids=["disk-full", "ctrl-c"])
def test_a_checkpoint_write_that_fails_keeps_every_earlier_file(tmp_path, capsys, monkeypatch, failure, code, words):
    folder = tmp_path / "run"
    assert main(["train", *tiny_argv(folder, "--epochs", "1")]) == 0
    seen: dict = {}
    # the resumed run writes config.yaml, the log (text), then epoch 2's last.pth: the first binary write
    _failing_fdopen(monkeypatch, failure, folder, on_write=3, seen=seen)
    capsys.readouterr()
    assert main(["train", *tiny_argv(folder, "--epochs", "2", "--resume", str(folder))]) == code
    err = one_line_error(capsys)
    assert words in err
    assert seen["before"] and snapshot(folder) == seen["before"]
    assert not list(folder.glob(".*.tmp")) and not (folder / LOCK_NAME).exists()


FAKE_RUN = """
import os, pathlib, signal, sys, time
out = pathlib.Path(sys.argv[sys.argv.index("--output-dir") + 1])
def save_and_exit(signum, frame):
    time.sleep(0.5)  # a checkpoint write the experiment must wait for
    (out / "saved").write_text(str(signum))
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, save_and_exit)
signal.signal(signal.SIGINT, save_and_exit)
(out / "pid").write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
"""
EXPERIMENT = """
import sys
import sarvit.experiments.runner as runner
from sarvit.cli import main
runner.TRAIN_COMMAND = (sys.executable, sys.argv[1], "train")  # the last word: the sarvit command
sys.exit(main(sys.argv[2:]))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"  # a zombie is dead


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_experiment_stops_its_runs_and_leaves_none_behind(tmp_path, signum):
    fake, driver = tmp_path / "fake_run.py", tmp_path / "experiment.py"
    fake.write_text(FAKE_RUN)
    driver.write_text(EXPERIMENT)
    exp = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(driver), str(fake), "experiment", "jaccard", "--seeds", "2",
                               "--jobs", "2", "--exp-dir", str(exp)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(exp.glob("*/seed*/pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [int(path.read_text()) for path in exp.glob("*/seed*/pid")]
        assert len(pids) == 2, parent.communicate(timeout=5)
        before = snapshot(exp)
        parent.send_signal(signum)
        out, err = parent.communicate(timeout=60)
    finally:
        parent.kill()
    assert parent.returncode == 130 and err.strip().endswith("interrupted") and err.count("\n") == 1, err
    assert not any(_alive(pid) for pid in pids)
    saved = sorted(path.read_text() for path in exp.glob("*/seed*/saved"))
    assert saved == [str(int(signum))] * 2  # each run got the signal itself and finished its write
    assert not (exp / "results.json").exists() and not (exp / "report.md").exists()  # no report of half a grid
    after = snapshot(exp)
    assert all(after[name] == data for name, data in before.items() if not name.endswith("train.out"))
    assert len(list(exp.glob("*/seed*/pid"))) == 2  # the other two runs never started


@pytest.mark.parametrize("extra, words", [
    (("--no-sar",), "--remove-last-skip False (it has True)"),
    (("--depth", "5", "--input-size", "64"), "--input-size 64 (it has 32), --depth 5 (it has 2)"),
], ids=["no-sar", "depth-input-size"])
def test_eval_refuses_options_the_checkpoint_cannot_honour(tmp_path, capsys, extra, words):
    folder = tmp_path / "run"
    assert main(["train", *tiny_argv(folder, "--epochs", "1")]) == 0
    capsys.readouterr()
    assert main(["eval", "--weights", str(folder / "last.pth"), "--device", "cpu", "--num-workers", "0",
                 "--num-samples", "32", *extra]) == 2
    err = one_line_error(capsys)
    assert words in err and "cannot apply" in err


@pytest.mark.parametrize("command", [
    ["eval", "--device", "cpu", "--num-workers", "0", "--num-samples", "32"],
    ["segment-eval", "--device", "cpu", "--num-samples", "8"],
    ["analyze", "--device", "cpu", "--num-samples", "8"],
    ["visualize", "--device", "cpu", "--num-samples", "2"],
], ids=lambda argv: argv[0])
def test_a_checkpoint_with_nan_weights_is_refused_by_every_command(tmp_path, capsys, command):
    path = tmp_path / "nan.pth"
    torch.manual_seed(0)
    from sarvit import create_model
    from sarvit.checkpoints import write_checkpoint
    from sarvit.models import ModelSpec

    model = create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3,
                         num_classes=10)
    state = model.state_dict()
    state["head.weight"][0, 0] = float("nan")
    write_checkpoint(path, state, ModelSpec.of(model))
    assert main([command[0], "--weights", str(path), *command[1:], "--output-dir", str(tmp_path / "out")]
                if command[0] == "visualize" else [command[0], "--weights", str(path), *command[1:]]) == 2
    err = one_line_error(capsys)
    assert "hold NaN or inf values (1 tensor(s), first head.weight)" in err


@pytest.mark.parametrize("damage, words", [
    (lambda c: c.update(optimizer={"state": {}, "param_groups": [{"params": [0]}]}), "optimizer cannot be restored"),
    (lambda c: c["rng"].__setitem__(0, {"torch": "x"}), "random-number state cannot be restored"),
    (lambda c: c["history"].__setitem__(0, "epoch one"), "history should be one object per epoch"),
], ids=["optimizer", "rng", "history"])
def test_a_malformed_resume_state_is_one_line(tmp_path, capsys, damage, words):
    folder = tmp_path / "run"
    assert main(["train", *tiny_argv(folder, "--epochs", "1")]) == 0
    checkpoint = torch.load(folder / "last.pth", weights_only=True)
    damage(checkpoint)
    torch.save(checkpoint, folder / "last.pth")
    before = snapshot(folder)
    capsys.readouterr()
    assert main(["train", *tiny_argv(folder, "--epochs", "2", "--resume", str(folder))]) == 2
    assert words in one_line_error(capsys)
    assert snapshot(folder) == before
