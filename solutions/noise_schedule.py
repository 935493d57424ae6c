"""Phase 1 · Noise schedules and every quantity derived from them.

A discrete diffusion with T steps is fully described by its variances
β_0, …, β_{T-1}. Everything else the later phases need (α_t, ᾱ_t, the posterior
coefficients, the signal-to-noise ratio) follows from them, and is collected in
:class:`NoiseSchedule`.

Conventions (IMPLEMENTATION_GUIDE.md §1.0):

* Timesteps are 0-indexed: ``betas[t]`` is the variance added by step t, so our
  ``t`` is the paper's ``t + 1`` (Ho et al. 2020 count from 1).
* Schedules are computed in float64 and only cast to the working dtype at the
  end: a cumulative product over 1000 float32 factors drifts visibly.

Sections of the guide: §1.1 β-defined schedules, §1.2 ᾱ-defined schedules,
§1.3 cumulative products and SNR, §1.4 the posterior q(x_{t-1} | x_t, x_0).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from provided.validate import (
    check_karras_arguments,
    check_num_timesteps,
    check_scaled_linear_arguments,
    check_schedule_arguments,
    check_schedule_name,
    check_sigmoid_arguments,
)

# Default β range of Ho et al. (2020), for T = 1000.
DEFAULT_BETA_START = 1e-4
DEFAULT_BETA_END = 0.02
# Largest β an ᾱ-defined schedule may produce (Nichol & Dhariwal 2021, §3.2).
DEFAULT_MAX_BETA = 0.999


# ---------------------------------------------------------------------------
# §1.1 β-defined schedules
# ---------------------------------------------------------------------------


def linear_betas(
    num_timesteps: int,
    beta_start: float = DEFAULT_BETA_START,
    beta_end: float = DEFAULT_BETA_END,
) -> torch.Tensor:
    """Linear schedule of Ho et al. (2020, §4): β_t evenly spaced from beta_start to beta_end.

    Args:
        num_timesteps: T, the number of diffusion steps (≥ 1).
        beta_start: β_0, the variance of the first step.
        beta_end: β_{T-1}, the variance of the last step.

    Returns:
        betas: float64 tensor of shape (T,).
    """
    check_num_timesteps(num_timesteps)
    ### BEGIN SOLUTION §1.1
    # Space T values evenly from beta_start to beta_end, both ends included.
    # Ask for float64: torch.linspace gives float32 by default.
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    ### END SOLUTION


def scaled_linear_betas(
    num_timesteps: int,
    beta_start: float = DEFAULT_BETA_START,
    beta_end: float = DEFAULT_BETA_END,
) -> torch.Tensor:
    """Linear schedule with its ends rescaled by 1000 / T (Nichol & Dhariwal 2021).

    The β range of Ho et al. was tuned for T = 1000. Scaling both ends by 1000 / T
    keeps ᾱ_{T-1} (how much signal survives the last step) about the same for
    any T: fewer, larger steps.

    Args:
        num_timesteps: T (≥ 1). With T < 1000·beta_end the last β would reach 1: rejected.
        beta_start: β_0 before scaling.
        beta_end: β_{T-1} before scaling.

    Returns:
        betas: float64 tensor of shape (T,).
    """
    check_scaled_linear_arguments(num_timesteps, beta_end)
    ### BEGIN SOLUTION §1.1
    # Multiply both ends by 1000 / T, then space linearly as linear_betas does.
    scale = 1000 / num_timesteps
    return linear_betas(num_timesteps, beta_start * scale, beta_end * scale)
    ### END SOLUTION


def quadratic_betas(
    num_timesteps: int,
    beta_start: float = DEFAULT_BETA_START,
    beta_end: float = DEFAULT_BETA_END,
) -> torch.Tensor:
    """Quadratic schedule: √β_t evenly spaced from √beta_start to √beta_end, then squared.

    (Called "scaled_linear" in some libraries, see the guide's table of names.)

    Args:
        num_timesteps: T (≥ 1).
        beta_start: β_0.
        beta_end: β_{T-1}.

    Returns:
        betas: float64 tensor of shape (T,).
    """
    check_num_timesteps(num_timesteps)
    ### BEGIN SOLUTION §1.1
    # Space the square roots linearly (in float64), then square them.
    sqrt_betas = torch.linspace(
        math.sqrt(beta_start), math.sqrt(beta_end), num_timesteps, dtype=torch.float64
    )
    return sqrt_betas**2
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §1.2 ᾱ-defined schedules
# ---------------------------------------------------------------------------


def betas_from_alphas_cumprod(
    alphas_cumprod: torch.Tensor, max_beta: float = DEFAULT_MAX_BETA
) -> torch.Tensor:
    """Turn a curve ᾱ(i/T), i = 0 … T, into the T betas that follow it.

    Step t takes ᾱ(t/T) to ᾱ((t+1)/T), so α_t = ᾱ((t+1)/T) / ᾱ(t/T) and
    β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), max_beta)   (Nichol & Dhariwal 2021, eq. 17).

    Args:
        alphas_cumprod: float64 tensor of shape (T + 1,): the curve at i/T, starting at ᾱ(0) = 1.
        max_beta: cap on each β_t; keeps the last steps from being pure noise (β = 1).

    Returns:
        betas: float64 tensor of shape (T,).
    """
    ### BEGIN SOLUTION §1.2
    # Ratio of each value to the one before it, then 1 − ratio, capped at max_beta.
    alphas = alphas_cumprod[1:] / alphas_cumprod[:-1]  # (T,)
    return torch.clamp(1 - alphas, max=max_beta)
    ### END SOLUTION


def cosine_betas(
    num_timesteps: int, offset: float = 0.008, max_beta: float = DEFAULT_MAX_BETA
) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021, eq. 17).

    ᾱ(τ) = f(τ) / f(0) with f(τ) = cos²((τ + s) / (1 + s) · π/2), τ = t / T.
    The small offset s keeps β_0 from being vanishingly small.

    Args:
        num_timesteps: T (≥ 1).
        offset: s in the formula (0.008 in the paper).
        max_beta: cap on β_t (0.999 in the paper).

    Returns:
        betas: float64 tensor of shape (T,).
    """
    check_num_timesteps(num_timesteps)
    ### BEGIN SOLUTION §1.2
    # Evaluate f at τ = i / T for i = 0 … T, divide by f(0), convert to betas.
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps  # (T + 1,)
    f = torch.cos((tau + offset) / (1 + offset) * math.pi / 2) ** 2
    return betas_from_alphas_cumprod(f / f[0], max_beta)
    ### END SOLUTION


