"""Phase 3 checks: the training targets, the loss, one training step and the EMA (guide §3.1–§3.4).

Each function is graded alone: inputs are built with the reference, and the
checks of training_step put the reference's helpers (q_sample, v_target and the
§3.1–§3.2 functions) into your train module, so only the step itself is judged.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grading.checker import check_close, fail
from grading.modules import randomize_, reference_parts

pytestmark = pytest.mark.phase3

F64 = torch.float64
T = 1000
HELPERS = ("q_sample", "v_target")
STEP_HELPERS = ("training_target", "min_snr_weights", "diffusion_loss", "sample_training_inputs")


@pytest.fixture(scope="module")
def schedule(ref):
    return ref.noise_schedule.NoiseSchedule.from_name("cosine", T, dtype=F64)


@pytest.fixture(scope="module")
def batch():
    """Seeded x0 in [-1, 1] with 3 channels, noise, and timesteps at both ends and in the middle."""
    generator = torch.Generator().manual_seed(3)
    x0 = torch.rand((4, 3, 6, 6), generator=generator, dtype=F64) * 2 - 1
    noise = torch.randn((4, 3, 6, 6), generator=generator, dtype=F64)
    t = torch.tensor([0, 1, 500, T - 1])
    return x0, noise, t


def per_image(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, 1, 1, 1)


# ---------------------------------------------------------------------------
# §3.1 to_model_range and training_target
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("3.1", "to_model_range")
def test_to_model_range(impl, ref):
    """to_model_range maps [0, 1] to [-1, 1]"""
    images = torch.rand((3, 1, 5, 5), generator=torch.Generator().manual_seed(4))
    images[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # both ends
    check_close(
        impl.train.to_model_range(images), ref.train.to_model_range(images),
        function="to_model_range", section="3.1", inputs={"images": images},
        mistakes={"data_unit_range": images, "data_scaled_255": [images / 127.5 - 1, images / 255 * 2 - 1],
                  "data_not_stretched": images - 0.5},
    )


@pytest.mark.points(2)
@pytest.mark.exercise("3.1", "training_target")
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_training_target(impl, ref, schedule, batch, prediction):
    """training_target is ε, x_0 or v for each prediction type"""
    x0, noise, t = batch
    with reference_parts(impl.train.module, ref.diffusion, HELPERS):
        got = impl.train.training_target(prediction, x0, noise, t, schedule)
    check_close(
        got, ref.train.training_target(prediction, x0, noise, t, schedule),
        function="training_target", section="3.1",
        inputs={"prediction": prediction, "x0": x0, "noise": noise, "t": t, "schedule": schedule},
        mistakes=target_mistakes(ref, prediction, x0, noise, t, schedule),
    )


def target_mistakes(ref, prediction: str, x0, noise, t, schedule) -> dict:
    """The wrong targets that the checks of training_target name."""
    if prediction != "v":
        return {"targets_swapped": noise if prediction == "x0" else x0}
    alpha_bar = per_image(schedule.alphas_cumprod[t])
    return {"v_wrong_sign": -ref.diffusion.v_target(x0, t, noise, schedule), "eps_target_for_v": noise,
            "missing_sqrt": alpha_bar * noise - (1 - alpha_bar) * x0,
            "v_args_swapped": ref.diffusion.v_target(noise, t, x0, schedule)}


# ---------------------------------------------------------------------------
# §3.2 min_snr_weights and diffusion_loss
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("3.2", "min_snr_weights")
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_weights(impl, ref, schedule, prediction):
    """min_snr_weights is min(SNR, γ) converted to the prediction type"""
    check_min_snr_weights(impl, ref, schedule, torch.tensor([0, 10, 100, 400, 999]), prediction, 5.0)


def check_min_snr_weights(impl, ref, schedule, t: torch.Tensor, prediction: str, gamma: float) -> None:
    """The learner's min_snr_weights (with the reference's helpers) against the reference's."""
    snr = schedule.snr[t]
    clipped = snr.clamp(max=gamma)
    formulas = {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}
    unclipped = {"eps": torch.ones_like(snr), "x0": snr, "v": snr / (snr + 1)}

    def weight(snr: torch.Tensor, clipped: torch.Tensor) -> torch.Tensor:  # the prediction's formula, any SNR
        return {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}[prediction]

    earlier, alpha_bar = schedule.snr[t - 1], schedule.alphas_cumprod[t]  # t − 1 wraps round at t = 0
    mistakes = {"snr_not_clipped": unclipped[prediction],
                "min_snr_formula": [w for name, w in formulas.items() if name != prediction],
                "snr_clip_wrong_way": weight(snr, snr.clamp(min=gamma)),
                "t_off_by_one": weight(earlier, earlier.clamp(max=gamma)),
                "alpha_bar_as_snr": weight(alpha_bar, alpha_bar.clamp(max=gamma))}
    if gamma != 5.0:
        mistakes["min_snr_gamma_ignored"] = weight(snr, snr.clamp(max=5.0))
    with reference_parts(impl.train.module, ref.diffusion, HELPERS):
        got = impl.train.min_snr_weights(t, schedule, prediction, gamma)
    check_close(
        got, ref.train.min_snr_weights(t, schedule, prediction, gamma),
        function="min_snr_weights", section="3.2",
        inputs={"t": t, "schedule": schedule, "prediction": prediction, "gamma": gamma},
        mistakes=mistakes,
    )


