# ─────────────────────────────────────────────────────────────────────────────
# YOUR FILE. Fill in each TODO (the guide's section is named beside it), then
# check your work with:   make grade PHASE=2,5
# Maintainers: this file is written by `make stubs` from solutions/unet.py;
# edit the solution and regenerate, never this committed copy.
# ─────────────────────────────────────────────────────────────────────────────
"""Phase 2 · The U-Net denoiser, built block by block.

The network ε_θ(x_t, t) takes a batch of noisy images and their timesteps and
returns a tensor of the same shape: the predicted noise (or x̂_0, or v — the
training loop of Phase 3 decides what the output means). Its shape follows
Ho et al. (2020, appendix B), itself a PixelCNN++ / Wide-ResNet U-Net:

    x (B, C_in, H, W) ─ stem ─┬─ encoder level 0 ─ down ─ level 1 ─ down ─ … ─ middle ─┐
                              │        │ skips                                        │
                              └────────┴──────────── concatenated into ───────────────┴─ decoder ─ head ─ ε̂ (B, C_out, H, W)

and every residual block receives the timestep through a sinusoidal embedding
(Vaswani et al. 2017, §3.5) lifted by a small MLP.

Module names and their order are part of the exercise: they are listed in
IMPLEMENTATION_GUIDE.md §2.0, and a network that follows them loads the
reference weights with ``load_state_dict(strict=True)``, which is how the
checks compare your blocks with the reference number for number.

Sections of the guide: §2.1 the timestep embedding, §2.2 its MLP, §2.3 the
residual block, §2.4 self-attention, §2.5 down- and upsampling, §2.6 the
U-Net's layout, §2.7 its forward pass.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from provided.choices import DEFAULT_UNET_CONFIG
from provided.validate import (
    check_attention_arguments,
    check_config,
    check_embedding_arguments,
    check_positive_int,
    check_residual_block_arguments,
    check_unet_image_size,
    check_unet_inputs,
)

#: Base of the geometric sequence of frequencies (Vaswani et al. 2017, §3.5).
DEFAULT_MAX_PERIOD = 10_000.0

#: The default configuration, sized for 28×28 digits on two CPU cores
#: (IMPLEMENTATION_GUIDE.md §2.8 explains each choice; tools/benchmarks/bench_unet.py measures it).
DEFAULT_CONFIG = DEFAULT_UNET_CONFIG


# ---------------------------------------------------------------------------
# §2.1–§2.2 The timestep embedding and its MLP
# ---------------------------------------------------------------------------


def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    max_period: float = DEFAULT_MAX_PERIOD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sinusoidal embedding of the timesteps: half sines, then half cosines.

    With h = dim / 2 frequencies ω_i = max_period^(−i / h) for i = 0, …, h − 1
    (Vaswani et al. 2017, §3.5; ω_0 = 1 is the fastest, ω_{h−1} ≈ 1 / max_period
    the slowest):

        embedding(t) = [sin(t ω_0), …, sin(t ω_{h−1}), cos(t ω_0), …, cos(t ω_{h−1})]

    Args:
        t: timesteps, shape (B,), integer or float (fractional t is allowed).
        dim: embedding width, even and ≥ 2.
        max_period: the base of the frequencies.
        dtype: floating dtype to compute in (the model's dtype).

    Returns:
        (B, dim) tensor of dtype ``dtype`` on t's device.
    """
    check_embedding_arguments(t, dim)
    # TODO §2.1: Build the h = dim/2 frequencies ω_i = max_period^(−i/h) in `dtype`, multiply them by t
    #   as a (B, 1) × (1, h) outer product, and concatenate the sines, then the cosines.
    raise NotImplementedError("Phase 2.1 · timestep_embedding — see IMPLEMENTATION_GUIDE.md §2.1")


