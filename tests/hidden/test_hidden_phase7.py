"""Hidden Phase 7 checks: the mask, attention, the text encoder, the spatial transformer, guidance on other inputs.

Students never see these (the student release leaves tests/hidden/ out), so code
fitted to the visible checks' inputs (float64, <pad> = 0 in a vocabulary of 20,
widths 8 and 6 with 2 or 4 heads, feed-forward ×2, 2 encoder layers, 3×4 feature maps,
p_uncond 0.3, guidance scales 0–4, a TextUNet with <pad> = 0 and one text layer)
rather than written from the guide still loses points here: other batch sizes,
lengths, widths and head counts (one head; heads of another width than
query_dim / heads), float32, a caption of real tokens only beside one of only
<bos> <eos>, another padding id. Each calls the visible checks' bodies, so its
messages and named mistakes are the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from grading.modules import randomize_

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))  # the visible checks, whatever ran first
import test_phase7_text as text_checks  # noqa: E402

pytestmark = [pytest.mark.phase7, pytest.mark.visibility("hidden")]

F64, F32 = torch.float64, torch.float32
PAD, BOS, EOS, VOCAB = text_checks.PAD, text_checks.BOS, text_checks.EOS, text_checks.VOCAB
#: Networks in float32: allow for a different (correct) order of float32 operations.
FLOAT32_NETWORK_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
seeded, captions = text_checks.seeded, text_checks.captions


def tolerance_for(dtype: torch.dtype) -> dict:
    return text_checks.NETWORK_TOLERANCE if dtype == F64 else FLOAT32_NETWORK_TOLERANCE


def with_pad(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The captions with their <pad> written as ``pad_id``."""
    return torch.where(tokens == PAD, pad_id, tokens)


# ---------------------------------------------------------------------------
# §7.1 The padding mask and the masked mean
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("7.1", "keep_mask")
def test_keep_mask_other_pad_id(impl, ref):
    """keep_mask with pad_id = 23 (0 an ordinary id), a caption of real tokens only and one of only <bos> <eos>"""
    tokens = with_pad(captions([5, 0, 2, 1], 7, seed=701), 23)
    tokens[2, 1] = tokens[3, 2] = 0  # 0 an ordinary word
    text_checks.check_keep_mask(impl, ref, tokens, 23)


@pytest.mark.points(1)
@pytest.mark.exercise("7.1", "masked_mean")
def test_masked_mean_float32(impl, ref):
    """masked_mean in float32 on 4 captions of 8 tokens, 3 wide: one without padding, one of only <bos> <eos>"""
    keep = captions([6, 0, 3, 1], 8, 702) != PAD
    text_checks.check_masked_mean(impl, ref, seeded((4, 8, 3), 703, F32), keep)


@pytest.mark.points(1)
@pytest.mark.exercise("7.1", "masked_mean")
def test_masked_mean_ignores_appended_padding_float32(impl):
    """masked_mean in float32 does not change when 2 padding positions are appended, to a caption without padding too"""
    keep = captions([4, 1], 6, 704) != PAD
    embeddings = seeded((2, 6, 3), 705, F32)
    text_checks.check_masked_mean_ignores_appended_padding(impl, embeddings, keep, seeded((2, 2, 3), 706, F32) * 10)


# ---------------------------------------------------------------------------
# §7.2 Attention with a keep mask
# ---------------------------------------------------------------------------


