"""GPU-resident data (sarvit.data.gpu_resident) on the CPU device: loader behaviour, the augmentation's
distribution against the DataLoader path's, and a training run through it."""
from __future__ import annotations

import json

import pytest
import torch

from sarvit.cli import main
from sarvit.data import SyntheticObjects, build_transform
from sarvit.data.gpu_resident import (DeviceAugment, ResidentLoader, ResidentSet, decode, rand_augment_policy,
                                      square_transform)
from sarvit.errors import SarvitError
from sarvit.train import build
from sarvit.train.distributed import DistInfo

from test_train_common import config_of, one_cpu_thread, tiny_argv  # noqa: F401  (fixture)

RECIPE = dict(crop_scale=(0.35, 1.0), hflip=0.5, color_jitter=0.3, auto_augment=None, reprob=0.25, remode="pixel")


def statistics(batches: list[torch.Tensor]) -> torch.Tensor:
    """Per batch: channel means and stds, tail mass, mean |horizontal step| (sharpness), left-right balance."""
    rows = []
    for x in batches:
        steps = (x[..., 1:] - x[..., :-1]).abs().mean()
        half = x.shape[-1] // 2
        rows.append(torch.cat([x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)), (x.abs() > 2).float().mean()[None],
                               steps[None], (x[..., :half].mean() - x[..., half:].mean())[None]]))
    return torch.stack(rows)


def loader_path(images, rounds: int) -> list[torch.Tensor]:
    transform = build_transform(True, 32, **RECIPE)
    return [torch.stack([transform(image) for image in images]) for _ in range(rounds)]


def resident_path(images, rounds: int, **changes) -> list[torch.Tensor]:
    stored = torch.stack([square_transform(32)(image) for image in images])
    augment = DeviceAugment(32, **{**RECIPE, **changes})
    return [augment(stored) for _ in range(rounds)]


def test_both_paths_draw_the_same_augmentation_distribution():
    torch.manual_seed(0)
    images = [SyntheticObjects(num_samples=64, img_size=32)[index][0] for index in range(64)]
    rounds = 12
    loader, resident = statistics(loader_path(images, rounds)), statistics(resident_path(images, rounds))
    # the two means differ by less than 4 standard errors of their difference (each round is independent)
    error = ((loader.var(dim=0) + resident.var(dim=0)) / rounds).sqrt()
    gap = (loader.mean(dim=0) - resident.mean(dim=0)).abs()
    assert (gap < 4 * error + 1e-3).all(), (gap / error)
    # and the statistics can tell recipes apart: whole-image crops without erasing are another distribution
    other = statistics(resident_path(images, rounds, crop_scale=(1.0, 1.0), reprob=0.0))
    assert ((loader.mean(dim=0) - other.mean(dim=0)).abs() > 6 * error).any()


def test_device_augment_erases_one_rectangle_with_timms_fills():
    images = torch.full((32, 3, 16, 16), 128, dtype=torch.uint8)
    plain = dict(crop_scale=(1.0, 1.0), hflip=0.0, color_jitter=0.0, auto_augment=None)
    base = DeviceAugment(16, reprob=0.0, **plain)(images)
    for remode in ("pixel", "rand", "const"):
        torch.manual_seed(1)
        out = DeviceAugment(16, reprob=1.0, remode=remode, **plain)(images)
        erased = (out - base).abs().amax(dim=1) > 1e-3
        fraction = erased.float().mean(dim=(1, 2))
        assert (fraction > 0).all() and (fraction < 0.4).all(), remode  # 2-33 % of the area, rounded
        values = out.permute(0, 2, 3, 1)[erased]
        if remode == "const":
            assert (values == 0).all()
        elif remode == "rand":  # one colour per image
            first = out.permute(0, 2, 3, 1)[0][erased[0]]
            assert (first == first[0]).all()
        else:
            assert 0.8 < values.std() < 1.2


def test_rand_augment_policies_parse_and_others_are_refused():
    assert rand_augment_policy("rand-m9-mstd0.5-inc1") == (2, 9.0)
    assert rand_augment_policy("rand-n3-m7") == (3, 7.0)
    assert rand_augment_policy("none") is None and rand_augment_policy(None) is None
    with pytest.raises(SarvitError, match="RandAugment policies"):
        rand_augment_policy("augmix-m5")
    x = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8)
    assert DeviceAugment(16, auto_augment="rand-m9-mstd0.5-inc1")(x).shape == (20, 3, 16, 16)


