"""sarvit.metrics: DINO's mass threshold, Jaccard, segmentation Jaccard, head statistics, their torchmetrics Metrics."""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from sarvit.analysis import upsample_maps
from sarvit.metrics import (
    AttentionJaccard,
    HeadStats,
    head_statistics,
    jaccard,
    mass_threshold,
    segmentation_jaccard,
)

# The CUDA cases carry the `cuda` marker, so `pytest -m cuda` runs them (and they skip cleanly without CUDA).
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                      reason="needs CUDA")])]


def maps(values, h, w):
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, h, w)


def dino_threshold(attention, keep):
    """DINO's visualize_attention.py threshold, written out for one batch of untied maps."""
    b, h, y, x = attention.shape
    flat = attention.reshape(b * h, y * x)
    val, idx = torch.sort(flat)
    val = val / val.sum(dim=1, keepdim=True)
    th = torch.cumsum(val, dim=1) > (1 - keep)
    out = torch.zeros_like(th)
    out.scatter_(1, idx, th)
    return out.reshape(b, h, y, x)


# ----------------------------------------------------------------------------------------- mass_threshold
class TestMassThreshold:
    def test_keeps_the_top_values_until_the_mass_is_reached(self):
        a = maps([0.5, 0.3, 0.1, 0.1], 2, 2)
        assert mass_threshold(a, 0.6).flatten().tolist() == [True, True, False, False]
        assert mass_threshold(a, 0.45).flatten().tolist() == [True, False, False, False]

    def test_exact_boundary_stops_when_the_mass_is_reached(self):
        # mass 4/8 + 2/8 = 0.75 reaches keep=0.75 exactly: the next value is not needed (DINO agrees).
        a = maps([4.0, 2.0, 1.0, 0.0, 1.0, 0.0], 2, 3)
        assert mass_threshold(a, 0.75).flatten().tolist() == [True, True, False, False, False, False]
        assert torch.equal(mass_threshold(a, 0.75), dino_threshold(a, 0.75))

    def test_ties_at_the_cut_are_all_kept(self):
        # keep=0.8 needs one of the two 1's; both are kept (a value threshold, independent of position).
        a = maps([4.0, 1.0, 2.0, 1.0], 2, 2)
        assert mass_threshold(a, 0.8).flatten().tolist() == [True, True, True, True]
        swapped = maps([1.0, 4.0, 1.0, 2.0], 2, 2)
        assert mass_threshold(swapped, 0.8).flatten().tolist() == [True, True, True, True]
        # Ties above the cut change nothing: two 3's are both needed anyway.
        assert mass_threshold(maps([3.0, 3.0, 1.0, 1.0], 2, 2), 0.7).flatten().tolist() == [True, True, False, False]

    def test_uniform_map_is_kept_entirely(self):
        for keep in (0.1, 0.6, 1.0):
            assert mass_threshold(torch.full((2, 3, 4, 4), 1.0 / 16), keep).all()

    def test_zero_map_keeps_nothing_and_zeros_are_never_needed(self):
        assert not mass_threshold(torch.zeros(1, 2, 3, 3)).any()
        a = maps([0.0, 0.5, 0.0, 0.5], 2, 2)
        assert mass_threshold(a, 1.0).flatten().tolist() == [False, True, False, True]

    def test_kept_mass_reaches_keep_and_is_minimal(self):
        torch.manual_seed(0)
        a = torch.rand(4, 6, 7, 7) ** 4
        for keep in (0.3, 0.6, 0.9):
            kept = mass_threshold(a, keep)
            total = a.sum(dim=(-2, -1))
            mass = (a * kept).sum(dim=(-2, -1))
            assert (mass >= keep * total - 1e-6).all()
            # dropping the smallest kept value falls below keep
            smallest = torch.where(kept, a, torch.full_like(a, float("inf"))).flatten(-2).amin(-1)
            assert (mass - smallest < keep * total).all()

    @pytest.mark.parametrize("keep", [0.2, 0.6, 0.95])
    def test_matches_dino_on_untied_maps(self, keep):
        torch.manual_seed(1)
        a = torch.rand(3, 4, 14, 14).softmax(dim=-1)
        assert torch.equal(mass_threshold(a, keep), dino_threshold(a, keep))

    @pytest.mark.parametrize("device", DEVICES)
    @pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
    def test_dtype_and_device(self, device, dtype):
        a = maps([0.5, 0.3, 0.1, 0.1], 2, 2).to(device, dtype).expand(2, 3, 2, 2)
        out = mass_threshold(a, 0.6)
        assert out.dtype == torch.bool and out.device.type == device and out.shape == (2, 3, 2, 2)
        assert out.reshape(6, 4).tolist() == [[True, True, False, False]] * 6

    def test_door_checks(self):
        with pytest.raises(ValueError, match="keep"):
            mass_threshold(torch.rand(1, 1, 2, 2), 0.0)
        with pytest.raises(ValueError, match=r"\[B, H, h, w\]"):
            mass_threshold(torch.rand(4, 4), 0.6)


