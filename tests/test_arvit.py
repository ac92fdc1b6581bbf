"""ARViT (thesis §3.4): structure, fixed 2D sin-cos positions, a head over all tokens, timm registration."""
import io
import math
import subprocess
import sys

import pytest
import timm
import torch
from timm.layers import Attention
from timm.optim import create_optimizer_v2
from torch import nn

import sarvit  # registers arvit_base with timm
from sarvit import SarvitError, load_weights
from sarvit.models import ARViT, Capture, ModelSpec, sar_config


def arvit(**kwargs):
    torch.manual_seed(0)
    options = dict(num_classes=10, img_size=32, patch_size=8)
    return timm.create_model("arvit_base", **{**options, **kwargs}).eval()


def sincos_reference(height, width, dim):
    """Fixed 2D sin-cos embedding, written out per token: [sin(y w_i), sin(x w_i), cos(y w_i), cos(x w_i)]."""
    quarter = dim // 4
    omegas = [10000.0 ** (-i / quarter) for i in range(quarter)]
    rows = []
    for y in range(height):
        for x in range(width):  # tokens in row-major order, as the patch embedding flattens them
            rows.append([math.sin(y * w) for w in omegas] + [math.sin(x * w) for w in omegas]
                        + [math.cos(y * w) for w in omegas] + [math.cos(x * w) for w in omegas])
    return torch.tensor(rows, dtype=torch.float32)


def test_structure_of_section_3_4():
    model = arvit(patch_size=4)
    assert isinstance(model, ARViT)
    assert len(model.blocks) == 6 and model.embed_dim == 516 and model.num_prefix_tokens == 0
    proj = model.patch_embed.proj
    assert isinstance(proj, nn.Conv2d) and proj.kernel_size == proj.stride == (4, 4) and proj.out_channels == 516
    assert model.patch_embed.grid_size == (8, 8) and model.patch_embed.img_size == (32, 32)
    for block in model.blocks:
        assert type(block.attn) is Attention and block.attn.num_heads == 12
        linears = [module for module in block.mlp.modules() if isinstance(module, nn.Linear)]
        assert [(layer.in_features, layer.out_features) for layer in linears] == [(516, 516)]
    names = [name for name, _ in model.named_parameters()] + [name for name, _ in model.named_buffers()]
    assert not any("cls" in name or "token" in name for name in names)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 516)  # 64 patch tokens, no [CLS]


