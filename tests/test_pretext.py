"""Rotation pretext (ARViT thesis §4.1): the four rotations and their labels, pixel for pixel."""
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset
from torchvision.transforms.functional import pil_to_tensor

from sarvit import SarvitError
from sarvit.data import ROTATIONS, RotationPretext, pretext_dataset, rotate

# PIL's own counter-clockwise rotations: an independent reference for k * 90 degrees.
PIL_ROTATIONS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


def asymmetric_image(height=3, width=3):
    """Every pixel different, in every channel: no rotation maps the image onto itself or another rotation."""
    return torch.arange(3 * height * width, dtype=torch.uint8).reshape(3, height, width)


def pil_rotated(image: torch.Tensor, k: int) -> torch.Tensor:
    picture = Image.fromarray(image.permute(1, 2, 0).numpy())
    if PIL_ROTATIONS[k] is not None:
        picture = picture.transpose(PIL_ROTATIONS[k])
    return pil_to_tensor(picture)


def test_four_rotations_and_labels_pixel_for_pixel():
    first, second = asymmetric_image(), asymmetric_image() + 100
    wrapped = RotationPretext(TensorDataset(torch.stack([first, second]), torch.tensor([7, 9])))
    assert len(wrapped) == 8 and wrapped.num_classes == ROTATIONS == 4
    for index in range(len(wrapped)):
        image, label = wrapped[index]
        source, k = divmod(index, 4)
        assert label == k  # the data set's own labels (7, 9) are gone
        assert torch.equal(image, pil_rotated((first, second)[source], k)), f"item {index}"
    # a 2x2 written out by hand: 90 degrees counter-clockwise moves the top-right pixel to the top-left
    square = torch.tensor([[[1, 2], [3, 4]]])
    assert rotate(square, 1).tolist() == [[[2, 4], [1, 3]]]
    assert rotate(square, 2).tolist() == [[[4, 3], [2, 1]]]
    assert rotate(square, 3).tolist() == [[[3, 1], [4, 2]]]


def test_non_square_images_are_cropped_to_their_centred_square():
    wide = torch.arange(2 * 3 * 5).reshape(2, 3, 5)  # [C, H=3, W=5]: the centred square is columns 1..3
    rotations = [rotate(wide, k) for k in range(4)]
    assert all(rotation.shape == (2, 3, 3) for rotation in rotations)
    assert torch.equal(rotations[0], wide[:, :, 1:4])
    assert torch.equal(rotations[1], torch.rot90(wide[:, :, 1:4], 1, dims=(1, 2)))


def test_masks_are_dropped_and_bad_items_say_what_was_expected():
    with_masks = [(asymmetric_image(), 3, torch.ones(3, 3, dtype=torch.bool))]
    image, label = RotationPretext(with_masks)[2]
    assert label == 2 and torch.equal(image, pil_rotated(asymmetric_image(), 2))
    with pytest.raises(SarvitError, match="expected an image tensor"):
        RotationPretext([(Image.new("RGB", (4, 4)), 0)])[0]
    with pytest.raises(IndexError):
        RotationPretext(with_masks)[4]
    with pytest.raises(SarvitError, match="unknown pretext task 'jigsaw'"):
        pretext_dataset("jigsaw", with_masks)
