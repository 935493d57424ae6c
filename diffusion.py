# ─────────────────────────────────────────────────────────────────────────────
# YOUR FILE. Fill in each TODO (the guide's section is named beside it), then
# check your work with:   make grade PHASE=1
# Maintainers: this file is written by `make stubs` from solutions/diffusion.py;
# edit the solution and regenerate, never this committed copy.
# ─────────────────────────────────────────────────────────────────────────────
"""The diffusion itself: Phase 1 · the forward process (later: Phase 4 samplers, Phase 5 guidance).

The forward process adds Gaussian noise step by step:

    q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I)            (DDPM eq. 2)
    q(x_t | x_0)     = N(√ᾱ_t x_0, (1 − ᾱ_t) I)          (DDPM eq. 4)

so a noisy image at any step can be drawn in one go: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

Conventions (IMPLEMENTATION_GUIDE.md §1.0): images are float tensors in [-1, 1]
of shape (B, C, H, W) (any (B, …) works); timesteps ``t`` are int64 of shape (B,),
0-indexed, one per image. Every random input (the noise ε) is passed in explicitly.

Sections of the guide: §1.5 extract, §1.6 q_sample, §1.7 q_step, §1.8 the v target,
§1.9 converting between ε, x̂_0 and v.
"""

from __future__ import annotations

import torch

from noise_schedule import NoiseSchedule

# ---------------------------------------------------------------------------
# Input validation (provided)
# ---------------------------------------------------------------------------

SIGNED_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8)


def check_timesteps(t: torch.Tensor, num_timesteps: int, batch_size: int) -> None:
    """Raise unless ``t`` is an int64 tensor of shape (batch_size,) with values in [0, T)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor of int64 timesteps, got {type(t).__name__}")
    if t.dtype not in SIGNED_INTEGER_DTYPES:
        # uint8 and bool are excluded on purpose: torch treats them as masks when indexing.
        raise TypeError(
            f"t must hold integer timesteps (torch.int64, or another signed integer dtype), "
            f"got dtype {t.dtype}"
        )
    if t.shape != (batch_size,):
        raise ValueError(
            f"t must have shape (B,) = ({batch_size},), one timestep per image; "
            f"got shape {tuple(t.shape)}"
        )
    if batch_size and (t.min() < 0 or t.max() >= num_timesteps):
        raise ValueError(
            f"t must lie in [0, {num_timesteps - 1}] (0-indexed, T = {num_timesteps}); "
            f"got values from {t.min().item()} to {t.max().item()}"
        )


def check_images(**tensors: torch.Tensor) -> None:
    """Raise unless every keyword is a floating-point tensor of shape (B, …), all of one shape and dtype."""
    shapes, dtypes = {}, {}
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        if value.ndim < 1:
            raise ValueError(f"{name} must have a batch dimension, shape (B, …); got a scalar")
        shapes[name], dtypes[name] = tuple(value.shape), value.dtype
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"these tensors must have the same shape: {listed}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"these tensors must have the same dtype: {listed}")


def _check_inputs(schedule: NoiseSchedule, t: torch.Tensor, **tensors: torch.Tensor) -> None:
    """Validate the images, then their timesteps against the schedule."""
    check_images(**tensors)
    first = next(iter(tensors.values()))
    check_timesteps(t, schedule.num_timesteps, batch_size=first.shape[0])


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
    _check_inputs(schedule, t, x0=x0, noise=noise)
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
    _check_inputs(schedule, t, x_prev=x_prev, noise=noise)
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
    _check_inputs(schedule, t, x0=x0, noise=noise)
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
    _check_inputs(schedule, t, x_t=x_t, eps=eps)
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
    _check_inputs(schedule, t, x_t=x_t, x0=x0)
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
    _check_inputs(schedule, t, x_t=x_t, v=v)
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
    _check_inputs(schedule, t, x_t=x_t, v=v)
    # TODO §1.9: The other half of the same rotation as x0_from_v.
    raise NotImplementedError("Phase 1.9 · eps_from_v — see IMPLEMENTATION_GUIDE.md §1.9")