LOSS_CASES = [(loss, weighted) for loss in ("l2", "l1", "huber") for weighted in (False, True)]


@pytest.mark.points(1)
@pytest.mark.exercise("3.2", "diffusion_loss")
@pytest.mark.parametrize("loss_type, weighted", LOSS_CASES,
                         ids=[f"{loss}{' weighted' if w else ''}" for loss, w in LOSS_CASES])
def test_diffusion_loss(impl, ref, batch, loss_type, weighted):
    """diffusion_loss: per-image mean error, weighted, averaged over the batch"""
    x0, noise, _ = batch
    output = noise * 1.7 + 0.3 * x0  # errors both below and above Huber's δ = 1
    weights = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=F64) if weighted else None
    check_diffusion_loss(impl, ref, output, noise, loss_type, weights)


def check_diffusion_loss(impl, ref, output: torch.Tensor, target: torch.Tensor, loss_type: str,
                         weights: torch.Tensor | None) -> None:
    """The learner's diffusion_loss against the reference's, naming the wrong reductions."""
    per_pixel = {"l2": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}[loss_type](output, target, reduction="none")
    w = weights if weights is not None else torch.ones(len(output), dtype=output.dtype)
    mistakes = {"loss_wrong_reduction": [(per_pixel.sum(dim=(1, 2, 3)) * w).mean(), (per_pixel.mean(dim=(1, 2, 3)) * w).sum(),
                                         (per_pixel * per_image(w)).sum()]}
    loss = lambda per_pixel: (per_pixel.mean(dim=(1, 2, 3)) * w).mean()  # noqa: E731 (the right reduction)
    if weights is not None:
        mistakes["loss_weights_ignored"] = per_pixel.mean()
        mistakes["loss_weights_after_mean"] = per_pixel.mean() * w.mean()
        mistakes["loss_weights_normalised"] = (per_pixel.mean(dim=(1, 2, 3)) * w).sum() / w.sum()
        if output.shape[-1] == len(w):  # (B,) weights broadcast against W without an error
            mistakes["no_broadcast_shape"] = (per_pixel * w).mean()
    if loss_type == "huber":
        error = (output - target).abs()
        mistakes["huber_without_half"] = loss(torch.where(error <= 1, error**2, error - 0.5))
    if loss_type != "l2":
        mistakes["loss_type_ignored"] = loss(F.mse_loss(output, target, reduction="none"))
    got = impl.train.diffusion_loss(output, target, loss_type, weights)
    check_close(
        got, ref.train.diffusion_loss(output, target, loss_type, weights),
        function="diffusion_loss", section="3.2",
        inputs={"output": output, "target": target, "loss_type": loss_type, "weights": weights},
        mistakes=mistakes,
    )


# ---------------------------------------------------------------------------
# §3.3 sample_training_inputs and training_step
# ---------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.exercise("3.3", "sample_training_inputs")
def test_sample_training_inputs(impl, ref):
    """sample_training_inputs draws t ∈ {0, …, T−1}, then ε shaped like x0, from the generator"""
    check_sample_training_inputs(impl, ref, torch.zeros((6, 3, 4, 5), dtype=torch.float32), T, seed=7)


