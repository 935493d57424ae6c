"""Phase 7 · Text-to-image: a small text encoder and cross-attention, as in Stable Diffusion.

A caption such as "a bold seven, leaning right" becomes word tokens (the provided
tokenizer, :mod:`provided.captions`), padded to a fixed length L:

    tokens (B, L) int64:  [<bos>, a, bold, seven, ",", leaning, right, <eos>, <pad>, <pad>, …]
    keep   (B, L) bool:   True for every real token (and <bos>, <eos>), False for <pad>

A small transformer turns them into one vector per token (Vaswani et al. 2017),
trained from scratch together with the U-Net, as Rombach et al. (2022) trained
theirs for text-to-image:

    text encoder:  tokens (B, L)  →  context (B, L, D)

The U-Net reads the caption in two places:

* wherever it had self-attention (§2.4) it now has a *spatial transformer*
  (Rombach et al. 2022, §3.3): the H·W positions of a feature map attend to one
  another, then **cross-attend** to the caption (queries from the image, keys and
  values from the tokens, <pad> keys masked out), then pass a feed-forward layer;
* the mean of the real tokens' vectors (padding left out) is added to the time
  embedding, so every residual block hears the caption too.

Classifier-free guidance works as in Phase 5, with the empty caption "" (tokens
[<bos>, <eos>, <pad>, …]) in the role of the null label: training replaces a
fraction of the captions by it, sampling mixes the outputs for the caption and
for it.

Conventions: attention masks are *keep* masks, True = this key takes part (the
convention of ``F.scaled_dot_product_attention``'s boolean masks; the opposite of
``nn.MultiheadAttention``'s ``key_padding_mask``). Sequences are (B, L, D),
batch first. Every row of a keep mask has at least one True (the tokenizer
always writes <bos> and <eos>).

Sections of the guide: §7.1 the padding mask and the masked mean, §7.2 attention
with a mask, §7.3 multi-head attention, §7.4 the text encoder, §7.5 the spatial
transformer, §7.6 caption dropout and guidance, §7.7 the text-conditioned U-Net.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from provided.choices import DEFAULT_TEXT_CONFIG
from provided.validate import (
    check_attention_inputs,
    check_caption_dropout_arguments,
    check_guidance,
    check_keep_mask,
    check_positive_int,
    check_text_model_arguments,
    check_tokens,
)

from .diffusion import call_model
from .unet import UNet

#: The id of <pad> (the provided tokenizer's convention, :mod:`provided.captions`).
PAD_ID = 0


# ---------------------------------------------------------------------------
# §7.1 The padding mask and the mean over real tokens
# ---------------------------------------------------------------------------


def keep_mask(tokens: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """Which tokens are real: True everywhere but at <pad>.

    Args:
        tokens: (B, L) int64 token ids.
        pad_id: the id of <pad>.

    Returns:
        (B, L) bool, True = the token takes part in attention.
    """
    check_tokens(tokens)
    ### BEGIN SOLUTION §7.1
    # Compare with pad_id: real tokens are the ones that are *not* padding.
    return tokens != pad_id  # (B, L) bool
    ### END SOLUTION


def masked_mean(embeddings: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The mean of each sequence's vectors over its real tokens only (padding left out).

        pooled_b = Σ_l keep_bl · e_bl / Σ_l keep_bl

    A plain ``embeddings.mean(dim=1)`` would average in the padding, so the same
    caption would get a different vector in a longer padded batch.

    Args:
        embeddings: (B, L, D) one vector per token.
        keep: (B, L) bool keep mask.

    Returns:
        (B, D) in the embeddings' dtype.
    """
    check_keep_mask(keep, embeddings)
    ### BEGIN SOLUTION §7.1
    # Turn keep into weights of 0 and 1 of shape (B, L, 1), sum the weighted vectors over L and
    # divide by the number of real tokens.
    weights = keep.to(embeddings.dtype).unsqueeze(-1)  # (B, L, 1)
    return (embeddings * weights).sum(dim=1) / weights.sum(dim=1)  # (B, D) / (B, 1)
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §7.2 Scaled dot-product attention with a keep mask
# ---------------------------------------------------------------------------


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d) v over the keys, masked keys left out (Vaswani et al. 2017, eq. 1).

    Each query's weights over the L keys sum to 1; a key whose keep is False gets
    weight exactly 0 (its score is set to −∞ before the softmax).

    Args:
        q: (B, heads, N, d) queries.
        k: (B, heads, L, d) keys.
        v: (B, heads, L, d_v) values.
        keep: (B, L) bool, True = the key takes part; None = every key does.

    Returns:
        out: (B, heads, N, d_v) the weighted values;
        weights: (B, heads, N, L) the attention weights (rows sum to 1).
    """
    check_attention_inputs(q, k, v, keep)
    ### BEGIN SOLUTION §7.2
    # Scores q kᵀ / √d over the last two axes; masked keys get −∞; softmax over the keys (the last axis).
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, heads, N, L)
    if keep is not None:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))  # (B, 1, 1, L) broadcast
    weights = scores.softmax(dim=-1)  # each query's weights over the keys sum to 1
    return weights @ v, weights  # (B, heads, N, d_v), (B, heads, N, L)
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §7.3 Multi-head attention: self-attention and cross-attention in one module
# ---------------------------------------------------------------------------


class MultiHeadAttention(nn.Module):
    """Multi-head attention of a sequence x over a context (itself for self-attention).

        q = to_q(x), k = to_k(context), v = to_v(context)      split into heads of width d
        out = to_out(attention(q, k, v, keep) with the heads merged back)

    With context = x it is self-attention; with context = the caption's vectors
    it is cross-attention: each image position (a query) gathers from the words
    (keys and values). Rombach et al. (2022) use bias-free q, k, v projections.

    Modules (in this order): ``to_q`` (Linear query_dim → heads·head_dim, no bias),
    ``to_k`` and ``to_v`` (Linear context_dim → heads·head_dim, no bias),
    ``to_out`` (Linear heads·head_dim → query_dim, with bias). Head h uses
    channels h·d … (h+1)·d − 1 of q, k and v.

    Args:
        query_dim: width of x.
        context_dim: width of the context (None: query_dim, for self-attention).
        heads: number of heads.
        head_dim: d, the width of each head (None: query_dim / heads).
    """

    def __init__(
        self, query_dim: int, context_dim: int | None = None, heads: int = 4, head_dim: int | None = None
    ) -> None:
        super().__init__()
        context_dim = query_dim if context_dim is None else context_dim
        if head_dim is None:
            check_positive_int(heads, "heads")
            if query_dim % heads:
                raise ValueError(f"heads must divide query_dim when head_dim is None; got query_dim={query_dim}, "
                                 f"heads={heads}")
            head_dim = query_dim // heads
        for value, name in ((query_dim, "query_dim"), (context_dim, "context_dim"), (heads, "heads"),
                            (head_dim, "head_dim")):
            check_positive_int(value, name)
        self.heads, self.head_dim = heads, head_dim
        ### BEGIN SOLUTION §7.3
        # Four nn.Linear layers, as the class docstring lists them; the inner width is heads · head_dim.
        inner = heads * head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)
        ### END SOLUTION

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend.

        Args:
            x: (B, N, query_dim) the sequence that asks (the queries).
            context: (B, L, context_dim) the sequence attended to; None means x itself.
            keep: (B, L) bool keep mask of the context's positions, or None.

        Returns:
            (B, N, query_dim).
        """
        context = x if context is None else context
        ### BEGIN SOLUTION §7.3
        # Project (queries from x, keys and values from the context), split each into heads
        # (B, n, heads·d) → (B, heads, n, d), attend, merge the heads back to (B, N, heads·d), to_out.
        batch, length = x.shape[0], x.shape[1]

        def split_heads(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(batch, z.shape[1], self.heads, self.head_dim).transpose(1, 2)  # (B, heads, n, d)

        q = split_heads(self.to_q(x))  # (B, heads, N, d)
        k = split_heads(self.to_k(context))  # (B, heads, L, d)
        v = split_heads(self.to_v(context))  # (B, heads, L, d)
        out, _ = attention(q, k, v, keep)  # (B, heads, N, d)
        out = out.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)  # (B, N, heads·d)
        return self.to_out(out)
        ### END SOLUTION


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    """The position-wise feed-forward layer: Linear(dim → mult·dim), GELU, Linear(mult·dim → dim) (provided)."""
    return nn.Sequential(nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim))


