"""`--corrupt`: ImageNet-C's corruptions on any data set, seeded, with CE against a named baseline."""
import json

import numpy as np
import pytest
import torch

from sarvit import SarvitError
from sarvit.cli import main
from sarvit.data import SyntheticMasks, build_mask_transform
from sarvit.data.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, CorruptedDataset, parse_corruptions
from test_train_common import TINY, one_cpu_thread, tiny_argv  # noqa: F401 (autouse fixture)

pytest.importorskip("imagecorruptions", reason="the optional extra sarvit[corruptions] (imagecorruptions-imaug) "
                                               "is not installed; the test extra installs it")

TINY_EVAL = TINY[:TINY.index("--epochs")] + ["--num-workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def images():
    return SyntheticMasks(num_samples=3, img_size=32, transform=build_mask_transform(32))


def test_parse_corruptions():
    assert parse_corruptions("all") == [(name, s) for name in CORRUPTIONS for s in range(1, 6)]
    assert parse_corruptions("Gaussian-Noise:2, fog:1,fog:1") == [("gaussian_noise", 2), ("fog", 1)]
    assert parse_corruptions("extra") == [(name, s) for name in EXTRA_CORRUPTIONS for s in range(1, 6)]
    with pytest.raises(SarvitError, match="unknown corruption 'rain'"):
        parse_corruptions("rain:2")
    with pytest.raises(SarvitError, match="expected a severity 1-5"):
        parse_corruptions("fog:6")


@pytest.mark.parametrize("name", [*CORRUPTIONS, *EXTRA_CORRUPTIONS])
def test_each_corruption_is_seeded_and_keeps_the_items_other_fields(images, name):
    state = np.random.get_state()
    first = CorruptedDataset(images, name, 3, seed=7)[1]
    again = CorruptedDataset(images, name, 3, seed=7)[1]
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's global stream untouched
    clean = images[1]
    assert first[0].shape == clean[0].shape == (3, 32, 32) and first[0].dtype == torch.float32
    torch.testing.assert_close(first[0], again[0], rtol=0, atol=0)
    assert (first[0] - clean[0]).abs().max() > 0.05  # it did corrupt the image
    assert first[1] == clean[1] and torch.equal(first[2], clean[2])  # target and masks pass through


def test_seeds_and_indices_draw_different_noise_and_clean_is_an_8_bit_round_trip(images):
    one, other = (CorruptedDataset(images, "gaussian_noise", 2, seed=seed)[0][0] for seed in (0, 1))
    assert not torch.equal(one, other)
    dataset = CorruptedDataset(images, "gaussian_noise", 2)
    assert dataset.item_seed(0) != dataset.item_seed(1)
    clean = CorruptedDataset(images, None)[0][0]
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert ((clean - images[0][0]).abs() * std).max() <= 0.5 / 255 + 1e-6


def test_corrupt_small_images_is_refused(images):
    small = SyntheticMasks(num_samples=1, img_size=16, transform=build_mask_transform(16))
    with pytest.raises(SarvitError, match="sides >= 32"):
        CorruptedDataset(small, "fog", 1)[0]


def test_corrupt_command_is_deterministic_and_compares_with_a_baseline(tmp_path, capsys):
    run, baseline_run = tmp_path / "sar", tmp_path / "plain"
    assert main(["train", *tiny_argv(run, "--epochs", "1")]) == 0
    assert main(["train", *tiny_argv(baseline_run, "--epochs", "1", "--no-sar")]) == 0
    corrupt = ["--corrupt", "gaussian_noise:4,contrast:2", "--seed", "3", *TINY_EVAL]
    assert main(["eval", "--weights", str(baseline_run), *corrupt]) == 0
    for _ in range(2):
        assert main(["eval", "--weights", str(run), *corrupt, "--baseline", str(baseline_run)]) == 0
    out = capsys.readouterr().out
    first, second = (json.loads((run / name).read_text()) for name in ("corruption.json", "corruption_2.json"))
    assert first["errors"] == second["errors"] and first["clean_error"] == second["clean_error"]
    assert set(first["errors"]) == {"gaussian_noise", "contrast"} and first["seed"] == 3
    base = json.loads((baseline_run / "corruption.json").read_text())
    for name, severity in (("gaussian_noise", "4"), ("contrast", "2")):
        ours, theirs = first["errors"][name][severity], base["errors"][name][severity]
        assert first["ce"][name] == pytest.approx(100 * ours / theirs)
        lost = theirs - base["clean_error"]
        if lost:
            assert first["relative_ce"][name] == pytest.approx(100 * (ours - first["clean_error"]) / lost)
    assert "clean top-1 error" in out and "gaussian_noise" in out and "mCE" in out
    assert (run / "corruption.png").is_file()


def test_corrupt_command_errors(tmp_path, capsys):
    assert main(["eval", "--weights", str(tmp_path), "--corrupt", "fog:9"]) == 2
    assert "expected a severity 1-5" in capsys.readouterr().err
    assert main(["eval", "--weights", str(tmp_path), "--corrupt", "fog", "--ood", "imagenet-a"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["eval", "--weights", str(tmp_path), "--baseline", str(tmp_path)]) == 2
    assert "give --corrupt too" in capsys.readouterr().err
