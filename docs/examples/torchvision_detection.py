"""An exported SAR backbone in torchvision's Faster R-CNN, with ViTDet's simple feature pyramid.

Run: ``python docs/examples/torchvision_detection.py EXPORTED_DIR`` (a folder written by `sarvit export`).
The tests run :func:`train_steps` on the synthetic set's object boxes at 32 px (tests/test_detection_example.py).
"""
from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
import timm
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

import sarvit  # noqa: F401  (registers sar_vit with timm, so local-dir: can rebuild the SAR backbone)
from sarvit.data import SyntheticObjects


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple pyramid (Li et al. 2022, Fig. 2c): the last block's single stride-p map becomes maps at
    strides p/2, p and 2p by a transposed convolution, the identity and a max-pool; each is projected to
    ``channels`` by a 1x1 and a 3x3 convolution. No top-down path: the ViT's last map already sees the image."""

    def __init__(self, exported_dir: str, channels: int = 64) -> None:
        super().__init__()
        self.vit = timm.create_model(f"local-dir:{exported_dir}", pretrained=True, features_only=True, out_indices=1)
        width = self.vit.feature_info.channels()[-1]
        self.rescale = nn.ModuleList([nn.ConvTranspose2d(width, width, 2, stride=2), nn.Identity(),
                                      nn.MaxPool2d(2)])
        self.project = nn.ModuleList([nn.Sequential(nn.Conv2d(width, channels, 1), nn.Conv2d(channels, channels, 3,
                                                                                             padding=1))
                                      for _ in self.rescale])
        self.out_channels = channels  # what torchvision's detectors read

    def forward(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        last = self.vit(images)[-1]  # [B, C, H/p, W/p]
        return OrderedDict((str(level), project(rescale(last)))
                           for level, (rescale, project) in enumerate(zip(self.rescale, self.project)))


def detector(exported_dir: str, num_classes: int, image_size: int) -> FasterRCNN:
    """Faster R-CNN on the pyramid; the exported ViT takes exactly ``image_size`` px (its grid is fixed)."""
    backbone = SimpleFeaturePyramid(exported_dir)
    side = image_size
    anchors = AnchorGenerator(sizes=((side // 8,), (side // 4,), (side // 2,)), aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=3, sampling_ratio=2)
    mean, std = backbone.vit.pretrained_cfg["mean"], backbone.vit.pretrained_cfg["std"]
    return FasterRCNN(backbone, num_classes=num_classes + 1, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
                      min_size=side, max_size=side, image_mean=list(mean), image_std=list(std))


def synthetic_boxes(count: int, image_size: int) -> tuple[list[torch.Tensor], list[dict]]:
    """The synthetic set's images with one box each: the bounding box of the object's mask, label = shape + 1."""
    data = SyntheticObjects(num_samples=count, img_size=image_size, train=True)
    images, targets = [], []
    for index in range(count):
        pixels, mask, shape = data.render(index)
        ys, xs = np.nonzero(mask)
        box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
        images.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0)
        targets.append({"boxes": box, "labels": torch.tensor([shape + 1])})
    return images, targets


def train_steps(exported_dir: str, steps: int = 2, image_size: int = 32, count: int = 4) -> tuple[list[float], list]:
    """A few SGD steps of the detector on synthetic boxes; ``(losses, detections of the first image)``."""
    model = detector(exported_dir, num_classes=SyntheticObjects(num_samples=1).num_classes, image_size=image_size)
    images, targets = synthetic_boxes(count, image_size)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    model.train()
    losses = []
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        detections = model(images[:1])
    return losses, detections


if __name__ == "__main__":
    losses, detections = train_steps(sys.argv[1])
    print(f"losses {losses}; first image: {len(detections[0]['boxes'])} boxes")
