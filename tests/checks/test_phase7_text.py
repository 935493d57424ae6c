"""Phase 7 checks: the padding mask, attention, the text encoder, the spatial transformer, guidance with captions.

Each function is graded alone: a class is checked with the reference's parts
inside it (lent, as in Phase 2 and 6), on the reference's weights, so a mistake
costs only its own function's points. A few integration checks (marked ``uses``)
then run your parts together, for the properties every correct implementation
has whatever its numbers: appending padding changes nothing, permuting the
positions of a feature map permutes the output the same way, a new spatial
transformer is the identity.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grading.checker import check_close, classic_mistake, fail, nan_shaped, pair
from grading.modules import check_parameter_count, load_reference_weights, randomize_, reference_parts

pytestmark = pytest.mark.phase7

F64 = torch.float64
#: Networks chain many layers: allow for a different (correct) order of float64 operations.
NETWORK_TOLERANCE = {"rtol": 1e-8, "atol": 1e-9}
PAD, BOS, EOS = 0, 1, 2
VOCAB = 20


def seeded(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def captions(lengths: list[int], max_length: int, seed: int) -> torch.Tensor:
    """(B, max_length) int64 captions: <bos>, lengths[b] random words, <eos>, then <pad>."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((len(lengths), max_length), PAD, dtype=torch.int64)
    for row, length in enumerate(lengths):
        words = torch.randint(3, VOCAB, (length,), generator=generator)
        tokens[row, : length + 2] = torch.cat([torch.tensor([BOS]), words, torch.tensor([EOS])])
    return tokens


def padded(tokens: torch.Tensor, extra: int) -> torch.Tensor:
    """The same captions with ``extra`` more columns of <pad>."""
    return torch.cat([tokens, torch.full((tokens.shape[0], extra), PAD, dtype=torch.int64)], dim=1)



# ---------------------------------------------------------------------------
# §7.1 The padding mask and the masked mean
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("7.1", "keep_mask")
@pytest.mark.parametrize("pad_id", [0, 7])
def test_keep_mask(impl, ref, pad_id):
    """keep_mask is True at every token but <pad>"""
    tokens = captions([3, 0, 5], 9, seed=1)
    if pad_id != PAD:  # the padding is 7, and 0 an ordinary id
        tokens[tokens == PAD] = pad_id
        tokens[0, 1] = 0
    check_keep_mask(impl, ref, tokens, pad_id)


def check_keep_mask(impl, ref, tokens: torch.Tensor, pad_id: int) -> None:
    got = impl.text.keep_mask(tokens, pad_id)
    expected = ref.text.keep_mask(tokens, pad_id)
    if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
        fail(f"keep_mask(tokens, pad_id={pad_id}) returned {got.dtype}; a keep mask is a bool tensor (True = the "
             "token takes part), which masked_fill and ~ need. See IMPLEMENTATION_GUIDE.md §7.1.")
    as_float = lambda mask: mask.to(F64) if isinstance(mask, torch.Tensor) else mask  # noqa: E731
    check_close(as_float(got), as_float(expected), function="keep_mask", section="7.1",
                inputs={"tokens": tokens, "pad_id": pad_id},
                mistakes={"keep_mask_inverted": as_float(~expected),
                          "keep_mask_pad_id_ignored": as_float(tokens != 0)})


def masked_mean_inputs(seed: int, lengths=(1, 4, 2), width: int = 5):
    """(B, L, D) embeddings and a keep mask whose rows keep lengths[b] + 2 tokens, with padding in every row."""
    tokens = captions(list(lengths), max(lengths) + 4, seed)
    embeddings = seeded((len(lengths), tokens.shape[1], width), seed + 1)
    return embeddings, tokens != PAD


def masked_mean_mistakes(embeddings: torch.Tensor, keep: torch.Tensor) -> dict:
    weights = keep.to(embeddings.dtype).unsqueeze(-1)
    total = (embeddings * weights).sum(dim=1)
    return {"mean_over_padding": embeddings.mean(dim=1), "masked_sum_not_mean": total,
            "masked_mean_over_length": total / embeddings.shape[1],
            "keep_mask_inverted": (embeddings * (1 - weights)).sum(dim=1) / (1 - weights).sum(dim=1),
            "masked_mean_wrong_axis": nan_shaped((embeddings.shape[0], embeddings.shape[1]),
                                                 (embeddings.shape[1], embeddings.shape[2]))}


@pytest.mark.points(2)
@pytest.mark.exercise("7.1", "masked_mean")
def test_masked_mean(impl, ref):
    """masked_mean averages each sequence over its real tokens only"""
    check_masked_mean(impl, ref, *masked_mean_inputs(3))


def check_masked_mean(impl, ref, embeddings: torch.Tensor, keep: torch.Tensor) -> None:
    check_close(impl.text.masked_mean(embeddings, keep), ref.text.masked_mean(embeddings, keep),
                function="masked_mean", section="7.1", inputs={"embeddings": embeddings, "keep": keep},
                mistakes=masked_mean_mistakes(embeddings, keep))


@pytest.mark.points(1)
@pytest.mark.exercise("7.1", "masked_mean")
def test_masked_mean_ignores_appended_padding(impl):
    """masked_mean does not change when padding (with any vectors at those positions) is appended"""
    embeddings, keep = masked_mean_inputs(5)
    check_masked_mean_ignores_appended_padding(impl, embeddings, keep, seeded((3, 4, 5), 6) * 10)


