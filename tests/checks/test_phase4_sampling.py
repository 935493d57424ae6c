"""Phase 4 checks: from the network's output to samples, with DDPM and DDIM (guide §4.1–§4.7).

Each function is graded alone. While a step is checked, the reference's helpers it
calls (``alpha_bar_at``, ``posterior_mean_variance``, the §1.9 conversions) are put
into your diffusion module; the loop's checks put in the reference's §4.1–§4.6, so
only the loop itself is judged. The property checks at the end hold for any correct
implementation; they too run each step with the reference's helpers (:data:`STEP_HELPERS`),
so a slip in one function costs only that function's points.

All arithmetic is float64, on a cosine schedule with T = 1000 for the steps and
T = 40 for whole sampling loops (with a tiny convolutional "network").
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

from grading.checker import check_close, fail, naming_crash
from grading.modules import randomize_, reference_parts

pytestmark = pytest.mark.phase4

F64 = torch.float64
T = 1000
T_LOOP = 40
CONVERSIONS = ("extract", "x0_from_eps", "eps_from_x0", "x0_from_v", "eps_from_v")
LOOP_HELPERS = ("model_predictions", "alpha_bar_at", "posterior_mean_variance", "ddpm_step", "ddim_step",
                "inference_timesteps")
#: What each step's checks (values and properties alike) lend it from the reference: the step alone is graded.
STEP_HELPERS = {"alpha_bar_at": ("extract",), "posterior_mean_variance": ("alpha_bar_at", "extract"),
                "ddpm_step": ("alpha_bar_at", "posterior_mean_variance", "extract"),
                "ddim_step": ("alpha_bar_at", "extract")}


def alone(impl, ref, function: str):
    """Your diffusion module with the reference's helpers of ``function`` put in, while the block runs."""
    return reference_parts(impl.diffusion.module, ref.diffusion, STEP_HELPERS[function])

#: One batch holds every kind of pair: the last step from t = 0, consecutive steps at both
#: ends and in the middle, strided jumps, and strided jumps straight to x_0.
T_NOW = torch.tensor([0, 1, 500, 999, 999, 500, 37])
T_PREV = torch.tensor([-1, 0, 499, 998, 949, 0, -1])
PAIR_NAMES = "t → t_prev: 0 → −1, 1 → 0, 500 → 499, 999 → 998, 999 → 949, 500 → 0, 37 → −1"


@pytest.fixture(scope="module")
def schedule(ref):
    return ref.noise_schedule.NoiseSchedule.from_name("cosine", T, dtype=F64)


@pytest.fixture(scope="module")
def loop_schedule(ref):
    return ref.noise_schedule.NoiseSchedule.from_name("cosine", T_LOOP, dtype=F64)


@pytest.fixture(scope="module")
def images():
    """x_t (standard normal), x̂_0 (in [-1, 1]), ε̂ and z: seeded, shape (7, 2, 4, 4)."""
    generator = torch.Generator().manual_seed(40)
    shape = (len(T_NOW), 2, 4, 4)
    x_t = torch.randn(shape, generator=generator, dtype=F64)
    x0_hat = torch.rand(shape, generator=generator, dtype=F64) * 2 - 1
    eps_hat = torch.randn(shape, generator=generator, dtype=F64)
    noise = torch.randn(shape, generator=generator, dtype=F64)
    return x_t, x0_hat, eps_hat, noise


def per_image(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, 1, 1, 1)


def alpha_bars(schedule, t: torch.Tensor, wrap: bool = False) -> torch.Tensor:
    """ᾱ_t per image (B, 1, 1, 1), written out independently: 1 at t = −1 (or ᾱ_{T−1} if ``wrap``)."""
    values = schedule.alphas_cumprod[t.clamp(min=0)]
    if not wrap:
        values = torch.where(t < 0, torch.ones_like(values), values)
    else:
        values = torch.where(t < 0, schedule.alphas_cumprod[-1].expand_as(values), values)
    return per_image(values)


def posterior_formula(schedule, x0_hat, x_t, t, t_prev, variance, one_step_beta=False, wrap=False,
                      alpha_inverted=False):
    """DDPM eqs. 6–7 for the pair, or one of its classic wrong versions."""
    ab, ab_prev = alpha_bars(schedule, t), alpha_bars(schedule, t_prev, wrap=wrap)
    alpha = ab_prev / ab if alpha_inverted else ab / ab_prev
    beta = per_image(schedule.betas[t]) if one_step_beta else 1 - alpha
    mean = ab_prev.sqrt() * beta / (1 - ab) * x0_hat + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    beta_tilde = beta * (1 - ab_prev) / (1 - ab)
    return mean, beta_tilde if variance == "small" else beta


