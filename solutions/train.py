"""Phase 3 · Training the denoiser: targets, the loss, one training step, the EMA of the weights.

DDPM training (Ho et al. 2020, Algorithm 1) repeats:

    x_0 ~ data,   t ~ Uniform{0, …, T−1},   ε ~ N(0, I)
    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
    take a gradient step on  ‖ target − model(x_t, t) ‖²

where the target is ε (the paper's choice), x_0, or v = √ᾱ_t ε − √(1 − ᾱ_t) x_0
(Salimans & Ho 2022). The weights used for sampling are an exponential moving
average (EMA) of the trained ones, which averages away the noise of the last steps.

This file holds the exercises (§3.1–§3.4). The training loop and the ``python train.py``
command line are provided in provided/training.py (IMPLEMENTATION_GUIDE.md §3.5); ``python train.py``
runs them.
"""

from __future__ import annotations

import sys

# `python train.py` is the provided training command (`--help` lists its flags). It starts here,
# before this file imports your other files, and reaches the functions below through --impl:
# so `python train.py --impl solutions` runs even while diffusion.py or unet.py does not import.
if __name__ == "__main__":
    from provided.training import main

    sys.exit(main())

import torch  # noqa: E402 (the imports come after the command on purpose, see above)
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from provided.choices import PREDICTION_TYPES  # noqa: E402
from provided.validate import (  # noqa: E402
    check_choice,
    check_ema_decay_arguments,
    check_images,
    check_label_dropout_arguments,
    check_loss_arguments,
    check_min_snr_arguments,
    check_unit_interval,
)

from .diffusion import q_sample, v_target  # noqa: E402
from .noise_schedule import NoiseSchedule  # noqa: E402

# PREDICTION_TYPES ("eps", "x0", "v", from provided/choices.py): what the network is trained to
# output (§3.1); the sampler reads the network's output the same way. The losses of §3.2 are
# LOSS_TYPES there ("l2", "l1", "huber"), checked by check_loss_arguments.
#: Huber's δ: quadratic below, linear above (on data in [-1, 1], targets are O(1)).
HUBER_DELTA = 1.0


# ---------------------------------------------------------------------------
# §3.1 Data range and training targets
# ---------------------------------------------------------------------------


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """Map images from [0, 1] (what torchvision's ToTensor gives) to the model's [-1, 1].

    Args:
        images: float tensor (B, C, H, W) with values in [0, 1].

    Returns:
        The same shape and dtype, values in [-1, 1]: 0 ↦ -1, 0.5 ↦ 0, 1 ↦ 1.
    """
    check_images(images=images)
    ### BEGIN SOLUTION §3.1
    # An affine map: stretch [0, 1] to [0, 2], then shift to [-1, 1].
    return images * 2 - 1
    ### END SOLUTION


