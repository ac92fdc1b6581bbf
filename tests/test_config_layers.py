"""The run configuration's layers, as a table of (layer, option) -> effective value; resume included."""
from __future__ import annotations

import pickle

import pytest
import yaml

from sarvit.cli import parse_args
from sarvit.data.survey import DataSurvey
from sarvit.train import derived
from sarvit.train.config import TrainConfig, resolve_run, stored_layer
from test_train_common import config_of, one_cpu_thread  # noqa: F401 (autouse fixture)

CIFAR_DEIT = ("--data-set", "cifar10", "--data-path", "/c", "--recipe", "deit")


def _typed(*argv: str) -> dict:
    return {k: v for k, v in vars(parse_args(["train", *argv])).items() if k not in ("run", "command")}


@pytest.fixture(scope="module")
def run_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("layers") / "run.yaml"
    path.write_text(yaml.safe_dump({"lr": 0.1, "weight-decay": 0.2, "use_nosn": True}))
    return str(path)


# (layer, argv, option, effective value); argv may name the --config file as "RUN_YAML"
LAYERS = [
    ("option table", CIFAR_DEIT, "weight_decay", 0.05),
    ("option table", CIFAR_DEIT, "lr", 5e-4),
    ("recipe yaml (deit)", CIFAR_DEIT, "model", "deit_small_patch16_224"),
    ("recipe yaml (quick)", (), "lr", 4e-3),
    ("recipe yaml (quick)", (), "depth", 4),
    ("derived (quick, synthetic)", (), "epochs", 15),
    ("derived (quick, synthetic)", (), "num_samples", 3000),
    ("derived follows the command line", ("--num-samples", "9000"), "epochs", 5),
    ("derived warm-up: 5 % of 10 epochs, at least 1", ("--epochs", "10"), "warmup_epochs", 1),
    ("derived warm-up of a one-epoch run", ("--epochs", "1"), "warmup_epochs", 0),
    ("--pretext over the recipe", (*CIFAR_DEIT, "--pretext", "rotation"), "mixup", 0.0),
    ("a named model drops the recipe's depth", ("--model", "deit_tiny_patch16_224"), "depth", None),
    ("--config over the recipe", ("--config", "RUN_YAML"), "lr", 0.1),
    ("--config over the option table", ("--config", "RUN_YAML"), "weight_decay", 0.2),
    ("--config sugar (use_nosn)", ("--config", "RUN_YAML"), "sar_loss", False),
    ("command line over --config", ("--config", "RUN_YAML", "--lr", "0.3"), "lr", 0.3),
    ("command line over --config sugar", ("--config", "RUN_YAML", "--sar"), "sar_loss", True),
    ("SAR sugar: --use-blob", ("--use-blob",), "remove_last_skip", False),
    ("SAR sugar: --lambda", ("--lambda", "0.05"), "regularizers", [{"name": "spatial-entropy", "weight": 0.05}]),
    ("SAR sugar: --no-sar", ("--no-sar",), "regularizers", []),
    ("SAR computed once", ("--keep-last-norm",), "sar", False),
]


@pytest.mark.parametrize("layer,argv,key,value", LAYERS, ids=[f"{layer}: {key}" for layer, _, key, _ in LAYERS])
def test_each_layer_gives_its_value(layer, argv, key, value, run_yaml):
    argv = [run_yaml if word == "RUN_YAML" else word for word in argv]
    assert config_of(*argv)[key] == value


def _stored(*argv: str) -> dict:
    """A run's configuration as its checkpoint stores it."""
    return resolve_run(_typed(*argv))[0].to_dict()