def unpack(result, function: str, count: int, names: str) -> tuple:
    """The ``count`` outputs of a function that returns a tuple; a clear failure otherwise."""
    if not isinstance(result, tuple) or len(result) != count:
        kind = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        fail(f"{function} must return a tuple of {count} tensors ({names}); got {kind}. "
             "See IMPLEMENTATION_GUIDE.md §4.")
    return result


# ---------------------------------------------------------------------------
# §4.1 model_predictions
# ---------------------------------------------------------------------------

PREDICTION_CASES = [(prediction, clip) for prediction in ("eps", "x0", "v") for clip in (True, False)]


@pytest.mark.points(1)
@pytest.mark.exercise("4.1", "model_predictions")
@pytest.mark.parametrize("prediction, clip_x0", PREDICTION_CASES,
                         ids=[f"{p}{' clipped' if c else ''}" for p, c in PREDICTION_CASES])
def test_model_predictions(impl, ref, schedule, prediction, clip_x0):
    """model_predictions gives x̂_0 and ε̂ for each prediction type, with and without clipping"""
    generator = torch.Generator().manual_seed(41)
    t = torch.tensor([0, 1, 37, 500, 999])
    x_t = torch.randn((5, 2, 4, 4), generator=generator, dtype=F64)
    output = 1.5 * torch.randn((5, 2, 4, 4), generator=generator, dtype=F64)  # x̂_0 leaves [-1, 1]
    args = (output, x_t, t, schedule, prediction, clip_x0)
    with reference_parts(impl.diffusion.module, ref.diffusion, CONVERSIONS):
        got = unpack(impl.diffusion.model_predictions(*args), "model_predictions", 2, "x0_hat, eps_hat")
    want_x0, want_eps = ref.diffusion.model_predictions(*args)
    raw_x0, raw_eps = ref.diffusion.model_predictions(output, x_t, t, schedule, prediction, False)
    inputs = {"model_output": output, "x_t": x_t, "t": t, "prediction": prediction, "clip_x0": clip_x0}
    # Both outputs of each wrong version: another type's conversion, the v conversions swapped, clipping always.
    others = [ref.diffusion.model_predictions(output, x_t, t, schedule, other, clip_x0)
              for other in ("eps", "x0", "v") if other != prediction]
    wrong = {"prediction_types_confused": others}
    if prediction == "v":
        swapped_x0 = ref.diffusion.eps_from_v(x_t, t, output, schedule)
        swapped_eps = ref.diffusion.x0_from_v(x_t, t, output, schedule)
        if clip_x0:
            swapped_x0 = swapped_x0.clamp(-1, 1)
            swapped_eps = ref.diffusion.eps_from_x0(x_t, t, swapped_x0, schedule)
        wrong["v_conversions_swapped"] = [(swapped_x0, swapped_eps)]
    if not clip_x0:
        wrong["clipped_when_not_asked"] = [ref.diffusion.model_predictions(output, x_t, t, schedule, prediction, True)]
    x0_mistakes = {key: [pair[0] for pair in pairs] for key, pairs in wrong.items()}
    eps_mistakes = {key: [pair[1] for pair in pairs] for key, pairs in wrong.items()}
    if clip_x0:
        x0_mistakes.update(x0_not_clipped=raw_x0, clipped_to_unit_range=raw_x0.clamp(0, 1))
        eps_mistakes.update(eps_not_recomputed=raw_eps)
    check_close(got[0], want_x0, function="model_predictions", section="4.1", inputs=inputs,
                what="x0_hat (the first output)", mistakes=x0_mistakes)
    check_close(got[1], want_eps, function="model_predictions", section="4.1", inputs=inputs,
                what="eps_hat (the second output)", mistakes=eps_mistakes)


