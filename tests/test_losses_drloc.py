"""DRLoc: pairs drawn on the device, the head's L1 error on normalised offsets, and a head that learns."""
import math

import pytest
import torch
from torch import nn

from sarvit import SarvitError
from sarvit.losses import DRLocLoss, drloc_loss


def loop_drloc(tokens, head, num_pairs, signed, seed):
    """The same pairs (same seeded draw), then one pair at a time."""
    batch, _, h, w = tokens.shape
    cells = torch.randint(h * w, (batch, 2 * num_pairs), generator=torch.Generator().manual_seed(seed))
    out = []
    for b in range(batch):
        errors = []
        for i in range(num_pairs):
            (y1, x1), (y2, x2) = divmod(int(cells[b, i]), w), divmod(int(cells[b, num_pairs + i]), w)
            predicted = head(torch.cat([tokens[b, :, y1, x1], tokens[b, :, y2, x2]]))
            target = torch.tensor([(y1 - y2) / h, (x1 - x2) / w], dtype=tokens.dtype)
            target = target if signed else target.abs()
            errors.append((predicted - target).abs().mean())
        out.append(torch.stack(errors).mean())
    return torch.stack(out)


def position_tokens(h, w, channels=32):
    """Tokens that carry their place: a fixed sinusoidal embedding of (y, x), ``[1, C, h, w]``."""
    frequencies = 1.0 / (10.0 ** (torch.arange(channels // 4) / (channels // 4)))
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    parts = [f(axis[..., None] * frequencies) for axis in (y, x) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=-1).permute(2, 0, 1).unsqueeze(0)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_values_and_gradients_match_a_loop(signed, grid):
    torch.manual_seed(0)
    loss_fn = DRLocLoss(embed_dim=6, num_pairs=7, hidden_dim=16, signed=signed).double()
    tokens = torch.randn(3, 6, *grid, dtype=torch.float64).requires_grad_()
    got = drloc_loss(tokens, loss_fn.head, 7, signed, generator=torch.Generator().manual_seed(5))
    expected = loop_drloc(tokens, loss_fn.head, 7, signed, seed=5)
    assert got.dtype == torch.float64 and got.shape == (3,)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    inputs = [tokens, *loss_fn.parameters()]
    for grad_got, grad_expected in zip(torch.autograd.grad(got.sum(), inputs), torch.autograd.grad(expected.sum(), inputs)):
        torch.testing.assert_close(grad_got, grad_expected, rtol=1e-10, atol=1e-12)


def test_gradcheck_with_fixed_pairs():
    torch.manual_seed(1)
    head = DRLocLoss(embed_dim=3, hidden_dim=8).double().head
    tokens = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    function = lambda t: drloc_loss(t, head, 4, generator=torch.Generator().manual_seed(0))  # noqa: E731
    assert torch.autograd.gradcheck(function, (tokens,), eps=1e-6, atol=1e-6)


def test_targets_are_offsets_over_the_grid_size():
    """A head that returns its input's last two features reads the offsets back exactly."""
    h, w = 4, 6
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    tokens = torch.stack([y / h, x / w]).unsqueeze(0)  # [1, 2, h, w]

    class SignedOffset(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, pair):
            return pair[..., :2] - pair[..., 2:]

    assert drloc_loss(tokens, SignedOffset(), 50, signed=True).item() == pytest.approx(0.0, abs=1e-12)
    assert drloc_loss(tokens, SignedOffset(), 50, signed=False).item() > 0.01


def test_loss_falls_when_the_head_learns_positions():
    torch.manual_seed(0)
    tokens = position_tokens(8, 8).expand(4, -1, -1, -1)
    blank = torch.zeros_like(tokens)  # no position in the tokens: only the average offset is learnable
    results = {}
    for name, inputs in (("positions", tokens), ("blank", blank)):
        loss_fn = DRLocLoss(embed_dim=32, hidden_dim=64)
        optimizer = torch.optim.Adam(loss_fn.parameters(), lr=3e-3)
        start = loss_fn(inputs).item()
        for _ in range(60):
            optimizer.zero_grad()
            loss_fn(inputs).backward()
            optimizer.step()
        results[name] = (start, sum(loss_fn(inputs).item() for _ in range(5)) / 5)
    start, end = results["positions"]
    assert end < 0.3 * start
    assert end < 0.5 * results["blank"][1]


def test_head_parameters_are_module_parameters_and_round_trip():
    loss_fn = DRLocLoss(embed_dim=8)
    names = [name for name, _ in loss_fn.named_parameters()]
    assert names == ["head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias", "head.4.weight", "head.4.bias"]
    assert loss_fn.head[0].in_features == 16 and loss_fn.head[2].in_features == 512 and loss_fn.head[4].out_features == 2
    copy = DRLocLoss(embed_dim=8)
    copy.load_state_dict(loss_fn.state_dict())
    tokens = torch.randn(2, 8, 5, 5)
    torch.manual_seed(3)
    first = loss_fn(tokens)
    torch.manual_seed(3)
    assert torch.equal(first, copy(tokens))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_grid_and_autocast_give_float32(dtype):
    torch.manual_seed(0)
    loss_fn = DRLocLoss(embed_dim=8, hidden_dim=16)
    tokens = torch.randn(2, 8, 5, 5).to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)
        under_autocast = loss_fn(tokens)
    torch.manual_seed(1)
    plain = loss_fn(tokens)
    assert under_autocast.dtype == plain.dtype == torch.float32 and plain.shape == ()
    torch.testing.assert_close(under_autocast, plain)
    torch.manual_seed(1)
    torch.testing.assert_close(plain, loss_fn(tokens.float()))


@pytest.mark.parametrize(
    "call,words",
    [
        (lambda: DRLocLoss(8)(torch.randn(2, 8, 25)), r"tokens must have shape \[B, C, h, w\]"),
        (lambda: DRLocLoss(8)(torch.randn(2, 16, 5, 5)), r"8 channels \(embed_dim\).*\(2, 16, 5, 5\)"),
        (lambda: DRLocLoss(8)(torch.ones(2, 8, 5, 5, dtype=torch.long)), "floating-point"),
        (lambda: DRLocLoss(0), "embed_dim must be an integer >= 1"),
        (lambda: DRLocLoss(8, num_pairs=0), "num_pairs must be an integer >= 1"),
        (lambda: drloc_loss(torch.randn(1, 8, 2, 2), DRLocLoss(8).head, num_pairs=2.5), "num_pairs"),
    ],
)
def test_bad_input_is_named(call, words):
    with pytest.raises(SarvitError, match=words):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_pairs_are_drawn_on_the_device_without_host_sync():
    loss_fn = DRLocLoss(embed_dim=384).cuda()
    tokens = torch.randn(64, 384, 14, 14, device="cuda", requires_grad=True)
    loss_fn(tokens).backward()  # warm-up: lazy CUDA initialisation may synchronise once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = loss_fn(tokens)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.device.type == "cuda" and math.isfinite(loss.item())