def check_masked_mean_ignores_appended_padding(impl, embeddings: torch.Tensor, keep: torch.Tensor,
                                               appended: torch.Tensor) -> None:
    """``appended`` (B, extra, D): the vectors at the padding positions added after the sequences."""
    longer = torch.cat([embeddings, appended], dim=1)
    extra = appended.shape[1]
    longer_keep = torch.cat([keep, torch.zeros(keep.shape[0], extra, dtype=torch.bool)], dim=1)
    short, long = impl.text.masked_mean(embeddings, keep), impl.text.masked_mean(longer, longer_keep)
    mistakes = {}
    if isinstance(long, torch.Tensor) and long.shape == short.shape:
        mistakes = {"mean_over_padding": longer.mean(dim=1),
                    "masked_mean_over_length": (longer * longer_keep.unsqueeze(-1)).sum(dim=1) / longer.shape[1]}
    check_close(long, short, function="masked_mean", section="7.1",
                inputs={"embeddings": longer, "keep": longer_keep},
                what=f"the mean with {extra} more padding positions (it should equal the mean without them)",
                mistakes=mistakes)


# ---------------------------------------------------------------------------
# §7.2 Attention with a keep mask
# ---------------------------------------------------------------------------


def attention_inputs(seed: int, batch=2, heads=2, queries=5, keys=6, width=4, masked=True):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn((batch, heads, queries, width), generator=generator, dtype=F64) * 1.5
    k = torch.randn((batch, heads, keys, width), generator=generator, dtype=F64) * 1.5
    v = torch.randn((batch, heads, keys, width + 1), generator=generator, dtype=F64)
    keep = None
    if masked:  # every row keeps some keys and masks some
        keep = torch.ones(batch, keys, dtype=torch.bool)
        keep[0, -2:] = False
        keep[-1, 1] = keep[-1, -1] = False
    return q, k, v, keep


def attention_variant(q, k, v, keep, *, scale="sqrt", axis=-1, mask="inf", out=True):
    """Attention with one piece changed: its output (or weights), for naming mistakes."""
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1) * {"sqrt": d ** -0.5, "none": 1.0, "d": 1.0 / d}[scale]
    expanded = None if keep is None else keep[:, None, None, :]
    if expanded is not None and mask == "inf":
        scores = scores.masked_fill(~expanded, float("-inf"))
    elif expanded is not None and mask == "inverted":
        scores = scores.masked_fill(expanded, float("-inf"))
    elif expanded is not None and mask == "zero":
        scores = scores.masked_fill(~expanded, 0.0)
    weights = scores.softmax(dim=axis)
    if expanded is not None and mask == "after":
        weights = weights * expanded
    return weights @ v if out else weights


def attention_mistakes(q, k, v, keep, out: bool) -> dict:
    variant = lambda **changes: attention_variant(q, k, v, keep, out=out, **changes)  # noqa: E731
    mistakes = {"softmax_wrong_axis": variant(axis=-2), "attention_no_scaling": variant(scale="none"),
                "attention_scaled_by_d": variant(scale="d")}
    if keep is not None:
        mistakes.update({"attention_mask_ignored": variant(mask="none"),
                         "attention_mask_inverted": variant(mask="inverted"),
                         "attention_mask_zero_score": variant(mask="zero"),
                         "attention_mask_after_softmax": variant(mask="after")})
    return mistakes


ATTENTION_CASES = {"masked, 5 queries, 6 keys": dict(), "no mask, 3 queries, 7 keys": dict(queries=3, keys=7, masked=False)}


@pytest.mark.points(2)
@pytest.mark.exercise("7.2", "attention")
@pytest.mark.parametrize("case", list(ATTENTION_CASES))
def test_attention(impl, ref, case):
    """attention is softmax(q kᵀ / √d) v over the keys, masked keys left out (both outputs)"""
    check_attention(impl, ref, *attention_inputs(10, **ATTENTION_CASES[case]))


def check_attention(impl, ref, q, k, v, keep) -> None:
    got = pair(impl.text.attention(q, k, v, keep), "attention", "7.2", ("out", "weights"))
    expected = ref.text.attention(q, k, v, keep)
    inputs = {"q": q, "k": k, "v": v, "keep": keep}
    for index, (what, out) in enumerate((("the weights", False), ("the output", True))):
        position = 1 - index  # weights first: a wrong weight explains a wrong output
        check_close(got[position], expected[position], function="attention", section="7.2", inputs=inputs,
                    what=what, mistakes=attention_mistakes(q, k, v, keep, out))


@pytest.mark.points(1)
@pytest.mark.exercise("7.2", "attention")
def test_attention_matches_scaled_dot_product_attention(impl):
    """attention agrees with torch's F.scaled_dot_product_attention (an oracle independent of the reference)"""
    q, k, v, keep = attention_inputs(12)
    oracle = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])  # bool: True = take part
    got = pair(impl.text.attention(q, k, v, keep), "attention", "7.2", ("out", "weights"))
    check_close(got[0], oracle, function="attention", section="7.2", inputs={"q": q, "k": k, "v": v, "keep": keep},
                what="the output", mistakes=attention_mistakes(q, k, v, keep, out=True))


@pytest.mark.points(1)
@pytest.mark.exercise("7.2", "attention")
def test_attention_weights_sum_to_one_over_the_keys(impl):
    """Each query's weights sum to 1 over the keys, and masked keys get weight exactly 0"""
    q, k, v, keep = attention_inputs(14, queries=4, keys=6)
    weights = pair(impl.text.attention(q, k, v, keep), "attention", "7.2", ("out", "weights"))[1]
    if tuple(weights.shape) != (2, 2, 4, 6):
        fail(f"attention(q {tuple(q.shape)}, k {tuple(k.shape)}, …) returned weights of shape "
             f"{tuple(weights.shape)}; expected (B, heads, N, L) = (2, 2, 4, 6). See IMPLEMENTATION_GUIDE.md §7.2.")
    sums = weights.sum(dim=-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-9):
        over_queries = torch.allclose(weights.sum(dim=-2), torch.ones_like(weights.sum(dim=-2)), atol=1e-9)
        hint = classic_mistake("softmax_wrong_axis") if over_queries else ""
        fail(f"each query's attention weights should sum to 1 over the keys (the last axis); their sums range "
             f"from {sums.min():.4g} to {sums.max():.4g}.{hint} See IMPLEMENTATION_GUIDE.md §7.2.")
    leaked = weights.masked_select(~keep[:, None, None, :].expand_as(weights))
    if leaked.abs().max() > 0:
        fail(f"masked keys (keep False) should get weight exactly 0; the largest such weight is "
             f"{leaked.abs().max():.3g}.{classic_mistake('attention_mask_zero_score')} See IMPLEMENTATION_GUIDE.md §7.2.")


