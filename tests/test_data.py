"""Dataset registry, on-disk loaders, subsets and DeiT transforms (tiny fixtures in the real formats)."""
from collections import Counter

import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from sarvit.data import DATASET_NAMES, SyntheticObjects, build_dataset, build_transform, sample_targets
from sarvit.errors import SarvitError


# --- names -------------------------------------------------------------------------------------------------


def test_unknown_name_lists_the_known_names():
    with pytest.raises(SarvitError) as error:
        build_dataset("mnist", "/nowhere", train=True)
    assert "mnist" in str(error.value)
    for name in DATASET_NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize("spelling, expected_classes", [("CIFAR", 100), ("cifar10", 10), ("CIFAR10", 10), ("Cifar100", 100)])
def test_reference_spellings_are_accepted(data_writers, tmp_path, spelling, expected_classes):
    data_writers.cifar10(tmp_path)
    data_writers.cifar100(tmp_path)
    _, num_classes = build_dataset(spelling, tmp_path, train=False)
    assert num_classes == expected_classes


def test_imnet_alias_is_imagenet(data_writers, tmp_path):
    data_writers.image_folder(tmp_path, {"n01": 2, "n02": 2})
    dataset, num_classes = build_dataset("IMNET", tmp_path, train=True)
    assert num_classes == 2 and len(dataset) == 4


def test_synthetic_is_the_default_and_ignores_root():
    dataset, num_classes = build_dataset(root="/does/not/matter", train=True, num_samples=30)
    assert isinstance(dataset, SyntheticObjects) and num_classes == 10 and len(dataset) == 30
    image, target = dataset[3]
    assert isinstance(image, Image.Image) and target == 3


def test_synthetic_defaults_and_options():
    train, _ = build_dataset("synthetic", train=True)
    val, _ = build_dataset("synthetic", train=False, num_classes=None)  # None = default, as a CLI passes it
    assert (len(train), len(val)) == (5000, 1000)
    small, num_classes = build_dataset("synthetic", train=True, num_classes=4, img_size=32, synthetic_seed=3)
    assert num_classes == 4 and small.img_size == 32 and small.seed == 3
    with pytest.raises(SarvitError, match="wrong_option"):
        build_dataset("synthetic", train=True, wrong_option=1)


def test_synthetic_options_with_another_dataset_are_refused(data_writers, tmp_path):
    data_writers.cifar10(tmp_path)
    with pytest.raises(SarvitError, match="only apply to the synthetic dataset"):
        build_dataset("cifar10", tmp_path, train=True, num_classes=5)


# --- torchvision formats -----------------------------------------------------------------------------------


def test_cifar10_real_format(data_writers, tmp_path):
    train_labels = data_writers.cifar10(tmp_path)
    train, num_classes = build_dataset("cifar10", tmp_path, train=True, transform=build_transform(True, 32))
    test, _ = build_dataset("cifar10", tmp_path, train=False)
    assert num_classes == 10 and len(train) == 100 and len(test) == 20
    assert sample_targets(train) == train_labels
    assert train.classes[0] == "airplane"
    image, target = train[0]
    assert image.shape == (3, 32, 32) and target == train_labels[0]
    assert isinstance(test[0][0], Image.Image)


def test_cifar100_real_format_and_data_path_inside_the_folder(data_writers, tmp_path):
    train_labels = data_writers.cifar100(tmp_path)
    train, num_classes = build_dataset("cifar100", tmp_path / "cifar-100-python", train=True)
    assert num_classes == 100 and len(train) == 300 and sample_targets(train) == train_labels


@pytest.mark.parametrize("name, files", [
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("cifar100", "cifar-100-python"),
    ("flowers", "flowers-102"),
    ("pets", "oxford-iiit-pet"),
])
def test_missing_torchvision_dataset_names_the_path(tmp_path, name, files):
    missing_root = tmp_path / "no_such_dir"
    with pytest.raises(SarvitError) as error:
        build_dataset(name, missing_root, train=True)
    message = str(error.value)
    assert str(missing_root) in message and files.split("/")[0] in message and "--download" in message


def test_cifar10_with_a_missing_batch_names_it(data_writers, tmp_path):
    data_writers.cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(SarvitError, match="not found: data_batch_3"):
        build_dataset("cifar10", tmp_path, train=True)


