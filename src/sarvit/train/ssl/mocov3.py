"""MoCo-v3 (Chen, Xie and He, 2021) as a training task, written from the paper: a query encoder (backbone,
projector, predictor) and a momentum encoder (backbone, projector); the symmetrised contrastive loss of the
two views' queries against the other view's keys from the whole (all-gathered) batch.

The ViT gets the paper's two changes: a fixed 2-D sin-cos position embedding and a random patch projection
that is never trained (``stop-grad-conv1``, the paper's fix for its training instability). SAR's terms read
the query encoder's forward passes on both views. Evaluation and analysis read the momentum encoder's backbone.
"""
from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.layers import build_sincos2d_pos_embed
from torch import nn

from .dino import MomentumTeacherTask
from .heads import bn_mlp
from ..tasks import TaskOutput

__all__ = ["contrastive_loss", "symmetrised_loss", "spread", "fix_patch_projection_and_position", "MoCoV3Task"]


def _gather(keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``keys`` of every process, concatenated in rank order, and this process's offset into them."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys, 0
    gathered = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, keys.contiguous())
    return torch.cat(gathered), dist.get_rank() * keys.shape[0]


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """``2 * tau * CE(q k^T / tau, labels)`` with ``q``, ``k`` L2-normalised; the positive of query ``i`` is key
    ``i`` of this process, the negatives every other key of the whole batch (all processes' keys gathered).

    Shapes: ``q [B, D]``, ``k [B, D]`` (keys carry no gradient) -> scalar.

    Example:
        >>> q = torch.eye(2); round(float(contrastive_loss(q, q, tau=1.0)), 4)  # 2 * CE([1, 0]) = 2 * log(1 + e^-1)
        0.6265
    """
    q = F.normalize(q.float(), dim=1)
    keys, offset = _gather(F.normalize(k.float(), dim=1).detach())
    logits = q @ keys.T / tau
    labels = torch.arange(q.shape[0], device=q.device) + offset
    return 2.0 * tau * F.cross_entropy(logits, labels)


def symmetrised_loss(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, tau: float) -> torch.Tensor:
    """MoCo-v3's loss: ``contrastive_loss(q1, k2) + contrastive_loss(q2, k1)``, each view's query against the
    other view's key."""
    return contrastive_loss(q1, k2, tau) + contrastive_loss(q2, k1, tau)


def spread(q: torch.Tensor) -> torch.Tensor:
    """The collapse indicator of contrastive/siamese methods (SimSiam's): the standard deviation over the batch of
    the L2-normalised outputs, averaged over dimensions, times ``sqrt(D)``: about 1 for outputs spread over the
    sphere, 0 when every image maps to the same vector. Shapes: ``q [B, D]`` -> scalar.

    Example:
        >>> round(float(spread(torch.ones(8, 4))), 4), round(float(spread(torch.randn(4096, 16))), 1)
        (0.0, 1.0)
    """
    return F.normalize(q.detach().float(), dim=1).std(dim=0).mean() * q.shape[1] ** 0.5


def fix_patch_projection_and_position(model: nn.Module) -> None:
    """The paper's ViT changes, in place: the patch projection stays as randomly initialised (no gradient), and
    the position embedding is a fixed 2-D sin-cos one (zero for the [CLS] token)."""
    model.patch_embed.requires_grad_(False)
    grid = list(model.patch_embed.grid_size)
    sincos = build_sincos2d_pos_embed(grid, dim=model.embed_dim).to(model.pos_embed)
    prefix = model.pos_embed.shape[1] - sincos.shape[0]
    with torch.no_grad():
        model.pos_embed.zero_()
        model.pos_embed[0, prefix:] = sincos
    model.pos_embed.requires_grad_(False)


class MoCoV3Task(MomentumTeacherTask):
    """MoCo-v3 over two-view batches ``([view_1, view_2], labels)``.

    Args:
        model: the query backbone, a :class:`~sarvit.train.regularizers.RegularizedModel` around a ViT built with
            ``num_classes=0``; :func:`fix_patch_projection_and_position` is applied to it (``stop_grad_conv1``).
        steps_per_epoch, epochs: the momentum schedule's length.
        dim, mlp_dim: the output and hidden widths of the projector (3 layers) and predictor (2 layers).
        tau: the contrastive temperature (0.2). momentum: the momentum encoder's at step 0, cosine to 1.
    """

    name = "mocov3"

    def __init__(self, model: nn.Module, *, steps_per_epoch: int, epochs: int, dim: int = 256, mlp_dim: int = 4096,
                 tau: float = 0.2, momentum: float = 0.99, stop_grad_conv1: bool = True) -> None:
        if stop_grad_conv1:
            fix_patch_projection_and_position(model.model)
        super().__init__(model)
        self.projector = bn_mlp(model.model.embed_dim, mlp_dim, dim, layers=3)
        self.predictor = bn_mlp(dim, mlp_dim, dim, layers=2)
        self.momentum_encoder = copy.deepcopy(model.model)
        self.momentum_projector = copy.deepcopy(self.projector)
        for parameter in (*self.momentum_encoder.parameters(), *self.momentum_projector.parameters()):
            parameter.requires_grad_(False)
        self.tau, self.start_momentum = float(tau), float(momentum)
        self.steps_per_epoch, self.epochs = int(steps_per_epoch), int(epochs)
        self.steps_done = 0

    def forward(self, batch) -> TaskOutput:
        views, _ = batch
        if not isinstance(views, (list, tuple)) or len(views) != 2:
            raise ValueError("MoCoV3Task expects a batch of two views: ([view_1, view_2], labels)")
        size, both = views[0].shape[0], torch.cat(list(views))
        # the backbones (no batch norm) see both views in one pass, one set of SAR terms; the heads' batch norms
        # see one view at a time, as two separate forward passes would
        features, terms = self.model(both)
        q1, q2 = (self.predictor(self.projector(part)) for part in features.split(size))
        with torch.no_grad():
            k1, k2 = (self.momentum_projector(part) for part in self.momentum_encoder(both).split(size))
        return TaskOutput(loss=symmetrised_loss(q1, q2, k1, k2, self.tau), terms=terms,
                          metrics={"query_spread": spread(q1), "key_spread": spread(k1)})

    def momentum_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return ([*self.momentum_encoder.parameters(), *self.momentum_projector.parameters()],
                [*self.model.model.parameters(), *self.projector.parameters()])

    def evaluation_model(self) -> nn.Module:
        return self.momentum_encoder
