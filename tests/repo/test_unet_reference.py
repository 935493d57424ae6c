"""Checks of the Phase 2 reference U-Net (``solutions/unet.py``) against independent mathematics.

The phase checks compare a learner's blocks with the reference number for number, so
they can only be as right as the reference is. These tests check the reference itself:
every expected value is computed here another way than the reference computes it —
the sinusoids element by element with the ``math`` module, the MLP and projections as
explicit matrix products ``x @ W.T + b``, SiLU as ``x · 1/(1 + e^−x)``, attention per head
from channel slices with ``scaled_dot_product_attention``, nearest upsampling with
``repeat_interleave`` — and the parameter count of the U-Net from the architecture
description (Ho et al. 2020, appendix B, as laid out in the module's docstrings and in
IMPLEMENTATION_GUIDE.md chapter 2), walked by hand here. The only things taken from the code
under test are the weight tensors the hand computations use.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from solutions import unet

F64 = torch.float64

#: The default configuration as documented (typed out here, not read from DEFAULT_CONFIG).
DOCUMENTED_DEFAULT = dict(
    in_channels=1,
    base_channels=16,
    channel_mults=(1, 2, 4),
    num_res_blocks=1,
    attention_levels=(2,),
    num_heads=4,
    dropout=0.0,
    groups=8,
)

#: GroupNorm's epsilon (PyTorch's default, which the reference keeps).
GN_EPS = 1e-5


# ---------------------------------------------------------------------------
# Independent helpers
# ---------------------------------------------------------------------------


def randn(shape, seed, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def sinusoids(ts, dim, max_period=10_000.0):
    """[sin(t ω_0), …, sin(t ω_{h−1}), cos(t ω_0), …, cos(t ω_{h−1})] with ω_i = P^(−i/h), in float64.

    Element by element with the ``math`` module (``P ** x``, not ``exp(−x log P)``).
    """
    half = dim // 2
    omegas = [max_period ** (-i / half) for i in range(half)]
    rows = [[math.sin(t * w) for w in omegas] + [math.cos(t * w) for w in omegas] for t in ts]
    return torch.tensor(rows, dtype=F64)


def silu(x):
    """x · σ(x) with the logistic written out."""
    return x * (1.0 / (1.0 + torch.exp(-x)))


def affine(x, layer):
    """A Linear layer as an explicit matrix product x Wᵀ + b."""
    return x @ layer.weight.T + layer.bias


def group_norm(x, groups, layer):
    return F.group_norm(x, groups, layer.weight, layer.bias, eps=GN_EPS)


def randomise_(module, seed):
    """Overwrite every parameter with seeded Gaussian values (fan-in scaled for matrices).

    Fresh GroupNorms are the identity (weight 1, bias 0) and the U-Net's head is zero; random
    values make every parameter matter in a comparison.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            std = 1.0 / math.sqrt(p[0].numel()) if p.ndim > 1 else 0.5
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std)
    return module


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# Parameter counts of the layers, from their definitions.


def conv(k, c_in, c_out):
    """k×k convolution with bias: k·k·C_in·C_out weights + C_out biases."""
    return k * k * c_in * c_out + c_out


def linear(n_in, n_out):
    return n_in * n_out + n_out


def gn(c):
    """GroupNorm: a scale and a shift per channel."""
    return 2 * c


def res(c_in, c_out, embed_dim):
    """norm1, conv1 (3×3), embed_proj, norm2, conv2 (3×3), and a 1×1 skip when the width changes."""
    skip = conv(1, c_in, c_out) if c_in != c_out else 0
    return gn(c_in) + conv(3, c_in, c_out) + linear(embed_dim, c_out) + gn(c_out) + conv(3, c_out, c_out) + skip


def attn(c):
    """norm, to_qkv (C → 3C), to_out (C → C)."""
    return gn(c) + linear(c, 3 * c) + linear(c, c)


def expected_unet_parameters(
    in_channels=1,
    out_channels=None,
    base_channels=16,
    channel_mults=(1, 2, 4),
    num_res_blocks=1,
    attention_levels=(2,),
    num_classes=None,
    cond_channels=0,
    **_ignored,
) -> int:
    """The U-Net's parameter count, walked from the architecture description.

    Encoder: the stem's output is kept; each level has num_res_blocks blocks (each output kept,
    attention after each at attention levels) and, but the last, a downsample (its output kept).
    Middle: block, attention, block at the deepest width. Decoder, deepest level first:
    num_res_blocks + 1 blocks, each taking the running width plus the most recently kept width,
    then an upsample on every level but level 0. Head: GroupNorm + 3×3 conv.
    """
    out_channels = in_channels if out_channels is None else out_channels
    c = base_channels
    embed_dim = 4 * c
    widths = [base_channels * m for m in channel_mults]
    last = len(widths) - 1
    total = linear(c, embed_dim) + linear(embed_dim, embed_dim)  # the time MLP
    if num_classes:
        total += (num_classes + 1) * embed_dim  # class embedding, plus the "no class" row
    total += conv(3, in_channels + cond_channels, c)  # the stem
    kept = [c]
    for level, width in enumerate(widths):
        for _ in range(num_res_blocks):
            total += res(c, width, embed_dim) + (attn(width) if level in attention_levels else 0)
            c = width
            kept.append(c)
        if level != last:
            total += conv(3, c, c)  # Downsample
            kept.append(c)
    total += res(c, c, embed_dim) + attn(c) + res(c, c, embed_dim)  # the middle
    for level in range(last, -1, -1):
        width = widths[level]
        for _ in range(num_res_blocks + 1):
            total += res(c + kept.pop(), width, embed_dim) + (attn(width) if level in attention_levels else 0)
            c = width
        if level != 0:
            total += conv(3, c, c)  # Upsample
    assert not kept, "every kept activation is used exactly once"
    return total + gn(c) + conv(3, c, out_channels)


