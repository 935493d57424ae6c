"""Phase 2 checks: the U-Net, block by block (guide §2.1–§2.7).

Each block is built with your class, loads the reference block's (seeded,
randomised) weights with ``load_state_dict(strict=True)`` and runs on the same
float64 inputs as the reference. Each check grades one piece alone: the
TimeEmbedding check uses the reference ``timestep_embedding``, and the UNet
layout and forward checks put the reference blocks into your module, so a
wrong block only costs that block's checks. One check then runs the whole
network with your own blocks, and the structure checks at the end ignore
names altogether (shapes, dependence on t, gradients, determinism).

Wrong variants for the classic mistakes are computed below from the reference
block's own submodules; a failing check names the one your output matches.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from grading.checker import check_close, fail
from grading.mistakes import MISTAKES
from grading.modules import check_parameter_count, load_reference_weights, randomize_, reference_parts

pytestmark = pytest.mark.phase2

F64 = torch.float64
#: Whole networks chain many layers: allow for a different (correct) order of float64 operations.
NETWORK_TOLERANCE = {"rtol": 1e-8, "atol": 1e-9}
BLOCKS = ("timestep_embedding", "TimeEmbedding", "ResidualBlock", "AttentionBlock", "Downsample", "Upsample")


def seeded(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def describe_config(config: dict) -> str:
    return "UNet(" + ", ".join(f"{key}={value}" for key, value in config.items()) + ")"


# ---------------------------------------------------------------------------
# §2.1 timestep_embedding
# ---------------------------------------------------------------------------

TIMESTEPS = torch.tensor([0, 1, 17, 250, 999])


def embedding_variants(t: torch.Tensor, dim: int, max_period: float, dtype: torch.dtype) -> dict:
    """The classic wrong embeddings for the same inputs."""
    half = dim // 2
    i = torch.arange(half, dtype=F64)

    def sinusoids(frequencies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = t.to(F64)[:, None] * frequencies[None, :]
        return torch.sin(angles), torch.cos(angles)

    sin, cos = sinusoids(max_period ** (-i / half))
    wrong_frequencies = [max_period ** (-i / (half - 1)), max_period ** (-i / dim),
                         max_period ** (i / half), max_period ** (-2 * i / half), 10_000.0 ** (-i / half)]
    return {
        "sin_cos_swapped": torch.cat([cos, sin], dim=1).to(dtype),
        "sin_cos_interleaved": torch.stack([sin, cos], dim=2).reshape(len(t), dim).to(dtype),
        "frequency_formula": [torch.cat(sinusoids(f), dim=1).to(dtype) for f in wrong_frequencies],
    }


@pytest.mark.points(3)
@pytest.mark.exercise("2.1", "timestep_embedding")
@pytest.mark.parametrize("dim", [16, 6])
def test_timestep_embedding(impl, ref, dim):
    """timestep_embedding is [sin(t ω_i) …, cos(t ω_i) …] with ω_i = 10000^(−i/h), in float64"""
    got = impl.unet.timestep_embedding(TIMESTEPS, dim, dtype=F64)
    check_close(
        got, ref.unet.timestep_embedding(TIMESTEPS, dim, dtype=F64),
        function="timestep_embedding", section="2.1",
        inputs={"t": TIMESTEPS, "dim": dim, "dtype": F64},
        mistakes=embedding_variants(TIMESTEPS, dim, 10_000.0, F64),
    )


@pytest.mark.points(1)
@pytest.mark.exercise("2.1", "timestep_embedding")
def test_timestep_embedding_max_period(impl, ref):
    """timestep_embedding uses its max_period argument"""
    got = impl.unet.timestep_embedding(TIMESTEPS, 8, max_period=100.0, dtype=F64)
    check_close(
        got, ref.unet.timestep_embedding(TIMESTEPS, 8, max_period=100.0, dtype=F64),
        function="timestep_embedding", section="2.1",
        inputs={"t": TIMESTEPS, "dim": 8, "max_period": 100.0, "dtype": F64},
        mistakes=embedding_variants(TIMESTEPS, 8, 100.0, F64),
    )


@pytest.mark.points(1)
@pytest.mark.exercise("2.1", "timestep_embedding")
def test_timestep_embedding_float32(impl, ref):
    """timestep_embedding computes in the dtype it is given (float32 by default)"""
    got = impl.unet.timestep_embedding(TIMESTEPS, 16)
    # float32 angles of up to ~1000 radians carry rounding of ~1e-4: compare loosely.
    check_close(
        got, ref.unet.timestep_embedding(TIMESTEPS, 16),
        function="timestep_embedding", section="2.1", inputs={"t": TIMESTEPS, "dim": 16},
        mistakes=embedding_variants(TIMESTEPS, 16, 10_000.0, torch.float32), rtol=0, atol=2e-3,
    )


# ---------------------------------------------------------------------------
# §2.2 TimeEmbedding
# ---------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.exercise("2.2", "TimeEmbedding")
def test_time_embedding_mlp(impl, ref):
    """TimeEmbedding is linear_2(SiLU(linear_1(sinusoids(t))))"""
    reference = randomize_(ref.unet.TimeEmbedding(16, 64).double(), seed=21)
    t = torch.tensor([0, 3, 500, 999])
    with reference_parts(impl.unet.module, ref.unet, ("timestep_embedding",)):
        mine = impl.unet.TimeEmbedding(16, 64).double()
        load_reference_weights(mine, reference, what="TimeEmbedding(16, 64)", section="2.2")
        got = mine(t)
    s = ref.unet.timestep_embedding(t, 16, dtype=F64)
    first, second = reference.linear_1, reference.linear_2
    check_close(
        got, reference(t), function="TimeEmbedding.forward", section="2.2", inputs={"t": t},
        mistakes={"mlp_activation": [second(first(s)), F.silu(second(F.silu(first(s)))), F.silu(second(first(s)))]},
    )


# ---------------------------------------------------------------------------
# §2.3 ResidualBlock
# ---------------------------------------------------------------------------


def residual_variant(block, x, emb, *, norm1=True, norm2=True, inject="after conv1", silu_emb=True, residual=True):
    """The residual block's forward with one piece changed (for naming mistakes)."""
    identity = lambda z: z  # noqa: E731
    shift = block.embed_proj(F.silu(emb) if silu_emb else emb)[:, :, None, None]
    h = block.conv1(F.silu((block.norm1 if norm1 else identity)(x)))
    if inject == "after conv1":
        h = h + shift
    h = block.conv2(block.dropout(F.silu((block.norm2 if norm2 else identity)(h))))
    if inject == "after conv2":
        h = h + shift
    return h + block.skip(x) if residual else h


