"""Phase 1 checks, part 1: noise schedules and their derived quantities (guide §1.1–§1.4).

Each check calls the implementation under test (``impl``: your files, or the
reference with --impl solutions) and compares it with the reference (``ref``)
on the same inputs. The ``mistakes`` passed to ``check_close`` are the outputs
of classic wrong versions, so that a failure can name the mistake. A schedule
built on another (scaled_linear on linear_betas, the ᾱ-defined ones on
betas_from_alphas_cumprod) gets the reference's while it is checked, so a slip in
one function costs only its own points.
"""

from __future__ import annotations

import math

import pytest
import torch

from grading.checker import check_close
from grading.modules import reference_parts

pytestmark = pytest.mark.phase1

F64 = torch.float64


def using_reference(impl, ref, *names: str):
    """While it lasts, your noise_schedule module calls the reference's functions ``names``."""
    return reference_parts(impl.noise_schedule.module, ref.noise_schedule, names)


def _float32_linspace(start: float, end: float, steps: int) -> torch.Tensor:
    """The classic float32 slip: linspace in its default dtype, cast afterwards."""
    return torch.linspace(start, end, steps).to(F64)


# ---------------------------------------------------------------------------
# §1.1 β-defined schedules
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("1.1", "linear_betas")
@pytest.mark.parametrize("num_timesteps, beta_start, beta_end", [(1000, 1e-4, 0.02), (10, 1e-3, 0.05)], ids=["T=1000", "T=10, custom ends"])
def test_linear_betas(impl, ref, num_timesteps, beta_start, beta_end):
    """linear_betas matches the reference (float64, both ends included)"""
    got = impl.noise_schedule.linear_betas(num_timesteps, beta_start, beta_end)
    check_close(
        got,
        ref.noise_schedule.linear_betas(num_timesteps, beta_start, beta_end),
        function="linear_betas",
        section="1.1",
        inputs={"num_timesteps": num_timesteps, "beta_start": beta_start, "beta_end": beta_end},
        mistakes={"schedule_float32": _float32_linspace(beta_start, beta_end, num_timesteps),
                  "linear_end_excluded": torch.linspace(beta_start, beta_end, num_timesteps + 1, dtype=F64)[:-1]},
    )


@pytest.mark.points(2)
@pytest.mark.exercise("1.1", "scaled_linear_betas")
@pytest.mark.parametrize("num_timesteps", [250, 4000], ids=["T=250", "T=4000"])
def test_scaled_linear_betas(impl, ref, num_timesteps):
    """scaled_linear_betas rescales both ends by 1000 / T"""
    start, end = 1e-4, 0.02
    linear = ref.noise_schedule.linear_betas
    with using_reference(impl, ref, "linear_betas"):
        got = impl.noise_schedule.scaled_linear_betas(num_timesteps, start, end)
    check_close(
        got,
        ref.noise_schedule.scaled_linear_betas(num_timesteps, start, end),
        function="scaled_linear_betas",
        section="1.1",
        inputs={"num_timesteps": num_timesteps},
        mistakes={
            "scaled_linear_not_scaled": linear(num_timesteps, start, end),
            "scaled_linear_inverse_scale": linear(
                num_timesteps, start * num_timesteps / 1000, end * num_timesteps / 1000
            ),
            "scaled_linear_one_end": [linear(num_timesteps, start, end * 1000 / num_timesteps),
                                      linear(num_timesteps, start * 1000 / num_timesteps, end)],
            "schedule_float32": _float32_linspace(
                start * 1000 / num_timesteps, end * 1000 / num_timesteps, num_timesteps
            ),
        },
    )


@pytest.mark.points(2)
@pytest.mark.exercise("1.1", "quadratic_betas")
@pytest.mark.parametrize("num_timesteps", [1000, 20], ids=["T=1000", "T=20"])
def test_quadratic_betas(impl, ref, num_timesteps):
    """quadratic_betas spaces √β linearly and squares"""
    start, end = 1e-4, 0.02
    sqrt_spaced = torch.linspace(math.sqrt(start), math.sqrt(end), num_timesteps, dtype=F64)
    check_close(
        impl.noise_schedule.quadratic_betas(num_timesteps, start, end),
        ref.noise_schedule.quadratic_betas(num_timesteps, start, end),
        function="quadratic_betas",
        section="1.1",
        inputs={"num_timesteps": num_timesteps, "beta_start": start, "beta_end": end},
        mistakes={
            "quadratic_not_squared": sqrt_spaced,
            "quadratic_squares_linear": torch.linspace(start, end, num_timesteps, dtype=F64) ** 2,
            "schedule_float32": _float32_linspace(math.sqrt(start), math.sqrt(end), num_timesteps) ** 2,
        },
    )


