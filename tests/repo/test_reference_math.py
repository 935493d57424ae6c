"""Checks of the Phase 1 reference (``solutions/``) against independent mathematics.

The phase checks in ``tests/checks/`` compare a learner's code with the reference;
they can only be as right as the reference is. These tests check the reference
itself: every expected value is derived here, from the formulas in the papers,
from analytical identities or from Monte-Carlo estimates, with plain ``math`` /
``torch`` and never by calling the function under test. Where a quantity is
computed in the test with torch, it is computed another way than the reference
does (e.g. ᾱ through ``exp(cumsum(log1p(−β)))`` rather than ``cumprod``).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from solutions import diffusion as df
from solutions import noise_schedule as ns

F64 = torch.float64

#: Every tensor a NoiseSchedule is documented to hold (listed here, not read from the class).
SCHEDULE_TENSORS = (
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

#: Each forward-process function with the names of its two image arguments.
FORWARD_FUNCTIONS = [
    (df.q_sample, "x0", "noise"),
    (df.q_step, "x_prev", "noise"),
    (df.v_target, "x0", "noise"),
    (df.x0_from_eps, "x_t", "eps"),
    (df.eps_from_x0, "x_t", "x0"),
    (df.x0_from_v, "x_t", "v"),
    (df.eps_from_v, "x_t", "v"),
]
FORWARD_IDS = [fn.__name__ for fn, _, _ in FORWARD_FUNCTIONS]


# ---------------------------------------------------------------------------
# Independent helpers
# ---------------------------------------------------------------------------


def log_alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """log ᾱ_t = Σ_{s ≤ t} log(1 − β_s), in float64, by a route other than cumprod."""
    return torch.cumsum(torch.log1p(-betas.to(F64)), dim=0)


def alphas_cumprod_of(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s)."""
    return torch.exp(log_alphas_cumprod(betas))


def one_minus_alphas_cumprod_of(betas: torch.Tensor) -> torch.Tensor:
    """1 − ᾱ_t without cancellation, via −expm1(log ᾱ_t)."""
    return -torch.expm1(log_alphas_cumprod(betas))


def logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def cosine_f(tau: float, s: float = 0.008) -> float:
    """f(τ) = cos²((τ + s)/(1 + s) · π/2) of Nichol & Dhariwal (2021, eq. 17)."""
    return math.cos((tau + s) / (1 + s) * math.pi / 2) ** 2


def chen_sigmoid_alpha_bar(tau: float, start=-3.0, end=3.0, temp=1.0) -> float:
    """ᾱ(τ) of Chen (2023, Algorithm 1, sigmoid_schedule), written out from the paper."""
    v_start = logistic(start / temp)
    v_end = logistic(end / temp)
    output = logistic((tau * (end - start) + start) / temp)
    return (v_end - output) / (v_end - v_start)


def betas_following(alpha_bar_at, num_timesteps: int, max_beta: float = 0.999):
    """β_t = min(1 − ᾱ((t+1)/T)/ᾱ(t/T), max_beta) and whether the cap was hit, as Python lists."""
    raw = [
        1.0 - alpha_bar_at((t + 1) / num_timesteps) / alpha_bar_at(t / num_timesteps)
        for t in range(num_timesteps)
    ]
    return [min(b, max_beta) for b in raw], [b >= max_beta for b in raw]


def uncapped_prefix(capped: list[bool]) -> int:
    """Number of leading steps before the first capped β (ᾱ follows the curve exactly there)."""
    return capped.index(True) if any(capped) else len(capped)


def mean_and_var(samples: torch.Tensor):
    """Per-pixel sample mean and unbiased variance over the batch dimension."""
    return samples.mean(dim=0), samples.var(dim=0, unbiased=True)


def assert_moments(samples, mean, var, n_se: float = 5.0):
    """Sample mean/variance agree with ``mean``/``var`` within ``n_se`` standard errors (Gaussian)."""
    n = samples.shape[0]
    got_mean, got_var = mean_and_var(samples)
    mean = torch.as_tensor(mean, dtype=F64).expand_as(got_mean)
    var = torch.as_tensor(var, dtype=F64).expand_as(got_var)
    se_mean = torch.sqrt(var / n)
    se_var = var * math.sqrt(2.0 / (n - 1))
    assert torch.all((got_mean - mean).abs() <= n_se * se_mean), (got_mean, mean, se_mean)
    assert torch.all((got_var - var).abs() <= n_se * se_var), (got_var, var, se_var)


