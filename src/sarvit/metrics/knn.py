"""Weighted k-nearest-neighbour classification of features (DINO's k-NN evaluation of frozen networks)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_number, check_tensor
from ..errors import SarvitError

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
    check_tensor(train_features, "train_features", "N, D", dtype="float", nonempty=True, data=True)
    check_tensor(test_features, "test_features", "M, D", dtype="float", data=True)
    if train_features.shape[1] != test_features.shape[1]:
        raise SarvitError(f"test_features must have the D = {train_features.shape[1]} of train_features, got shape "
                          f"{tuple(test_features.shape)}")
    check_tensor(train_labels, "train_labels", "N", data=True)
    if train_labels.shape != train_features.shape[:1]:
        raise SarvitError(f"train_labels must be [N] = [{train_features.shape[0]}], got {tuple(train_labels.shape)}")
    check_number(num_classes, "num_classes", low=1, integer=True)
    check_number(k, "k", low=1, high=train_features.shape[0], integer=True)
    check_number(temperature, "temperature", low=0, low_open=True)
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
    check_tensor(scores, "scores", "M, C", dtype="float", nonempty=True, data=True)
    check_tensor(labels, "labels", "M", data=True)
    if labels.shape != scores.shape[:1]:
        raise SarvitError(f"labels must be [M] = [{scores.shape[0]}], got {tuple(labels.shape)}")
    for k in ks:
        check_number(k, "ks", low=1, integer=True)
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = ranked == labels.view(-1, 1)
    return {f"top{k}": 100.0 * hits[:, :k].any(dim=1).float().mean().item() for k in ks}