# ---------------------------------------------------------------------------
# §1.2 ᾱ-defined schedules
# ---------------------------------------------------------------------------


def _cosine_curve(num_timesteps: int, offset: float = 0.008, power: int = 2):
    tau = torch.arange(num_timesteps + 1, dtype=F64) / num_timesteps
    f = torch.cos((tau + offset) / (1 + offset) * math.pi / 2) ** power
    return f / f[0]


@pytest.mark.points(2)
@pytest.mark.exercise("1.2", "betas_from_alphas_cumprod")
@pytest.mark.parametrize("max_beta", [0.999, 0.5], ids=["max_beta=0.999", "max_beta=0.5"])
def test_betas_from_alphas_cumprod(impl, ref, max_beta):
    """betas_from_alphas_cumprod turns an ᾱ curve into capped betas"""
    curve = _cosine_curve(50)  # its last steps need the cap
    ratios = curve[1:] / curve[:-1]
    check_close(
        impl.noise_schedule.betas_from_alphas_cumprod(curve, max_beta),
        ref.noise_schedule.betas_from_alphas_cumprod(curve, max_beta),
        function="betas_from_alphas_cumprod",
        section="1.2",
        inputs={"alphas_cumprod": curve, "max_beta": max_beta},
        mistakes={
            "max_beta_missing": 1 - ratios,
            "beta_ratio_inverted": (1 - 1 / ratios).clamp(max=max_beta),
            "beta_is_one_minus_alpha_bar": [(1 - curve[1:]).clamp(max=max_beta), (1 - curve[:-1]).clamp(max=max_beta)],
            **({"max_beta_ignored": (1 - ratios).clamp(max=0.999)} if max_beta != 0.999 else {}),
        },
    )


@pytest.mark.points(3)
@pytest.mark.exercise("1.2", "cosine_betas")
@pytest.mark.parametrize("num_timesteps", [1000, 50], ids=["T=1000", "T=50"])
def test_cosine_betas(impl, ref, num_timesteps):
    """cosine_betas follows Nichol & Dhariwal: offset s, cos², normalised, capped"""
    to_betas = ref.noise_schedule.betas_from_alphas_cumprod
    f32_tau = (torch.arange(num_timesteps + 1) / num_timesteps).float()
    f32_curve = torch.cos((f32_tau + 0.008) / 1.008 * math.pi / 2) ** 2
    with using_reference(impl, ref, "betas_from_alphas_cumprod"):
        got = impl.noise_schedule.cosine_betas(num_timesteps)
    check_close(
        got,
        ref.noise_schedule.cosine_betas(num_timesteps),
        function="cosine_betas",
        section="1.2",
        inputs={"num_timesteps": num_timesteps},
        mistakes={
            "cosine_no_offset": to_betas(_cosine_curve(num_timesteps, offset=0.0)),
            "max_beta_missing": to_betas(_cosine_curve(num_timesteps), max_beta=1.0),
            "cosine_not_squared": to_betas(_cosine_curve(num_timesteps, power=1)),
            "alpha_bar_curve_short": to_betas(_cosine_curve(num_timesteps - 1)),
            "schedule_float32": to_betas((f32_curve / f32_curve[0]).to(F64)),
        },
    )


@pytest.mark.points(2)
@pytest.mark.exercise("1.2", "sigmoid_betas")
@pytest.mark.parametrize("num_timesteps, tau", [(1000, 1.0), (100, 0.5)], ids=["T=1000", "T=100, tau=0.5"])
def test_sigmoid_betas(impl, ref, num_timesteps, tau):
    """sigmoid_betas: ᾱ falls along a rescaled sigmoid from 1 to 0"""
    time = torch.arange(num_timesteps + 1, dtype=F64) / num_timesteps
    v_start, v_end = (torch.sigmoid(torch.tensor(v / tau, dtype=F64)) for v in (-3.0, 3.0))
    middle = torch.sigmoid((time * 6.0 - 3.0) / tau)
    rising = (middle - v_start) / (v_end - v_start)
    u_start, u_end = (torch.sigmoid(torch.tensor(v, dtype=F64)) for v in (-3.0, 3.0))  # ends without 1/τ
    to_betas = ref.noise_schedule.betas_from_alphas_cumprod
    with using_reference(impl, ref, "betas_from_alphas_cumprod"):
        got = impl.noise_schedule.sigmoid_betas(num_timesteps, -3.0, 3.0, tau)
    check_close(
        got,
        ref.noise_schedule.sigmoid_betas(num_timesteps, -3.0, 3.0, tau),
        function="sigmoid_betas",
        section="1.2",
        inputs={"num_timesteps": num_timesteps, "start": -3.0, "end": 3.0, "tau": tau},
        mistakes={"sigmoid_not_flipped": to_betas(rising),
                  "sigmoid_not_rescaled": [to_betas(1 - middle), to_betas((1 - middle) / (1 - middle[0]))],
                  **({"sigmoid_ends_not_tempered": to_betas((u_end - middle) / (u_end - u_start))} if tau != 1 else {})},
    )