# ---------------------------------------------------------------------------
# 1. The sinusoidal timestep embedding (§2.1)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 4, 8, 32, 64])
@pytest.mark.parametrize("max_period", [10_000.0, 100.0])
def test_timestep_embedding_matches_the_formula(dim, max_period):
    """Half sines then half cosines of t·ω_i, ω_i = P^(−i/h), to float64 precision."""
    ts = [0, 1, 2, 7, 250, 999]
    got = unet.timestep_embedding(torch.tensor(ts), dim, max_period=max_period, dtype=F64)
    assert got.dtype == F64 and got.shape == (len(ts), dim)
    torch.testing.assert_close(got, sinusoids(ts, dim, max_period), rtol=0, atol=1e-11)


def test_timestep_embedding_default_period_is_10000():
    """Without max_period the frequencies are those of Vaswani et al. (P = 10 000)."""
    ts = [3, 500]
    got = unet.timestep_embedding(torch.tensor(ts), 16, dtype=F64)
    torch.testing.assert_close(got, sinusoids(ts, 16, 10_000.0), rtol=0, atol=1e-11)


def test_timestep_embedding_fastest_and_slowest_frequencies():
    """Column 0 is sin(t) (ω_0 = 1), column h is cos(t), and t = 0 gives [0…0, 1…1]."""
    t = torch.tensor([0, 5, 123])
    got = unet.timestep_embedding(t, 10, dtype=F64)
    torch.testing.assert_close(got[:, 0], torch.sin(t.to(F64)), rtol=0, atol=1e-14)
    torch.testing.assert_close(got[:, 5], torch.cos(t.to(F64)), rtol=0, atol=1e-14)
    assert torch.equal(got[0], torch.tensor([0.0] * 5 + [1.0] * 5, dtype=F64))


def test_timestep_embedding_worked_example():
    """dim = 8, P = 10 000: ω = 1, 0.1, 0.01, 0.001, so embedding(1) = [sin 1, sin 0.1, sin 0.01,
    sin 0.001, cos 1, cos 0.1, cos 0.01, cos 0.001] (the example of IMPLEMENTATION_GUIDE.md §2.1)."""
    got = unet.timestep_embedding(torch.tensor([1]), 8, dtype=F64)[0]
    omegas = [1.0, 0.1, 0.01, 0.001]
    expected = [math.sin(w) for w in omegas] + [math.cos(w) for w in omegas]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-14)
    rounded = [0.841, 0.0998, 0.0100, 0.0010, 0.540, 0.995, 1.000, 1.000]
    assert got.tolist() == pytest.approx(rounded, abs=5e-4)


def test_timestep_embedding_fractional_t():
    """Fractional timesteps are embedded by the same formula (nothing is rounded)."""
    ts = [0.5, 3.25, 17.125, 999.75]
    got = unet.timestep_embedding(torch.tensor(ts, dtype=F64), 12, dtype=F64)
    torch.testing.assert_close(got, sinusoids(ts, 12), rtol=0, atol=1e-11)
    rounded = unet.timestep_embedding(torch.tensor([0, 3, 17, 999]), 12, dtype=F64)
    assert (got - rounded).abs().max() > 0.1


@pytest.mark.parametrize("t_dtype", [torch.int64, torch.int32, torch.float32, F64])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_timestep_embedding_dtype(t_dtype, dtype):
    """The result has the requested dtype whatever t's dtype, and integer and float t agree."""
    ts = [0, 1, 40, 999]
    got = unet.timestep_embedding(torch.tensor(ts, dtype=t_dtype), 32, dtype=dtype)
    assert got.dtype == dtype and got.shape == (4, 32)
    # float32 rounds t·ω (|t·ω| ≤ 999) to ~1e-4; float64 is exact to rounding.
    atol = 1e-3 if dtype == torch.float32 else 1e-11
    torch.testing.assert_close(got.to(F64), sinusoids(ts, 32), rtol=0, atol=atol)
    reference = unet.timestep_embedding(torch.tensor(ts, dtype=torch.int64), 32, dtype=dtype)
    torch.testing.assert_close(got, reference, rtol=0, atol=0)


@pytest.mark.parametrize("dim", [1, 0, -4])
def test_timestep_embedding_dim_at_least_two(dim):
    with pytest.raises(ValueError, match=r"\bdim\b"):
        unet.timestep_embedding(torch.tensor([1, 2]), dim)


@pytest.mark.parametrize("dim", [3, 7, 33])
def test_timestep_embedding_dim_must_be_even(dim):
    with pytest.raises(ValueError, match=r"\bdim\b.*even"):
        unet.timestep_embedding(torch.tensor([1, 2]), dim)


@pytest.mark.parametrize("dim", [8.0, "8", True])
def test_timestep_embedding_dim_must_be_an_int(dim):
    with pytest.raises(TypeError, match=r"\bdim\b"):
        unet.timestep_embedding(torch.tensor([1, 2]), dim)


@pytest.mark.parametrize("t", [torch.tensor(3), torch.zeros(2, 1), torch.zeros(1, 2, 3), [1, 2]], ids=str)
def test_timestep_embedding_t_must_be_one_dimensional(t):
    with pytest.raises(ValueError, match=r"\bt\b.*\(B,\)"):
        unet.timestep_embedding(t, 8)