def test_position_embedding_is_fixed_2d_sincos_added_before_the_encoder():
    model = arvit(img_size=(32, 48), patch_size=8)  # a 4 x 6 grid: rows and columns are told apart
    expected = sincos_reference(4, 6, 516)
    torch.testing.assert_close(model.pos_embed[0], expected, atol=1e-5, rtol=0)
    assert "pos_embed" not in dict(model.named_parameters()) and "pos_embed" not in model.state_dict()
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0]))
    x = torch.randn(2, 3, 32, 48)
    model(x)
    torch.testing.assert_close(seen["input"], model.patch_embed(x) + expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("global_pool", ["flatten", "avg"])
@pytest.mark.parametrize("img_size,patch_size", [(32, 4), (32, 8), (48, 16), ((32, 64), 16)])
def test_output_shape(img_size, patch_size, global_pool):
    model = arvit(img_size=img_size, patch_size=patch_size, global_pool=global_pool, num_classes=7)
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(3, 3, height, width)
    tokens = (height // patch_size) * (width // patch_size)
    assert model.forward_features(x).shape == (3, tokens, 516)
    assert model(x).shape == (3, 7)
    assert model.head.in_features == 516 * (tokens if global_pool == "flatten" else 1)


@pytest.mark.parametrize("global_pool", ["flatten", "avg"])
def test_head_reads_every_token_of_the_last_block(global_pool):
    model = arvit(global_pool=global_pool)
    tokens = model.forward_features(torch.randn(1, 3, 32, 32))
    logits = model.forward_head(tokens)
    for index in range(tokens.shape[1]):
        changed = tokens.clone()
        changed[:, index] += 1.0
        assert not torch.allclose(model.forward_head(changed), logits), f"token {index} does not reach the head"


def test_gradient_reaches_every_layer():
    model = arvit().train()
    nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    assert all(parameter.grad is not None and torch.isfinite(parameter.grad).all() for parameter in model.parameters())
    reached = [model.patch_embed.proj.weight, model.head.weight, model.norm.weight]
    reached += [weight for block in model.blocks for weight in (block.attn.qkv.weight, block.mlp[0].weight)]
    assert all(weight.grad.abs().sum() > 0 for weight in reached)


def test_post_norm_normalises_after_each_residual_sum():
    x = torch.randn(2, 16, 516) * 3 + 1
    post = ARViT(img_size=32, patch_size=8, post_norm=True).blocks[0](x)
    pre = ARViT(img_size=32, patch_size=8).blocks[0](x)
    torch.testing.assert_close(post.mean(-1), torch.zeros(2, 16), atol=1e-4, rtol=0)
    torch.testing.assert_close(post.std(-1, unbiased=False), torch.ones(2, 16), atol=1e-3, rtol=0)
    assert pre.std(-1).mean() > 2  # pre-norm keeps the residual stream's scale


def test_checkpoint_round_trip_through_timm():
    model = arvit(drop_path_rate=0.1)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    rebuilt = timm.create_model("arvit_base", num_classes=10, img_size=32, patch_size=8, drop_path_rate=0.1).eval()
    rebuilt.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x), model(x), atol=0, rtol=0)