# Resuming: the stored configuration, then what is given now (the same resolution function).
RESUMES = [
    ((), ("--epochs", "7"), "epochs", 7),
    (("--lr", "0.02"), (), "lr", 0.02),                       # the stored value beats the recipe's
    (("--epochs", "20"), (), "warmup_epochs", 1),             # derived values were stored, not derived again
    (("--epochs", "20"), ("--epochs", "40"), "warmup_epochs", 1),
    (("--use-blob",), (), "remove_last_norm", False),          # stored switches stay as they were
    (("--use-blob",), (), "regularizers", [{"name": "spatial-entropy", "weight": 0.01}]),
    ((), ("--no-sar",), "remove_last_skip", False),            # --no-sar now turns the stored SAR off
    ((), ("--no-sar",), "regularizers", []),
    ((), ("--keep-last-norm",), "remove_last_skip", True),     # one component off, the others as stored
    ((), ("--keep-last-norm",), "sar", False),
    ((), ("--reg", "spatial-entropy:0.05"), "regularizers", [{"name": "spatial-entropy", "weight": 0.05}]),
    (("--no-sar",), ("--sar-loss",), "regularizers", [{"name": "spatial-entropy", "weight": 0.01}]),
]


@pytest.mark.parametrize("first,now,key,value", RESUMES, ids=[f"{' '.join(f)} | {' '.join(n)}: {k}"
                                                             for f, n, k, _ in RESUMES])
def test_resume_is_the_stored_config_plus_what_is_given_now(first, now, key, value):
    stored = stored_layer(_stored(*first), "the checkpoint")
    config, notes = resolve_run(_typed(*now), base=stored)
    assert config[key] == value
    assert not any(line.startswith("recipe") for line in notes)  # a resumed run's recipe is not announced again


def test_an_old_stored_config_still_resolves():
    """sarvit 0.1 stored no recipe, no regularizers, a since-removed key, and ``use_nosn``."""
    old = {"model": "vit_tiny_patch16_224", "input_size": 32, "epochs": 4, "lr": 0.01, "sar": True, "lam": 0.02,
           "use_nosn": True, "num_gpus": 2, "data_set": "synthetic"}
    config = resolve_run(_typed(), base=stored_layer(old, "old.pth"))[0]
    assert (config.epochs, config.lr, config.recipe) == (4, 0.01, "quick")
    assert config.regularizers == [{"name": "spatial-entropy", "weight": 0.02}] and config.sar
    assert "num_gpus" not in config


def test_the_warmup_floor_and_the_derived_rules():
    warmup = derived.warmup_epochs(0.05)
    assert [warmup({"epochs": epochs}, DataSurvey(None, None)) for epochs in (1, 2, 10, 30, 100)] == [0, 1, 1, 2, 5]
    batch = derived.batch_for(64)
    assert [batch({}, DataSurvey(images, None)) for images in (None, 10, 100, 127, 128, 5000)] == [64, 4, 32, 32, 64, 64]
    assert derived.epochs_for(45_000, 2, 100, unknown=10)({}, DataSurvey(3_000, None)) == 15


def test_the_config_is_typed_frozen_and_plain_data():
    config = config_of()
    assert isinstance(config, TrainConfig) and TrainConfig.__dataclass_fields__["epochs"].type is not None
    with pytest.raises(AttributeError):
        config.epochs = 3
    assert config.replace(epochs=3).epochs == 3 and config.epochs == 15
    assert pickle.loads(pickle.dumps(config)) == config
    assert yaml.safe_load(yaml.safe_dump(config.to_dict())) == config.to_dict()
    assert "use_nosn" not in config and "config" not in config  # sugar is expanded, not kept


def _image_folder(root):
    from PIL import Image

    for split in ("train", "val"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for index in range(2):
                Image.new("RGB", (32, 32), (40 * index, 90, 200)).save(root / split / label / f"{index}.png")
    return root


@pytest.mark.parametrize("argv,noted", [((), True), (("--no-sar",), False), (("--sar",), False),
                                        (("--use-blob",), False)])
def test_a_users_data_is_told_that_sar_is_on_by_default(tmp_path, argv, noted):
    folder = _image_folder(tmp_path / "photos")
    config, notes = resolve_run(_typed("--data-set", "folder", "--data-path", str(folder), *argv))
    assert any(note.startswith("note: SAR is on by default") for note in notes) is noted
    assert config.sar is (argv in ((), ("--sar",)))


def test_the_synthetic_demo_has_no_sar_default_note():
    _, notes = resolve_run(_typed("--num-samples", "40"))
    assert not any("SAR is on by default" in note for note in notes)
