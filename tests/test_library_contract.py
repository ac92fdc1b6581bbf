"""The library's contract with other code: SAR models pickle across processes, importing and drawing change
nothing in other libraries, every module imports without fcntl."""
from __future__ import annotations

import copy
import subprocess
import sys

import torch
from timm.models.vision_transformer import VisionTransformer

from sarvit import create_model
from sarvit.models import Capture

TINY = dict(img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2, num_classes=4)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_a_sar_model_stays_its_timm_class_and_deep_copies():
    model = create_model("vit_tiny_patch16_224", **TINY).eval()
    assert type(model) is VisionTransformer
    x = torch.randn(2, 3, 32, 32)
    twin = copy.deepcopy(model)
    assert twin._capture_recorder is not model._capture_recorder  # the copy's hooks fill the copy's recorder
    for (a, b) in zip(model(x, return_maps=True, return_attention=True), twin(x, return_maps=True,
                                                                           return_attention=True)):
        assert torch.equal(a, b)
    logits, captured = twin(x, capture=Capture(attention_blocks=(0,), tokens=True))
    assert torch.equal(logits, model(x)) and captured["attention"][0].shape == (2, 2, 17, 17)


def test_torch_save_round_trips_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, maps = model(x, return_maps=True)
    torch.save(model, tmp_path / "model.pt")
    torch.save({"x": x, "logits": logits, "maps": maps}, tmp_path / "expected.pt")
    result = _python(
        "import torch\n"
        f"model = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False)\n"
        f"expected = torch.load({str(tmp_path / 'expected.pt')!r})\n"
        "logits, maps = model(expected['x'], return_maps=True)\n"
        "assert type(model).__module__ == 'timm.models.vision_transformer', type(model)\n"
        "print(torch.equal(logits, expected['logits']), torch.equal(maps, expected['maps']))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def _forward_maps(model, x):  # module-level: what a spawned worker runs
    with torch.no_grad():
        return model(x, return_maps=True)[1]


def test_a_spawned_worker_runs_a_sar_model():
    model = create_model("vit_tiny_patch16_224", **TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    context = torch.multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        maps = pool.apply(_forward_maps, (model, x))
    with torch.no_grad():
        assert torch.equal(maps, model(x, return_maps=True)[1])


def test_importing_sarvit_and_drawing_leave_other_libraries_alone(tmp_path):
    result = _python(
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"  # a notebook's backend
        "import timm.data.auto_augment as aa\n"
        "ops, finders = dict(aa.NAME_TO_OP), list(sys.meta_path)\n"
        "import torch, sarvit\n"
        "from sarvit.figures import attention_figure, save_figure\n"
        "from sarvit.data.transforms import build_transform\n"
        "from sarvit.train.records import plot_curves\n"
        "figure = attention_figure(torch.zeros(32, 32, 3, dtype=torch.uint8).numpy(), torch.rand(2, 4, 4))\n"
        f"save_figure(figure, {str(tmp_path / 'a.png')!r})\n"
        f"plot_curves([{{'epoch': 0, 'train_loss': 1.0, 'lr': 0.1}}], {str(tmp_path / 'c.png')!r})\n"
        "build_transform(True, 32)\n"
        "import matplotlib.pyplot as plt\n"
        "print(matplotlib.get_backend(), aa.NAME_TO_OP == ops, sys.meta_path == finders, plt.get_fignums())\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["svg", "True", "True", "[]"]
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "c.png").stat().st_size > 0


def test_checkpoints_import_and_lock_without_fcntl(tmp_path):
    result = _python(
        "import sys\n"
        "sys.modules['fcntl'] = None\n"  # `import fcntl` now raises ImportError, as on Windows
        "from sarvit.checkpoints.run_folder import RunFolder, LOCK_NAME\n"
        "import sarvit.checkpoints, sarvit.train, sarvit.analysis\n"
        f"folder = RunFolder.claim({str(tmp_path / 'run')!r}, say=lambda line: None)\n"
        "try:\n"
        f"    RunFolder.claim({str(tmp_path / 'run')!r}, say=lambda line: None)\n"
        "except ValueError as error:\n"
        "    print('refused:', 'in use' in str(error), LOCK_NAME in str(error))\n"
        "folder.release()\n"
        f"RunFolder.claim({str(tmp_path / 'run')!r}, say=lambda line: None).release()\n"
        "print('fcntl' in sys.modules and sys.modules['fcntl'] is None)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused:", "True", "True", "True"]


def _fail(*_):
    raise RuntimeError("out of memory")


def test_a_forward_pass_that_raises_leaves_no_armed_hooks():
    model = create_model("vit_tiny_patch16_224", **TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    handle = model.head.register_forward_hook(_fail)  # fails after the capture hooks kept q and k
    try:
        model(x, return_maps=True)
    except RuntimeError:
        pass
    handle.remove()
    assert model._capture_recorder.kept  # the failed pass left its tensors ...
    assert torch.is_tensor(model(x))  # ... which the next call drops, keeping nothing
    assert model._capture_recorder.kept == {} and model._capture_recorder.wanted == ()
    assert len(model(x, return_maps=True)) == 2
