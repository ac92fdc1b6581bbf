"""Imagenette / Imagewoof readers on tiny trees written in the public archives' layout."""
import shutil
from pathlib import Path

import pytest
import torchvision
from PIL import Image

from sarvit import SarvitError
from sarvit.data import DATASET_NAMES, build_dataset, canonical_dataset_name
from sarvit.data.imagenette import IMAGENETTE_CLASSES, IMAGEWOOF_CLASSES, Imagenette, Imagewoof


def write_tree(root, wnids, per_class=2, splits=("train", "val")):
    """``root/<split>/<wnid>/<i>.JPEG``, each image filled with its class index so labels can be checked."""
    for split in splits:
        for index, wnid in enumerate(sorted(wnids)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (12, 10), (index * 20, i, 0)).save(folder / f"ILSVRC2012_val_{index:04d}{i}.JPEG")
    return root


@pytest.mark.parametrize("reader,classes", [(Imagenette, IMAGENETTE_CLASSES), (Imagewoof, IMAGEWOOF_CLASSES)])
@pytest.mark.parametrize("train", [True, False])
def test_reads_the_public_layout_with_readable_class_names(tmp_path, reader, classes, train):
    root = write_tree(tmp_path / f"{reader.name}2-320", classes)
    dataset = reader(root, train=train)
    assert dataset.wnids == sorted(classes) and len(dataset) == 20
    assert dataset.classes == [classes[wnid] for wnid in sorted(classes)]
    assert dataset.class_to_idx[classes[dataset.wnids[3]]] == 3
    image, label = dataset[7]  # class 3, second image
    assert image.mode == "RGB" and image.size == (12, 10) and label == 3
    assert abs(image.getpixel((5, 5))[0] - 60) <= 3  # the pixel value written for class 3 (JPEG rounding)
    assert dataset.targets == [index for index in range(10) for _ in range(2)]


def test_known_names():
    assert IMAGENETTE_CLASSES["n01440764"] == "tench" and IMAGENETTE_CLASSES["n03888257"] == "parachute"
    assert IMAGEWOOF_CLASSES["n02115641"] == "dingo" and len(IMAGEWOOF_CLASSES) == len(IMAGENETTE_CLASSES) == 10
    assert not set(IMAGENETTE_CLASSES) & set(IMAGEWOOF_CLASSES)


def test_finds_the_unpacked_archive_inside_the_data_folder(tmp_path):
    write_tree(tmp_path / "imagenette2-160", IMAGENETTE_CLASSES, per_class=1)
    dataset = Imagenette(tmp_path, train=False, transform=lambda image: image.size)
    assert dataset[0] == ((12, 10), 0) and dataset.root == str(tmp_path / "imagenette2-160" / "val")


def test_two_unpacked_archives_are_ambiguous(tmp_path):
    for folder in ("imagewoof2", "imagewoof2-160"):
        write_tree(tmp_path / folder, IMAGEWOOF_CLASSES, per_class=1, splits=("train",))
    with pytest.raises(SarvitError, match="imagewoof2, imagewoof2-160"):
        Imagewoof(tmp_path)


def test_missing_folder_names_the_expected_layout(tmp_path):
    layout = r"imagenette: expected the layout .*\{train,val\}/<WordNet id, e\.g\. n01440764>"
    with pytest.raises(SarvitError, match=layout):
        Imagenette(tmp_path / "nowhere")
    write_tree(tmp_path / "imagenette2", IMAGENETTE_CLASSES, per_class=1, splits=("train",))
    with pytest.raises(SarvitError, match="found no val/ folder"):
        Imagenette(tmp_path, train=False)


def test_wrong_subset_is_refused(tmp_path):
    write_tree(tmp_path, IMAGENETTE_CLASSES, per_class=1, splits=("train",))
    with pytest.raises(SarvitError, match="missing .*n02086240.*unexpected .*n01440764"):
        Imagewoof(tmp_path)


def test_class_folder_without_images(tmp_path):
    write_tree(tmp_path, IMAGENETTE_CLASSES, per_class=1, splits=("train",))
    for image in (tmp_path / "train" / "n03028079").iterdir():
        image.unlink()
    with pytest.raises(SarvitError, match="expected images in every class folder.*n03028079"):
        Imagenette(tmp_path)