def qkv(seed: int, batch: int, heads: int, queries: int, keys: int, width: int, value_width: int, dtype):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn((batch, heads, queries, width), generator=generator, dtype=F64) * 1.5
    k = torch.randn((batch, heads, keys, width), generator=generator, dtype=F64) * 1.5
    v = torch.randn((batch, heads, keys, value_width), generator=generator, dtype=F64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


@pytest.mark.points(1)
@pytest.mark.exercise("7.2", "attention")
def test_attention_one_head_float32(impl, ref):
    """attention in float32 with 1 head, 1 query, 4 keys, d = 3, d_v = 6: every key kept, one key kept, two kept"""
    keep = torch.tensor([[True, True, True, True], [True, False, False, False], [False, True, True, False]])
    text_checks.check_attention(impl, ref, *qkv(707, 3, 1, 1, 4, 3, 6, F32), keep)


@pytest.mark.points(1)
@pytest.mark.exercise("7.2", "attention")
def test_attention_three_heads(impl, ref):
    """attention with 3 heads, 7 queries over 2 keys, d = 5, d_v = 2: both keys kept, then only the second"""
    keep = torch.tensor([[True, True], [False, True]])
    text_checks.check_attention(impl, ref, *qkv(708, 2, 3, 7, 2, 5, 2, F64), keep)


# ---------------------------------------------------------------------------
# §7.3 Multi-head attention
# ---------------------------------------------------------------------------

HIDDEN_MHA_CONFIGS = {
    "cross-attention, width 6 over a context of width 10, 1 head of 5": dict(query_dim=6, context_dim=10, heads=1,
                                                                           head_dim=5),
    "self-attention, width 12, 3 heads": dict(query_dim=12, heads=3),
    "cross-attention, width 6 over a context of width 6, 2 heads of 4": dict(query_dim=6, context_dim=6, heads=2,
                                                                           head_dim=4),
}


@pytest.mark.points(1)
@pytest.mark.exercise("7.3", "MultiHeadAttention.__init__")
def test_multi_head_attention_layout_other_configs(impl, ref):
    """MultiHeadAttention of 3 other configurations (1 head; heads of another width than query_dim / heads)"""
    for config in HIDDEN_MHA_CONFIGS.values():
        text_checks.check_mha_layout(impl, ref, config)


#: name → (batch, queries, keys, dtype) of the inputs.
HIDDEN_MHA_INPUTS = {
    "cross-attention, width 6 over a context of width 10, 1 head of 5": (3, 7, 3, F32),
    "self-attention, width 12, 3 heads": (1, 4, 4, F64),
    "cross-attention, width 6 over a context of width 6, 2 heads of 4": (2, 4, 4, F64),
}


@pytest.mark.points(1)
@pytest.mark.exercise("7.3", "MultiHeadAttention.forward")
@pytest.mark.parametrize("name", list(HIDDEN_MHA_CONFIGS))
def test_multi_head_attention_forward_other_config(impl, ref, name):
    """MultiHeadAttention of another configuration (float32 for the one head), on other batch sizes and lengths"""
    batch, queries, keys, dtype = HIDDEN_MHA_INPUTS[name]
    text_checks.check_mha_forward(impl, ref, HIDDEN_MHA_CONFIGS[name], seed=709, batch=batch, queries=queries,
                                  keys=keys, dtype=dtype, tolerance=tolerance_for(dtype))


# ---------------------------------------------------------------------------
# §7.4 The text encoder
# ---------------------------------------------------------------------------

HIDDEN_LAYER_CONFIGS = {"width 12, 3 heads, ff_mult 3": dict(dim=12, heads=3, ff_mult=3),
                        "width 5, 1 head, ff_mult 1": dict(dim=5, heads=1, ff_mult=1)}


@pytest.mark.points(1)
@pytest.mark.exercise("7.4", "TextEncoderLayer.__init__")
def test_text_encoder_layer_layout_other_configs(impl, ref):
    """TextEncoderLayer of other widths, head counts (3, 1) and feed-forward multipliers (3, 1)"""
    for config in HIDDEN_LAYER_CONFIGS.values():
        text_checks.check_text_encoder_layer_layout(impl, ref, config)


#: name → (lengths of the captions, their padded length, dtype).
HIDDEN_LAYER_INPUTS = {"width 12, 3 heads, ff_mult 3": ([7, 0], 9, F32),
                       "width 5, 1 head, ff_mult 1": ([1, 3, 0, 2], 5, F64)}


@pytest.mark.points(1)
@pytest.mark.exercise("7.4", "TextEncoderLayer.forward")
@pytest.mark.parametrize("name", list(HIDDEN_LAYER_CONFIGS))
def test_text_encoder_layer_forward_other_config(impl, ref, name):
    """TextEncoderLayer of another configuration (float32 for the wider), a caption without padding among them"""
    config = HIDDEN_LAYER_CONFIGS[name]
    lengths, length, dtype = HIDDEN_LAYER_INPUTS[name]
    x = seeded((len(lengths), length, config["dim"]), 710, dtype)
    text_checks.check_text_encoder_layer_forward(impl, ref, config, 711, x, captions(lengths, length, 712) != PAD,
                                                 tolerance=tolerance_for(dtype))


HIDDEN_ENCODER_CONFIGS = {
    "3 layers of 1 head, width 6, ff_mult 3": dict(vocab_size=VOCAB + 4, max_length=6, dim=6, heads=1, num_layers=3,
                                                   ff_mult=3),
    "1 layer of 3 heads, width 6": dict(vocab_size=VOCAB, max_length=9, dim=6, heads=3, num_layers=1, ff_mult=2),
}


@pytest.mark.points(1)
@pytest.mark.exercise("7.4", "TextEncoder.__init__")
def test_text_encoder_layout_other_configs(impl, ref):
    """TextEncoder with other numbers of layers (3, 1), heads, widths and feed-forward multipliers"""
    for config in HIDDEN_ENCODER_CONFIGS.values():
        text_checks.check_text_encoder_layout(impl, ref, config)


@pytest.mark.points(1)
@pytest.mark.exercise("7.4", "TextEncoder.forward")
def test_text_encoder_forward_full_length_float32(impl, ref):
    """TextEncoder of 3 layers in float32, on captions of max_length tokens with <pad> = 22 (0 an ordinary id)"""
    tokens = with_pad(captions([4, 0, 2], 6, 713), VOCAB + 2)
    tokens[2, 2] = 0  # an ordinary word
    config = HIDDEN_ENCODER_CONFIGS["3 layers of 1 head, width 6, ff_mult 3"]
    text_checks.check_text_encoder_forward(impl, ref, config, 714, tokens, tokens != VOCAB + 2, dtype=F32,
                                           tolerance=FLOAT32_NETWORK_TOLERANCE)


@pytest.mark.points(1)
@pytest.mark.exercise("7.4", "TextEncoder.forward")
def test_text_encoder_forward_one_short_caption(impl, ref):
    """TextEncoder of 3 heads on 1 caption of 4 tokens (max_length 9)"""
    tokens = captions([1], 4, 715)
    config = HIDDEN_ENCODER_CONFIGS["1 layer of 3 heads, width 6"]
    text_checks.check_text_encoder_forward(impl, ref, config, 716, tokens, tokens != PAD)


# ---------------------------------------------------------------------------
# §7.5 The spatial transformer
# ---------------------------------------------------------------------------

HIDDEN_BLOCK_CONFIGS = {"width 6 over a context of width 10, 3 heads, ff_mult 3":
                        dict(dim=6, context_dim=10, heads=3, ff_mult=3),
                        "width 4 over a context of width 4, 1 head": dict(dim=4, context_dim=4, heads=1)}


@pytest.mark.points(1)
@pytest.mark.exercise("7.5", "TransformerBlock.__init__")
def test_transformer_block_layout_other_configs(impl, ref):
    """TransformerBlock of other widths, context widths, head counts (3, 1) and feed-forward multipliers (3, 2)"""
    for config in HIDDEN_BLOCK_CONFIGS.values():
        text_checks.check_transformer_block_layout(impl, ref, config)


#: name → (batch, positions, caption lengths, their padded length, dtype).
HIDDEN_BLOCK_INPUTS = {"width 6 over a context of width 10, 3 heads, ff_mult 3": (3, 5, [2, 0, 1], 4, F32),
                       "width 4 over a context of width 4, 1 head": (1, 15, [1], 3, F64)}


@pytest.mark.points(1)
@pytest.mark.exercise("7.5", "TransformerBlock.forward")
@pytest.mark.parametrize("name", list(HIDDEN_BLOCK_CONFIGS))
def test_transformer_block_forward_other_config(impl, ref, name):
    """TransformerBlock of another configuration (float32 for the wider) on other batch sizes and lengths"""
    config = HIDDEN_BLOCK_CONFIGS[name]
    batch, positions, lengths, length, dtype = HIDDEN_BLOCK_INPUTS[name]
    x = seeded((batch, positions, config["dim"]), 717, dtype)
    context = seeded((batch, length, config["context_dim"]), 718, dtype)
    text_checks.check_transformer_block_forward(impl, ref, config, 719, x, context,
                                                captions(lengths, length, 720) != PAD, tolerance=tolerance_for(dtype))


HIDDEN_SPATIAL_CONFIGS = {"6 channels in 2 groups over a context of width 5, 3 heads":
                          dict(channels=6, context_dim=5, heads=3, groups=2),
                          "4 channels in 1 group over a context of width 9, 1 head":
                          dict(channels=4, context_dim=9, heads=1, groups=1)}


@pytest.mark.points(1)
@pytest.mark.exercise("7.5", "SpatialTransformer.__init__")
def test_spatial_transformer_layout_other_configs(impl, ref):
    """SpatialTransformer of other widths, context widths, head counts (3, 1) and numbers of groups (2, 1)"""
    for config in HIDDEN_SPATIAL_CONFIGS.values():
        text_checks.check_spatial_transformer_layout(impl, ref, config)


@pytest.mark.points(1)
@pytest.mark.exercise("7.5", "SpatialTransformer.__init__")
def test_new_spatial_transformer_is_the_identity_float32(impl, ref):
    """A new SpatialTransformer of 6 channels and 3 heads returns a float32 3×5 feature map unchanged"""
    config = HIDDEN_SPATIAL_CONFIGS["6 channels in 2 groups over a context of width 5, 3 heads"]
    context, keep = seeded((1, 4, 5), 721, F32), captions([1], 4, 722) != PAD
    text_checks.check_new_spatial_transformer_is_the_identity(impl, ref, config, seeded((1, 6, 3, 5), 723, F32),
                                                              context, keep)


#: name → (the feature maps' shape, caption lengths, their padded length, dtype).
HIDDEN_SPATIAL_INPUTS = {"6 channels in 2 groups over a context of width 5, 3 heads": ((2, 6, 3, 5), [2, 0], 4, F32),
                         "4 channels in 1 group over a context of width 9, 1 head": ((3, 4, 5, 2), [3, 1, 0], 6, F64)}


@pytest.mark.points(1)
@pytest.mark.exercise("7.5", "SpatialTransformer.forward")
@pytest.mark.parametrize("name", list(HIDDEN_SPATIAL_CONFIGS))
def test_spatial_transformer_forward_other_config(impl, ref, name):
    """SpatialTransformer of another configuration on non-square feature maps (3×5 in float32, 5×2)"""
    config = HIDDEN_SPATIAL_CONFIGS[name]
    shape, lengths, length, dtype = HIDDEN_SPATIAL_INPUTS[name]
    context = seeded((shape[0], length, config["context_dim"]), 724, dtype)
    text_checks.check_spatial_transformer_forward(impl, ref, config, 725, seeded(shape, 726, dtype), context,
                                                  captions(lengths, length, 727) != PAD, tolerance=tolerance_for(dtype))


# ---------------------------------------------------------------------------
# §7.6 Caption dropout and guidance
# ---------------------------------------------------------------------------

#: An empty caption of 5 tokens whose <pad> is 9.
HIDDEN_EMPTY = torch.tensor([BOS, EOS, 9, 9, 9])


@pytest.mark.points(1)
@pytest.mark.exercise("7.6", "drop_captions")
@pytest.mark.parametrize("p_uncond, seed", [(0.5, 728), (0.85, 729)])
def test_drop_captions_other_inputs(impl, ref, p_uncond, seed):
    """drop_captions on 16 captions of 5 tokens with <pad> = 9, another p_uncond and another seed"""
    tokens = with_pad(captions([3, 1, 0, 2] * 4, 5, seed + 10), 9)
    text_checks.check_drop_captions(impl, ref, tokens, p_uncond, HIDDEN_EMPTY, seed)


def guidance_inputs_other():
    """2 RGB images of 3×5, timesteps 7 and 38, a caption without padding and one of only <bos> <eos> (<pad> = 9)."""
    x_t = seeded((2, 3, 3, 5), 730)
    return x_t, torch.tensor([7, 38]), with_pad(captions([3, 0], 5, 731), 9)


@pytest.mark.points(1)
@pytest.mark.exercise("7.6", "text_guided_output")
def test_text_guided_output_scale_7_5(impl, ref):
    """text_guided_output at w = 7.5 on 2 RGB images of 3×5, with an empty caption of 5 tokens padded with 9"""
    toy = randomize_(text_checks.ToyText(channels=3).double(), seed=732).eval()
    text_checks.check_text_guided_output(impl, ref, toy, *guidance_inputs_other(), 7.5, HIDDEN_EMPTY)


@pytest.mark.points(1)
@pytest.mark.exercise("7.6", "text_guided_output")
def test_text_guidance_is_one_batched_pass_other_batch(impl, ref):
    """text_guided_output at w = 7.5 calls the model once on the doubled batch of 2 captions and 2 empty ones"""
    toy = randomize_(text_checks.ToyText(channels=3).double(), seed=733).eval()
    text_checks.check_text_guidance_is_one_batched_pass(impl, ref, toy, *guidance_inputs_other(), 7.5, HIDDEN_EMPTY)


# ---------------------------------------------------------------------------
# §7.7 The text-conditioned U-Net
# ---------------------------------------------------------------------------

HIDDEN_PAD = VOCAB + 1
HIDDEN_TEXT_UNET_CONFIG = dict(vocab_size=VOCAB + 2, max_length=7, empty_tokens=[BOS, EOS] + [HIDDEN_PAD] * 5,
                               pad_id=HIDDEN_PAD, text_dim=6, text_heads=3, text_layers=2, cross_heads=1,
                               in_channels=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                               attention_levels=(0,), num_heads=2, groups=4)


@pytest.mark.points(1)
@pytest.mark.exercise("7.7", "TextUNet.forward")
def test_text_unet_forward_other_pad_id(impl, ref):
    """TextUNet.forward with <pad> = 21 (0 an ordinary id), 2 text layers of 3 heads, 1 cross head, 4×6 RGB images"""
    tokens = with_pad(captions([5, 0, 2], 7, 734), HIDDEN_PAD)  # without padding; only <bos> <eos>; padded
    tokens[2, 1] = 0  # an ordinary word
    x, t = seeded((3, 3, 4, 6), 735), torch.tensor([3, 0, 39])
    text_checks.check_text_unet_forward(impl, ref, HIDDEN_TEXT_UNET_CONFIG, 736, x, t, tokens)