# ---------------------------------------------------------------------------
# §4.2 alpha_bar_at
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("4.2", "alpha_bar_at")
def test_alpha_bar_at(impl, ref, schedule):
    """alpha_bar_at is ᾱ_t, and 1 at t = −1, in x's dtype"""
    t = torch.tensor([-1, 0, 1, 500, 999, -1])
    for dtype in (F64, torch.float32):  # the float64 schedule's values, cast to a float32 x's dtype
        x = torch.zeros((6, 3, 2, 2), dtype=dtype)
        with alone(impl, ref, "alpha_bar_at"), naming_crash("alpha_bar_at_past_table", "out of bounds"), \
                naming_crash("alpha_bar_at_dtype", "has dtype torch.float64, expected torch.float32"):
            got = impl.diffusion.alpha_bar_at(t, schedule, x)
            shifted = per_image(torch.cat([schedule.alphas_cumprod.new_ones(1), schedule.alphas_cumprod])[t])
            check_close(got, ref.diffusion.alpha_bar_at(t, schedule, x), function="alpha_bar_at", section="4.2",
                        inputs={"t": t, "x": f"torch.zeros((6, 3, 2, 2), dtype={dtype})"},
                        mistakes={"alpha_bar_at_wraps": alpha_bars(schedule, t, wrap=True),
                                  "alpha_bar_at_shifted": shifted, "alpha_bar_at_sqrt": alpha_bars(schedule, t).sqrt()})


# ---------------------------------------------------------------------------
# §4.3 posterior_mean_variance
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("4.3", "posterior_mean_variance")
@pytest.mark.parametrize("variance", ["small", "large"])
def test_posterior_mean_variance(impl, ref, schedule, images, variance):
    """posterior_mean_variance: DDPM eq. 7 for consecutive, strided and last pairs"""
    x_t, x0_hat, _, _ = images
    args = (x0_hat, x_t, T_NOW, T_PREV, schedule, variance)
    with alone(impl, ref, "posterior_mean_variance"):
        got = unpack(impl.diffusion.posterior_mean_variance(*args), "posterior_mean_variance", 2,
                     "mean, variance")
    want_mean, want_variance = ref.diffusion.posterior_mean_variance(*args)
    other = "large" if variance == "small" else "small"
    one_step = posterior_formula(schedule, x0_hat, x_t, T_NOW, T_PREV, variance, one_step_beta=True)
    inverted = posterior_formula(schedule, x0_hat, x_t, T_NOW, T_PREV, variance, alpha_inverted=True)
    ab, ab_prev = alpha_bars(schedule, T_NOW), alpha_bars(schedule, T_PREV)
    alpha, beta = ab / ab_prev, 1 - ab / ab_prev
    def weights(coef_x0, coef_xt):  # the mean with the given weights of x̂_0 and x_t
        return coef_x0 * x0_hat + coef_xt * x_t

    coef_x0, coef_xt = ab_prev.sqrt() * beta / (1 - ab), alpha.sqrt() * (1 - ab_prev) / (1 - ab)
    inputs = {"x0_hat": x0_hat, "x_t": x_t, "t": T_NOW, "t_prev": T_PREV, "variance": variance, "pairs": PAIR_NAMES}
    check_close(got[0], want_mean, function="posterior_mean_variance", section="4.3", inputs=inputs,
                what="the mean (first output)",
                mistakes={"one_step_beta_for_strided": one_step[0], "posterior_mean_swapped": weights(coef_xt, coef_x0),
                          "pair_alpha_inverted": inverted[0],
                          "x0_weight_no_sqrt": weights(ab_prev * beta / (1 - ab), coef_xt),
                          "posterior_alpha_no_sqrt": weights(coef_x0, alpha * (1 - ab_prev) / (1 - ab)),
                          "step_alpha_bar_for_prev": weights(coef_x0, alpha.sqrt())})  # (1 − ᾱ_t) / (1 − ᾱ_t)
    variance_mistakes = {"variance_small_large_confused": ref.diffusion.posterior_mean_variance(
                             x0_hat, x_t, T_NOW, T_PREV, schedule, other)[1],
                         "one_step_beta_for_strided": one_step[1], "pair_alpha_inverted": inverted[1]}
    if variance == "small":
        variance_mistakes["posterior_variance_inverted"] = beta * (1 - ab) / (1 - ab_prev)
    check_close(got[1], want_variance, function="posterior_mean_variance", section="4.3", inputs=inputs,
                what="the variance (second output, shape (B, 1, 1, 1))", mistakes=variance_mistakes)