# ---------------------------------------------------------------------------
# §7.3 Multi-head attention
# ---------------------------------------------------------------------------

MHA_CONFIGS = {
    "self-attention, width 8, 2 heads": dict(query_dim=8, heads=2),
    "cross-attention, width 8 over a context of width 6, 4 heads of 3": dict(query_dim=8, context_dim=6, heads=4,
                                                                           head_dim=3),
    "cross-attention, width 8 over a context of width 8 (as many tokens as queries), 2 heads":
        dict(query_dim=8, context_dim=8, heads=2),
}


def describe(name: str, config: dict) -> str:
    return f"{name}(" + ", ".join(f"{key}={value}" for key, value in config.items()) + ")"


@pytest.mark.points(1)
@pytest.mark.exercise("7.3", "MultiHeadAttention.__init__")
@pytest.mark.parametrize("name", list(MHA_CONFIGS))
def test_multi_head_attention_layout(impl, ref, name):
    """MultiHeadAttention has the reference's parameters (count, names and shapes)"""
    check_mha_layout(impl, ref, MHA_CONFIGS[name])


def check_mha_layout(impl, ref, config: dict) -> None:
    mine, reference = impl.text.MultiHeadAttention(**config), ref.text.MultiHeadAttention(**config)
    check_parameter_count(mine, reference, what=describe("MultiHeadAttention", config), section="7.3")
    load_reference_weights(mine, reference, what=describe("MultiHeadAttention", config), section="7.3")


def shared(impl_class, ref_class, config: dict, seed: int, what: str, section: str, dtype: torch.dtype = F64):
    """The reference module with random weights (in ``dtype``), and yours with the same weights (both eval)."""
    reference = randomize_(ref_class(**config).to(dtype).eval(), seed=seed)
    mine = impl_class(**config).to(dtype).eval()
    load_reference_weights(mine, reference, what=what, section=section)
    return mine, reference


def mha_variant(module, x, context, keep, *, split="transpose", merge="transpose", kv_from="context", mask=True):
    """The reference's multi-head attention with one piece changed, for naming mistakes."""
    context = x if context is None or kv_from == "x" else context
    batch, length, heads, d = x.shape[0], x.shape[1], module.heads, module.head_dim

    def split_heads(z):
        if split == "reshape":
            return z.reshape(batch, heads, z.shape[1], d)
        return z.reshape(batch, z.shape[1], heads, d).transpose(1, 2)

    q, k, v = split_heads(module.to_q(x)), split_heads(module.to_k(context)), split_heads(module.to_v(context))
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if keep is not None and mask and k.shape[2] == keep.shape[1]:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    out = scores.softmax(dim=-1) @ v
    out = out.reshape(batch, length, heads * d) if merge == "reshape" else out.transpose(1, 2).reshape(batch, length, -1)
    return module.to_out(out)


def check_mha_forward(impl, ref, config: dict, seed: int, batch: int = 2, queries: int = 5, keys: int = 4,
                      dtype: torch.dtype = F64, tolerance: dict = NETWORK_TOLERANCE) -> None:
    with reference_parts(impl.text.module, ref.text, ("attention",)), torch.no_grad():
        mine, reference = shared(impl.text.MultiHeadAttention, ref.text.MultiHeadAttention, config, seed,
                                 describe("MultiHeadAttention", config), "7.3", dtype)
        x = seeded((batch, queries, config["query_dim"]), seed + 1, dtype)
        cross = "context_dim" in config
        context = seeded((batch, keys, config["context_dim"]), seed + 2, dtype) if cross else None
        keep = torch.ones(batch, keys if cross else queries, dtype=torch.bool)
        keep[0, -1] = keep[-1, 1] = False
        got, expected = mine(x, context, keep), reference(x, context, keep)
        mistakes = {"heads_split_by_reshape": mha_variant(reference, x, context, keep, split="reshape"),
                    "heads_merged_by_reshape": mha_variant(reference, x, context, keep, merge="reshape"),
                    "attention_mask_ignored": mha_variant(reference, x, context, keep, mask=False)}
        if cross and config["context_dim"] == config["query_dim"]:  # else keys from x cannot even be made
            mistakes["kv_from_queries"] = [mha_variant(reference, x, context, keep, kv_from="x"),
                                           mha_variant(reference, x, context, keep, kv_from="x", mask=False)]
    check_close(got, expected, function="MultiHeadAttention.forward", section="7.3",
                inputs={"x": x, "context": context, "keep": keep}, mistakes=mistakes, **tolerance)


@pytest.mark.points(2)
@pytest.mark.exercise("7.3", "MultiHeadAttention.forward")
@pytest.mark.parametrize("name", list(MHA_CONFIGS))
def test_multi_head_attention_forward(impl, ref, name):
    """MultiHeadAttention (with the reference attention) matches the reference on shared weights"""
    config = MHA_CONFIGS[name]
    # Equal widths and lengths: keys and values taken from x by mistake still run, and the check names it.
    keys = 5 if config.get("context_dim") == config["query_dim"] else 4
    check_mha_forward(impl, ref, config, seed=20, keys=keys)