def sigmoid_betas(
    num_timesteps: int,
    start: float = -3.0,
    end: float = 3.0,
    tau: float = 1.0,
    max_beta: float = DEFAULT_MAX_BETA,
) -> torch.Tensor:
    """Sigmoid schedule of Jabri et al. (2023) and Chen (2023): ᾱ follows a rescaled sigmoid.

    ᾱ(τ) = (σ(end/tau) − σ((τ·(end − start) + start)/tau)) / (σ(end/tau) − σ(start/tau)),
    τ = t / T, with σ the logistic function. ᾱ(0) = 1 and ᾱ(1) = 0 exactly.

    Args:
        num_timesteps: T (≥ 1).
        start: left end of the sigmoid's input range.
        end: right end of the sigmoid's input range (end > start).
        tau: temperature; larger values make the curve closer to linear in τ.
        max_beta: cap on β_t.

    Returns:
        betas: float64 tensor of shape (T,).
    """
    check_sigmoid_arguments(num_timesteps, start, end, tau)
    ### BEGIN SOLUTION §1.2
    # Evaluate the sigmoid at τ = i / T, flip and rescale it so that it falls from 1 to 0.
    time = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps  # (T + 1,)
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    curve = torch.sigmoid((time * (end - start) + start) / tau)
    alphas_cumprod = (v_end - curve) / (v_end - v_start)
    return betas_from_alphas_cumprod(alphas_cumprod, max_beta)
    ### END SOLUTION


def karras_betas(
    num_timesteps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
) -> torch.Tensor:
    """Betas whose noise levels follow Karras et al. (2022, eq. 5).

    The σ levels (noise-to-signal ratios) are spaced evenly in σ^(1/ρ):
    σ_t = (σ_min^(1/ρ) + t/(T−1) · (σ_max^(1/ρ) − σ_min^(1/ρ)))^ρ, for t = 0 … T−1,
    so that t = 0 is the least noisy. A variance-preserving diffusion with noise
    level σ has ᾱ_t = 1 / (1 + σ_t²); the betas follow from β_t = 1 − ᾱ_t / ᾱ_{t−1}
    with ᾱ_{−1} = 1. (Karras et al. list σ from largest to smallest; we index the
    other way round, like every other schedule here.)

    Args:
        num_timesteps: T (≥ 2: the formula divides by T − 1).
        sigma_min: smallest noise level σ_0 (> 0).
        sigma_max: largest noise level σ_{T−1} (> sigma_min).
        rho: the spacing exponent ρ (7 in the paper).

    Returns:
        betas: float64 tensor of shape (T,).
    """
    check_karras_arguments(num_timesteps, sigma_min, sigma_max)
    ### BEGIN SOLUTION §1.2
    # σ levels from smallest to largest, ᾱ = 1 / (1 + σ²) with ᾱ(0) = 1 in front, then betas.
    # (No cap: these betas are already below 1.)
    ramp = torch.linspace(0, 1, num_timesteps, dtype=torch.float64)  # (T,)
    inv_rho_min, inv_rho_max = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (inv_rho_min + ramp * (inv_rho_max - inv_rho_min)) ** rho
    alphas_cumprod = 1 / (1 + sigmas**2)
    one = torch.ones(1, dtype=torch.float64)
    return betas_from_alphas_cumprod(torch.cat([one, alphas_cumprod]), max_beta=1.0)
    ### END SOLUTION