# ---------------------------------------------------------------------------
# 2. The time MLP (§2.2)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("base_dim, embed_dim", [(16, 64), (8, 20), (2, 3)])
def test_time_embedding_is_linear_silu_linear(base_dim, embed_dim):
    """TimeEmbedding(t) = W₂ SiLU(W₁ sinusoids(t) + b₁) + b₂ with its own weights."""
    torch.manual_seed(0)
    module = unet.TimeEmbedding(base_dim, embed_dim).to(F64)
    assert module.linear_1.weight.shape == (embed_dim, base_dim)
    assert module.linear_2.weight.shape == (embed_dim, embed_dim)
    ts = [0, 1, 99, 998]
    with torch.no_grad():
        got = module(torch.tensor(ts))
        expected = affine(silu(affine(sinusoids(ts, base_dim), module.linear_1)), module.linear_2)
    assert got.dtype == F64 and got.shape == (4, embed_dim)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_time_embedding_follows_the_weights_dtype():
    """A float32 module embeds in float32 (and agrees with the float64 computation)."""
    torch.manual_seed(1)
    module = unet.TimeEmbedding(16, 64)
    with torch.no_grad():
        got = module(torch.tensor([5, 500]))
        m64 = unet.TimeEmbedding(16, 64).to(F64)
        m64.load_state_dict({k: v.to(F64) for k, v in module.state_dict().items()})
        expected = affine(silu(affine(sinusoids([5, 500], 16), m64.linear_1)), m64.linear_2)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.to(F64), expected, rtol=0, atol=1e-4)


def test_time_embedding_has_exactly_two_linears():
    module = unet.TimeEmbedding(16, 64)
    assert [name for name, _ in module.named_children()] == ["linear_1", "linear_2"]
    assert n_params(module) == linear(16, 64) + linear(64, 64)


# ---------------------------------------------------------------------------
# 3. The residual block (§2.3)
# ---------------------------------------------------------------------------


def residual_by_hand(block, x, emb, groups):
    """The class docstring's equations with F.group_norm / F.conv2d and the block's weights (no dropout)."""
    h = F.conv2d(silu(group_norm(x, groups, block.norm1)), block.conv1.weight, block.conv1.bias, padding=1)
    h = h + affine(silu(emb), block.embed_proj)[:, :, None, None]
    h = F.conv2d(silu(group_norm(h, groups, block.norm2)), block.conv2.weight, block.conv2.bias, padding=1)
    if x.shape[1] == h.shape[1]:
        return h + x
    return h + F.conv2d(x, block.skip.weight, block.skip.bias)


@pytest.mark.parametrize(
    "c_in, c_out, groups", [(8, 8, 4), (16, 16, 8), (8, 16, 4), (16, 8, 8), (6, 9, 3)]
)
def test_residual_block_matches_the_equations(c_in, c_out, groups):
    """h = conv1(SiLU(norm1 x)) + proj(SiLU emb); out = conv2(SiLU(norm2 h)) + skip(x)."""
    torch.manual_seed(2)
    block = randomise_(unet.ResidualBlock(c_in, c_out, embed_dim=12, groups=groups).to(F64), seed=3)
    x = randn((2, c_in, 6, 5), 4)
    emb = randn((2, 12), 5)
    with torch.no_grad():
        got = block(x, emb)
        expected = residual_by_hand(block, x, emb, groups)
    assert got.shape == (2, c_out, 6, 5) and got.dtype == F64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_residual_block_identity_skip_when_widths_match():
    """With C_in = C_out the skip is the identity: no parameters, and out − x is the residual branch."""
    block = unet.ResidualBlock(16, 16, embed_dim=8, groups=4)
    keys = set(block.state_dict())
    assert not any(key.startswith("skip.") for key in keys), keys
    assert isinstance(block.skip, torch.nn.Identity)
    assert n_params(block) == res(16, 16, 8)


def test_residual_block_conv_skip_when_widths_differ():
    """With C_in ≠ C_out the skip is a 1×1 convolution C_in → C_out with a bias."""
    block = unet.ResidualBlock(8, 16, embed_dim=8, groups=4)
    state = block.state_dict()
    assert state["skip.weight"].shape == (16, 8, 1, 1)
    assert state["skip.bias"].shape == (16,)
    assert n_params(block) == res(8, 16, 8)
    assert [name for name, _ in block.named_children()] == [
        "norm1", "conv1", "embed_proj", "norm2", "dropout", "conv2", "skip"
    ]


def test_residual_block_time_embedding_is_one_shift_per_channel():
    """Changing emb changes the output through conv2(SiLU(norm2(h + shift))), not via x's path."""
    block = randomise_(unet.ResidualBlock(8, 8, embed_dim=6, groups=4).to(F64), seed=6)
    x = randn((1, 8, 4, 4), 7)
    with torch.no_grad():
        a = block(x, randn((1, 6), 8))
        b = block(x, randn((1, 6), 9))
    assert (a - b).abs().max() > 1e-3


def test_residual_block_dropout_train_and_eval():
    """Dropout > 0 makes two training-mode calls differ; in eval mode the block is deterministic
    and equals the dropout-free equations."""
    torch.manual_seed(10)
    block = randomise_(unet.ResidualBlock(8, 8, embed_dim=6, groups=4, dropout=0.5).to(F64), seed=11)
    x = randn((2, 8, 6, 6), 12)
    emb = randn((2, 6), 13)
    with torch.no_grad():
        block.train()
        first, second = block(x, emb), block(x, emb)
        assert (first - second).abs().max() > 1e-6
        block.eval()
        third, fourth = block(x, emb), block(x, emb)
        assert torch.equal(third, fourth)
        torch.testing.assert_close(third, residual_by_hand(block, x, emb, 4), rtol=1e-10, atol=1e-10)