@pytest.mark.points(4)
@pytest.mark.exercise("2.3", "ResidualBlock")
@pytest.mark.parametrize("channels", [(16, 32), (32, 32)], ids=["16 to 32 channels", "32 to 32 channels"])
def test_residual_block(impl, ref, channels):
    """ResidualBlock: norm → SiLU → conv, + embedding, norm → SiLU → dropout → conv, + skip(x)"""
    c_in, c_out = channels
    reference = randomize_(ref.unet.ResidualBlock(c_in, c_out, 64, groups=8).double().eval(), seed=c_in + c_out)
    mine = impl.unet.ResidualBlock(c_in, c_out, 64, groups=8).double().eval()
    load_reference_weights(mine, reference, what=f"ResidualBlock({c_in}, {c_out}, 64, groups=8)", section="2.3")
    x, emb = seeded((2, c_in, 6, 5), 1), seeded((2, 64), 2)
    with torch.no_grad():
        got = mine(x, emb)
        expected = reference(x, emb)
        variant = lambda **change: residual_variant(reference, x, emb, **change)  # noqa: E731
        mistakes = {
            "time_embedding_not_injected": variant(inject=None),
            "embedding_without_silu": variant(silu_emb=False),
            "embedding_wrong_place": variant(inject="after conv2"),
            "groupnorm_missing": [variant(norm1=False), variant(norm2=False), variant(norm1=False, norm2=False)],
            "residual_missing": variant(residual=False),
        }
    check_close(got, expected, function="ResidualBlock.forward", section="2.3",
                inputs={"x": x, "emb": emb}, mistakes=mistakes)


# ---------------------------------------------------------------------------
# §2.4 AttentionBlock
# ---------------------------------------------------------------------------


def attention_variant(block, x, *, scale="head", softmax_dim=-1, residual=True):
    """The attention block's forward with one piece changed (for naming mistakes)."""
    batch, channels, height, width = x.shape
    heads = block.num_heads
    d = channels // heads
    tokens = block.norm(x).reshape(batch, channels, height * width).transpose(1, 2)
    q, k, v = (z.reshape(batch, -1, heads, d).transpose(1, 2) for z in block.to_qkv(tokens).chunk(3, dim=-1))
    scores = q @ k.transpose(-2, -1)
    if scale == "head":
        scores = scores / math.sqrt(d)
    elif scale == "channels":
        scores = scores / math.sqrt(channels)
    out = (scores.softmax(dim=softmax_dim) @ v).transpose(1, 2).reshape(batch, height * width, channels)
    out = block.to_out(out).transpose(1, 2).reshape(batch, channels, height, width)
    return x + out if residual else out


