"""torchrun support: process-group setup from the environment, samplers, reductions, rank-0 helpers."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from ..checkpoints import RunFolder, resolve_device
from ..errors import SarvitError

__all__ = ["DistInfo", "setup_distributed", "cleanup_distributed", "ShardSampler", "all_reduce_sum", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(requested: Optional[str], local_rank: int) -> torch.device:
    """``--device`` (``auto``/None: :func:`sarvit.checkpoints.resolve_device`'s choice); a CUDA device without an
    index is this process's local rank's."""
    device = resolve_device(requested or None)  # checked: a device this torch can use
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    return device


def setup_distributed(requested_device: Optional[str] = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (a single process otherwise).

    Backend: NCCL on CUDA, gloo on CPU. Idempotent: an existing group is reused.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", world_size=world_size, rank=rank)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over the processes (in place; returned for chaining)."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def say(info: DistInfo, message: str) -> None:
    """Print ``message`` once: on rank 0."""
    if info.is_main:
        print(message, flush=True)


def broadcast_object(value, info: DistInfo):
    """Rank 0's ``value`` on every process."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def claim_run_folder(out: os.PathLike, info: DistInfo, *, resume, overwrite: bool) -> tuple[Path, Optional[RunFolder]]:
    """``(the folder as an absolute path, its RunFolder on rank 0 else None)``: rank 0 claims it
    (:meth:`RunFolder.claim`) and every process raises the same SarvitError when it is refused. Stored absolute,
    so that a resume from another working directory finds it."""
    path = Path(broadcast_object(os.path.abspath(Path(out).expanduser()), info))
    folder, refused = None, None
    if info.is_main:
        try:
            folder = RunFolder.claim(path, resume=resume, overwrite=overwrite, say=lambda message: say(info, message))
        except SarvitError as error:
            refused = str(error)
    refused = broadcast_object(refused, info)
    if refused:
        raise SarvitError(refused)
    return path, folder


class ShardSampler(Sampler[int]):
    """Evaluation sampler: process ``r`` of ``n`` reads items ``r, r + n, r + 2n, ...`` in order.

    Unlike ``DistributedSampler`` it never pads, so summed counts over the processes are exact.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return max(0, math.ceil((self.length - self.rank) / self.world_size))