# ---------------------------------------------------------------------------
# §4.4 ddpm_step
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("4.4", "ddpm_step")
@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_step(impl, ref, schedule, images, variance):
    """ddpm_step is μ̃ + σ z, with no noise where t_prev = −1"""
    x_t, x0_hat, _, noise = images
    with alone(impl, ref, "ddpm_step"):
        got = impl.diffusion.ddpm_step(x_t, T_NOW, T_PREV, x0_hat, schedule, noise, variance)
    expected = ref.diffusion.ddpm_step(x_t, T_NOW, T_PREV, x0_hat, schedule, noise, variance)
    mean, step_variance = ref.diffusion.posterior_mean_variance(x0_hat, x_t, T_NOW, T_PREV, schedule, variance)
    _, other_variance = ref.diffusion.posterior_mean_variance(
        x0_hat, x_t, T_NOW, T_PREV, schedule, "large" if variance == "small" else "small")
    not_last = per_image((T_PREV >= 0).to(F64))
    swapped_mean, _ = ref.diffusion.posterior_mean_variance(x_t, x0_hat, T_NOW, T_PREV, schedule, variance)
    mistakes = {
        "noise_at_last_step": mean + step_variance.sqrt() * noise,
        "variance_as_std": mean + not_last * step_variance * noise,
        "variance_small_large_confused": mean + not_last * other_variance.sqrt() * noise,
        "posterior_arguments_swapped": swapped_mean + not_last * step_variance.sqrt() * noise,
    }
    check_close(got, expected, function="ddpm_step", section="4.4",
                inputs={"x_t": x_t, "t": T_NOW, "t_prev": T_PREV, "x0_hat": x0_hat, "noise": noise,
                        "variance": variance, "pairs": PAIR_NAMES},
                mistakes=mistakes)


# ---------------------------------------------------------------------------
# §4.5 ddim_step
# ---------------------------------------------------------------------------


def ddim_formula(schedule, x0_hat, eps_hat, noise, t, t_prev, eta, *, one_step_beta=False, corrected=True,
                 with_noise=True, sigma_sqrt=True, ratio_inverted=False, two_roots=False, signal="sqrt_prev",
                 clamped=True):
    """DDIM eqs. 12 and 16, written out independently, or one of their classic wrong versions."""
    ab, ab_prev = alpha_bars(schedule, t), alpha_bars(schedule, t_prev)
    jump = per_image(schedule.betas[t]) if one_step_beta else 1 - (ab_prev / ab if ratio_inverted else ab / ab_prev)
    sigma = eta * (((1 - ab_prev) / (1 - ab) * jump).sqrt() if sigma_sqrt else (1 - ab_prev) / (1 - ab) * jump)
    if two_roots:  # √a · √b: NaN where b < 0 even if a = 0
        sigma = eta * ((1 - ab_prev) / (1 - ab)).sqrt() * jump.sqrt()
    variance = (1 - ab_prev - sigma**2) if corrected else (1 - ab_prev)
    direction = (variance.clamp(min=0) if clamped else variance).sqrt() * eps_hat
    scale = {"sqrt_prev": ab_prev.sqrt(), "prev": ab_prev, "sqrt_now": ab.sqrt()}[signal]  # x̂_0's weight
    return scale * x0_hat + direction + (sigma * noise if with_noise else 0)


@pytest.mark.points(2)
@pytest.mark.exercise("4.5", "ddim_step")
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step(impl, ref, schedule, images, eta):
    """ddim_step follows DDIM eq. 12 with the pair's own σ (eq. 16)"""
    x_t, x0_hat, eps_hat, noise = images
    with alone(impl, ref, "ddim_step"):
        got = impl.diffusion.ddim_step(x_t, T_NOW, T_PREV, x0_hat, eps_hat, schedule, eta, noise)
    expected = ref.diffusion.ddim_step(x_t, T_NOW, T_PREV, x0_hat, eps_hat, schedule, eta, noise)
    formula = lambda **wrong: ddim_formula(schedule, x0_hat, eps_hat, noise, T_NOW, T_PREV, **wrong)  # noqa: E731
    mistakes = {
        "ddim_eta_ignored": [formula(eta=1.0), formula(eta=0.0)],
        "ddim_no_sigma_correction": formula(eta=eta, corrected=False),
        "one_step_beta_for_strided": formula(eta=eta, one_step_beta=True),
        "ddim_sigma_ratio_inverted": [formula(eta=eta, ratio_inverted=True),
                                      formula(eta=eta, ratio_inverted=True, two_roots=True)],
        "step_alpha_bar_for_prev": formula(eta=eta, signal="sqrt_now"),
        "x0_weight_no_sqrt": formula(eta=eta, signal="prev"),
    }
    if eta > 0:
        mistakes["ddim_noise_not_added"] = formula(eta=eta, with_noise=False)
        mistakes["ddim_sigma_squared"] = formula(eta=eta, sigma_sqrt=False)
    check_close(got, expected, function="ddim_step", section="4.5",
                inputs={"x_t": x_t, "t": T_NOW, "t_prev": T_PREV, "x0_hat": x0_hat, "eps_hat": eps_hat,
                        "eta": eta, "noise": noise, "pairs": PAIR_NAMES},
                mistakes=mistakes)