@pytest.mark.points(4)
@pytest.mark.exercise("2.4", "AttentionBlock")
@pytest.mark.parametrize("num_heads", [1, 4], ids=["1 head", "4 heads"])
def test_attention_block(impl, ref, num_heads):
    """AttentionBlock: x + to_out(softmax(q kᵀ / √d) v) over the H·W positions"""
    reference = randomize_(ref.unet.AttentionBlock(16, num_heads, groups=8).double(), seed=30 + num_heads)
    mine = impl.unet.AttentionBlock(16, num_heads, groups=8).double()
    load_reference_weights(mine, reference, what=f"AttentionBlock(16, num_heads={num_heads})", section="2.4")
    x = seeded((2, 16, 4, 3), 3)
    with torch.no_grad():
        got = mine(x)
        expected = reference(x)
        variant = lambda **change: attention_variant(reference, x, **change)  # noqa: E731
        mistakes = {
            "attention_no_residual": variant(residual=False),
            "attention_no_scaling": variant(scale=None),
            "softmax_wrong_axis": variant(softmax_dim=-2),
        }
        if num_heads > 1:
            mistakes["attention_scaled_by_channels"] = variant(scale="channels")
    check_close(got, expected, function="AttentionBlock.forward", section="2.4",
                inputs={"x": x, "num_heads": num_heads}, mistakes=mistakes)


# ---------------------------------------------------------------------------
# §2.5 Downsample and Upsample
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("2.5", "Downsample")
def test_downsample(impl, ref):
    """Downsample halves H and W with a strided 3×3 convolution"""
    check_downsample(impl, ref, channels=8, x=seeded((2, 8, 6, 10), 4), seed=40)


def check_downsample(impl, ref, channels: int, x: torch.Tensor, seed: int) -> None:
    """The learner's Downsample(channels) against the reference's, on shared seeded weights."""
    reference = randomize_(ref.unet.Downsample(channels).double(), seed=seed)
    mine = impl.unet.Downsample(channels).double()
    load_reference_weights(mine, reference, what=f"Downsample({channels})", section="2.5")
    with torch.no_grad():
        got, expected = mine(x), reference(x)
    check_close(got, expected, function="Downsample.forward", section="2.5", inputs={"x": x})


@pytest.mark.points(2)
@pytest.mark.exercise("2.5", "Upsample")
def test_upsample(impl, ref):
    """Upsample doubles H and W (nearest neighbour), then a 3×3 convolution"""
    check_upsample(impl, ref, channels=8, x=seeded((2, 8, 3, 5), 5), seed=41)


def check_upsample(impl, ref, channels: int, x: torch.Tensor, seed: int) -> None:
    """The learner's Upsample(channels) against the reference's, naming wrong axes and interpolation."""
    reference = randomize_(ref.unet.Upsample(channels).double(), seed=seed)
    mine = impl.unet.Upsample(channels).double()
    load_reference_weights(mine, reference, what=f"Upsample({channels})", section="2.5")
    b, c, h, w = x.shape
    with torch.no_grad():
        got, expected = mine(x), reference(x)
        smooth = [reference.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=corners))
                  for corners in (False, True)]
    wrong_shapes = [(b, c, 4 * h, w), (b, c, h, 4 * w), (b, c, 2 * h, w), (b, c, h, 2 * w), (b, c, h, w)]
    check_close(
        got, expected, function="Upsample.forward", section="2.5", inputs={"x": x},
        mistakes={
            "upsample_wrong_dims": [torch.full(shape, math.nan, dtype=F64) for shape in wrong_shapes],
            "upsample_not_nearest": smooth,
        },
    )


# ---------------------------------------------------------------------------
# §2.6 the U-Net's layout
# ---------------------------------------------------------------------------