def test_loader_shuffles_per_epoch_shards_and_drops_the_last_partial_batch():
    data = ResidentSet(torch.zeros(10, 3, 4, 4, dtype=torch.uint8), torch.arange(10))
    loaders = [ResidentLoader(data, 2, rank=rank, world_size=2, seed=3) for rank in (0, 1)]
    assert [len(loader) for loader in loaders] == [2, 2] and len(loaders[0].sampler) == 4
    seen = [torch.cat([targets for _, targets in loader]) for loader in loaders]
    assert len(set(seen[0].tolist()) | set(seen[1].tolist())) == 8 and not set(seen[0].tolist()) & set(seen[1].tolist())
    loaders[0].sampler.set_epoch(1)
    assert not torch.equal(torch.cat([targets for _, targets in loaders[0]]), seen[0])
    evaluation = ResidentLoader(data, 4, train=False, rank=1, world_size=2)
    assert torch.cat([targets for _, targets in evaluation]).tolist() == [1, 3, 5, 7, 9] and len(evaluation) == 2
    images, _ = next(iter(evaluation))
    assert images.dtype == torch.float32 and images.shape == (4, 3, 4, 4)


def test_repeated_augmentation_shows_each_image_three_times_in_a_row():
    data = ResidentSet(torch.zeros(6, 3, 4, 4, dtype=torch.uint8), torch.arange(6))
    order = torch.cat([targets for _, targets in ResidentLoader(data, 3, repeats=3)]).tolist()
    assert len(order) == 6 and order[0] == order[1] == order[2] and order[3] == order[4] == order[5]


def test_decode_stacks_every_field():
    masks = build.build_mask_dataset("synthetic", img_size=16, num_samples=5, transform=square_transform(16))[0]
    images, targets, foreground, valid = decode(masks, torch.device("cpu"))
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 16, 16)
    assert targets.tolist() == [masks[i][1] for i in range(5)] and foreground.dtype == torch.bool
    assert valid.all()


def test_auto_keeps_the_dataloader_on_cpu_and_on_decodes():
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    argv = tiny_argv("unused")[:-2]
    assert build.resident_loaders(config_of(*argv), info) is None
    train, val, num_classes = build.resident_loaders(config_of(*argv, "--resident-data", "on"), info)
    assert num_classes == 4 and len(train.dataset) == 96 and val.dataset.has_masks
    images, targets = next(iter(train))
    assert images.shape == (16, 3, 32, 32) and targets.shape == (16,)
    # evaluation reads the very images (and masks) the DataLoader path gives
    _, val_set, _ = build.build_datasets(config_of(*argv), train=False)
    resident_batch = next(iter(val))
    loader_batch = next(iter(build.eval_loader(val_set, config_of(*argv), info)))
    for resident_part, loader_part in zip(resident_batch, loader_batch):
        torch.testing.assert_close(resident_part, loader_part, rtol=0, atol=1e-6)


def test_on_with_a_pretext_is_one_clear_error(tmp_path, capsys):
    assert main(["train", *tiny_argv(tmp_path / "run", "--resident-data", "on", "--pretext", "rotation")]) == 2
    assert "GPU-resident data has no --pretext" in capsys.readouterr().err


def test_training_on_resident_data_on_cpu(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out, "--resident-data", "on", "--epochs", "1")]) == 0
    line = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert line["val_top1"] is not None and line["val_jaccard"] is not None and line["img_per_s"] > 0


def test_training_on_resident_data_from_an_image_folder(tmp_path, data_writers):
    """A folder's training split is stored larger than the input (floor(S / 0.875)) for the random crops: the
    pre-training shape check must see the evaluation transform's centre crop, not the stored square."""
    root = data_writers.image_folder(tmp_path / "folder", {"cat": 8, "dog": 8}, val_count=4)
    out = tmp_path / "run"
    argv = ["--data-set", "folder", "--data-path", str(root), "--resident-data", "on", "--epochs", "1",
            "--input-size", "32", "--patch-size", "8", "--depth", "1", "--embed-dim", "32", "--num-heads", "2",
            "--batch-size", "8", "--device", "cpu", "--output-dir", str(out)]
    assert main(["train", *argv]) == 0
    line = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert line["val_top1"] is not None and line["img_per_s"] > 0


def test_a_resident_item_is_the_centre_crop_of_its_stored_square():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).view(2, 3, 6, 6)
    item = ResidentSet(images, torch.tensor([0, 1]), crop=4)[1][0]
    full = ResidentSet(images, torch.tensor([0, 1]))[1][0]
    assert item.shape == (3, 4, 4)
    torch.testing.assert_close(item, full[:, 1:5, 1:5])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_holds_a_small_set_on_the_gpu():
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cuda", torch.cuda.current_device()))
    argv = [part if part != "cpu" else "cuda" for part in tiny_argv("unused")[:-2]]
    train, val, _ = build.resident_loaders(config_of(*argv, "--aa", "rand-m9-mstd0.5-inc1", "--reprob", "0.25"), info)
    images, targets = next(iter(train))
    assert images.is_cuda and targets.is_cuda and images.shape == (16, 3, 32, 32)
    assert next(iter(val))[2].is_cuda  # the masks too
