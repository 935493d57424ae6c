# ─────────────────────────────────────────────────────────────────────────────
# YOUR FILE. Fill in each TODO (the guide's section is named beside it), then
# check your work with:   make grade PHASE=6
# Maintainers: this file is written by `make stubs` from solutions/latent.py;
# edit the solution and regenerate, never this committed copy.
# ─────────────────────────────────────────────────────────────────────────────
"""Phase 6 · Latent diffusion: an autoencoder, and diffusion in its latent space.

Rombach et al. (2022, "High-Resolution Image Synthesis with Latent Diffusion
Models") split image generation in two. A first stage, an autoencoder, learns to
compress an image x into a small latent z and back, once:

    encoder:  x (B, 1, 32, 32)  →  mean, log-variance (B, 4, 8, 8)  →  z = mean + σ·ε
    decoder:  z (B, 4, 8, 8)    →  x̂ (B, 1, 32, 32)

Then Phases 3–5 run unchanged on u = (z − shift)·scale, latents rescaled to unit
variance, with the autoencoder frozen: a U-Net on 4×8×8 tensors instead of
1×32×32 images, so every step of training and sampling is cheaper. A sample u is
turned back into an image by z = u/scale + shift and the decoder.

The autoencoder is a variational one with a very small KL weight (the paper's
"KL-reg" first stage): the posterior q(z | x) = N(mean, diag(σ²)) is pulled
slightly towards N(0, I), enough to keep the latent space smooth, not enough to
blur the reconstructions.

Conventions: images in [-1, 1] of shape (B, C, H, W) as in every phase; latents
(B, latent_channels, H/2^(L−1), W/2^(L−1)) for L = len(channels). Every random
input (the ε of the posterior sample) is passed in explicitly.

Sections of the guide: §6.1 the posterior, §6.2 the autoencoder, §6.3 its loss,
§6.4 the latent scale, §6.5 diffusion in the latent space.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from provided.choices import DEFAULT_AUTOENCODER_CONFIG, RECONSTRUCTION_LOSSES  # noqa: F401 (re-exported)
from provided.validate import (
    check_autoencoder_config,
    check_batch,
    check_choice,
    check_images,
    check_latent_statistics,
    check_moments,
    check_nonnegative,
)

from diffusion import sample_loop
from unet import Downsample, ResidualBlock, Upsample

#: The clamp of the log-variance (Rombach et al. 2022, as in their DiagonalGaussianDistribution):
#: σ stays between e^−15 and e^10, so exp() can neither underflow to 0 nor overflow.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
#: ResidualBlock (Phase 2) adds a projection of a time embedding; the autoencoder has no time,
#: so its blocks get an embedding of width 1 that is always 0 (see :meth:`Autoencoder.no_time`).
NO_TIME_DIM = 1


# ---------------------------------------------------------------------------
# §6.1 The posterior q(z | x): a diagonal Gaussian
# ---------------------------------------------------------------------------


def posterior_parameters(moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the encoder's output into the posterior's mean and (clamped) log-variance.

    Args:
        moments: (B, 2·C, h, w): channels 0 … C−1 are the mean, channels C … 2C−1 the
            log-variance log σ².

    Returns:
        mean: (B, C, h, w); logvar: (B, C, h, w), clamped to [LOGVAR_MIN, LOGVAR_MAX].
    """
    check_moments(moments)
    # TODO §6.1: The first half of the channels is the mean, the second the log-variance (torch.chunk on dim 1);
    #   clamp only the log-variance, to [LOGVAR_MIN, LOGVAR_MAX].
    raise NotImplementedError("Phase 6.1 · posterior_parameters — see IMPLEMENTATION_GUIDE.md §6.1")


