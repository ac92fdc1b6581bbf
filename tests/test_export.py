"""`sarvit export`: timm's hub format, rebuilt by timm in a fresh process with identical logits and S."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sarvit
from sarvit.checkpoints.export import EXPORT_FILES, export_checkpoint
from sarvit.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = dict(img_size=32, patch_size=8, num_classes=10, depth=4)

# Run in a fresh interpreter: only what the folder says (and, unless plain, `import sarvit`) rebuilds the model.
RELOAD = """
import sys, torch{sarvit}
import timm
out = sys.argv[1]
model = timm.create_model("local-dir:" + out, pretrained=True).eval()
x = torch.load(out + "/x.pt")
with torch.no_grad():
    result = {{"logits": model(x)}}
    if {maps}:
        result["maps"] = model(x, return_maps=True)[1]
    features = timm.create_model("local-dir:" + out, pretrained=True, features_only=True, out_indices=(1, 3)).eval()
    result["features"] = features(x)
torch.save(result, out + "/reloaded.pt")
print(type(model).__module__, sorted(sys.modules).count("sarvit"))
"""


def _checkpoint(tmp_path, write_model_checkpoint, sar: bool, **content):
    torch.manual_seed(0)
    model = sarvit.create_model("vit_tiny_patch16_224", sar=sar, **TINY).eval()
    return model, write_model_checkpoint(tmp_path / "last.pth", model, **content)


def _reload(out: Path, plain: bool) -> tuple[dict, str]:
    code = RELOAD.format(sarvit="" if plain else ", sarvit", maps=not plain)
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return torch.load(out / "reloaded.pt"), done.stdout


@pytest.mark.parametrize("sar", [True, False], ids=["sar", "plain"])
def test_export_round_trip_in_a_fresh_process(tmp_path, write_model_checkpoint, sar):
    model, checkpoint = _checkpoint(tmp_path, write_model_checkpoint, sar,
                                    regularizers={"drloc.head.weight": torch.ones(2, 2)})
    out = tmp_path / "exported"
    done = export_checkpoint(tmp_path, out, plain=not sar)  # the run folder: its last.pth
    assert sorted(path.name for path in out.iterdir()) == sorted(EXPORT_FILES)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == ("sar_vit" if sar else "vit_tiny_patch16_224") == done["architecture"]
    if sar:
        assert config["model_args"]["base"] == "vit_tiny_patch16_224"
        assert config["model_args"]["sar"]["remove_last_skip"] and config["model_args"]["sar"]["remove_last_norm"]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32] and config["num_classes"] == 10
    detector_file = torch.load(out / "model.pth", weights_only=True)
    assert detector_file["model"].keys() == model.state_dict().keys()  # the backbone and head, no DRLoc
    assert "blocks.3.norm2.weight" not in detector_file["model"] if sar else "blocks.3.norm2.weight" in detector_file["model"]

    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.save(x, out / "x.pt")
    reloaded, stdout = _reload(out, plain=not sar)
    with torch.no_grad():
        logits, maps = model(x, return_maps=True)
        intermediates = model.forward_intermediates(x, indices=(1, 3), intermediates_only=True)
    torch.testing.assert_close(reloaded["logits"], logits, rtol=0, atol=1e-6)
    if sar:
        torch.testing.assert_close(reloaded["maps"], maps, rtol=0, atol=1e-6)
    else:
        assert stdout.split() == ["timm.models.vision_transformer", "0"]  # a stock timm ViT, sarvit never imported
    assert [f.shape for f in reloaded["features"]] == [(3, 192, 4, 4)] * 2
    for theirs, ours in zip(reloaded["features"], intermediates):
        torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)


def test_export_refuses_what_it_cannot_write(tmp_path, write_model_checkpoint):
    _, checkpoint = _checkpoint(tmp_path, write_model_checkpoint, sar=True)
    with pytest.raises(sarvit.SarvitError, match="remove_last_norm, remove_last_skip on"):
        export_checkpoint(checkpoint, tmp_path / "out", plain=True)
    with pytest.raises(sarvit.SarvitError, match="no 'model_ema' weights"):
        export_checkpoint(checkpoint, tmp_path / "out", ema=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(sarvit.SarvitError, match="already holds files"):
        export_checkpoint(checkpoint, tmp_path / "full")
    torch.save(sarvit.create_model("vit_tiny_patch16_224", **TINY).state_dict(), tmp_path / "plain.pth")
    with pytest.raises(sarvit.SarvitError, match="expected a sarvit checkpoint"):
        export_checkpoint(tmp_path / "plain.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "full", "last.pth", "plain.pth"]  # nothing left behind


def test_export_command(tmp_path, write_model_checkpoint, capsys):
    _, checkpoint = _checkpoint(tmp_path, write_model_checkpoint, sar=True)
    assert main(["export", str(checkpoint), str(tmp_path / "out")]) == 0
    assert "sar_vit" in capsys.readouterr().out and (tmp_path / "out" / "model.safetensors").is_file()
    assert main(["export", str(checkpoint), str(tmp_path / "plain-out"), "--plain"]) == 2
    assert "remove_last_norm, remove_last_skip on" in capsys.readouterr().err
    assert main(["export", str(checkpoint)]) == 2
    assert "expected RUN_OR_CHECKPOINT and OUT_DIR" in capsys.readouterr().err