@pytest.mark.points(1)
@pytest.mark.exercise("7.3", "MultiHeadAttention.forward")
def test_multi_head_attention_matches_torch(impl, ref):
    """MultiHeadAttention agrees with torch's nn.MultiheadAttention given the same weights (an independent oracle)"""
    with reference_parts(impl.text.module, ref.text, ("attention",)), torch.no_grad():
        mine = randomize_(impl.text.MultiHeadAttention(8, heads=2).double().eval(), seed=22)
        oracle = nn.MultiheadAttention(8, 2, bias=True, batch_first=True).double().eval()
        state = {name: value for name, value in mine.state_dict().items()}
        oracle.in_proj_weight.copy_(torch.cat([state["to_q.weight"], state["to_k.weight"], state["to_v.weight"]]))
        oracle.in_proj_bias.zero_()  # q, k and v have no bias
        oracle.out_proj.weight.copy_(state["to_out.weight"])
        oracle.out_proj.bias.copy_(state["to_out.bias"])
        x = seeded((2, 5, 8), 23)
        keep = torch.ones(2, 5, dtype=torch.bool)
        keep[1, 3:] = False
        got = mine(x, None, keep)
        expected, _ = oracle(x, x, x, key_padding_mask=~keep)  # torch's convention: True = ignore
    check_close(got, expected, function="MultiHeadAttention.forward", section="7.3",
                inputs={"x": x, "context": None, "keep": keep}, **NETWORK_TOLERANCE)


# ---------------------------------------------------------------------------
# §7.4 The text encoder
# ---------------------------------------------------------------------------

ENCODER_CONFIG = dict(vocab_size=VOCAB, max_length=10, dim=8, heads=2, num_layers=2, ff_mult=2)
LAYER_CONFIG = dict(dim=8, heads=2, ff_mult=2)
#: What the encoder's classes may use of the rest of the phase, lent from the reference while they are graded.
LAYER_PARTS = ("MultiHeadAttention",)
ENCODER_PARTS = ("TextEncoderLayer",)


@pytest.mark.points(1)
@pytest.mark.exercise("7.4", "TextEncoderLayer.__init__")
def test_text_encoder_layer_layout(impl, ref):
    """TextEncoderLayer has the guide's modules (it loads the reference weights)"""
    check_text_encoder_layer_layout(impl, ref, LAYER_CONFIG)


def check_text_encoder_layer_layout(impl, ref, config: dict) -> None:
    with reference_parts(impl.text.module, ref.text, LAYER_PARTS):
        mine = impl.text.TextEncoderLayer(**config)
    load_reference_weights(mine, ref.text.TextEncoderLayer(**config),
                           what=describe("TextEncoderLayer", config), section="7.4")


def layer_variant(layer, x, keep, *, post_norm=False, mask=True, residual=True):
    """The reference layer with one piece changed, for naming mistakes."""
    keep = keep if mask else None
    if post_norm:
        x = layer.norm1(x + layer.attention(x, keep=keep))
        return layer.norm2(x + layer.feed_forward(x))
    attended = layer.attention(layer.norm1(x), keep=keep)
    x = x + attended if residual else attended
    return x + layer.feed_forward(layer.norm2(x))


@pytest.mark.points(2)
@pytest.mark.exercise("7.4", "TextEncoderLayer.forward")
def test_text_encoder_layer_forward(impl, ref):
    """TextEncoderLayer (with the reference attention) matches the reference on shared weights"""
    check_text_encoder_layer_forward(impl, ref, LAYER_CONFIG, 30, seeded((3, 6, 8), 31),
                                     captions([4, 1, 2], 6, 32) != PAD)


def check_text_encoder_layer_forward(impl, ref, config: dict, seed: int, x: torch.Tensor, keep: torch.Tensor,
                                     tolerance: dict = NETWORK_TOLERANCE) -> None:
    """The layer on shared weights (random, seeded ``seed``, in x's dtype)."""
    with reference_parts(impl.text.module, ref.text, LAYER_PARTS), torch.no_grad():
        mine, reference = shared(impl.text.TextEncoderLayer, ref.text.TextEncoderLayer, config, seed,
                                 describe("TextEncoderLayer", config), "7.4", x.dtype)
        got, expected = mine(x, keep), reference(x, keep)
        mistakes = {"post_norm": layer_variant(reference, x, keep, post_norm=True),
                    "attention_mask_ignored": layer_variant(reference, x, keep, mask=False),
                    "transformer_residual_missing": layer_variant(reference, x, keep, residual=False)}
    check_close(got, expected, function="TextEncoderLayer.forward", section="7.4", inputs={"x": x, "keep": keep},
                mistakes=mistakes, **tolerance)


@pytest.mark.points(1)
@pytest.mark.exercise("7.4", "TextEncoder.__init__")
def test_text_encoder_layout(impl, ref):
    """TextEncoder has the guide's modules (count, names and shapes)"""
    check_text_encoder_layout(impl, ref, ENCODER_CONFIG)


def check_text_encoder_layout(impl, ref, config: dict) -> None:
    with reference_parts(impl.text.module, ref.text, ENCODER_PARTS):
        mine = impl.text.TextEncoder(**config)
    reference = ref.text.TextEncoder(**config)
    check_parameter_count(mine, reference, what=describe("TextEncoder", config), section="7.4")
    load_reference_weights(mine, reference, what=describe("TextEncoder", config), section="7.4")


def encoder_variant(encoder, tokens, keep, *, positions=True, final_norm=True):
    """The reference encoder with one piece changed, for naming mistakes."""
    h = encoder.token_embedding(tokens)
    if positions:
        h = h + encoder.position_embedding(torch.arange(tokens.shape[1]))[None]
    for layer in encoder.layers:
        h = layer(h, keep)
    return encoder.final_norm(h) if final_norm else h


@pytest.mark.points(2)
@pytest.mark.exercise("7.4", "TextEncoder.forward")
def test_text_encoder_forward(impl, ref):
    """TextEncoder (with the reference layers) matches the reference on shared weights"""
    tokens = captions([5, 0, 2], 9, 41)
    check_text_encoder_forward(impl, ref, ENCODER_CONFIG, 40, tokens, tokens != PAD)