# ----------------------------------------------------------------------------------------- jaccard
def b(rows):
    return torch.tensor(rows, dtype=torch.bool)


class TestJaccard:
    def test_known_ious(self):
        pred = b([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 1, 1]])
        target = b([[0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0]])
        torch.testing.assert_close(jaccard(pred, target), torch.tensor([1 / 3, 1.0, 0.0, 0.5]))

    def test_two_dimensional_masks(self):
        pred = torch.zeros(2, 4, 4, dtype=torch.bool)
        target = torch.zeros(2, 4, 4, dtype=torch.bool)
        pred[0, :2, :2] = True  # 4 pixels
        target[0, 1:3, 1:3] = True  # 4 pixels, 1 shared -> 1 / 7
        pred[1, :, :2] = True
        target[1] = True  # 8 / 16
        torch.testing.assert_close(jaccard(pred, target), torch.tensor([1 / 7, 0.5]))

    def test_invalid_pixels_are_ignored(self):
        pred = b([[1, 1, 1, 0]])
        target = b([[0, 1, 1, 0]])
        valid = b([[0, 1, 1, 1]])  # the only disagreement is void
        torch.testing.assert_close(jaccard(pred, target, valid), torch.tensor([1.0]))
        # whatever pred says on void pixels does not matter
        torch.testing.assert_close(jaccard(b([[0, 1, 1, 0]]), target, valid), torch.tensor([1.0]))

    def test_empty_union(self):
        empty = torch.zeros(2, 3, dtype=torch.bool)
        torch.testing.assert_close(jaccard(empty, empty), torch.tensor([1.0, 1.0]))
        torch.testing.assert_close(jaccard(empty, empty, empty=0.0), torch.tensor([0.0, 0.0]))
        only_void = b([[1, 0, 0]])
        torch.testing.assert_close(jaccard(only_void, torch.zeros_like(only_void), b([[0, 1, 1]])), torch.tensor([1.0]))

    def test_broadcast_target_over_heads(self):
        pred = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
        pred[0, 0, 0] = True  # head 0: top row
        pred[0, 1] = True  # head 1: everything
        target = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
        target[0, 0, 0] = True
        torch.testing.assert_close(jaccard(pred.reshape(2, 2, 2), target.expand(1, 2, 2, 2).reshape(2, 2, 2)),
                                   torch.tensor([1.0, 0.5]))

    def test_type_checks(self):
        with pytest.raises(TypeError, match="^pred must be a bool tensor"):
            jaccard(torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool))


