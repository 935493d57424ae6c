"""Phase 1 checks, part 2: the forward process (guide §1.5–§1.9).

Every check builds its schedule with the reference, and puts the reference's
``extract`` into your module while §1.6–§1.9 run, so a mistake in your schedule
functions or in your extract never shows up here: each function is graded alone.
"""

from __future__ import annotations

import pytest
import torch

from grading.checker import check_close
from grading.modules import reference_parts

pytestmark = pytest.mark.phase1

# Batches with timesteps at both ends and in the middle, in float32 and float64.
CASES = {
    "float32-linear": dict(shape=(4, 1, 8, 8), t=[0, 1, 499, 999], schedule="linear", dtype=torch.float32),
    "float64-cosine": dict(shape=(3, 3, 4, 4), t=[999, 0, 250], schedule="cosine", dtype=torch.float64),
}


@pytest.fixture(params=list(CASES), scope="module")
def case(request, ref):
    return build_case(CASES[request.param], ref, seed=1234)


def build_case(spec: dict, ref, seed: int) -> tuple:
    """Seeded inputs: x0 in [-1, 1], noise, another noise-shaped tensor, t, and the schedule."""
    generator = torch.Generator().manual_seed(seed)
    dtype = spec["dtype"]
    x0 = (torch.rand(spec["shape"], generator=generator, dtype=dtype) * 2 - 1)
    noise = torch.randn(spec["shape"], generator=generator, dtype=dtype)
    other = torch.randn(spec["shape"], generator=generator, dtype=dtype)
    schedule = ref.noise_schedule.NoiseSchedule.from_name(spec["schedule"], 1000, dtype=dtype)
    t = torch.tensor(spec["t"], dtype=torch.int64)
    return x0, noise, other, t, schedule


def reference_extract(impl, ref):
    """While it lasts, your diffusion module calls the reference's extract (§1.5)."""
    return reference_parts(impl.diffusion.module, ref.diffusion, ("extract",))


def per_image(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, 1, 1), for writing the wrong variants below."""
    return values[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


# ---------------------------------------------------------------------------
# §1.5 extract
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("1.5", "extract")
@pytest.mark.parametrize("x_shape", [(4, 3, 5, 5), (4, 7)], ids=["x of shape (4, 3, 5, 5)", "x of shape (4, 7)"])
def test_extract(impl, ref, x_shape):
    """extract picks values[t] per image, shaped (B, 1, …) in x's dtype"""
    values = torch.linspace(0.1, 0.9, 10, dtype=torch.float64)
    t = torch.tensor([9, 0, 3, 3])
    x = torch.zeros(x_shape, dtype=torch.float32)
    check_close(
        impl.diffusion.extract(values, t, x),
        ref.diffusion.extract(values, t, x),
        function="extract",
        section="1.5",
        inputs={"values": values, "t": t, "x": x},
        mistakes={"no_broadcast_shape": values[t].float(),
                  **({"extract_assumes_4d": values[t].float().reshape(-1, 1, 1, 1)} if len(x_shape) != 4 else {})},
    )


# ---------------------------------------------------------------------------
# §1.6 q_sample and §1.7 q_step
# ---------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.exercise("1.6", "q_sample")
def test_q_sample(impl, ref, case):
    """q_sample is √ᾱ_t x_0 + √(1 − ᾱ_t) ε for every image's own t"""
    x0, noise, _, t, s = case
    abar = per_image(s.alphas_cumprod, t, x0)
    alpha = per_image(s.alphas, t, x0)
    off_by_one = [per_image(s.alphas_cumprod, t - 1, x0), per_image(s.alphas_cumprod_prev, t, x0),
                  per_image(s.alphas_cumprod, (t + 1).clamp(max=s.num_timesteps - 1), x0)]
    with reference_extract(impl, ref):
        got = impl.diffusion.q_sample(x0, t, noise, s)
    check_close(
        got,
        ref.diffusion.q_sample(x0, t, noise, s),
        function="q_sample",
        section="1.6",
        inputs={"x0": x0, "t": t, "noise": noise, "schedule": s},
        mistakes={
            "alpha_not_cumprod": alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise,
            "missing_sqrt": abar * x0 + (1 - abar) * noise,
            "t_off_by_one": [a.sqrt() * x0 + (1 - a).sqrt() * noise for a in off_by_one],
            "coefficients_swapped": (1 - abar).sqrt() * x0 + abar.sqrt() * noise,
            "noise_coefficient_one_minus_sqrt": abar.sqrt() * x0 + (1 - abar.sqrt()) * noise,
        },
    )