# ---------------------------------------------------------------------------
# §7.4 The text encoder: a small pre-norm transformer
# ---------------------------------------------------------------------------


class TextEncoderLayer(nn.Module):
    """One pre-norm transformer layer (Xiong et al. 2020): each sub-layer sees a normalised input.

        x = x + attention(norm1(x), keep)        self-attention, <pad> keys masked out
        x = x + feed_forward(norm2(x))

    Modules (in this order): ``norm1`` (LayerNorm dim), ``attention``
    (MultiHeadAttention(dim, heads=heads)), ``norm2`` (LayerNorm dim),
    ``feed_forward`` (:func:`feed_forward` (dim, ff_mult)).
    """

    def __init__(self, dim: int, heads: int, ff_mult: int = 2) -> None:
        super().__init__()
        ### BEGIN SOLUTION §7.4
        # The four modules of the class docstring.
        self.norm1 = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, heads=heads)
        self.norm2 = nn.LayerNorm(dim)
        self.feed_forward = feed_forward(dim, ff_mult)
        ### END SOLUTION

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, L, dim) → (B, L, dim); ``keep`` is the (B, L) keep mask of the tokens."""
        ### BEGIN SOLUTION §7.4
        # The two residual lines of the class docstring.
        x = x + self.attention(self.norm1(x), keep=keep)  # (B, L, dim)
        return x + self.feed_forward(self.norm2(x))
        ### END SOLUTION


class TextEncoder(nn.Module):
    """Tokens → one vector per token: embeddings of the words and of their positions, then transformer layers.

        h = token_embedding(tokens) + position_embedding(0, 1, …, L − 1)      (B, L, dim)
        h = layers[0](h, keep), …, layers[n − 1](h, keep)
        return final_norm(h)

    Modules (in this order): ``token_embedding`` (Embedding vocab_size × dim),
    ``position_embedding`` (Embedding max_length × dim, learned positions),
    ``layers`` (ModuleList of ``num_layers`` :class:`TextEncoderLayer`),
    ``final_norm`` (LayerNorm dim).

    Args:
        vocab_size: number of token ids.
        max_length: the longest token sequence (positions 0 … max_length − 1).
        dim: D, the width of every vector.
        heads: attention heads per layer.
        num_layers: transformer layers.
        ff_mult: the feed-forward layers' width multiplier.
    """

    def __init__(
        self, vocab_size: int, max_length: int, dim: int = 64, heads: int = 4, num_layers: int = 2, ff_mult: int = 2
    ) -> None:
        super().__init__()
        for value, name in ((vocab_size, "vocab_size"), (max_length, "max_length"), (dim, "dim"),
                            (num_layers, "num_layers"), (ff_mult, "ff_mult")):
            check_positive_int(value, name)
        self.max_length = max_length
        ### BEGIN SOLUTION §7.4
        # The four modules of the class docstring.
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Embedding(max_length, dim)
        self.layers = nn.ModuleList(TextEncoderLayer(dim, heads, ff_mult) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim)
        ### END SOLUTION

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Encode.

        Args:
            tokens: (B, L) int64 ids, L ≤ max_length.
            keep: (B, L) bool keep mask (from :func:`keep_mask`).

        Returns:
            (B, L, dim) one vector per token (those at <pad> are computed but never attended to).
        """
        check_tokens(tokens, self.max_length)
        ### BEGIN SOLUTION §7.4
        # Positions 0 … L − 1 on the tokens' device; add the two embeddings; the layers; the final norm.
        positions = torch.arange(tokens.shape[1], device=tokens.device)  # (L,)
        h = self.token_embedding(tokens) + self.position_embedding(positions)[None]  # (B, L, dim) + (1, L, dim)
        for layer in self.layers:
            h = layer(h, keep)
        return self.final_norm(h)
        ### END SOLUTION


