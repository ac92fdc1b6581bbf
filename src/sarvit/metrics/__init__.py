"""Evaluation figures of the attention, as batched functions and torchmetrics Metrics (device sums, reduced
over processes by torchmetrics; no host sync until ``compute``).

* :func:`mass_threshold` - DINO's "keep 60 % of the mass" threshold of ``[B, H, h, w]`` maps.
* :func:`jaccard`, :func:`segmentation_jaccard`, :class:`AttentionJaccard` - IoU of thresholded attention
  with ground-truth foreground, best head per image, mean over a dataset.
* :func:`head_statistics`, :class:`HeadStats` - per-head spatial entropy and component counts.
* :func:`knn_scores`, :func:`topk_accuracy` - weighted k-NN classification of frozen features (DINO's).
"""
from .heads import HeadStatistics, HeadStats, head_statistics
from .knn import knn_scores, topk_accuracy
from .segmentation import AttentionJaccard, SegmentationJaccard, jaccard, mass_threshold, segmentation_jaccard

__all__ = [
    "AttentionJaccard", "HeadStatistics", "HeadStats", "SegmentationJaccard", "head_statistics", "jaccard",
    "knn_scores", "mass_threshold", "segmentation_jaccard", "topk_accuracy",
]