class TimeEmbedding(nn.Module):
    """The timestep embedding lifted by a two-layer MLP: t ↦ Linear(SiLU(Linear(sinusoids(t)))).

    Modules (in this order): ``linear_1`` (base_dim → embed_dim), ``linear_2``
    (embed_dim → embed_dim). Ho et al. use base_dim = C and embed_dim = 4C.
    """

    def __init__(self, base_dim: int, embed_dim: int) -> None:
        super().__init__()
        check_positive_int(base_dim, "base_dim", minimum=2)
        check_positive_int(embed_dim, "embed_dim")
        self.base_dim = base_dim
        # TODO §2.2: Two nn.Linear layers named linear_1 (base_dim → embed_dim) and linear_2 (embed_dim → embed_dim).
        raise NotImplementedError("Phase 2.2 · TimeEmbedding.__init__ — see IMPLEMENTATION_GUIDE.md §2.2")

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed timesteps.

        Args:
            t: (B,) timesteps.

        Returns:
            (B, embed_dim), in the dtype of the layers' weights.
        """
        # TODO §2.2: timestep_embedding(t, base_dim) in the weights' dtype, then linear_1 → SiLU → linear_2.
        raise NotImplementedError("Phase 2.2 · TimeEmbedding.forward — see IMPLEMENTATION_GUIDE.md §2.2")


# ---------------------------------------------------------------------------
# §2.3 The residual block
# ---------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with the timestep added in between, plus a skip path.

        h = conv1(SiLU(norm1(x)))                          (B, C_out, H, W)
        h = h + embed_proj(SiLU(emb))[:, :, None, None]    the time embedding, one shift per channel
        h = conv2(dropout(SiLU(norm2(h))))
        return h + skip(x)                                 skip: 1×1 conv if C_in ≠ C_out, else identity

    The embedding is *added* (as in Ho et al. 2020), not used as a scale and
    shift (FiLM, Dhariwal & Nichol 2021): one Linear of C_out outputs, simplest to
    check, and as good at this scale.

    Modules (in this order): ``norm1``, ``conv1``, ``embed_proj``, ``norm2``,
    ``dropout``, ``conv2``, ``skip``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, embed_dim: int, groups: int = 8, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_residual_block_arguments(in_channels, out_channels, embed_dim, groups, dropout)
        # TODO §2.3: norm1 = GroupNorm(groups, in_channels); conv1 = 3×3 conv, padding 1, in → out channels;
        #   embed_proj = Linear(embed_dim, out_channels); norm2 = GroupNorm(groups, out_channels);
        #   dropout = nn.Dropout(dropout); conv2 = 3×3 conv, out → out;
        #   skip = 1×1 conv in → out when the channels change, else nn.Identity().
        raise NotImplementedError("Phase 2.3 · ResidualBlock.__init__ — see IMPLEMENTATION_GUIDE.md §2.3")

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (B, C_in, H, W) feature maps.
            emb: (B, embed_dim) time embedding (the output of :class:`TimeEmbedding`).

        Returns:
            (B, C_out, H, W).
        """
        # TODO §2.3: Follow the four lines of the class docstring; the embedding becomes (B, C_out, 1, 1).
        raise NotImplementedError("Phase 2.3 · ResidualBlock.forward — see IMPLEMENTATION_GUIDE.md §2.3")


# ---------------------------------------------------------------------------
# §2.4 Self-attention over the H×W positions
# ---------------------------------------------------------------------------