# ----------------------------------------------------------------------------------------- segmentation_jaccard
class TestSegmentationJaccard:
    def test_known_heads_and_best_head(self):
        # 2x2 patch grid on a 4x4 image: the foreground is the top-left patch.
        attention = torch.zeros(1, 3, 2, 2)
        attention[0, 0, 1, 1] = 1.0  # head 0: bottom-right patch -> IoU 0
        attention[0, 1, 0, 0] = 1.0  # head 1: top-left patch -> IoU 1
        attention[0, 2] = 0.25  # head 2: uniform -> everything kept -> 4 / 16
        foreground = torch.zeros(1, 4, 4, dtype=torch.bool)
        foreground[0, :2, :2] = True
        out = segmentation_jaccard(attention, foreground)
        torch.testing.assert_close(out.per_head, torch.tensor([[0.0, 1.0, 0.25]]))
        torch.testing.assert_close(out.best, torch.tensor([1.0]))
        assert out.best_head.tolist() == [1]
        assert out.masks.shape == (1, 3, 2, 2)

    def test_void_pixels_are_ignored(self):
        attention = torch.zeros(1, 1, 2, 2)
        attention[0, 0, 0, 0] = 1.0
        foreground = torch.zeros(1, 4, 4, dtype=torch.bool)
        foreground[0, :2, :1] = True  # half of the attended patch
        valid = torch.ones(1, 4, 4, dtype=torch.bool)
        assert segmentation_jaccard(attention, foreground).per_head.item() == pytest.approx(0.5)
        valid[0, :2, 1] = False  # the other half is void (object boundary)
        assert segmentation_jaccard(attention, foreground, valid).per_head.item() == pytest.approx(1.0)

    @pytest.mark.parametrize("device", DEVICES)
    @pytest.mark.parametrize("size", [16, 20, 23, 7])
    def test_equals_pixel_jaccard_of_nearest_upsampled_masks(self, device, size):
        torch.manual_seed(size)
        attention = torch.rand(3, 4, 5, 4, device=device).softmax(-1)
        foreground = torch.rand(3, size, size, device=device) > 0.5
        valid = torch.rand(3, size, size, device=device) > 0.2
        out = segmentation_jaccard(attention, foreground, valid, keep=0.6)
        up = upsample_maps(mass_threshold(attention, 0.6), size)  # [3, 4, S, S]
        expected = jaccard(
            up.reshape(12, size, size),
            (foreground & valid)[:, None].expand(3, 4, size, size).reshape(12, size, size),
            valid[:, None].expand(3, 4, size, size).reshape(12, size, size),
        ).reshape(3, 4)
        torch.testing.assert_close(out.per_head, expected)
        assert out.per_head.device.type == device

    def test_patch_size_multiple_is_dino_repeat(self):
        mask = torch.tensor([[True, False], [False, True]]).reshape(1, 1, 2, 2)
        up = upsample_maps(mask, 6)
        assert torch.equal(up[0, 0], mask[0, 0].repeat_interleave(3, 0).repeat_interleave(3, 1))

    def test_shape_checks(self):
        with pytest.raises(ValueError, match="foreground"):
            segmentation_jaccard(torch.rand(2, 3, 2, 2), torch.ones(3, 4, 4, dtype=torch.bool))


class TestAttentionJaccard:
    def test_accumulates_means_over_batches(self):
        torch.manual_seed(0)
        attention = torch.rand(10, 3, 4, 4).softmax(-1)
        foreground = torch.rand(10, 16, 16) > 0.6
        meter = AttentionJaccard(num_heads=3, keep=0.6)
        meter.update(attention[:4], foreground[:4])
        meter.update(attention[4:], foreground[4:])
        whole = segmentation_jaccard(attention, foreground)
        result = meter.compute()
        assert all(isinstance(value, torch.Tensor) for value in result.values())  # loggable by any framework
        assert result["count"].item() == 10
        assert result["jaccard"].item() == pytest.approx(whole.best.mean().item(), abs=1e-6)
        assert result["per_head"].tolist() == pytest.approx(whole.per_head.mean(0).tolist(), abs=1e-6)
        assert result["best_head_counts"].sum().item() == 10 and result["best_head_counts"].dtype == torch.long
        meter.reset()
        empty = meter.compute()
        assert empty["count"].item() == 0 and math.isnan(empty["jaccard"]) and empty["per_head"].isnan().all()


