# ─────────────────────────────────────────────────────────────────────────────
# YOUR FILE. Fill in each TODO (the guide's section is named beside it), then
# check your work with:   make grade PHASE=1,4,5
# Maintainers: this file is written by `make stubs` from solutions/diffusion.py;
# edit the solution and regenerate, never this committed copy.
# ─────────────────────────────────────────────────────────────────────────────
"""The diffusion itself: Phase 1 · the forward process; Phase 4 · the reverse process (DDPM, DDIM);
Phase 5 · classifier-free guidance.

The forward process adds Gaussian noise step by step:

    q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I)            (DDPM eq. 2)
    q(x_t | x_0)     = N(√ᾱ_t x_0, (1 − ᾱ_t) I)          (DDPM eq. 4)

so a noisy image at any step can be drawn in one go: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

Conventions (IMPLEMENTATION_GUIDE.md §1.0): images are float tensors in [-1, 1]
of shape (B, C, H, W) (any (B, …) works); timesteps ``t`` are int64 of shape (B,),
0-indexed, one per image. Every random input (the noise ε) is passed in explicitly.

Sections of the guide: §1.5 extract, §1.6 q_sample, §1.7 q_step, §1.8 the v target,
§1.9 converting between ε, x̂_0 and v; §4.1 model predictions, §4.2 ᾱ at t = −1,
§4.3 the posterior, §4.4 the DDPM step, §4.5 the DDIM step, §4.6 inference timesteps,
§4.7 the sampling loop; §5.3 classifier-free guidance; §5.6 inpainting.
"""

from __future__ import annotations

import torch

from provided.choices import PREDICTION_TYPES, VARIANCES
from provided.validate import (
    check_choice,
    check_ddim_noise,
    check_guidance,
    check_images,
    check_inference_arguments,
    check_inputs,
    check_previous_timesteps,
    check_sampling_arguments,
    check_timesteps_or_clean,
)
from provided.trajectory import Trajectory  # noqa: F401 - provided (§4.7): sample_loop records into one

from noise_schedule import NoiseSchedule

# ---------------------------------------------------------------------------
# §1.5 Gathering per-image coefficients
# ---------------------------------------------------------------------------