class AttentionBlock(nn.Module):
    """Multi-head self-attention between the H·W positions of a feature map, with a residual.

        tokens  = norm(x) as (B, N = H·W, C)
        q, k, v = to_qkv(tokens) split in three, each (B, heads, N, d) with d = C / heads
        out     = softmax(q kᵀ / √d over the keys) v          (Vaswani et al. 2017, eq. 1)
        return x + to_out(out merged back to (B, N, C)) as (B, C, H, W)

    Modules (in this order): ``norm`` (GroupNorm), ``to_qkv`` (Linear C → 3C:
    the queries, then the keys, then the values; head h uses channels
    h·d … (h+1)·d − 1 of each), ``to_out`` (Linear C → C).
    """

    def __init__(self, channels: int, num_heads: int = 1, groups: int = 8) -> None:
        super().__init__()
        check_attention_arguments(channels, num_heads, groups)
        self.num_heads = num_heads
        # TODO §2.4: norm = GroupNorm(groups, channels); to_qkv = Linear(channels, 3 * channels);
        #   to_out = Linear(channels, channels).
        raise NotImplementedError("Phase 2.4 · AttentionBlock.__init__ — see IMPLEMENTATION_GUIDE.md §2.4")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend.

        Args:
            x: (B, C, H, W) feature maps.

        Returns:
            (B, C, H, W): x plus the attention output.
        """
        batch, channels, height, width = x.shape
        # TODO §2.4: Normalise, flatten to tokens (B, N, C), project to q, k, v and split the heads;
        #   scale the scores by 1/√d, softmax over the keys (the last axis), weight the values,
        #   merge the heads, project with to_out, restore (B, C, H, W) and add x.
        raise NotImplementedError("Phase 2.4 · AttentionBlock.forward — see IMPLEMENTATION_GUIDE.md §2.4")


# ---------------------------------------------------------------------------
# §2.5 Down- and upsampling
# ---------------------------------------------------------------------------


class Downsample(nn.Module):
    """Halve H and W with a strided 3×3 convolution (stride 2, padding 1). Module: ``conv``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        check_positive_int(channels, "channels")
        # TODO §2.5: conv = 3×3 conv, channels → channels, stride 2, padding 1.
        raise NotImplementedError("Phase 2.5 · Downsample.__init__ — see IMPLEMENTATION_GUIDE.md §2.5")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H/2, W/2) for even H and W."""
        # TODO §2.5: One strided convolution.
        raise NotImplementedError("Phase 2.5 · Downsample.forward — see IMPLEMENTATION_GUIDE.md §2.5")


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour interpolation, then a 3×3 convolution. Module: ``conv``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        check_positive_int(channels, "channels")
        # TODO §2.5: conv = 3×3 conv, channels → channels, padding 1.
        raise NotImplementedError("Phase 2.5 · Upsample.__init__ — see IMPLEMENTATION_GUIDE.md §2.5")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, 2H, 2W)."""
        # TODO §2.5: F.interpolate with scale_factor=2 and mode="nearest" (each pixel becomes a 2×2 block), then conv.
        raise NotImplementedError("Phase 2.5 · Upsample.forward — see IMPLEMENTATION_GUIDE.md §2.5")


# ---------------------------------------------------------------------------
# §5.1 Class conditioning (Phase 5)
# ---------------------------------------------------------------------------


def add_class_embedding(
    time_emb: torch.Tensor,
    class_embedding: nn.Embedding,
    class_labels: torch.Tensor | None,
    num_classes: int,
) -> torch.Tensor:
    """Add a learned class embedding to the time embedding (Phase 5; Ho & Salimans 2022, §3.2).

    The table has K + 1 rows: row c for class c ∈ {0, …, K − 1}, and row K for the
    "null" label ∅ ("no class"), which classifier-free guidance needs for its
    unconditional prediction. The null label must never be a real class.

    Args:
        time_emb: (B, D) the time embedding of the batch.
        class_embedding: ``nn.Embedding(K + 1, D)``.
        class_labels: (B,) int64 labels in [0, K] (K = null), or None: every image gets ∅.
        num_classes: K, the number of real classes.

    Returns:
        (B, D) the embedding every residual block receives.
    """
    # TODO §5.1: None means "no class" for every image: the null label is K, the extra last row.
    raise NotImplementedError("Phase 5.1 · add_class_embedding — see IMPLEMENTATION_GUIDE.md §5.1")


# ---------------------------------------------------------------------------
# §2.6–§2.7 The U-Net
# ---------------------------------------------------------------------------


class Level(nn.Module):
    """One resolution of the encoder or the decoder (provided container, no forward of its own).

    ``blocks[i]`` is a :class:`ResidualBlock`, ``attentions[i]`` the
    :class:`AttentionBlock` that follows it (or ``nn.Identity()`` at levels
    without attention), and ``resample`` the :class:`Downsample` /
    :class:`Upsample` that ends the level, or None where there is none.
    """

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attentions = nn.ModuleList()
        self.resample: nn.Module | None = None