def check_sample_training_inputs(impl, ref, x0: torch.Tensor, num_timesteps: int, seed: int) -> None:
    """The learner's t and noise against the reference's, for one seed, naming the wrong draws."""
    generator = torch.Generator().manual_seed(seed)
    got_t, got_noise = impl.train.sample_training_inputs(x0, num_timesteps, generator)
    want_t, want_noise = ref.train.sample_training_inputs(x0, num_timesteps, torch.Generator().manual_seed(seed))
    batch = (x0.shape[0],)

    def drawn(low: int, high: int, noise_first: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """t from torch.randint(low, high) and ε, in this order or the other."""
        source = torch.Generator().manual_seed(seed)
        if noise_first:
            noise = torch.randn(x0.shape, generator=source, dtype=x0.dtype)
            return torch.randint(low, high, batch, generator=source), noise
        t = torch.randint(low, high, batch, generator=source)
        return t, torch.randn(x0.shape, generator=source, dtype=x0.dtype)

    swapped_t, swapped_noise = drawn(0, num_timesteps, noise_first=True)
    from_one_t, _ = drawn(1, num_timesteps + 1)
    short_t, _ = drawn(0, num_timesteps - 1)
    inputs = {"x0": x0, "num_timesteps": num_timesteps, "generator": f"torch.Generator().manual_seed({seed})"}
    check_close(got_t, want_t, function="sample_training_inputs", section="3.3", inputs=inputs, what="t",
                mistakes={"t_from_one": from_one_t, "draw_order": swapped_t, "t_upper_bound_off_by_one": short_t})
    only_t = torch.Generator().manual_seed(seed)
    torch.randint(0, num_timesteps, batch, generator=only_t)
    mistakes = {"noise_shape": torch.full((x0.shape[0], 1, *x0.shape[2:]), float("nan"), dtype=x0.dtype),
                "draw_order": swapped_noise}
    if torch.equal(generator.get_state(), only_t.get_state()):  # the noise came from elsewhere, e.g. the global RNG
        mistakes["generator_ignored"] = got_noise
    check_close(got_noise, want_noise, function="sample_training_inputs", section="3.3", inputs=inputs,
                what="the noise", mistakes=mistakes)


def tiny_unet(ref, seed: int) -> nn.Module:
    """A small reference U-Net with random float64 weights (the model is an input here)."""
    model = ref.unet.UNet(base_channels=8, channel_mults=(1, 2), attention_levels=(1,), num_heads=2, groups=4,
                          in_channels=3)
    return randomize_(model.double(), seed=seed)


@pytest.mark.points(3)
@pytest.mark.exercise("3.3", "training_step")
@pytest.mark.parametrize("prediction, loss_type, snr_gamma", [("eps", "l2", None), ("v", "huber", 5.0)],
                         ids=["eps l2", "v huber min-SNR"])
def test_training_step_loss(impl, ref, schedule, batch, prediction, loss_type, snr_gamma):
    """training_step returns the loss of the model on x_t for the given t and noise"""
    x0, noise, t = batch
    check_training_step_loss(impl, ref, tiny_unet(ref, seed=60), x0, schedule, t, noise,
                             prediction=prediction, loss_type=loss_type, snr_gamma=snr_gamma)


def check_training_step_loss(impl, ref, model: nn.Module, x0, schedule, t, noise, **options) -> None:
    """The learner's loss for the given t and noise against the reference's, naming what was left out."""
    prediction, loss_type, snr_gamma = options["prediction"], options["loss_type"], options["snr_gamma"]
    with reference_parts(impl.train.module, ref.diffusion, HELPERS), \
            reference_parts(impl.train.module, ref.train, STEP_HELPERS), torch.no_grad():
        got = impl.train.training_step(model, x0, schedule, t=t, noise=noise, **options)

    def step(**changed) -> torch.Tensor:  # the reference's loss, with some options changed
        return ref.train.training_step(model, x0, schedule, t=t, noise=noise, **{**options, **changed})

    with torch.no_grad():
        expected = step()
        weights = ref.train.min_snr_weights(t, schedule, prediction, snr_gamma) if snr_gamma else None
        x_t = ref.diffusion.q_sample(x0, t, noise, schedule)
        target = ref.train.training_target(prediction, x0, noise, t, schedule)
        mistakes = {"model_sees_x0": ref.train.diffusion_loss(model(x0, t), target, loss_type, weights)}
        if prediction != "eps":
            wrong_target = ref.train.training_target(prediction, x_t, noise, t, schedule)
            mistakes["target_from_xt"] = ref.train.diffusion_loss(model(x_t, t), wrong_target, loss_type, weights)
        if loss_type != "l2":
            mistakes["step_loss_type_not_passed"] = step(loss_type="l2")
        if snr_gamma is not None:
            mistakes["step_snr_gamma_ignored"] = step(snr_gamma=None)
        if snr_gamma not in (None, 5.0):
            mistakes["step_gamma_not_passed"] = step(snr_gamma=5.0)
    check_close(got, expected, function="training_step", section="3.3",
                inputs={"x0": x0, "t": t, "noise": noise, **options}, mistakes=mistakes)


@pytest.mark.points(2)
@pytest.mark.exercise("3.3", "training_step")
def test_training_step_gradients(impl, ref, schedule, batch):
    """The loss of training_step gives the reference's gradients on every parameter"""
    x0, noise, t = batch
    mine, theirs = tiny_unet(ref, seed=61), tiny_unet(ref, seed=61)
    with reference_parts(impl.train.module, ref.diffusion, HELPERS), \
            reference_parts(impl.train.module, ref.train, STEP_HELPERS):
        loss = impl.train.training_step(mine, x0, schedule, t=t, noise=noise)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        fail("training_step must return the loss attached to the model's graph (a tensor with "
             "requires_grad=True): do not call .item(), .detach() or torch.no_grad() inside it. "
             "See IMPLEMENTATION_GUIDE.md §3.3.")
    impl.backward(loss)  # through your code, in the worker
    ref.train.training_step(theirs, x0, schedule, t=t, noise=noise).backward()
    got = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros_like(p).flatten() for p in mine.parameters()])
    expected = torch.cat([p.grad.flatten() for p in theirs.parameters()])
    check_close(got, expected, function="training_step", section="3.3",
                inputs={"x0": x0, "t": t, "noise": noise}, what="the gradients (all parameters, flattened)",
                rtol=1e-8, atol=1e-10)


