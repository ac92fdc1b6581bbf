"""The fused spatial-entropy op (sarvit.ops.triton_spatial_entropy) against the reference path.

Triton's interpreter runs the kernels on CPU tensors; it must be switched on before Triton is imported,
so those checks run in a subprocess (small sizes: the interpreter runs a program in numpy).
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import sarvit
from sarvit import spatial_entropy
from sarvit.ops.triton_spatial_entropy import fused_available

needs_fused = pytest.mark.skipif(not fused_available(), reason="needs Triton")

PRELUDE = """
import numpy as np, torch
import sarvit
from sarvit import spatial_entropy
from sarvit.ops import fused_spatial_entropy
from test_connected_components import hand_made_maps, snake, spiral

def maps_over(mask, seed=0):
    # positive values on the mask, 0 elsewhere: the mask is what the threshold keeps (unless it is full)
    values = 1 + torch.rand(mask.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.where(torch.from_numpy(np.ascontiguousarray(mask)), values, 0.0)

def families():
    rng = torch.Generator().manual_seed(0)
    yield "random 14x14", torch.randn(3, 8, 14, 14, generator=rng, dtype=torch.float64)
    yield "random 5x13", torch.randn(2, 3, 5, 13, generator=rng, dtype=torch.float64)
    yield "random 28x28", torch.rand(1, 4, 28, 28, generator=rng, dtype=torch.float64) ** 4
    yield "1x1 and rows", torch.randn(4, 2, 1, 9, generator=rng, dtype=torch.float64)
    yield "constant", torch.full((1, 2, 6, 6), 0.3, dtype=torch.float64)
    shapes = [m for _, m in hand_made_maps()] + [spiral(16), snake(9, 14), ~spiral(12)]
    yield "adversarial", torch.stack([maps_over(np.rot90(m, k), k) for m in shapes[:6] for k in range(2)
                                      if np.rot90(m, k).shape == shapes[0].shape] or [maps_over(shapes[0])])[:, None]
    for index, mask in enumerate(shapes):
        yield f"adversarial {index}", maps_over(mask, index)[None, None]

def assert_close(got, expected, rtol, atol):
    torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, equal_nan=True)
