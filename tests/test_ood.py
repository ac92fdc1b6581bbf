"""`sarvit eval --ood imagenet-a|imagenet-c`: trees in the sets' public layouts, the 200-class mapping, the mCE."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import sarvit
from sarvit.analysis.corruption_scores import ALEXNET_ERRORS, alexnet_scores, baseline_scores
from sarvit.analysis.ood import class_subset
from sarvit.cli import main
from sarvit.data.corruptions import CORRUPTIONS

EVAL = ["--num-workers", "0", "--device", "cpu", "--batch-size", "4"]


def _image(path, seed, size=40):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _imagenet_checkpoint(tmp_path, write_model_checkpoint, favourite: int, decoy: int):
    """A 1000-class model that predicts ``decoy`` over everything, then ``favourite``: with the 200-class subset
    of ImageNet-A the decoy (not among them) is out of the race and every image is called ``favourite``."""
    model = sarvit.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=1000)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[decoy], model.head.bias[favourite] = 10.0, 5.0
    return write_model_checkpoint(tmp_path / "in1k.pth", model)


def test_imagenet_a_and_r_class_lists_point_into_imagenet_1k():
    imagenet, _ = class_subset("imagenet-1k")
    for name in ("imagenet-a", "imagenet-r"):
        wnids, indices = class_subset(name)
        assert len(wnids) == len(indices) == 200 and [imagenet[i] for i in indices] == wnids
    wnids, indices = class_subset("imagenet-a")
    assert (wnids[0], indices[0], wnids[-1], indices[-1]) == ("n01498041", 6, "n12267677", 988)


def test_imagenet_a_is_scored_on_its_200_classes(tmp_path, write_model_checkpoint, capsys):
    wnids, indices = class_subset("imagenet-a")
    root = tmp_path / "imagenet-a"
    picked = (0, 57, 199)  # three of the 200 folders; images per folder: 1, 2, 3
    for count, position in enumerate(picked, start=1):
        for index in range(count):
            _image(root / wnids[position] / f"{index}.jpg", seed=10 * position + index)
    # every image is called wnids[57] (ImageNet index indices[57]) once the decoy class 0 (a tench) is set aside
    weights = _imagenet_checkpoint(tmp_path, write_model_checkpoint, favourite=indices[57], decoy=0)
    assert 0 not in indices
    assert main(["eval", "--weights", str(weights), "--ood", "imagenet-a", "--data-path", str(root), *EVAL]) == 0
    out = capsys.readouterr().out
    assert "6 images, 3 of 200 classes" in out and "top-1 33.33%" in out
    result = json.loads((tmp_path / "imagenet-a.json").read_text())
    assert result["top1"] == pytest.approx(100 * 2 / 6) and result["images"] == 6


def _hand_ce(errors_by_severity: list[float], name: str) -> float:
    return 100 * (sum(errors_by_severity) / 5 / 100) / ALEXNET_ERRORS[name]


def test_imagenet_c_tree_errors_ce_and_mce(tmp_path, write_model_checkpoint, capsys):
    imagenet, _ = class_subset("imagenet-1k")
    right, wrong = imagenet[1], imagenet[2]  # the model calls every image imagenet[1] (a goldfish)
    root = tmp_path / "imagenet-c"
    # severity s of a full corruption: 1 image it gets right and s it gets wrong -> error s / (s + 1)
    layout = {"gaussian_noise": (1, 2, 3, 4, 5), "fog": (1, 2, 3, 4, 5), "pixelate": (1, 2, 3, 4, 5),
              "snow": (2, 4), "speckle_noise": (1, 2, 3, 4, 5)}
    for name, severities in layout.items():
        for severity in severities:
            _image(root / name / str(severity) / right / "0.JPEG", seed=severity, size=32)
            for index in range(severity):
                _image(root / name / str(severity) / wrong / f"{index}.JPEG", seed=100 + index, size=32)
    weights = _imagenet_checkpoint(tmp_path, write_model_checkpoint, favourite=1, decoy=1)
    assert main(["eval", "--weights", str(weights), "--ood", "imagenet-c", "--data-path", str(root), *EVAL]) == 0
    out = capsys.readouterr().out
    errors = [100 * s / (s + 1) for s in (1, 2, 3, 4, 5)]
    hand = {name: _hand_ce(errors, name) for name in ("gaussian_noise", "fog", "pixelate")}
    hand_mce = (hand["gaussian_noise"] + hand["fog"] + hand["pixelate"]) / 3
    # by hand: errors 50, 66.7, 75, 80, 83.3 (mean 71.0); CE = 71.0 / 0.886428, 71.0 / 0.819324, 71.0 / 0.717840
    assert hand_mce == pytest.approx((71.0 / 0.886428 + 71.0 / 0.819324 + 71.0 / 0.717840) / 3, abs=0.01)
    result = json.loads((tmp_path / "imagenet-c.json").read_text())
    assert result["errors"]["fog"] == {str(s): pytest.approx(e) for s, e in zip((1, 2, 3, 4, 5), errors)}
    assert result["errors"]["snow"] == {"2": pytest.approx(100 * 2 / 3), "4": pytest.approx(80.0)}
    for name, value in hand.items():
        assert result["ce"][name] == pytest.approx(value)
    assert result["ce"]["snow"] is None and result["ce"]["speckle_noise"] is None  # partial; no AlexNet constant
    assert result["mce"] == pytest.approx(hand_mce) and result["mce_corruptions"] == 3
    assert f"mCE {hand_mce:.2f} over 3 of 15 corruptions" in out
    png = tmp_path / "imagenet-c.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(png).size[1] > 100


def test_mce_of_a_full_table_matches_the_hand_sum():
    errors = {name: {s: 10.0 * s for s in range(1, 6)} for name in CORRUPTIONS}  # mean 30 everywhere
    scores = alexnet_scores(errors)
    assert scores["mce_corruptions"] == 15
    assert scores["mce"] == pytest.approx(sum(30.0 / ALEXNET_ERRORS[name] for name in CORRUPTIONS) / 15)
    assert scores["mce"] == pytest.approx(38.8035, abs=1e-3)  # 30 * mean(1 / E_AlexNet), by hand


def test_baseline_scores_are_the_ratio_of_sums_and_refuse_unmeasured_pairs():
    ours = {"fog": {1: 20.0, 3: 40.0}, "contrast": {2: 30.0}}
    theirs = {"fog": {1: 30.0, 3: 50.0}, "contrast": {2: 30.0, 5: 90.0}}
    scores = baseline_scores(ours, 10.0, theirs, 10.0, "b.json")
    assert scores["ce"] == {"fog": pytest.approx(75.0), "contrast": pytest.approx(100.0)}  # 60/80, 30/30
    assert scores["relative_ce"] == {"fog": pytest.approx(100 * 40 / 60), "contrast": pytest.approx(100.0)}
    assert scores["mce"] == pytest.approx(87.5)
    with pytest.raises(sarvit.SarvitError, match="no error for fog:3"):
        baseline_scores(ours, 10.0, {"fog": {1: 30.0}, "contrast": {2: 30.0}}, 10.0, "b.json")


def test_ood_input_errors_are_one_line(tmp_path, write_model_checkpoint, capsys):
    model = sarvit.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=10)
    weights = write_model_checkpoint(tmp_path / "ten.pth", model)
    (tmp_path / "in-a" / "n01498041").mkdir(parents=True)
    assert main(["eval", "--weights", str(weights), "--ood", "imagenet-a", "--data-path", str(tmp_path / "in-a"),
                 *EVAL]) == 2
    assert "expected an ImageNet-1k classifier (1000 classes)" in capsys.readouterr().err
    weights = _imagenet_checkpoint(tmp_path, write_model_checkpoint, favourite=6, decoy=0)
    (tmp_path / "in-a" / "cats").mkdir()
    assert main(["eval", "--weights", str(weights), "--ood", "imagenet-a", "--data-path", str(tmp_path / "in-a"),
                 *EVAL]) == 2
    assert "found cats" in capsys.readouterr().err
    assert main(["eval", "--weights", str(weights), "--ood", "imagenet-c", "--data-path", str(tmp_path / "in-a"),
                 *EVAL]) == 2
    assert "expected <corruption>/<severity>/<wnid>/" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--weights", str(weights), "--ood", "imagenet-x"])
