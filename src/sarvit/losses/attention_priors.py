"""ARViT's attention priors on a chosen block's full attention (Mormille, thesis Sec. 3.2-3.3).

Two losses on the patch-to-patch attention ``A_pp`` (``[B, H, N, N]``, ``N = h*w``) of one block:

* distance (Sec. 3.2; Mormille & Atsumi, Artificial Life and Robotics 27, 2022): ``l = sum A_pp * P``
  with ``P`` a penalty derived from the pairwise Manhattan distances of the patch grid;
* patch similarity (Sec. 3.3; same authors, Artificial Life and Robotics, 2023): ``l = sum A_pp * (D + rho)``
  with ``D`` the pairwise mean-squared errors between the Gram matrices of the image patches.

The thesis leaves open how ``P`` comes from the distances, how ``D`` is scaled, what happens to
prefix ([CLS]) tokens, how heads and images are reduced; each is a parameter here and the default
follows the published papers where they say (cited per parameter below).

* Prefix tokens: their rows and columns are cut off -- a [CLS] token has no place on the grid, so
  neither penalty is defined for it. With ``renormalize=True`` (default) each patch row of ``A_pp``
  is rescaled to sum to 1, as ARViT's rows do (ARViT has no [CLS]); without it the attention a
  patch pays to the prefix escapes the penalty.
* Heads: ``l`` is the mean over heads of the per-head sums (ARViT's code reads PyTorch's
  head-averaged attention, which gives the same value).
* Per image: ``reduction="log1p"`` (default) gives ``log(max(l, 0) + 1)``, the papers' per-image
  form; ``"sum"`` gives the thesis's bare ``l``. The modules average over the batch (the papers
  sum; the mean keeps the weight independent of the batch size).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import SarvitError
from ..checks import check_choice, check_grid, check_number, check_tensor
from ._precision import compute_dtype

__all__ = [
    "manhattan_penalty",
    "distance_attention_loss",
    "DistanceAttentionLoss",
    "patch_gram_distances",
    "patch_similarity_loss",
    "PatchSimilarityLoss",
]

PENALTIES = ("soft-sign", "linear")
REDUCTIONS = ("log1p", "sum")
SCALES = ("minmax", "none")


def _patch_attention(
    A: torch.Tensor, num_prefix_tokens: int, grid_size: tuple[int, int] | None, renormalize: bool
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Door check of ``A`` and its patch-to-patch block in the compute dtype, with the grid ``(h, w)``."""
    check_tensor(A, "A", "B, H, T, T", dtype="float", nonempty=True)
    tokens = A.shape[-1]
    if A.shape[-2] != tokens:
        raise SarvitError(f"A must be square in its last two dims [B, H, T, T], got shape {tuple(A.shape)}")
    check_number(num_prefix_tokens, "num_prefix_tokens", low=0, high=tokens, high_open=True, integer=True)
    patches = tokens - num_prefix_tokens
    if grid_size is None:
        side = math.isqrt(patches)
        if side * side != patches:
            raise SarvitError(
                f"A has {patches} patch tokens (T={tokens} minus {num_prefix_tokens} prefix tokens), not a square grid; "
                "pass grid_size=(h, w)"
            )
        grid_size = (side, side)
    h, w = check_grid(grid_size)
    if h * w != patches:
        raise SarvitError(f"grid_size {tuple(grid_size)} has {h * w} cells but A has {patches} patch tokens")
    patch = A.to(compute_dtype(A))[..., num_prefix_tokens:, num_prefix_tokens:]
    if renormalize:
        patch = patch / patch.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(patch.dtype).tiny)
    return patch, (h, w)


def _per_image(patch_attention: torch.Tensor, weights: torch.Tensor, reduction: str) -> torch.Tensor:
    """``l = mean_heads sum_{n,m} A[n, m] * weights[n, m]``, then the per-image ``reduction``."""
    total = (patch_attention * weights).sum(dim=(-2, -1)).mean(dim=1)
    return torch.log1p(torch.relu(total)) if reduction == "log1p" else total


