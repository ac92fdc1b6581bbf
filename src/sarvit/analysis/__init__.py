"""What SAR does to the last-block attention: DINO's segmentation Jaccard, pictures, per-head entropy reports.

Library (batched, on the maps' device; usable from a training loop):

* :func:`attention_maps` - ``(logits, S, A)`` of a sarvit model for a batch.
* :func:`mass_threshold` - DINO's "keep 60 % of the mass" threshold of ``[B, H, h, w]`` maps.
* :func:`jaccard`, :func:`segmentation_jaccard`, :class:`JaccardMeter` - IoU of thresholded attention
  with ground-truth foreground, best head per image, mean over a dataset.
* :func:`head_statistics`, :class:`HeadStatsMeter` - per-head spatial entropy and component counts.
* :func:`attention_figure` - one image's heads as a matplotlib figure.
* :func:`load_model_for_analysis` - a sarvit checkpoint or a timm state dict -> model in eval mode.

Commands (``sarvit segment-eval | visualize | analyze``) live in :mod:`sarvit.analysis.commands`.
"""
from .attention import attention_maps, mass_threshold, upsample_maps
from .loading import infer_model_kwargs, load_model_for_analysis, resolve_device
from .report import HeadStatistics, HeadStatsMeter, format_head_table, head_statistics
from .segmentation import JaccardMeter, SegmentationJaccard, jaccard, segmentation_jaccard
from .visualize import attention_figure, denormalize, save_figure

__all__ = [
    "HeadStatistics",
    "HeadStatsMeter",
    "JaccardMeter",
    "SegmentationJaccard",
    "attention_figure",
    "attention_maps",
    "denormalize",
    "format_head_table",
    "head_statistics",
    "infer_model_kwargs",
    "jaccard",
    "load_model_for_analysis",
    "mass_threshold",
    "resolve_device",
    "save_figure",
    "segmentation_jaccard",
    "upsample_maps",
]
