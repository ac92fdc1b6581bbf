"""SyntheticObjects: determinism, splits, masks aligned with objects, occlusion, balance."""
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from sarvit.data import SHAPES, SyntheticMasks, SyntheticObjects, build_mask_transform, build_transform
from sarvit.errors import SarvitError

EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def test_items_are_a_pure_function_of_seed_split_and_index():
    first = SyntheticObjects(num_samples=50, seed=7)
    second = SyntheticObjects(num_samples=50, seed=7)
    for index in (0, 13, 49):
        image_a, mask_a, target_a = first.render(index)
        image_b, mask_b, target_b = second.render(index)
        assert np.array_equal(image_a, image_b) and np.array_equal(mask_a, mask_b) and target_a == target_b
    # Reading out of order, or from a longer dataset, gives the same item.
    longer = SyntheticObjects(num_samples=500, seed=7)
    assert np.array_equal(longer.render(13)[0], first.render(13)[0])


def test_seeds_splits_and_indices_differ():
    train = SyntheticObjects(num_samples=20, seed=0, train=True)
    val = SyntheticObjects(num_samples=20, seed=0, train=False)
    reseeded = SyntheticObjects(num_samples=20, seed=1, train=True)
    for index in range(5):
        assert not np.array_equal(train.render(index)[0], val.render(index)[0])
        assert not np.array_equal(train.render(index)[0], reseeded.render(index)[0])
    assert not np.array_equal(train.render(0)[0], train.render(10)[0])  # same class, different image


def test_pil_items_and_transforms():
    dataset = SyntheticObjects(num_samples=20, img_size=48)
    image, target = dataset[4]
    assert isinstance(image, Image.Image) and image.size == (48, 48) and image.mode == "RGB"
    assert target == 4 and dataset.classes[target] == "ring"
    transformed = SyntheticObjects(num_samples=20, img_size=48, transform=build_transform(True, 32))
    assert transformed[0][0].shape == (3, 32, 32)


def test_classes_are_balanced_and_named():
    dataset = SyntheticObjects(num_samples=1003, num_classes=10)
    counts = Counter(dataset.targets)
    assert set(counts) == set(range(10)) and max(counts.values()) - min(counts.values()) <= 1
    assert dataset.classes == list(SHAPES)[:10] and len(set(dataset.classes)) == 10
    assert SyntheticObjects(num_samples=12, num_classes=12).classes[-1] == "half_disc"


def test_masks_are_bool_and_cover_the_object():
    dataset = SyntheticObjects(num_samples=200, img_size=64)
    contrasts = []
    for index in range(200):
        image, mask, _ = dataset.render(index)
        assert mask.dtype == bool and mask.shape == (64, 64)
        assert 0 < mask.sum() < 64 * 64 * 0.6
        # The object is painted in one colour family: inside the mask the image varies less than across
        # the mask boundary. Compare the mean colour inside with the ring of pixels just outside.
        pixels = image.astype(np.float32)
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
        inside = ndimage.binary_erosion(mask)
        if inside.sum() < 10 or ring.sum() < 10:
            continue
        contrasts.append(np.abs(pixels[inside].mean(0) - pixels[ring].mean(0)).sum())
        assert pixels[inside].std(0).mean() < pixels.reshape(-1, 3).std(0).mean() + 10
    # The object stands out from what surrounds it (colours are drawn to contrast with the background).
    assert np.median(contrasts) > 60


def test_occluded_objects_split_into_several_regions():
    dataset = SyntheticObjects(num_samples=300, img_size=64)
    component_counts = [ndimage.label(dataset.render(i)[1], EIGHT_CONNECTED)[1] for i in range(300)]
    split = sum(count >= 2 for count in component_counts)
    assert 0.1 * 300 < split < 0.6 * 300
    assert min(component_counts) >= 1


def test_colour_does_not_give_away_the_class():
    dataset = SyntheticObjects(num_samples=400, num_classes=4)
    mean_colours = {label: [] for label in range(4)}
    for index in range(400):
        image, mask, target = dataset.render(index)
        mean_colours[target].append(image[mask].mean(0))
    per_class = np.array([np.mean(colours, axis=0) for colours in mean_colours.values()])
    assert np.ptp(per_class, axis=0).max() < 30  # class mean colours within ~12% of the range of each other


def test_masks_dataset_gives_aligned_tensors():
    dataset = SyntheticMasks(num_samples=10, img_size=40)
    image, target, mask, valid = dataset[3]
    raw_image, raw_mask, raw_target = dataset.objects.render(3)
    assert image.shape == (3, 40, 40) and image.dtype == torch.float32
    assert mask.shape == (40, 40) and mask.dtype == torch.bool and target == raw_target
    assert torch.equal(mask, torch.from_numpy(raw_mask)) and valid.all()
    assert abs(image.mean().item()) < 3  # normalised
    # the classification set's pixels through the masks' resize-only transform (identity at 32 px)
    image32 = SyntheticMasks(num_samples=10, img_size=32)[3][0]
    resize_only = build_mask_transform(32, interpolation="bicubic")
    plain = resize_only(SyntheticObjects(num_samples=10, img_size=32, train=False)[3][0])
    torch.testing.assert_close(image32, plain)


def test_masks_dataset_resizes_image_and_mask_together():
    dataset = SyntheticMasks(num_samples=10, img_size=32, output_size=64)
    image, _, mask, valid = dataset[1]
    _, raw_mask, _ = dataset.objects.render(1)
    assert image.shape == (3, 64, 64) and mask.shape == valid.shape == (64, 64)
    assert torch.equal(mask, torch.from_numpy(raw_mask).repeat_interleave(2, 0).repeat_interleave(2, 1))


@pytest.mark.parametrize("options, message", [
    ({"num_classes": 13}, "num_classes"),
    ({"num_classes": 1}, "num_classes"),
    ({"num_samples": 0}, "num_samples"),
    ({"img_size": 8}, "img_size"),
])
def test_bad_arguments(options, message):
    with pytest.raises(SarvitError, match=message):
        SyntheticObjects(**options)


def test_index_out_of_range():
    with pytest.raises(IndexError):
        SyntheticObjects(num_samples=5)[5]