def test_residual_block_errors():
    with pytest.raises(ValueError, match=r"groups=8.*in_channels\b.*12"):
        unet.ResidualBlock(12, 16, embed_dim=8, groups=8)
    with pytest.raises(ValueError, match=r"groups=8.*out_channels\b.*12"):
        unet.ResidualBlock(16, 12, embed_dim=8, groups=8)
    with pytest.raises(ValueError, match="dropout"):
        unet.ResidualBlock(8, 8, embed_dim=8, groups=4, dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        unet.ResidualBlock(8, 8, embed_dim=8, groups=4, dropout=-0.1)
    with pytest.raises(TypeError, match="embed_dim"):
        unet.ResidualBlock(8, 8, embed_dim=8.0, groups=4)


# ---------------------------------------------------------------------------
# 4. Self-attention (§2.4)
# ---------------------------------------------------------------------------


def attention_by_hand(block, x, num_heads, groups):
    """x + to_out(concat over heads of SDPA(q_h, k_h, v_h)), heads = contiguous channel slices."""
    b, c, height, width = x.shape
    d = c // num_heads
    tokens = group_norm(x, groups, block.norm).flatten(2).transpose(1, 2)  # (B, N, C)
    qkv = affine(tokens, block.to_qkv)  # (B, N, 3C): queries | keys | values
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    heads = []
    for head in range(num_heads):
        part = slice(head * d, (head + 1) * d)
        heads.append(F.scaled_dot_product_attention(q[..., part], k[..., part], v[..., part]))  # (B, N, d)
    out = affine(torch.cat(heads, dim=-1), block.to_out)  # (B, N, C)
    return x + out.transpose(1, 2).reshape(b, c, height, width)


def attention_by_softmax(block, x, num_heads, groups):
    """The same, with softmax(q kᵀ / √d) v written out per head and per image."""
    b, c, height, width = x.shape
    d = c // num_heads
    tokens = group_norm(x, groups, block.norm).reshape(b, c, -1).permute(0, 2, 1)
    qkv = tokens @ block.to_qkv.weight.T + block.to_qkv.bias
    result = torch.empty_like(tokens)
    for image in range(b):
        for head in range(num_heads):
            q = qkv[image, :, head * d : (head + 1) * d]
            k = qkv[image, :, c + head * d : c + (head + 1) * d]
            v = qkv[image, :, 2 * c + head * d : 2 * c + (head + 1) * d]
            scores = q @ k.T / math.sqrt(d)
            weights = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
            weights = weights / weights.sum(dim=1, keepdim=True)  # normalised over the keys
            result[image, :, head * d : (head + 1) * d] = weights @ v
    out = result @ block.to_out.weight.T + block.to_out.bias
    return x + out.permute(0, 2, 1).reshape(b, c, height, width)


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_attention_matches_scaled_dot_product_attention(num_heads):
    """AttentionBlock(x) = x + multi-head softmax attention over the H·W positions."""
    torch.manual_seed(14)
    block = randomise_(unet.AttentionBlock(16, num_heads=num_heads, groups=4).to(F64), seed=15)
    x = randn((2, 16, 4, 3), 16)
    with torch.no_grad():
        got = block(x)
        expected = attention_by_hand(block, x, num_heads, groups=4)
        by_softmax = attention_by_softmax(block, x, num_heads, groups=4)
    assert got.shape == x.shape and got.dtype == F64
    torch.testing.assert_close(expected, by_softmax, rtol=1e-10, atol=1e-10)  # the two oracles agree
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_attention_heads_are_not_interchangeable():
    """Different head counts give different outputs with the same weights (the split matters)."""
    one = randomise_(unet.AttentionBlock(8, num_heads=1, groups=4).to(F64), seed=17)
    two = unet.AttentionBlock(8, num_heads=2, groups=4).to(F64)
    two.load_state_dict(one.state_dict())
    x = randn((1, 8, 3, 3), 18)
    with torch.no_grad():
        assert (one(x) - two(x)).abs().max() > 1e-4


@pytest.mark.parametrize("num_heads", [1, 4])
def test_attention_is_permutation_equivariant(num_heads):
    """Permuting the H·W pixels of the input permutes the output the same way: neither
    attention nor GroupNorm (statistics over all positions) sees where a pixel is."""
    block = randomise_(unet.AttentionBlock(8, num_heads=num_heads, groups=2).to(F64), seed=19)
    b, c, h, w = 2, 8, 4, 5
    x = randn((b, c, h, w), 20)
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(21))
    assert not torch.equal(perm, torch.arange(h * w))
    x_perm = x.flatten(2)[:, :, perm].reshape(b, c, h, w)
    with torch.no_grad():
        out = block(x)
        out_perm = block(x_perm)
    torch.testing.assert_close(out_perm.flatten(2), out.flatten(2)[:, :, perm], rtol=1e-10, atol=1e-10)


def test_attention_mixes_all_positions():
    """Changing one pixel changes the output at every other pixel (attention is global)."""
    block = randomise_(unet.AttentionBlock(8, num_heads=2, groups=2).to(F64), seed=22)
    x = randn((1, 8, 4, 4), 23)
    y = x.clone()
    y[0, :, 0, 0] += 1.0
    with torch.no_grad():
        change = (block(x) - block(y)).abs().sum(dim=1)[0]  # (H, W)
    assert (change > 1e-8).all(), change


def test_attention_parameters_and_modules():
    block = unet.AttentionBlock(32, num_heads=4, groups=8)
    assert [name for name, _ in block.named_children()] == ["norm", "to_qkv", "to_out"]
    assert block.to_qkv.weight.shape == (96, 32)
    assert n_params(block) == attn(32)


def test_attention_errors():
    with pytest.raises(ValueError, match=r"num_heads=3.*channels\b.*16"):
        unet.AttentionBlock(16, num_heads=3, groups=4)
    with pytest.raises(ValueError, match=r"groups=8.*channels\b.*12"):
        unet.AttentionBlock(12, num_heads=2, groups=8)