#: Every schedule by name. The guide's table maps other libraries' names onto these.
SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "quadratic": quadratic_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
    "karras": karras_betas,
}


def make_betas(name: str, num_timesteps: int, **kwargs) -> torch.Tensor:
    """Betas of the schedule called ``name`` (a key of :data:`SCHEDULES`).

    Args:
        name: schedule name, e.g. "linear" or "cosine".
        num_timesteps: T.
        **kwargs: the schedule's own parameters (e.g. ``offset`` for cosine).

    Returns:
        betas: float64 tensor of shape (T,).
    """
    check_schedule_name(name, SCHEDULES)
    return SCHEDULES[name](num_timesteps, **kwargs)


# ---------------------------------------------------------------------------
# §1.3 Cumulative products and the signal-to-noise ratio
# ---------------------------------------------------------------------------


def compute_alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s), the share of signal variance left after step t (DDPM eq. 4).

    Args:
        betas: tensor of shape (T,).

    Returns:
        alphas_cumprod: tensor of shape (T,), same dtype as ``betas``.
    """
    ### BEGIN SOLUTION §1.3
    # α_t = 1 − β_t; ᾱ_t is their running product up to and including t.
    alphas = 1 - betas
    return torch.cumprod(alphas, dim=0)
    ### END SOLUTION


def compute_alphas_cumprod_prev(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """ᾱ_{t−1} for every t, with ᾱ_{−1} = 1: before the first step the data is clean.

    Args:
        alphas_cumprod: tensor of shape (T,).

    Returns:
        alphas_cumprod_prev: tensor of shape (T,): [1, ᾱ_0, …, ᾱ_{T−2}].
    """
    ### BEGIN SOLUTION §1.3
    # Shift right by one and put a 1 in front (not a wrap-around: no torch.roll).
    one = torch.ones(1, dtype=alphas_cumprod.dtype, device=alphas_cumprod.device)
    return torch.cat([one, alphas_cumprod[:-1]])
    ### END SOLUTION


def compute_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio SNR_t = ᾱ_t / (1 − ᾱ_t) (Kingma et al. 2021, eq. 1).

    Args:
        alphas_cumprod: tensor of shape (T,).

    Returns:
        snr: tensor of shape (T,), decreasing in t.
    """
    ### BEGIN SOLUTION §1.3
    # Signal variance over noise variance of x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.
    return alphas_cumprod / (1 - alphas_cumprod)
    ### END SOLUTION


# ---------------------------------------------------------------------------
# §1.4 The posterior q(x_{t−1} | x_t, x_0)
# ---------------------------------------------------------------------------


def compute_posterior_variance(
    betas: torch.Tensor, alphas_cumprod: torch.Tensor, alphas_cumprod_prev: torch.Tensor
) -> torch.Tensor:
    """β̃_t = β_t · (1 − ᾱ_{t−1}) / (1 − ᾱ_t), the variance of q(x_{t−1} | x_t, x_0) (DDPM eq. 7).

    Args:
        betas: tensor of shape (T,).
        alphas_cumprod: ᾱ_t, shape (T,).
        alphas_cumprod_prev: ᾱ_{t−1}, shape (T,).

    Returns:
        posterior_variance: tensor of shape (T,); β̃_0 = 0 because ᾱ_{−1} = 1.
    """
    ### BEGIN SOLUTION §1.4
    # β̃_t is β_t shrunk by the ratio of the noise variances before and after step t.
    return betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    ### END SOLUTION


def compute_posterior_log_variance_clipped(posterior_variance: torch.Tensor) -> torch.Tensor:
    """log β̃_t with the t = 0 entry replaced by log β̃_1, since log β̃_0 = log 0 = −∞.

    Ho et al.'s implementation does the same; the value at t = 0 is never used to
    add noise (the last reverse step adds none), it only has to be finite.

    Args:
        posterior_variance: β̃_t, shape (T,).

    Returns:
        posterior_log_variance_clipped: tensor of shape (T,), finite everywhere.
    """
    ### BEGIN SOLUTION §1.4
    # Borrow β̃_1 for the first entry. With T = 1 there is no β̃_1: use a tiny positive floor.
    if len(posterior_variance) > 1:
        first = posterior_variance[1:2]
    else:
        first = torch.full_like(posterior_variance, 1e-20)
    return torch.log(torch.cat([first, posterior_variance[1:]]))
    ### END SOLUTION