@pytest.mark.points(2)
@pytest.mark.exercise("1.7", "q_step")
def test_q_step(impl, ref, case):
    """q_step is √α_t x_{t−1} + √β_t ε"""
    x_prev, noise, _, t, s = case
    alpha = per_image(s.alphas, t, x_prev)
    beta = per_image(s.betas, t, x_prev)
    abar = per_image(s.alphas_cumprod, t, x_prev)
    shifted = per_image(s.alphas, t - 1, x_prev)
    with reference_extract(impl, ref):
        got = impl.diffusion.q_step(x_prev, t, noise, s)
    check_close(
        got,
        ref.diffusion.q_step(x_prev, t, noise, s),
        function="q_step",
        section="1.7",
        inputs={"x_prev": x_prev, "t": t, "noise": noise, "schedule": s},
        mistakes={
            "q_step_uses_alpha_bar": abar.sqrt() * x_prev + (1 - abar).sqrt() * noise,
            "missing_sqrt": [alpha * x_prev + beta * noise, alpha.sqrt() * x_prev + beta * noise],
            "t_off_by_one": shifted.sqrt() * x_prev + (1 - shifted).sqrt() * noise,
            "coefficients_swapped": beta.sqrt() * x_prev + alpha.sqrt() * noise,
        },
    )


# ---------------------------------------------------------------------------
# §1.8 the v target and §1.9 conversions
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("1.8", "v_target")
def test_v_target(impl, ref, case):
    """v_target is √ᾱ_t ε − √(1 − ᾱ_t) x_0"""
    x0, noise, _, t, s = case
    a = per_image(s.sqrt_alphas_cumprod, t, x0)
    b = per_image(s.sqrt_one_minus_alphas_cumprod, t, x0)
    with reference_extract(impl, ref):
        got = impl.diffusion.v_target(x0, t, noise, s)
    check_close(
        got,
        ref.diffusion.v_target(x0, t, noise, s),
        function="v_target",
        section="1.8",
        inputs={"x0": x0, "t": t, "noise": noise, "schedule": s},
        mistakes={
            "v_wrong_sign": b * x0 - a * noise,
            "v_roles_swapped": a * x0 - b * noise,
        },
    )


def _conversion_mistakes(name, x_t, other, a, b):
    """Wrong versions of each conversion: a sign flipped, × for ÷, a square root dropped."""
    if name == "x0_from_eps":
        return {"conversion_sign": (x_t + b * other) / a, "conversion_multiplied": (x_t - b * other) * a,
                "missing_sqrt": (x_t - b**2 * other) / a**2, "conversion_parentheses": x_t - b * other / a}
    if name == "eps_from_x0":
        return {"conversion_sign": (x_t + a * other) / b, "conversion_multiplied": (x_t - a * other) * b,
                "missing_sqrt": (x_t - a**2 * other) / b**2, "conversion_parentheses": x_t - a * other / b}
    if name == "x0_from_v":
        return {"conversion_sign": a * x_t + b * other, "missing_sqrt": a**2 * x_t - b**2 * other,
                "conversion_coefficients_swapped": b * x_t - a * other}
    return {"conversion_sign": b * x_t - a * other, "missing_sqrt": b**2 * x_t + a**2 * other,
            "conversion_coefficients_swapped": a * x_t + b * other}


@pytest.mark.points(1)
@pytest.mark.exercise("1.9", "{name}")
@pytest.mark.parametrize("name", ["x0_from_eps", "eps_from_x0", "x0_from_v", "eps_from_v"])
def test_conversions(impl, ref, case, name):
    """converting between ε, x̂_0 and v inverts q_sample and v_target"""
    x0, noise, other, t, s = case
    x_t = ref.diffusion.q_sample(x0, t, noise, s)
    a = per_image(s.sqrt_alphas_cumprod, t, x_t)
    b = per_image(s.sqrt_one_minus_alphas_cumprod, t, x_t)
    argument = {"x0_from_eps": "eps", "eps_from_x0": "x0"}.get(name, "v")
    with reference_extract(impl, ref):
        got = getattr(impl.diffusion, name)(x_t, t, other, s)
    check_close(
        got,
        getattr(ref.diffusion, name)(x_t, t, other, s),
        function=name,
        section="1.9",
        inputs={"x_t": x_t, "t": t, argument: other, "schedule": s},
        mistakes=_conversion_mistakes(name, x_t, other, a, b),
    )