# ---------------------------------------------------------------------------
# 5. Down- and upsampling (§2.5)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 8, 8, 8), (1, 3, 14, 6), (3, 4, 2, 2)])
def test_downsample_halves_with_a_strided_conv(shape):
    b, c, h, w = shape
    block = randomise_(unet.Downsample(c).to(F64), seed=24)
    x = randn(shape, 25)
    with torch.no_grad():
        got = block(x)
        expected = F.conv2d(x, block.conv.weight, block.conv.bias, stride=2, padding=1)
    assert got.shape == (b, c, h // 2, w // 2)
    assert block.conv.weight.shape == (c, c, 3, 3)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_downsample_by_hand_at_one_output_pixel():
    """Output (i, j) sees input rows 2i−1…2i+1 and columns 2j−1…2j+1 (zero outside)."""
    block = randomise_(unet.Downsample(2).to(F64), seed=26)
    x = randn((1, 2, 6, 6), 27)
    with torch.no_grad():
        got = block(x)
    weight, bias = block.conv.weight, block.conv.bias
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        for o in range(2):
            total = bias[o].item()
            for ci in range(2):
                for a in range(3):
                    for bb in range(3):
                        r, s = 2 * i - 1 + a, 2 * j - 1 + bb
                        if 0 <= r < 6 and 0 <= s < 6:
                            total += weight[o, ci, a, bb].item() * x[0, ci, r, s].item()
            assert got[0, o, i, j].item() == pytest.approx(total, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("shape", [(2, 8, 4, 4), (1, 3, 7, 3), (3, 4, 1, 1)])
def test_upsample_is_nearest_then_conv(shape):
    """Upsample(x) = conv3×3(x with every pixel repeated into a 2×2 block)."""
    b, c, h, w = shape
    block = randomise_(unet.Upsample(c).to(F64), seed=28)
    x = randn(shape, 29)
    blocky = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    with torch.no_grad():
        got = block(x)
        expected = F.conv2d(blocky, block.conv.weight, block.conv.bias, padding=1)
    assert got.shape == (b, c, 2 * h, 2 * w)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_resampling_parameter_counts():
    assert n_params(unet.Downsample(16)) == conv(3, 16, 16)
    assert n_params(unet.Upsample(16)) == conv(3, 16, 16)


# ---------------------------------------------------------------------------
# 6. The U-Net (§2.6–§2.7)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(), (2, 1, 28, 28)),
        (dict(in_channels=3, base_channels=32, channel_mults=(1, 2, 2)), (1, 3, 32, 32)),
        (dict(channel_mults=(1, 2, 2, 4)), (1, 1, 64, 64)),
        (dict(channel_mults=(1,), attention_levels=()), (2, 1, 5, 7)),
        (dict(in_channels=2, channel_mults=(1, 2), num_res_blocks=2, attention_levels=(0, 1)), (1, 2, 12, 8)),
    ],
    ids=["default-28", "rgb-32", "four-levels-64", "one-level-odd", "two-blocks"],
)
def test_unet_output_shape_equals_input_shape(kwargs, shape):
    torch.manual_seed(30)
    model = randomise_(unet.UNet(**kwargs), seed=31)
    x = randn(shape, 32, dtype=torch.float32)
    t = torch.arange(shape[0]) * 7
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_unet_out_channels_may_differ_from_in_channels():
    model = unet.UNet(in_channels=1, out_channels=2)
    assert model.stem.weight.shape[1] == 1
    assert model.head_conv.weight.shape == (2, 16, 3, 3)
    with torch.no_grad():
        out = model(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 2]))
    assert out.shape == (3, 2, 8, 8)


def test_unet_starts_by_predicting_zero():
    """The head convolution is zero-initialised, so a fresh model outputs exactly 0."""
    torch.manual_seed(33)
    model = unet.UNet()
    assert torch.count_nonzero(model.head_conv.weight) == 0
    assert torch.count_nonzero(model.head_conv.bias) == 0
    x = randn((2, 1, 28, 28), 34, dtype=torch.float32)
    with torch.no_grad():
        out = model(x, torch.tensor([3, 900]))
    assert torch.equal(out, torch.zeros_like(out))
    # …while everything before the head is not zero (the zero comes from the head alone).
    assert all(torch.count_nonzero(p) > 0 for name, p in model.named_parameters()
               if name.endswith("weight") and not name.startswith("head_conv"))


def test_unet_every_parameter_gets_a_gradient_and_t_matters():
    """With random weights, a loss on the output reaches every parameter, and t changes the output."""
    model = randomise_(unet.UNet(), seed=35)
    x = randn((2, 1, 16, 16), 36, dtype=torch.float32)
    target = randn((2, 1, 16, 16), 37, dtype=torch.float32)
    out = model(x, torch.tensor([10, 500]))
    ((out - target) ** 2).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"
    with torch.no_grad():
        other = model(x, torch.tensor([11, 20]))
        repeat = model(x, torch.tensor([10, 500]))
    assert (other - out.detach()).abs().amax(dim=(1, 2, 3)).min() > 1e-6
    torch.testing.assert_close(repeat, out.detach(), rtol=1e-6, atol=1e-6)


def test_unet_images_in_a_batch_are_independent():
    """Image 0's output does not depend on image 1 (GroupNorm normalises per image)."""
    model = randomise_(unet.UNet(), seed=38).eval()
    x = randn((2, 1, 8, 8), 39, dtype=torch.float32)
    y = x.clone()
    y[1] = randn((1, 8, 8), 40, dtype=torch.float32)
    t = torch.tensor([5, 6])
    with torch.no_grad():
        a, b = model(x, t), model(y, t)
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-6)
    assert (a[1] - b[1]).abs().max() > 1e-5


def test_unet_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(40)
    model = randomise_(unet.UNet(dropout=0.3), seed=41)
    x = randn((2, 1, 8, 8), 42, dtype=torch.float32)
    t = torch.tensor([1, 2])
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x, t), model(x, t))
        model.train()
        assert not torch.equal(model(x, t), model(x, t))


def test_unet_float64():
    model = randomise_(unet.UNet(), seed=43).to(F64)
    with torch.no_grad():
        out = model(randn((1, 1, 8, 8), 44), torch.tensor([7]))
    assert out.dtype == F64


