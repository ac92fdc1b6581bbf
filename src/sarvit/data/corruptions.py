"""ImageNet-C's corruptions applied to any data set on the fly: a "-C" version of the user's own evaluation split.

The corruptions are those of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations" (ICLR 2019), from the maintained fork of their package, ``imagecorruptions-imaug`` (the original
``imagecorruptions`` release breaks on current scikit-image); it is an optional extra (``pip install
'sarvit[corruptions]'``). :class:`CorruptedDataset` wraps a data set whose items start with a normalised image
tensor ``[3, H, W]`` (what sarvit's evaluation transforms give), so the corrupted images are exactly the clean
evaluation images, corrupted: de-normalised to 8 bits, corrupted, normalised again. Each item's randomness is
drawn from ``(seed, index, corruption, severity)`` alone, so two runs (and any number of loader workers) see the
same corrupted images.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset

from ..errors import SarvitError

__all__ = ["CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES", "CorruptedDataset", "corrupt_array",
           "parse_corruptions", "require_corruptions"]

# ImageNet-C's 15 corruptions (noise, blur, weather, digital), in the paper's order, then its 4 held-out extras.
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
_SEEDED = ("glass_blur", "impulse_noise")  # these take their own seed; the rest draw from numpy's global state
_MIN_SIDE = 32  # the package's smallest image side


def require_corruptions():
    """The ``imagecorruptions`` module, or a :class:`SarvitError` saying how to install it."""
    try:
        import imagecorruptions
    except ImportError:
        raise SarvitError("corruptions need the optional package imagecorruptions-imaug: "
                          "pip install 'sarvit[corruptions]' (or pip install imagecorruptions-imaug)") from None
    return imagecorruptions


def parse_corruptions(text: str) -> list[tuple[str, int]]:
    """``"NAME:SEVERITY"``, ``"NAME"`` (severities 1-5), ``"all"`` (the 15, severities 1-5), ``"all:3"``,
    ``"extra"`` (the 4 extras), comma-separated -> ``[(name, severity), ...]`` in the order given, no repeats.

    Example:
        >>> parse_corruptions("fog:2,gaussian_noise:5")
        [('fog', 2), ('gaussian_noise', 5)]
        >>> len(parse_corruptions("all")), parse_corruptions("extra:1")[0]
        (75, ('speckle_noise', 1))
    """
    groups = {"all": CORRUPTIONS, "extra": EXTRA_CORRUPTIONS}
    pairs: list[tuple[str, int]] = []
    for part in str(text).split(","):
        name, _, severity = part.strip().lower().replace("-", "_").partition(":")
        names = groups.get(name, (name,))
        if not all(one in CORRUPTIONS + EXTRA_CORRUPTIONS for one in names):
            raise SarvitError(f"unknown corruption {name!r}: expected all, extra or one of "
                              f"{', '.join(CORRUPTIONS + EXTRA_CORRUPTIONS)}")
        if severity and severity not in tuple(map(str, SEVERITIES)):
            raise SarvitError(f"corruption {part.strip()!r}: expected a severity 1-5 after ':', got {severity!r}")
        severities = (int(severity),) if severity else SEVERITIES
        pairs += [(one, level) for one in names for level in severities if (one, level) not in pairs]
    return pairs


def corrupt_array(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``image [H, W, 3] uint8`` corrupted by ``name`` at ``severity`` (1-5) -> ``[H, W, 3] uint8``.

    The same ``seed`` gives the same result; numpy's global random state is left as it was.
    """
    corrupt = require_corruptions().corrupt
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < _MIN_SIDE:
        raise SarvitError(f"corruptions take RGB uint8 images [H, W, 3] with sides >= {_MIN_SIDE}, got "
                          f"{image.dtype} {image.shape}; evaluate at --input-size {_MIN_SIDE} or more")
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        extra = {"seed": seed} if name in _SEEDED else {}
        return np.array(corrupt(image, severity=severity, corruption_name=name, **extra), dtype=np.uint8)
    finally:
        np.random.set_state(state)


class CorruptedDataset(Dataset):
    """``dataset`` with every image corrupted; items ``(image [3, H, W], *rest)`` keep their other fields.

    Args:
        dataset: items whose first field is an image tensor normalised with ``mean``/``std``.
        name: one of :data:`CORRUPTIONS` / :data:`EXTRA_CORRUPTIONS`, or None for the clean images through the
            same 8-bit round trip (the reference the corrupted errors are compared with).
        severity: 1-5 (ignored for ``name=None``).
        seed: with the item's index, the corruption and the severity, decides the item's randomness.
    """

    def __init__(self, dataset: Dataset, name: Optional[str], severity: int = 1, *, seed: int = 0,
                 mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD) -> None:
        if name is not None:
            parse_corruptions(f"{name}:{severity}")  # checks both
            require_corruptions()
        self.dataset, self.name, self.severity, self.seed = dataset, name, int(severity), int(seed)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.dataset)

    def item_seed(self, index: int) -> int:
        code = (CORRUPTIONS + EXTRA_CORRUPTIONS).index(self.name) if self.name else -1
        return int(np.random.SeedSequence([self.seed, index, code + 1, self.severity]).generate_state(1)[0])

    def __getitem__(self, index: int):
        image, *rest = self.dataset[index]
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
            raise SarvitError(f"CorruptedDataset: expected items starting with an image tensor [3, H, W], got "
                              f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")
        pixels = ((image * self.std + self.mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
        array = pixels.permute(1, 2, 0).numpy()
        if self.name is not None:
            array = corrupt_array(np.ascontiguousarray(array), self.name, self.severity, self.item_seed(index))
        corrupted = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0
        return ((corrupted - self.mean) / self.std, *rest)