def check_text_encoder_forward(impl, ref, config: dict, seed: int, tokens: torch.Tensor, keep: torch.Tensor,
                               dtype: torch.dtype = F64, tolerance: dict = NETWORK_TOLERANCE) -> None:
    with reference_parts(impl.text.module, ref.text, ENCODER_PARTS), torch.no_grad():
        mine, reference = shared(impl.text.TextEncoder, ref.text.TextEncoder, config, seed,
                                 describe("TextEncoder", config), "7.4", dtype)
        got, expected = mine(tokens, keep), reference(tokens, keep)
        mistakes = {"position_embedding_missing": encoder_variant(reference, tokens, keep, positions=False),
                    "final_norm_missing": encoder_variant(reference, tokens, keep, final_norm=False)}
    check_close(got, expected, function="TextEncoder.forward", section="7.4", inputs={"tokens": tokens, "keep": keep},
                mistakes=mistakes, **tolerance)


def encoded_real_tokens(encoder, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return encoder(tokens, tokens != PAD)


@pytest.mark.points(2)
@pytest.mark.exercise("7.4", "TextEncoder.forward")
@pytest.mark.uses("attention", "MultiHeadAttention.__init__", "MultiHeadAttention.forward",
                  "TextEncoderLayer.__init__", "TextEncoderLayer.forward", "TextEncoder.__init__")
def test_text_encoder_ignores_appended_padding(impl):
    """Integration: your whole TextEncoder gives the real tokens the same vectors when padding is appended"""
    encoder = randomize_(impl.text.TextEncoder(**ENCODER_CONFIG).double().eval(), seed=44)
    tokens = captions([4, 1, 2], 7, 45)
    short, long = encoded_real_tokens(encoder, tokens), encoded_real_tokens(encoder, padded(tokens, 3))
    if not isinstance(long, torch.Tensor) or tuple(long.shape[:2]) != (3, 10):
        fail(f"TextEncoder on tokens of shape (3, 10) should return (3, 10, 8); got "
             f"{tuple(long.shape) if isinstance(long, torch.Tensor) else type(long).__name__}. "
             "See IMPLEMENTATION_GUIDE.md §7.4.")
    keep = tokens != PAD
    check_close(long[:, :7][keep], short[keep], function="TextEncoder", section="7.4",
                inputs={"tokens": padded(tokens, 3)},
                what=("the real tokens' vectors with 3 more <pad> appended (they should not change: padding "
                      "must be masked out of every attention; if only this check fails, see §7.2–§7.4)"),
                **NETWORK_TOLERANCE)


# ---------------------------------------------------------------------------
# §7.5 The spatial transformer
# ---------------------------------------------------------------------------

BLOCK_CONFIG = dict(dim=8, context_dim=6, heads=2)
SPATIAL_CONFIG = dict(channels=8, context_dim=6, heads=2, groups=4)


@pytest.mark.points(1)
@pytest.mark.exercise("7.5", "TransformerBlock.__init__")
def test_transformer_block_layout(impl, ref):
    """TransformerBlock has the guide's modules (count, names and shapes)"""
    check_transformer_block_layout(impl, ref, BLOCK_CONFIG)


def check_transformer_block_layout(impl, ref, config: dict) -> None:
    with reference_parts(impl.text.module, ref.text, ("MultiHeadAttention",)):
        mine = impl.text.TransformerBlock(**config)
    reference = ref.text.TransformerBlock(**config)
    check_parameter_count(mine, reference, what=describe("TransformerBlock", config), section="7.5")
    load_reference_weights(mine, reference, what=describe("TransformerBlock", config), section="7.5")


def block_variant(block, x, context, keep, *, cross_context=True, mask=True, order="self-cross"):
    """The reference transformer block with one piece changed, for naming mistakes."""
    keep = keep if mask else None

    def cross(h):
        if cross_context:
            return block.cross_attention(block.norm2(h), context, keep)
        return block.self_attention(block.norm2(h))  # stands for attention of the image over itself

    if order == "cross-self":
        x = x + cross(x)
        x = x + block.self_attention(block.norm1(x))
    else:
        x = x + block.self_attention(block.norm1(x))
        x = x + cross(x)
    return x + block.feed_forward(block.norm3(x))


def block_inputs(seed: int, batch: int = 2, positions: int = 6):
    x = seeded((batch, positions, 8), seed)
    tokens = captions([3, 1][:batch] + [2] * max(batch - 2, 0), 7, seed + 1)
    return x, seeded((batch, 7, 6), seed + 2), tokens != PAD


@pytest.mark.points(2)
@pytest.mark.exercise("7.5", "TransformerBlock.forward")
def test_transformer_block_forward(impl, ref):
    """TransformerBlock (with the reference attention) matches the reference on shared weights"""
    check_transformer_block_forward(impl, ref, BLOCK_CONFIG, 50, *block_inputs(51))


def check_transformer_block_forward(impl, ref, config: dict, seed: int, x: torch.Tensor, context: torch.Tensor,
                                    keep: torch.Tensor, tolerance: dict = NETWORK_TOLERANCE) -> None:
    """The block on shared weights (random, seeded ``seed``, in x's dtype)."""
    with reference_parts(impl.text.module, ref.text, ("MultiHeadAttention",)), torch.no_grad():
        mine, reference = shared(impl.text.TransformerBlock, ref.text.TransformerBlock, config, seed,
                                 describe("TransformerBlock", config), "7.5", x.dtype)
        got, expected = mine(x, context, keep), reference(x, context, keep)
        mistakes = {"cross_attention_order": block_variant(reference, x, context, keep, order="cross-self"),
                    "kv_from_queries": block_variant(reference, x, context, keep, cross_context=False),
                    "attention_mask_ignored": block_variant(reference, x, context, keep, mask=False)}
    check_close(got, expected, function="TransformerBlock.forward", section="7.5",
                inputs={"x": x, "context": context, "keep": keep}, mistakes=mistakes, **tolerance)


@pytest.mark.points(1)
@pytest.mark.exercise("7.5", "SpatialTransformer.__init__")
def test_spatial_transformer_layout(impl, ref):
    """SpatialTransformer has the guide's modules (count, names and shapes)"""
    check_spatial_transformer_layout(impl, ref, SPATIAL_CONFIG)


def check_spatial_transformer_layout(impl, ref, config: dict) -> None:
    with reference_parts(impl.text.module, ref.text, ("TransformerBlock",)):
        mine = impl.text.SpatialTransformer(**config)
    reference = ref.text.SpatialTransformer(**config)
    check_parameter_count(mine, reference, what=describe("SpatialTransformer", config), section="7.5")
    load_reference_weights(mine, reference, what=describe("SpatialTransformer", config), section="7.5")


@pytest.mark.points(1)
@pytest.mark.exercise("7.5", "SpatialTransformer.__init__")
def test_new_spatial_transformer_is_the_identity(impl, ref):
    """A new SpatialTransformer (proj_out at zero) returns its input unchanged"""
    _, context, keep = block_inputs(54)
    check_new_spatial_transformer_is_the_identity(impl, ref, SPATIAL_CONFIG, seeded((2, 8, 3, 4), 53), context, keep)


def check_new_spatial_transformer_is_the_identity(impl, ref, config: dict, x: torch.Tensor, context: torch.Tensor,
                                                  keep: torch.Tensor) -> None:
    """A new SpatialTransformer(**config), in x's dtype, on x."""
    with reference_parts(impl.text.module, ref.text, ("TransformerBlock",)), torch.no_grad():
        torch.manual_seed(52)
        mine = impl.text.SpatialTransformer(**config).to(x.dtype)
        got = mine(x, context, keep)
    if not isinstance(got, torch.Tensor) or not torch.equal(got, x):
        fail(f"a new SpatialTransformer{config} changed its input (largest change "
             f"{(got - x).abs().max() if isinstance(got, torch.Tensor) and got.shape == x.shape else 'n/a'})."
             f"{classic_mistake('proj_out_not_zero')} See IMPLEMENTATION_GUIDE.md §7.5.")


def spatial_variant(spatial, x, context, keep, *, flatten="permute", unflatten="permute", norm=True, residual=True):
    """The reference spatial transformer with one piece changed, for naming mistakes."""
    b, c, h, w = x.shape
    normed = spatial.norm(x) if norm else x
    if flatten == "reshape":
        tokens = normed.reshape(b, h * w, c)
    else:
        tokens = normed.permute(0, 2, 3, 1).reshape(b, h * w, c)
    tokens = spatial.proj_out(spatial.block(spatial.proj_in(tokens), context, keep))
    out = tokens.reshape(b, c, h, w) if unflatten == "reshape" else tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)
    return x + out if residual else out


