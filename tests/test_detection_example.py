"""The docs' detection example (docs/examples/torchvision_detection.py) runs on an exported SAR backbone."""
import importlib.util
import math
from pathlib import Path

import torch

import sarvit
from sarvit.checkpoints.export import export_checkpoint

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "torchvision_detection.py"


def _example():
    spec = importlib.util.spec_from_file_location("torchvision_detection", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exported_sar_backbone_trains_in_torchvision_faster_rcnn(tmp_path, write_model_checkpoint):
    torch.manual_seed(0)
    model = sarvit.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=2, num_classes=10)
    export_checkpoint(write_model_checkpoint(tmp_path / "last.pth", model), tmp_path / "exported")
    example = _example()
    pyramid = example.SimpleFeaturePyramid(str(tmp_path / "exported"))
    levels = pyramid(torch.randn(2, 3, 32, 32))
    assert [tuple(level.shape) for level in levels.values()] == [(2, 64, 16, 16), (2, 64, 8, 8), (2, 64, 4, 4)]
    # the pyramid's ViT is the exported model: its last block's output, as the SAR model computes it
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        torch.testing.assert_close(pyramid.vit(x)[-1], model.forward_intermediates(x, indices=1,
                                                                                   intermediates_only=True)[-1])
    losses, detections = example.train_steps(str(tmp_path / "exported"), steps=2)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert set(detections[0]) == {"boxes", "labels", "scores"}
    boxes = detections[0]["boxes"]
    assert boxes.shape[1] == 4 and (boxes >= 0).all() and (boxes <= 32).all()
