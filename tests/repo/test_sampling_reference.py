"""The reference samplers against answers known in closed form (independent of the phase checks).

With data whose optimal denoiser is known exactly, a correct sampler must give back the
data distribution: a one-image dataset comes back exactly, and Gaussian data comes back
with its mean and standard deviation.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from provided.choices import SPACINGS
from solutions import diffusion
from solutions.noise_schedule import NoiseSchedule

F64 = torch.float64


class OneImageDenoiser(nn.Module):
    """The exact denoiser of a dataset holding a single image x*: it knows x_0 = x* at every t."""

    def __init__(self, image: torch.Tensor, schedule: NoiseSchedule, prediction: str) -> None:
        super().__init__()
        self.register_buffer("image", image)
        self.schedule, self.prediction = schedule, prediction

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = self.image.expand_as(x_t)
        signal = self.schedule.sqrt_alphas_cumprod[t].reshape(-1, 1, 1, 1)
        noise = self.schedule.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1, 1)
        eps = (x_t - signal * x0) / noise
        return {"eps": eps, "x0": x0, "v": signal * eps - noise * x0}[self.prediction]


class GaussianDenoiser(nn.Module):
    """The exact x_0-predictor for data x_0 ~ N(μ, s² I): E[x_0 | x_t] in closed form."""

    def __init__(self, mean: float, std: float, schedule: NoiseSchedule) -> None:
        super().__init__()
        self.mean, self.var, self.schedule = mean, std**2, schedule
        self.register_buffer("unused", torch.zeros(1, dtype=F64))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = self.schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        gain = alpha_bar.sqrt() * self.var / (alpha_bar * self.var + 1 - alpha_bar)
        return self.mean + gain * (x_t - alpha_bar.sqrt() * self.mean)


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule.from_name("cosine", 1000, dtype=F64)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("sampler, steps, spacing", [("ddim", 10, "trailing"), ("ddim", 50, "leading"),
                                                     ("ddpm", 1000, "trailing"), ("ddpm", 20, "linspace")])
def test_one_image_dataset_comes_back_exactly(schedule, prediction, sampler, steps, spacing):
    image = torch.rand((1, 1, 5, 5), generator=torch.Generator().manual_seed(0), dtype=F64) * 1.6 - 0.8
    model = OneImageDenoiser(image, schedule, prediction)
    samples = diffusion.sample_loop(model, schedule, (3, 1, 5, 5), sampler=sampler, num_steps=steps, eta=0.5,
                                    prediction=prediction, spacing=spacing, clip_x0=False,
                                    generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(samples, image.expand(3, -1, -1, -1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sampler, steps, eta", [("ddim", 100, 0.0), ("ddim", 100, 1.0), ("ddpm", 1000, 0.0)])
def test_gaussian_data_comes_back_with_its_mean_and_spread(schedule, sampler, steps, eta):
    model = GaussianDenoiser(mean=0.3, std=0.5, schedule=schedule)
    samples = diffusion.sample_loop(model, schedule, (256, 1, 4, 4), sampler=sampler, num_steps=steps, eta=eta,
                                    prediction="x0", clip_x0=False, generator=torch.Generator().manual_seed(2))
    assert abs(samples.mean().item() - 0.3) < 0.03
    assert abs(samples.std().item() - 0.5) < 0.05


def test_ddim_eta_zero_is_a_deterministic_map_of_x_T(schedule):
    """Same seed, same images; and two runs differ only through x_T."""
    model = GaussianDenoiser(mean=0.0, std=0.5, schedule=schedule)
    first = diffusion.ddim_sample(model, schedule, (4, 1, 3, 3), num_steps=20, prediction="x0",
                                  generator=torch.Generator().manual_seed(3))
    second = diffusion.ddim_sample(model, schedule, (4, 1, 3, 3), num_steps=20, prediction="x0",
                                   generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_trajectory_records_every_visited_step_then_the_sample(schedule):
    model = GaussianDenoiser(mean=0.0, std=0.5, schedule=schedule)
    trajectory = diffusion.Trajectory()
    samples = diffusion.ddim_sample(model, schedule, (2, 1, 3, 3), num_steps=5, prediction="x0",
                                    generator=torch.Generator().manual_seed(4), trajectory=trajectory)
    assert trajectory.timesteps == diffusion.inference_timesteps(1000, 5).tolist() + [-1]
    assert trajectory.x_t.shape == (6, 2, 1, 3, 3) and trajectory.x0_hat.shape == (6, 2, 1, 3, 3)
    torch.testing.assert_close(trajectory.x_t[-1], samples.float())
    chosen = diffusion.Trajectory(timesteps=[999, 599])
    diffusion.ddim_sample(model, schedule, (2, 1, 3, 3), num_steps=5, prediction="x0",
                          generator=torch.Generator().manual_seed(4), trajectory=chosen)
    assert chosen.timesteps == [999, 599, -1]


@pytest.mark.parametrize("num_timesteps", [2, 7, 10, 100, 999, 1000])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_inference_timesteps_are_n_distinct_descending_valid_steps(num_timesteps, spacing):
    for num_steps in range(1, num_timesteps + 1):
        steps = diffusion.inference_timesteps(num_timesteps, num_steps, spacing)
        assert steps.dtype == torch.int64 and steps.shape == (num_steps,)
        assert (steps[:-1] > steps[1:]).all() and 0 <= steps.min() and steps.max() < num_timesteps
    ends = diffusion.inference_timesteps(num_timesteps, min(num_timesteps, 5), spacing)
    if spacing != "leading":
        assert ends[0] == num_timesteps - 1  # trailing and linspace start from pure noise
    if spacing != "trailing":
        assert ends[-1] == 0  # leading and linspace end at t = 0


@pytest.mark.parametrize("bad, message", [
    (dict(sampler="euler"), "sampler must be one of ddpm, ddim"),
    (dict(eta=1.5), "eta must be a number in [0, 1]"),
    (dict(num_steps=1001), "num_steps must be an int in [1, T = 1000]"),
    (dict(spacing="middle"), "spacing must be one of"),
    (dict(variance="medium"), "variance must be one of small, large"),
])
def test_sample_loop_rejects_bad_arguments_by_name(schedule, bad, message):
    model = GaussianDenoiser(mean=0.0, std=0.5, schedule=schedule)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        diffusion.sample_loop(model, schedule, (1, 1, 2, 2), **bad)


def test_ddim_step_refuses_t_prev_not_below_t(schedule):
    x = torch.zeros((2, 1, 2, 2), dtype=F64)
    with pytest.raises(ValueError, match="t_prev must satisfy"):
        diffusion.ddim_step(x, torch.tensor([5, 5]), torch.tensor([4, 5]), x, x, schedule)
