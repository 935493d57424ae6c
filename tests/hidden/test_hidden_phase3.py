"""Hidden Phase 3 checks: targets, losses, training steps and the EMA with other schedules, T, shapes and seeds.

Students never see these (the student release leaves tests/hidden/ out), so code
fitted to the visible checks' inputs (a cosine schedule with T = 1000, γ = 5,
4 images of 3×6×6) rather than written from the guide still loses points here.
Each reuses the visible checks' helpers and the same wrong variants, so its
messages and named mistakes are the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from grading.checker import check_close, fail
from grading.modules import randomize_, reference_parts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))  # the visible checks, whatever ran first
import test_phase3_training as training  # noqa: E402

pytestmark = [pytest.mark.phase3, pytest.mark.visibility("hidden")]

F64 = training.F64
T_HIDDEN = 120


@pytest.fixture(scope="module")
def hidden_schedule(ref):
    return ref.noise_schedule.NoiseSchedule.from_name("sigmoid", T_HIDDEN, dtype=F64)


@pytest.fixture(scope="module")
def hidden_batch():
    """Seeded x0 in [-1, 1] with 3 channels on a non-square 8×4 image, noise, and timesteps at both ends."""
    generator = torch.Generator().manual_seed(303)
    x0 = torch.rand((3, 3, 8, 4), generator=generator, dtype=F64) * 2 - 1
    noise = torch.randn((3, 3, 8, 4), generator=generator, dtype=F64)
    t = torch.tensor([T_HIDDEN - 1, 0, 37])
    return x0, noise, t


# ---------------------------------------------------------------------------
# §3.1 to_model_range and training_target
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("3.1", "to_model_range")
def test_to_model_range_other_shape(impl, ref):
    """to_model_range on other shapes and a float64 batch"""
    images = torch.rand((2, 3, 4, 7), generator=torch.Generator().manual_seed(304), dtype=F64)
    images[1, 2, 3, 5:] = torch.tensor([1.0, 0.0], dtype=F64)  # both ends
    check_close(
        impl.train.to_model_range(images), ref.train.to_model_range(images),
        function="to_model_range", section="3.1", inputs={"images": images},
        mistakes={"data_unit_range": images, "data_scaled_255": [images / 127.5 - 1, images / 255 * 2 - 1],
                  "data_not_stretched": images - 0.5},
    )


@pytest.mark.points(1)
@pytest.mark.exercise("3.1", "training_target")
@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_training_target_other_schedule(impl, ref, hidden_schedule, hidden_batch, prediction):
    """training_target with a sigmoid schedule of T = 120 and other images"""
    x0, noise, t = hidden_batch
    with reference_parts(impl.train.module, ref.diffusion, training.HELPERS):
        got = impl.train.training_target(prediction, x0, noise, t, hidden_schedule)
    check_close(
        got, ref.train.training_target(prediction, x0, noise, t, hidden_schedule),
        function="training_target", section="3.1",
        inputs={"prediction": prediction, "x0": x0, "noise": noise, "t": t, "schedule": hidden_schedule},
        mistakes=training.target_mistakes(ref, prediction, x0, noise, t, hidden_schedule),
    )


# ---------------------------------------------------------------------------
# §3.2 min_snr_weights and diffusion_loss
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("3.2", "min_snr_weights")
def test_min_snr_weights_other_gamma(impl, ref, hidden_schedule):
    """min_snr_weights for v-prediction with γ = 1.5 on a sigmoid schedule of T = 120"""
    t = torch.tensor([T_HIDDEN - 1, 0, 60, 5, 90, 30])
    training.check_min_snr_weights(impl, ref, hidden_schedule, t, "v", 1.5)


HIDDEN_LOSSES = {"l1 weighted": ("l1", True), "huber weighted": ("huber", True)}


@pytest.mark.points(1)
@pytest.mark.exercise("3.2", "diffusion_loss")
@pytest.mark.parametrize("case", list(HIDDEN_LOSSES))
def test_diffusion_loss_other_shapes(impl, ref, case):
    """diffusion_loss on 3 one-channel 7×3 images, with other weights"""
    loss_type, weighted = HIDDEN_LOSSES[case]
    generator = torch.Generator().manual_seed(305)
    # Three images three pixels wide: weights broadcast against W by mistake give a value, which is named.
    target = torch.randn((3, 1, 7, 3), generator=generator, dtype=F64)
    output = target + 1.4 * torch.randn((3, 1, 7, 3), generator=generator, dtype=F64)  # errors both sides of δ = 1
    weights = torch.tensor([1.5, 0.2, 3.0], dtype=F64) if weighted else None
    training.check_diffusion_loss(impl, ref, output, target, loss_type, weights)


# ---------------------------------------------------------------------------
# §3.3 sample_training_inputs and training_step
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("3.3", "sample_training_inputs")
def test_sample_training_inputs_other_length(impl, ref):
    """sample_training_inputs with T = 37, a float64 batch of another shape and another seed"""
    training.check_sample_training_inputs(impl, ref, torch.zeros((5, 2, 3, 3), dtype=F64), 37, seed=306)


@pytest.mark.points(1)
@pytest.mark.exercise("3.3", "training_step")
def test_training_step_loss_other_settings(impl, ref, hidden_schedule, hidden_batch):
    """training_step for x0-prediction, L1 and min-SNR γ 2, a sigmoid schedule of T = 120 and other images"""
    x0, noise, t = hidden_batch
    training.check_training_step_loss(impl, ref, training.tiny_unet(ref, seed=307), x0, hidden_schedule, t, noise,
                                      prediction="x0", loss_type="l1", snr_gamma=2.0)


@pytest.mark.points(1)
@pytest.mark.exercise("3.3", "training_step")
def test_training_step_gradients_other_settings(impl, ref, hidden_schedule, hidden_batch):
    """The loss of training_step (v, Huber, min-SNR γ 3) gives the reference's gradients"""
    x0, noise, t = hidden_batch
    kwargs = dict(prediction="v", loss_type="huber", snr_gamma=3.0, t=t, noise=noise)
    mine, theirs = training.tiny_unet(ref, seed=308), training.tiny_unet(ref, seed=308)
    with reference_parts(impl.train.module, ref.diffusion, training.HELPERS), \
            reference_parts(impl.train.module, ref.train, training.STEP_HELPERS):
        loss = impl.train.training_step(mine, x0, hidden_schedule, **kwargs)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        fail("training_step must return the loss attached to the model's graph (a tensor with "
             "requires_grad=True): do not call .item(), .detach() or torch.no_grad() inside it. "
             "See IMPLEMENTATION_GUIDE.md §3.3.")
    impl.backward(loss)  # through your code, in the worker
    ref.train.training_step(theirs, x0, hidden_schedule, **kwargs).backward()
    got = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros_like(p).flatten() for p in mine.parameters()])
    expected = torch.cat([p.grad.flatten() for p in theirs.parameters()])
    check_close(got, expected, function="training_step", section="3.3",
                inputs={"x0": x0, "t": t, "noise": noise, "prediction": "v", "loss_type": "huber", "snr_gamma": 3.0},
                what="the gradients (all parameters, flattened)", rtol=1e-8, atol=1e-10)