# ---------------------------------------------------------------------------
# §7.5 The spatial transformer: a feature map attends to itself, then to the caption
# ---------------------------------------------------------------------------


class TransformerBlock(nn.Module):
    """Stable Diffusion's transformer block on a sequence of image positions (Rombach et al. 2022, §3.3).

        x = x + self_attention(norm1(x))                     the positions attend to one another
        x = x + cross_attention(norm2(x), context, keep)     … then to the caption's tokens
        x = x + feed_forward(norm3(x))

    Modules (in this order): ``norm1``, ``self_attention`` (MultiHeadAttention(dim,
    heads=heads)), ``norm2``, ``cross_attention`` (MultiHeadAttention(dim, context_dim,
    heads=heads)), ``norm3``, ``feed_forward`` (:func:`feed_forward` (dim, ff_mult));
    the norms are LayerNorm(dim).
    """

    def __init__(self, dim: int, context_dim: int, heads: int, ff_mult: int = 2) -> None:
        super().__init__()
        ### BEGIN SOLUTION §7.5
        # The six modules of the class docstring.
        self.norm1 = nn.LayerNorm(dim)
        self.self_attention = MultiHeadAttention(dim, heads=heads)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attention = MultiHeadAttention(dim, context_dim, heads=heads)
        self.norm3 = nn.LayerNorm(dim)
        self.feed_forward = feed_forward(dim, ff_mult)
        ### END SOLUTION

    def forward(self, x: torch.Tensor, context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) positions, (B, L, context_dim) caption, (B, L) keep mask → (B, N, dim)."""
        ### BEGIN SOLUTION §7.5
        # The three residual lines of the class docstring.
        x = x + self.self_attention(self.norm1(x))
        x = x + self.cross_attention(self.norm2(x), context, keep)
        return x + self.feed_forward(self.norm3(x))
        ### END SOLUTION


class SpatialTransformer(nn.Module):
    """A :class:`TransformerBlock` on the H·W positions of a feature map, with a residual around it.

        tokens = proj_in(norm(x) as (B, H·W, C))            position (i, j) is token i·W + j
        tokens = block(tokens, context, keep)
        return x + proj_out(tokens) as (B, C, H, W)

    ``proj_out`` starts at zero (weights and bias), so a new spatial transformer is
    the identity: the U-Net starts as a good unconditional denoiser and learns to
    listen to the caption (Rombach et al.'s ``zero_module``).

    Modules (in this order): ``norm`` (GroupNorm(groups, C)), ``proj_in`` (Linear C → C),
    ``block`` (TransformerBlock(C, context_dim, heads)), ``proj_out`` (Linear C → C, zeros).
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4, groups: int = 8) -> None:
        super().__init__()
        check_text_model_arguments(channels=channels, context_dim=context_dim, heads=heads, groups=groups)
        ### BEGIN SOLUTION §7.5
        # The four modules of the class docstring; zero proj_out's weight and bias.
        self.norm = nn.GroupNorm(groups, channels)
        self.proj_in = nn.Linear(channels, channels)
        self.block = TransformerBlock(channels, context_dim, heads)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        ### END SOLUTION

    def forward(self, x: torch.Tensor, context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) feature maps, (B, L, context_dim) caption, (B, L) keep mask → (B, C, H, W)."""
        batch, channels, height, width = x.shape
        ### BEGIN SOLUTION §7.5
        # Channels last before flattening the positions: (B, C, H, W) → (B, H, W, C) → (B, H·W, C);
        # a plain reshape of (B, C, H, W) to (B, H·W, C) would mix channels and positions.
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # (B, N, C)
        tokens = self.block(self.proj_in(tokens), context, keep)  # (B, N, C)
        out = self.proj_out(tokens).reshape(batch, height, width, channels).permute(0, 3, 1, 2)  # (B, C, H, W)
        return x + out
        ### END SOLUTION


# ---------------------------------------------------------------------------
# §7.6 Caption dropout and classifier-free guidance with the empty caption
# ---------------------------------------------------------------------------


def drop_captions(
    tokens: torch.Tensor,
    p_uncond: float,
    empty_tokens: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace each caption by the empty caption with probability p_uncond (Ho & Salimans 2022, Algorithm 1).

    The empty caption "" (tokens [<bos>, <eos>, <pad>, …]) plays the null label's
    part: the same tokens must stand for "no caption" at sampling time
    (:func:`text_guided_output`).

    Random draws: one ``torch.rand`` of shape (B,) from ``generator``, on the
    generator's device, as :func:`drop_labels` (§5.2); caption i is dropped when
    its draw is below p_uncond.

    Args:
        tokens: (B, L) int64 captions.
        p_uncond: the probability of dropping a caption, in [0, 1].
        empty_tokens: (L,) int64, the empty caption's tokens.
        generator: the random source.

    Returns:
        (B, L) int64 on the device of ``tokens``.
    """
    check_caption_dropout_arguments(tokens, p_uncond, empty_tokens)
    ### BEGIN SOLUTION §7.6
    # One uniform draw per caption on the generator's device; rows below p_uncond become empty_tokens.
    source = generator.device if generator is not None else tokens.device
    draws = torch.rand(tokens.shape[0], generator=generator, device=source).to(tokens.device)  # (B,)
    empty = empty_tokens.to(tokens.device).expand_as(tokens)  # (L,) → (B, L)
    return torch.where((draws < p_uncond)[:, None], empty, tokens)  # (B, 1) broadcast over L
    ### END SOLUTION


