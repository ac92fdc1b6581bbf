"""`sarvit train`'s size flags on timm's pyramids (PVT-v2, Swin), whose build arguments are per stage.

SAR reads the last stage, so the flags size it, as the hybrids' tiny scale does: ``--depth`` is the last stage's
depth, ``--embed-dim`` its width, ``--num-heads`` its heads. The earlier stages keep the named model's depths;
their widths and heads keep the named model's proportions to the last stage's (heads at least 1). ``--input-size``
is Swin's ``img_size`` (PVT-v2's convolutional stem takes any size), ``--patch-size`` Swin's stem stride (PVT-v2
has an overlapping 7x7 stem of stride 4 and is refused one). Swin's last stage must be one window
(:mod:`sarvit.models.pyramids`): an input size whose last grid the window does not cover is refused here, in flags.

>>> from sarvit.train.pyramid_sizes import pyramid_kwargs
>>> kwargs = pyramid_kwargs("pvt_v2_b0", {"depth": 2, "embed_dim": 64, "num_heads": 2, "input_size": 96})
>>> kwargs["depths"], kwargs["embed_dims"], kwargs["num_heads"]
((2, 2, 2, 2), (8, 16, 40, 64), (1, 1, 1, 2))
>>> kwargs = pyramid_kwargs("swin_tiny_patch4_window7_224", {"embed_dim": 64, "num_heads": 2, "input_size": 96})
>>> kwargs["embed_dim"], kwargs["num_heads"], kwargs["img_size"]
(8, (1, 1, 1, 2), 96)
"""
from __future__ import annotations

from typing import Any

import timm
from timm.models.pvt_v2 import PyramidVisionTransformerV2

from ..errors import SarvitError
from ..models.pyramids import pyramid_spec_kwargs

__all__ = ["pyramid_kwargs"]


def _named_build(name: str) -> tuple[dict, bool]:
    """The named model's per-stage build (on the meta device: no weights allocated) and whether it is PVT-v2."""
    model = timm.create_model(name, device="meta")
    return pyramid_spec_kwargs(model), isinstance(model, PyramidVisionTransformerV2)


def _scaled_heads(heads: tuple, last: int) -> tuple:
    return tuple(max(1, round(h * last / heads[-1])) for h in heads)


def pyramid_kwargs(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The ``timm.create_model`` keyword arguments for pyramid ``name`` from the run's size options
    (``depth``, ``embed_dim``, ``num_heads``, ``patch_size``, ``input_size``; None or absent: the named model's)."""
    build, pvt = _named_build(name)
    depths, heads = list(build["depths"]), build["num_heads"]
    if config.get("depth") is not None:
        depths[-1] = int(config["depth"])
    if config.get("num_heads") is not None:
        heads = _scaled_heads(heads, int(config["num_heads"]))
    kwargs: dict[str, Any] = {"depths": tuple(depths), "num_heads": heads}
    stride = 2 ** (len(depths) - 1)  # each later stage halves the grid
    if pvt:
        widths = build["embed_dims"]
        if config.get("embed_dim") is not None:
            widths = tuple(max(1, round(w * int(config["embed_dim"]) / widths[-1])) for w in widths)
        kwargs["embed_dims"] = widths
        if config.get("patch_size") is not None:
            raise SarvitError(f"--patch-size: {name} has an overlapping 7x7 stem of stride 4, not patches; leave "
                              "--patch-size out (its last stage is 1/32 of --input-size)")
    else:
        first = build["embed_dim"]
        if config.get("embed_dim") is not None:
            last = int(config["embed_dim"])
            if last % stride:
                raise SarvitError(f"--embed-dim {last}: {name}'s last stage is {stride} times its first stage's "
                                  f"width; give a multiple of {stride}")
            first = last // stride
        widths = tuple(first * 2 ** i for i in range(len(depths)))
        patch = int(config.get("patch_size") or build["patch_size"])
        size = int(config["input_size"])
        grid, window = size // (patch * stride), max(build["window_size"][-1])
        if grid > window:
            raise SarvitError(f"--input-size {size}: {name}'s last stage would be a {grid}x{grid} grid in "
                              f"{window}x{window} windows, so no query meets every patch key; SAR needs one window "
                              f"over it: give --input-size at most {window * patch * stride}")
        kwargs.update(embed_dim=first, img_size=size, patch_size=patch)
    for width, count in zip(widths, heads):
        if width % count:
            raise SarvitError(f"--num-heads {heads[-1]}: {name}'s stage widths {'/'.join(map(str, widths))} take "
                              f"{'/'.join(map(str, heads))} heads, and {count} does not divide {width}; pick "
                              "--embed-dim and --num-heads whose stage shares divide")
    return kwargs