@pytest.mark.points(2)
@pytest.mark.exercise("1.2", "karras_betas")
@pytest.mark.parametrize("num_timesteps, sigma_min, sigma_max", [(1000, 0.002, 80.0), (40, 0.01, 20.0), (2, 0.002, 80.0)],
                         ids=["T=1000", "T=40, custom sigmas", "T=2 (the last β is above 0.999)"])
def test_karras_betas(impl, ref, num_timesteps, sigma_min, sigma_max):
    """karras_betas: σ spaced in σ^(1/ρ), ᾱ = 1 / (1 + σ²), t = 0 least noisy"""
    ramp = torch.linspace(0, 1, num_timesteps, dtype=F64)
    lo, hi = sigma_min ** (1 / 7), sigma_max ** (1 / 7)
    sigmas = (lo + ramp * (hi - lo)) ** 7

    def betas_for(alphas_cumprod, max_beta=1.0):
        one = torch.ones(1, dtype=F64)
        return ref.noise_schedule.betas_from_alphas_cumprod(torch.cat([one, alphas_cumprod]), max_beta)

    linear_sigmas = torch.linspace(sigma_min, sigma_max, num_timesteps, dtype=F64)

    with using_reference(impl, ref, "betas_from_alphas_cumprod"):
        got = impl.noise_schedule.karras_betas(num_timesteps, sigma_min, sigma_max, 7.0)
    check_close(
        got,
        ref.noise_schedule.karras_betas(num_timesteps, sigma_min, sigma_max, 7.0),
        function="karras_betas",
        section="1.2",
        inputs={"num_timesteps": num_timesteps, "sigma_min": sigma_min, "sigma_max": sigma_max},
        mistakes={
            "karras_sigma_not_squared": betas_for(1 / (1 + sigmas)),
            "karras_descending": betas_for(1 / (1 + sigmas.flip(0) ** 2)),
            "karras_rho_ignored": betas_for(1 / (1 + linear_sigmas**2)),
            "karras_capped": betas_for(1 / (1 + sigmas**2), max_beta=0.999),
        },
    )


# ---------------------------------------------------------------------------
# §1.3 Cumulative products and SNR
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cosine_1000(ref):
    """Reference float64 quantities of the cosine schedule with T = 1000."""
    betas = ref.noise_schedule.cosine_betas(1000)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=F64), alphas_cumprod[:-1]])
    return betas, alphas_cumprod, alphas_cumprod_prev


@pytest.mark.points(2)
@pytest.mark.exercise("1.3", "compute_alphas_cumprod")
def test_compute_alphas_cumprod(impl, ref, cosine_1000):
    """compute_alphas_cumprod is the running product of 1 − β"""
    betas = cosine_1000[0]
    check_close(
        impl.noise_schedule.compute_alphas_cumprod(betas),
        ref.noise_schedule.compute_alphas_cumprod(betas),
        function="compute_alphas_cumprod",
        section="1.3",
        inputs={"betas": betas},
        mistakes={
            "alpha_not_cumprod": 1 - betas,
            "cumprod_of_betas": [torch.cumprod(betas, 0), 1 - torch.cumprod(betas, 0)],
            "schedule_float32": torch.cumprod(1 - betas.float(), 0).to(F64),
        },
    )


@pytest.mark.points(2)
@pytest.mark.exercise("1.3", "compute_alphas_cumprod_prev")
def test_compute_alphas_cumprod_prev(impl, ref, cosine_1000):
    """compute_alphas_cumprod_prev shifts ᾱ right with a 1 in front"""
    alphas_cumprod = cosine_1000[1]
    zero = torch.zeros(1, dtype=F64)
    check_close(
        impl.noise_schedule.compute_alphas_cumprod_prev(alphas_cumprod),
        ref.noise_schedule.compute_alphas_cumprod_prev(alphas_cumprod),
        function="compute_alphas_cumprod_prev",
        section="1.3",
        inputs={"alphas_cumprod": alphas_cumprod},
        mistakes={
            "alpha_bar_prev_wraps": torch.roll(alphas_cumprod, 1),
            "alpha_bar_prev_zero": torch.cat([zero, alphas_cumprod[:-1]]),
            "alpha_bar_prev_not_shifted": alphas_cumprod,
            "alpha_bar_prev_wrong_way": [torch.cat([torch.ones(1, dtype=F64), alphas_cumprod[1:]]),
                                         torch.cat([alphas_cumprod[1:], torch.ones(1, dtype=F64)]),
                                         torch.cat([alphas_cumprod[1:], zero])],
        },
    )