def text_guided_output(
    model: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    tokens: torch.Tensor,
    guidance_scale: float,
    empty_tokens: torch.Tensor,
) -> torch.Tensor:
    """Classifier-free guidance with captions: out_∅ + w · (out_c − out_∅) (Ho & Salimans 2022, eq. 6).

    (The paper writes (1 + w) ε_c − w ε_∅: its w is ours minus one, as in §5.3.)

    As :func:`guided_model_output` (§5.3), with the empty caption as the null
    condition: one forward pass of a doubled batch, the images with their
    captions first, then the same images with the empty caption.

    Args:
        model: a text-conditioned denoiser, called as model(x_t, t, tokens).
        x_t: (B, C, H, W) noisy images (or latents).
        t: (B,) int64 timesteps.
        tokens: (B, L) int64 captions.
        guidance_scale: w ≥ 0.
        empty_tokens: (L,) int64, the empty caption's tokens (the same as in training).

    Returns:
        (B, C, H, W) the guided output, in x_t's dtype.
    """
    check_guidance(guidance_scale, tokens, name="tokens")
    ### BEGIN SOLUTION §7.6
    # Double the batch (captions, then the empty caption for the same images and timesteps); one call
    # through call_model; mix the halves.
    empty = empty_tokens.to(tokens.device).expand_as(tokens)  # (B, L)
    both = call_model(model, torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([tokens, empty]))  # (2B, …)
    conditional, unconditional = both.chunk(2)
    return unconditional + guidance_scale * (conditional - unconditional)
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §7.7 The text-conditioned U-Net
# ---------------------------------------------------------------------------