# ---------------------------------------------------------------------------
# 1. Schedules against their defining formulas
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "T, start, end", [(1000, 1e-4, 0.02), (50, 1e-4, 0.02), (7, 0.003, 0.3), (2, 0.1, 0.2)]
)
def test_linear_matches_ho_et_al(T, start, end):
    betas = ns.linear_betas(T, start, end)
    assert betas.dtype == F64 and betas.shape == (T,)
    assert betas[0].item() == start
    assert betas[-1].item() == end
    step = (end - start) / (T - 1)
    expected = torch.tensor([start + i * step for i in range(T)], dtype=F64)
    torch.testing.assert_close(betas, expected, rtol=1e-12, atol=0)
    diffs = betas[1:] - betas[:-1]
    torch.testing.assert_close(diffs, torch.full_like(diffs, step), rtol=0, atol=1e-15)


def test_scaled_linear_equals_linear_at_1000():
    scaled = ns.scaled_linear_betas(1000)
    assert torch.equal(scaled, ns.linear_betas(1000))
    expected = torch.tensor([1e-4 + i * (0.02 - 1e-4) / 999 for i in range(1000)], dtype=F64)
    torch.testing.assert_close(scaled, expected, rtol=1e-12, atol=0)


def test_scaled_linear_rescales_both_ends():
    T = 250
    scale = 1000 / T  # 4
    start, end = 1e-4 * scale, 0.02 * scale
    betas = ns.scaled_linear_betas(T)
    assert betas.dtype == F64 and betas.shape == (T,)
    expected = torch.tensor([start + i * (end - start) / (T - 1) for i in range(T)], dtype=F64)
    torch.testing.assert_close(betas, expected, rtol=1e-12, atol=0)
    assert betas[0].item() == pytest.approx(4e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.08, rel=1e-12)


def test_scaled_linear_keeps_the_last_step_below_one():
    # The scaled last β is 0.02 · 1000 / T: it reaches 1 at T = 20, is 20/21 at T = 21.
    with pytest.raises(ValueError, match="num_timesteps"):
        ns.scaled_linear_betas(20)
    betas = ns.scaled_linear_betas(21)
    assert betas[-1].item() == pytest.approx(20 / 21, rel=1e-12)


@pytest.mark.parametrize("T, start, end", [(1000, 1e-4, 0.02), (30, 0.01, 0.5)])
def test_quadratic_has_evenly_spaced_square_roots(T, start, end):
    betas = ns.quadratic_betas(T, start, end)
    assert betas.dtype == F64 and betas.shape == (T,)
    roots = torch.sqrt(betas)
    step = (math.sqrt(end) - math.sqrt(start)) / (T - 1)
    diffs = roots[1:] - roots[:-1]
    torch.testing.assert_close(diffs, torch.full_like(diffs, step), rtol=0, atol=1e-14)
    expected = torch.tensor([(math.sqrt(start) + i * step) ** 2 for i in range(T)], dtype=F64)
    torch.testing.assert_close(betas, expected, rtol=1e-12, atol=0)
    # Not simply linear: the β differences themselves grow.
    assert (betas[2:] - 2 * betas[1:-1] + betas[:-2]).min() > 0


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_matches_nichol_dhariwal(T):
    betas = ns.cosine_betas(T)
    assert betas.dtype == F64 and betas.shape == (T,)
    f0 = cosine_f(0.0)
    expected_betas, capped = betas_following(lambda tau: cosine_f(tau) / f0, T)
    torch.testing.assert_close(betas, torch.tensor(expected_betas, dtype=F64), rtol=1e-10, atol=0)
    # Where no cap has acted yet, ᾱ_t (after step t) is exactly f((t+1)/T) / f(0).
    n = uncapped_prefix(capped)
    assert n >= T - 1  # only the very last step can hit the cap
    alpha_bar = alphas_cumprod_of(betas)[:n]
    expected = torch.tensor([cosine_f((t + 1) / T) / f0 for t in range(n)], dtype=F64)
    torch.testing.assert_close(alpha_bar, expected, rtol=1e-10, atol=0)


def test_cosine_last_beta_is_capped_at_0999():
    betas = ns.cosine_betas(1000)
    assert betas[-1].item() == 0.999
    assert betas[:-1].max().item() < 0.999


def test_cosine_offset_sets_the_first_beta():
    # β_0 = 1 − f(1/T)/f(0); with s = 0 it is 1 − cos²(π/(2T)) = sin²(π/(2T)).
    T = 1000
    assert ns.cosine_betas(T, offset=0.0)[0].item() == pytest.approx(
        math.sin(math.pi / (2 * T)) ** 2, rel=1e-9
    )
    assert ns.cosine_betas(T)[0].item() == pytest.approx(
        1 - cosine_f(1 / T) / cosine_f(0.0), rel=1e-9
    )


