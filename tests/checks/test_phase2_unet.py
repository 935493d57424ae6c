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
import re
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from grading.checker import check_close, classic_mistake, fail, naming_crash
from grading.mistakes import MISTAKES
from grading.modules import (check_parameter_count, load_reference_weights, randomize_, reference_parts,
                             weight_differences)

pytestmark = pytest.mark.phase2

F64 = torch.float64
#: Whole networks chain many layers: allow for a different (correct) order of float64 operations.
NETWORK_TOLERANCE = {"rtol": 1e-8, "atol": 1e-9}
BLOCKS = ("timestep_embedding", "TimeEmbedding", "ResidualBlock", "AttentionBlock", "Downsample", "Upsample")


def seeded(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def describe_config(config: dict) -> str:
    return "UNet(" + ", ".join(f"{key}={value}" for key, value in config.items()) + ")"


def fail_alone(message: str) -> None:
    """fail(message) from a context manager's exit, without the failure it replaces in the report."""
    raise pytest.fail.Exception(message, pytrace=False) from None


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
                         max_period ** (i / half), max_period ** (-2 * i / half)]
    variants = {
        "sin_cos_swapped": torch.cat([cos, sin], dim=1).to(dtype),
        "sin_cos_interleaved": torch.stack([sin, cos], dim=2).reshape(len(t), dim).to(dtype),
        "frequency_formula": [torch.cat(sinusoids(f), dim=1).to(dtype) for f in wrong_frequencies],
        "frequency_index_from_one": torch.cat(sinusoids(max_period ** (-(i + 1) / half)), dim=1).to(dtype),
    }
    if max_period != 10_000.0:
        variants["max_period_ignored"] = torch.cat(sinusoids(10_000.0 ** (-i / half)), dim=1).to(dtype)
    if dtype == F64:  # angles (or everything) in float32, the result cast to float64
        angles = t.to(F64)[:, None] * max_period ** (-i / half)[None, :]
        angles32 = t.float()[:, None] * (max_period ** (-i.float() / half))[None, :]
        variants["embedding_float32"] = [torch.cat([torch.sin(a), torch.cos(a)], dim=1).to(dtype)
                                         for a in (angles.float(), angles32)]
    return variants


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
    got = impl.unet.timestep_embedding(TIMESTEPS, 8, max_period=50.0, dtype=F64)
    check_close(
        got, ref.unet.timestep_embedding(TIMESTEPS, 8, max_period=50.0, dtype=F64),
        function="timestep_embedding", section="2.1",
        inputs={"t": TIMESTEPS, "dim": 8, "max_period": 50.0, "dtype": F64},
        mistakes=embedding_variants(TIMESTEPS, 8, 50.0, F64),
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
        with naming_crash("sinusoids_wrong_dtype", "dtype"):
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


def residual_variant(block, x, emb, *, norm1=True, norm2=True, inject="after conv1", silu_emb=True, residual=True,
                     silu_first=(False, False), reshaped=True):
    """The residual block's forward with one piece changed (for naming mistakes)."""
    identity = lambda z: z  # noqa: E731
    shift = block.embed_proj(F.silu(emb) if silu_emb else emb)
    shift = shift[:, :, None, None] if reshaped else shift  # not reshaped: (B, C) lines up with (H, W)

    def activate(h, norm, which):
        norm = norm if norm is not None else identity
        return norm(F.silu(h)) if silu_first[which] else F.silu(norm(h))

    h = block.conv1(activate(x, block.norm1 if norm1 else None, 0))
    if inject == "after conv1":
        h = h + shift
    if inject in ("after norm2", "after SiLU"):
        h = block.norm2(h) + shift if inject == "after norm2" else F.silu(block.norm2(h)) + shift
        h = block.conv2(block.dropout(F.silu(h) if inject == "after norm2" else h))
    else:
        h = block.conv2(block.dropout(activate(h, block.norm2 if norm2 else None, 1)))
    if inject == "after conv2":
        h = h + shift
    return h + block.skip(x) if residual else h


def residual_mistakes(block, x, emb) -> dict:
    """The classic wrong outputs of ResidualBlock ``block`` (the reference's) on x and emb."""
    variant = lambda **change: residual_variant(block, x, emb, **change)  # noqa: E731
    mistakes = {
        "time_embedding_not_injected": variant(inject=None),
        "embedding_without_silu": variant(silu_emb=False),
        "embedding_wrong_place": [variant(inject=place) for place in ("after conv2", "after norm2", "after SiLU")],
        "groupnorm_missing": [variant(norm1=False), variant(norm2=False), variant(norm1=False, norm2=False)],
        "residual_missing": variant(residual=False),
        "silu_before_norm": [variant(silu_first=order) for order in ((True, False), (False, True), (True, True))],
    }
    batch, channels, height, width = x.shape[0], block.conv2.out_channels, *x.shape[2:]
    if batch in (1, height) and channels in (1, width):  # (B, C) broadcasts silently against (B, C, H, W)
        mistakes["embedding_not_reshaped"] = variant(reshaped=False)
    return mistakes


@pytest.mark.points(4)
@pytest.mark.exercise("2.3", "ResidualBlock")
@pytest.mark.parametrize("channels", [(16, 32, 6, 5), (32, 32, 2, 32)],
                         ids=["16 to 32 channels", "32 to 32 channels"])
def test_residual_block(impl, ref, channels):
    """ResidualBlock: norm → SiLU → conv, + embedding, norm → SiLU → dropout → conv, + skip(x)"""
    c_in, c_out, height, width = channels  # a 2×32 image: a (B, C_out) embedding not reshaped broadcasts silently
    reference = randomize_(ref.unet.ResidualBlock(c_in, c_out, 64, groups=8).double().eval(), seed=c_in + c_out)
    with naming_crash("groupnorm_arguments_swapped", "num_groups"):
        mine = impl.unet.ResidualBlock(c_in, c_out, 64, groups=8).double().eval()
    load_reference_weights(mine, reference, what=f"ResidualBlock({c_in}, {c_out}, 64, groups=8)", section="2.3")
    x, emb = seeded((2, c_in, height, width), 1), seeded((2, 64), 2)
    with torch.no_grad():
        got = mine(x, emb)
        expected = reference(x, emb)
        mistakes = residual_mistakes(reference, x, emb)
    check_close(got, expected, function="ResidualBlock.forward", section="2.3",
                inputs={"x": x, "emb": emb}, mistakes=mistakes)


# ---------------------------------------------------------------------------
# §2.4 AttentionBlock
# ---------------------------------------------------------------------------


def attention_variant(block, x, *, scale="head", softmax_dim=-1, residual=True, split="heads", merge="heads",
                      swap_qk=False, out_transposed=True, heads=None):
    """The attention block's forward with one piece changed (for naming mistakes)."""
    batch, channels, height, width = x.shape
    heads = heads or block.num_heads
    d = channels // heads
    n = height * width
    tokens = block.norm(x).reshape(batch, channels, n).transpose(1, 2)

    def split_heads(z):
        return z.reshape(batch, n, heads, d).transpose(1, 2) if split == "heads" else z.reshape(batch, heads, n, d)

    q, k, v = (split_heads(z) for z in block.to_qkv(tokens).chunk(3, dim=-1))
    if swap_qk:
        q, k = k, q
    scores = q @ k.transpose(-2, -1)
    if scale == "head":
        scores = scores / math.sqrt(d)
    elif scale == "channels":
        scores = scores / math.sqrt(channels)
    elif scale == "head width":  # 1/d instead of 1/√d
        scores = scores / d
    out = scores.softmax(dim=softmax_dim) @ v
    out = (out.transpose(1, 2) if merge == "heads" else out).reshape(batch, n, channels)
    out = block.to_out(out)
    out = (out.transpose(1, 2) if out_transposed else out).reshape(batch, channels, height, width)
    return x + out if residual else out


def attention_mistakes(block, x) -> dict:
    """The classic wrong outputs of AttentionBlock ``block`` (the reference's) on x."""
    variant = lambda **change: attention_variant(block, x, **change)  # noqa: E731
    mistakes = {
        "attention_no_residual": variant(residual=False),
        "attention_no_scaling": variant(scale=None),
        "softmax_wrong_axis": variant(softmax_dim=-2),
        "attention_scaled_by_d": variant(scale="head width"),
        "queries_keys_swapped": variant(swap_qk=True),
        "attention_output_not_transposed": variant(out_transposed=False),
    }
    if block.num_heads > 1:
        mistakes["attention_scaled_by_channels"] = variant(scale="channels")
        mistakes["heads_split_by_reshape"] = [variant(split="reshape"), variant(split="reshape", merge="reshape")]
    return mistakes


@pytest.mark.points(4)
@pytest.mark.exercise("2.4", "AttentionBlock")
@pytest.mark.parametrize("num_heads", [1, 3], ids=["1 head", "3 heads"])
def test_attention_block(impl, ref, num_heads):
    """AttentionBlock: x + to_out(softmax(q kᵀ / √d) v) over the H·W positions"""
    # 24 channels: with 3 heads d = 8, so 1/√d, 1/d and 1/√C (C = 24) are three different scales.
    reference = randomize_(ref.unet.AttentionBlock(24, num_heads, groups=8).double(), seed=30 + num_heads)
    mine = impl.unet.AttentionBlock(24, num_heads, groups=8).double()
    load_reference_weights(mine, reference, what=f"AttentionBlock(24, num_heads={num_heads})", section="2.4")
    x = seeded((2, 24, 4, 3), 3)
    with torch.no_grad():
        got = mine(x)
        expected = reference(x)
        mistakes = attention_mistakes(reference, x)
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
        full = F.conv2d(x, reference.conv.weight, reference.conv.bias, padding=1)  # stride 1
        pooled = [F.avg_pool2d(full, 2), F.max_pool2d(full, 2)]
    check_close(got, expected, function="Downsample.forward", section="2.5", inputs={"x": x},
                mistakes={"downsample_pooled": pooled})


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
        conv_first = F.interpolate(reference.conv(x), scale_factor=2, mode="nearest")
        tiled = reference.conv(x.repeat(1, 1, 2, 2))
    wrong_shapes = [(b, c, 4 * h, w), (b, c, h, 4 * w), (b, c, 2 * h, w), (b, c, h, 2 * w), (b, c, h, w)]
    check_close(
        got, expected, function="Upsample.forward", section="2.5", inputs={"x": x},
        mistakes={
            "upsample_wrong_dims": [torch.full(shape, math.nan, dtype=F64) for shape in wrong_shapes],
            "upsample_not_nearest": smooth,
            "upsample_conv_first": conv_first,
            "upsample_tiled": tiled,
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


@contextmanager
def decoder_blocks_diagnosed(mine, reference, what: str):
    """A failed layout check whose missing names are whole decoder blocks names "n blocks instead of n + 1"."""
    try:
        yield
        return
    except pytest.fail.Exception:
        missing, unexpected, _ = weight_differences(mine, reference)
        names = list(reference.state_dict())
        blocks = dict.fromkeys(m.group(0) for m in map(re.compile(r"decoder\.\d+\.blocks\.\d+\.").match, missing) if m)
        gone = [block for block in blocks  # blocks of which yours has no parameter at all
                if all(name in missing for name in names if name.startswith(block))
                and not any(name.startswith(block) for name in unexpected)]
        gone = [block for block in gone if re.sub(r"\d+\.$", "0.", block) not in gone]  # the level's first is there
        if not gone:
            raise
    fail_alone(f"{what} has no {', '.join(block[:-1] for block in gone)}: the reference's decoder levels have one "
         f"residual block more than yours.{classic_mistake('decoder_blocks_count')}\nSee IMPLEMENTATION_GUIDE.md §2.6.")


@pytest.mark.points(2)
@pytest.mark.exercise("2.6", "UNet.__init__")
def test_unet_parameter_count(impl, ref, config):
    """UNet has the reference's number of parameters (whatever the names)"""
    kwargs, _ = config
    with reference_parts(impl.unet.module, ref.unet, BLOCKS):
        mine = impl.unet.UNet(**kwargs)
    reference = ref.unet.UNet(**kwargs)
    with decoder_blocks_diagnosed(mine, reference, describe_config(kwargs)):
        check_parameter_count(mine, reference, what=describe_config(kwargs), section="2.6")


def load_unet_weights(mine, reference, what: str) -> None:
    """load_reference_weights for a whole UNet, naming missing decoder blocks."""
    with decoder_blocks_diagnosed(mine, reference, what):
        load_reference_weights(mine, reference, what=what, section="2.6")


@pytest.mark.points(2)
@pytest.mark.exercise("2.6", "UNet.__init__")
def test_unet_layout(impl, ref, config):
    """UNet's modules have the guide's names and shapes (it loads the reference weights)"""
    kwargs, _ = config
    with reference_parts(impl.unet.module, ref.unet, BLOCKS):
        mine = impl.unet.UNet(**kwargs)
    load_unet_weights(mine, ref.unet.UNet(**kwargs), describe_config(kwargs))


#: A UNet whose every argument changes something: the stem's input, the blocks' dropout, heads and groups.
ARGUMENTS_CONFIG = dict(in_channels=2, cond_channels=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                        attention_levels=(1,), num_heads=2, dropout=0.2, groups=4)


def residual_settings(in_channels, out_channels, embed_dim, groups=8, dropout=0.0) -> dict:  # noqa: ARG001
    return {"groups": groups, "dropout": dropout}


def attention_settings(channels, num_heads=1, groups=8) -> dict:  # noqa: ARG001
    return {"num_heads": num_heads, "groups": groups}


@pytest.mark.points(1)
@pytest.mark.exercise("2.6", "UNet.__init__")
def test_unet_passes_its_arguments(impl, ref):
    """UNet gives cond_channels to the stem, and dropout, num_heads and groups to every block and GroupNorm"""
    kwargs = ARGUMENTS_CONFIG
    built: dict[str, list[dict]] = {"ResidualBlock": [], "AttentionBlock": []}

    def recorded(name, settings):
        def build(*args, **options):
            built[name].append(settings(*args, **options))
            return getattr(ref.unet, name)(*args, **options)
        return build

    parts = SimpleNamespace(**{name: getattr(ref.unet, name) for name in BLOCKS})
    parts.ResidualBlock = recorded("ResidualBlock", residual_settings)
    parts.AttentionBlock = recorded("AttentionBlock", attention_settings)
    with reference_parts(impl.unet.module, parts, BLOCKS):
        mine = impl.unet.UNet(**kwargs)
    what = describe_config(kwargs)
    stem = mine.state_dict().get("stem.weight")
    if stem is not None and stem.ndim == 4 and stem.shape[1] == kwargs["in_channels"]:
        fail(f"{what}: the stem takes {stem.shape[1]} input channels, not in_channels + cond_channels = "
             f"{kwargs['in_channels'] + kwargs['cond_channels']}.{classic_mistake('stem_ignores_cond')}\n"
             "See IMPLEMENTATION_GUIDE.md §2.6.")
    wrong = [
        (block, setting, f"{setting}_not_passed") for block, settings in built.items() for each in settings for setting, value in each.items()
        if value != kwargs[setting]
    ]
    head_groups = mine.head_norm.num_groups if "head_norm.weight" in mine.state_dict() else kwargs["groups"]
    if head_groups != kwargs["groups"]:
        wrong.append(("head_norm", "groups", "groups_not_passed"))
    if wrong:
        block, setting, key = wrong[0]
        count = sum(1 for other in wrong if other[:2] == (block, setting))
        fail(f"{what}: {count} {block}{'s' if count > 1 else ''} got a {setting} other than UNet's "
             f"{setting}={kwargs[setting]}.{classic_mistake(key)}\nSee IMPLEMENTATION_GUIDE.md §2.6.")


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


def unet_variant(model, x, t, *, skip_after_attention=True, skip_first=False, head_silu=True, middle_heads=None,
                 head_groups=None):
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
    middle = model.middle_block1(h, emb)
    middle = attention_variant(model.middle_attention, middle, heads=middle_heads) if middle_heads \
        else model.middle_attention(middle)
    h = model.middle_block2(middle, emb)
    for level in model.decoder:
        for block, attention in zip(level.blocks, level.attentions):
            h = attention(block(torch.cat([skips.pop(), h] if skip_first else [h, skips.pop()], dim=1), emb))
        if level.resample is not None:
            h = level.resample(h)
    norm = model.head_norm
    h = norm(h) if head_groups is None else F.group_norm(h, head_groups, norm.weight, norm.bias, norm.eps)
    return model.head_conv(F.silu(h) if head_silu else h)


def unet_mistakes(model, x, t, kwargs: dict) -> dict:
    """The classic wrong outputs of UNet ``model`` (the reference's, built with ``kwargs``) on x and t."""
    variant = lambda **change: unet_variant(model, x, t, **change)  # noqa: E731
    mistakes = {
        "skip_before_attention": variant(skip_after_attention=False),
        "skip_concat_order": variant(skip_first=True),
        "head_silu_missing": variant(head_silu=False),
    }
    if model.middle_attention.num_heads != 1:
        mistakes["num_heads_not_passed"] = variant(middle_heads=1)
    if kwargs.get("groups", 8) != 8 and model.head_norm.num_channels % 8 == 0:
        mistakes["groups_not_passed"] = variant(head_groups=8)
    return mistakes


def shared_weight_pair(impl, ref, kwargs: dict, seed: int):
    """The reference UNet with random float64 weights, and yours with the same weights."""
    reference = randomize_(ref.unet.UNet(**kwargs).double().eval(), seed=seed)
    mine = impl.unet.UNet(**kwargs).double().eval()
    load_unet_weights(mine, reference, describe_config(kwargs))
    return mine, reference


#: A decoder that concatenates a skip of another resolution took the skips in the wrong order.
SKIPS_CRASH = ("skips_popped_wrong_order", "Sizes of tensors must match except in dimension 1")


@pytest.mark.points(4)
@pytest.mark.exercise("2.7", "UNet.forward")
@pytest.mark.parametrize("name", list(CONFIGS)[:2])
def test_unet_forward(impl, ref, name):
    """UNet.forward (with the reference blocks) matches the reference on shared weights"""
    kwargs, shape = CONFIGS[name]
    x, t = seeded(shape, 7), torch.tensor([0, 640])
    with reference_parts(impl.unet.module, ref.unet, BLOCKS), torch.no_grad():
        mine, reference = shared_weight_pair(impl, ref, kwargs, seed=50)
        with naming_crash(*SKIPS_CRASH):
            got = mine(x, t)
        expected = reference(x, t)
        mistakes = unet_mistakes(reference, x, t, kwargs)
    check_close(got, expected, function="UNet.forward", section="2.7", inputs={"x": x, "t": t},
                mistakes=mistakes, **NETWORK_TOLERANCE)


@pytest.mark.points(3)
@pytest.mark.exercise("2.7", "UNet.forward")
@pytest.mark.uses(*BLOCKS)
def test_unet_with_your_blocks(impl, ref):
    """Integration: the whole UNet, built from all your blocks (§2.1–§2.5), matches the reference on shared weights"""
    kwargs, shape = CONFIGS["default 1x28x28"]
    x, t = seeded(shape, 8), torch.tensor([5, 999])
    with torch.no_grad():
        mine, reference = shared_weight_pair(impl, ref, kwargs, seed=51)
        got, expected = mine(x, t), reference(x, t)
    check_close(got, expected, function="UNet.forward", section="2.7", inputs={"x": x, "t": t},
                what="the output of your UNet with your blocks (if only this check fails, see the block checks)",
                **NETWORK_TOLERANCE)


# --- structure checks: they ignore names, and use your code throughout (integration checks) ---


@pytest.mark.points(1)
@pytest.mark.exercise("2.7", "UNet.forward")
@pytest.mark.uses(*BLOCKS)
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
@pytest.mark.uses(*BLOCKS)
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
@pytest.mark.uses(*BLOCKS)
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
@pytest.mark.uses(*BLOCKS)
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
