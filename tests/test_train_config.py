"""Flags of `sarvit train`: reference spellings are aliases, SAR switch semantics, --config layering."""
from __future__ import annotations

import pytest
import yaml

from sarvit import SarvitError
from sarvit.train.config import DEFAULTS
from sarvit.train.recipes import RECIPES
from test_train_common import one_cpu_thread, config_of  # noqa: F401 (autouse fixture)

# (reference spelling, new spelling): each pair must resolve to the same configuration.
ALIASES = [
    (["--use-blob"], ["--sar-loss"]),
    (["--use-nosn"], ["--remove-last-skip", "--remove-last-norm"]),
    (["--blob-weight", "0.05"], ["--lambda", "0.05"]),
    (["--data-set", "cifar10", "--data-path", "/d"], ["--dataset", "cifar10", "--data-path", "/d"]),
    (["--data_set", "CIFAR10"], ["--data-set", "cifar10"]),
    (["--warmup-epochs", "3"], ["--warmup_epochs", "3"]),
    (["--output_dir", "out"], ["--output-dir", "out"]),
    (["--batch-size", "128"], ["--batch_size", "128"]),
    (["--num_workers", "3"], ["--num-workers", "3"]),
    (["--drop_path", "0.2"], ["--drop-path", "0.2"]),
    (["--model_ema"], ["--model-ema"]),
    (["--img-size", "48"], ["--input-size", "48"]),
]


@pytest.mark.parametrize("reference,new", ALIASES, ids=[" ".join(r) for r, _ in ALIASES])
def test_reference_alias_same_config(reference, new):
    config = config_of(*reference)
    assert config == config_of(*new)
    assert config != config_of(), "the option must change the configuration"


# Reference spellings without a second spelling: each sets its value, which is not the one it gets without it.
CIFAR = ("--data-set", "cifar10", "--recipe", "deit")  # DeiT's defaults (repeated augmentation on)
REFERENCE_VALUES = [
    (["--resume", "x.pth"], "resume", "x.pth"),
    (["--finetune", "w.pth"], "finetune", "w.pth"),
    (["--weights", "w.pth"], "weights", "w.pth"),
    (["--no-repeated-aug"], "repeated_aug", False),
    (["--no-pin-mem"], "pin_mem", False),
    (["--epochs", "7"], "epochs", 7),
    (["--lr", "5e-3"], "lr", 5e-3),
]


@pytest.mark.parametrize("argv,key,value", REFERENCE_VALUES, ids=[" ".join(a) for a, _, _ in REFERENCE_VALUES])
def test_reference_option_sets_its_value(argv, key, value):
    assert config_of(*CIFAR, *argv)[key] == value
    assert config_of(*CIFAR)[key] != value


def test_reference_readme_commands_parse():
    pretrain = config_of("--device", "cuda", "--batch-size", "128", "--epochs", "300", "--data-set", "imagenet",
                         "--data-path", "/in",
                         "--no-repeated-aug", "--use-blob", "--use-nosn", "--blob-weight", "0.01")
    assert pretrain["sar"] and pretrain["lam"] == 0.01 and not pretrain["repeated_aug"]
    assert pretrain["model"] == "deit_small_patch16_224" and pretrain["input_size"] == 224
    assert pretrain["mixup"] == 0.8 and pretrain["model_ema"]  # ImageNet on a GPU: DeiT's recipe
    finetune = config_of("--batch-size", "64", "--epochs", "100", "--lr", "5e-4", "--no-pin-mem", "--warmup-epochs",
                         "3", "--data-set", "cifar10", "--no-repeated-aug", "--resume", "p.pth")
    assert not finetune["pin_mem"] and finetune["warmup_epochs"] == 3 and finetune["resume"] == "p.pth"
    evaluation = config_of("--eval", "--resume", "p.pth", "--data-set", "imagenet", "--data-path", "/in")
    assert evaluation["eval"]
    # a --data-path alone is read from its layout, never the synthetic set: a folder that is not there says so
    with pytest.raises(SarvitError, match="--data-path /in: expected a data set folder, it does not exist"):
        config_of("--eval", "--resume", "p.pth", "--data-path", "/in")


