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


# ---------------------------------------------------------------------------
# Sampling (provided for now: the training command and the demo draw samples with it;
# Phase 4 turns these into exercises and adds DDPM)
# ---------------------------------------------------------------------------

PREDICTION_TYPES = ("eps", "x0", "v")
SPACINGS = ("leading", "trailing", "linspace")


def model_predictions(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    schedule: NoiseSchedule,
    prediction: str = "eps",
    clip_x0: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the network's output into (x̂_0, ε̂), whatever it was trained to predict.

    Args:
        model_output: (B, C, H, W) what the network returned for (x_t, t).
        x_t: (B, C, H, W) the noisy images.
        t: (B,) int64 timesteps.
        schedule: the noise schedule.
        prediction: "eps", "x0" or "v".
        clip_x0: clamp x̂_0 to [-1, 1] (the data range) and recompute ε̂ from it.

    Returns:
        x0_hat, eps_hat: both (B, C, H, W).
    """
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTION_TYPES)}; got {prediction!r}")
    if prediction == "eps":
        x0_hat = x0_from_eps(x_t, t, model_output, schedule)
    elif prediction == "x0":
        x0_hat = model_output
    else:
        x0_hat = x0_from_v(x_t, t, model_output, schedule)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1, 1)
    if prediction == "eps" and not clip_x0:
        return x0_hat, model_output
    return x0_hat, eps_from_x0(x_t, t, x0_hat, schedule)


def inference_timesteps(num_timesteps: int, num_steps: int, spacing: str = "trailing") -> torch.Tensor:
    """The N ≤ T timesteps a sampler visits, in descending order (int64, shape (N,)).

    "leading":  0, k, 2k, … (k = T // N), reversed: never visits T − 1.
    "trailing": T − 1, T − 1 − k', … with k' = T / N rounded (Lin et al. 2024): starts at T − 1.
    "linspace": N evenly spaced values from T − 1 down to 0, rounded.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}; got {spacing!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be an int in [1, T = {num_timesteps}]; got {num_steps!r}")
    if spacing == "leading":
        steps = torch.arange(0, num_steps) * (num_timesteps // num_steps)
    elif spacing == "trailing":
        steps = torch.round(torch.arange(num_timesteps, 0, -num_timesteps / num_steps)).long() - 1
    else:
        steps = torch.linspace(0, num_timesteps - 1, num_steps).round()
    return steps.long().unique().flip(0)


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
    """One DDIM step from t to t_prev < t (Song et al. 2021, eq. 12); t_prev = −1 means "to x_0".

        σ = η √((1 − ᾱ_prev) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_prev)
        x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z
    """
    alpha_bar = extract(schedule.alphas_cumprod, t, x_t)
    prev_values = torch.cat([schedule.alphas_cumprod.new_ones(1), schedule.alphas_cumprod])
    alpha_bar_prev = extract(prev_values, t_prev + 1, x_t)  # index shifted: t_prev = −1 gives ᾱ = 1
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps_hat
    x_prev = alpha_bar_prev.sqrt() * x0_hat + direction
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        x_prev = x_prev + sigma * noise
    return x_prev


@torch.no_grad()
def ddim_sample(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    prediction: str = "eps",
    clip_x0: bool = True,
    spacing: str = "trailing",
    generator: torch.Generator | None = None,
    class_labels: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Draw images with DDIM: start from x_T ~ N(0, I), take ``num_steps`` steps down to x_0.

    Random draws (x_T, then one noise per step when η > 0) come from ``generator``
    on its device and are moved to ``device``. Returns (B, C, H, W) in about [-1, 1].
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    device = torch.device(device) if device is not None else schedule.betas.device
    source = generator.device if generator is not None else torch.device("cpu")
    dtype = schedule.betas.dtype
    x = torch.randn(shape, generator=generator, device=source, dtype=dtype).to(device)
    timesteps = inference_timesteps(schedule.num_timesteps, num_steps, spacing)
    pairs = list(zip(timesteps.tolist(), timesteps[1:].tolist() + [-1]))
    iterator = pairs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(pairs, desc="sampling", leave=False)
    for step, previous in iterator:
        t = torch.full((shape[0],), step, dtype=torch.int64, device=device)
        t_prev = torch.full((shape[0],), previous, dtype=torch.int64, device=device)
        output = model(x, t, class_labels) if class_labels is not None else model(x, t)
        x0_hat, eps_hat = model_predictions(output.to(dtype), x, t, schedule, prediction, clip_x0)
        noise = None
        if eta > 0:
            noise = torch.randn(shape, generator=generator, device=source, dtype=dtype).to(device)
        x = ddim_step(x, t, t_prev, x0_hat, eps_hat, schedule, eta, noise)
    return x