# ---------------------------------------------------------------------------
# §4.6 inference_timesteps
# ---------------------------------------------------------------------------

#: (1000, 416): trailing has a tie T − i·T/N = k + 0.5 there that float64 keeps exact (whatever the order of
#: the operations) and float32 does not, so a float32 list rounds it the other way.
TIMESTEP_CASES = [(1000, 10), (1000, 50), (1000, 7), (1000, 1), (1000, 1000), (10, 3), (100, 30), (1000, 416)]


def timestep_mistakes(num_timesteps: int, num_steps: int, spacing: str) -> dict:
    """The spacing's list built with classic slips: truncated, in float32, a real leading stride, linspace to T."""
    def listed(ascending: torch.Tensor) -> torch.Tensor:
        return ascending.long().flip(0)

    index = torch.arange(num_steps, dtype=F64)
    if spacing == "leading":
        return {"leading_stride_not_integer": listed((index * num_timesteps / num_steps).round())}
    if spacing == "trailing":
        down = num_timesteps - index * num_timesteps / num_steps
        down32 = num_timesteps - torch.arange(num_steps, dtype=torch.float32) * (num_timesteps / num_steps)
        return {"timesteps_truncated": listed((down.floor() - 1).flip(0)),
                "float32_rounding": listed((down32.round() - 1).flip(0))}
    spread = torch.linspace(0, num_timesteps - 1, num_steps, dtype=F64)
    return {"timesteps_truncated": listed(spread), "linspace_to_T": listed(torch.linspace(0, num_timesteps, num_steps,
                                                                                          dtype=F64).round()),
            "float32_rounding": listed(torch.linspace(0, num_timesteps - 1, num_steps).round())}


@pytest.mark.points(2)
@pytest.mark.exercise("4.6", "inference_timesteps")
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_inference_timesteps(impl, ref, spacing):
    """inference_timesteps lists N timesteps, descending, with the spacing's convention"""
    for num_timesteps, num_steps in TIMESTEP_CASES:
        got = impl.diffusion.inference_timesteps(num_timesteps, num_steps, spacing)
        expected = ref.diffusion.inference_timesteps(num_timesteps, num_steps, spacing)
        others = [ref.diffusion.inference_timesteps(num_timesteps, num_steps, other)
                  for other in ("leading", "trailing", "linspace") if other != spacing]
        mistakes = {"timesteps_ascending": expected.flip(0),
                    "spacing_confused": [other for other in others if not torch.equal(other, expected)],
                    **timestep_mistakes(num_timesteps, num_steps, spacing)}
        if spacing == "trailing":
            mistakes["trailing_not_shifted"] = expected + 1
        check_close(got, expected, function="inference_timesteps", section="4.6",
                    inputs={"num_timesteps": num_timesteps, "num_steps": num_steps, "spacing": spacing},
                    mistakes=mistakes)


# ---------------------------------------------------------------------------
# §4.7 sample_loop
# ---------------------------------------------------------------------------