def test_sar_switch_semantics():
    full = config_of()
    assert config_of("--use-blob", "--use-nosn") == config_of("--sar") == full  # the reference's SAR is the default
    assert (full["sar_loss"], full["remove_last_skip"], full["remove_last_norm"]) == (True, True, True)
    off = config_of("--no-sar")
    assert (off["sar"], off["sar_loss"], off["remove_last_skip"], off["remove_last_norm"]) == (False,) * 4
    blob = config_of("--use-blob")  # the reference: loss only, architecture untouched
    assert (blob["sar_loss"], blob["remove_last_skip"], blob["remove_last_norm"]) == (True, False, False)
    nosn = config_of("--use-nosn")  # the reference: surgery only (SAR in pre-training only, for fine-tuning)
    assert (nosn["sar_loss"], nosn["remove_last_skip"], nosn["remove_last_norm"]) == (False, True, True)
    keep = config_of("--keep-last-norm")  # an off-switch keeps the rest of SAR
    assert (keep["sar_loss"], keep["remove_last_skip"], keep["remove_last_norm"]) == (True, True, False)
    explicit = config_of("--sar", "--no-sar-loss")
    assert (explicit["sar_loss"], explicit["remove_last_skip"]) == (False, True)
    mlp = config_of("--no-sar", "--remove-last-mlp-skip")
    assert mlp["remove_last_mlp_skip"] and not mlp["sar_loss"]


def test_quick_recipe_on_synthetic_deit_by_name():
    quick = config_of()
    assert quick["recipe"] == "quick"
    for key, value in RECIPES["quick"].values.items():
        assert quick[key] == value, key
    # the demo's schedule: 45,000 images seen of the 3,000 the recipe draws, a 5 % warm-up
    assert (quick["epochs"], quick["num_samples"], quick["warmup_epochs"]) == (15, 3000, 1)
    assert quick["crop_scale"] == [0.8, 1.0] and config_of("--crop-scale", "0.5,1")["crop_scale"] == [0.5, 1.0]
    assert config_of("--num-samples", "9000")["epochs"] == 5 and config_of("--subset-ratio", "0.5")["epochs"] == 30
    deit = config_of("--data-set", "cifar100", "--data-path", "/c", "--recipe", "deit")
    assert deit["epochs"] == DEFAULTS["epochs"] == 300 and deit["lr"] == 5e-4 and deit["input_size"] == 224
    assert config_of("--epochs", "2")["epochs"] == 2


def test_yaml_config_and_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"epochs": 5, "blob-weight": 0.2, "data_set": "cifar10", "data_path": "/c",
                                    "use_nosn": True}))
    config = config_of("--config", str(path), "--epochs", "9")
    assert config["epochs"] == 9 and config["lam"] == 0.2 and config["data_set"] == "cifar10"
    assert (config["sar_loss"], config["remove_last_skip"]) == (False, True)
    saved = tmp_path / "saved.yaml"
    saved.write_text(yaml.safe_dump(config.to_dict()))
    assert config_of("--config", str(saved)) == config  # config.yaml of a run reproduces it


def test_yaml_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(SarvitError, match="unknown option 'epochz'"):
        config_of("--config", str(bad))
    with pytest.raises(SarvitError, match="does not exist"):
        config_of("--config", str(tmp_path / "missing.yaml"))
    with pytest.raises(SarvitError, match="unknown dataset"):
        config_of("--data-set", "mnist")
    with pytest.raises(SarvitError, match="not --resume and --finetune"):
        config_of("--resume", "a", "--finetune", "b")
    with pytest.raises(SarvitError, match="not --finetune and --weights"):
        config_of("--finetune", "a", "--weights", "b")
