"""Dense relative localization (DRLoc; Liu et al., NeurIPS 2021) on the final patch tokens.

Liu, Sangineto, Bi, Sebe, Lepri, De Nadai, "Efficient Training of Visual Transformers with Small
Datasets", NeurIPS 2021; public code github.com/yhlleo/VTs-Drloc. Defaults below follow that code
(``drloc/aux_modules.py``, ``main.py``, ``train.sh``), read for reference only:

* ``num_pairs=64``: ``--sample_size`` defaults to 64 in ``main.py`` (pairs per image, the paper's m);
* the head: ``Linear(2C, 512) - ReLU - Linear(512, 512) - ReLU - Linear(512, 2)`` ("l1" mode);
* the target: absolute offsets (``--use_abs``, which ``train.sh`` passes), divided by the grid size
  as in the paper's ``(|u - u'| / k, |v - v'| / k)``; the code's own default leaves them in cells;
* the loss: L1 between predicted and true offsets, averaged over pairs and both axes;
* the weight: lambda 0.1 for the ViT-like T2T and CvT, 0.5 for Swin (``train.sh``); the code also
  warms lambda up over 20 epochs and decays it linearly, a schedule left to the training loop.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import SarvitError
from ..checks import check_number, check_tensor
from ._precision import compute_dtype

__all__ = ["drloc_loss", "DRLocLoss"]


def drloc_loss(
    tokens: torch.Tensor,
    head: nn.Module,
    num_pairs: int = 64,
    signed: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-image DRLoc loss: sample position pairs, predict their offsets with ``head``, L1 error.

    For each image, ``num_pairs`` pairs of grid cells ``(y1, x1), (y2, x2)`` are drawn uniformly and
    independently (a pair may repeat a cell, as in the reference code) with ``torch.randint`` on the
    tokens' device. The head sees ``[e_{y1,x1}, e_{y2,x2}]`` (``2C`` features) and predicts
    ``d = (d_y, d_x)``; the target is ``t = (|y1 - y2| / h, |x1 - x2| / w)`` (``signed``: without
    the absolute value, in ``(-1, 1)``). The loss of an image is ``mean_pairs (|d_y - t_y| + |d_x - t_x|) / 2``.
    Autocast is off inside; the tokens are cast to the head's dtype (float32 unless the head was
    made float64) and the result is float32 (float64 for a float64 head).

    Args:
        tokens: ``[B, C, h, w]`` final patch tokens (capture contract: ``captured["tokens"]``).
        head: maps ``[..., 2C]`` to ``[..., 2]`` (see :class:`DRLocLoss`).
        num_pairs: pairs per image (the paper's m).
        signed: predict signed offsets instead of absolute ones.
        generator: optional generator on the tokens' device, for reproducible pairs.

    Returns:
        ``[B]`` per-image losses.

    Example:
        >>> head = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> drloc_loss(torch.randn(2, 8, 7, 7), head, num_pairs=5).shape
        torch.Size([2])
    """
    check_tensor(tokens, "tokens", "B, C, h, w", dtype="float", nonempty=True)
    check_number(num_pairs, "num_pairs", low=1, integer=True)
    parameter = next(head.parameters(), None)
    dtype = parameter.dtype if parameter is not None else compute_dtype(tokens)
    batch, channels, h, w = tokens.shape
    with torch.autocast(device_type=tokens.device.type, enabled=False):
        cells = torch.randint(h * w, (batch, 2 * num_pairs), device=tokens.device, generator=generator)
        flat = tokens.to(dtype).flatten(2).transpose(1, 2)  # [B, h*w, C]
        picked = flat.gather(1, cells.unsqueeze(-1).expand(-1, -1, channels))  # [B, 2m, C]
        first, second = picked[:, :num_pairs], picked[:, num_pairs:]
        predicted = head(torch.cat([first, second], dim=-1))  # [B, m, 2]
        y, x = cells.div(w, rounding_mode="floor"), cells.remainder(w)
        dy, dx = y[:, :num_pairs] - y[:, num_pairs:], x[:, :num_pairs] - x[:, num_pairs:]
        if not signed:
            dy, dx = dy.abs(), dx.abs()
        # Python scalars, not a [h, w] tensor: building one on the GPU is a host-to-device copy (a sync).
        target = torch.stack([dy.to(predicted.dtype) / h, dx.to(predicted.dtype) / w], dim=-1)
        per_image = (predicted - target).abs().mean(dim=(1, 2))
    return per_image.to(compute_dtype(per_image))


class DRLocLoss(nn.Module):
    """DRLoc with its own localization MLP; returns the mean of :func:`drloc_loss` over the batch.

    The head is an ordinary submodule: train it with the model (add ``loss_fn.parameters()`` to the
    optimizer) and save it with the checkpoint (``loss_fn.state_dict()``). The mean over the batch
    equals the reference code's ``F.l1_loss`` over all pairs and axes.

    Args:
        embed_dim: token width ``C``.
        num_pairs: pairs per image (default 64, DRLoc's ``--sample_size``).
        hidden_dim: width of the two hidden layers (default 512, as in DRLoc).
        signed: predict signed offsets (default: absolute ones, DRLoc's ``--use_abs``).

    Shape:
        input ``tokens [B, C, h, w]`` -> scalar (float32).

    Example:
        >>> loss_fn = DRLocLoss(embed_dim=192)
        >>> loss = loss_fn(torch.randn(4, 192, 14, 14, requires_grad=True))
        >>> loss.backward()
    """

    def __init__(self, embed_dim: int, num_pairs: int = 64, hidden_dim: int = 512, signed: bool = False) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("num_pairs", num_pairs), ("hidden_dim", hidden_dim)):
            check_number(value, name, low=1, integer=True)
        self.embed_dim = embed_dim
        self.num_pairs = num_pairs
        self.signed = signed
        self.head = nn.Sequential(
            nn.Linear(2 * embed_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 2),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_tensor(tokens, "tokens", "B, C, h, w", dtype="float", nonempty=True)
        if tokens.shape[1] != self.embed_dim:
            raise SarvitError(
                f"tokens must have {self.embed_dim} channels (embed_dim) as [B, C, h, w], got shape {tuple(tokens.shape)}"
            )
        return drloc_loss(tokens, self.head, self.num_pairs, self.signed).mean()

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_pairs={self.num_pairs}, signed={self.signed}"