class ToyDenoiser(nn.Module):
    """A tiny deterministic stand-in for the U-Net: a 3×3 convolution, scaled by a function of t."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scale = 0.8 + t.to(x.dtype).reshape(-1, 1, 1, 1) / T_LOOP  # (B, 1, 1, 1)
        return self.conv(x) * scale


class ToyConditional(nn.Module):
    """A tiny class-conditional denoiser: a convolution plus a learned offset per class (row K: no class)."""

    def __init__(self, channels: int = 2, num_classes: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.offsets = nn.Embedding(num_classes + 1, channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = torch.full_like(t, self.num_classes) if class_labels is None else class_labels
        return self.conv(x) + self.offsets(labels)[:, :, None, None]


@pytest.fixture(scope="module")
def toy_model():
    return randomize_(ToyDenoiser().double(), seed=42).eval()


LOOP_CASES = {
    "ddpm all T steps, eps, clipped": dict(sampler="ddpm", num_steps=T_LOOP, prediction="eps", clip_x0=True),
    "ddpm 10 leading steps, large variance, v": dict(sampler="ddpm", num_steps=10, variance="large", spacing="leading",
                                        prediction="v", clip_x0=False),
    "ddim 8 trailing steps, eta 0, x0": dict(sampler="ddim", num_steps=8, eta=0.0, prediction="x0"),
    "ddim 8 linspace steps, eta 1, eps": dict(sampler="ddim", num_steps=8, eta=1.0, spacing="linspace",
                                              prediction="eps", clip_x0=False),
}
SHAPE = (3, 2, 4, 4)


def loop_mistakes(ref, model, schedule, options: dict, shape: tuple, seed: int) -> dict:
    """The reference loop run with one setting ignored: what a loop that drops it returns."""
    def run(**changes):
        return ref.diffusion.sample_loop(model, schedule, shape, generator=torch.Generator().manual_seed(seed),
                                         **{**options, **changes})

    other = {"sampler": "ddim", "eta": 0.0} if options["sampler"] == "ddpm" else {"sampler": "ddpm"}
    mistakes = {"loop_clip_ignored": run(clip_x0=not options.get("clip_x0", True)),
                "loop_sampler_ignored": run(**other)}
    if options.get("eta", 0.0) > 0:
        mistakes["loop_eta_ignored"] = run(eta=0.0)
    # A setting left at its default: the step's variance, the prediction type, the spacing.
    for key, name, default in [("loop_variance_ignored", "variance", "small"),
                               ("loop_prediction_ignored", "prediction", "eps"),
                               ("loop_spacing_ignored", "spacing", "trailing")]:
        if options.get(name, default) != default:
            mistakes[key] = run(**{name: default})
    # Each step taken as t → t − 1 instead of the pair's t_prev.
    pairs = ref.diffusion.timestep_pairs
    try:
        ref.diffusion.timestep_pairs = lambda timesteps: [(t, t - 1) for t in timesteps.tolist()]
        mistakes["loop_pairs_ignored"] = run()
    finally:
        ref.diffusion.timestep_pairs = pairs
    return mistakes


@pytest.mark.points(2)
@pytest.mark.exercise("4.7", "sample_loop")
@pytest.mark.parametrize("case", list(LOOP_CASES))
def test_sample_loop(impl, ref, loop_schedule, toy_model, case):
    """sample_loop walks the timesteps from x_T to x_0 with the chosen step, drawing from the generator"""
    check_sample_loop(impl, ref, loop_schedule, toy_model, LOOP_CASES[case], SHAPE, seed=43)


def check_sample_loop(impl, ref, schedule, model, options: dict, shape: tuple, seed: int) -> None:
    """The learner's loop (with the reference's steps) against the reference's, on ``shape`` from ``seed``."""
    with reference_parts(impl.diffusion.module, ref.diffusion, LOOP_HELPERS):
        got = impl.diffusion.sample_loop(model, schedule, shape,
                                         generator=torch.Generator().manual_seed(seed), **options)
    expected = ref.diffusion.sample_loop(model, schedule, shape,
                                         generator=torch.Generator().manual_seed(seed), **options)
    check_close(got, expected, function="sample_loop", section="4.7",
                inputs={"shape": shape, "T": schedule.num_timesteps, **options,
                        "generator": f"torch.Generator().manual_seed({seed})"},
                mistakes=loop_mistakes(ref, model, schedule, options, shape, seed))


@pytest.mark.points(2)
@pytest.mark.exercise("4.7", "sample_loop")
def test_sample_loop_labels_and_guidance(impl, ref, loop_schedule):
    """sample_loop passes class_labels and guidance_scale on to call_model (sample.py's --class and --guidance-scale)"""
    model = randomize_(ToyConditional(num_classes=4).double(), seed=46).eval()
    labels = torch.tensor([0, 3, 1])
    options = dict(sampler="ddim", num_steps=5, eta=0.0, prediction="eps")

    def reference(**changes) -> torch.Tensor:
        settings = {"class_labels": labels, "guidance_scale": 3.0, **changes}
        return ref.diffusion.sample_loop(model, loop_schedule, SHAPE, generator=torch.Generator().manual_seed(47),
                                         **options, **settings)

    with reference_parts(impl.diffusion.module, ref.diffusion, LOOP_HELPERS + ("guided_model_output",)):
        got = impl.diffusion.sample_loop(model, loop_schedule, SHAPE, generator=torch.Generator().manual_seed(47),
                                         class_labels=labels, guidance_scale=3.0, **options)
    check_close(got, reference(), function="sample_loop", section="4.7",
                inputs={"shape": SHAPE, **options, "class_labels": labels, "guidance_scale": 3.0},
                mistakes={"loop_guidance_ignored": reference(guidance_scale=None),
                          "loop_labels_ignored": [reference(class_labels=None, guidance_scale=None),
                                                  reference(class_labels=torch.full_like(labels, 4))]})


