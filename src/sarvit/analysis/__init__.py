"""What SAR does to the last-block attention: DINO's segmentation Jaccard, pictures, per-head entropy reports.

The figures themselves (mass threshold, Jaccard, head statistics, as functions and torchmetrics Metrics) live
in :mod:`sarvit.metrics`; loading a checkpoint into a model in :mod:`sarvit.checkpoints`. This room adds:

* :func:`attention_maps` - ``(logits, S, A)`` of a sarvit model for a batch; :func:`upsample_maps`.
* :func:`segmentation_report`, :func:`head_report`, :func:`draw_attention` - the commands' bodies.
* :func:`format_head_table`; :func:`attention_figure` (from :mod:`sarvit.figures`, which training draws with too).

Commands (``sarvit segment-eval | visualize | analyze``) live in :mod:`sarvit.analysis.commands`.
"""
from ..figures import attention_figure, denormalize, save_figure, upsample_maps
from .attention import attention_maps
from .report import format_head_table
from .runs import draw_attention, head_report, segmentation_report

__all__ = [
    "attention_figure",
    "attention_maps",
    "denormalize",
    "draw_attention",
    "format_head_table",
    "head_report",
    "save_figure",
    "segmentation_report",
    "upsample_maps",
]