@pytest.mark.parametrize(
    "T, kwargs",
    [
        (1000, {}),
        (50, {}),
        (200, {"start": 0.0, "end": 3.0, "tau": 0.7}),
        (100, {"start": -3.0, "end": 3.0, "tau": 1.1}),
    ],
)
def test_sigmoid_matches_chen_2023(T, kwargs):
    betas = ns.sigmoid_betas(T, **kwargs)
    assert betas.dtype == F64 and betas.shape == (T,)
    params = {
        "start": kwargs.get("start", -3.0),
        "end": kwargs.get("end", 3.0),
        "temp": kwargs.get("tau", 1.0),
    }
    expected_betas, capped = betas_following(lambda tau: chen_sigmoid_alpha_bar(tau, **params), T)
    torch.testing.assert_close(betas, torch.tensor(expected_betas, dtype=F64), rtol=1e-9, atol=0)
    n = uncapped_prefix(capped)
    assert n >= 1
    alpha_bar = alphas_cumprod_of(betas)[:n]
    expected = torch.tensor(
        [chen_sigmoid_alpha_bar((t + 1) / T, **params) for t in range(n)], dtype=F64
    )
    torch.testing.assert_close(alpha_bar, expected, rtol=1e-9, atol=0)
    # The sigmoid curve ends at ᾱ(1) = 0, so the last step is capped.
    assert betas[-1].item() == 0.999
    assert torch.all(betas[1:] > betas[:-1]), "sigmoid betas must increase"


@pytest.mark.parametrize(
    "T, sigma_min, sigma_max, rho", [(1000, 0.002, 80.0, 7.0), (10, 0.01, 10.0, 3.0)]
)
def test_karras_noise_levels(T, sigma_min, sigma_max, rho):
    kwargs = {} if (sigma_min, sigma_max, rho) == (0.002, 80.0, 7.0) else {
        "sigma_min": sigma_min,
        "sigma_max": sigma_max,
        "rho": rho,
    }
    betas = ns.karras_betas(T, **kwargs)
    assert betas.dtype == F64 and betas.shape == (T,)
    # VP diffusion: σ_t² = (1 − ᾱ_t) / ᾱ_t.
    sigmas = torch.sqrt(one_minus_alphas_cumprod_of(betas) / alphas_cumprod_of(betas))
    assert sigmas[0].item() == pytest.approx(sigma_min, rel=1e-8)
    assert sigmas[-1].item() == pytest.approx(sigma_max, rel=1e-8)
    roots = sigmas ** (1 / rho)
    step = (sigma_max ** (1 / rho) - sigma_min ** (1 / rho)) / (T - 1)
    diffs = roots[1:] - roots[:-1]
    torch.testing.assert_close(diffs, torch.full_like(diffs, step), rtol=1e-7, atol=0)


@pytest.mark.parametrize("T", [1000, 50])
@pytest.mark.parametrize("name", sorted(ns.SCHEDULES))
def test_every_schedule_is_a_valid_diffusion(name, T):
    betas = ns.make_betas(name, T)
    assert betas.dtype == F64
    assert betas.shape == (T,)
    assert torch.all(betas > 0) and torch.all(betas < 1)
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    assert torch.all(alpha_bar[1:] < alpha_bar[:-1]), "ᾱ must be strictly decreasing"
    assert alpha_bar[0].item() < 1


def test_make_betas_dispatches_by_name():
    assert torch.equal(ns.make_betas("cosine", 40, offset=0.02), ns.cosine_betas(40, offset=0.02))
    assert torch.equal(ns.make_betas("quadratic", 40), ns.quadratic_betas(40))
    assert set(ns.SCHEDULES) == {
        "linear",
        "scaled_linear",
        "quadratic",
        "cosine",
        "sigmoid",
        "karras",
    }


# ---------------------------------------------------------------------------
# 2. NoiseSchedule: derived quantities and the Gaussian posterior
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["linear", "cosine", "karras"])
def schedule64(request):
    return ns.NoiseSchedule.from_name(request.param, 1000, dtype=F64)


