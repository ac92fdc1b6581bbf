"""AttentionJaccard / HeadStats sum a sharded evaluation over torch.distributed processes (gloo, CPU), through
torchmetrics' own reduction (``dist_reduce_fx="sum"``). Two spawned processes, ~25 s on 2 cores."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sarvit.metrics import AttentionJaccard, HeadStats

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def _data():
    generator = torch.Generator().manual_seed(0)
    attention = torch.rand(6, 3, 4, 4, generator=generator).softmax(-1)
    foreground = torch.rand(6, 16, 16, generator=generator) > 0.5
    S = torch.randn(6, 3, 5, 5, generator=generator)
    return attention, foreground, S


def _shard_worker(rank, world_size, port, folder):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        attention, foreground, S = _data()
        shard = slice(4 * rank, 4 * rank + 4)  # uneven shards: 4 images and 2
        jaccard, stats = AttentionJaccard(num_heads=3), HeadStats(num_heads=3)
        jaccard.update(attention[shard], foreground[shard])
        stats.update(S[shard])
        torch.save((jaccard.compute(), stats.compute()), f"{folder}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_metrics_reduce_over_processes(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # spawn, not fork: a forked child of a process that already ran torch CPU kernels can deadlock in OpenMP
    mp.spawn(_shard_worker, args=(2, port, str(tmp_path)), nprocs=2)
    attention, foreground, S = _data()
    whole_jaccard, whole_stats = AttentionJaccard(num_heads=3), HeadStats(num_heads=3)
    whole_jaccard.update(attention, foreground)
    whole_stats.update(S)
    expected_jaccard, expected_stats = whole_jaccard.compute(), whole_stats.compute()
    for rank in (0, 1):
        got_jaccard, got_stats = torch.load(tmp_path / f"{rank}.pt", weights_only=False)
        for got, expected in ((got_jaccard, expected_jaccard), (got_stats, expected_stats)):
            assert got.keys() == expected.keys() and got["count"].item() == 6
            for key in expected:  # every value a tensor: sums reduced over both processes
                torch.testing.assert_close(got[key], expected[key])