@pytest.mark.points(1)
@pytest.mark.exercise("1.3", "compute_snr")
def test_compute_snr(impl, ref, cosine_1000):
    """compute_snr is ᾱ / (1 − ᾱ)"""
    alphas_cumprod = cosine_1000[1]
    check_close(
        impl.noise_schedule.compute_snr(alphas_cumprod),
        ref.noise_schedule.compute_snr(alphas_cumprod),
        function="compute_snr",
        section="1.3",
        inputs={"alphas_cumprod": alphas_cumprod},
        mistakes={
            "snr_inverted": (1 - alphas_cumprod) / alphas_cumprod,
            "snr_sqrt": (alphas_cumprod / (1 - alphas_cumprod)).sqrt(),
            "snr_log": torch.log(alphas_cumprod / (1 - alphas_cumprod)),
        },
    )


# ---------------------------------------------------------------------------
# §1.4 The posterior q(x_{t−1} | x_t, x_0)
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("1.4", "compute_posterior_variance")
def test_compute_posterior_variance(impl, ref, cosine_1000):
    """compute_posterior_variance is β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)"""
    betas, alphas_cumprod, alphas_cumprod_prev = cosine_1000
    check_close(
        impl.noise_schedule.compute_posterior_variance(betas, alphas_cumprod, alphas_cumprod_prev),
        ref.noise_schedule.compute_posterior_variance(betas, alphas_cumprod, alphas_cumprod_prev),
        function="compute_posterior_variance",
        section="1.4",
        inputs={"betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": alphas_cumprod_prev},
        mistakes={"beta_not_beta_tilde": betas,
                  "posterior_variance_inverted": betas * (1 - alphas_cumprod) / (1 - alphas_cumprod_prev)},
    )


@pytest.mark.points(1)
@pytest.mark.exercise("1.4", "compute_posterior_log_variance_clipped")
def test_compute_posterior_log_variance_clipped(impl, ref, cosine_1000):
    """compute_posterior_log_variance_clipped is finite at t = 0 (borrows β̃_1)"""
    betas, alphas_cumprod, alphas_cumprod_prev = cosine_1000
    variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    check_close(
        impl.noise_schedule.compute_posterior_log_variance_clipped(variance),
        ref.noise_schedule.compute_posterior_log_variance_clipped(variance),
        function="compute_posterior_log_variance_clipped",
        section="1.4",
        inputs={"posterior_variance": variance},
        mistakes={"log_variance_not_clipped": torch.log(variance),
                  "log_variance_floored": [torch.log(variance.clamp(min=floor)) for floor in (1e-20, 1e-12, 1e-8)]},
    )


@pytest.mark.points(2)
@pytest.mark.exercise("1.4", "compute_posterior_mean_coefficients")
def test_compute_posterior_mean_coefficients(impl, ref, cosine_1000):
    """compute_posterior_mean_coefficients returns (weight of x_0, weight of x_t)"""
    betas, alphas_cumprod, alphas_cumprod_prev = cosine_1000
    args = (betas, alphas_cumprod, alphas_cumprod_prev)
    got = impl.noise_schedule.compute_posterior_mean_coefficients(*args)
    expected = ref.noise_schedule.compute_posterior_mean_coefficients(*args)
    alphas = 1 - betas
    wrong_prev_1 = alphas_cumprod.sqrt() * betas / (1 - alphas_cumprod)
    wrong_prev_2 = alphas.sqrt() * (1 - alphas_cumprod) / (1 - alphas_cumprod)
    no_sqrt_1 = alphas_cumprod_prev * betas / (1 - alphas_cumprod)
    no_sqrt_2 = alphas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    alpha_bar_for_alpha_2 = alphas_cumprod.sqrt() * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    inputs = {"betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": alphas_cumprod_prev}
    if not (isinstance(got, tuple) and len(got) == 2):
        check_close(got, expected[0], function="compute_posterior_mean_coefficients", section="1.4",
                    inputs=inputs, what="the returned pair (coef1, coef2)")
    for index, name in enumerate(("coef1 (weight of x_0)", "coef2 (weight of x_t)")):
        check_close(
            got[index],
            expected[index],
            function="compute_posterior_mean_coefficients",
            section="1.4",
            inputs=inputs,
            what=name,
            mistakes={
                "posterior_coefficients_swapped": expected[1 - index],
                "posterior_alpha_bar_for_prev": (wrong_prev_1, wrong_prev_2)[index],
                "missing_sqrt": (no_sqrt_1, no_sqrt_2)[index],
                **({"posterior_alpha_bar_for_alpha": alpha_bar_for_alpha_2} if index == 1 else {}),
            },
        )