def test_default_unet_parameter_count_by_hand():
    """The default U-Net (C = 16, mults 1, 2, 4, one block per level, attention at level 2),
    listed block by block with the widths each block sees: the skip stack after the encoder is
    [16 (stem), 16 (level 0 block), 16 (its downsample), 32 (level 1 block), 32 (its
    downsample), 64 (level 2 block)], popped from the end by the decoder's 2 blocks per level."""
    e = 64
    parts = {
        "time_embedding": linear(16, e) + linear(e, e),
        "stem": conv(3, 1, 16),
        "encoder.0": res(16, 16, e) + conv(3, 16, 16),
        "encoder.1": res(16, 32, e) + conv(3, 32, 32),
        "encoder.2": res(32, 64, e) + attn(64),
        "middle": res(64, 64, e) + attn(64) + res(64, 64, e),
        "decoder.0": res(64 + 64, 64, e) + attn(64) + res(64 + 32, 64, e) + attn(64) + conv(3, 64, 64),
        "decoder.1": res(64 + 32, 32, e) + res(32 + 16, 32, e) + conv(3, 32, 32),
        "decoder.2": res(32 + 16, 16, e) + res(16 + 16, 16, e),
        "head": gn(16) + conv(3, 16, 1),
    }
    model = unet.UNet()
    got = {
        "time_embedding": n_params(model.time_embedding),
        "stem": n_params(model.stem),
        **{f"encoder.{i}": n_params(level) for i, level in enumerate(model.encoder)},
        "middle": sum(n_params(m) for m in (model.middle_block1, model.middle_attention, model.middle_block2)),
        **{f"decoder.{i}": n_params(level) for i, level in enumerate(model.decoder)},
        "head": n_params(model.head_norm) + n_params(model.head_conv),
    }
    assert got == parts
    total = sum(parts.values())
    assert unet.count_parameters(model) == total == n_params(model)
    assert expected_unet_parameters() == total  # the general walk agrees with the listing
    assert total == 686_769  # the number IMPLEMENTATION_GUIDE.md (§2.0) quotes


@pytest.mark.parametrize(
    "base_channels, channel_mults, millions",
    [(16, (1, 2, 4), 0.69), (32, (1, 2, 2), 1.11), (24, (1, 2, 2), 0.63), (32, (1, 1, 2), 0.81)],
)
def test_parameter_counts_quoted_in_the_guide(base_channels, channel_mults, millions):
    """The benchmark table of the guide (§2.8), in millions to two decimals, from the walk and the model."""
    config = dict(base_channels=base_channels, channel_mults=channel_mults)
    expected = expected_unet_parameters(**config)
    assert round(expected / 1e6, 2) == millions
    assert unet.count_parameters(unet.UNet(**config)) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(num_res_blocks=2),
        dict(num_res_blocks=3),
        dict(channel_mults=(1, 2), attention_levels=(1,)),
        dict(channel_mults=(1, 2, 2, 4)),
        dict(channel_mults=(1,), attention_levels=()),
        dict(channel_mults=(2, 1, 3), attention_levels=(0, 2)),
        dict(attention_levels=()),
        dict(attention_levels=(0, 1, 2), num_heads=2),
        dict(in_channels=3, base_channels=32, channel_mults=(1, 2, 2)),
        dict(in_channels=3, out_channels=6),
        dict(num_classes=10),
        dict(cond_channels=2),
    ],
    ids=str,
)
def test_unet_parameter_count_follows_the_architecture(kwargs):
    model = unet.UNet(**kwargs)
    assert unet.count_parameters(model) == expected_unet_parameters(**kwargs)


def test_parameter_count_changes_with_depth_and_width():
    default = unet.count_parameters(unet.UNet())
    more_blocks = unet.count_parameters(unet.UNet(num_res_blocks=2))
    fewer_levels = unet.count_parameters(unet.UNet(channel_mults=(1, 2), attention_levels=(1,)))
    wider = unet.count_parameters(unet.UNet(channel_mults=(1, 2, 8)))
    assert more_blocks > default > fewer_levels
    assert wider > default
    assert more_blocks - default == expected_unet_parameters(num_res_blocks=2) - expected_unet_parameters()


def unet_by_hand(model, x, t, config, class_labels=None, cond=None):
    """The forward pass of §2.7 walked from the description, each block by its hand computation.

    Only the weight tensors come from ``model``; which level attends, downsamples or
    upsamples, and which kept activation each decoder block receives, are decided here.
    """
    groups, heads = config.get("groups", 8), config.get("num_heads", 4)
    attention_levels = config.get("attention_levels", (2,))
    num_levels = len(config.get("channel_mults", (1, 2, 4)))
    te = model.time_embedding
    emb = affine(silu(affine(sinusoids(t.tolist(), config.get("base_channels", 16)), te.linear_1)), te.linear_2)
    if config.get("num_classes"):
        labels = torch.full_like(t, config["num_classes"]) if class_labels is None else class_labels
        emb = emb + model.class_embedding.weight[labels]
    if cond is not None:
        x = torch.cat([x, cond], dim=1)
    h = F.conv2d(x, model.stem.weight, model.stem.bias, padding=1)
    kept = [h]
    for index, level in enumerate(model.encoder):
        for block, attention in zip(level.blocks, level.attentions):
            h = residual_by_hand(block, h, emb, groups)
            if index in attention_levels:
                h = attention_by_hand(attention, h, heads, groups)
            kept.append(h)
        if index < num_levels - 1:
            h = F.conv2d(h, level.resample.conv.weight, level.resample.conv.bias, stride=2, padding=1)
            kept.append(h)
    h = residual_by_hand(model.middle_block1, h, emb, groups)
    h = attention_by_hand(model.middle_attention, h, heads, groups)
    h = residual_by_hand(model.middle_block2, h, emb, groups)
    for index, level in zip(range(num_levels - 1, -1, -1), model.decoder):
        for block, attention in zip(level.blocks, level.attentions):
            h = residual_by_hand(block, torch.cat([h, kept.pop()], dim=1), emb, groups)
            if index in attention_levels:
                h = attention_by_hand(attention, h, heads, groups)
        if index > 0:
            blocky = h.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
            h = F.conv2d(blocky, level.resample.conv.weight, level.resample.conv.bias, padding=1)
    assert not kept
    h = silu(group_norm(h, groups, model.head_norm))
    return F.conv2d(h, model.head_conv.weight, model.head_conv.bias, padding=1)