def posterior_sample(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A draw z ~ N(mean, σ²) by the reparameterisation trick (Kingma & Welling 2014, §2.4).

        z = mean + σ·ε,   σ = exp(logvar / 2),   ε = ``noise`` ~ N(0, I)

    The draw is a differentiable function of mean and logvar, so the encoder learns
    through it. The posterior's *mode* is ``mean`` itself (no function needed).

    Args:
        mean, logvar: (B, C, h, w) from :func:`posterior_parameters`.
        noise: ε, like mean.

    Returns:
        z: (B, C, h, w).
    """
    check_images(mean=mean, logvar=logvar, noise=noise)
    # TODO §6.1: σ = exp(½·logvar): logvar is log σ², not log σ.
    raise NotImplementedError("Phase 6.1 · posterior_sample — see IMPLEMENTATION_GUIDE.md §6.1")


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mean, σ²) ‖ N(0, I) ) of each image, summed over its latent elements.

        KL = ½ Σ_{c,y,x} ( mean² + σ² − 1 − log σ² )       (Kingma & Welling 2014, appendix B)

    One value per image, as Rombach et al.'s posterior returns it: how the loss
    averages it (and so what a KL weight means) is :func:`autoencoder_loss`'s business.

    Args:
        mean, logvar: (B, C, h, w).

    Returns:
        (B,) the KL of each image, in nats.
    """
    check_images(mean=mean, logvar=logvar)
    # TODO §6.1: The bracket element by element, then the sum over every axis but the batch's (dims 1, 2, 3).
    raise NotImplementedError("Phase 6.1 · kl_divergence — see IMPLEMENTATION_GUIDE.md §6.1")


# ---------------------------------------------------------------------------
# §6.2 The autoencoder, built from the Phase 2 blocks
# ---------------------------------------------------------------------------


class Autoencoder(nn.Module):
    """A convolutional variational autoencoder: images ↔ latents with 2^(L−1) times smaller sides.

    With channels = (c_0, …, c_{L−1}) (default (16, 32, 64), L = 3):

        encoder: encoder_stem (3×3 conv, image_channels → c_0)
                 level i = 0 … L−1: encoder_blocks[i] (ResidualBlock c_{i−1} → c_i, c_{−1} = c_0),
                          then downsamples[i] (Downsample c_i) for every level but the last
                 encoder_norm (GroupNorm c_{L−1}), SiLU, encoder_head (3×3 conv, c_{L−1} → 2·latent_channels)
        decoder: decoder_stem (3×3 conv, latent_channels → c_{L−1})
                 level i = L−1 … 0: decoder_blocks[L−1−i] (ResidualBlock c_{i+1} → c_i, c_L = c_{L−1}),
                          then upsamples[L−1−i] (Upsample c_i) for every level but the last (i = 0)
                 decoder_norm (GroupNorm c_0), SiLU, decoder_head (3×3 conv, c_0 → image_channels)

    No attention: at 32×32 the convolutions see enough. The decoder's output is not
    squashed (no tanh): the loss pulls it into [-1, 1], and images are clamped only
    after decoding (§6.5).

    Modules (in this order): ``encoder_stem``, ``encoder_blocks``, ``downsamples``,
    ``encoder_norm``, ``encoder_head``, ``decoder_stem``, ``decoder_blocks``,
    ``upsamples``, ``decoder_norm``, ``decoder_head``.
    """

    def __init__(
        self,
        image_channels: int = 1,
        latent_channels: int = 4,
        channels: Sequence[int] = (16, 32, 64),
        groups: int = 8,
    ) -> None:
        super().__init__()
        channels = tuple(channels)
        check_autoencoder_config(image_channels, latent_channels, channels, groups)
        self.config = dict(image_channels=image_channels, latent_channels=latent_channels, channels=channels,
                           groups=groups)
        # TODO §6.2: Follow the class docstring. Every ResidualBlock is ResidualBlock(c_in, c_out, NO_TIME_DIM, groups);
        #   the lists are nn.ModuleLists (downsamples and upsamples have L − 1 entries each).
        raise NotImplementedError("Phase 6.2 · Autoencoder.__init__ — see IMPLEMENTATION_GUIDE.md §6.2")

    @property
    def downsampling(self) -> int:
        """How many times smaller the latent's height and width are than the image's: 2^(L−1)."""
        return 2 ** (len(self.config["channels"]) - 1)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(latent_channels, h, w) of the latent of a height × width image."""
        return (self.config["latent_channels"], height // self.downsampling, width // self.downsampling)

    def no_time(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding the ResidualBlocks get: (B, NO_TIME_DIM) zeros (SiLU(0) = 0, so each block adds
        only its ``embed_proj`` bias, a constant per channel)."""
        return x.new_zeros(x.shape[0], NO_TIME_DIM)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z | x) of each image.

        Args:
            images: (B, image_channels, H, W) in [-1, 1], H and W multiples of 2^(L−1).

        Returns:
            mean, logvar: (B, latent_channels, H/2^(L−1), W/2^(L−1)) each (from :func:`posterior_parameters`).
        """
        self.check_images(images)
        # TODO §6.2: stem; each level's block (with self.no_time(h)), then its downsample if it has one;
        #   norm, SiLU, head; split with posterior_parameters.
        raise NotImplementedError("Phase 6.2 · Autoencoder.encode — see IMPLEMENTATION_GUIDE.md §6.2")

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images from latents (not clamped: :func:`decode_from_diffusion` clamps).

        Args:
            latents: (B, latent_channels, h, w).

        Returns:
            (B, image_channels, h·2^(L−1), w·2^(L−1)).
        """
        check_batch(latents, "latents")
        # TODO §6.2: stem; each level's block, then its upsample if it has one; norm, SiLU, head.
        raise NotImplementedError("Phase 6.2 · Autoencoder.decode — see IMPLEMENTATION_GUIDE.md §6.2")

    def forward(
        self, images: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, draw z = mean + σ·noise, decode: (reconstructions, mean, logvar), for the loss of §6.3."""
        mean, logvar = self.encode(images)
        return self.decode(posterior_sample(mean, logvar, noise)), mean, logvar

    def check_images(self, images: torch.Tensor) -> None:
        """Raise unless ``images`` is (B, image_channels, H, W) with H and W multiples of 2^(L−1)."""
        check_batch(images)
        if images.shape[1] != self.config["image_channels"]:
            raise ValueError(f"images must have {self.config['image_channels']} channels (the autoencoder's "
                             f"image_channels); got shape {tuple(images.shape)}")
        if images.shape[-1] % self.downsampling or images.shape[-2] % self.downsampling:
            raise ValueError(f"images must have a height and width divisible by {self.downsampling} (the "
                             f"autoencoder halves them {len(self.config['channels']) - 1} times); got "
                             f"{tuple(images.shape[-2:])}")


# ---------------------------------------------------------------------------
# §6.3 The autoencoder's loss
# ---------------------------------------------------------------------------


def autoencoder_loss(
    images: torch.Tensor,
    reconstructions: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    kl_weight: float,
    reconstruction: str = "l1",
) -> torch.Tensor:
    """Reconstruction error plus β times the KL to N(0, I), both as means per element.

        loss = mean over every pixel of |x − x̂| (or (x − x̂)²)
             + β · mean over the batch of KL(image) / (number of latent elements per image)

    Both terms are averages per element, so β means the same whatever the image and
    latent sizes: the KL weight of Rombach et al. (1e-6 on sums over 256×256×3 pixels
    and 32×32×4 latents) is about 2e-8 in this convention.

    Args:
        images, reconstructions: (B, C, H, W).
        mean, logvar: (B, c, h, w) the posterior.
        kl_weight: β ≥ 0.
        reconstruction: "l1" or "l2".

    Returns:
        The scalar loss.
    """
    check_images(images=images, reconstructions=reconstructions)
    check_images(mean=mean, logvar=logvar)
    check_choice(reconstruction, "reconstruction", RECONSTRUCTION_LOSSES)
    check_nonnegative(kl_weight, "kl_weight")
    # TODO §6.3: F.l1_loss or F.mse_loss (their default mean); kl_divergence per image, divided by the
    #   number of latent elements of one image (mean[0].numel()), then averaged over the batch.
    raise NotImplementedError("Phase 6.3 · autoencoder_loss — see IMPLEMENTATION_GUIDE.md §6.3")


# ---------------------------------------------------------------------------
# §6.4 The latent scale: latents of unit variance for the diffusion
# ---------------------------------------------------------------------------


def latent_statistics(
    latents: torch.Tensor, per_channel: bool = False, center: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shift and scale that give the training latents mean 0 and standard deviation 1.

        shift = mean(z)   (0 when center is False: Stable Diffusion's form)
        scale = 1 / std(z)       (torch's default, unbiased std; SD's 0.18215 ≈ 1/5.49)

    Args:
        latents: (N, C, h, w) latents of training images (posterior samples).
        per_channel: one shift and scale per latent channel instead of one for all.
        center: subtract the mean (else the shift is 0).

    Returns:
        shift, scale: shape () or, per channel, (C, 1, 1) — both broadcast against (B, C, h, w).
    """
    check_batch(latents, "latents")
    # TODO §6.4: Reduce over every axis (or, per channel, over every axis but dim 1, keeping (C, 1, 1));
    #   scale is the reciprocal of the std; shift is zeros when center is False.
    raise NotImplementedError("Phase 6.4 · latent_statistics — see IMPLEMENTATION_GUIDE.md §6.4")


def to_diffusion(latents: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Latents → the space the diffusion model works in: u = (z − shift)·scale.

    Args:
        latents: (B, C, h, w).
        shift, scale: from :func:`latent_statistics`.

    Returns:
        u: (B, C, h, w), of unit variance over the training latents.
    """
    check_latent_statistics(latents, shift, scale)
    # TODO §6.4: First the shift, then the scale.
    raise NotImplementedError("Phase 6.4 · to_diffusion — see IMPLEMENTATION_GUIDE.md §6.4")


def from_diffusion(u: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_diffusion`: z = u/scale + shift.

    Args:
        u: (B, C, h, w) in the diffusion model's space.
        shift, scale: the same as :func:`to_diffusion` was given.

    Returns:
        latents: (B, C, h, w) for the decoder.
    """
    check_latent_statistics(u, shift, scale)
    # TODO §6.4: Undo to_diffusion's steps in the opposite order: first divide by the scale, then add the shift.
    raise NotImplementedError("Phase 6.4 · from_diffusion — see IMPLEMENTATION_GUIDE.md §6.4")


# ---------------------------------------------------------------------------
# §6.5 Diffusion in the latent space of a frozen autoencoder
# ---------------------------------------------------------------------------


def freeze(autoencoder: Autoencoder) -> Autoencoder:
    """Make the autoencoder a fixed function for the diffusion model's training; return it.

    Evaluation mode (so nothing in it behaves differently in training) and no
    parameter that wants a gradient (so the optimiser of the U-Net cannot touch it,
    and no graph is built through it).
    """
    # TODO §6.5: nn.Module.eval() and .requires_grad_(False); both return the module.
    raise NotImplementedError("Phase 6.5 · freeze — see IMPLEMENTATION_GUIDE.md §6.5")


def encode_to_diffusion(
    autoencoder: Autoencoder,
    images: torch.Tensor,
    shift: torch.Tensor,
    scale: torch.Tensor,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Images → the diffusion model's training data: u = to_diffusion(z) for z a posterior sample.

    Rombach et al. train on samples z = mean + σ·ε, not on the mean, and draw a fresh
    ε each time an image is used. Without ``noise`` the posterior's mode (the mean) is used.

    Args:
        autoencoder: the (frozen) autoencoder.
        images: (B, image_channels, H, W) in [-1, 1].
        shift, scale: from :func:`latent_statistics`.
        noise: ε, (B, latent_channels, h, w), or None for the mode.

    Returns:
        u: (B, latent_channels, h, w), with no autograd graph.
    """
    # TODO §6.5: Under torch.no_grad(): encode; posterior_sample with the noise (or the mean when noise is None);
    #   to_diffusion.
    raise NotImplementedError("Phase 6.5 · encode_to_diffusion — see IMPLEMENTATION_GUIDE.md §6.5")


def decode_from_diffusion(
    autoencoder: Autoencoder, u: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """The diffusion model's samples → images: decode(from_diffusion(u)), clamped to [-1, 1].

    Args:
        autoencoder: the autoencoder whose latent space u lives in.
        u: (B, latent_channels, h, w).
        shift, scale: the ones the diffusion model was trained with.

    Returns:
        (B, image_channels, H, W) images in [-1, 1], with no autograd graph.
    """
    # TODO §6.5: Under torch.no_grad(): from_diffusion, decode, then clamp the *images* (never the latents).
    raise NotImplementedError("Phase 6.5 · decode_from_diffusion — see IMPLEMENTATION_GUIDE.md §6.5")


def latent_sample(
    model: nn.Module,
    autoencoder: Autoencoder,
    schedule,
    latent_shape: tuple[int, int, int, int],
    shift: torch.Tensor,
    scale: torch.Tensor,
    **sampler_options,
) -> torch.Tensor:
    """Images from a latent diffusion model: Phase 4's sample_loop on latents, then decoding.

    x̂_0 is *not* clamped to [-1, 1] at each step: a unit-variance latent has about a
    third of its values outside [-1, 1] (Rombach et al. never clip latents).

    Args:
        model: the latent denoiser, called as model(u_t, t) or model(u_t, t, class_labels).
        autoencoder: its (frozen) autoencoder.
        schedule: the noise schedule.
        latent_shape: (B, latent_channels, h, w) of the latents to sample.
        shift, scale: the ones the model was trained with.
        **sampler_options: passed on to :func:`sample_loop` (sampler, num_steps, prediction,
            generator, class_labels, guidance_scale, trajectory, …), all but clip_x0.

    Returns:
        (B, image_channels, H, W) images in [-1, 1].
    """
    if "clip_x0" in sampler_options:
        raise TypeError("latent_sample never clips x̂_0 (latents are not in [-1, 1]); do not pass clip_x0")
    # TODO §6.5: sample_loop(model, schedule, latent_shape, clip_x0=False, **sampler_options), then decode_from_diffusion.
    raise NotImplementedError("Phase 6.5 · latent_sample — see IMPLEMENTATION_GUIDE.md §6.5")