CONFIGS = {
    "default 1x28x28": (dict(), (2, 1, 28, 28)),
    "3x32x32 with 2 blocks and attention at 1 and 2": (
        dict(in_channels=3, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=2,
             attention_levels=(1, 2), num_heads=2),
        (2, 3, 32, 32),
    ),
    "3x64x64 with 4 levels and 2 outputs": (
        dict(in_channels=3, out_channels=2, base_channels=8, channel_mults=(1, 2, 2, 4),
             attention_levels=(3,), num_heads=2, groups=4),
        (1, 3, 64, 64),
    ),
}


@pytest.fixture(params=list(CONFIGS))
def config(request):
    return CONFIGS[request.param]


@pytest.mark.points(2)
@pytest.mark.exercise("2.6", "UNet.__init__")
def test_unet_parameter_count(impl, ref, config):
    """UNet has the reference's number of parameters (whatever the names)"""
    kwargs, _ = config
    with reference_parts(impl.unet.module, ref.unet, BLOCKS):
        mine = impl.unet.UNet(**kwargs)
    check_parameter_count(mine, ref.unet.UNet(**kwargs), what=describe_config(kwargs), section="2.6")


@pytest.mark.points(2)
@pytest.mark.exercise("2.6", "UNet.__init__")
def test_unet_layout(impl, ref, config):
    """UNet's modules have the guide's names and shapes (it loads the reference weights)"""
    kwargs, _ = config
    with reference_parts(impl.unet.module, ref.unet, BLOCKS):
        mine = impl.unet.UNet(**kwargs)
    load_reference_weights(mine, ref.unet.UNet(**kwargs), what=describe_config(kwargs), section="2.6")


@pytest.mark.points(1)
@pytest.mark.exercise("2.6", "UNet.__init__")
def test_unet_head_starts_at_zero(impl, ref):
    """A freshly built UNet predicts exactly 0 (zero-initialised head)"""
    x, t = seeded((2, 1, 28, 28), 6, torch.float32), torch.tensor([3, 900])
    with reference_parts(impl.unet.module, ref.unet, BLOCKS), torch.no_grad():
        got = impl.unet.UNet()(x, t)
    if got.shape != x.shape or got.abs().max() != 0:
        mistake = MISTAKES["head_not_zero"]
        largest = got.abs().max().item() if got.numel() else float("nan")
        fail(f"`UNet()(x, t)` on a fresh network should be exactly 0; its largest |value| is {largest:.3g}.\n"
             f"  This looks like a classic mistake: **{mistake.title}**. {mistake.advice}")


# ---------------------------------------------------------------------------
# §2.7 the U-Net's forward pass
# ---------------------------------------------------------------------------


def unet_variant(model, x, t, *, skip_after_attention=True):
    """The U-Net's forward with one piece changed (for naming mistakes)."""
    emb = model.embed(t)
    h = model.stem(x)
    skips = [h]
    for level in model.encoder:
        for block, attention in zip(level.blocks, level.attentions):
            h = block(h, emb)
            if not skip_after_attention:
                skips.append(h)
            h = attention(h)
            if skip_after_attention:
                skips.append(h)
        if level.resample is not None:
            h = level.resample(h)
            skips.append(h)
    h = model.middle_block2(model.middle_attention(model.middle_block1(h, emb)), emb)
    for level in model.decoder:
        for block, attention in zip(level.blocks, level.attentions):
            h = attention(block(torch.cat([h, skips.pop()], dim=1), emb))
        if level.resample is not None:
            h = level.resample(h)
    return model.head_conv(F.silu(model.head_norm(h)))


def shared_weight_pair(impl, ref, kwargs: dict, seed: int):
    """The reference UNet with random float64 weights, and yours with the same weights."""
    reference = randomize_(ref.unet.UNet(**kwargs).double().eval(), seed=seed)
    mine = impl.unet.UNet(**kwargs).double().eval()
    load_reference_weights(mine, reference, what=describe_config(kwargs), section="2.6")
    return mine, reference


@pytest.mark.points(4)
@pytest.mark.exercise("2.7", "UNet.forward")
@pytest.mark.parametrize("name", list(CONFIGS)[:2])
def test_unet_forward(impl, ref, name):
    """UNet.forward (with the reference blocks) matches the reference on shared weights"""
    kwargs, shape = CONFIGS[name]
    x, t = seeded(shape, 7), torch.tensor([0, 640])
    with reference_parts(impl.unet.module, ref.unet, BLOCKS), torch.no_grad():
        mine, reference = shared_weight_pair(impl, ref, kwargs, seed=50)
        got = mine(x, t)
        expected = reference(x, t)
        mistakes = {"skip_before_attention": unet_variant(reference, x, t, skip_after_attention=False)}
    check_close(got, expected, function="UNet.forward", section="2.7", inputs={"x": x, "t": t},
                mistakes=mistakes, **NETWORK_TOLERANCE)


