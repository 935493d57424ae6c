"""Hidden Phase 2 checks: the U-Net's blocks and assembly with other widths, heads, groups, shapes and seeds.

Students never see these (the student release leaves tests/hidden/ out), so a
block fitted to the visible checks' inputs (16 channels, 8 groups, 1 or 4
heads, 28×28 images) rather than written from the guide still loses points
here. Each reuses the visible checks' helpers (the wrong variants of the classic
mistakes, the shared-weight pair), so its messages and named mistakes are the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from grading.checker import check_close, fail, naming_crash
from grading.mistakes import MISTAKES
from grading.modules import load_reference_weights, randomize_, reference_parts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))  # the visible checks, whatever ran first
import test_phase2_unet as unet  # noqa: E402

pytestmark = [pytest.mark.phase2, pytest.mark.visibility("hidden")]

F64 = unet.F64

# ---------------------------------------------------------------------------
# §2.1–§2.2 the timestep embedding
# ---------------------------------------------------------------------------

HIDDEN_TIMESTEPS = torch.tensor([998, 2, 64, 0, 731, 5])


@pytest.mark.points(1)
@pytest.mark.exercise("2.1", "timestep_embedding")
def test_timestep_embedding_other_width(impl, ref):
    """timestep_embedding with dim 20, max_period 500 and other timesteps (float64)"""
    dim, max_period = 20, 500.0
    got = impl.unet.timestep_embedding(HIDDEN_TIMESTEPS, dim, max_period=max_period, dtype=F64)
    check_close(
        got, ref.unet.timestep_embedding(HIDDEN_TIMESTEPS, dim, max_period=max_period, dtype=F64),
        function="timestep_embedding", section="2.1",
        inputs={"t": HIDDEN_TIMESTEPS, "dim": dim, "max_period": max_period, "dtype": F64},
        mistakes=unet.embedding_variants(HIDDEN_TIMESTEPS, dim, max_period, F64),
    )


@pytest.mark.points(1)
@pytest.mark.exercise("2.2", "TimeEmbedding")
def test_time_embedding_other_widths(impl, ref):
    """TimeEmbedding(8, 24) on other timesteps and weights"""
    reference = randomize_(ref.unet.TimeEmbedding(8, 24).double(), seed=121)
    t = torch.tensor([999, 7, 250, 1, 0])
    with reference_parts(impl.unet.module, ref.unet, ("timestep_embedding",)):
        mine = impl.unet.TimeEmbedding(8, 24).double()
        load_reference_weights(mine, reference, what="TimeEmbedding(8, 24)", section="2.2")
        with naming_crash("sinusoids_wrong_dtype", "dtype"):
            got = mine(t)
    with torch.no_grad():
        expected = reference(t)
        s = ref.unet.timestep_embedding(t, 8, dtype=F64)
        first, second = reference.linear_1, reference.linear_2
        mistakes = {"mlp_activation": [second(first(s)), F.silu(second(F.silu(first(s)))), F.silu(second(first(s)))]}
    check_close(got, expected, function="TimeEmbedding.forward", section="2.2", inputs={"t": t}, mistakes=mistakes)


# ---------------------------------------------------------------------------
# §2.3–§2.5 the blocks
# ---------------------------------------------------------------------------

#: (in_channels, out_channels, embed_dim, groups, dropout, x shape); dropout is off in eval mode.
RESIDUAL_CASES = {
    "8 to 12 channels, 4 groups, dropout 0.3 in eval mode": (8, 12, 20, 4, 0.3, (3, 8, 5, 7)),
    "12 to 12 channels, 3 groups": (12, 12, 10, 3, 0.0, (2, 12, 4, 4)),
}


@pytest.mark.points(1)
@pytest.mark.exercise("2.3", "ResidualBlock")
@pytest.mark.parametrize("case", list(RESIDUAL_CASES))
def test_residual_block_other_shapes(impl, ref, case):
    """ResidualBlock with other channels, groups, embedding width and image shape"""
    c_in, c_out, embed_dim, groups, dropout, shape = RESIDUAL_CASES[case]
    built = f"ResidualBlock({c_in}, {c_out}, {embed_dim}, groups={groups}, dropout={dropout})"
    reference = randomize_(ref.unet.ResidualBlock(c_in, c_out, embed_dim, groups=groups, dropout=dropout)
                           .double().eval(), seed=130 + c_in + c_out)
    with naming_crash("groupnorm_arguments_swapped", "num_groups"):
        mine = impl.unet.ResidualBlock(c_in, c_out, embed_dim, groups=groups, dropout=dropout).double().eval()
    load_reference_weights(mine, reference, what=built, section="2.3")
    x, emb = unet.seeded(shape, 131), unet.seeded((shape[0], embed_dim), 132)
    with torch.no_grad():
        got = mine(x, emb)
        expected = reference(x, emb)
        mistakes = unet.residual_mistakes(reference, x, emb)
    check_close(got, expected, function="ResidualBlock.forward", section="2.3",
                inputs={"x": x, "emb": emb, "groups": groups}, mistakes=mistakes)


@pytest.mark.points(1)
@pytest.mark.exercise("2.4", "AttentionBlock")
def test_attention_block_other_heads(impl, ref):
    """AttentionBlock with 24 channels, 3 heads, 4 groups and a non-square image"""
    channels, num_heads, groups, shape = 24, 3, 4, (2, 24, 3, 5)
    reference = randomize_(ref.unet.AttentionBlock(channels, num_heads, groups=groups).double(), seed=140 + channels)
    mine = impl.unet.AttentionBlock(channels, num_heads, groups=groups).double()
    load_reference_weights(mine, reference, what=f"AttentionBlock({channels}, num_heads={num_heads}, groups={groups})",
                           section="2.4")
    x = unet.seeded(shape, 141)
    with torch.no_grad():
        got = mine(x)
        expected = reference(x)
        mistakes = unet.attention_mistakes(reference, x)
    check_close(got, expected, function="AttentionBlock.forward", section="2.4",
                inputs={"x": x, "num_heads": num_heads}, mistakes=mistakes)


def check_downsample(impl, ref):
    unet.check_downsample(impl, ref, channels=6, x=unet.seeded((1, 6, 4, 12), 151), seed=150)


def check_upsample(impl, ref):
    unet.check_upsample(impl, ref, channels=5, x=unet.seeded((3, 5, 2, 4), 153), seed=152)


RESAMPLE_CHECKS = [pytest.param(check, marks=pytest.mark.exercise("2.5", name), id=name)
                   for name, check in (("Downsample", check_downsample), ("Upsample", check_upsample))]


@pytest.mark.points(1)
@pytest.mark.parametrize("check", RESAMPLE_CHECKS)
def test_resampling_other_shapes(impl, ref, check):
    """Downsample and Upsample with other channels and non-square images"""
    check(impl, ref)


# ---------------------------------------------------------------------------
# §2.6–§2.7 the U-Net
# ---------------------------------------------------------------------------

HIDDEN_CONFIGS = {
    "2x8x8, base 12, mults (1, 3), attention at 0, 3 heads, 3 groups": (
        dict(in_channels=2, base_channels=12, channel_mults=(1, 3), num_res_blocks=1, attention_levels=(0,),
             num_heads=3, groups=3),
        (2, 2, 8, 8),
    ),
    "1x12x8 with 3 levels, 2 blocks, attention at 2, 4 outputs": (
        dict(in_channels=1, out_channels=4, base_channels=8, channel_mults=(1, 1, 2), num_res_blocks=2,
             attention_levels=(2,), num_heads=4, groups=2),
        (2, 1, 12, 8),
    ),
}
SMALL, DEEP = HIDDEN_CONFIGS  # their names


@pytest.mark.points(1)
@pytest.mark.exercise("2.6", "UNet.__init__")
def test_unet_layout_other_config(impl, ref):
    """UNet's modules have the guide's names and shapes with 3 levels, 2 blocks and 4 outputs"""
    unet.test_unet_layout(impl, ref, HIDDEN_CONFIGS[DEEP])


@pytest.mark.points(1)
@pytest.mark.exercise("2.6", "UNet.__init__")
def test_unet_head_starts_at_zero_other_config(impl, ref):
    """A freshly built UNet of another configuration predicts exactly 0"""
    kwargs, shape = HIDDEN_CONFIGS[SMALL]
    x, t = unet.seeded(shape, 160, torch.float32), torch.tensor([999, 12])
    with reference_parts(impl.unet.module, ref.unet, unet.BLOCKS), torch.no_grad():
        with naming_crash("groups_not_passed", "num_groups (8)"):  # this configuration has 3 groups
            got = impl.unet.UNet(**kwargs)(x, t)
    if got.shape != x.shape or got.abs().max() != 0:
        mistake = MISTAKES["head_not_zero"]
        largest = got.abs().max().item() if got.numel() else float("nan")
        fail(f"`{unet.describe_config(kwargs)}(x, t)` on a fresh network should be exactly 0; its largest |value| "
             f"is {largest:.3g}.\n  This looks like a classic mistake: **{mistake.title}**. {mistake.advice}")


@pytest.mark.points(1)
@pytest.mark.exercise("2.7", "UNet.forward")
def test_unet_forward_other_config(impl, ref):
    """UNet.forward (with the reference blocks) with 3 levels, 2 blocks and a non-square 12×8 image"""
    kwargs, shape = HIDDEN_CONFIGS[DEEP]
    x, t = unet.seeded(shape, 170), torch.tensor([999, 37])
    with reference_parts(impl.unet.module, ref.unet, unet.BLOCKS), torch.no_grad():
        mine, reference = unet.shared_weight_pair(impl, ref, kwargs, seed=171)
        with naming_crash(*unet.SKIPS_CRASH):
            got = mine(x, t)
        expected = reference(x, t)
        mistakes = unet.unet_mistakes(reference, x, t, kwargs)
    check_close(got, expected, function="UNet.forward", section="2.7", inputs={"x": x, "t": t},
                mistakes=mistakes, **unet.NETWORK_TOLERANCE)


@pytest.mark.points(1)
@pytest.mark.exercise("2.7", "UNet.forward")
@pytest.mark.uses(*unet.BLOCKS)
def test_unet_with_your_blocks_other_config(impl, ref):
    """Integration: the whole UNet with 3 heads and 3 groups, built from all your blocks, matches the reference"""
    kwargs, shape = HIDDEN_CONFIGS[SMALL]
    x, t = unet.seeded(shape, 180), torch.tensor([420, 3])
    with torch.no_grad():
        mine, reference = unet.shared_weight_pair(impl, ref, kwargs, seed=181)
        got, expected = mine(x, t), reference(x, t)
    check_close(got, expected, function="UNet.forward", section="2.7", inputs={"x": x, "t": t},
                what="the output of your UNet with your blocks (if only this check fails, see the block checks)",
                **unet.NETWORK_TOLERANCE)