"""


def run_interpreted(body: str) -> str:
    script = PRELUDE + textwrap.dedent(body) + "\nprint('interpreted ok')\n"
    tests = os.path.dirname(__file__)
    src = os.path.join(os.path.dirname(tests), "src")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([src, tests])}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "interpreted ok" in result.stdout
    return result.stdout


@needs_fused
def test_fused_values_and_gradients_equal_the_reference_in_the_interpreter():
    run_interpreted(
        """
        for name, maps in families():
            for connectivity in (8, 4):
                # float32 gradients subtract a map's mean coefficient from each pixel's (a few ulps of
                # cancellation), and a one-component map's entropy rounds to 0 or to 1e-7 (clamped, no
                # gradient, or a 1e-10 one): hence the gradients' looser tolerances
                for dtype, rtol, atol, grad_rtol, grad_atol in ((torch.float32, 1e-5, 1e-6, 1e-4, 1e-8),
                                                                (torch.float64, 1e-10, 1e-12, 1e-9, 1e-12)):
                    S = maps.to(dtype).requires_grad_()
                    fused = spatial_entropy(S, connectivity, method="fused")
                    reference = spatial_entropy(S, connectivity, method="reference")
                    assert fused.dtype == reference.dtype and fused.shape == reference.shape
                    assert_close(fused, reference, rtol, atol)
                    weights = torch.randn(reference.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
                    grad_fused, = torch.autograd.grad((fused * weights).sum(), S)
                    grad_reference, = torch.autograd.grad((reference * weights).sum(), S)
                    scale = grad_reference.abs().max().item()
                    assert_close(grad_fused, grad_reference, grad_rtol, grad_rtol * 1e-2 * scale + grad_atol), (name, connectivity, dtype)
        # the closed-form backward is the derivative: gradcheck on the fused op itself
        S = torch.randn(2, 1, 5, 6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: spatial_entropy(x, eps=1e-3, method="fused"), (S,), eps=1e-6,
                                        atol=1e-5)
        """
    )


@needs_fused
def test_fused_non_finite_maps_give_nan_and_leave_the_others_alone():
    run_interpreted(
        """
        S = torch.randn(4, 1, 5, 5)
        S[0, 0, 1, 1], S[1, 0, 0, 0], S[2, 0, 4, 4] = float("nan"), float("inf"), -float("inf")
        S.requires_grad_()
        fused = spatial_entropy(S, method="fused", check_finite=False)
        reference = spatial_entropy(S, method="reference", check_finite=False)
        assert fused[:3].isnan().all() and torch.isfinite(fused[3]).all()
        assert_close(fused, reference, 1e-5, 1e-6)
        grad, = torch.autograd.grad(fused.sum(), S)
        assert grad[:3].isnan().all() and torch.isfinite(grad[3]).all()
        """
    )


@needs_fused
def test_fused_ops_pass_opcheck_and_trace_with_the_model_without_graph_breaks():
    run_interpreted(
        """
        from torch import nn
        for shape in ((3, 4, 6), (5, 1, 1), (0, 3, 3)):
            for connectivity in (8, 4):
                maps = torch.randn(shape, requires_grad=True)
                torch.library.opcheck(torch.ops.sarvit.spatial_entropy_fused.default, (maps, connectivity, 1e-9))
        entropy, coeff = torch.ops.sarvit.spatial_entropy_fused(torch.randn(3, 4, 6), 8, 1e-9)
        torch.library.opcheck(torch.ops.sarvit.spatial_entropy_fused_backward.default,
                              (torch.randn(3), entropy, coeff))

        torch.manual_seed(0)
        model = sarvit.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=24, depth=2,
                                    num_heads=2, num_classes=5)

        def step(images, targets):
            logits, S = model(images, return_maps=True)
            entropy = spatial_entropy(S, method="fused")
            return nn.functional.cross_entropy(logits, targets) + 0.1 * entropy.mean()

        explained = torch._dynamo.explain(step)(torch.randn(2, 3, 32, 32), torch.tensor([0, 3]))
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
        ops = [str(node.target) for graph in explained.graphs for node in graph.graph.nodes]
        assert any("spatial_entropy_fused" in op for op in ops), ops
        """
    )


def test_reference_gradcheck_in_float64():
    S = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: spatial_entropy(x, eps=1e-3, method="reference"), (S,), eps=1e-6,
                                    atol=1e-5)


def test_auto_on_cpu_is_the_reference_path():
    S = torch.randn(2, 3, 7, 7)
    assert torch.equal(spatial_entropy(S), spatial_entropy(S, method="reference"))


@pytest.mark.parametrize("method, words", [("triton", "method must be"), ("fused", "method='fused' needs")])
def test_bad_method_is_one_clear_error(method, words):
    if method == "fused" and os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the interpreter runs the fused op on CPU")
    with pytest.raises(ValueError, match=words):
        spatial_entropy(torch.randn(1, 1, 4, 4), method=method)


def test_fused_refuses_maps_over_64x64():
    with pytest.raises(ValueError, match="at most 4096 pixels"):
        spatial_entropy(torch.randn(1, 1, 65, 64), method="fused")


@pytest.mark.parametrize("connectivity", [8, 4])
@pytest.mark.parametrize("shape", [(256, 6, 14, 14), (16, 6, 28, 28), (4, 3, 64, 64), (3, 2, 9, 17)])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_is_fused_and_equals_the_reference_without_host_sync(shape, connectivity):
    S = torch.randn(shape, device="cuda", requires_grad=True)
    reference = spatial_entropy(S, connectivity, method="reference")
    grad_reference, = torch.autograd.grad(reference.sum(), S)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fused = spatial_entropy(S, connectivity)
        grad_fused, = torch.autograd.grad(fused.sum(), S)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert "spatial_entropy_fused" in str(fused.grad_fn.next_functions[0][0])  # under the [B, H] reshape
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_fused, grad_reference, rtol=1e-5, atol=1e-6 * grad_reference.abs().max().item())
    assert sarvit.SpatialEntropyLoss()(S).isfinite()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_graph_captures_the_fused_loss_forward_and_backward():
    generator = torch.Generator(device="cuda").manual_seed(0)
    S = torch.randn(64, 6, 14, 14, device="cuda", generator=generator, requires_grad=True)
    loss_fn = sarvit.SpatialEntropyLoss(check_finite=False)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: compiles the kernels outside the capture
        for _ in range(2):
            S.grad = None
            loss_fn(S).backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    S.grad = None
    with torch.cuda.graph(graph):
        loss = loss_fn(S)
        loss.backward()
    fresh = torch.randn(S.shape, device="cuda", generator=generator)
    with torch.no_grad():
        S.copy_(fresh)
    graph.replay()
    expected = spatial_entropy(fresh.requires_grad_(), method="reference").mean()
    expected_grad, = torch.autograd.grad(expected, fresh)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(S.grad, expected_grad, rtol=1e-4, atol=1e-6 * expected_grad.abs().max().item())