@pytest.mark.points(3)
@pytest.mark.exercise("2.7", "UNet.forward")
def test_unet_with_your_blocks(impl, ref):
    """The whole UNet, built from your own blocks, matches the reference on shared weights"""
    kwargs, shape = CONFIGS["default 1x28x28"]
    x, t = seeded(shape, 8), torch.tensor([5, 999])
    with torch.no_grad():
        mine, reference = shared_weight_pair(impl, ref, kwargs, seed=51)
        got, expected = mine(x, t), reference(x, t)
    check_close(got, expected, function="UNet.forward", section="2.7", inputs={"x": x, "t": t},
                what="the output of your UNet with your blocks (if only this check fails, see the block checks)",
                **NETWORK_TOLERANCE)


# --- structure checks: they ignore names, and use your code throughout ---


@pytest.mark.points(1)
@pytest.mark.exercise("2.7", "UNet.forward")
def test_unet_output_shape(impl, config):
    """UNet's output has the shape of its input (out_channels channels)"""
    kwargs, shape = config
    model = randomize_(impl.unet.UNet(**kwargs), seed=9)
    x, t = seeded(shape, 9, torch.float32), torch.arange(shape[0]) * 300
    with torch.no_grad():
        got = model(x, t)
    expected = (shape[0], kwargs.get("out_channels", shape[1]), *shape[2:])
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != expected:
        found = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        fail(f"`{describe_config(kwargs)}(x of shape {shape}, t)` returned {found}, expected {expected}. "
             "See IMPLEMENTATION_GUIDE.md §2.0 for the shapes at each level.")


@pytest.mark.points(1)
@pytest.mark.exercise("2.7", "UNet.forward")
def test_unet_output_depends_on_t(impl):
    """UNet's output changes with the timestep"""
    model = randomize_(impl.unet.UNet(), seed=10).eval()
    x = seeded((1, 1, 28, 28), 10, torch.float32).repeat(3, 1, 1, 1)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 500, 999]))
    if torch.allclose(out[0], out[1]) or torch.allclose(out[1], out[2]):
        mistake = MISTAKES["time_embedding_not_injected"]
        fail("The same image at t = 0, 500 and 999 gives the same output (random weights): the timestep "
             f"does not reach the network.\n  **{mistake.title}?** {mistake.advice}\nSee IMPLEMENTATION_GUIDE.md §2.3.")


@pytest.mark.points(2)
@pytest.mark.exercise("2.7", "UNet.forward")
def test_unet_every_parameter_gets_a_gradient(impl):
    """Every parameter of UNet receives a nonzero gradient (random weights)"""
    model = randomize_(impl.unet.UNet(), seed=11)
    x, t = seeded((2, 1, 28, 28), 11, torch.float32), torch.tensor([10, 700])
    impl.backward(model(x, t).square().mean())  # through your code, in the worker
    idle = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    if idle:
        fail(f"{len(idle)} parameter(s) receive no gradient, so they never learn: {', '.join(idle[:6])}"
             f"{', …' if len(idle) > 6 else ''}. A module created in __init__ but never used in forward "
             "(or whose output is discarded) does this. See IMPLEMENTATION_GUIDE.md §2.7.")


@pytest.mark.points(1)
@pytest.mark.exercise("2.7", "UNet.forward")
def test_unet_dropout_only_in_training(impl):
    """With dropout, UNet is deterministic in eval mode and random in train mode"""
    model = randomize_(impl.unet.UNet(dropout=0.5), seed=12)
    x, t = seeded((2, 1, 28, 28), 12, torch.float32), torch.tensor([1, 2])
    with torch.no_grad():
        model.eval()
        first, second = model(x, t), model(x, t)
        model.train()
        third, fourth = model(x, t), model(x, t)
    if not torch.equal(first, second):
        fail("In eval mode two calls on the same input differ: use nn.Dropout (it is off in eval mode), "
             "not F.dropout without training=self.training. See IMPLEMENTATION_GUIDE.md §2.3.")
    if torch.equal(third, fourth):
        fail("With dropout=0.5 in train mode two calls give the same output: the residual blocks do not "
             "apply their dropout (between norm2 → SiLU and conv2). See IMPLEMENTATION_GUIDE.md §2.3.")
