"""connected_components equals scipy.ndimage.label map by map, on both implementations."""
import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

import sarvit
from sarvit.errors import SarvitError
from sarvit.ops import hooking_rounds

# the module, which the package's `connected_components` function shadows as an attribute
components_module = importlib.import_module("sarvit.ops.connected_components")

STRUCTURES = {8: np.ones((3, 3), dtype=bool), 4: ndimage.generate_binary_structure(2, 1)}
METHODS = ["scipy", "tensor"]


def scipy_labels(mask: np.ndarray, connectivity: int) -> np.ndarray:
    flat = mask.reshape(-1, *mask.shape[-2:])
    labels = np.stack([ndimage.label(m, structure=STRUCTURES[connectivity])[0] for m in flat])
    return labels.reshape(mask.shape)


def assert_matches_scipy(mask: np.ndarray, connectivity: int, method: str) -> None:
    got = sarvit.connected_components(torch.from_numpy(mask), connectivity, method=method)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), scipy_labels(mask, connectivity))


@settings(max_examples=150, deadline=None)
@given(
    mask=arrays(
        bool,
        st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)),
        elements=st.booleans(),
    ),
    connectivity=st.sampled_from([8, 4]),
    method=st.sampled_from(METHODS),
)
def test_random_maps_match_scipy(mask, connectivity, method):
    assert_matches_scipy(mask, connectivity, method)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    density=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31 - 1),
    connectivity=st.sampled_from([8, 4]),
)
def test_dense_and_sparse_maps_match_scipy(shape, density, seed, connectivity):
    mask = np.random.default_rng(seed).random((4, *shape)) < density
    for method in METHODS:
        assert_matches_scipy(mask, connectivity, method)


