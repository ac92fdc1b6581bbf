"""JaccardMeter / HeadStatsMeter.synchronize() sum a sharded evaluation over torch.distributed processes (gloo, CPU).

Opt-in (``SARVIT_TEST_DISTRIBUTED=1``): two spawned processes re-import torch and sarvit, ~25 s on 2 cores.
"""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available"),
    pytest.mark.skipif(os.environ.get("SARVIT_TEST_DISTRIBUTED") != "1",
                       reason="spawns 2 processes (~25 s); set SARVIT_TEST_DISTRIBUTED=1 to run"),
]


def _data():
    generator = torch.Generator().manual_seed(0)
    attention = torch.rand(6, 3, 4, 4, generator=generator).softmax(-1)
    foreground = torch.rand(6, 16, 16, generator=generator) > 0.5
    S = torch.randn(6, 3, 5, 5, generator=generator)
    return attention, foreground, S


def _shard_worker(rank, world_size, port, folder):
    from sarvit.analysis import HeadStatsMeter, JaccardMeter

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        attention, foreground, S = _data()
        shard = slice(3 * rank, 3 * rank + 3)
        jaccard_meter, stats_meter = JaccardMeter(), HeadStatsMeter()
        jaccard_meter.update(attention[shard], foreground[shard])
        stats_meter.update(S[shard])
        jaccard_meter.synchronize()
        stats_meter.synchronize()
        torch.save((jaccard_meter.compute(), stats_meter.compute()), f"{folder}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_meters_synchronize_over_processes(tmp_path):
    from sarvit.analysis import HeadStatsMeter, JaccardMeter

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # spawn, not fork: a forked child of a process that already ran torch CPU kernels can deadlock in OpenMP
    mp.spawn(_shard_worker, args=(2, port, str(tmp_path)), nprocs=2)
    attention, foreground, S = _data()
    whole_jaccard, whole_stats = JaccardMeter(), HeadStatsMeter()
    whole_jaccard.update(attention, foreground)
    whole_stats.update(S)
    for rank in (0, 1):
        got_jaccard, got_stats = torch.load(tmp_path / f"{rank}.pt", weights_only=False)
        assert got_jaccard["count"] == 6
        assert got_jaccard["jaccard"] == pytest.approx(whole_jaccard.compute()["jaccard"])
        assert got_jaccard["per_head"] == pytest.approx(whole_jaccard.compute()["per_head"])
        assert got_jaccard["best_head_counts"] == whole_jaccard.compute()["best_head_counts"]
        assert got_stats["count"] == 6 and got_stats["mean"] == pytest.approx(whole_stats.compute()["mean"])