def test_cifar10_malformed_batch_is_a_sarvit_error(data_writers, tmp_path):
    data_writers.cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(SarvitError, match="could not read the dataset files under .*cifar-10-batches-py"):
        build_dataset("cifar10", tmp_path, train=True)


def test_flowers_train_is_train_plus_val_and_eval_is_test(data_writers, tmp_path):
    labels = data_writers.flowers102(tmp_path)
    train, num_classes = build_dataset("flowers", tmp_path, train=True)
    test, _ = build_dataset("flowers", tmp_path, train=False, transform=build_transform(False, 48))
    assert num_classes == 102
    assert sample_targets(train) == labels["trnid"] + labels["valid"]
    assert sample_targets(test) == labels["tstid"]
    assert train[5][1] == labels["valid"][1]
    assert test[0][0].shape == (3, 48, 48)


def test_flowers_corrupt_image_names_the_file(data_writers, tmp_path):
    data_writers.flowers102(tmp_path)
    corrupt = data_writers.corrupt_image(tmp_path / "flowers-102" / "jpg" / "image_00002.jpg")
    train, _ = build_dataset("flowers", tmp_path, train=True)
    with pytest.raises(SarvitError, match=str(corrupt)):
        train[1]


def test_pets_trainval_and_test(data_writers, tmp_path):
    image_ids = data_writers.pets(tmp_path)
    train, num_classes = build_dataset("pets", tmp_path, train=True)
    test, _ = build_dataset("pets", tmp_path, train=False)
    assert num_classes == 37
    assert len(train) == len(image_ids["trainval"]) and len(test) == len(image_ids["test"])
    assert sorted(set(sample_targets(train))) == list(range(len(data_writers.pet_breeds)))
    image, target = train[2]
    assert isinstance(image, Image.Image) and target == 1


def test_pets_corrupt_image_names_the_file(data_writers, tmp_path):
    data_writers.pets(tmp_path)
    corrupt = data_writers.corrupt_image(tmp_path / "oxford-iiit-pet" / "images" / "Bengal_1.jpg")
    train, _ = build_dataset("pets", tmp_path, train=True)
    index = next(i for i, path in enumerate(train._images) if path.name == "Bengal_1.jpg")
    with pytest.raises(SarvitError, match=str(corrupt)):
        train[index]


# --- ImageFolder layouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["imagenet", "imnet-100", "folder"])
def test_image_folder_layouts(data_writers, tmp_path, name):
    data_writers.image_folder(tmp_path, {"a": 3, "b": 2, "c": 1})
    train, num_classes = build_dataset(name, tmp_path, train=True, transform=build_transform(True, 48))
    val, _ = build_dataset(name, tmp_path, train=False)
    assert num_classes == 3 and len(train) == 6 and len(val) == 6
    assert sample_targets(train) == [0, 0, 0, 1, 1, 2]
    assert train[0][0].shape == (3, 48, 48)


@pytest.mark.parametrize("name", ["imagenet", "imnet-100", "folder"])
def test_image_folder_missing_split_names_the_path(tmp_path, name):
    with pytest.raises(SarvitError) as error:
        build_dataset(name, tmp_path, train=True)
    assert str(tmp_path / "train") in str(error.value)


def test_image_folder_without_class_folders(data_writers, tmp_path):
    data_writers.corrupt_image(tmp_path / "val" / "flat_image.jpg")  # ImageNet's raw val: no class folders
    with pytest.raises(SarvitError, match="class folder"):
        build_dataset("imagenet", tmp_path, train=False)


def test_image_folder_val_classes_must_match_train(data_writers, tmp_path):
    data_writers.image_folder(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "val" / "b").rename(tmp_path / "val" / "zebra")
    with pytest.raises(SarvitError, match="missing \\['b'\\], extra \\['zebra'\\]"):
        build_dataset("folder", tmp_path, train=False)


def test_image_folder_cannot_download(tmp_path):
    with pytest.raises(SarvitError, match="cannot be downloaded"):
        build_dataset("imagenet", tmp_path, train=True, download=True)