class CaptionSlot(nn.Module):
    """Stands where the U-Net had self-attention: a :class:`SpatialTransformer` fed the current caption (provided).

    Phase 2's U-Net calls its attention modules with the feature map alone; the
    :class:`TextUNet` hands the caption to every slot (:meth:`TextUNet.caption`)
    just before it calls the U-Net, and takes it back just after.
    """

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer
        self.context: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.context is None:
            raise RuntimeError("a CaptionSlot was called without a caption: call the TextUNet, not its unet")
        return self.transformer(x, *self.context)


class CaptionTimeEmbedding(nn.Module):
    """The U-Net's time embedding plus a projection of the caption's pooled vector (provided).

    Replaces the U-Net's ``time_embedding``: every residual block then gets
    time + text_proj(pooled caption), as Stable Diffusion XL adds its pooled text vector.
    """

    def __init__(self, time_embedding: nn.Module, text_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.time_embedding = time_embedding
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.pooled: torch.Tensor | None = None

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.pooled is None:
            raise RuntimeError("the caption's time embedding was called without a caption: call the TextUNet")
        return self.time_embedding(t) + self.text_proj(self.pooled)


class CaptionedUNet(nn.Module):
    """Phase 2's U-Net with the caption in two places (provided).

    Built from a :class:`UNet` (any configuration without classes): every
    self-attention module (the levels in ``attention_levels`` and the middle) is
    replaced by a :class:`CaptionSlot` holding a :class:`SpatialTransformer` of the
    same width, and the time embedding by a :class:`CaptionTimeEmbedding`.
    Module: ``unet``.

    Args:
        text_dim: the width of the caption's vectors.
        cross_heads: heads of the spatial transformers' attention.
        **unet_config: the :class:`UNet`'s arguments.
    """

    def __init__(self, text_dim: int, cross_heads: int, **unet_config) -> None:
        super().__init__()
        self.unet = UNet(**unet_config)
        groups = self.unet.config["groups"]

        def slot(attention_block: nn.Module) -> CaptionSlot:
            width = attention_block.norm.num_channels  # the AttentionBlock's GroupNorm (§2.4 names it norm)
            return CaptionSlot(SpatialTransformer(width, text_dim, cross_heads, groups))

        for level in list(self.unet.encoder) + list(self.unet.decoder):
            for index, module in enumerate(level.attentions):
                if not isinstance(module, nn.Identity):
                    level.attentions[index] = slot(module)
        self.unet.middle_attention = slot(self.unet.middle_attention)
        embed_dim = 4 * self.unet.config["base_channels"]
        self.unet.time_embedding = CaptionTimeEmbedding(self.unet.time_embedding, text_dim, embed_dim)

    @contextlib.contextmanager
    def caption(self, context: torch.Tensor, keep: torch.Tensor, pooled: torch.Tensor) -> Iterator[None]:
        """Hand the caption to every slot of the U-Net for one forward pass."""
        slots = [module for module in self.unet.modules() if isinstance(module, CaptionSlot)]
        time_embedding = self.unet.time_embedding
        for module in slots:
            module.context = (context, keep)
        time_embedding.pooled = pooled
        try:
            yield
        finally:  # the next call must hand its own caption: nothing of this batch stays behind
            for module in slots:
                module.context = None
            time_embedding.pooled = None

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, keep: torch.Tensor, pooled: torch.Tensor
    ) -> torch.Tensor:
        """The U-Net's output for x_t (B, C, H, W) and t (B,), given the caption's vectors (B, L, D),
        its keep mask (B, L) and its pooled vector (B, D)."""
        check_keep_mask(keep, context)
        with self.caption(context, keep, pooled):
            return self.unet(x, t)


