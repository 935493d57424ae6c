"""Hidden Phase 6 checks: the posterior, the autoencoder, its loss, the scale and latent sampling on other inputs.

Students never see these (the student release leaves tests/hidden/ out), so code
fitted to the visible checks' inputs (2 images of 4×3×3 latents, the default
autoencoder, β = 0.05, 3 latent channels) rather than written from the guide
still loses points here. Each calls the visible checks' bodies, so its messages
and named mistakes are the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))  # the visible checks, whatever ran first
import test_phase6_latent as latent  # noqa: E402

pytestmark = [pytest.mark.phase6, pytest.mark.visibility("hidden")]

F64 = latent.F64


@pytest.mark.points(1)
@pytest.mark.exercise("6.1", "posterior_parameters")
def test_posterior_parameters_other_shape(impl, ref):
    """posterior_parameters on 3 images of 2·5 channels, 2×5, with values beyond both clamps"""
    moments = latent.seeded((3, 10, 2, 5), 601) * 4
    moments[2, 7, 1, 4], moments[0, 9, 0, 0], moments[1, 2, 1, 1] = 33.0, -60.0, -41.0
    latent.check_posterior_parameters(impl, ref, moments)


@pytest.mark.points(1)
@pytest.mark.exercise("6.1", "posterior_sample")
def test_posterior_sample_other_shape(impl, ref):
    """posterior_sample on 1 image of 3×5×2, in float32"""
    mean, logvar, noise = (x.float() for x in latent.posterior_inputs(602, (1, 3, 5, 2)))
    latent.check_posterior_sample(impl, ref, mean, logvar, noise)


@pytest.mark.points(1)
@pytest.mark.exercise("6.1", "kl_divergence")
def test_kl_divergence_other_shape(impl, ref):
    """kl_divergence on 5 images of 1×4×2, near the prior and far from it"""
    mean, logvar, _ = latent.posterior_inputs(603, (5, 1, 4, 2))
    mean[0], logvar[0] = 0.0, 0.0  # exactly the prior: KL 0
    latent.check_kl_divergence(impl, ref, mean, logvar)


@pytest.mark.points(1)
@pytest.mark.exercise("6.2", "Autoencoder.encode")
def test_autoencoder_encode_other_config(impl, ref):
    """Autoencoder.encode with 4 levels, 3 latent channels, on 3 images of 2×16×24"""
    kwargs = dict(image_channels=2, latent_channels=3, channels=(4, 8, 8, 12), groups=4)
    latent.check_autoencoder_encode(impl, ref, kwargs, (3, 2, 16, 24), seed=604)


@pytest.mark.points(1)
@pytest.mark.exercise("6.2", "Autoencoder.decode")
def test_autoencoder_decode_other_config(impl, ref):
    """Autoencoder.decode with 4 levels, 3 latent channels, to 3 images of 2×16×24"""
    kwargs = dict(image_channels=2, latent_channels=3, channels=(4, 8, 8, 12), groups=4)
    latent.check_autoencoder_decode(impl, ref, kwargs, (3, 2, 16, 24), seed=606)


@pytest.mark.points(1)
@pytest.mark.exercise("6.3", "autoencoder_loss")
@pytest.mark.parametrize("reconstruction", ["l1", "l2"])
def test_autoencoder_loss_other_shapes(impl, ref, reconstruction):
    """autoencoder_loss on 5 RGB images of 8×4 with 2×4×2 latents, β = 0.3"""
    latent.check_autoencoder_loss(impl, ref, 607, (5, 3, 8, 4), (5, 2, 4, 2), reconstruction, 0.3)


@pytest.mark.points(1)
@pytest.mark.exercise("6.4", "latent_statistics")
@pytest.mark.parametrize("per_channel, center", [(True, False), (True, True)], ids=["per channel, no shift",
                                                                                      "per channel"])
def test_latent_statistics_other_shape(impl, ref, per_channel, center):
    """latent_statistics on 20 latents of 5×3×1"""
    latent.check_latent_statistics(impl, ref, latent.training_latents(608, (20, 5, 3, 1)), per_channel, center)


@pytest.mark.points(1)
@pytest.mark.exercise("6.4", "to_diffusion")
def test_to_diffusion_other_shape(impl, ref):
    """to_diffusion with 4 channels, a negative shift and a scale above 1"""
    z = latent.training_latents(609, (2, 4, 3, 2))
    shift = torch.tensor([-0.5, 0.0, 1.5, -2.0], dtype=F64).reshape(4, 1, 1)
    scale = torch.tensor([3.0, 0.1, 1.7, 0.6], dtype=F64).reshape(4, 1, 1)
    latent.check_to_diffusion(impl, ref, z, shift, scale)


@pytest.mark.points(1)
@pytest.mark.exercise("6.4", "from_diffusion")
def test_from_diffusion_other_shape(impl, ref):
    """from_diffusion with one shift and scale, on 3 latents of 2×2×5"""
    u = latent.seeded((3, 2, 2, 5), 610)
    latent.check_from_diffusion(impl, ref, u, torch.tensor(-0.7, dtype=F64), torch.tensor(2.5, dtype=F64))


@pytest.mark.points(1)
@pytest.mark.exercise("6.5", "latent_sample")
def test_latent_sample_ddpm_v(impl, ref):
    """latent_sample with DDPM, v-prediction, a linear schedule of T = 30 and 6 steps"""
    schedule = ref.noise_schedule.NoiseSchedule.from_name("linear", 30, dtype=F64)
    latent.check_latent_sample(impl, ref, schedule, dict(sampler="ddpm", num_steps=6, prediction="v"), seed=611)
