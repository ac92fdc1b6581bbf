"""`sarvit train --compile`: the model and its loss terms in one compiled graph, compiled once for the whole run."""
from __future__ import annotations

import pytest
import torch

from sarvit import create_model
from sarvit.checkpoints import load_checkpoint, load_model, write_checkpoint
from sarvit.cli import main
from sarvit.models import ModelSpec
from sarvit.train import train
from sarvit.losses import REGULARIZERS
from sarvit.train.regularizers import RegularizedModel, RegTerm
from test_train_common import config_of, one_cpu_thread, state_equal, tiny_argv  # noqa: F401 (autouse fixture)

# The brief's tiny run: 64 images, batches of 16 (4 steps an epoch), 2 epochs, 2 blocks of width 32.
SMALL = ("--num-samples", "64", "--embed-dim", "32", "--num-heads", "2", "--epochs", "2")


def test_a_checkpoint_of_a_compiled_model_loads(tmp_path):
    model = create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2,
                         num_classes=4)
    prefixed = torch.compile(model).state_dict()  # not run: the keys other code would save from a compiled model
    assert all(key.startswith("_orig_mod.") for key in prefixed)
    path = write_checkpoint(tmp_path / "compiled.pth", prefixed, ModelSpec.of(model), model_ema=prefixed)
    loaded, _ = load_model(path)
    assert state_equal(loaded.state_dict(), model.state_dict())
    assert state_equal(load_checkpoint(path)["model_ema"], model.state_dict())


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


def test_compile_options_and_timms_spelling():
    assert config_of("--compile")["compile"] is True and config_of()["compile"] is False
    config = config_of("--torchcompile", "--compile-backend", "aot_eager", "--compile-mode", "max-autotune")
    assert (config["compile"], config["compile_backend"], config["compile_mode"]) == (True, "aot_eager", "max-autotune")
    assert config_of("--torchcompile-mode", "reduce-overhead")["compile_mode"] == "reduce-overhead"


def test_unknown_backend_is_one_line(tmp_path, capsys):
    assert main(["train", *tiny_argv(tmp_path / "run", *SMALL, "--compile", "--compile-backend", "nonesuch")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("sarvit train: error: --compile-backend: unknown") and "inductor" in error
    assert "\n" not in error


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_the_training_forward_has_no_graph_break(fresh_dynamo, name):
    model = create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2,
                         num_classes=4)
    block = -1 if "attention" in REGULARIZERS[name].needs else None
    step = RegularizedModel(model, [RegTerm(name, REGULARIZERS[name].default_weight, block)])
    explained = torch._dynamo.explain(step)(torch.randn(4, 3, 32, 32))
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


@pytest.mark.slow
def test_compiled_run_compiles_once_and_checkpoints_plain_weights(tmp_path, fresh_dynamo):
    out = tmp_path / "run"
    config = config_of(*tiny_argv(out, *SMALL, "--compile", "--model-ema", "--model-ema-decay", "0.5"))
    with torch._dynamo.config.patch(error_on_recompile=True):  # a second compilation of the step raises
        result = train(config)
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])  # one graph: no break, no recompile
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert len(result.history) == 2 and all(torch.isfinite(torch.tensor(line["train_loss"])) for line in result.history)
    assert result.history[-1]["train_entropy"] > 0  # the SAR term was computed inside the compiled graph
    checkpoint = torch.load(out / "last.pth", weights_only=True)
    assert not any(key.startswith("_orig_mod.") for key in checkpoint["model"])
    assert state_equal(checkpoint["model"], result.model.state_dict())
    assert checkpoint["model_ema"].keys() == checkpoint["model"].keys()
    assert main(["eval", "--weights", str(out / "last.pth"), "--ema", "--num-workers", "0"]) == 0