def extract(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Pick ``values[t[i]]`` for each image i, shaped to broadcast against ``x``.

    Args:
        values: per-timestep quantity of shape (T,), e.g. ``schedule.sqrt_alphas_cumprod``.
        t: int64 timesteps of shape (B,).
        x: the batch the coefficients will multiply, shape (B, C, H, W) (or any (B, …)).

    Returns:
        Tensor of shape (B, 1, 1, 1) (one 1 per non-batch dimension of ``x``),
        with the dtype and device of ``x``.
    """
    # TODO §1.5: Index on x's device, cast to x's dtype, then add singleton dims so it broadcasts.
    raise NotImplementedError("Phase 1.5 · extract — see IMPLEMENTATION_GUIDE.md §1.5")


# ---------------------------------------------------------------------------
# §1.6–§1.7 Sampling from the forward process
# ---------------------------------------------------------------------------


def q_sample(
    x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) in closed form: x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε (DDPM eq. 4).

    Args:
        x0: clean images, shape (B, C, H, W), values in [-1, 1].
        t: int64 timesteps of shape (B,), in [0, T).
        noise: ε ~ N(0, I), same shape as ``x0``.
        schedule: the noise schedule.

    Returns:
        x_t: noisy images, shape (B, C, H, W), dtype of ``x0``.
    """
    check_inputs(schedule, t, x0=x0, noise=noise)
    # TODO §1.6: Gather √ᾱ_t and √(1 − ᾱ_t) per image with extract(), then mix signal and noise.
    raise NotImplementedError("Phase 1.6 · q_sample — see IMPLEMENTATION_GUIDE.md §1.6")


def q_step(
    x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Take one forward step, x_t ~ q(x_t | x_{t−1}) = N(√α_t · x_{t−1}, β_t I) (DDPM eq. 2).

    With 0-indexed timesteps, step t turns the images of step t − 1 into those of
    step t; for t = 0, ``x_prev`` is the clean x_0.

    Args:
        x_prev: images after step t − 1 (x_0 when t = 0), shape (B, C, H, W).
        t: int64 timesteps of shape (B,): which step to take.
        noise: ε ~ N(0, I), same shape as ``x_prev``.
        schedule: the noise schedule.

    Returns:
        x_t: images after step t, shape (B, C, H, W).
    """
    check_inputs(schedule, t, x_prev=x_prev, noise=noise)
    # TODO §1.7: Scale the previous images by √α_t and add noise with standard deviation √β_t.
    raise NotImplementedError("Phase 1.7 · q_step — see IMPLEMENTATION_GUIDE.md §1.7")


# ---------------------------------------------------------------------------
# §1.8–§1.9 The v target and converting between parameterisations
# ---------------------------------------------------------------------------


def v_target(
    x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """The velocity v_t = √ᾱ_t · ε − √(1 − ᾱ_t) · x_0 (Salimans & Ho 2022, §4).

    Args:
        x0: clean images, shape (B, C, H, W).
        t: int64 timesteps of shape (B,).
        noise: the ε used to make x_t, same shape as ``x0``.
        schedule: the noise schedule.

    Returns:
        v: tensor of shape (B, C, H, W).
    """
    check_inputs(schedule, t, x0=x0, noise=noise)
    # TODO §1.8: Same two coefficients as q_sample, in the other roles and with a minus sign.
    raise NotImplementedError("Phase 1.8 · v_target — see IMPLEMENTATION_GUIDE.md §1.8")


def x0_from_eps(
    x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Invert q_sample for x_0: x̂_0 = (x_t − √(1 − ᾱ_t) · ε) / √ᾱ_t (DDPM eq. 15).

    Args:
        x_t: noisy images, shape (B, C, H, W).
        t: int64 timesteps of shape (B,).
        eps: the noise (or a prediction of it), same shape as ``x_t``.
        schedule: the noise schedule.

    Returns:
        x0: tensor of shape (B, C, H, W).
    """
    check_inputs(schedule, t, x_t=x_t, eps=eps)
    # TODO §1.9: Remove the noise part of x_t, then undo the signal scaling.
    raise NotImplementedError("Phase 1.9 · x0_from_eps — see IMPLEMENTATION_GUIDE.md §1.9")


def eps_from_x0(
    x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Invert q_sample for ε: ε̂ = (x_t − √ᾱ_t · x_0) / √(1 − ᾱ_t).

    Args:
        x_t: noisy images, shape (B, C, H, W).
        t: int64 timesteps of shape (B,).
        x0: clean images (or a prediction of them), same shape as ``x_t``.
        schedule: the noise schedule.

    Returns:
        eps: tensor of shape (B, C, H, W).
    """
    check_inputs(schedule, t, x_t=x_t, x0=x0)
    # TODO §1.9: Remove the signal part of x_t, then undo the noise scaling.
    raise NotImplementedError("Phase 1.9 · eps_from_x0 — see IMPLEMENTATION_GUIDE.md §1.9")


def x0_from_v(
    x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """x̂_0 = √ᾱ_t · x_t − √(1 − ᾱ_t) · v (Salimans & Ho 2022, §4).

    Args:
        x_t: noisy images, shape (B, C, H, W).
        t: int64 timesteps of shape (B,).
        v: the velocity (or a prediction of it), same shape as ``x_t``.
        schedule: the noise schedule.

    Returns:
        x0: tensor of shape (B, C, H, W).
    """
    check_inputs(schedule, t, x_t=x_t, v=v)
    # TODO §1.9: (√ᾱ, √(1 − ᾱ)) is a unit vector, so x_t and v are a rotation of (x_0, ε).
    raise NotImplementedError("Phase 1.9 · x0_from_v — see IMPLEMENTATION_GUIDE.md §1.9")


def eps_from_v(
    x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """ε̂ = √(1 − ᾱ_t) · x_t + √ᾱ_t · v (Salimans & Ho 2022, §4).

    Args:
        x_t: noisy images, shape (B, C, H, W).
        t: int64 timesteps of shape (B,).
        v: the velocity (or a prediction of it), same shape as ``x_t``.
        schedule: the noise schedule.

    Returns:
        eps: tensor of shape (B, C, H, W).
    """
    check_inputs(schedule, t, x_t=x_t, v=v)
    # TODO §1.9: The other half of the same rotation as x0_from_v.
    raise NotImplementedError("Phase 1.9 · eps_from_v — see IMPLEMENTATION_GUIDE.md §1.9")


# ===========================================================================
# Phase 4 · The reverse process: DDPM and DDIM sampling (guide §4.1–§4.7)
# ===========================================================================
#
# A sampler starts from pure noise x_T ~ N(0, I) and walks a decreasing list of
# timesteps t_1 > t_2 > … > t_N, ending at t_prev = −1, which stands for "the clean
# image x_0". At each pair (t, t_prev) the network looks at x_t, we turn its output
# into a guess x̂_0 of the clean image (§4.1), and a step rule moves x_t to x_{t_prev}:
# DDPM draws from the posterior q(x_{t_prev} | x_t, x̂_0) (§4.3–§4.4), DDIM follows
# eq. 12 of Song et al. 2021 (§4.5). With t_prev = t − 1 everywhere this is the
# original T-step DDPM; a strided list of N ≪ T steps is what makes DDIM fast.



# ---------------------------------------------------------------------------
# §4.1 From the network's output to x̂_0 and ε̂
# ---------------------------------------------------------------------------


def model_predictions(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    schedule: NoiseSchedule,
    prediction: str = "eps",
    clip_x0: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the network's output into (x̂_0, ε̂), whatever it was trained to predict.

    Both samplers need the predicted clean image x̂_0 and the predicted noise ε̂.
    Clipping clamps x̂_0 to the data range [-1, 1] and then recomputes ε̂ from the
    clipped x̂_0 (DDPM eq. 15 solved for ε), so the two stay consistent with x_t.

    Args:
        model_output: (B, C, H, W) what the network returned for (x_t, t).
        x_t: (B, C, H, W) the noisy images.
        t: (B,) int64 timesteps.
        schedule: the noise schedule.
        prediction: what the network predicts: "eps" (ε), "x0" (x_0) or "v".
        clip_x0: clamp x̂_0 to [-1, 1] and recompute ε̂ from it.

    Returns:
        x0_hat, eps_hat: both (B, C, H, W).
    """
    check_choice(prediction, "prediction", PREDICTION_TYPES)
    check_inputs(schedule, t, model_output=model_output, x_t=x_t)
    # TODO §4.1: Convert with the §1.9 functions: one of the pair is the output itself, the other is derived.
    raise NotImplementedError("Phase 4.1 · model_predictions — see IMPLEMENTATION_GUIDE.md §4.1")


# ---------------------------------------------------------------------------
# §4.2 ᾱ at any timestep of a pair, including t = −1
# ---------------------------------------------------------------------------


def alpha_bar_at(t: torch.Tensor, schedule: NoiseSchedule, x: torch.Tensor) -> torch.Tensor:
    """ᾱ_t for each image, with ᾱ_{−1} = 1 for t = −1 (the clean image: all signal, no noise).

    Args:
        t: (B,) int64 timesteps in [-1, T).
        schedule: the noise schedule.
        x: the (B, C, H, W) batch the values will multiply (sets shape, dtype and device).

    Returns:
        (B, 1, 1, 1) ᾱ values, dtype and device of ``x``.
    """
    check_timesteps_or_clean(t, schedule.num_timesteps, batch_size=x.shape[0])
    # TODO §4.2: values[-1] would wrap around to ᾱ_{T−1} (pure noise!): put ᾱ_{−1} = 1 in front and shift the index.
    raise NotImplementedError("Phase 4.2 · alpha_bar_at — see IMPLEMENTATION_GUIDE.md §4.2")


# ---------------------------------------------------------------------------
# §4.3 The posterior q(x_{t_prev} | x_t, x_0)
# ---------------------------------------------------------------------------


def posterior_mean_variance(
    x0_hat: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_prev: torch.Tensor,
    schedule: NoiseSchedule,
    variance: str = "small",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the reverse step from t to t_prev < t (DDPM eqs. 6–7).

    For the pair, write ᾱ = ᾱ_t, ᾱ' = ᾱ_{t_prev}, α = ᾱ / ᾱ' and β = 1 − α
    (the α and β of the whole jump: for t_prev = t − 1 they are the schedule's α_t and β_t):

        μ̃ = √ᾱ' β / (1 − ᾱ) · x̂_0  +  √α (1 − ᾱ') / (1 − ᾱ) · x_t
        β̃ = β (1 − ᾱ') / (1 − ᾱ)

    The variance is β̃ ("small", the true posterior's) or β ("large"); DDPM §3.2 found
    both sample equally well on T = 1000 steps.

    Args:
        x0_hat: (B, C, H, W) the predicted clean images.
        x_t: (B, C, H, W) the noisy images at t.
        t: (B,) int64 timesteps in [0, T).
        t_prev: (B,) int64 timesteps with −1 ≤ t_prev < t (−1: the step to x_0).
        schedule: the noise schedule.
        variance: "small" (β̃) or "large" (β).

    Returns:
        mean: (B, C, H, W); variance: (B, 1, 1, 1).
    """
    check_choice(variance, "variance", VARIANCES)
    check_inputs(schedule, t, x0_hat=x0_hat, x_t=x_t)
    check_previous_timesteps(t_prev, t)
    # TODO §4.3: The α and β of the jump t → t_prev come from the two ᾱ values, not from schedule.betas[t]
    #   (that is the β of one step, which is only right when t_prev = t − 1).
    raise NotImplementedError("Phase 4.3 · posterior_mean_variance — see IMPLEMENTATION_GUIDE.md §4.3")


# ---------------------------------------------------------------------------
# §4.4 One DDPM step
# ---------------------------------------------------------------------------


def ddpm_step(
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_prev: torch.Tensor,
    x0_hat: torch.Tensor,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    variance: str = "small",
) -> torch.Tensor:
    """One ancestral step x_{t_prev} = μ̃ + σ z, σ² the posterior variance (DDPM Algorithm 2, eq. 11).

    With ε̂ from the network and no clipping, μ̃ equals eq. 11's
    (x_t − β_t / √(1 − ᾱ_t) · ε̂) / √α_t; written through x̂_0 it also works for
    strided pairs and for clipped x̂_0. The last step (t_prev = −1) adds no noise:
    its mean is the sample (Algorithm 2 sets z = 0 at t = 1).

    Args:
        x_t: (B, C, H, W) the noisy images at t.
        t: (B,) int64 timesteps.
        t_prev: (B,) int64 timesteps with −1 ≤ t_prev < t (usually t − 1).
        x0_hat: (B, C, H, W) the predicted clean images (from §4.1).
        schedule: the noise schedule.
        noise: z ~ N(0, I), (B, C, H, W); ignored where t_prev = −1.
        variance: "small" (β̃) or "large" (β).

    Returns:
        x_{t_prev}: (B, C, H, W).
    """
    check_inputs(schedule, t, x_t=x_t, x0_hat=x0_hat, noise=noise)
    # TODO §4.4: Mean and variance from §4.3; the noise is switched off, image by image, where t_prev = −1.
    raise NotImplementedError("Phase 4.4 · ddpm_step — see IMPLEMENTATION_GUIDE.md §4.4")


# ---------------------------------------------------------------------------
# §4.5 One DDIM step
# ---------------------------------------------------------------------------


def ddim_step(
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_prev: torch.Tensor,
    x0_hat: torch.Tensor,
    eps_hat: torch.Tensor,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM step from t to t_prev < t (Song et al. 2021, eqs. 12 and 16).

        σ = η · √((1 − ᾱ') / (1 − ᾱ)) · √(1 − ᾱ / ᾱ')              (eq. 16; ᾱ' = ᾱ_{t_prev})
        x_{t_prev} = √ᾱ' · x̂_0  +  √(1 − ᾱ' − σ²) · ε̂  +  σ · z     (eq. 12)

    η = 0 is deterministic; η = 1 with t_prev = t − 1 is the DDPM step with β̃.
    At t_prev = −1, ᾱ' = 1 and σ = 0, so the step returns x̂_0.

    Args:
        x_t: (B, C, H, W) the noisy images at t.
        t: (B,) int64 timesteps.
        t_prev: (B,) int64 timesteps with −1 ≤ t_prev < t.
        x0_hat, eps_hat: (B, C, H, W) the predictions from §4.1.
        schedule: the noise schedule.
        eta: η in [0, 1].
        noise: z ~ N(0, I), (B, C, H, W); needed when η > 0 (None means zeros).

    Returns:
        x_{t_prev}: (B, C, H, W).
    """
    eta = check_ddim_noise(eta, noise)
    noise = torch.zeros_like(x_t) if noise is None else noise
    check_inputs(schedule, t, x_t=x_t, x0_hat=x0_hat, eps_hat=eps_hat, noise=noise)
    check_previous_timesteps(t_prev, t)
    # TODO §4.5: σ uses the ᾱ values of this pair: √β̃ of the jump t → t_prev, scaled by η (eq. 16).
    raise NotImplementedError("Phase 4.5 · ddim_step — see IMPLEMENTATION_GUIDE.md §4.5")


# ---------------------------------------------------------------------------
# §4.6 Choosing N ≤ T inference timesteps
# ---------------------------------------------------------------------------


def inference_timesteps(num_timesteps: int, num_steps: int, spacing: str = "trailing") -> torch.Tensor:
    """The N ≤ T timesteps a sampler visits, in descending order (DDIM §4.2; Lin et al. 2024, Table 2).

    With T = 1000 and N = 10:
        "leading":  k = T // N; 0, k, 2k, …, (N − 1)k, reversed → 900, 800, …, 0.
                    Never starts at T − 1: the first x_T is treated as if it were less noisy.
        "trailing": T − 1, then down by T / N (rounded) → 999, 899, …, 99.
                    Starts at T − 1 (pure noise) but never visits t = 0.
        "linspace": N evenly spaced values from T − 1 down to 0, rounded → 999, 888, …, 0.
                    Visits both ends.
    Every list is then followed by t_prev = −1: the last step goes to the clean image.

    Args:
        num_timesteps: T.
        num_steps: N, between 1 and T.
        spacing: "leading", "trailing" or "linspace".

    Returns:
        (N,) int64 timesteps in [0, T), strictly decreasing.
    """
    check_inference_arguments(num_timesteps, num_steps, spacing)
    # TODO §4.6: Build each list in ascending order in float64, round to integers, then reverse it.
    raise NotImplementedError("Phase 4.6 · inference_timesteps — see IMPLEMENTATION_GUIDE.md §4.6")


# ---------------------------------------------------------------------------
# §4.7 The sampling loop (provided helpers first)
# ---------------------------------------------------------------------------


def draw_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """N(0, I) of ``shape``, drawn on the generator's device and moved to ``device`` (provided).

    Drawing on the generator's device makes a seed give the same images on any device.
    """
    source = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=source, dtype=dtype).to(device)


def call_model(
    model: torch.nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    guidance_scale: float | None = None,
) -> torch.Tensor:
    """The network's output for (x_t, t) in x_t's dtype (provided).

    With class labels it is conditioned on them; with a guidance scale too, it is the
    classifier-free guided output of :func:`guided_model_output` (Phase 5), the null
    label being ``model.num_classes``.
    """
    if guidance_scale is not None:
        return guided_model_output(model, x_t, t, class_labels, guidance_scale, null_label=model.num_classes)
    parameter = next(model.parameters(), None)
    model_dtype = parameter.dtype if parameter is not None else x_t.dtype
    inputs = (x_t.to(model_dtype), t) if class_labels is None else (x_t.to(model_dtype), t, class_labels)
    return model(*inputs).to(x_t.dtype)


# ---------------------------------------------------------------------------
# §5.3 Classifier-free guidance (Phase 5)
# ---------------------------------------------------------------------------


def guided_model_output(
    model: torch.nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    class_labels: torch.Tensor,
    guidance_scale: float,
    null_label: int,
) -> torch.Tensor:
    """Classifier-free guidance: out = out_∅ + w · (out_c − out_∅) (Ho & Salimans 2022, eq. 6).

    w = 1 is the plain conditional prediction, w = 0 the unconditional one, w > 1
    pushes further towards the class. (The paper writes (1 + w) ε_c − w ε_∅: its w is
    ours minus one.) Both halves come from one forward pass of a doubled batch: the
    images with their labels, then the same images with the null label. Mixing the raw
    outputs is right for every prediction type: ε, x_0 and v are affine in one another
    with the same coefficients for both halves.

    Args:
        model: a class-conditional denoiser, called as model(x_t, t, class_labels).
        x_t: (B, C, H, W) noisy images.
        t: (B,) int64 timesteps.
        class_labels: (B,) int64 labels of the wanted classes.
        guidance_scale: w ≥ 0.
        null_label: the label that means "no class" (the model's num_classes).

    Returns:
        (B, C, H, W) the guided output, in x_t's dtype.
    """
    check_guidance(guidance_scale, class_labels)
    # TODO §5.3: Double the batch: the labels, then the null label for the same images and timesteps; one call.
    raise NotImplementedError("Phase 5.3 · guided_model_output — see IMPLEMENTATION_GUIDE.md §5.3")


def timestep_pairs(timesteps: torch.Tensor) -> list[tuple[int, int]]:
    """[(t_1, t_2), (t_2, t_3), …, (t_N, −1)] for descending timesteps t_1 > … > t_N (provided)."""
    values = timesteps.tolist()
    return list(zip(values, values[1:] + [-1]))


def progress_bar(pairs: list, enabled: bool, description: str):
    """``pairs`` wrapped in a tqdm bar when ``enabled`` (provided)."""
    if not enabled:
        return pairs
    from tqdm.auto import tqdm

    return tqdm(pairs, desc=description, unit="step", leave=False)


@torch.no_grad()
def sample_loop(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    sampler: str = "ddim",
    num_steps: int | None = None,
    eta: float = 0.0,
    variance: str = "small",
    prediction: str = "eps",
    clip_x0: bool = True,
    spacing: str = "trailing",
    generator: torch.Generator | None = None,
    class_labels: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    trajectory: Trajectory | None = None,
    guidance_scale: float | None = None,
) -> torch.Tensor:
    """Generate images: x_T ~ N(0, I), then one DDPM or DDIM step per pair down to x_0.

    The order of random draws is part of the contract (so that a seed gives the
    same images everywhere): first x_T, then, before each step that can add noise
    (every DDPM step, every DDIM step when η > 0), one z of the same shape, all from
    ``generator`` through :func:`draw_noise`. Arithmetic happens in the schedule's dtype.

    Args:
        model: the denoiser, called as model(x_t, t) or model(x_t, t, class_labels).
        schedule: the noise schedule (its dtype is the sampling dtype).
        shape: (B, C, H, W) of the images to make.
        sampler: "ddpm" or "ddim".
        num_steps: N, the number of steps (None: T for DDPM, 50 for DDIM, at most T).
        eta: η of DDIM (ignored by DDPM).
        variance: "small" or "large", DDPM's step variance (ignored by DDIM).
        prediction: what the model predicts: "eps", "x0" or "v".
        clip_x0: clamp x̂_0 to [-1, 1] at each step.
        spacing: how the N timesteps are chosen (§4.6).
        generator: the source of every random draw; None uses torch's global one.
        class_labels: (B,) int64 labels passed to the model, or None.
        device: where to compute (default: the schedule's device).
        progress: show a tqdm progress bar.
        trajectory: a :class:`Trajectory` to record x_t and x̂_0 into, or None.
        guidance_scale: None, or w of classifier-free guidance (Phase 5; needs class_labels).

    Returns:
        x_0: (B, C, H, W) the samples, in about [-1, 1], in the schedule's dtype.
    """
    eta = check_sampling_arguments(sampler, variance, eta, prediction=prediction, shape=shape)
    if num_steps is None:
        num_steps = schedule.num_timesteps if sampler == "ddpm" else min(50, schedule.num_timesteps)
    device = torch.device(device) if device is not None else schedule.betas.device
    schedule = schedule.to(device=device)
    dtype = schedule.betas.dtype
    batch = shape[0]
    # TODO §4.7: x_T first, then the pairs (t, t_prev) from inference_timesteps, ending with t_prev = −1.
    raise NotImplementedError("Phase 4.7 · sample_loop — see IMPLEMENTATION_GUIDE.md §4.7")


def ddpm_sample(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    num_steps: int | None = None,
    variance: str = "small",
    **options,
) -> torch.Tensor:
    """Ancestral DDPM sampling (Algorithm 2) over all T steps, or N of them (provided).

    Keyword ``options`` are those of :func:`sample_loop` (prediction, clip_x0, spacing,
    generator, class_labels, device, progress, trajectory).
    """
    return sample_loop(model, schedule, shape, sampler="ddpm", num_steps=num_steps, variance=variance, **options)


def ddim_sample(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    num_steps: int | None = None,
    eta: float = 0.0,
    **options,
) -> torch.Tensor:
    """DDIM sampling with N steps (None: 50, or T if smaller) and η (0: deterministic) (provided).

    Keyword ``options`` are those of :func:`sample_loop`.
    """
    return sample_loop(model, schedule, shape, sampler="ddim", num_steps=num_steps, eta=eta, **options)


# ---------------------------------------------------------------------------
# §5.6 Inpainting with any trained model (Phase 5; Lugmayr et al. 2022, RePaint)
# ---------------------------------------------------------------------------


def inpaint_combine(
    x_generated: torch.Tensor,
    x0_known: torch.Tensor,
    mask: torch.Tensor,
    t_prev: torch.Tensor,
    noise: torch.Tensor,
    schedule: NoiseSchedule,
) -> torch.Tensor:
    """Replace the known region of a reverse step's output by the original, noised to t_prev.

    RePaint eq. 8: x_{t_prev} = m ⊙ x_{t_prev}^known + (1 − m) ⊙ x_{t_prev}^generated, where
    x^known ~ q(x_{t_prev} | x_0) = √ᾱ' x_0 + √(1 − ᾱ') z is the original at the noise level
    of the rest of the image (and x_0 itself when t_prev = −1, since ᾱ_{−1} = 1).

    Args:
        x_generated: (B, C, H, W) the sampler's x_{t_prev}.
        x0_known: (B, C, H, W) the original images in [-1, 1] (only their known pixels matter).
        mask: (B or 1, 1, H, W) 1 where the pixels are known, 0 where they are generated.
        t_prev: (B,) int64 timesteps in [-1, T).
        noise: z ~ N(0, I), (B, C, H, W).
        schedule: the noise schedule.

    Returns:
        (B, C, H, W) the combined x_{t_prev}.
    """
    check_images(x_generated=x_generated, x0_known=x0_known, noise=noise)
    # TODO §5.6: The known pixels must carry the same noise level as the generated ones: the q_sample formula at
    #   t_prev, with ᾱ from alpha_bar_at (ᾱ = 1 at t_prev = −1, where q_sample itself would refuse).
    raise NotImplementedError("Phase 5.6 · inpaint_combine — see IMPLEMENTATION_GUIDE.md §5.6")


def renoise(
    x_prev: torch.Tensor,
    t_prev: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    schedule: NoiseSchedule,
) -> torch.Tensor:
    """Jump forward from t_prev back up to t > t_prev: x_t ~ q(x_t | x_{t_prev}) (RePaint's resampling).

    Over the pair, α = ᾱ_t / ᾱ_{t_prev} (§4.3), so x_t = √α · x_{t_prev} + √(1 − α) · z.
    Going down and up again lets the generated region harmonise with the known one.

    Args:
        x_prev: (B, C, H, W) images at t_prev.
        t_prev: (B,) int64 timesteps in [-1, T).
        t: (B,) int64 timesteps with t > t_prev.
        noise: z ~ N(0, I), (B, C, H, W).
        schedule: the noise schedule.

    Returns:
        (B, C, H, W) images at t.
    """
    check_inputs(schedule, t, x_prev=x_prev, noise=noise)
    check_previous_timesteps(t_prev, t)
    # TODO §5.6: The forward step of the whole jump: q_step's formula (§1.7), but with the pair's
    #   α = ᾱ_t / ᾱ_{t_prev} from alpha_bar_at instead of one step's schedule.alphas[t].
    raise NotImplementedError("Phase 5.6 · renoise — see IMPLEMENTATION_GUIDE.md §5.6")


def reverse_step(
    sampler: str, x: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, x0_hat: torch.Tensor,
    eps_hat: torch.Tensor, schedule: NoiseSchedule, eta: float, variance: str, noise: torch.Tensor | None,
) -> torch.Tensor:
    """One step of ``sampler`` from t to t_prev (provided; the dispatch of §4.7)."""
    if sampler == "ddpm":
        return ddpm_step(x, t, t_prev, x0_hat, schedule, noise, variance)
    return ddim_step(x, t, t_prev, x0_hat, eps_hat, schedule, eta, noise)


@torch.no_grad()
def inpaint_loop(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    x0_known: torch.Tensor,
    mask: torch.Tensor,
    *,
    sampler: str = "ddim",
    num_steps: int | None = None,
    eta: float = 0.0,
    variance: str = "small",
    prediction: str = "eps",
    clip_x0: bool = True,
    spacing: str = "trailing",
    resample: int = 1,
    generator: torch.Generator | None = None,
    class_labels: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    trajectory: Trajectory | None = None,
) -> torch.Tensor:
    """Fill in the unknown pixels (mask = 0) of ``x0_known`` with any trained model (provided; RePaint).

    The sampling loop of §4.7, with two additions at each pair (t, t_prev): after the step,
    :func:`inpaint_combine` puts the noised original into the known region; and with
    ``resample`` = U > 1 the pair is done U times, going back up with :func:`renoise`
    between tries (RePaint's jumps of length one), which blends the seams.

    Random draws, in order: x_T; then for each try of each pair: the step's z (when it
    adds noise, as in §4.7), the known region's z, and the renoising z (all tries but the last).

    Args:
        model, schedule, sampler, num_steps, eta, variance, prediction, clip_x0, spacing,
        generator, class_labels, guidance_scale, device, progress, trajectory: as in
        :func:`sample_loop`.
        x0_known: (B, C, H, W) the images to complete, in [-1, 1].
        mask: (B or 1, 1, H, W) 1 = known (kept), 0 = to generate.
        resample: U ≥ 1, the tries per pair (1: no resampling).

    Returns:
        (B, C, H, W) the completed images; their known pixels equal ``x0_known``'s.
    """
    eta = check_sampling_arguments(sampler, variance, eta, resample=resample)
    if num_steps is None:
        num_steps = schedule.num_timesteps if sampler == "ddpm" else min(50, schedule.num_timesteps)
    device = torch.device(device) if device is not None else schedule.betas.device
    schedule = schedule.to(device=device)
    dtype = schedule.betas.dtype
    x0_known = x0_known.to(device=device, dtype=dtype)
    mask = mask.to(device=device, dtype=dtype)
    shape, batch = tuple(x0_known.shape), x0_known.shape[0]
    x = draw_noise(shape, generator, dtype, device)
    pairs = timestep_pairs(inference_timesteps(schedule.num_timesteps, num_steps, spacing))
    for step, previous in progress_bar(pairs, progress, f"{sampler} inpainting"):
        t = torch.full((batch,), step, dtype=torch.int64, device=device)
        t_prev = torch.full((batch,), previous, dtype=torch.int64, device=device)
        for attempt in range(resample):
            output = call_model(model, x, t, class_labels, guidance_scale)
            x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction, clip_x0)
            if trajectory is not None and attempt == 0:
                trajectory.record(step, x, x0_hat)
            noise = draw_noise(shape, generator, dtype, device) if sampler == "ddpm" or eta > 0 else None
            x_prev = reverse_step(sampler, x, t, t_prev, x0_hat, eps_hat, schedule, eta, variance, noise)
            x_prev = inpaint_combine(x_prev, x0_known, mask, t_prev, draw_noise(shape, generator, dtype, device),
                                     schedule)
            if attempt < resample - 1:
                x = renoise(x_prev, t_prev, t, draw_noise(shape, generator, dtype, device), schedule)
        x = x_prev
    if trajectory is not None:
        trajectory.finish(x)
    return x
