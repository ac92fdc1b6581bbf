"""The journal's hybrid VTs as timm-registered models (``timm.create_model(name)`` after ``import sarvit``)."""
from .cvt import ConvAttention, CvTStem, cvt_13
from .pvt import PVTStem, pvt_small
from .t2t import T2TEmbed, t2t_vit_14

__all__ = ["ConvAttention", "CvTStem", "PVTStem", "T2TEmbed", "cvt_13", "pvt_small", "t2t_vit_14"]