def test_schedule_derived_quantities(schedule64):
    s = schedule64
    betas = s.betas
    T = 1000
    assert s.num_timesteps == T
    for key in SCHEDULE_TENSORS:
        value = getattr(s, key)
        assert value.shape == (T,) and value.dtype == F64, key
    close = dict(rtol=1e-12, atol=0)
    torch.testing.assert_close(s.alphas, 1 - betas, **close)
    abar = alphas_cumprod_of(betas)
    one_minus = one_minus_alphas_cumprod_of(betas)
    torch.testing.assert_close(s.alphas_cumprod, abar, rtol=1e-11, atol=0)
    assert s.alphas_cumprod_prev[0].item() == 1.0
    assert torch.equal(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])
    torch.testing.assert_close(s.sqrt_alphas_cumprod, torch.sqrt(abar), rtol=1e-11, atol=0)
    torch.testing.assert_close(
        s.sqrt_one_minus_alphas_cumprod, torch.sqrt(one_minus), rtol=1e-9, atol=0
    )
    torch.testing.assert_close(s.snr, abar / one_minus, rtol=1e-9, atol=0)
    # Signal and noise variance always add up to one.
    torch.testing.assert_close(
        s.sqrt_alphas_cumprod**2 + s.sqrt_one_minus_alphas_cumprod**2,
        torch.ones(T, dtype=F64),
        rtol=0,
        atol=1e-14,
    )


def test_posterior_from_bayes_rule(schedule64):
    """Product of N(x_t; √α_t x_{t−1}, β_t) and N(x_{t−1}; √ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}) in x_{t−1}."""
    s = schedule64
    betas = s.betas
    alphas = 1 - betas
    abar_prev = torch.cat([torch.ones(1, dtype=F64), alphas_cumprod_of(betas)[:-1]])
    one_minus_prev = torch.cat([torch.zeros(1, dtype=F64), one_minus_alphas_cumprod_of(betas)[:-1]])
    a, b, ap, omp = alphas[1:], betas[1:], abar_prev[1:], one_minus_prev[1:]
    # Precisions add; the mean is the precision-weighted sum of the two "observations".
    var = 1 / (a / b + 1 / omp)
    coef_xt = var * torch.sqrt(a) / b
    coef_x0 = var * torch.sqrt(ap) / omp
    close = dict(rtol=1e-10, atol=0)
    torch.testing.assert_close(s.posterior_variance[1:], var, **close)
    torch.testing.assert_close(s.posterior_mean_coef2[1:], coef_xt, **close)
    torch.testing.assert_close(s.posterior_mean_coef1[1:], coef_x0, **close)
    # t = 0: ᾱ_{−1} = 1, so x_{−1} = x_0 exactly: variance 0, mean x_0.
    assert s.posterior_variance[0].item() == 0.0
    assert s.posterior_mean_coef1[0].item() == pytest.approx(1.0, rel=1e-10)
    assert s.posterior_mean_coef2[0].item() == 0.0


def test_posterior_is_consistent_with_the_marginals(schedule64):
    """Tower rules: E[μ̃ | x_0] = √ᾱ_{t−1} x_0 and β̃ + coef2²(1 − ᾱ_t) = 1 − ᾱ_{t−1}."""
    s = schedule64
    abar = alphas_cumprod_of(s.betas)
    one_minus = one_minus_alphas_cumprod_of(s.betas)
    abar_prev = torch.cat([torch.ones(1, dtype=F64), abar[:-1]])
    one_minus_prev = torch.cat([torch.zeros(1, dtype=F64), one_minus[:-1]])
    c1, c2 = s.posterior_mean_coef1, s.posterior_mean_coef2
    torch.testing.assert_close(
        c1 + c2 * torch.sqrt(abar), torch.sqrt(abar_prev), rtol=1e-10, atol=1e-13
    )
    torch.testing.assert_close(
        s.posterior_variance + c2**2 * one_minus, one_minus_prev, rtol=1e-9, atol=1e-13
    )


def test_posterior_log_variance_clipped(schedule64):
    s = schedule64
    betas = s.betas
    one_minus = one_minus_alphas_cumprod_of(betas)
    # β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), in logs, for t ≥ 1.
    log_var = torch.log(betas[1:]) + torch.log(one_minus[:-1]) - torch.log(one_minus[1:])
    clipped = s.posterior_log_variance_clipped
    assert torch.all(torch.isfinite(clipped))
    torch.testing.assert_close(clipped[1:], log_var, rtol=0, atol=1e-10)
    assert clipped[0].item() == pytest.approx(log_var[0].item(), abs=1e-10)


def test_posterior_log_variance_is_finite_with_one_step():
    s = ns.NoiseSchedule(torch.tensor([0.5], dtype=F64), dtype=F64)
    assert s.posterior_variance[0].item() == 0.0
    assert torch.all(torch.isfinite(s.posterior_log_variance_clipped))