class UNet(nn.Module):
    """The denoiser ε_θ(x_t, t): a U-Net with residual blocks, attention and timestep conditioning.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        out_channels: output channels; None means in_channels.
        base_channels: C, the width of the stem and of level 0; the time
            embedding is 4C wide and its sinusoids C.
        channel_mults: level i has C · channel_mults[i] channels; len(channel_mults)
            levels, each but the last ending in a Downsample (so the image
            side must be divisible by 2^(levels − 1)).
        num_res_blocks: residual blocks per encoder level (the decoder has one more,
            to take the skip of the level's downsample or of the stem).
        attention_levels: indices of the levels with self-attention after each
            residual block (level i works at image_size / 2^i; the middle block
            always has attention).
        num_heads: attention heads.
        dropout: dropout probability inside residual blocks.
        groups: GroupNorm groups; must divide every level's channels.
        num_classes: Phase 5 class conditioning: None/0 for none, else a learned
            embedding of num_classes + 1 rows (the last one is the "no class" label).
        cond_channels: Phase 5 image conditioning: channels of a condition image
            concatenated to x before the stem (0 for none).
    """

    def __init__(
        self,
        in_channels: int = DEFAULT_CONFIG["in_channels"],
        out_channels: int | None = None,
        base_channels: int = DEFAULT_CONFIG["base_channels"],
        channel_mults: Sequence[int] = DEFAULT_CONFIG["channel_mults"],
        num_res_blocks: int = DEFAULT_CONFIG["num_res_blocks"],
        attention_levels: Sequence[int] = DEFAULT_CONFIG["attention_levels"],
        num_heads: int = DEFAULT_CONFIG["num_heads"],
        dropout: float = DEFAULT_CONFIG["dropout"],
        groups: int = DEFAULT_CONFIG["groups"],
        num_classes: int | None = None,
        cond_channels: int = 0,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        channel_mults, attention_levels = tuple(channel_mults), tuple(attention_levels)
        self.config = dict(
            in_channels=in_channels, out_channels=out_channels, base_channels=base_channels,
            channel_mults=channel_mults, num_res_blocks=num_res_blocks,
            attention_levels=attention_levels, num_heads=num_heads, dropout=dropout,
            groups=groups, num_classes=num_classes, cond_channels=cond_channels,
        )
        check_config(**self.config)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_levels = len(channel_mults)
        self.num_classes = num_classes or 0
        self.cond_channels = cond_channels
        embed_dim = 4 * base_channels
        # Phase 5 conditioning (provided; off by default): one extra row is the "no class" label.
        self.class_embedding = nn.Embedding(self.num_classes + 1, embed_dim) if self.num_classes else None
        # TODO §2.6: Create, in this order (names and channels in the guide, §2.6):
        #   time_embedding = TimeEmbedding(C, 4C); stem = 3×3 conv (in_channels + cond_channels) → C;
        #   encoder = ModuleList of Levels: num_res_blocks ResidualBlocks each (+ attention at
        #   attention_levels, else nn.Identity()), a Downsample on all levels but the last;
        #   middle_block1, middle_attention, middle_block2 at the last level's width;
        #   decoder = ModuleList of Levels, deepest first: num_res_blocks + 1 ResidualBlocks whose
        #   inputs are the running channels plus the popped skip's, an Upsample on all but level 0;
        #   head_norm = GroupNorm, head_conv = 3×3 conv C → out_channels with zero weights and bias.
        raise NotImplementedError("Phase 2.6 · UNet.__init__ — see IMPLEMENTATION_GUIDE.md §2.6")

    # -- provided helpers -------------------------------------------------------------

    def check_image_size(self, height: int, width: int) -> None:
        """Raise unless ``levels`` − 1 halvings of (height, width) stay whole numbers."""
        check_unet_image_size(height, width, self.config["channel_mults"])

    def embed(self, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The (B, 4C) embedding every residual block receives: time, plus the class if any."""
        emb = self.time_embedding(t)
        if self.class_embedding is not None:  # Phase 5: a class-conditional U-Net
            emb = add_class_embedding(emb, self.class_embedding, class_labels, self.num_classes)
        return emb

    # -- the forward pass -------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise (or x̂_0, or v) of a batch of noisy images.

        Args:
            x: (B, in_channels, H, W) noisy images x_t.
            t: (B,) their timesteps.
            class_labels: (B,) int64 labels in [0, num_classes] (num_classes = no class),
                only for a class-conditional UNet; None means "no class".
            cond: (B, cond_channels, H, W) condition images, only when cond_channels > 0.

        Returns:
            (B, out_channels, H, W).
        """
        check_unet_inputs(self, x, t, class_labels, cond)
        emb = self.embed(t, class_labels)  # (B, 4C)
        if cond is not None:
            x = torch.cat([x, cond], dim=1)  # (B, in_channels + cond_channels, H, W)
        # TODO §2.7: stem, and keep its output as the first skip; encoder: block → attention, keep each output,
        #   downsample and keep that too; middle: block1 → attention → block2; decoder: before each
        #   block concatenate the last kept skip on the channels (pop it), then attention, then the
        #   level's upsample; head: conv(SiLU(norm(h))).
        raise NotImplementedError("Phase 2.7 · UNet.forward — see IMPLEMENTATION_GUIDE.md §2.7")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