class TextUNet(nn.Module):
    """The denoiser ε_θ(x_t, t, caption): a text encoder and a :class:`CaptionedUNet`.

        keep    = keep_mask(tokens)                   (B, L)
        context = text_encoder(tokens, keep)          (B, L, text_dim)
        pooled  = masked_mean(context, keep)          (B, text_dim)
        return unet(x_t, t, context, keep, pooled)

    Modules: ``unet`` (:class:`CaptionedUNet`), ``text_encoder`` (:class:`TextEncoder`);
    buffer ``empty_tokens`` (L,), the empty caption's tokens, which guidance uses as
    its null condition (and which travel with the weights).

    Args:
        vocab_size, max_length: the tokenizer's.
        empty_tokens: the empty caption's L = max_length tokens.
        pad_id: the id of <pad>.
        text_dim, text_heads, text_layers: the text encoder's width, heads and layers.
        cross_heads: heads of the spatial transformers' attention.
        **unet_config: the :class:`UNet`'s arguments (``num_classes`` must be None).
    """

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        empty_tokens: Sequence[int],
        pad_id: int = PAD_ID,
        text_dim: int = DEFAULT_TEXT_CONFIG["text_dim"],
        text_heads: int = DEFAULT_TEXT_CONFIG["text_heads"],
        text_layers: int = DEFAULT_TEXT_CONFIG["text_layers"],
        cross_heads: int = DEFAULT_TEXT_CONFIG["cross_heads"],
        **unet_config,
    ) -> None:
        super().__init__()
        check_text_model_arguments(vocab_size=vocab_size, max_length=max_length, empty_tokens=empty_tokens,
                                   pad_id=pad_id, unet_config=unet_config)
        self.pad_id = pad_id
        self.unet = CaptionedUNet(text_dim, cross_heads, **unet_config)
        self.text_encoder = TextEncoder(vocab_size, max_length, text_dim, text_heads, text_layers)
        self.register_buffer("empty_tokens", torch.tensor(list(empty_tokens), dtype=torch.int64))
        self.config = dict(unet_config, vocab_size=vocab_size, max_length=max_length,
                           empty_tokens=list(empty_tokens), pad_id=pad_id, text_dim=text_dim,
                           text_heads=text_heads, text_layers=text_layers, cross_heads=cross_heads)
        self.num_classes = 0  # no class labels: the caption is the condition

    def check_image_size(self, height: int, width: int) -> None:
        """Raise unless the U-Net can take images of this size."""
        self.unet.unet.check_image_size(height, width)

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Predict the noise (or x̂_0, or v) of noisy images given their captions.

        Args:
            x: (B, in_channels, H, W) noisy images (or latents) x_t.
            t: (B,) timesteps.
            tokens: (B, L) int64 captions, L ≤ max_length.

        Returns:
            (B, out_channels, H, W).
        """
        check_tokens(tokens, self.config["max_length"], batch=x.shape[0], vocab_size=self.config["vocab_size"])
        ### BEGIN SOLUTION §7.7
        # The four lines of the class docstring.
        keep = keep_mask(tokens, self.pad_id)  # (B, L)
        context = self.text_encoder(tokens, keep)  # (B, L, text_dim)
        pooled = masked_mean(context, keep)  # (B, text_dim)
        return self.unet(x, t, context, keep, pooled)  # (B, out_channels, H, W)
        ### END SOLUTION


class TextGuidedModel(nn.Module):
    """A :class:`TextUNet` whose output is the guided one at scale w (provided): model(x_t, t, tokens).

    Any sampler of Phase 4 can then draw guided samples, passing the tokens where
    it passes class labels.
    """

    def __init__(self, model: TextUNet, guidance_scale: float) -> None:
        super().__init__()
        self.model, self.guidance_scale = model, guidance_scale

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return text_guided_output(self.model, x, t, tokens, self.guidance_scale, self.model.empty_tokens)