def test_float32_schedule_is_the_float64_one_rounded_once():
    s64 = ns.NoiseSchedule.from_name("cosine", 1000, dtype=F64)
    s32 = ns.NoiseSchedule.from_name("cosine", 1000, dtype=torch.float32)
    assert s32.dtype == torch.float32
    for key in SCHEDULE_TENSORS:
        value = getattr(s32, key)
        assert value.dtype == torch.float32, key
        assert torch.equal(value, getattr(s64, key).float()), key
    # A float32 cumulative product would not be bit-identical (the point of float64-first).
    assert not torch.equal(torch.cumprod(1 - s32.betas, 0), s32.alphas_cumprod)


def test_to_float64_recovers_the_exact_values():
    s64 = ns.NoiseSchedule.from_name("sigmoid", 500, dtype=F64)
    s32 = ns.NoiseSchedule.from_name("sigmoid", 500, dtype=torch.float32)
    back = s32.to(dtype=F64)
    assert back.dtype == F64 and back.name == "sigmoid"
    for key in SCHEDULE_TENSORS:
        assert torch.equal(getattr(back, key), getattr(s64, key)), key
    assert s32.betas.dtype == torch.float32  # .to() returns a copy


def test_schedule_accepts_float32_betas_and_matches_float64_math():
    betas32 = torch.linspace(1e-3, 0.05, 100)
    s = ns.NoiseSchedule(betas32, dtype=F64)
    expected = alphas_cumprod_of(betas32.double())
    torch.testing.assert_close(s.alphas_cumprod, expected, rtol=1e-12, atol=0)


def test_repr_mentions_name_and_length():
    text = repr(ns.NoiseSchedule.from_name("cosine", 1000))
    assert "cosine" in text and "1000" in text
    assert "37" in repr(ns.NoiseSchedule(torch.full((37,), 0.01)))


# ---------------------------------------------------------------------------
# 3. The forward process
# ---------------------------------------------------------------------------

N_MC = 20000
X0_PIXELS = torch.tensor([-1.0, -0.3, 0.4, 1.0], dtype=F64).reshape(1, 1, 2, 2)