def test_undecodable_image_is_named(tmp_path):
    write_tree(tmp_path, IMAGENETTE_CLASSES, per_class=1, splits=("val",))
    broken = tmp_path / "val" / "n01440764" / "broken.JPEG"
    broken.write_bytes(b"not a jpeg")
    dataset = Imagenette(tmp_path, train=False)
    index = [path for path, _ in dataset.samples].index(str(broken))
    with pytest.raises(SarvitError, match="broken.JPEG"):
        dataset[index]


@pytest.mark.parametrize("name,spelling,classes", [("imagenette", "Imagenette2", IMAGENETTE_CLASSES),
                                                   ("imagewoof", "imagewoof", IMAGEWOOF_CLASSES)])
def test_named_in_the_registry(tmp_path, name, spelling, classes):
    assert name in DATASET_NAMES and canonical_dataset_name(spelling) == name
    write_tree(tmp_path / f"{name}2-160", classes, per_class=2)
    train_set, num_classes = build_dataset(spelling, tmp_path, train=True, subset_ratio=0.5, seed=1)
    assert num_classes == 10 and len(train_set) == 10  # one image of each class
    val_set, _ = build_dataset(name, tmp_path / f"{name}2-160", train=False, transform=lambda image: image.size)
    assert val_set[3] == ((12, 10), 1) and val_set.classes[0] == classes[sorted(classes)[0]]
    if name == "imagewoof":  # torchvision has no Imagewoof: nothing to download it with
        with pytest.raises(SarvitError, match=f"{name}: sarvit does not download it"):
            build_dataset(name, tmp_path, train=True, download=True)
    else:  # an unpacked archive is there: nothing is fetched
        assert len(build_dataset(name, tmp_path, train=True, download=True)[0]) == 20
    with pytest.raises(SarvitError, match="expected the layout"):
        build_dataset(name, tmp_path / "empty", train=False)


def test_an_archive_folder_is_listed_by_torchvision_and_a_renamed_tree_as_an_image_folder(tmp_path, monkeypatch):
    """The same tree three ways: the archive folder, the folder holding it (torchvision's Imagenette lists both)
    and a copy under another name (listed as ImageFolder lists a tree); the same images, labels and names."""
    archive = write_tree(tmp_path / "data" / "imagenette2-320", IMAGENETTE_CLASSES)
    shutil.copytree(archive, tmp_path / "my-imagenette")
    opened = []

    class Spy(torchvision.datasets.Imagenette):
        def __init__(self, root, split, size, **kwargs):
            opened.append((Path(root), split, size))
            super().__init__(root, split, size, **kwargs)

    monkeypatch.setattr(torchvision.datasets, "Imagenette", Spy)
    found = [Imagenette(root, train=False) for root in (archive, tmp_path / "data", tmp_path / "my-imagenette")]
    assert opened == [(tmp_path / "data", "val", "320px")] * 2
    names = [[(Path(path).parts[-2:], label) for path, label in dataset.samples] for dataset in found]
    assert names[0] == names[1] == names[2] and len(names[0]) == 20
    assert all(dataset.targets == [index for index in range(10) for _ in range(2)] for dataset in found)
    assert found[0].classes == found[2].classes == [IMAGENETTE_CLASSES[wnid] for wnid in sorted(IMAGENETTE_CLASSES)]
    assert [dataset[7][1] for dataset in found] == [3, 3, 3]
    assert abs(found[0][7][0].getpixel((5, 5))[0] - 60) <= 3  # decoded: the pixel written for class 3


def test_an_extra_folder_in_torchvisions_layout_is_refused_by_name(tmp_path):
    archive = write_tree(tmp_path / "imagenette2", IMAGENETTE_CLASSES, per_class=1, splits=("val",))
    (archive / "val" / "n99999999").mkdir()
    with pytest.raises(SarvitError, match=r"missing none, unexpected \['n99999999'\]"):
        Imagenette(tmp_path, train=False)


def test_download_fetches_the_320px_archive_through_torchvision(tmp_path, monkeypatch):
    fetched = []

    def fake_download(url, download_root, md5=None, **kwargs):  # what the archive unpacks to, offline
        fetched.append(url)
        write_tree(tmp_path / "imagenette2-320", IMAGENETTE_CLASSES, per_class=1)

    monkeypatch.setattr(torchvision.datasets.imagenette, "download_and_extract_archive", fake_download)
    dataset = Imagenette(tmp_path, train=True, download=True)
    assert fetched == ["https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz"] and len(dataset) == 10
    Imagenette(tmp_path, train=False, download=True)
    assert len(fetched) == 1  # unpacked already: not fetched again