def test_corrupt_image_in_folder_names_the_file(data_writers, tmp_path):
    data_writers.image_folder(tmp_path, {"a": 2})
    corrupt = data_writers.corrupt_image(tmp_path / "train" / "a" / "broken.jpg")
    train, _ = build_dataset("folder", tmp_path, train=True)
    index = [path for path, _ in train.samples].index(str(corrupt))
    with pytest.raises(SarvitError) as error:
        train[index]
    assert str(corrupt) in str(error.value)


def test_dataset_path_required_for_on_disk_datasets():
    with pytest.raises(SarvitError, match="--data-path"):
        build_dataset("cifar10", None, train=True)


# --- subsets -------------------------------------------------------------------------------------------------


def test_subset_keeps_a_seeded_fraction_of_every_class(data_writers, tmp_path):
    counts = {"a": 8, "b": 4, "c": 20, "d": 1}
    data_writers.image_folder(tmp_path, counts, val_count=1)
    subset, num_classes = build_dataset("folder", tmp_path, train=True, subset_ratio=0.5, seed=1)
    assert isinstance(subset, Subset) and num_classes == 4
    kept = Counter(sample_targets(subset))
    assert [kept[label] for label in range(4)] == [4, 2, 10, 1]  # round(0.5 * n), at least one per class
    again, _ = build_dataset("folder", tmp_path, train=True, subset_ratio=0.5, seed=1)
    other, _ = build_dataset("folder", tmp_path, train=True, subset_ratio=0.5, seed=2)
    assert again.indices == subset.indices
    assert other.indices != subset.indices
    assert subset.indices == sorted(subset.indices)


def test_subset_of_synthetic_and_cifar(data_writers, tmp_path):
    subset, _ = build_dataset("synthetic", train=True, num_samples=400, subset_ratio=0.25)
    assert Counter(sample_targets(subset)) == {label: 10 for label in range(10)}
    labels = data_writers.cifar10(tmp_path)
    cifar_subset, _ = build_dataset("cifar10", tmp_path, train=True, subset_ratio=0.75, seed=0)
    full = Counter(labels)
    kept = Counter(sample_targets(cifar_subset))
    assert all(kept[label] == max(1, int(0.75 * count + 0.5)) for label, count in full.items())


def test_subset_leaves_the_eval_split_whole():
    val, _ = build_dataset("synthetic", train=False, num_samples=50, subset_ratio=0.5)
    assert len(val) == 50


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_subset_ratio_out_of_range(ratio):
    with pytest.raises(SarvitError, match="subset_ratio"):
        build_dataset("synthetic", train=True, subset_ratio=ratio)


# --- transforms ----------------------------------------------------------------------------------------------


def test_train_transform_is_deits():
    small = build_transform(True, 32)  # timm's random-resized crop at every size (a photo is not cut to 32 px)
    assert "RandomResizedCrop" in type(small.transforms[0]).__name__
    large = build_transform(True, 64)
    assert "RandomResizedCrop" in type(large.transforms[0]).__name__
    assert type(large.transforms[-1]).__name__ == "RandomErasing"
    output = large(Image.new("RGB", (80, 70), (120, 30, 200)))
    assert output.shape == (3, 64, 64) and output.dtype == torch.float32


@pytest.mark.parametrize("policy", [None, "none", "None"])
def test_train_transform_without_auto_augment(policy):
    names = [type(step).__name__ for step in build_transform(True, 64, auto_augment=policy).transforms]
    assert not any("Augment" in name for name in names)


def test_eval_transform_resizes_then_center_crops():
    transform = build_transform(False, 224)
    names = [type(step).__name__ for step in transform.transforms]
    assert names == ["Resize", "CenterCrop", "MaybeToTensor", "Normalize"]
    assert transform.transforms[0].size == 256
    assert transform(Image.new("RGB", (300, 500))).shape == (3, 224, 224)
    small = build_transform(False, 32)  # at every size, so larger images are brought down to it
    assert small.transforms[0].size == 36 and small(Image.new("RGB", (512, 300))).shape == (3, 32, 32)


def test_bad_transform_options_are_sarvit_errors():
    with pytest.raises(SarvitError, match="auto-augment"):
        build_transform(True, 64, auto_augment="not-a-policy")
    with pytest.raises(SarvitError, match="interpolation"):
        build_transform(False, 64, interpolation="lanczos7")