def manhattan_penalty(
    grid_size: tuple[int, int],
    penalty: str = "soft-sign",
    alpha: float = 4.0,
    beta: float = 500.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Penalty matrix ``P [N, N]`` from the Manhattan distances ``D`` of an ``h x w`` patch grid (row-major).

    * ``"soft-sign"`` (default; Mormille & Atsumi 2022, the distance paper's alpha/beta form):
      ``c = D - max_m D[n, m] / alpha``, ``P = c / sqrt(c^2 + beta)``: negative (a reward) for patches
      nearer than a quarter (``alpha=4``) of the row's largest distance, positive beyond, saturating
      at +-1; ``beta=500`` (in squared cells) as in the authors' code for a 16x16 grid.
    * ``"linear"``: ``P = D / max D`` in ``[0, 1]``.

    Example:
        >>> manhattan_penalty((1, 3), "linear")
        tensor([[0.0000, 0.5000, 1.0000],
                [0.5000, 0.0000, 0.5000],
                [1.0000, 0.5000, 0.0000]])
    """
    check_choice(penalty, "penalty", PENALTIES)
    check_number(alpha, "alpha", low=0, low_open=True)
    check_number(beta, "beta", low=0, low_open=True)
    h, w = check_grid(grid_size)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    distances = (ys[:, None] - ys[None, :]).abs() + (xs[:, None] - xs[None, :]).abs()
    if penalty == "linear":
        return distances / distances.max().clamp_min(1)
    shifted = distances - distances.amax(dim=1, keepdim=True) / alpha
    return shifted / torch.sqrt(shifted.square() + beta)


def distance_attention_loss(
    A: torch.Tensor,
    num_prefix_tokens: int = 1,
    *,
    grid_size: tuple[int, int] | None = None,
    penalty: str = "soft-sign",
    alpha: float = 4.0,
    beta: float = 500.0,
    renormalize: bool = True,
    reduction: str = "log1p",
) -> torch.Tensor:
    """ARViT's distance loss per image (thesis Sec. 3.2): ``reduction(mean_h sum_{n,m} A_pp[h, n, m] P[n, m])``.

    ``P`` = :func:`manhattan_penalty` of the patch grid; prefix tokens, ``renormalize`` and
    ``reduction`` as in the module docstring. Computed in float32 (float64 stays float64), also
    under autocast.

    Args:
        A: ``[B, H, T, T]`` post-softmax attention of one block, prefix tokens first
            (capture contract: ``captured["attention"][block]``).
        num_prefix_tokens: leading non-patch tokens in ``T`` (timm's ``model.num_prefix_tokens``).
        grid_size: ``(h, w)``; default: the square grid of ``T - num_prefix_tokens`` patches.
        penalty, alpha, beta: see :func:`manhattan_penalty`.
        renormalize: rescale each patch row to sum to 1 after cutting the prefix.
        reduction: ``"log1p"`` -> ``log(max(l, 0) + 1)`` (the paper), ``"sum"`` -> ``l``.

    Returns:
        ``[B]`` per-image losses.

    Example:
        >>> A = torch.eye(5).expand(2, 3, 5, 5)  # [CLS] + 2x2 patches, each attending to itself
        >>> distance_attention_loss(A, reduction="sum")  # 4 rows, each pays P[n, n] = -0.5 / sqrt(500.25)
        tensor([-0.0894, -0.0894])
    """
    check_choice(reduction, "reduction", REDUCTIONS)
    patch, grid = _patch_attention(A, num_prefix_tokens, grid_size, renormalize)
    with torch.autocast(device_type=A.device.type, enabled=False):
        weights = manhattan_penalty(grid, penalty, alpha, beta, device=A.device, dtype=patch.dtype)
        return _per_image(patch, weights, reduction)


class _OptionsModule(nn.Module):
    """A loss Module that calls its function with the keyword ``options`` it was built with (shown in repr)."""

    options: dict

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())


class DistanceAttentionLoss(_OptionsModule):
    """Mean over the batch of :func:`distance_attention_loss` (same arguments).

    Shape:
        input ``A [B, H, T, T]`` -> scalar (float32).

    Example:
        >>> A = torch.randn(2, 3, 197, 197).softmax(-1).requires_grad_()
        >>> DistanceAttentionLoss(num_prefix_tokens=1)(A).backward()
    """

    def __init__(
        self,
        num_prefix_tokens: int = 1,
        *,
        grid_size: tuple[int, int] | None = None,
        penalty: str = "soft-sign",
        alpha: float = 4.0,
        beta: float = 500.0,
        renormalize: bool = True,
        reduction: str = "log1p",
    ) -> None:
        super().__init__()
        check_choice(penalty, "penalty", PENALTIES)
        check_choice(reduction, "reduction", REDUCTIONS)
        check_number(alpha, "alpha", low=0, low_open=True)
        check_number(beta, "beta", low=0, low_open=True)
        self.options = dict(
            num_prefix_tokens=num_prefix_tokens, grid_size=grid_size, penalty=penalty, alpha=alpha, beta=beta,
            renormalize=renormalize, reduction=reduction,
        )

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        return distance_attention_loss(A, **self.options).mean()


@torch.no_grad()
def patch_gram_distances(images: torch.Tensor, grid_size: tuple[int, int], scale: str = "minmax") -> torch.Tensor:
    """Pairwise Gram-matrix distances ``D [B, N, N]`` of the ``h x w`` patches of each image (no gradient).

    Each patch ``p`` (``C`` channels, ``ph x pw`` pixels, ``ph = H / h``) gives the Gram matrix
    ``G_p = F_p F_p^T / (C ph pw)`` of its ``C x (ph pw)`` pixel matrix (Gatys et al.'s style
    representation); ``D[n, m] = mean((G_n - G_m)^2)`` over the ``C x C`` entries (thesis Fig. 1:
    symmetric, non-negative, zero diagonal). ``scale="minmax"`` (default; the similarity paper
    normalises D to ``[0, 1]``) rescales each image's ``D`` to ``[0, 1]`` (all zeros stay zero);
    ``"none"`` keeps it raw.

    Example:
        >>> images = torch.zeros(1, 3, 4, 4); images[..., 2:, 2:] = 1.0  # one bright patch of 2x2
        >>> patch_gram_distances(images, (2, 2))[0, 3]
        tensor([1., 1., 1., 0.])
    """
    check_tensor(images, "images", "B, C, H, W", dtype="float", nonempty=True)
    check_choice(scale, "scale", SCALES)
    batch, channels, height, width = images.shape
    h, w = check_grid(grid_size)
    if height % h or width % w:
        raise SarvitError(f"images of {height}x{width} pixels do not split into the {h}x{w} patch grid of A")
    ph, pw = height // h, width // w
    with torch.autocast(device_type=images.device.type, enabled=False):
        pixels = images.to(compute_dtype(images)).reshape(batch, channels, h, ph, w, pw)
        pixels = pixels.permute(0, 2, 4, 1, 3, 5).reshape(batch, h * w, channels, ph * pw)
        grams = (pixels @ pixels.transpose(-1, -2)).flatten(2) / (channels * ph * pw)  # [B, N, C*C]
        distances = torch.cdist(grams, grams, compute_mode="donot_use_mm_for_euclid_dist").square() / channels**2
        if scale == "minmax":
            low = distances.amin(dim=(1, 2), keepdim=True)
            span = distances.amax(dim=(1, 2), keepdim=True) - low
            distances = (distances - low) / torch.where(span > 0, span, torch.ones_like(span))
    return distances


def patch_similarity_loss(
    A: torch.Tensor,
    images: torch.Tensor,
    num_prefix_tokens: int = 1,
    *,
    grid_size: tuple[int, int] | None = None,
    scale: str = "minmax",
    bias: float = 0.3,
    renormalize: bool = True,
    reduction: str = "log1p",
) -> torch.Tensor:
    """ARViT's patch-similarity loss per image (thesis Sec. 3.3): ``reduction(mean_h sum A_pp[h] * (D + bias))``.

    ``D`` = :func:`patch_gram_distances` of ``images`` on the grid of ``A`` (computed once per call,
    without gradient); ``bias`` is the similarity paper's rho (0.3 there), which keeps a cost on
    attending even to identical-looking patches. Prefix tokens, ``renormalize`` and ``reduction``
    as in the module docstring. Computed in float32 (float64 stays float64), also under autocast.

    Args:
        A: ``[B, H, T, T]`` post-softmax attention of one block, prefix tokens first.
        images: ``[B, C, H_img, W_img]`` the model's input batch (as fed to the model).
        num_prefix_tokens, grid_size, renormalize, reduction: see :func:`distance_attention_loss`.
        scale: see :func:`patch_gram_distances`.
        bias: added to every ``D`` entry (rho).

    Returns:
        ``[B]`` per-image losses.

    Example:
        >>> A = torch.randn(2, 3, 17, 17).softmax(-1)
        >>> patch_similarity_loss(A, torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    check_choice(reduction, "reduction", REDUCTIONS)
    patch, grid = _patch_attention(A, num_prefix_tokens, grid_size, renormalize)
    check_tensor(images, "images", "B, C, H, W", dtype="float", nonempty=True)
    if images.shape[0] != A.shape[0]:
        raise SarvitError(f"images must hold the batch of A ({A.shape[0]} images), got shape {tuple(images.shape)}")
    distances = patch_gram_distances(images, grid, scale).to(patch.dtype)
    with torch.autocast(device_type=A.device.type, enabled=False):
        return _per_image(patch, (distances + bias).unsqueeze(1), reduction)


class PatchSimilarityLoss(_OptionsModule):
    """Mean over the batch of :func:`patch_similarity_loss` (same arguments).

    Shape:
        input ``A [B, H, T, T]``, ``images [B, C, H_img, W_img]`` -> scalar (float32).

    Example:
        >>> A = torch.randn(2, 3, 17, 17).softmax(-1).requires_grad_()
        >>> PatchSimilarityLoss()(A, torch.rand(2, 3, 32, 32)).backward()
    """

    def __init__(
        self,
        num_prefix_tokens: int = 1,
        *,
        grid_size: tuple[int, int] | None = None,
        scale: str = "minmax",
        bias: float = 0.3,
        renormalize: bool = True,
        reduction: str = "log1p",
    ) -> None:
        super().__init__()
        check_choice(scale, "scale", SCALES)
        check_choice(reduction, "reduction", REDUCTIONS)
        self.options = dict(
            num_prefix_tokens=num_prefix_tokens, grid_size=grid_size, scale=scale, bias=bias,
            renormalize=renormalize, reduction=reduction,
        )

    def forward(self, A: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return patch_similarity_loss(A, images, **self.options).mean()