def training_target(
    prediction: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """What the network should output for x_t = q_sample(x0, t, noise).

    Args:
        prediction: "eps" (the noise ε), "x0" (the clean images) or "v"
            (√ᾱ_t ε − √(1 − ᾱ_t) x_0, Salimans & Ho 2022, §4).
        x0: (B, C, H, W) clean images in [-1, 1].
        noise: (B, C, H, W) the ε used to make x_t.
        t: (B,) int64 timesteps.
        schedule: the noise schedule.

    Returns:
        (B, C, H, W) target.
    """
    check_choice(prediction, "prediction", PREDICTION_TYPES)
    check_images(x0=x0, noise=noise)
    ### BEGIN SOLUTION §3.1
    # ε: the noise itself; x0: the clean images; v: use v_target from Phase 1.
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    return v_target(x0, t, noise, schedule)
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §3.2 The loss and its per-timestep weights
# ---------------------------------------------------------------------------


def min_snr_weights(t: torch.Tensor, schedule: NoiseSchedule, prediction: str, gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023, §3.3), one per image.

    With SNR_t = ᾱ_t / (1 − ᾱ_t), the weight makes the effective objective an
    x_0-loss weighted by min(SNR_t, γ): easy, almost noise-free steps stop
    dominating. Converted to each prediction type:

        eps: min(SNR_t, γ) / SNR_t      x0: min(SNR_t, γ)      v: min(SNR_t, γ) / (SNR_t + 1)

    Args:
        t: (B,) int64 timesteps.
        schedule: the noise schedule.
        prediction: "eps", "x0" or "v".
        gamma: the clip γ > 0 (5 in the paper).

    Returns:
        (B,) weights in the schedule's dtype.
    """
    check_min_snr_arguments(t, schedule, prediction, gamma)
    ### BEGIN SOLUTION §3.2
    # Look up SNR_t for each image (schedule.snr[t]), clip it at gamma, divide as in the docstring.
    snr = schedule.snr.to(t.device)[t]  # (B,)
    clipped = snr.clamp(max=gamma)
    if prediction == "eps":
        return clipped / snr
    if prediction == "x0":
        return clipped
    return clipped / (snr + 1)
    ### END SOLUTION


def diffusion_loss(
    output: torch.Tensor, target: torch.Tensor, loss_type: str = "l2", weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The training loss: a per-image mean of the per-pixel error, weighted, averaged over the batch.

        loss = (1/B) Σ_b w_b · mean over (C, H, W) of ℓ(output_b − target_b)

    with ℓ(d) = d² (l2), |d| (l1) or Huber's (d²/2 for |d| ≤ δ, δ(|d| − δ/2) above, δ = 1);
    w_b = 1 when ``weights`` is None.

    Args:
        output: (B, C, H, W) the network's output.
        target: (B, C, H, W) what it should have been.
        loss_type: "l2", "l1" or "huber".
        weights: optional (B,) per-image weights (e.g. :func:`min_snr_weights`).

    Returns:
        A scalar tensor (0-dimensional).
    """
    check_loss_arguments(output, target, loss_type, weights)
    ### BEGIN SOLUTION §3.2
    # Per-pixel error (F.mse_loss / F.l1_loss / F.huber_loss with reduction="none"), mean over every
    # dimension but the batch, multiply by the weights if any, then mean over the batch.
    if loss_type == "l2":
        per_pixel = F.mse_loss(output, target, reduction="none")
    elif loss_type == "l1":
        per_pixel = F.l1_loss(output, target, reduction="none")
    else:
        per_pixel = F.huber_loss(output, target, reduction="none", delta=HUBER_DELTA)
    per_image = per_pixel.mean(dim=tuple(range(1, per_pixel.ndim)))  # (B,)
    if weights is not None:
        per_image = per_image * weights.to(per_image.dtype)
    return per_image.mean()
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §3.3 One training step
# ---------------------------------------------------------------------------


def sample_training_inputs(
    x0: torch.Tensor, num_timesteps: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw t ~ Uniform{0, …, T−1} per image, then ε ~ N(0, I) shaped like x0 — in that order.

    Both are drawn on the generator's device (the CPU when ``generator`` is None)
    and then moved to x0's device, so a CPU generator reproduces the same draws
    whatever device trains.

    Args:
        x0: (B, C, H, W) clean images (only their shape, dtype and device are used).
        num_timesteps: T.
        generator: the random source (None: torch's global one).

    Returns:
        t: (B,) int64 on x0's device; noise: like x0.
    """
    check_images(x0=x0)
    source = generator.device if generator is not None else torch.device("cpu")
    ### BEGIN SOLUTION §3.3
    # torch.randint(0, T, (B,)) then torch.randn(x0.shape) with dtype=x0.dtype, both with
    # generator=generator and device=source; move both to x0.device.
    t = torch.randint(0, num_timesteps, (x0.shape[0],), generator=generator, device=source)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=source)
    return t.to(x0.device), noise.to(x0.device)
    ### END SOLUTION


def training_step(
    model: nn.Module,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    prediction: str = "eps",
    loss_type: str = "l2",
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    snr_gamma: float | None = None,
    class_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of one batch (DDPM Algorithm 1, lines 2–5); the caller does backward and the update.

    Args:
        model: the denoiser, called as ``model(x_t, t, class_labels)`` → (B, C, H, W).
        x0: (B, C, H, W) clean images in [-1, 1].
        schedule: the noise schedule (on x0's device, in x0's dtype).
        prediction: what the model outputs: "eps", "x0" or "v".
        loss_type: "l2", "l1" or "huber".
        t, noise: the timesteps (B,) and noise (like x0); when either is None,
            both are drawn with :func:`sample_training_inputs` from ``generator``
            and the given one replaces its draw.
        generator: the random source for t and noise.
        snr_gamma: None for the plain loss, else the γ of :func:`min_snr_weights`.
        class_labels: optional (B,) int64 labels passed to the model.

    Returns:
        The scalar loss, attached to the model's graph.
    """
    check_choice(prediction, "prediction", PREDICTION_TYPES)
    ### BEGIN SOLUTION §3.3
    # Fill in the missing t / noise, make x_t with q_sample, run the model, compute the target,
    # the min-SNR weights if snr_gamma is set, and the loss.
    if t is None or noise is None:
        drawn_t, drawn_noise = sample_training_inputs(x0, schedule.num_timesteps, generator)
        t = drawn_t if t is None else t
        noise = drawn_noise if noise is None else noise
    x_t = q_sample(x0, t, noise, schedule)
    output = model(x_t, t, class_labels)
    target = training_target(prediction, x0, noise, t, schedule)
    weights = None if snr_gamma is None else min_snr_weights(t, schedule, prediction, snr_gamma)
    return diffusion_loss(output, target, loss_type, weights)
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §3.4 The exponential moving average of the weights
# ---------------------------------------------------------------------------


def ema_decay(step: int, max_decay: float = 0.999) -> float:
    """The EMA decay at optimizer step ``step`` (0-based), warmed up: min(max_decay, (1 + step) / (10 + step)).

    Early on the average forgets fast (0.1 at step 0, 0.5 at step 8), so the EMA
    weights are usable after a few hundred steps instead of a few thousand.

    Args:
        step: the number of optimizer steps taken before this update (≥ 0).
        max_decay: the decay it rises to, in [0, 1).

    Returns:
        A float in [0, max_decay].
    """
    check_ema_decay_arguments(step, max_decay)
    ### BEGIN SOLUTION §3.4
    # The smaller of max_decay and (1 + step) / (10 + step).
    return min(max_decay, (1 + step) / (10 + step))
    ### END SOLUTION


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """Move every EMA parameter towards the model's: θ_ema ← decay · θ_ema + (1 − decay) · θ.

    Buffers (e.g. BatchNorm statistics; the U-Net has none) are copied as they are.

    Args:
        ema_model: the averaged copy, updated in place.
        model: the trained model (same architecture).
        decay: in [0, 1]; 0 copies the model, 1 keeps the average unchanged.
    """
    check_unit_interval(decay, "decay")
    ### BEGIN SOLUTION §3.4
    # Walk both models' parameters in step (zip of .parameters()), update in place; copy buffers.
    for averaged, current in zip(ema_model.parameters(), model.parameters()):
        averaged.mul_(decay).add_(current.detach(), alpha=1 - decay)
    for averaged, current in zip(ema_model.buffers(), model.buffers()):
        averaged.copy_(current)
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §5.2 Label dropout for classifier-free guidance (Phase 5)
# ---------------------------------------------------------------------------


def drop_labels(
    class_labels: torch.Tensor,
    p_uncond: float,
    num_classes: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace each label by the null label K with probability p_uncond (Ho & Salimans 2022, Algorithm 1).

    One network then learns both the conditional prediction (label c) and the
    unconditional one (label ∅ = K), which classifier-free guidance mixes at
    sampling time. Only training drops labels; sampling never does.

    Random draws: one ``torch.rand`` of shape (B,) from ``generator``, on the
    generator's device; image i loses its label when its draw is below p_uncond.

    Args:
        class_labels: (B,) int64 labels in [0, K).
        p_uncond: the probability of dropping a label, in [0, 1] (0.1 is usual).
        num_classes: K; the null label is K itself, never a real class.
        generator: the random source.

    Returns:
        (B,) int64 labels in [0, K], on the device of ``class_labels``.
    """
    check_label_dropout_arguments(class_labels, p_uncond)
    ### BEGIN SOLUTION §5.2
    # One uniform draw per image, on the generator's device; those below p_uncond get the null label K.
    source = generator.device if generator is not None else class_labels.device
    draws = torch.rand(class_labels.shape, generator=generator, device=source).to(class_labels.device)  # (B,)
    null = torch.full_like(class_labels, num_classes)
    return torch.where(draws < p_uncond, null, class_labels)
    ### END SOLUTION