@pytest.mark.parametrize(
    "config",
    [
        dict(),
        dict(channel_mults=(1, 2), num_res_blocks=2, attention_levels=(0, 1), num_heads=2),
        dict(in_channels=2, out_channels=3, base_channels=8, groups=4, channel_mults=(1, 2, 1),
             attention_levels=(1,), num_heads=1, num_classes=3, cond_channels=1),
    ],
    ids=["default", "two-blocks-attention-everywhere", "conditional"],
)
def test_unet_forward_matches_the_description(config):
    """The whole forward pass equals the stem → encoder (keeping every output) → middle →
    decoder (concatenating the kept outputs, last first) → head, built from the block equations."""
    model = randomise_(unet.UNet(**config).to(F64), seed=54)
    in_channels = config.get("in_channels", 1)
    x = randn((2, in_channels, 8, 8), 55)
    t = torch.tensor([3, 700])
    extra = {}
    if config.get("num_classes"):
        extra["class_labels"] = torch.tensor([0, 3])
    if config.get("cond_channels"):
        extra["cond"] = randn((2, config["cond_channels"], 8, 8), 56)
    with torch.no_grad():
        got = model(x, t, **extra)
        expected = unet_by_hand(model, x, t, config, **extra)
    assert got.shape == (2, config.get("out_channels", in_channels), 8, 8)
    assert expected.abs().max() > 1e-3  # the comparison is not between zeros
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_unet_module_layout():
    """Encoder levels: num_res_blocks blocks, a Downsample but on the last; decoder deepest first
    with num_res_blocks + 1 blocks and an Upsample but on level 0; attention where asked."""
    model = unet.UNet(num_res_blocks=2, attention_levels=(1,), channel_mults=(1, 2, 4))
    assert [len(level.blocks) for level in model.encoder] == [2, 2, 2]
    assert [len(level.blocks) for level in model.decoder] == [3, 3, 3]
    assert [type(level.resample).__name__ for level in model.encoder] == ["Downsample", "Downsample", "NoneType"]
    assert [type(level.resample).__name__ for level in model.decoder] == ["Upsample", "Upsample", "NoneType"]
    encoder_attention = [[type(a).__name__ for a in level.attentions] for level in model.encoder]
    assert encoder_attention == [["Identity"] * 2, ["AttentionBlock"] * 2, ["Identity"] * 2]
    decoder_attention = [[type(a).__name__ for a in level.attentions] for level in model.decoder]
    assert decoder_attention == [["Identity"] * 3, ["AttentionBlock"] * 3, ["Identity"] * 3]
    assert model.middle_attention.num_heads == 4
    assert [block.conv1.out_channels for block in model.decoder[0].blocks] == [64, 64, 64]
    assert model.decoder[-1].blocks[-1].conv1.in_channels == 16 + 16  # level 0's block + the stem


# ---------------------------------------------------------------------------
# 7. Conditioning (Phase 5, provided code)
# ---------------------------------------------------------------------------


def test_class_embedding_has_a_null_row():
    plain = unet.UNet()
    model = unet.UNet(num_classes=10)
    assert model.class_embedding.weight.shape == (11, 64)
    assert unet.count_parameters(model) - unet.count_parameters(plain) == 11 * 64
    assert plain.class_embedding is None and unet.UNet(num_classes=0).class_embedding is None


def test_class_labels_none_means_the_null_class_and_labels_matter():
    model = randomise_(unet.UNet(num_classes=10), seed=45)
    x = randn((3, 1, 8, 8), 46, dtype=torch.float32)
    t = torch.tensor([1, 50, 900])
    with torch.no_grad():
        unconditional = model(x, t)
        null = model(x, t, class_labels=torch.full((3,), 10))
        labelled = model(x, t, class_labels=torch.tensor([0, 3, 9]))
        other = model(x, t, class_labels=torch.tensor([1, 4, 8]))
    assert torch.equal(unconditional, null)
    assert (labelled - null).abs().amax(dim=(1, 2, 3)).min() > 1e-6
    assert (labelled - other).abs().amax(dim=(1, 2, 3)).min() > 1e-6


def test_class_embedding_is_added_to_the_time_embedding():
    """embed(t, y) = TimeEmbedding(t) + E[y], computed with the module's weight tensors."""
    model = randomise_(unet.UNet(num_classes=4).to(F64), seed=47)
    t, y = torch.tensor([3, 40]), torch.tensor([2, 4])
    te = model.time_embedding
    with torch.no_grad():
        expected = affine(silu(affine(sinusoids([3, 40], 16), te.linear_1)), te.linear_2)
        expected = expected + model.class_embedding.weight[y]
        torch.testing.assert_close(model.embed(t, y), expected, rtol=1e-10, atol=1e-12)


def test_cond_channels_widen_the_stem_and_are_required():
    model = randomise_(unet.UNet(cond_channels=2), seed=48)
    assert model.stem.weight.shape == (16, 1 + 2, 3, 3)
    x = randn((2, 1, 8, 8), 49, dtype=torch.float32)
    t = torch.tensor([4, 5])
    with pytest.raises(ValueError, match=r"\bcond\b"):
        model(x, t)
    with pytest.raises(ValueError, match=r"\bcond\b.*shape"):
        model(x, t, cond=torch.zeros(2, 1, 8, 8))
    with torch.no_grad():
        a = model(x, t, cond=randn((2, 2, 8, 8), 50, dtype=torch.float32))
        b = model(x, t, cond=randn((2, 2, 8, 8), 51, dtype=torch.float32))
    assert a.shape == x.shape
    assert (a - b).abs().max() > 1e-6


