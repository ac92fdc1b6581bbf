"""Image decoding that names the offending file when it fails, and brings every pixel format to 8-bit RGB."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import SarvitError

__all__ = ["IMAGE_SUFFIXES", "load_rgb_image"]

# The file suffixes sarvit reads as images, lower case: torchvision's ImageFolder's (which reads the folder data
# sets), so a folder's survey counts the files its data set will hold, and masks and --test-dir take the same.
IMAGE_SUFFIXES: tuple[str, ...] = IMG_EXTENSIONS

# integer modes wider than 8 bits and their full scale
_WIDE_INTEGER = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def load_rgb_image(path: Union[str, Path]) -> Image.Image:
    """Decode ``path`` as an 8-bit RGB PIL image; a missing, truncated or non-image file is a SarvitError naming it.

    Used as the ``loader=`` of the folder datasets (ImageNet, IN-100, Flowers, ``folder``) in place of
    torchvision's ``default_loader``, whose PIL error does not say which of a million files is broken.
    16-bit greyscale is scaled from 0-65535 and float images from 0-1 to 0-255 (``convert("RGB")`` would clip
    them to white or black); other ranges are refused, as are images over PIL's decompression-bomb limit.
    """
    try:
        with open(path, "rb") as file, Image.open(file) as image:
            if image.mode in _WIDE_INTEGER or image.mode == "F":
                return _to_8_bits(image, path)
            return image.convert("RGB")
    except Image.DecompressionBombError as error:
        raise SarvitError(f"could not read image file {path}: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL reports bad data through all three
        raise SarvitError(f"could not read image file {path}: expected a decodable image, got {error}") from None


def _to_8_bits(image: Image.Image, path: Union[str, Path]) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    full_scale = _WIDE_INTEGER.get(image.mode, 1.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (np.isfinite(values).all() and low >= 0 and high <= full_scale):
        raise SarvitError(f"could not read image file {path}: expected {image.mode} pixel values in 0-{full_scale:g}, "
                          f"found {low:g} to {high:g}; save it as an 8- or 16-bit image")
    grey = np.round(values * (255.0 / full_scale)).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")