@pytest.mark.points(2)
@pytest.mark.exercise("4.7", "sample_loop")
def test_sample_loop_trajectory(impl, ref, loop_schedule, toy_model):
    """sample_loop records x_t and x̂_0 before every step, then the final sample"""
    options = dict(sampler="ddim", num_steps=6, eta=0.5, prediction="v")
    mine, theirs = ref.diffusion.Trajectory(), ref.diffusion.Trajectory()
    with reference_parts(impl.diffusion.module, ref.diffusion, LOOP_HELPERS):
        impl.diffusion.sample_loop(toy_model, loop_schedule, SHAPE, generator=torch.Generator().manual_seed(44),
                                   trajectory=mine, **options)
    ref.diffusion.sample_loop(toy_model, loop_schedule, SHAPE, generator=torch.Generator().manual_seed(44),
                              trajectory=theirs, **options)
    if mine.timesteps != theirs.timesteps:
        fail(f"sample_loop(…, trajectory=Trajectory()) recorded the timesteps {mine.timesteps}; expected "
             f"{theirs.timesteps}: call trajectory.record(t, x_t, x0_hat) once per step, before the step, "
             "and trajectory.finish(x) after the loop. See IMPLEMENTATION_GUIDE.md §4.7.")
    inputs = {"shape": SHAPE, **options, "trajectory": "Trajectory()"}
    after_step = torch.cat([theirs.x_t[1:], theirs.x_t[-1:]]).double()  # each x recorded once stepped
    check_close(mine.x_t.double(), theirs.x_t.double(), function="sample_loop", section="4.7", inputs=inputs,
                what="the recorded x_t frames", rtol=1e-5, atol=1e-6,
                mistakes={"trajectory_after_step": after_step})
    check_close(mine.x0_hat.double(), theirs.x0_hat.double(), function="sample_loop", section="4.7",
                inputs=inputs, what="the recorded x̂_0 frames", rtol=1e-5, atol=1e-6)


@pytest.mark.points(2)
@pytest.mark.exercise("4.7", "sample_loop")
@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)],
                         ids=["ddim eta 0", "ddim eta 1", "ddpm"])
def test_sample_loop_draws(impl, ref, loop_schedule, toy_model, sampler, eta):
    """sample_loop draws x_T, then one z per step that adds noise, and nothing else"""
    generator = torch.Generator().manual_seed(45)
    with reference_parts(impl.diffusion.module, ref.diffusion, LOOP_HELPERS):
        impl.diffusion.sample_loop(toy_model, loop_schedule, SHAPE, sampler=sampler, num_steps=5, eta=eta,
                                   generator=generator)
    draws = 1 + (5 if sampler == "ddpm" or eta > 0 else 0)
    expected = torch.Generator().manual_seed(45)
    for _ in range(draws):
        torch.randn(SHAPE, generator=expected, dtype=F64)
    if not torch.equal(torch.rand(8, generator=generator), torch.rand(8, generator=expected)):
        fail(f"sample_loop(sampler={sampler!r}, num_steps=5, eta={eta}) used the generator differently from "
             f"the documented order: x_T first, then one z of shape {SHAPE} per step that adds noise "
             f"({draws} draws of the schedule's dtype in all here), each through draw_noise(shape, generator, "
             "dtype, device). See IMPLEMENTATION_GUIDE.md §4.7.")


# ---------------------------------------------------------------------------
# Properties that hold for any correct implementation (each step with the reference's helpers)
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("4.3", "posterior_mean_variance")
def test_posterior_matches_schedule(impl, ref, schedule, images):
    """For t_prev = t − 1 the posterior uses the schedule's own coefficients and β̃ (§1.4)"""
    x_t, x0_hat, _, _ = images
    t = torch.tensor([0, 1, 2, 250, 500, 998, 999])
    with alone(impl, ref, "posterior_mean_variance"):
        mean, variance = unpack(impl.diffusion.posterior_mean_variance(x0_hat, x_t, t, t - 1, schedule, "small"),
                                "posterior_mean_variance", 2, "mean, variance")
    expected_mean = per_image(schedule.posterior_mean_coef1[t]) * x0_hat + per_image(schedule.posterior_mean_coef2[t]) * x_t
    inputs = {"t": t, "t_prev": t - 1, "variance": "small"}
    check_close(mean, expected_mean, function="posterior_mean_variance", section="4.3", inputs=inputs,
                what="the mean, against posterior_mean_coef1 · x̂_0 + posterior_mean_coef2 · x_t")
    check_close(variance, per_image(schedule.posterior_variance[t]), function="posterior_mean_variance",
                section="4.3", inputs=inputs, what="the variance, against schedule.posterior_variance")