@pytest.mark.points(3)
@pytest.mark.exercise("7.5", "SpatialTransformer.forward")
def test_spatial_transformer_forward(impl, ref):
    """SpatialTransformer (with the reference block) matches the reference on shared weights"""
    _, context, keep = block_inputs(57)
    check_spatial_transformer_forward(impl, ref, SPATIAL_CONFIG, 55, seeded((2, 8, 3, 4), 56), context, keep)


def check_spatial_transformer_forward(impl, ref, config: dict, seed: int, x: torch.Tensor, context: torch.Tensor,
                                      keep: torch.Tensor, tolerance: dict = NETWORK_TOLERANCE) -> None:
    """The spatial transformer on shared weights (random, seeded ``seed``, in x's dtype)."""
    with reference_parts(impl.text.module, ref.text, ("TransformerBlock",)), torch.no_grad():
        mine, reference = shared(impl.text.SpatialTransformer, ref.text.SpatialTransformer, config, seed,
                                 describe("SpatialTransformer", config), "7.5", x.dtype)
        got, expected = mine(x, context, keep), reference(x, context, keep)
        variant = lambda **changes: spatial_variant(reference, x, context, keep, **changes)  # noqa: E731
        mistakes = {"spatial_reshape_not_permute": [variant(flatten="reshape"),
                                                    variant(flatten="reshape", unflatten="reshape")],
                    "spatial_unflatten_reshape": variant(unflatten="reshape"),
                    "spatial_norm_missing": variant(norm=False),
                    "spatial_residual_missing": variant(residual=False)}
    check_close(got, expected, function="SpatialTransformer.forward", section="7.5",
                inputs={"x": x, "context": context, "keep": keep}, mistakes=mistakes, **tolerance)


@pytest.mark.points(2)
@pytest.mark.exercise("7.5", "SpatialTransformer.forward")
@pytest.mark.uses("attention", "MultiHeadAttention.__init__", "MultiHeadAttention.forward",
                  "TransformerBlock.__init__", "TransformerBlock.forward", "SpatialTransformer.__init__")
def test_spatial_transformer_is_permutation_equivariant(impl):
    """Integration: permuting the H·W positions of your SpatialTransformer's input permutes its output the same way"""
    spatial = randomize_(impl.text.SpatialTransformer(**SPATIAL_CONFIG).double().eval(), seed=58)
    x = seeded((2, 8, 3, 4), 59)
    _, context, keep = block_inputs(60)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(61))
    shuffle = lambda images: images.flatten(2)[:, :, order].reshape(images.shape)  # noqa: E731
    with torch.no_grad():
        got, plain = spatial(shuffle(x), context, keep), spatial(x, context, keep)
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        fail(f"SpatialTransformer on (2, 8, 3, 4) feature maps should return (2, 8, 3, 4); got "
             f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}. "
             "See IMPLEMENTATION_GUIDE.md §7.5.")
    check_close(got, shuffle(plain), function="SpatialTransformer", section="7.5",
                inputs={"x": shuffle(x), "context": context, "keep": keep},
                what=("the output for shuffled positions, against the shuffled output (attention treats "
                      "positions as a set, so they should agree; a reshape where a permute belongs, or "
                      "attention over the channels, breaks this; if only this check fails, see §7.2–§7.5)"),
                **NETWORK_TOLERANCE)


