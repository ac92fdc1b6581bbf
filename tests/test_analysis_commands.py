"""`sarvit segment-eval | visualize | analyze` end to end on a tiny model, the built-in data and a tiny VOC tree."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import sarvit
from sarvit import SarvitError
from sarvit.analysis import upsample_maps
from sarvit.checkpoints import load_model
from sarvit.cli import main, parse_args
from sarvit.metrics import jaccard, mass_threshold

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5)
FAST = ["--num-workers", "0", "--device", "cpu"]


def run(argv):
    args = parse_args(argv)
    return args.run(args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, write_model_checkpoint):
    """A checkpoint of a tiny SAR model, written as `sarvit train` writes them."""
    torch.manual_seed(0)
    model = sarvit.create_model("vit_tiny_patch16_224", **TINY).eval()
    return write_model_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pth", model, epoch=0)


def test_reference_spellings_parse(checkpoint, tmp_path):
    args = parse_args(["segment-eval", "--pretraining", "supervised", "--pretrained_weights", str(checkpoint),
                       "--voc_path", str(tmp_path), "--output_dir", str(tmp_path)])
    assert args.weights == str(checkpoint) and args.data_path == str(tmp_path) and args.pretraining == "supervised"
    assert args.threshold == 0.6 and args.data_set == "voc"  # --voc_path DIR is --data-set voc --data-path DIR
    args = parse_args(["visualize", "--pretraining", "supervised", "--pretrained_weights", str(checkpoint),
                       "--test-dir", str(tmp_path), "--output_dir", str(tmp_path)])
    assert args.test_dir == [str(tmp_path)]
    args = parse_args(["analyze", "--weights", str(checkpoint), "--data_set", "synthetic", "--batch_size", "4"])
    assert args.weights == str(checkpoint) and args.data_set == "synthetic" and args.batch_size == 4
    for wrong in (["--pretrained_weights", "x", "--pretraining", "dino"],
                  ["--resume", "x"]):  # --resume continues a training run; it is not an analysis option
        with pytest.raises(SystemExit):
            parse_args(["segment-eval", *wrong])


def test_segment_eval_synthetic(checkpoint, tmp_path, capsys):
    assert run(["segment-eval", "--weights", str(checkpoint), "--data-set", "synthetic", "--num-samples", "12",
                "--batch-size", "5", "--output_dir", str(tmp_path), *FAST]) == 0
    out = capsys.readouterr().out
    assert "Jaccard (best head per image, mean over 12 images)" in out
    result = json.loads((tmp_path / "segment_eval.json").read_text())
    assert result["images"] == 12 and len(result["per_image"]) == 12 and len(result["per_head"]) == 3
    assert 0.0 <= result["jaccard"] <= 1.0 and result["jaccard_percent"] == pytest.approx(100 * result["jaccard"])
    assert result["jaccard"] >= max(result["per_head"]) - 1e-9  # best head per image beats any fixed head
    assert result["jaccard"] == pytest.approx(np.mean([row["jaccard"] for row in result["per_image"]]))
    assert result["model"]["source"] == "checkpoint"


@pytest.mark.parametrize("masks", ["SegmentationObject", "SegmentationClass"])
def test_segment_eval_voc_tree(checkpoint, tmp_path, capsys, masks, data_writers):
    ids = data_writers.voc_objects(tmp_path / "data")
    if masks == "SegmentationClass":  # a download with class masks only
        import shutil

        shutil.rmtree(tmp_path / "data" / "VOCdevkit" / "VOC2012" / "SegmentationObject")
    json_path = tmp_path / "out" / "voc.json"
    assert run(["segment-eval", "--pretraining", "supervised", "--pretrained_weights", str(checkpoint),
                "--voc_path", str(tmp_path / "data"), "--json", str(json_path), "--batch-size", "2", *FAST]) == 0
    result = json.loads(json_path.read_text())
    assert result["images"] == 3 and [row["id"] for row in result["per_image"]] == ids
    assert result["dataset"].startswith("voc (val)")

    # The same numbers computed independently: pixel-level IoU of the upsampled thresholded maps,
    # with the masks decoded here (void 255 ignored, any object label is foreground).
    model, _ = load_model(checkpoint, "cpu")
    voc = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from torchvision.transforms import functional as TF

    for row, image_id in zip(result["per_image"], ids):
        # evaluation's fit: shorter side to 32, centre crop (the photos are 40x48, 36x36 and 50x30)
        image = TF.center_crop(TF.resize(Image.open(voc / "JPEGImages" / f"{image_id}.jpg").convert("RGB"), 32), 32)
        label_image = Image.open(voc / masks / f"{image_id}.png")
        labels = np.asarray(TF.center_crop(TF.resize(label_image, 32, TF.InterpolationMode.NEAREST), 32))
        x = TF.normalize(TF.to_tensor(image), IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)[None]
        with torch.no_grad():
            _, _, A = model(x, return_maps=True, return_attention=True)
        pred = upsample_maps(mass_threshold(A, 0.6), 32)[0]  # [H, 32, 32]
        valid = torch.from_numpy(labels != 255)
        fg = torch.from_numpy((labels != 0) & (labels != 255))
        ious = jaccard(pred, fg.expand_as(pred), valid.expand_as(pred))
        assert row["jaccard"] == pytest.approx(ious.max().item(), abs=1e-6)
        assert row["best_head"] == int(ious.argmax())


def test_segment_eval_errors(checkpoint, tmp_path):
    with pytest.raises(SarvitError, match="VOC 2012 layout"):
        run(["segment-eval", "--weights", str(checkpoint), "--voc_path", str(tmp_path), *FAST])
    with pytest.raises(SarvitError, match="--data-set"):
        run(["segment-eval", "--weights", str(checkpoint), "--data-set", "cifar10", *FAST])
    with pytest.raises(SarvitError, match="does not exist"):
        run(["segment-eval", "--weights", str(tmp_path / "missing.pth"), *FAST])
    with pytest.raises(SarvitError, match="--threshold"):
        run(["segment-eval", "--weights", str(checkpoint), "--threshold", "1.5", *FAST])


def test_visualize_test_dir(checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(images / "cat.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(images / "dog.png")
    (images / "notes.txt").write_text("not an image")
    single = tmp_path / "bird.png"
    Image.fromarray(rng.integers(0, 256, (33, 33, 3), dtype=np.uint8)).save(single)
    out = tmp_path / "pictures"
    assert run(["visualize", "--pretrained_weights", str(checkpoint), "--test-dir", str(images), str(single),
                "--output_dir", str(out), "--dpi", "50", *FAST]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["bird_attention.png", "cat_attention.png", "dog_attention.png"]
    for name in written:
        with Image.open(out / name) as picture:
            picture.load()
            assert picture.format == "PNG"
            # 3 heads -> 3 columns x (1 image row + raw row + thresholded row), 2 inches a panel, +0.4 in title
            assert picture.size == (3 * 2 * 50, int((3 * 2 + 0.4) * 50))
            colours = len(np.unique(np.asarray(picture.convert("RGB")).reshape(-1, 3), axis=0))
            assert colours > 50  # not blank


def test_visualize_built_in_images_with_masks(checkpoint, tmp_path):
    out = tmp_path / "synthetic"
    assert run(["visualize", "--weights", str(checkpoint), "--data-set", "synthetic", "--num-samples", "2",
                "--output-dir", str(out), "--dpi", "40", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["synthetic_0000_attention.png", "synthetic_0001_attention.png"]


def test_visualize_errors(checkpoint, tmp_path):
    with pytest.raises(SarvitError, match="does not exist"):
        run(["visualize", "--weights", str(checkpoint), "--test-dir", str(tmp_path / "nowhere"), *FAST])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SarvitError, match="found none"):
        run(["visualize", "--weights", str(checkpoint), "--test-dir", str(tmp_path / "empty"), *FAST])


def test_analyze_synthetic(checkpoint, tmp_path, capsys):
    json_path = tmp_path / "analyze.json"
    assert run(["analyze", "--weights", str(checkpoint), "--data-set", "synthetic", "--num-samples", "10",
                "--json", str(json_path), *FAST]) == 0
    out = capsys.readouterr().out
    assert "spatial entropy" in out and "components" in out and "mean" in out
    result = json.loads(json_path.read_text())
    assert result["images"] == 10 and [row["head"] for row in result["per_head"]] == [0, 1, 2]
    for row in result["per_head"]:
        assert row["spatial_entropy"] >= 0.0 and row["components"] >= 1.0 and 0.0 <= row["single_component"] <= 1.0


def test_analyze_voc_and_plain_state_dict(checkpoint, tmp_path, data_writers):
    """A plain state dict with --model, on the VOC tree's images."""
    data_writers.voc_objects(tmp_path / "data")
    state = torch.load(checkpoint, weights_only=True)["model"]
    torch.save(state, tmp_path / "plain.pth")
    json_path = tmp_path / "a.json"
    assert run(["analyze", "--weights", str(tmp_path / "plain.pth"), "--model", "vit_tiny_patch16_224",
                "--data-set", "voc", "--data-path", str(tmp_path / "data"), "--json", str(json_path), *FAST]) == 0
    result = json.loads(json_path.read_text())
    assert result["images"] == 3 and result["model"]["sar"] == {"remove_last_skip": True, "remove_last_norm": True}
    with pytest.raises(SarvitError, match="--model"):
        run(["analyze", "--weights", str(tmp_path / "plain.pth"), *FAST])


def test_through_the_sarvit_command(checkpoint, tmp_path, capsys):
    assert main(["analyze", "--weights", str(checkpoint), "--num-samples", "4", "--output_dir", str(tmp_path),
                     *FAST]) == 0
    assert (tmp_path / "analyze.json").is_file()
    assert main(["segment-eval", "--weights", str(tmp_path / "missing.pth"), *FAST]) == 2
    assert "does not exist" in capsys.readouterr().err
