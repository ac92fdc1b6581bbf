"""Self-supervised pretraining with SAR: DINO and MoCo-v3 as training tasks (:mod:`sarvit.train.tasks`'s
interface), run by ``sarvit pretrain``."""
from .dino import DINOTask, centre_update, dino_loss, ema_update, teacher_entropies, without_drop_path
from .heads import DINOHead, bn_mlp
from .mocov3 import MoCoV3Task, contrastive_loss, fix_patch_projection_and_position, spread, symmetrised_loss
from .multicrop import MultiCrop
from .schedules import CosineWeightDecay, cosine_ramp, teacher_temperature

__all__ = ["CosineWeightDecay", "DINOTask", "DINOHead", "MoCoV3Task", "MultiCrop", "bn_mlp", "centre_update",
           "contrastive_loss", "cosine_ramp", "dino_loss", "ema_update", "fix_patch_projection_and_position",
           "spread", "symmetrised_loss", "teacher_entropies", "teacher_temperature", "without_drop_path"]