# ---------------------------------------------------------------------------
# §7.6 Caption dropout and guidance
# ---------------------------------------------------------------------------

EMPTY = torch.tensor([BOS, EOS] + [PAD] * 6)


def dropout_variants(tokens: torch.Tensor, p_uncond: float, seed: int, empty_tokens: torch.Tensor = EMPTY) -> dict:
    draws = torch.rand(tokens.shape[0], generator=torch.Generator().manual_seed(seed))
    per_token = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(seed))
    empty = empty_tokens.expand_as(tokens)
    as_float = lambda value: value.to(F64)  # noqa: E731
    return {"captions_dropped_to_padding": as_float(torch.where((draws < p_uncond)[:, None], 0, tokens)),
            "caption_dropout_inverted": as_float(torch.where((draws >= p_uncond)[:, None], empty, tokens)),
            "caption_dropout_per_token": as_float(torch.where(per_token < p_uncond, empty, tokens))}


@pytest.mark.points(1)
@pytest.mark.exercise("7.6", "drop_captions")
@pytest.mark.parametrize("p_uncond", [0.3, 0.0, 1.0])
def test_drop_captions(impl, ref, p_uncond):
    """drop_captions replaces the captions whose draw is below p_uncond by the empty caption"""
    check_drop_captions(impl, ref, captions([1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6], 8, 70), p_uncond, EMPTY, 71)


def check_drop_captions(impl, ref, tokens: torch.Tensor, p_uncond: float, empty_tokens: torch.Tensor,
                        seed: int) -> None:
    """drop_captions with a generator seeded ``seed`` (a fresh one for yours and for the reference)."""
    got = impl.text.drop_captions(tokens, p_uncond, empty_tokens, torch.Generator().manual_seed(seed))
    expected = ref.text.drop_captions(tokens, p_uncond, empty_tokens, torch.Generator().manual_seed(seed))
    if isinstance(got, torch.Tensor) and got.dtype != torch.int64:
        fail(f"drop_captions returned {got.dtype}; tokens are int64 ids. See IMPLEMENTATION_GUIDE.md §7.6.")
    as_float = lambda value: value.to(F64) if isinstance(value, torch.Tensor) else value  # noqa: E731
    check_close(as_float(got), as_float(expected), function="drop_captions", section="7.6",
                inputs={"tokens": tokens, "p_uncond": p_uncond, "empty_tokens": empty_tokens,
                        "generator": f"seeded {seed}"},
                mistakes=dropout_variants(tokens, p_uncond, seed, empty_tokens))


class ToyText(nn.Module):
    """A tiny text-conditioned stand-in for the TextUNet: a convolution plus an offset from the tokens.

    It records the tokens of every call, to check the single batched pass.
    """

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.words = nn.Embedding(VOCAB, channels)
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        self.calls.append(tokens.clone())
        if len(t) != len(x) or len(tokens) != len(x):
            raise ValueError(f"the model got {len(x)} images, {len(t)} timesteps and {len(tokens)} captions")
        position = torch.arange(1, tokens.shape[1] + 1, dtype=x.dtype)[None, :, None]
        offset = (self.words(tokens) * position).sum(dim=1)  # (B, C): depends on every token and its place
        return self.conv(x) * (0.8 + t.to(x.dtype).reshape(-1, 1, 1, 1) / 40) + offset[:, :, None, None]


def guidance_inputs():
    generator = torch.Generator().manual_seed(72)
    x_t = torch.randn((3, 2, 4, 4), generator=generator, dtype=F64)
    return x_t, torch.tensor([0, 13, 39]), captions([2, 5, 1], 8, 73)


@pytest.mark.points(1)
@pytest.mark.exercise("7.6", "text_guided_output")
@pytest.mark.parametrize("w", [0.0, 1.0, 4.0])
def test_text_guided_output(impl, ref, w):
    """text_guided_output is out_∅ + w · (out_c − out_∅), out_∅ from the empty caption"""
    check_text_guided_output(impl, ref, randomize_(ToyText().double(), seed=74).eval(), *guidance_inputs(), w, EMPTY)


def check_text_guided_output(impl, ref, toy: nn.Module, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor,
                             w: float, empty_tokens: torch.Tensor) -> None:
    with torch.no_grad(), reference_parts(impl.text.module, ref.text, ("call_model",)):
        got = impl.text.text_guided_output(toy, x_t, t, tokens, w, empty_tokens)
    with torch.no_grad():
        expected = ref.text.text_guided_output(toy, x_t, t, tokens, w, empty_tokens)
        conditional, unconditional = toy(x_t, t, tokens), toy(x_t, t, empty_tokens.expand_as(tokens))
        zeros = toy(x_t, t, torch.zeros_like(tokens))
    mistakes = {"cfg_paper_convention": unconditional + (1 + w) * (conditional - unconditional),
                "cfg_w_minus_one": unconditional + (w - 1) * (conditional - unconditional),
                "cfg_swapped": conditional + w * (unconditional - conditional),
                "uncond_all_padding": zeros + w * (conditional - zeros)}
    check_close(got, expected, function="text_guided_output", section="7.6",
                inputs={"x_t": x_t, "t": t, "tokens": tokens, "guidance_scale": w, "empty_tokens": empty_tokens},
                mistakes=mistakes)


@pytest.mark.points(1)
@pytest.mark.exercise("7.6", "text_guided_output")
def test_text_guidance_is_one_batched_pass(impl, ref):
    """text_guided_output calls the model once, on the doubled batch: the captions, then the empty caption"""
    check_text_guidance_is_one_batched_pass(impl, ref, randomize_(ToyText().double(), seed=75).eval(),
                                            *guidance_inputs(), 3.0, EMPTY)