def compute_posterior_mean_coefficients(
    betas: torch.Tensor, alphas_cumprod: torch.Tensor, alphas_cumprod_prev: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two weights of the posterior mean μ̃_t = coef1 · x_0 + coef2 · x_t (DDPM eq. 7).

    coef1 = √ᾱ_{t−1} · β_t / (1 − ᾱ_t)   (weight of x_0)
    coef2 = √α_t · (1 − ᾱ_{t−1}) / (1 − ᾱ_t)   (weight of x_t)

    Args:
        betas: tensor of shape (T,).
        alphas_cumprod: ᾱ_t, shape (T,).
        alphas_cumprod_prev: ᾱ_{t−1}, shape (T,).

    Returns:
        (coef1, coef2): two tensors of shape (T,).
    """
    ### BEGIN SOLUTION §1.4
    # Both weights share the denominator 1 − ᾱ_t; α_t = 1 − β_t.
    alphas = 1 - betas
    coef1 = torch.sqrt(alphas_cumprod_prev) * betas / (1 - alphas_cumprod)
    coef2 = torch.sqrt(alphas) * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    return coef1, coef2
    ### END SOLUTION


# ---------------------------------------------------------------------------
# The schedule object (provided): computes everything once, in float64
# ---------------------------------------------------------------------------


class NoiseSchedule:
    """Every per-timestep quantity of a discrete diffusion, as tensors of shape (T,).

    Built from betas (for example ``NoiseSchedule.from_name("cosine", 1000)``).
    All quantities are computed in float64 with the §1.3–§1.4 functions and then
    stored in ``dtype`` on ``device``.

    Attributes (each a tensor of shape (T,), indexed by the 0-based timestep t):
        betas: β_t.
        alphas: α_t = 1 − β_t.
        alphas_cumprod: ᾱ_t.
        alphas_cumprod_prev: ᾱ_{t−1}, with 1 at t = 0.
        sqrt_alphas_cumprod: √ᾱ_t.
        sqrt_one_minus_alphas_cumprod: √(1 − ᾱ_t).
        snr: ᾱ_t / (1 − ᾱ_t).
        posterior_variance: β̃_t.
        posterior_log_variance_clipped: log β̃_t, finite at t = 0.
        posterior_mean_coef1: weight of x_0 in μ̃_t.
        posterior_mean_coef2: weight of x_t in μ̃_t.
    """

    #: The tensors a schedule holds, in the order they are computed.
    TENSOR_NAMES = (
        "betas",
        "alphas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "snr",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    )

    def __init__(
        self,
        betas: torch.Tensor,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        name: str | None = None,
    ) -> None:
        betas = check_schedule_arguments(betas, dtype)  # float64, (T,)
        alphas_cumprod = compute_alphas_cumprod(betas)
        alphas_cumprod_prev = compute_alphas_cumprod_prev(alphas_cumprod)
        posterior_variance = compute_posterior_variance(betas, alphas_cumprod, alphas_cumprod_prev)
        coef1, coef2 = compute_posterior_mean_coefficients(
            betas, alphas_cumprod, alphas_cumprod_prev
        )
        float64_values = {
            "betas": betas,
            "alphas": 1 - betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": torch.sqrt(alphas_cumprod),
            "sqrt_one_minus_alphas_cumprod": torch.sqrt(1 - alphas_cumprod),
            "snr": compute_snr(alphas_cumprod),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": compute_posterior_log_variance_clipped(
                posterior_variance
            ),
            "posterior_mean_coef1": coef1,
            "posterior_mean_coef2": coef2,
        }
        self._float64 = float64_values  # kept so that .to() never re-rounds
        self.name = name
        self.dtype = dtype
        self.device = torch.device(device)
        for key in self.TENSOR_NAMES:
            setattr(self, key, float64_values[key].to(device=self.device, dtype=dtype))

    @classmethod
    def from_name(
        cls,
        name: str = "linear",
        num_timesteps: int = 1000,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        **schedule_kwargs,
    ) -> "NoiseSchedule":
        """Build the schedule called ``name`` (see :data:`SCHEDULES`) with T = ``num_timesteps``."""
        betas = make_betas(name, num_timesteps, **schedule_kwargs)
        return cls(betas, dtype=dtype, device=device, name=name)

    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion steps."""
        return len(self.betas)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> "NoiseSchedule":
        """A copy on ``device`` in ``dtype``, cast from the float64 values (no double rounding)."""
        return NoiseSchedule(
            self._float64["betas"],
            dtype=dtype or self.dtype,
            device=device or self.device,
            name=self.name,
        )

    def __repr__(self) -> str:
        name = self.name or "custom"
        return (
            f"NoiseSchedule({name}, T={self.num_timesteps}, dtype={self.dtype}, "
            f"device={self.device})"
        )
