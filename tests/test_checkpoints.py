"""sarvit.checkpoints and ModelSpec: written by the one writer, read back safely, rebuilt into the same model."""
import json

import pytest
import torch

import sarvit
from sarvit import SarvitError
from sarvit.checkpoints import FORMAT, load_checkpoint, load_model, read_log, reconcile, stored_spec, write_json
from sarvit.models import ModelSpec, infer_model_kwargs, sar_config
from sarvit.train import build

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5)


def tiny_model(sar=True, seed=0, **switches):
    torch.manual_seed(seed)
    return sarvit.create_model("vit_tiny_patch16_224", sar=sar, **switches, **TINY).eval()


# ----------------------------------------------------------------------------------------- ModelSpec
def test_spec_round_trips_through_plain_data_and_builds_the_model():
    spec = ModelSpec("vit_tiny_patch16_224", {"remove_last_skip": True, "similarity": "cosine"}, dict(TINY))
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    model = spec.build()
    assert sar_config(model) == {"remove_last_skip": True, "remove_last_norm": False, "remove_last_mlp_skip": False,
                                 "similarity": "cosine", "query": "cls"}
    assert spec.num_classes == 5 and spec.input_size == 32 and model.num_classes == 5


@pytest.mark.parametrize("sar", [True, False])
def test_spec_of_a_model_rebuilds_its_shapes(sar):
    model = tiny_model(sar=sar, remove_last_mlp_skip=True)
    spec = ModelSpec.of(model)
    assert spec.name == "vit_tiny_patch16_224" and spec.sar == sar_config(model)
    rebuilt = spec.build()
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_spec_refuses_unknown_switches_and_missing_names():
    with pytest.raises(SarvitError, match="unknown SAR switches"):
        ModelSpec("vit_tiny_patch16_224", {"remove_everything": True}, {})
    with pytest.raises(SarvitError, match="'name'"):
        ModelSpec.from_dict({"sar": {}})


def test_spec_reads_a_0_1_model_config():
    """sarvit 0.1 stored num_classes and input_size beside name/sar/timm_kwargs."""
    old = {"name": "vit_tiny_patch16_224", "timm_kwargs": dict(TINY), "num_classes": 5, "input_size": 32,
           "sar": {"remove_last_skip": True, "remove_last_norm": True, "remove_last_mlp_skip": False,
                   "similarity": "dot"}}
    assert ModelSpec.from_dict(old) == ModelSpec(old["name"], old["sar"], old["timm_kwargs"])


# ----------------------------------------------------------------------------------------- files
def test_written_checkpoints_load_with_weights_only(tmp_path, write_model_checkpoint):
    model = tiny_model()
    path = write_model_checkpoint(tmp_path / "c.pth", model, epoch=3, metrics={"top1": 50.0})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["epoch"] == 3 and raw["model_config"]["name"] == "vit_tiny_patch16_224"
    assert stored_spec(load_checkpoint(path)) == ModelSpec.of(model)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed over the target


def test_write_json_is_atomic_and_plain(tmp_path):
    path = write_json({"a": [1, 2.5]}, tmp_path / "sub" / "r.json")
    assert json.loads(path.read_text()) == {"a": [1, 2.5]} and path.read_text().endswith("\n")
    with pytest.raises(TypeError):
        write_json({"bad": object()}, path)
    assert json.loads(path.read_text()) == {"a": [1, 2.5]} and not list(path.parent.glob(".*.tmp"))


# ----------------------------------------------------------------------------------------- load_model
@pytest.mark.parametrize("sar", [True, False])
def test_checkpoint_round_trip(tmp_path, write_model_checkpoint, sar):
    model = tiny_model(sar=sar)
    write_model_checkpoint(tmp_path / "last.pth", model)
    loaded, info = load_model(tmp_path, "cpu")  # a run folder -> last.pth
    assert info["source"] == "checkpoint" and info["model"] == "vit_tiny_patch16_224"
    assert sar_config(loaded) == sar_config(model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x, return_maps=True), model(x, return_maps=True))


