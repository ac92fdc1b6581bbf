"""connected_components as torch.ops.sarvit.connected_components: opcheck, torch.compile, torch.export."""
import io

import pytest
import torch
from torch import nn

import sarvit
import sarvit.ops  # registers torch.ops.sarvit.* (`import sarvit` alone loads nothing)

cuda = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
DEVICES = ["cpu", pytest.param("cuda", marks=cuda)]


def tiny_sar_model() -> nn.Module:
    torch.manual_seed(0)
    return sarvit.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=24, depth=2,
                               num_heads=2, num_classes=5)


class ModelWithLoss(nn.Module):
    """A SAR model and its loss in one module, as a compiled or exported train step sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_sar_model()
        self.loss = sarvit.SpatialEntropyLoss()

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, S = self.model(images, return_maps=True)
        return nn.functional.cross_entropy(logits, targets) + 0.1 * self.loss(S)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("connectivity", [8, 4])
@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 2, 5, 5), (0, 3, 3), (1, 1)])
def test_opcheck(device, connectivity, shape):
    mask = (torch.rand(shape) < 0.5).to(device)
    torch.library.opcheck(torch.ops.sarvit.connected_components.default, (mask, connectivity))


def test_the_op_is_what_the_public_function_calls():
    mask = torch.rand(5, 7, 9) < 0.5
    expected = sarvit.connected_components(mask, 4, method="tensor")  # the pure-tensor algorithm
    assert torch.equal(torch.ops.sarvit.connected_components(mask, 4), expected)
    assert torch.equal(sarvit.connected_components(mask, 4), expected)


def test_the_loss_traces_without_graph_breaks(fresh_dynamo):
    explained = torch._dynamo.explain(sarvit.SpatialEntropyLoss())(torch.randn(2, 3, 5, 5, requires_grad=True))
    assert explained.graph_break_count == 0 and explained.graph_count == 1


def test_model_and_loss_trace_as_one_graph(fresh_dynamo):
    step = ModelWithLoss()
    explained = torch._dynamo.explain(step)(torch.randn(2, 3, 32, 32), torch.tensor([0, 3]))
    assert explained.graph_break_count == 0, explained.break_reasons


def train(step: nn.Module, backend: str | None, steps: int = 3) -> list[float]:
    """A few SGD steps, compiled with ``backend`` (eager if None); a recompilation after step 1 is an error."""
    compiled = step if backend is None else torch.compile(step, backend=backend, fullgraph=True)
    optimizer = torch.optim.SGD(step.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(1)
    losses = []
    with torch._dynamo.config.patch(error_on_recompile=False):
        for index in range(steps):
            images = torch.randn(2, 3, 32, 32, generator=generator)
            targets = torch.randint(0, 5, (2,), generator=generator)
            with torch._dynamo.config.patch(error_on_recompile=index > 0):
                loss = compiled(images, targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    return losses


def test_compiled_training_matches_eager_without_recompiling(fresh_dynamo):
    eager = train(ModelWithLoss(), backend=None)
    traced = train(ModelWithLoss(), backend="aot_eager")
    assert traced == pytest.approx(eager, rel=1e-5)


@pytest.mark.slow
def test_inductor_compiles_the_loss_and_its_gradient(fresh_dynamo):
    loss_fn = sarvit.SpatialEntropyLoss()
    compiled = torch.compile(loss_fn, backend="inductor", fullgraph=True)
    for seed in range(2):
        S = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(seed), requires_grad=True)
        expected_grad, = torch.autograd.grad(loss_fn(S), S)
        with torch._dynamo.config.patch(error_on_recompile=seed > 0):
            loss = compiled(S)
        grad, = torch.autograd.grad(loss, S)
        assert loss.item() == pytest.approx(loss_fn(S).item(), rel=1e-5)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_export_keeps_the_op_and_round_trips():
    step = ModelWithLoss().eval()
    args = (torch.randn(2, 3, 32, 32), torch.tensor([1, 4]))
    exported = torch.export.export(step, args)
    assert "sarvit.connected_components" in exported.graph_module.print_readable(print_output=False)
    buffer = io.BytesIO()
    torch.export.save(exported, buffer)
    buffer.seek(0)
    reloaded = torch.export.load(buffer)
    other = (torch.randn(2, 3, 32, 32), torch.tensor([2, 0]))
    torch.testing.assert_close(reloaded.module()(*other), step(*other))