def randn(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_q_sample_closed_form_exactly():
    s = ns.NoiseSchedule.from_name("linear", 1000, dtype=F64)
    x0 = randn((6, 3, 4, 4), 1)
    noise = randn((6, 3, 4, 4), 2)
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    abar = alphas_cumprod_of(s.betas)[t].reshape(-1, 1, 1, 1)
    one_minus = one_minus_alphas_cumprod_of(s.betas)[t].reshape(-1, 1, 1, 1)
    expected = torch.sqrt(abar) * x0 + torch.sqrt(one_minus) * noise
    out = df.q_sample(x0, t, noise, s)
    assert out.shape == x0.shape and out.dtype == F64
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_q_step_one_step_exactly():
    s = ns.NoiseSchedule.from_name("cosine", 100, dtype=F64)
    x = randn((4, 2, 3), 3)
    noise = randn((4, 2, 3), 4)
    t = torch.tensor([0, 5, 50, 99])
    beta = s.betas[t].reshape(-1, 1, 1)
    expected = torch.sqrt(1 - beta) * x + torch.sqrt(beta) * noise
    torch.testing.assert_close(df.q_step(x, t, noise, s), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("t", [0, 10, 300, 999])
def test_q_sample_moments(t):
    s = ns.NoiseSchedule.from_name("linear", 1000, dtype=F64)
    x0 = X0_PIXELS.expand(N_MC, 1, 2, 2)
    out = df.q_sample(x0, torch.full((N_MC,), t), randn(x0.shape, 100 + t), s)
    abar = alphas_cumprod_of(s.betas)[t].item()
    one_minus = one_minus_alphas_cumprod_of(s.betas)[t].item()
    assert_moments(out, math.sqrt(abar) * X0_PIXELS[0], one_minus)


def test_q_step_chain_matches_q_sample_marginals():
    """Steps 0 … t with fresh noise give the same distribution as one q_sample at t."""
    T = 25
    s = ns.NoiseSchedule.from_name("cosine", T, dtype=F64)
    abar = alphas_cumprod_of(s.betas)
    one_minus = one_minus_alphas_cumprod_of(s.betas)
    x0 = X0_PIXELS.expand(N_MC, 1, 2, 2)
    generator = torch.Generator().manual_seed(7)
    x = x0
    checked = 0
    for step in range(T):
        t = torch.full((N_MC,), step)
        x = df.q_step(x, t, torch.randn(x0.shape, generator=generator, dtype=F64), s)
        if step in (0, 3, 10, 18, T - 1):
            mean = math.sqrt(abar[step].item()) * X0_PIXELS[0]
            var = one_minus[step].item()
            assert_moments(x, mean, var)
            direct = df.q_sample(x0, t, torch.randn(x0.shape, generator=generator, dtype=F64), s)
            assert_moments(direct, mean, var)
            # The two empirical means agree within the standard error of their difference.
            diff = (x.mean(0) - direct.mean(0)).abs()
            assert torch.all(diff <= 5 * math.sqrt(2 * var / N_MC)), (step, diff)
            checked += 1
    assert checked == 5


@pytest.fixture(scope="module")
def forward_case():
    s = ns.NoiseSchedule.from_name("cosine", 1000, dtype=F64)
    x0 = randn((8, 3, 5, 5), 11).clamp(-1, 1)
    eps = randn((8, 3, 5, 5), 12)
    t = torch.tensor([0, 1, 3, 100, 500, 900, 998, 999])
    return s, x0, eps, t


def test_v_target_definition(forward_case):
    s, x0, eps, t = forward_case
    abar = alphas_cumprod_of(s.betas)[t].reshape(-1, 1, 1, 1)
    one_minus = one_minus_alphas_cumprod_of(s.betas)[t].reshape(-1, 1, 1, 1)
    expected = torch.sqrt(abar) * eps - torch.sqrt(one_minus) * x0
    torch.testing.assert_close(df.v_target(x0, t, eps, s), expected, rtol=1e-10, atol=1e-12)


def test_conversions_invert_q_sample(forward_case):
    s, x0, eps, t = forward_case
    x_t = df.q_sample(x0, t, eps, s)
    v = df.v_target(x0, t, eps, s)
    close = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(df.x0_from_eps(x_t, t, eps, s), x0, **close)
    torch.testing.assert_close(df.eps_from_x0(x_t, t, x0, s), eps, **close)
    torch.testing.assert_close(df.x0_from_v(x_t, t, v, s), x0, **close)
    torch.testing.assert_close(df.eps_from_v(x_t, t, v, s), eps, **close)


def test_conversions_are_not_identities(forward_case):
    """x0_from_eps must actually use ε: a different ε gives a different x̂_0, by the right amount."""
    s, x0, eps, t = forward_case
    x_t = df.q_sample(x0, t, eps, s)
    shift = torch.ones_like(eps)
    ratio = torch.sqrt(one_minus_alphas_cumprod_of(s.betas) / alphas_cumprod_of(s.betas))[t]
    moved = df.x0_from_eps(x_t, t, eps + shift, s) - df.x0_from_eps(x_t, t, eps, s)
    expected = -ratio.reshape(-1, 1, 1, 1).expand_as(moved)
    torch.testing.assert_close(moved, expected, rtol=1e-8, atol=1e-10)


def test_v_is_a_rotation_of_x0_and_eps(forward_case):
    s, x0, eps, t = forward_case
    x_t = df.q_sample(x0, t, eps, s)
    v = df.v_target(x0, t, eps, s)
    # (x_t, v) = R(θ) (x0, ε) with cos θ = √ᾱ_t: lengths are kept elementwise ...
    torch.testing.assert_close(x_t**2 + v**2, x0**2 + eps**2, rtol=1e-12, atol=1e-12)
    # ... and the angle between (x0, ε) and (x_t, v) is θ: their dot product is √ᾱ_t (x0² + ε²).
    sqrt_abar = torch.sqrt(alphas_cumprod_of(s.betas))[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(
        x_t * x0 + v * eps, sqrt_abar * (x0**2 + eps**2), rtol=1e-10, atol=1e-12
    )


def test_extract_shapes_values_and_dtype():
    values = torch.tensor([i * i + 0.5 for i in range(10)], dtype=F64)
    t = torch.tensor([3, 0, 9])
    expected = [9.5, 0.5, 81.5]
    out = df.extract(values, t, torch.zeros(3, 2, 4, 4, dtype=torch.float32))
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    assert out.flatten().tolist() == expected
    out = df.extract(values.float(), t, torch.zeros(3, 7, dtype=F64))
    assert out.shape == (3, 1) and out.dtype == F64
    assert out.flatten().tolist() == expected
    out = df.extract(values, t, torch.zeros(3, 2, 5, dtype=F64))
    assert out.shape == (3, 1, 1)


def test_float64_inputs_give_float64_outputs():
    s32 = ns.NoiseSchedule.from_name("linear", 100)  # float32 schedule
    x = randn((2, 3, 4, 4), 21)
    e = randn((2, 3, 4, 4), 22)
    t = torch.tensor([4, 60])
    for fn, _, _ in FORWARD_FUNCTIONS:
        assert fn(x, t, e, s32).dtype == F64, fn.__name__
    s64 = s32.to(dtype=F64)
    for fn in (df.q_sample, df.q_step, df.v_target):
        assert fn(x.float(), t, e.float(), s64).dtype == torch.float32, fn.__name__


# ---------------------------------------------------------------------------
# 4. Documented errors
# ---------------------------------------------------------------------------


def test_unknown_schedule_name():
    with pytest.raises(ValueError, match="banana") as info:
        ns.make_betas("banana", 10)
    for name in ("linear", "scaled_linear", "quadratic", "cosine", "sigmoid", "karras"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="banana"):
        ns.NoiseSchedule.from_name("banana", 10)


@pytest.mark.parametrize("name", ["linear", "quadratic", "cosine", "sigmoid"])
def test_num_timesteps_must_be_positive(name):
    with pytest.raises(ValueError, match="num_timesteps"):
        ns.make_betas(name, 0)
    with pytest.raises(ValueError, match="num_timesteps"):
        ns.make_betas(name, -3)


@pytest.mark.parametrize("bad", [10.5, 10.0, "10", True, None])
def test_num_timesteps_must_be_an_int(bad):
    with pytest.raises(TypeError, match="num_timesteps"):
        ns.linear_betas(bad)


def test_linear_betas_zero_steps():
    with pytest.raises(ValueError, match="num_timesteps"):
        ns.linear_betas(0)


def test_karras_needs_two_steps_and_ordered_sigmas():
    with pytest.raises(ValueError, match="num_timesteps"):
        ns.karras_betas(1)
    with pytest.raises(ValueError, match="sigma"):
        ns.karras_betas(10, sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="sigma"):
        ns.karras_betas(10, sigma_min=0.0)


def test_scaled_linear_too_few_steps():
    with pytest.raises(ValueError, match="num_timesteps"):
        ns.scaled_linear_betas(10)


def test_sigmoid_parameter_checks():
    with pytest.raises(ValueError, match="end > start"):
        ns.sigmoid_betas(10, start=3.0, end=-3.0)
    with pytest.raises(ValueError, match="tau"):
        ns.sigmoid_betas(10, tau=0.0)


@pytest.mark.parametrize(
    "values",
    [[0.1, 1.0], [0.0, 0.1], [-0.1, 0.2], [0.1, float("nan")], [0.1, float("inf")], [1.5]],
)
def test_betas_outside_the_open_unit_interval(values):
    with pytest.raises(ValueError, match="betas"):
        ns.NoiseSchedule(torch.tensor(values, dtype=F64))


@pytest.mark.parametrize("betas", [torch.tensor([[0.1]]), torch.tensor(0.1), torch.tensor([])])
def test_betas_must_be_one_dimensional_and_nonempty(betas):
    with pytest.raises(ValueError, match="shape"):
        ns.NoiseSchedule(betas)


def test_betas_must_be_a_float_tensor():
    with pytest.raises(TypeError, match="betas"):
        ns.NoiseSchedule(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="betas"):
        ns.NoiseSchedule([0.1, 0.2])


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, "float32"])
def test_schedule_dtype_must_be_floating(dtype):
    with pytest.raises(TypeError, match="dtype"):
        ns.NoiseSchedule(torch.tensor([0.1, 0.2]), dtype=dtype)


@pytest.fixture(scope="module")
def small_schedule():
    return ns.NoiseSchedule.from_name("linear", 10)


@pytest.mark.parametrize("fn, first, second", FORWARD_FUNCTIONS, ids=FORWARD_IDS)
def test_timesteps_must_be_integers(fn, first, second, small_schedule):
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(TypeError, match=r"\bt\b"):
        fn(x, torch.tensor([1.0, 2.0]), x, small_schedule)
    with pytest.raises(TypeError, match=r"\bt\b"):
        fn(x, torch.tensor([True, False]), x, small_schedule)
    with pytest.raises(TypeError, match=r"\bt\b"):
        fn(x, [1, 2], x, small_schedule)
    with pytest.raises(TypeError, match=r"\bt\b"):  # uint8 would index as a mask
        fn(x, torch.tensor([1, 2], dtype=torch.uint8), x, small_schedule)
    fn(x, torch.tensor([1, 2], dtype=torch.int32), x, small_schedule)  # signed ints are fine


@pytest.mark.parametrize("fn, first, second", FORWARD_FUNCTIONS, ids=FORWARD_IDS)
@pytest.mark.parametrize("bad", [-1, 10])
def test_timesteps_must_be_in_range(fn, first, second, bad, small_schedule):
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match=re.escape("[0, 9]")):
        fn(x, torch.tensor([0, bad]), x, small_schedule)
    fn(x, torch.tensor([0, 9]), x, small_schedule)  # both ends are valid