# ----------------------------------------------------------------------------------------- head statistics
def blob_maps(batch=4, heads=3, size=14, seed=0):
    """One Gaussian blob per head at a random place: a SAR-like map."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:size, :size]
    out = np.zeros((batch, heads, size, size), dtype=np.float32)
    for i in range(batch):
        for h in range(heads):
            cy, cx = rng.uniform(3, size - 3, 2)
            out[i, h] = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 6.0)
    return torch.from_numpy(out)


def scattered_maps(batch=4, heads=3, size=14, seed=0):
    """Isolated single-patch peaks on a lattice (never 8-adjacent): a widely spread, plain-ViT-like map."""
    rng = np.random.default_rng(seed)
    out = rng.uniform(0.0, 0.1, (batch, heads, size, size)).astype(np.float32)
    out[:, :, ::3, ::3] += rng.uniform(0.8, 1.0, (batch, heads, (size + 2) // 3, (size + 2) // 3))
    return torch.from_numpy(out)


class TestHeadStatistics:
    def test_known_maps(self):
        S = torch.zeros(1, 2, 4, 4)
        S[0, 0, 0, 0] = S[0, 0, 3, 3] = 1.0  # two equal blobs
        S[0, 1, 1:3, 1:3] = 1.0  # one blob
        stats = head_statistics(S)
        assert stats.components.tolist() == [[2, 1]]
        torch.testing.assert_close(stats.entropy, torch.tensor([[math.log(2), 0.0]]), atol=1e-6, rtol=0)

    def test_components_match_scipy(self):
        S = scattered_maps(2, 2, 10, seed=3) + blob_maps(2, 2, 10, seed=4)
        stats = head_statistics(S)
        for i in range(2):
            for h in range(2):
                m = S[i, h]
                _, n = ndimage.label((m > m.mean()).numpy(), structure=np.ones((3, 3)))
                assert stats.components[i, h].item() == n

    def test_tells_blob_like_from_scattered(self):
        blobs, scattered = head_statistics(blob_maps()), head_statistics(scattered_maps())
        assert (blobs.components == 1).all()
        assert (blobs.entropy < 1e-3).all()
        assert (scattered.components >= 20).all()
        assert (scattered.entropy > math.log(10)).all()
        meter_blob, meter_scattered = HeadStats(num_heads=3), HeadStats(num_heads=3)
        meter_blob.update(blob_maps()[:2]); meter_blob.update(blob_maps()[2:])
        meter_scattered.update(scattered_maps())
        a, s = meter_blob.compute(), meter_scattered.compute()
        assert all(isinstance(value, torch.Tensor) for value in a.values())
        assert a["count"].item() == 4 and a["components"].shape == (3,)
        assert a["components"].tolist() == [1.0] * 3 and a["single_component"].tolist() == [1.0] * 3
        assert (s["components"] >= 20).all() and (s["spatial_entropy"] > a["spatial_entropy"] + 2.0).all()
        assert (a["spatial_entropy_std"] >= 0).all()

    @pytest.mark.parametrize("device", DEVICES)
    def test_device(self, device):
        stats = head_statistics(blob_maps().to(device))
        assert stats.entropy.device.type == device and stats.components.device.type == device
        assert (stats.components == 1).all()


def test_metrics_refuse_another_head_count():
    with pytest.raises(ValueError, match="3 heads"):
        AttentionJaccard(num_heads=3).update(torch.rand(1, 2, 4, 4), torch.ones(1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="3 heads"):
        HeadStats(num_heads=3).update(torch.rand(1, 2, 4, 4))


@pytest.mark.parametrize("device", DEVICES)
def test_metric_states_stay_on_the_device(device):
    metric = AttentionJaccard(num_heads=3).to(device)
    metric.update(torch.rand(2, 3, 4, 4, device=device), torch.ones(2, 8, 8, dtype=torch.bool, device=device))
    assert metric.head_sum.device.type == device and metric.count.device.type == device
    assert metric.compute()["count"].item() == 2 and metric.compute()["jaccard"].device.type == device