def test_finetune_replaces_the_head():
    pretext = arvit(num_classes=4)  # e.g. the four rotations
    downstream = arvit(num_classes=10)
    report = load_weights(downstream, pretext.state_dict(), new_head=True)
    assert sorted(report.head_dropped) == ["head.bias", "head.weight"]
    torch.testing.assert_close(downstream.blocks[3].mlp[0].weight, pretext.blocks[3].mlp[0].weight)
    pretext.reset_classifier(3, global_pool="avg")
    assert (pretext.num_classes, pretext.head.in_features) == (3, 516)
    assert pretext(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_timm_optimizer_factory_with_layer_decay():
    model = arvit()
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    scales = sorted({group["lr_scale"] for group in optimizer.param_groups})
    assert len(scales) == 8  # patch embedding, six blocks, final norm + head


def test_attention_q_norm_hooks_see_every_head():
    model = arvit()
    seen = []
    model.blocks[2].attn.q_norm.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    model(torch.randn(2, 3, 32, 32))
    assert seen == [(2, 12, 16, 43)]  # [B, heads, tokens, 516 / 12]


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(SarvitError, match="no pretrained weights"):
        timm.create_model("arvit_base", pretrained=True)
    with pytest.raises(SarvitError, match="divisible by num_heads"):
        ARViT(num_heads=8)  # 516 = 8 * 64.5
    with pytest.raises(SarvitError, match="global_pool"):
        ARViT(global_pool="token")


def test_registered_with_timm_once_sarvit_is_imported():
    script = (
        "import timm, torch\n"
        "assert not timm.is_model('arvit_base')\n"
        "import sarvit\n"
        "model = timm.create_model('arvit_base', num_classes=10, img_size=32, patch_size=4)\n"
        "print(tuple(model(torch.randn(1, 3, 32, 32)).shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 10)"


def test_create_model_builds_arvit_through_timm_with_capture():
    torch.manual_seed(0)
    model = sarvit.create_model("arvit_base", sar=False, num_classes=4, img_size=32, patch_size=8).eval()
    assert isinstance(model, ARViT) and model.pretrained_cfg["architecture"] == "arvit_base"
    assert "_capture_recorder" in model.__dict__  # hooks installed at build time, as for the ViTs
    x = torch.randn(2, 3, 32, 32)
    logits, captured = model(x, capture=Capture(attention_blocks=(0, -1), tokens=True))
    assert set(captured) == {"attention", "tokens"} and set(captured["attention"]) == {0, 5}
    torch.testing.assert_close(logits, model(x))
    # block 0's attention by hand from its weights: no prefix tokens, 16 patches, 12 heads
    block = model.blocks[0]
    tokens = block.norm1(model.patch_embed(x) + model.pos_embed)
    q, k, _ = block.attn.qkv(tokens).reshape(2, 16, 3, 12, 43).permute(2, 0, 3, 1, 4)
    expected = (q @ k.transpose(-2, -1) * block.attn.scale).softmax(dim=-1)
    torch.testing.assert_close(captured["attention"][0], expected, atol=1e-5, rtol=1e-5)
    assert captured["attention"][5].shape == (2, 12, 16, 16) and captured["attention"][5].dtype == torch.float32
    torch.testing.assert_close(captured["tokens"], model.forward_features(x).transpose(1, 2).reshape(2, 516, 4, 4))
    empty_logits, nothing = model(x, capture=Capture())
    assert nothing == {} and torch.equal(empty_logits, logits)


def test_cls_maps_and_sar_switches_on_arvit_say_it_needs_a_cls_query():
    model = arvit()
    x = torch.randn(1, 3, 32, 32)
    for capture in (Capture(maps=True), Capture(cls_attention=True, tokens=True)):
        with pytest.raises(SarvitError, match=r"needs a \[CLS\] query"):
            model(x, capture=capture)
    with pytest.raises(SarvitError, match=r"need a \[CLS\] query"):
        model(x, return_maps=True)
    options = dict(num_classes=10, img_size=32, patch_size=8)
    for switches in ({}, {"sar": True}, {"sar": False, "remove_last_skip": True},
                     {"sar": False, "remove_last_norm": True}, {"sar": False, "similarity": "cosine"}):
        with pytest.raises(SarvitError, match=r"no \[CLS\] token.*need a \[CLS\] query.*sar=False"):
            sarvit.create_model("arvit_base", **switches, **options)
    with pytest.raises(SarvitError, match="could not build 'arvit_base'.*mlp_ratio"):
        sarvit.create_model("arvit_base", sar=False, mlp_ratio=4, **options)
    assert sar_config(sarvit.create_model("arvit_base", sar=False, **options)) == {
        "remove_last_skip": False, "remove_last_norm": False, "remove_last_mlp_skip": False, "similarity": "dot",
        "query": "cls"}


def test_finetune_at_another_resolution_rebuilds_the_fixed_position_embedding():
    pretext = arvit(num_classes=4, img_size=32)  # 4 x 4 grid
    downstream = arvit(num_classes=10, img_size=48)  # 6 x 6 grid: the flatten head changes shape too
    report = load_weights(downstream, pretext.state_dict(), new_head=True)
    assert sorted(report.head_dropped) == ["head.bias", "head.weight"] and not report.missing
    torch.testing.assert_close(downstream.pos_embed[0], sincos_reference(6, 6, 516), atol=1e-5, rtol=0)
    torch.testing.assert_close(downstream.blocks[0].attn.qkv.weight, pretext.blocks[0].attn.qkv.weight)
    assert downstream(torch.randn(1, 3, 48, 48)).shape == (1, 10)


@pytest.mark.parametrize("options", [{}, {"global_pool": "avg", "post_norm": True, "act_layer": "relu"}])
def test_model_spec_reads_arvit_back(options):
    model = sarvit.create_model("arvit_base", sar=False, num_classes=4, img_size=32, patch_size=8, **options)
    spec = ModelSpec.of(model)
    assert spec.name == "arvit_base" and not any(value is True for value in spec.sar.values())
    rebuilt = ModelSpec.from_dict(spec.to_dict()).build()
    assert type(rebuilt) is ARViT and rebuilt.global_pool == model.global_pool
    assert (rebuilt.post_norm, rebuilt.act_layer) == (model.post_norm, model.act_layer)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))
