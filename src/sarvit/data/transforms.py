"""DeiT's train/eval image transforms, built from timm's ``create_transform``."""
from __future__ import annotations

from typing import Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torchvision import transforms as T

from ..errors import SarvitError

EVAL_CROP_RATIO = 0.875  # timm's and DeiT's evaluation crop: the centre 87.5 % of the resized image

_INTERPOLATIONS = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


class _ZeroBitPosterize:
    """timm's posterize op, with 0 bits to keep giving a black image (as with Pillow < 10) instead of raising.

    DeiT's policy ``rand-m9-mstd0.5-inc1`` draws magnitude 10 now and then, which asks posterize to keep
    0 bits; current Pillow raises ``ValueError`` in a loader worker and kills the run (~0.3 % of images).
    A module-level class, so the transform pickles into spawned loader workers.
    """

    def __init__(self, posterize) -> None:
        self.posterize = posterize

    def __call__(self, img, bits_to_keep, **kwargs):
        from PIL import Image

        if bits_to_keep <= 0:
            return Image.new(img.mode, img.size)
        return self.posterize(img, bits_to_keep, **kwargs)


def allow_zero_bit_posterize(transform):
    """Give the posterize ops inside ``transform`` (a timm transform: RandAugment, AutoAugment or AugMix, found
    through ``transforms`` / ``ops`` / ``policy``) the 0-bit case; returns ``transform``. Only this transform's
    ops change, never timm's ``auto_augment.NAME_TO_OP``. Idempotent."""
    from timm.data.auto_augment import AugmentOp

    if isinstance(transform, AugmentOp):
        if transform.name.startswith("Posterize") and not isinstance(transform.aug_fn, _ZeroBitPosterize):
            transform.aug_fn = _ZeroBitPosterize(transform.aug_fn)
        return transform
    for attribute in ("transforms", "ops", "policy"):
        for part in getattr(transform, attribute, None) or ():
            for op in part if isinstance(part, (list, tuple)) else (part,):  # AutoAugment: a list of sub-policies
                allow_zero_bit_posterize(op)
    return transform


def build_transform(
    is_train: bool,
    input_size: int,
    *,
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1",
    reprob: float = 0.25,
    remode: str = "pixel",
    recount: int = 1,
    color_jitter: Optional[float] = 0.3,
    hflip: float = 0.5,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    interpolation: str = "bicubic",
    eval_crop_ratio: float = EVAL_CROP_RATIO,
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
):
    """PIL image of any size -> normalised tensor ``[3, input_size, input_size]``, by timm's ``create_transform``.

    Training (DeiT's): RandomResizedCrop to ``input_size`` (area fraction in ``crop_scale``) + horizontal flip with probability ``hflip`` (0: off)
    + RandAugment (``auto_augment``; ``None`` or ``"none"`` disables it) + colour jitter + RandomErasing
    (``reprob``, ``remode``, ``recount``). Evaluation: Resize(``int(input_size / eval_crop_ratio)``, shorter
    side) + CenterCrop(``input_size``), so the aspect ratio is kept; then ToTensor + Normalize. The same at every
    size, 32 px and below included, so folders of mixed-size images work.
    """
    if interpolation not in _INTERPOLATIONS:
        raise SarvitError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {interpolation!r}")
    if len(crop_scale) != 2 or not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
        raise SarvitError(f"crop_scale: expected (min, max) with 0 < min <= max <= 1, got {crop_scale}")
    if not 0.0 <= float(hflip) <= 1.0:
        raise SarvitError(f"hflip is a probability: expected a value in [0, 1], got {hflip}")
    if auto_augment is not None and auto_augment.strip().lower() in ("", "none"):
        auto_augment = None
    if not is_train:
        return create_transform(input_size=input_size, is_training=False, interpolation=interpolation,
                                crop_pct=eval_crop_ratio, mean=mean, std=std)
    try:
        transform = create_transform(
            input_size=input_size,
            is_training=True,
            hflip=float(hflip),
            scale=tuple(crop_scale),
            color_jitter=color_jitter,
            auto_augment=auto_augment,
            interpolation=interpolation,
            re_prob=reprob,
            re_mode=remode,
            re_count=recount,
            mean=mean,
            std=std,
        )
    except (AssertionError, ValueError, KeyError) as error:  # timm's reaction to a malformed policy string
        raise SarvitError(
            f"could not build the training transform: expected a timm auto-augment policy such as "
            f"'rand-m9-mstd0.5-inc1' or 'none' and a remode of const/rand/pixel, got auto_augment="
            f"{auto_augment!r}, remode={remode!r} ({error})"
        ) from None
    return allow_zero_bit_posterize(transform)


def build_mask_transform(
    input_size: int,
    *,
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
    interpolation: str = "bilinear",
):
    """PIL image -> normalised tensor ``[3, input_size, input_size]`` by a plain resize (timm's eval transform
    with ``crop_mode="squash"``, ``crop_pct=1``): no crop, so pixel masks resized the same way stay aligned.
    The datasets with masks give it images already fitted to ``input_size`` (aspect kept: see
    :func:`sarvit.data.masks.fit_square`), so for them it only converts and normalises."""
    if interpolation not in _INTERPOLATIONS:
        raise SarvitError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {interpolation!r}")
    return create_transform(input_size=input_size, is_training=False, interpolation=interpolation, crop_pct=1.0,
                            crop_mode="squash", mean=tuple(mean), std=tuple(std))