@pytest.mark.points(2)
@pytest.mark.exercise("4.4", "ddpm_step")
@pytest.mark.parametrize("variance", ["small", "large"])
def test_last_step_adds_no_noise(impl, ref, schedule, images, variance):
    """The last step (t_prev = −1) gives the same image whatever the noise"""
    x_t, x0_hat, _, noise = images
    t = torch.tensor([0, 3, 999, 0, 10, 500, 1])
    last = torch.full_like(t, -1)
    with alone(impl, ref, "ddpm_step"):
        first = impl.diffusion.ddpm_step(x_t, t, last, x0_hat, schedule, noise, variance)
        second = impl.diffusion.ddpm_step(x_t, t, last, x0_hat, schedule, 3 * noise + 1, variance)
    check_close(first, second, function="ddpm_step", section="4.4",
                inputs={"t": t, "t_prev": last, "variance": variance},
                what="the output with another noise (it must not depend on the noise at the last step)",
                mistakes={"noise_at_last_step": first})


@pytest.mark.points(1)
@pytest.mark.exercise("4.5", "ddim_step")
def test_ddim_step_long_jumps_in_float32(impl, ref):
    """ddim_step at η = 1 stays finite in float32 on long jumps, where 1 − ᾱ_prev − σ² rounds below 0"""
    schedule = ref.noise_schedule.NoiseSchedule.from_name("cosine", T, dtype=torch.float32)
    t, t_prev = torch.tensor([999, 984, 970]), torch.tensor([800, 1, 0])  # pairs that round below 0 (§4.5)
    generator = torch.Generator().manual_seed(49)
    x_t, x0_hat, eps_hat, noise = (torch.randn((3, 1, 4, 4), generator=generator) for _ in range(4))
    with alone(impl, ref, "ddim_step"):
        got = impl.diffusion.ddim_step(x_t, t, t_prev, x0_hat, eps_hat, schedule, 1.0, noise)
    expected = ref.diffusion.ddim_step(x_t, t, t_prev, x0_hat, eps_hat, schedule, 1.0, noise)
    check_close(got, expected, function="ddim_step", section="4.5",
                inputs={"t": t, "t_prev": t_prev, "eta": 1.0, "schedule": schedule},
                mistakes={"ddim_not_clamped": ddim_formula(schedule, x0_hat, eps_hat, noise, t, t_prev, 1.0,
                                                           clamped=False)})


@pytest.mark.points(2)
@pytest.mark.exercise("4.5", "ddim_step")
def test_ddim_eta_zero_is_deterministic(impl, ref, schedule, images):
    """DDIM with η = 0 does not depend on the noise"""
    x_t, x0_hat, eps_hat, noise = images
    with alone(impl, ref, "ddim_step"):
        first = impl.diffusion.ddim_step(x_t, T_NOW, T_PREV, x0_hat, eps_hat, schedule, 0.0, noise)
        second = impl.diffusion.ddim_step(x_t, T_NOW, T_PREV, x0_hat, eps_hat, schedule, 0.0, 2 * noise - 1)
    check_close(first, second, function="ddim_step", section="4.5",
                inputs={"eta": 0.0, "pairs": PAIR_NAMES},
                what="the output with another noise (η = 0 must ignore it)", mistakes={"ddim_eta_ignored": first})


@pytest.mark.points(2)
@pytest.mark.exercise("4.5", "ddim_step")
def test_ddim_eta_one_is_ddpm(impl, ref, schedule, images):
    """DDIM with η = 1 on consecutive steps is the DDPM step with β̃"""
    x_t, x0_hat, _, noise = images
    t = torch.tensor([1, 2, 100, 500, 900, 998, 999])
    eps_hat = ref.diffusion.eps_from_x0(x_t, t, x0_hat, schedule)  # consistent with x̂_0, as after §4.1
    with alone(impl, ref, "ddim_step"):
        ddim = impl.diffusion.ddim_step(x_t, t, t - 1, x0_hat, eps_hat, schedule, 1.0, noise)
    ddpm = ref.diffusion.ddpm_step(x_t, t, t - 1, x0_hat, schedule, noise, "small")
    check_close(ddim, ddpm, function="ddim_step", section="4.5",
                inputs={"t": t, "t_prev": t - 1, "eta": 1.0},
                what="DDIM's output, against the DDPM step with variance='small' and the same noise",
                rtol=1e-6, atol=1e-9)