def spiral(size: int) -> np.ndarray:
    """One 4-connected path that winds inwards: the longest geodesic a square map can hold."""
    grid = np.zeros((size, size), dtype=bool)
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top <= bottom and left <= right:
        grid[top, left:right + 1] = True
        grid[top:bottom + 1, right] = True
        if top + 2 <= bottom:
            grid[bottom, left:right + 1] = True
        if left + 2 <= right and top + 2 <= bottom:
            grid[top + 2:bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
        if top <= bottom:
            grid[top - 1, left] = True
    return grid


def snake(h: int, w: int) -> np.ndarray:
    """Rows joined alternately at the right and left ends: a boustrophedon path."""
    grid = np.zeros((h, w), dtype=bool)
    grid[::2] = True
    for row in range(1, h, 2):
        grid[row, w - 1 if row % 4 == 1 else 0] = True
    return grid


def hand_made_maps():
    checker = (np.indices((9, 9)).sum(axis=0) % 2 == 0)
    diagonal_stripes = (np.indices((11, 11)).sum(axis=0) % 3 == 0)
    yield "spiral-15", spiral(15)
    yield "spiral-28", spiral(28)
    yield "snake-14", snake(14, 14)
    yield "snake-27x13", snake(27, 13)
    yield "checkerboard", checker
    yield "diagonal-stripes", diagonal_stripes
    yield "full", np.ones((14, 14), dtype=bool)
    yield "empty", np.zeros((14, 14), dtype=bool)
    yield "strip-1xN", np.array([[1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1]], dtype=bool)
    yield "strip-Nx1", np.array([[1], [0], [1], [1], [0], [1]], dtype=bool)
    yield "single-pixel-on", np.ones((1, 1), dtype=bool)
    yield "single-pixel-off", np.zeros((1, 1), dtype=bool)


@pytest.mark.parametrize("connectivity", [8, 4])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,mask", list(hand_made_maps()), ids=[n for n, _ in hand_made_maps()])
def test_hand_made_maps_match_scipy(name, mask, connectivity, method):
    assert_matches_scipy(mask, connectivity, method)


def test_spiral_is_one_component_whatever_the_method():
    mask = torch.from_numpy(spiral(28))
    for method in METHODS:
        assert sarvit.connected_components(mask, 4, method=method).max() == 1


def test_checkerboard_connectivity_differs():
    mask = torch.from_numpy(np.indices((6, 6)).sum(axis=0) % 2 == 0)
    assert sarvit.connected_components(mask, 8).max() == 1
    assert sarvit.connected_components(mask, 4).max() == 18


def test_leading_dims_are_kept_and_maps_are_independent():
    rng = np.random.default_rng(0)
    mask = rng.random((2, 3, 5, 7, 6)) < 0.5
    mask[0, 0, 0] = True  # a full map next to the others must not leak into them
    for method in METHODS:
        got = sarvit.connected_components(torch.from_numpy(mask), method=method)
        assert got.shape == mask.shape
        np.testing.assert_array_equal(got.numpy(), scipy_labels(mask, 8))


def test_empty_batch():
    out = sarvit.connected_components(torch.zeros(0, 4, 4, dtype=torch.bool))
    assert out.shape == (0, 4, 4) and out.dtype == torch.int64


def rounds_needed(mask: np.ndarray, connectivity: int, monkeypatch) -> int:
    """The fewest hooking rounds after which the tensor path gives scipy's labels for ``mask``."""
    expected = scipy_labels(mask, connectivity)
    for rounds in range(64):
        monkeypatch.setattr(components_module, "hooking_rounds", lambda n, rounds=rounds: rounds)
        got = sarvit.connected_components(torch.from_numpy(mask), connectivity, method="tensor")
        if np.array_equal(got.numpy(), expected):
            return rounds
    raise AssertionError("64 rounds were not enough")


@pytest.mark.parametrize("name,mask", [("spiral-28", spiral(28)), ("snake-28", snake(28, 28)),
                                       ("spiral-9", spiral(9)), ("snake-2x33", snake(2, 33))])
@pytest.mark.parametrize("connectivity", [8, 4])
def test_the_rounds_bound_covers_the_longest_paths(name, mask, connectivity, monkeypatch):
    needed = rounds_needed(mask, connectivity, monkeypatch)
    monkeypatch.undo()
    assert needed <= hooking_rounds(mask.size)
    # the bound stays logarithmic: 2 rounds per halving of the pixel count
    assert hooking_rounds(mask.size) <= 2 * np.log2(mask.size) + 2


@pytest.mark.parametrize(
    "bad,error,words",
    [
        (torch.zeros(4, 4), TypeError, "bool"),
        (torch.zeros(4, dtype=torch.bool), ValueError, "[..., h, w]"),
        (np.zeros((4, 4), dtype=bool), TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_is_named(bad, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        sarvit.connected_components(bad)


def test_bad_connectivity_and_method():
    mask = torch.zeros(3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="connectivity"):
        sarvit.connected_components(mask, 6)
    with pytest.raises(ValueError, match="method"):
        sarvit.connected_components(mask, method="opencv")


def test_triton_on_a_cpu_mask_is_one_clear_error():
    with pytest.raises(SarvitError, match="needs a CUDA mask.*on cpu"):
        sarvit.connected_components(torch.zeros(2, 3, 3, dtype=torch.bool), method="triton")


cuda_marks = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda_marks)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("connectivity", [8, 4])
def test_masks_thresholded_in_every_dtype_on_every_device(dtype, device, connectivity):
    values = torch.rand(3, 2, 13, 11, generator=torch.Generator().manual_seed(5)).to(dtype=dtype, device=device)
    mask = values > values.mean(dim=(-2, -1), keepdim=True)
    labels = sarvit.connected_components(mask, connectivity)
    assert labels.dtype == torch.int64 and labels.device == mask.device
    np.testing.assert_array_equal(labels.cpu().numpy(), scipy_labels(mask.cpu().numpy(), connectivity))


def triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not triton_importable(), reason="needs Triton")
def test_triton_kernel_matches_scipy_in_the_interpreter():
    """The CUDA kernel's logic, run by Triton's CPU interpreter (which must be set before import)."""
    script = textwrap.dedent(
        """
        import numpy as np, torch
        from test_connected_components import hand_made_maps, scipy_labels
        from sarvit.ops.triton_components import label_with_triton
        rng = np.random.default_rng(0)
        cases = [m[None] for _, m in hand_made_maps()]
        cases += [rng.random((24, 14, 14)) < 0.5, rng.random((6, 28, 28)) < 0.6, rng.random((8, 5, 13)) < 0.3]
        for connectivity in (8, 4):
            for mask in cases:
                got = label_with_triton(torch.from_numpy(mask), connectivity).numpy()
                assert (got == scipy_labels(mask, connectivity)).all(), (connectivity, mask.shape)
        print("triton interpreter ok")
        """
    )
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.path.dirname(__file__)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "triton interpreter ok" in result.stdout


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("connectivity", [8, 4])
@pytest.mark.parametrize("method", ["auto", "tensor"] + (["triton"] if triton_importable() else []))
def test_cuda_matches_scipy_without_host_sync(connectivity, method):
    rng = np.random.default_rng(1)
    mask = rng.random((64, 6, 14, 14)) < 0.5
    mask[0, 0] = spiral(14)
    mask[0, 1] = snake(14, 14)
    device_mask = torch.from_numpy(mask).cuda()
    sarvit.connected_components(device_mask[:1], connectivity, method=method)  # compile and verify once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        labels = sarvit.connected_components(device_mask, connectivity, method=method)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    np.testing.assert_array_equal(labels.cpu().numpy(), scipy_labels(mask, connectivity))


@cuda
@pytest.mark.cuda
@pytest.mark.skipif(not triton_importable(), reason="needs Triton")
def test_auto_uses_the_verified_triton_kernel_on_cuda():
    from sarvit.ops.connected_components import _auto_method

    assert _auto_method(torch.device("cuda", torch.cuda.current_device()), 196) == "triton"
