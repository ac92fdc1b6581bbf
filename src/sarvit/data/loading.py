"""Image decoding that names the offending file when it fails."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from PIL import Image

from ..errors import SarvitError


def load_rgb_image(path: Union[str, Path]) -> Image.Image:
    """Decode ``path`` as an RGB PIL image; a missing, truncated or non-image file is a SarvitError naming it.

    Used as the ``loader=`` of the folder datasets (ImageNet, IN-100, Flowers, ``folder``) in place of
    torchvision's ``default_loader``, whose PIL error does not say which of a million files is broken.
    """
    try:
        with open(path, "rb") as file, Image.open(file) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:  # PIL reports bad data through all three
        raise SarvitError(f"could not read image file {path}: expected a decodable image, got {error}") from None