@pytest.mark.points(1)
@pytest.mark.exercise("3.3", "training_step")
def test_training_step_draws_other_length(impl, ref, hidden_schedule):
    """Without t and noise, training_step draws them for the schedule's own T (120), from another seed"""
    x0 = torch.rand((6, 3, 4, 4), generator=torch.Generator().manual_seed(309), dtype=F64) * 2 - 1
    model = training.tiny_unet(ref, seed=310)
    with reference_parts(impl.train.module, ref.diffusion, training.HELPERS), \
            reference_parts(impl.train.module, ref.train, training.STEP_HELPERS), torch.no_grad():
        got = impl.train.training_step(model, x0, hidden_schedule, prediction="x0",
                                       generator=torch.Generator().manual_seed(311))
    with torch.no_grad():
        expected = ref.train.training_step(model, x0, hidden_schedule, prediction="x0",
                                           generator=torch.Generator().manual_seed(311))
    check_close(got, expected, function="training_step", section="3.3",
                inputs={"x0": x0, "schedule": hidden_schedule, "prediction": "x0",
                        "generator": "torch.Generator().manual_seed(311)"})


# ---------------------------------------------------------------------------
# §3.4 ema_decay and ema_update
# ---------------------------------------------------------------------------


def check_ema_decay(impl, ref):
    """ema_decay at other steps (200 000: past 0.9999), capped at other max_decay values."""
    training.check_ema_decay(impl, ref, [0, 2, 3, 17, 89, 161, 990, 12_345, 200_000], (0.9999, 0.95))


class ConvNorm(nn.Module):
    """Another small model with parameters and buffers (a convolution, a BatchNorm2d, a linear layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.norm = nn.BatchNorm2d(3)
        self.linear = nn.Linear(3, 2)


def check_ema_update(impl, ref):
    """ema_update with decay 0.65 on another model."""
    model = randomize_(ConvNorm().double(), seed=312)
    model.norm.running_mean.fill_(-0.5)
    model.norm.running_var.fill_(2.0)
    training.check_ema_update(impl, ref, model, randomize_(ConvNorm().double(), seed=313), 0.65)


EMA_CHECKS = [pytest.param(check, marks=pytest.mark.exercise("3.4", name), id=name)
              for name, check in (("ema_decay", check_ema_decay), ("ema_update", check_ema_update))]


@pytest.mark.points(1)
@pytest.mark.parametrize("check", EMA_CHECKS)
def test_ema_other_inputs(impl, ref, check):
    """The EMA with other steps, max_decay values, decay and model"""
    check(impl, ref)
