"""Capture: timm's Attention runs its own forward; S, [CLS] attention, any block's attention and the final
tokens equal what the blocks' weights give by hand, in every dtype and device, compiled or not."""
import copy

import pytest
import timm
import torch
import torch.nn.functional as F

from sarvit import SarvitError, create_model
from sarvit.models import Capture, capturing, patch_grid

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=3, num_classes=5)
EVERYTHING = Capture(maps=True, cls_attention=True, attention_blocks=(0, 1, 2), tokens=True)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")],
    ),
]


def tiny(**kwargs):
    torch.manual_seed(0)
    return create_model("vit_tiny_patch16_224", **{**TINY, **kwargs}).eval()


def all_forward_hooks(model):
    return {name: len(module._forward_hooks) for name, module in model.named_modules() if module._forward_hooks}


def by_hand(model, x):
    """Every block's post-softmax attention [B, H, T, T], the last block's [CLS] row of scaled scores
    [B, H, T] and the final tokens [B, T, C], computed from the blocks' weights without their forward."""
    z = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    attentions = []
    for block in model.blocks:
        attn = block.attn
        B, T, C = z.shape
        qkv = F.linear(block.norm1(z), attn.qkv.weight, attn.qkv.bias)
        q, k, v = qkv.reshape(B, T, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(q), attn.k_norm(k)
        scores = q @ k.transpose(-1, -2) * attn.head_dim**-0.5
        attentions.append(scores.softmax(-1))
        msa = F.linear((attentions[-1] @ v).transpose(1, 2).reshape(B, T, C), attn.proj.weight, attn.proj.bias)
        if block is model.blocks[-1]:  # SAR: no MSA skip, no LayerNorm before the MLP, the MLP skip stays
            z = block.ls1(msa)
            z = z + block.ls2(block.mlp(z))
        else:
            z = z + block.ls1(msa)
            z = z + block.ls2(block.mlp(block.norm2(z)))
    tokens = F.layer_norm(z, (z.shape[-1],), model.norm.weight, model.norm.bias, model.norm.eps)
    return attentions, scores[:, :, 0], tokens


@pytest.mark.parametrize("extra", [{}, dict(qk_norm=True), dict(reg_tokens=2), dict(init_values=1e-5)])
def test_every_capture_equals_the_blocks_weights_by_hand(extra):
    model = tiny(**extra)
    x = torch.randn(2, 3, 32, 32)
    logits, captured = model(x, capture=EVERYTHING)
    attentions, cls_row, tokens = by_hand(model, x)
    prefix = model.num_prefix_tokens
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(captured["maps"], cls_row[:, :, prefix:].reshape(2, 3, 4, 4), **close)
    torch.testing.assert_close(
        captured["cls_attention"], cls_row.softmax(-1)[:, :, prefix:].reshape(2, 3, 4, 4), **close
    )
    assert list(captured["attention"]) == [0, 1, 2]
    for index, expected in enumerate(attentions):
        torch.testing.assert_close(captured["attention"][index], expected, **close)
    patch_tokens = tokens[:, prefix:].transpose(1, 2).reshape(2, 48, 4, 4)
    torch.testing.assert_close(captured["tokens"], patch_tokens, **close)
    torch.testing.assert_close(logits, model(x))
    assert set(captured) == {"maps", "cls_attention", "attention", "tokens"}


def test_timm_fused_attention_switch_is_obeyed_and_changes_nothing(monkeypatch):
    model = tiny(qk_norm=True)
    x = torch.randn(2, 3, 32, 32)
    fused_calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: fused_calls.append(1) or sdpa(*a, **k))
    results = {}
    for fused in (True, False):
        for block in model.blocks:
            block.attn.fused_attn = fused
        fused_calls.clear()
        results[fused] = model(x, capture=EVERYTHING)
        assert len(fused_calls) == (len(model.blocks) if fused else 0)  # the SAR block's attention included
    (fused_logits, fused_captured), (plain_logits, plain_captured) = results[True], results[False]
    torch.testing.assert_close(fused_logits, plain_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_captured, plain_captured, rtol=1e-5, atol=1e-5)


def test_the_last_block_attention_is_timms_module():
    attn = tiny().blocks[-1].attn
    assert type(attn) is timm.layers.Attention


def reference_capture(device):
    model = tiny(qk_norm=True).to(device)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32, device=device)
    return model, x, model.double()(x.double(), capture=EVERYTHING)[1]