@pytest.mark.parametrize("fn, first, second", FORWARD_FUNCTIONS, ids=FORWARD_IDS)
@pytest.mark.parametrize("shape", [(3,), (2, 1), (1,), ()])
def test_timesteps_must_have_shape_b(fn, first, second, shape, small_schedule):
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        fn(x, torch.zeros(shape, dtype=torch.int64), x, small_schedule)


@pytest.mark.parametrize("fn, first, second", FORWARD_FUNCTIONS, ids=FORWARD_IDS)
def test_image_shapes_must_agree(fn, first, second, small_schedule):
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError) as info:
        fn(torch.zeros(2, 1, 2, 2), t, torch.zeros(2, 1, 2, 3), small_schedule)
    assert first in str(info.value) and second in str(info.value)


@pytest.mark.parametrize("fn, first, second", FORWARD_FUNCTIONS, ids=FORWARD_IDS)
def test_image_dtypes_must_agree(fn, first, second, small_schedule):
    t = torch.tensor([1, 2])
    with pytest.raises(TypeError, match="same dtype") as info:
        fn(torch.zeros(2, 1, 2, 2), t, torch.zeros(2, 1, 2, 2, dtype=torch.float64), small_schedule)
    assert first in str(info.value) and second in str(info.value)


@pytest.mark.parametrize("fn, first, second", FORWARD_FUNCTIONS, ids=FORWARD_IDS)
def test_images_must_be_float_tensors(fn, first, second, small_schedule):
    t = torch.tensor([1, 2])
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(TypeError, match=re.escape(first)):
        fn(torch.zeros(2, 1, 2, 2, dtype=torch.int64), t, x, small_schedule)
    with pytest.raises(TypeError, match=re.escape(second)):
        fn(x, t, torch.zeros(2, 1, 2, 2, dtype=torch.int64), small_schedule)
    with pytest.raises(TypeError, match=re.escape(second)):
        fn(x, t, x.tolist(), small_schedule)
    with pytest.raises(TypeError, match=re.escape(first)):
        fn(x.numpy(), t, x, small_schedule)