def test_loads_a_0_1_checkpoint(tmp_path):
    """The format sarvit 0.1's `sarvit train` wrote (version 1, extra model_config keys) still loads."""
    model = build.model_spec({"model": "vit_tiny_patch16_224", "input_size": 32, "drop": 0.0, "drop_path": 0.1,
                              "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3, "remove_last_skip": True,
                              "remove_last_norm": False, "remove_last_mlp_skip": False, "similarity": "dot"}, 5).build()
    old_config = {**ModelSpec.of(model).to_dict(), "num_classes": 5, "input_size": 32}
    torch.save({"format": "sarvit-checkpoint", "version": 1, "model": model.state_dict(), "model_config": old_config,
                "epoch": 0}, tmp_path / "v01.pth")
    loaded, info = load_model(tmp_path / "v01.pth", "cpu")
    assert info["source"] == "checkpoint" and sar_config(loaded) == sar_config(model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))


@pytest.mark.parametrize("sar", [True, False])
def test_plain_state_dict_needs_a_name_and_infers_the_rest(tmp_path, sar):
    model = tiny_model(sar=sar)
    path = tmp_path / "weights.pth"
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path)  # DDP-saved timm weights
    with pytest.raises(SarvitError, match="--model"):
        load_model(path, "cpu")
    loaded, info = load_model(path, "cpu", model_name="vit_tiny_patch16_224")
    assert info["source"] == "state_dict"
    # without norm2 in the last block the weights were trained with SAR's surgery: it is switched on
    assert sar_config(loaded)["remove_last_norm"] == sar and sar_config(loaded)["remove_last_skip"] == sar
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))


def test_infer_model_kwargs():
    found = infer_model_kwargs(tiny_model().state_dict())
    assert found == dict(patch_size=8, img_size=32, num_classes=5, embed_dim=48, depth=2, mlp_ratio=4,
                         qkv_bias=True, remove_last_norm=True)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(SarvitError, match="does not exist"):
        load_model(tmp_path / "nope.pth", "cpu")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SarvitError, match="is not a PyTorch checkpoint"):
        load_model(bad, "cpu")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(SarvitError, match="weights"):
        load_model(tmp_path / "empty.pth", "cpu")


@pytest.mark.parametrize("text, epochs", [
    ('{"epoch": 0}\n{"epoch": 1}\n', [0, 1]),
    ('{"epoch": 0}\n{"epoch": 1}\n{"epo', [0, 1]),                 # the last line cut short by a crash
    ('{"epoch": 0}\n{"epoch": 1, "val\n{"epoch": 2}\n', [0]),        # a bad line ends what the log vouches for
    ('{"epoch": 0}\n7\n{"epoch": 2}\n', [0]),                       # so does a line that is no object
    ('{"epoch": 0}\n\n{"epoch": 1}\n', [0, 1]),                     # blank lines are no lines
    ('\xff{"epoch": 0}\n', []),                                     # an undecodable byte: no JSON either
])
def test_read_log_keeps_the_lines_before_the_first_bad_one(tmp_path, text, epochs):
    log = tmp_path / "log.jsonl"
    log.write_text(text, encoding="latin-1")
    assert [line["epoch"] for line in read_log(log)] == epochs


def test_read_log_of_no_file_is_empty(tmp_path):
    assert read_log(tmp_path / "log.jsonl") == []


def test_reconcile_rewrites_a_torn_last_line(tmp_path):
    """The readable lines equal the checkpoint's history, but the file still ends in a torn line: rewritten."""
    log, said = tmp_path / "log.jsonl", []
    log.write_text('{"epoch": 0}\n{"epo')
    reconcile({"history": [{"epoch": 0}], "epoch": 0, "best_epoch": 0}, tmp_path / "best.pth", said.append)
    assert log.read_text() == '{"epoch": 0}\n'
    assert said == ["log.jsonl had 1 readable epoch line(s); rewritten to the 1 that best.pth holds"]
    reconcile({"history": [{"epoch": 0}], "epoch": 0, "best_epoch": 0}, tmp_path / "best.pth", said.append)
    assert len(said) == 1  # in line now: nothing more to say