@pytest.mark.points(2)
@pytest.mark.exercise("3.3", "training_step")
def test_training_step_class_labels(impl, ref, schedule, batch):
    """training_step passes class_labels on to the model (class-conditional training needs them)"""
    x0, noise, t = batch
    model = randomize_(ref.unet.UNet(base_channels=8, channel_mults=(1, 2), attention_levels=(1,), num_heads=2,
                                     groups=4, in_channels=3, num_classes=4).double(), seed=63)
    labels = torch.tensor([2, 0, 3, 1])
    with reference_parts(impl.train.module, ref.diffusion, HELPERS), \
            reference_parts(impl.train.module, ref.train, STEP_HELPERS), torch.no_grad():
        got = impl.train.training_step(model, x0, schedule, t=t, noise=noise, class_labels=labels)
    with torch.no_grad():
        expected = ref.train.training_step(model, x0, schedule, t=t, noise=noise, class_labels=labels)
        unlabelled = ref.train.training_step(model, x0, schedule, t=t, noise=noise)
    check_close(got, expected, function="training_step", section="3.3",
                inputs={"x0": x0, "t": t, "noise": noise, "class_labels": labels, "model": "a UNet with 4 classes"},
                mistakes={"training_labels_ignored": unlabelled})


@pytest.mark.points(2)
@pytest.mark.exercise("3.3", "training_step")
def test_training_step_draws_from_the_generator(impl, ref, schedule, batch):
    """Without t or noise, training_step draws both from the generator (t first, then ε), keeping any given one"""
    x0, noise, t = batch
    model = tiny_unet(ref, seed=62)
    for given in ({}, {"t": t}, {"noise": noise}):
        with reference_parts(impl.train.module, ref.diffusion, HELPERS), \
                reference_parts(impl.train.module, ref.train, STEP_HELPERS), torch.no_grad():
            got = impl.train.training_step(model, x0, schedule, generator=torch.Generator().manual_seed(8), **given)
        with torch.no_grad():
            expected = ref.train.training_step(model, x0, schedule, generator=torch.Generator().manual_seed(8), **given)
            mistakes = {}
            if "t" in given:  # t was not drawn, so ε came first out of the generator
                first = torch.randn(x0.shape, generator=torch.Generator().manual_seed(8), dtype=x0.dtype)
                mistakes["step_draws_only_missing"] = ref.train.training_step(model, x0, schedule, noise=first, **given)
            if given:  # the given one thrown away for the draw
                mistakes["step_given_discarded"] = ref.train.training_step(
                    model, x0, schedule, generator=torch.Generator().manual_seed(8))
        check_close(got, expected, function="training_step", section="3.3",
                    inputs={"x0": x0, **given, "generator": "torch.Generator().manual_seed(8)"}, mistakes=mistakes)