# ---------------------------------------------------------------------------
# 8. Documented errors
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_model():
    torch.manual_seed(52)
    return unet.UNet()


def test_image_size_must_halve_evenly(default_model):
    with pytest.raises(ValueError) as info:
        default_model(torch.zeros(1, 1, 30, 30), torch.tensor([1]))
    message = str(info.value)
    assert "30" in message and "3 levels" in message and "channel_mults" in message
    assert "4" in message  # divisible by 2^(3−1) = 4
    with pytest.raises(ValueError, match="3 levels"):
        default_model(torch.zeros(1, 1, 28, 30), torch.tensor([1]))
    with pytest.raises(ValueError, match="4 levels"):
        unet.UNet(channel_mults=(1, 2, 2, 4))(torch.zeros(1, 1, 28, 28), torch.tensor([1]))


@pytest.mark.parametrize("shape", [(1, 3, 28, 28), (1, 2, 8, 8), (1, 28, 28), (1, 1, 1, 8, 8)], ids=str)
def test_x_must_have_the_model_channels(default_model, shape):
    with pytest.raises(ValueError, match=r"\bx\b.*\(B, 1, H, W\)"):
        default_model(torch.zeros(shape), torch.tensor([1]))


def test_x_must_be_floating(default_model):
    with pytest.raises(TypeError, match=r"\bx\b"):
        default_model(torch.zeros(1, 1, 8, 8, dtype=torch.int64), torch.tensor([1]))


@pytest.mark.parametrize("t", [torch.tensor([1, 2, 3]), torch.tensor([[1], [2]]), torch.tensor(1), [1, 2]], ids=str)
def test_t_must_have_shape_b(default_model, t):
    with pytest.raises(ValueError, match=re.escape("t must have shape (B,) = (2,)")):
        default_model(torch.zeros(2, 1, 8, 8), t)


def test_t_must_not_be_bool(default_model):
    with pytest.raises(TypeError, match=r"\bt\b.*bool"):
        default_model(torch.zeros(2, 1, 8, 8), torch.tensor([True, False]))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(base_channels=12, groups=8), r"groups=8.*12"),
        (dict(groups=5), r"groups=5.*16"),
        (dict(base_channels=8, groups=16), r"groups=16.*8"),
        (dict(num_heads=3), r"num_heads=3"),
        (dict(attention_levels=(), num_heads=3), r"num_heads=3.*64"),  # the middle always attends
        (
            dict(base_channels=8, groups=4, channel_mults=(1, 2), attention_levels=(0,), num_heads=16),
            r"num_heads=16.*8",
        ),
        (dict(attention_levels=(3,)), r"attention_levels.*\[0, 2\]"),
        (dict(attention_levels=(-1,)), r"attention_levels"),
        (dict(attention_levels=(True,)), r"attention_levels"),
        (dict(channel_mults=()), r"channel_mults"),
        (dict(dropout=1.0), r"dropout"),
        (dict(dropout=-0.5), r"dropout"),
        (dict(cond_channels=-1), r"cond_channels"),
        (dict(cond_channels=1.5), r"cond_channels"),
        (dict(base_channels=0), r"base_channels"),
        (dict(num_res_blocks=0), r"num_res_blocks"),
        (dict(num_classes=-2), r"num_classes"),
        (dict(in_channels=0), r"in_channels"),
        (dict(out_channels=0), r"out_channels"),
    ],
    ids=str,
)
def test_bad_configurations_name_the_argument(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        unet.UNet(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(base_channels=16.0), "base_channels"),
        (dict(num_res_blocks=True), "num_res_blocks"),
        (dict(num_heads="4"), "num_heads"),
        (dict(channel_mults=(1, 2.0)), "channel_mults"),
        (dict(groups=8.0), "groups"),
    ],
    ids=str,
)
def test_non_integer_configuration_values(kwargs, name):
    with pytest.raises(TypeError, match=name):
        unet.UNet(**kwargs)


@pytest.mark.parametrize("labels", [[0, 11], [-1, 3], [10, 12]], ids=str)
def test_class_labels_out_of_range(labels):
    model = unet.UNet(num_classes=10)
    with pytest.raises(ValueError, match=re.escape("class_labels must lie in [0, 10]")):
        model(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2]), class_labels=torch.tensor(labels))


def test_class_labels_shape_and_dtype():
    model = unet.UNet(num_classes=10)
    x, t = torch.zeros(2, 1, 8, 8), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="class_labels"):
        model(x, t, class_labels=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="class_labels.*int64"):
        model(x, t, class_labels=torch.tensor([1.0, 2.0]))


def test_class_labels_need_a_class_conditional_model(default_model):
    with pytest.raises(ValueError, match="class_labels.*num_classes"):
        default_model(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2]), class_labels=torch.tensor([0, 1]))


def test_cond_needs_cond_channels(default_model):
    with pytest.raises(ValueError, match=r"\bcond\b.*cond_channels=0"):
        default_model(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2]), cond=torch.zeros(2, 1, 8, 8))


# ---------------------------------------------------------------------------
# 9. The default configuration
# ---------------------------------------------------------------------------


def test_default_config_is_the_documented_one():
    assert unet.DEFAULT_CONFIG == DOCUMENTED_DEFAULT


def test_default_config_builds_the_default_unet():
    torch.manual_seed(53)
    from_config = unet.UNet(**unet.DEFAULT_CONFIG)
    torch.manual_seed(53)
    plain = unet.UNet()
    a, b = from_config.state_dict(), plain.state_dict()
    assert list(a) == list(b)
    assert all(a[key].shape == b[key].shape and torch.equal(a[key], b[key]) for key in a)
    assert {k: from_config.config[k] for k in DOCUMENTED_DEFAULT} == DOCUMENTED_DEFAULT
    assert from_config.config["out_channels"] == 1
    assert from_config.config["num_classes"] is None and from_config.config["cond_channels"] == 0