def test_q_sample_error_examples_from_the_guide(small_schedule):
    x0 = torch.zeros(3, 1, 2, 2)
    noise = torch.zeros(3, 1, 2, 2)
    with pytest.raises(TypeError, match=r"\bt\b"):
        df.q_sample(x0, torch.tensor([1.0, 2.0, 3.0]), noise, small_schedule)
    with pytest.raises(ValueError, match=r"0.*9"):
        df.q_sample(x0, torch.tensor([0, 1, -1]), noise, small_schedule)
    with pytest.raises(ValueError, match=r"0.*9"):
        df.q_sample(x0, torch.tensor([0, 1, 10]), noise, small_schedule)
    with pytest.raises(ValueError, match="shape"):
        df.q_sample(x0, torch.zeros(4, dtype=torch.int64), noise, small_schedule)
    with pytest.raises(ValueError, match="shape"):
        df.q_sample(x0, torch.zeros(3, 1, dtype=torch.int64), noise, small_schedule)
    with pytest.raises(ValueError, match=r"x0.*noise|noise.*x0"):
        df.q_sample(x0, torch.zeros(3, dtype=torch.int64), torch.zeros(3, 1, 2, 1), small_schedule)
    with pytest.raises(TypeError, match="x0"):
        df.q_sample(x0.long(), torch.zeros(3, dtype=torch.int64), noise, small_schedule)
    with pytest.raises(TypeError, match="noise"):
        df.q_sample(x0, torch.zeros(3, dtype=torch.int64), 0.5, small_schedule)


# ---------------------------------------------------------------------------
# 5. CUDA
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_q_sample_on_cuda_matches_cpu():
    cpu = ns.NoiseSchedule.from_name("cosine", 1000)
    gpu = cpu.to("cuda")
    assert gpu.alphas_cumprod.is_cuda
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, 3, 16, 16, generator=generator) * 2 - 1
    noise = torch.randn(8, 3, 16, 16, generator=generator)
    t = torch.tensor([0, 1, 10, 100, 500, 900, 998, 999])
    expected = df.q_sample(x0, t, noise, cpu)
    out = df.q_sample(x0.cuda(), t.cuda(), noise.cuda(), gpu)
    assert out.is_cuda and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-6)
