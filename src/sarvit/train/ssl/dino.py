"""DINO (Caron et al., 2021) as a training task: a student and its EMA teacher, each a ViT with a projection
head; the student's softmax over the prototypes matches the teacher's centred, sharpened one across crops.

SAR's terms (``--sar``, ``--reg``) read the student's forward pass on the global crops. The teacher is what
evaluation and analysis read (:meth:`DINOTask.evaluation_model`).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from .heads import DINOHead
from .schedules import cosine_ramp, teacher_temperature
from ..tasks import TaskOutput, TrainingTask

__all__ = ["dino_loss", "teacher_entropies", "centre_update", "ema_update", "without_drop_path", "DINOTask"]


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, centre: torch.Tensor, student_temp: float,
              teacher_temp: float, num_crops: int, num_global: int = 2) -> torch.Tensor:
    """DINO's cross-entropy between the teacher's centred, sharpened softmax and the student's, averaged over
    every (teacher global crop, student crop) pair of different crops and over the batch.

    Args:
        student: ``[num_crops * B, K]`` student outputs, crop-major (all images' crop 0, then crop 1, ...).
        teacher: ``[num_global * B, K]`` teacher outputs on the global crops, crop-major.
        centre: ``[1, K]`` subtracted from the teacher's outputs before its softmax.
        student_temp, teacher_temp: the softmax temperatures (DINO: 0.1; 0.04 -> 0.07 for the teacher).

    Returns:
        the scalar loss ``mean over pairs (i != v) of mean_b sum_k -t_i[b, k] log s_v[b, k]``.

    Example:
        >>> s, t = torch.zeros(4, 3), torch.zeros(2, 3)  # uniform: the loss is log K
        >>> round(float(dino_loss(s, t, torch.zeros(1, 3), 0.1, 0.04, num_crops=4)), 4)
        1.0986
    """
    if num_crops <= 1 or num_global < 1 or num_global > num_crops:
        raise ValueError(f"expected num_crops >= 2 and 1 <= num_global <= num_crops, got {num_crops}, {num_global}")
    log_student = F.log_softmax(student.float() / student_temp, dim=-1).chunk(num_crops)
    targets = F.softmax((teacher.float() - centre) / teacher_temp, dim=-1).detach().chunk(num_global)
    total, pairs = student.new_zeros((), dtype=torch.float32), 0
    for index, target in enumerate(targets):
        for view, log_probs in enumerate(log_student):
            if view != index:  # a crop is never its own target
                total = total + (-target * log_probs).sum(dim=-1).mean()
                pairs += 1
    return total / pairs


@torch.no_grad()
def teacher_entropies(teacher: torch.Tensor, centre: torch.Tensor, teacher_temp: float) -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
    """DINO's collapse indicators (its paper's Fig. 7): the mean entropy of the teacher's per-image targets and the
    entropy of their batch mean, in nats. Uniform collapse: both near ``log K``; collapse onto one prototype: both
    near 0; healthy: the per-image entropy well below the batch mean's (sharp targets, many prototypes used).

    Shapes: ``teacher [N, K]``, ``centre [1, K]`` -> two scalars.

    Example:
        >>> per_image, of_mean = teacher_entropies(torch.eye(4) * 100, torch.zeros(1, 4), 0.04)
        >>> abs(round(float(per_image), 4)), round(float(of_mean), 4)  # one-hot targets on 4 different prototypes
        (0.0, 1.3863)
    """
    targets = F.softmax((teacher.float() - centre) / teacher_temp, dim=-1)
    per_image = -(targets * targets.clamp_min(1e-12).log()).sum(dim=-1).mean()
    mean = targets.mean(dim=0)
    return per_image, -(mean * mean.clamp_min(1e-12).log()).sum()


@torch.no_grad()
def centre_update(centre: torch.Tensor, teacher: torch.Tensor, momentum: float) -> None:
    """In place: ``centre = momentum * centre + (1 - momentum) * mean of teacher`` over the batch of every process
    (all-reduced under torch.distributed). ``teacher [N, K]``, ``centre [1, K]``."""
    batch_sum = teacher.float().sum(dim=0, keepdim=True)
    count = torch.tensor(float(teacher.shape[0]), device=teacher.device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(batch_sum)
        dist.all_reduce(count)
    centre.mul_(momentum).add_(batch_sum / count, alpha=1.0 - momentum)


@torch.no_grad()
def ema_update(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], momentum: float) -> None:
    """In place, for each pair: ``teacher = momentum * teacher + (1 - momentum) * student``."""
    torch._foreach_lerp_(list(teacher), list(student), 1.0 - momentum)


class MomentumTeacherTask(TrainingTask):
    """A task with an EMA copy of its trained parts (DINO's teacher, MoCo-v3's momentum encoder): after each step
    the copy moves toward the trained parts with ``self.momentum(step, total_steps)``; ``steps_done`` (the
    schedules' position) is kept in the state dict. Subclasses set ``start_momentum`` and give
    :meth:`momentum_pairs`."""

    steps_done: int = 0
    start_momentum: float = 0.996

    def momentum(self, step: int, total_steps: int) -> float:
        """The EMA momentum after step ``step`` (0-based): cosine from ``start_momentum`` to 1."""
        return cosine_ramp(self.start_momentum, 1.0, step, total_steps)

    def momentum_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(the EMA copy's parameters, the trained parameters they follow)``, in matching order."""
        raise NotImplementedError

    def after_step(self, global_step: int, total_steps: int) -> None:
        """The EMA update with the momentum of the step just done (``global_step`` steps done)."""
        ema_update(*self.momentum_pairs(), self.momentum(global_step - 1, total_steps))
        self.steps_done = global_step

    def get_extra_state(self) -> dict:
        return {"steps_done": self.steps_done}

    def set_extra_state(self, state: dict) -> None:
        self.steps_done = int(state["steps_done"])


def without_drop_path(model: nn.Module) -> nn.Module:
    """``model`` with every stochastic-depth module replaced by an identity, in place (DINO's teacher is built
    without drop path; the student keeps it). The state dict's names do not change: DropPath holds no weights."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, DropPath):
                setattr(module, name, nn.Identity())
    return model


class DINOTask(MomentumTeacherTask):
    """DINO self-distillation over multi-crop batches ``([global_1, global_2, local_1, ...], labels)``.

    Args:
        model: the student, a :class:`~sarvit.train.regularizers.RegularizedModel` around a ViT built with
            ``num_classes=0`` (its forward gives the [CLS] features) and ``dynamic_img_size=True`` (local crops).
        steps_per_epoch, epochs: the schedule's length (momentum, temperature, frozen last layer).
        out_dim, hidden_dim, bottleneck_dim, use_bn_in_head, norm_last_layer: the heads (:class:`DINOHead`).
        freeze_last_layer: epochs during which the student head's last layer gets no gradient.
        momentum_teacher: the teacher's EMA momentum at step 0, cosine to 1 at the end.
        teacher_temp, warmup_teacher_temp, warmup_teacher_temp_epochs: the teacher's temperature schedule.
        student_temp: the student's temperature (0.1). centre_momentum: the centre's EMA momentum (0.9).
    """

    name = "dino"

    def __init__(self, model: nn.Module, *, steps_per_epoch: int, epochs: int, out_dim: int = 65536,
                 hidden_dim: int = 2048, bottleneck_dim: int = 256, use_bn_in_head: bool = False,
                 norm_last_layer: bool = True, freeze_last_layer: int = 1, momentum_teacher: float = 0.996,
                 teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04, warmup_teacher_temp_epochs: int = 0,
                 student_temp: float = 0.1, centre_momentum: float = 0.9) -> None:
        super().__init__(model)
        self.head = DINOHead(model.model.embed_dim, out_dim, hidden_dim, bottleneck_dim, use_bn=use_bn_in_head,
                             norm_last_layer=norm_last_layer)
        self.teacher = without_drop_path(copy.deepcopy(model.model))
        self.teacher_head = copy.deepcopy(self.head)
        for parameter in (*self.teacher.parameters(), *self.teacher_head.parameters()):
            parameter.requires_grad_(False)
        self.register_buffer("centre", torch.zeros(1, out_dim))
        self.steps_per_epoch, self.epochs = int(steps_per_epoch), int(epochs)
        self.freeze_steps = int(freeze_last_layer) * self.steps_per_epoch
        self.start_momentum, self.student_temp, self.centre_momentum = momentum_teacher, student_temp, centre_momentum
        self.temperatures = (warmup_teacher_temp, teacher_temp, int(warmup_teacher_temp_epochs))
        self.steps_done = 0  # the schedules' position, kept in the state dict (get_extra_state)

    def no_weight_decay(self) -> set[str]:
        """None: DINO decays every weight of two or more dimensions, the position embedding and [CLS] token included
        (timm's optimizer factory still leaves biases and norms undecayed, as DINO does)."""
        return set()

    def teacher_temp(self) -> float:
        """The teacher temperature of the current epoch."""
        warmup, temp, warmup_epochs = self.temperatures
        return teacher_temperature(self.steps_done // self.steps_per_epoch, warmup, temp, warmup_epochs)

    def forward(self, batch) -> TaskOutput:
        crops, _ = batch
        if not isinstance(crops, (list, tuple)) or len(crops) < 2:
            raise ValueError("DINOTask expects a batch of multi-crop views: ([global_1, global_2, local...], labels)")
        global_crops = torch.cat(list(crops[:2]))
        with torch.no_grad():
            teacher_out = self.teacher_head(self.teacher(global_crops))
        features, terms = self.model(global_crops)  # SAR's terms on the student's global crops
        if len(crops) > 2:
            features = torch.cat([features, self.model.model(torch.cat(list(crops[2:])))])
        student_out = self.head(features, freeze_last_layer=self.training and self.steps_done < self.freeze_steps)
        temp = self.teacher_temp()
        loss = dino_loss(student_out, teacher_out, self.centre, self.student_temp, temp, num_crops=len(crops))
        per_image, of_mean = teacher_entropies(teacher_out, self.centre, temp)  # before the centre moves
        if self.training:
            centre_update(self.centre, teacher_out, self.centre_momentum)
        return TaskOutput(loss=loss, terms=terms, metrics={"teacher_temp": loss.new_tensor(temp),
                                                           "teacher_entropy": per_image,
                                                           "teacher_mean_entropy": of_mean})

    def momentum_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return ([*self.teacher.parameters(), *self.teacher_head.parameters()],
                [*self.model.model.parameters(), *self.head.parameters()])

    def evaluation_model(self) -> nn.Module:
        return self.teacher