def check_text_guidance_is_one_batched_pass(impl, ref, toy: nn.Module, x_t: torch.Tensor, t: torch.Tensor,
                                            tokens: torch.Tensor, w: float, empty_tokens: torch.Tensor) -> None:
    """``toy`` records the tokens of each call (a :class:`ToyText`)."""
    with torch.no_grad(), reference_parts(impl.text.module, ref.text, ("call_model",)):
        impl.text.text_guided_output(toy, x_t, t, tokens, w, empty_tokens)
    seen = [call.tolist() for call in toy.calls]
    wanted = torch.cat([tokens, empty_tokens.expand_as(tokens)]).tolist()
    batch = len(tokens)
    if seen != [wanted]:
        hint = ""
        if len(seen) == 1 and len(seen[0]) == 2 * batch and all(not any(row) for row in seen[0][batch:]):
            hint = classic_mistake("uncond_all_padding")
        fail(f"text_guided_output({batch} captions, guidance_scale={w}) called the model {len(seen)} time(s) with the "
             f"tokens {seen}; expected one call on the doubled batch with the tokens {wanted} (the captions, then "
             f"the empty caption for each image).{hint} See IMPLEMENTATION_GUIDE.md §7.6.")


# ---------------------------------------------------------------------------
# §7.7 The text-conditioned U-Net
# ---------------------------------------------------------------------------

TEXT_UNET_CONFIG = dict(vocab_size=VOCAB, max_length=8, empty_tokens=EMPTY.tolist(), text_dim=8, text_heads=2,
                        text_layers=1, cross_heads=2, in_channels=2, base_channels=8, channel_mults=(1, 2),
                        num_res_blocks=1, attention_levels=(1,), num_heads=2, groups=4)
#: What TextUNet.forward may use of the rest of the phase, lent from the reference while it is graded.
TEXT_UNET_PARTS = ("CaptionedUNet", "TextEncoder", "keep_mask", "masked_mean")


def text_unet_variant(model, x, t, tokens, *, mask=True, pooled="masked", pad_id=PAD):
    """The reference TextUNet's forward with one piece changed, for naming mistakes."""
    keep = tokens != pad_id if mask else torch.ones_like(tokens, dtype=torch.bool)
    context = model.text_encoder(tokens, keep)
    pooled_vector = context.mean(dim=1) if pooled == "all" else ref_masked_mean(context, keep)
    return model.unet(x, t, context, keep, pooled_vector)


def ref_masked_mean(context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    weights = keep.to(context.dtype).unsqueeze(-1)
    return (context * weights).sum(dim=1) / weights.sum(dim=1)


def text_unet_inputs(seed: int, batch: int = 3):
    x = seeded((batch, 2, 4, 4), seed)
    t = torch.tensor([0, 17, 39, 5, 22][:batch])
    return x, t, captions([3, 1, 5, 2, 4][:batch], 8, seed + 1)


@pytest.mark.points(3)
@pytest.mark.exercise("7.7", "TextUNet.forward")
def test_text_unet_forward(impl, ref):
    """TextUNet.forward (with the reference parts) matches the reference on shared weights"""
    check_text_unet_forward(impl, ref, TEXT_UNET_CONFIG, 80, *text_unet_inputs(81))


def check_text_unet_forward(impl, ref, config: dict, seed: int, x: torch.Tensor, t: torch.Tensor,
                            tokens: torch.Tensor, tolerance: dict = NETWORK_TOLERANCE) -> None:
    """The TextUNet(**config) on shared weights (random, seeded ``seed``, in x's dtype)."""
    pad_id = config.get("pad_id", PAD)
    with reference_parts(impl.text.module, ref.text, TEXT_UNET_PARTS), torch.no_grad():
        mine, reference = shared(impl.text.TextUNet, ref.text.TextUNet, config, seed, "TextUNet", "7.7", x.dtype)
        got, expected = mine(x, t, tokens), reference(x, t, tokens)
        mistakes = {"text_mask_ignored": text_unet_variant(reference, x, t, tokens, mask=False),
                    "mean_over_padding": text_unet_variant(reference, x, t, tokens, pooled="all", pad_id=pad_id)}
        if pad_id != PAD:  # the padding id not passed on to keep_mask (whose default is 0)
            mistakes["keep_mask_pad_id_ignored"] = text_unet_variant(reference, x, t, tokens, pad_id=PAD)
    check_close(got, expected, function="TextUNet.forward", section="7.7", inputs={"x": x, "t": t, "tokens": tokens},
                mistakes=mistakes, **tolerance)


@pytest.mark.points(2)
@pytest.mark.exercise("7.7", "TextUNet.forward")
@pytest.mark.uses("keep_mask", "masked_mean", "attention", "MultiHeadAttention.__init__",
                  "MultiHeadAttention.forward", "TextEncoderLayer.__init__", "TextEncoderLayer.forward",
                  "TextEncoder.__init__", "TextEncoder.forward")
def test_text_unet_ignores_appended_padding(impl, ref):
    """Integration: your TextUNet (your text encoder, the reference U-Net) gives the same output when padding is appended"""
    config = dict(TEXT_UNET_CONFIG, max_length=11, empty_tokens=EMPTY.tolist() + [PAD] * 3)
    with reference_parts(impl.text.module, ref.text, ("CaptionedUNet",)), torch.no_grad():
        model = randomize_(impl.text.TextUNet(**config).double().eval(), seed=82)
        x, t, tokens = text_unet_inputs(83)
        short, long = model(x, t, tokens), model(x, t, padded(tokens, 3))
    check_close(long, short, function="TextUNet", section="7.7", inputs={"x": x, "t": t, "tokens": padded(tokens, 3)},
                what=("the output with 3 more <pad> appended to every caption (it should not change; if only this "
                      "check fails, see §7.1–§7.4)"), **NETWORK_TOLERANCE)
