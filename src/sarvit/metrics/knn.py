"""Weighted k-nearest-neighbour classification of features (DINO's k-NN evaluation of frozen networks)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["knn_scores", "topk_accuracy"]


def knn_scores(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
               num_classes: int, k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class scores of each test feature: its ``k`` most similar training features (cosine similarity of the
    L2-normalised features) vote for their labels with weight ``exp(similarity / temperature)``.

    Shapes: ``train_features [N, D]``, ``train_labels [N]`` (int), ``test_features [M, D]`` -> ``[M, num_classes]``.
    The test set is processed ``chunk`` rows at a time (the ``[chunk, N]`` similarities fit in memory).

    Example:
        >>> train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> scores = knn_scores(train, torch.tensor([0, 0, 1]), torch.tensor([[1.0, 0.2]]), 2, k=2)
        >>> scores.argmax(dim=1).tolist()
        [0]
    """
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"train_features and test_features must be [N, D] and [M, D], got "
                         f"{tuple(train_features.shape)} and {tuple(test_features.shape)}")
    if train_labels.shape != train_features.shape[:1]:
        raise ValueError(f"train_labels must be [N] = [{train_features.shape[0]}], got {tuple(train_labels.shape)}")
    if not 1 <= k <= train_features.shape[0]:
        raise ValueError(f"k must be in 1..{train_features.shape[0]} (the training features), got {k}")
    bank = F.normalize(train_features.float(), dim=1)
    queries = F.normalize(test_features.float(), dim=1)
    scores = []
    for start in range(0, queries.shape[0], chunk):
        similarity, index = (queries[start:start + chunk] @ bank.T).topk(k, dim=1)
        votes = F.one_hot(train_labels[index].long(), num_classes).float()       # [m, k, C]
        scores.append((votes * (similarity / temperature).exp().unsqueeze(-1)).sum(dim=1))
    return torch.cat(scores)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """``{"top1": %, "top5": %}`` of ``scores [M, C]`` against ``labels [M]`` (k capped at C).

    >>> topk_accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]), ks=(1, 2))
    {'top1': 50.0, 'top2': 100.0}
    """
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = ranked == labels.view(-1, 1)
    return {f"top{k}": 100.0 * hits[:, :k].any(dim=1).float().mean().item() for k in ks}