def supports(dtype, device):
    try:
        torch.nn.functional.layer_norm(torch.ones(2, 4, dtype=dtype, device=device), (4,))
        torch.ones(2, 2, dtype=dtype, device=device).softmax(-1)
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype,tolerance",
    [(torch.float32, 1e-5), (torch.float64, 1e-10), (torch.bfloat16, 0.06), (torch.float16, 1e-2)],
)
def test_capture_in_every_dtype_and_device(dtype, tolerance, device):
    if not supports(dtype, device):
        pytest.skip(f"{dtype} is not supported on {device}")
    model, x, expected = reference_capture(device)
    logits, captured = model.to(dtype)(x.to(dtype), capture=EVERYTHING)
    assert logits.dtype == dtype and captured["tokens"].dtype == dtype
    for key in ("maps", "cls_attention"):
        assert captured[key].dtype == torch.float32 and captured[key].device.type == device
        torch.testing.assert_close(captured[key], expected[key].float(), rtol=tolerance, atol=tolerance)
    for index, attention in captured["attention"].items():
        assert attention.dtype == torch.float32
        torch.testing.assert_close(attention, expected["attention"][index].float(), rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(captured["tokens"].double(), expected["tokens"], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("device", DEVICES)
def test_maps_are_float32_under_autocast(device):
    model = tiny().to(device)
    x = torch.randn(2, 3, 32, 32, device=device)
    _, expected = model(x, capture=EVERYTHING)
    with torch.autocast(device, dtype=torch.bfloat16):
        logits, captured = model(x, capture=EVERYTHING)
    assert logits.dtype == torch.bfloat16
    for value in (captured["maps"], captured["cls_attention"], captured["attention"][1]):
        assert value.dtype == torch.float32
    torch.testing.assert_close(captured["maps"], expected["maps"], rtol=0.1, atol=0.1)


def test_capture_of_nothing_computes_and_keeps_nothing():
    model = tiny()
    x = torch.randn(2, 3, 32, 32)
    hooks = all_forward_hooks(model)
    assert isinstance(model(x), torch.Tensor)
    logits, captured = model(x, capture=Capture())
    assert captured == {} and logits.shape == (2, 5)
    model(x, capture=EVERYTHING)
    assert all_forward_hooks(model) == hooks  # the idle hooks of create_model, never more
    assert model._capture_recorder.kept == {} and model._capture_recorder.wanted == ()

    plain = timm.create_model("vit_tiny_patch16_224", **TINY).eval()
    with capturing(plain, Capture(), patch_grid(plain, x)) as captured:
        plain(x)
    assert captured == {} and all_forward_hooks(plain) == {}


def test_hooks_follow_a_deep_copy():
    model = tiny()
    ema = copy.deepcopy(model)
    with torch.no_grad():
        ema.blocks[-1].attn.qkv.weight.mul_(2)
    x = torch.randn(2, 3, 32, 32)
    _, S = model(x, return_maps=True)
    _, ema_S = ema(x, return_maps=True)
    torch.testing.assert_close(ema_S, by_hand(ema, x)[1][:, :, 1:].reshape(2, 3, 4, 4), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(S, ema_S)


def test_a_model_without_cls_captures_attention_and_tokens_but_not_maps():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", **TINY, class_token=False, global_pool="avg").eval()
    x = torch.randn(2, 3, 32, 32)
    for wanted in (Capture(maps=True), Capture(cls_attention=True, tokens=True)):
        with pytest.raises(SarvitError, match=r"needs a \[CLS\] query"):
            with capturing(model, wanted, patch_grid(model, x)):
                model(x)
    with capturing(model, Capture(attention_blocks=(-1,), tokens=True), patch_grid(model, x)) as captured:
        logits = model(x)
    assert captured["attention"][2].shape == (2, 3, 16, 16)
    torch.testing.assert_close(captured["attention"][2].sum(-1), torch.ones(2, 3, 16))
    torch.testing.assert_close(captured["tokens"], model.forward_features(x).transpose(1, 2).reshape(2, 48, 4, 4))
    torch.testing.assert_close(logits, model(x))


def test_dynamic_image_size_gives_the_images_grid():
    model = tiny(dynamic_img_size=True)
    logits, captured = model(torch.randn(2, 3, 32, 48), capture=EVERYTHING)
    assert captured["maps"].shape == captured["cls_attention"].shape == (2, 3, 4, 6)
    assert captured["attention"][0].shape == (2, 3, 25, 25)
    assert captured["tokens"].shape == (2, 48, 4, 6)


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(capture=Capture(attention_blocks=(3,))), r"block 3 is outside 0..2"),
        (dict(capture=Capture(maps=True), return_maps=True), "either capture= or return_maps"),
    ],
)
def test_bad_requests_are_clear_errors(kwargs, words):
    with pytest.raises(SarvitError, match=words):
        tiny()(torch.randn(1, 3, 32, 32), **kwargs)


def test_block_indices_must_be_ints():
    with pytest.raises(SarvitError, match="block indices"):
        Capture(attention_blocks=(0.5,))


def test_negative_and_repeated_block_indices_name_blocks_from_zero():
    _, captured = tiny()(torch.randn(1, 3, 32, 32), capture=Capture(attention_blocks=[-1, 2, 0]))
    assert list(captured["attention"]) == [2, 0]


def test_a_compiled_model_captures_what_each_call_asks():
    torch._dynamo.reset()
    model = tiny()
    compiled = torch.compile(model, backend="eager")
    requests = [None, Capture(maps=True), EVERYTHING, Capture(tokens=True), None, Capture(maps=True)]
    for request in requests:
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(compiled(x, capture=request), model(x, capture=request))