# ---------------------------------------------------------------------------
# §3.4 ema_decay and ema_update
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("3.4", "ema_decay")
def test_ema_decay(impl, ref):
    """ema_decay warms up as (1 + step) / (10 + step), capped at max_decay"""
    check_ema_decay(impl, ref, [0, 1, 8, 50, 500, 100_000], (0.999, 0.9))


def check_ema_decay(impl, ref, steps: list[int], max_decays: tuple[float, ...]) -> None:
    """The learner's decays at these steps against the reference's, for each max_decay."""
    for max_decay in max_decays:
        got = torch.tensor([float(impl.train.ema_decay(step, max_decay)) for step in steps], dtype=F64)
        expected = torch.tensor([ref.train.ema_decay(step, max_decay) for step in steps], dtype=F64)
        check_close(
            got, expected, function="ema_decay", section="3.4",
            inputs={"step": torch.tensor(steps), "max_decay": max_decay}, what="the decays at these steps",
            mistakes={"ema_no_warmup": torch.full((len(steps),), max_decay, dtype=F64),
                      "ema_inverted": 1 - expected,
                      "ema_warmup_off_by_one": torch.tensor([min(max_decay, s / (10 + s)) for s in steps], dtype=F64),
                      "ema_max_not_min": torch.tensor([max(max_decay, (1 + s) / (10 + s)) for s in steps], dtype=F64)},
        )


class TwoLayers(nn.Module):
    """A small model with parameters and a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)


@pytest.mark.points(3)
@pytest.mark.exercise("3.4", "ema_update")
def test_ema_update(impl, ref):
    """ema_update moves the average towards the model: decay · θ_ema + (1 − decay) · θ"""
    model = randomize_(TwoLayers().double(), seed=70)
    model.norm.running_mean.fill_(0.25)
    check_ema_update(impl, ref, model, randomize_(TwoLayers().double(), seed=71), 0.9)


def check_ema_update(impl, ref, model: nn.Module, start: nn.Module, decay: float) -> None:
    """One ema_update of a copy of ``start`` towards ``model``, against the reference's, whole state_dicts."""
    mine, theirs = copy.deepcopy(start), copy.deepcopy(start)
    impl.train.ema_update(mine, model, decay)
    ref.train.ema_update(theirs, model, decay)
    flat = lambda m: torch.cat([v.flatten().to(F64) for v in m.state_dict().values()])  # noqa: E731

    def updated(parameter_decay: float | None, copy_buffers: bool = True) -> torch.Tensor:
        """``start`` with its parameters averaged with this decay (None: left alone), its buffers copied or not."""
        result = copy.deepcopy(start)
        with torch.no_grad():
            for averaged, current in zip(result.parameters(), model.parameters()):
                if parameter_decay is not None:
                    averaged.copy_(parameter_decay * averaged + (1 - parameter_decay) * current)
            for averaged, current in zip(result.buffers(), model.buffers()):
                if copy_buffers:
                    averaged.copy_(current)
        return flat(result)

    check_close(flat(mine), flat(theirs), function="ema_update", section="3.4",
                inputs={"decay": decay}, what="the EMA model's state_dict (flattened)",
                mistakes={"ema_inverted": updated(1 - decay), "ema_buffers_not_copied": updated(decay, False),
                          "ema_not_in_place": [updated(None), updated(None, False)]})
    if any(p.requires_grad and p.grad is not None for p in mine.parameters()):
        fail("ema_update left gradients on the EMA model: update under torch.no_grad(). See §3.4.")
