"""Phase 6 checks: the posterior, the autoencoder, its loss, the latent scale, latent diffusion (guide §6.1–§6.5).

Each function is graded alone: the Autoencoder checks put the reference's Phase 2
blocks (and posterior_parameters) into your latent module, the loss check the
reference's kl_divergence, and the §6.5 checks the reference's encoder, scaling
and sampler, so a mistake costs only its own function's points. One integration
check then runs your whole autoencoder with your own blocks.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grading.checker import check_close, classic_mistake, fail, nan_shaped, pair
from grading.modules import check_parameter_count, load_reference_weights, randomize_, reference_parts

pytestmark = pytest.mark.phase6

F64 = torch.float64
#: The Phase 2 blocks the autoencoder is built from, lent from the reference while Autoencoder is graded.
BLOCKS = ("ResidualBlock", "Downsample", "Upsample")
#: What each §6.5 function may call of the rest of the phase (and of Phase 4), lent from the reference.
LATENT_HELPERS = ("posterior_sample", "to_diffusion", "from_diffusion", "sample_loop")
#: Whole networks chain many layers: allow for a different (correct) order of float64 operations.
NETWORK_TOLERANCE = {"rtol": 1e-8, "atol": 1e-9}


def seeded(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)



# ---------------------------------------------------------------------------
# §6.1 The posterior
# ---------------------------------------------------------------------------


def posterior_moments(seed: int) -> torch.Tensor:
    """(2, 6, 3, 4) encoder outputs, with log-variances beyond both clamps and means beyond them too."""
    moments = seeded((2, 6, 3, 4), seed) * 3
    moments[0, 3, 0, 0], moments[1, 4, 1, 2] = -45.0, 27.0  # log-variances below −30 and above 20
    moments[0, 0, 0, 1], moments[1, 1, 0, 0] = 25.0, -35.0  # means beyond the same bounds (never clamped)
    return moments


@pytest.mark.points(2)
@pytest.mark.exercise("6.1", "posterior_parameters")
def test_posterior_parameters(impl, ref):
    """posterior_parameters splits the channels into mean and log-variance and clamps the log-variance only"""
    check_posterior_parameters(impl, ref, posterior_moments(1))


def check_posterior_parameters(impl, ref, moments: torch.Tensor) -> None:
    """Your posterior_parameters against the reference's on ``moments``, both outputs."""
    low, high = ref.latent.LOGVAR_MIN, ref.latent.LOGVAR_MAX
    half = moments.shape[1] // 2
    first, second = moments[:, :half], moments[:, half:]
    even, odd = moments[:, 0::2], moments[:, 1::2]
    b, c2, h, w = moments.shape
    wrong_axis = nan_shaped((b // 2 or 1, c2, h, w), (b, c2, h, w // 2), (b, c2, h // 2, w), (b, half, h, w, 2))
    got = pair(impl.latent.posterior_parameters(moments), "posterior_parameters", "6.1", ("mean", "logvar"))
    expected = ref.latent.posterior_parameters(moments)
    mistakes = (
        {"posterior_halves_swapped": [second, second.clamp(low, high)], "posterior_interleaved": even,
         "posterior_mean_clamped": first.clamp(low, high), "posterior_split_wrong_axis": wrong_axis},
        {"logvar_not_clamped": second, "posterior_halves_swapped": [first, first.clamp(low, high)],
         "posterior_interleaved": [odd, odd.clamp(low, high)], "posterior_split_wrong_axis": wrong_axis,
         "logvar_clamp_bounds_swapped": second.clamp(-high, -low)},
    )
    for name, mine, theirs, known in zip(("the mean", "the log-variance"), got, expected, mistakes):
        check_close(mine, theirs, function="posterior_parameters", section="6.1", inputs={"moments": moments},
                    what=name, mistakes=known)


def posterior_inputs(seed: int, shape: tuple[int, ...] = (2, 4, 3, 3)):
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=generator, dtype=F64) * 2
    logvar = torch.randn(shape, generator=generator, dtype=F64) * 2 - 1  # σ from about e^−2.5 to e^1.5
    noise = torch.randn(shape, generator=generator, dtype=F64)
    return mean, logvar, noise


def sample_mistakes(mean, logvar, noise) -> dict:
    """The classic wrong draws z of the reparameterisation trick."""
    return {"logvar_as_log_std": mean + logvar.exp() * noise, "posterior_noise_ignored": mean,
            "logvar_as_std": mean + logvar * noise, "posterior_std_sqrt_twice": mean + (0.25 * logvar).exp() * noise,
            "posterior_noise_added_to_std": mean + (0.5 * logvar).exp() + noise}


@pytest.mark.points(2)
@pytest.mark.exercise("6.1", "posterior_sample")
def test_posterior_sample(impl, ref):
    """posterior_sample is mean + exp(logvar / 2) · noise"""
    check_posterior_sample(impl, ref, *posterior_inputs(2))


def check_posterior_sample(impl, ref, mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> None:
    check_close(impl.latent.posterior_sample(mean, logvar, noise), ref.latent.posterior_sample(mean, logvar, noise),
                function="posterior_sample", section="6.1", inputs={"mean": mean, "logvar": logvar, "noise": noise},
                mistakes=sample_mistakes(mean, logvar, noise))


def kl_mistakes(mean, logvar) -> dict:
    """The classic wrong KLs, per image unless their shape says otherwise."""
    batch = mean.shape[0]

    def per_image(elements: torch.Tensor) -> torch.Tensor:
        return elements.reshape(batch, -1).sum(dim=1)

    bracket = mean.pow(2) + logvar.exp() - 1 - logvar
    return {
        "kl_mean_not_sum": 0.5 * bracket.reshape(batch, -1).mean(dim=1),
        "kl_sign": -0.5 * per_image(bracket),
        "kl_missing_minus_one": 0.5 * per_image(bracket + 1),
        "kl_missing_half": per_image(bracket),
        "logvar_as_log_std": 0.5 * per_image(mean.pow(2) + (2 * logvar).exp() - 1 - 2 * logvar),
        "kl_var_for_logvar": 0.5 * per_image(mean.pow(2) + logvar - 1 - logvar.exp()),
        "kl_batch_reduced": nan_shaped((), (1,)),
        "kl_not_reduced": nan_shaped(tuple(mean.shape), tuple(mean.shape[:2])),
    }


@pytest.mark.points(2)
@pytest.mark.exercise("6.1", "kl_divergence")
def test_kl_divergence(impl, ref):
    """kl_divergence is ½ Σ (μ² + σ² − 1 − log σ²) per image"""
    check_kl_divergence(impl, ref, *posterior_inputs(5)[:2])


def check_kl_divergence(impl, ref, mean: torch.Tensor, logvar: torch.Tensor) -> None:
    check_close(impl.latent.kl_divergence(mean, logvar), ref.latent.kl_divergence(mean, logvar),
                function="kl_divergence", section="6.1", inputs={"mean": mean, "logvar": logvar},
                mistakes=kl_mistakes(mean, logvar))


@pytest.mark.points(1)
@pytest.mark.exercise("6.1", "kl_divergence")
def test_kl_divergence_matches_torch_distributions(impl):
    """kl_divergence agrees with torch.distributions (an oracle independent of the reference)"""
    mean, logvar, _ = posterior_inputs(6, (3, 2, 2, 2))
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    oracle = torch.distributions.kl_divergence(posterior, prior).sum(dim=(1, 2, 3))
    check_close(impl.latent.kl_divergence(mean, logvar), oracle, function="kl_divergence", section="6.1",
                inputs={"mean": mean, "logvar": logvar}, mistakes=kl_mistakes(mean, logvar))


# ---------------------------------------------------------------------------
# §6.2 The autoencoder
# ---------------------------------------------------------------------------

AE_CONFIGS = {
    "default, 1x32x32": (dict(), (2, 1, 32, 32)),
    "3x16x16 with channels (8, 16) and 2 latent channels": (
        dict(image_channels=3, latent_channels=2, channels=(8, 16), groups=4), (2, 3, 16, 16)),
    "1x16x16 with 4 levels": (dict(channels=(8, 8, 16, 16), groups=4), (1, 1, 16, 16)),
}


@pytest.fixture(params=list(AE_CONFIGS))
def ae_config(request):
    return AE_CONFIGS[request.param]


def describe_autoencoder(config: dict) -> str:
    return "Autoencoder(" + ", ".join(f"{key}={value}" for key, value in config.items()) + ")"


@pytest.mark.points(1)
@pytest.mark.exercise("6.2", "Autoencoder.__init__")
def test_autoencoder_parameter_count(impl, ref, ae_config):
    """Autoencoder has the reference's number of parameters (whatever the names)"""
    kwargs, _ = ae_config
    with reference_parts(impl.latent.module, ref.unet, BLOCKS):
        mine = impl.latent.Autoencoder(**kwargs)
    check_parameter_count(mine, ref.latent.Autoencoder(**kwargs), what=describe_autoencoder(kwargs), section="6.2")


@pytest.mark.points(2)
@pytest.mark.exercise("6.2", "Autoencoder.__init__")
def test_autoencoder_layout(impl, ref, ae_config):
    """Autoencoder's modules have the guide's names and shapes (it loads the reference weights)"""
    kwargs, _ = ae_config
    with reference_parts(impl.latent.module, ref.unet, BLOCKS):
        mine = impl.latent.Autoencoder(**kwargs)
    load_reference_weights(mine, ref.latent.Autoencoder(**kwargs), what=describe_autoencoder(kwargs), section="6.2")


def shared_autoencoders(impl, ref, kwargs: dict, seed: int):
    """The reference Autoencoder with random float64 weights, and yours with the same weights."""
    reference = randomize_(ref.latent.Autoencoder(**kwargs).double().eval(), seed=seed)
    mine = impl.latent.Autoencoder(**kwargs).double().eval()
    load_reference_weights(mine, reference, what=describe_autoencoder(kwargs), section="6.2")
    return mine, reference


def encoder_variant(model, images, *, head_silu=True, downsample_every_level=False, norm=True):
    """The reference encoder with one piece changed: its (mean, logvar), for naming mistakes."""
    h = model.encoder_stem(images)
    emb = model.no_time(h)
    for level, block in enumerate(model.encoder_blocks):
        h = block(h, emb)
        if level < len(model.downsamples):
            h = model.downsamples[level](h)
        elif downsample_every_level:
            h = F.avg_pool2d(h, 2)  # stands for any extra halving: only its shape is compared
    h = model.encoder_norm(h) if norm else h
    return model.encoder_head(F.silu(h) if head_silu else h).chunk(2, dim=1)


def decoder_variant(model, latents, *, head_silu=True, tanh=False, upsample_first=False, norm=True):
    """The reference decoder with one piece changed, for naming mistakes."""
    h = model.decoder_stem(latents)
    emb = model.no_time(h)
    for level, block in enumerate(model.decoder_blocks):
        if upsample_first and level < len(model.upsamples):
            h = block(model.upsamples[level](h), emb)
            continue
        h = block(h, emb)
        if level < len(model.upsamples):
            h = model.upsamples[level](h)
    h = model.decoder_norm(h) if norm else h
    out = model.decoder_head(F.silu(h) if head_silu else h)
    return out.tanh() if tanh else out


def upsampling_first_fits(channels) -> bool:
    """Whether a decoder that upsamples before each block runs at all: each Upsample's width must then
    be the input width of the block after it (else such a decoder, like its variant here, crashes)."""
    channels = tuple(channels)
    levels = len(channels)
    inputs = channels[1:] + (channels[-1],)
    block_inputs = [inputs[i] for i in reversed(range(levels))]
    upsample_widths = [channels[i] for i in reversed(range(1, levels))]
    return all(width == block_inputs[k] for k, width in enumerate(upsample_widths))


def clamped(pair_of: tuple[torch.Tensor, torch.Tensor], ref) -> tuple[torch.Tensor, torch.Tensor]:
    mean, logvar = pair_of
    return mean, logvar.clamp(ref.latent.LOGVAR_MIN, ref.latent.LOGVAR_MAX)


@pytest.mark.points(3)
@pytest.mark.exercise("6.2", "Autoencoder.encode")
@pytest.mark.parametrize("name", list(AE_CONFIGS)[:2])
def test_autoencoder_encode(impl, ref, name):
    """Autoencoder.encode (with the reference blocks) matches the reference on shared weights"""
    check_autoencoder_encode(impl, ref, *AE_CONFIGS[name], seed=20)


def check_autoencoder_encode(impl, ref, kwargs: dict, shape: tuple[int, ...], seed: int) -> None:
    """Your encode (with the reference blocks and posterior_parameters) against the reference's, shared weights."""
    images = seeded(shape, seed).tanh()
    with reference_parts(impl.latent.module, ref.unet, BLOCKS), \
            reference_parts(impl.latent.module, ref.latent, ("posterior_parameters",)), torch.no_grad():
        mine, reference = shared_autoencoders(impl, ref, kwargs, seed=seed + 1)
        got = pair(mine.encode(images), "Autoencoder.encode", "6.2", ("mean", "logvar"))
        expected = reference.encode(images)
        variants = {"ae_head_silu_missing": clamped(encoder_variant(reference, images, head_silu=False), ref),
                    "ae_norm_missing": clamped(encoder_variant(reference, images, norm=False), ref),
                    "ae_downsample_every_level": clamped(encoder_variant(reference, images,
                                                                         downsample_every_level=True), ref)}
    for index, what in enumerate(("the mean", "the log-variance")):
        check_close(got[index], expected[index], function="Autoencoder.encode", section="6.2",
                    inputs={"images": images}, what=what,
                    mistakes={key: variant[index] for key, variant in variants.items()}, **NETWORK_TOLERANCE)


@pytest.mark.points(3)
@pytest.mark.exercise("6.2", "Autoencoder.decode")
@pytest.mark.parametrize("name", list(AE_CONFIGS)[:2])
def test_autoencoder_decode(impl, ref, name):
    """Autoencoder.decode (with the reference blocks) matches the reference on shared weights"""
    check_autoencoder_decode(impl, ref, *AE_CONFIGS[name], seed=22)


def check_autoencoder_decode(impl, ref, kwargs: dict, shape: tuple[int, ...], seed: int) -> None:
    """Your decode (with the reference blocks) against the reference's, shared weights."""
    with reference_parts(impl.latent.module, ref.unet, BLOCKS), torch.no_grad():
        mine, reference = shared_autoencoders(impl, ref, kwargs, seed=seed)
        latents = seeded((shape[0],) + reference.latent_shape(*shape[-2:]), seed + 1)
        got, expected = mine.decode(latents), reference.decode(latents)
        mistakes = {"ae_head_silu_missing": decoder_variant(reference, latents, head_silu=False),
                    "ae_norm_missing": decoder_variant(reference, latents, norm=False),
                    "ae_decoder_tanh": decoder_variant(reference, latents, tanh=True)}
        if upsampling_first_fits(kwargs.get("channels", (16, 32, 64))):
            mistakes["ae_upsample_before_block"] = decoder_variant(reference, latents, upsample_first=True)
    check_close(got, expected, function="Autoencoder.decode", section="6.2", inputs={"latents": latents},
                mistakes=mistakes, **NETWORK_TOLERANCE)


@pytest.mark.points(2)
@pytest.mark.exercise("6.2", "Autoencoder.decode")
@pytest.mark.uses("posterior_parameters", "posterior_sample", "Autoencoder.__init__", "Autoencoder.encode")
def test_autoencoder_whole(impl, ref):
    """Integration: your whole Autoencoder (encode, sample, decode, your §6.1 functions) matches the reference, gradients too"""
    kwargs, shape = AE_CONFIGS["3x16x16 with channels (8, 16) and 2 latent channels"]
    images = seeded(shape, 24).tanh()
    with reference_parts(impl.latent.module, ref.unet, BLOCKS):  # Phase 2's blocks: the reference's
        mine, reference = shared_autoencoders(impl, ref, kwargs, seed=25)
        noise = seeded((shape[0],) + reference.latent_shape(*shape[-2:]), 26)
        got, expected = mine(images, noise), reference(images, noise)
        help_ = "(if only this check fails, see the other checks of §6.1 and §6.2)"
        for index, what in enumerate(("the reconstruction", "the mean", "the log-variance")):
            check_close(got[index], expected[index], function="Autoencoder", section="6.2",
                        inputs={"images": images, "noise": noise},
                        what=f"{what} of your Autoencoder {help_}", **NETWORK_TOLERANCE)
        weights = seeded(tuple(images.shape), 27)
        impl.backward((got[0] * weights).sum())  # through your code, in the worker
        (expected[0] * weights).sum().backward()
        stem = [p.grad for p in mine.encoder_stem.parameters()]
        if all(g is None or not g.abs().sum() > 0 for g in stem):
            fail(f"no gradient of the reconstruction reached the encoder of your Autoencoder."
                 f"{classic_mistake('posterior_sample_detached')}\nSee IMPLEMENTATION_GUIDE.md §6.1.")
        flat = lambda model: torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros_like(p).flatten()  # noqa: E731
                                        for p in model.parameters()])
        check_close(flat(mine), flat(reference), function="Autoencoder", section="6.2",
                    inputs={"images": images, "noise": noise},
                    what=f"the gradients of every parameter (flattened) {help_}", **NETWORK_TOLERANCE)


# ---------------------------------------------------------------------------
# §6.3 The autoencoder's loss
# ---------------------------------------------------------------------------

LOSS_CASES = [("l1", 0.05), ("l2", 0.05), ("l1", 0.0)]


@pytest.mark.points(1)
@pytest.mark.exercise("6.3", "autoencoder_loss")
@pytest.mark.parametrize("reconstruction, kl_weight", LOSS_CASES, ids=[f"{r} beta={b}" for r, b in LOSS_CASES])
def test_autoencoder_loss(impl, ref, reconstruction, kl_weight):
    """autoencoder_loss is the mean reconstruction error plus β times the KL per latent element"""
    check_autoencoder_loss(impl, ref, 30, (3, 1, 8, 8), (3, 4, 2, 2), reconstruction, kl_weight)


def check_autoencoder_loss(impl, ref, seed: int, image_shape, latent_shape, reconstruction: str,
                           kl_weight: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(image_shape, generator=generator, dtype=F64) * 2 - 1
    reconstructions = images + 0.3 * torch.randn(image_shape, generator=generator, dtype=F64)
    mean = torch.randn(latent_shape, generator=generator, dtype=F64) * 2
    logvar = torch.randn(latent_shape, generator=generator, dtype=F64) - 1
    with reference_parts(impl.latent.module, ref.latent, ("kl_divergence",)):
        got = impl.latent.autoencoder_loss(images, reconstructions, mean, logvar, kl_weight, reconstruction)
    expected = ref.latent.autoencoder_loss(images, reconstructions, mean, logvar, kl_weight, reconstruction)
    errors = {"l1": (reconstructions - images).abs(), "l2": (reconstructions - images).pow(2)}
    error = errors[reconstruction]
    other = errors["l2" if reconstruction == "l1" else "l1"]
    kl = ref.latent.kl_divergence(mean, logvar)  # (B,)
    batch, elements, pixels = latent_shape[0], mean[0].numel(), images[0].numel()
    mistakes = {
        "kl_summed_not_averaged": error.mean() + kl_weight * kl.mean(),
        "kl_batch_divided_twice": error.mean() + kl_weight * (kl / (elements * batch)).mean(),
        "kl_per_pixel": error.mean() + kl_weight * (kl / pixels).mean(),
        "reconstruction_summed": [error.sum() / batch + kl_weight * (kl / elements).mean(),
                                  error.sum() + kl_weight * (kl / elements).mean()],
        "reconstruction_loss_swapped": other.mean() + kl_weight * (kl / elements).mean(),
        "kl_weight_misplaced": kl_weight * error.mean() + (kl / elements).mean(),
    }
    if kl_weight:
        mistakes["kl_weight_ignored"] = error.mean() + (kl / elements).mean()
    check_close(got, expected, function="autoencoder_loss", section="6.3",
                inputs={"images": images, "reconstructions": reconstructions, "mean": mean, "logvar": logvar,
                        "kl_weight": kl_weight, "reconstruction": reconstruction},
                mistakes=mistakes)


# ---------------------------------------------------------------------------
# §6.4 The latent scale
# ---------------------------------------------------------------------------


def training_latents(seed: int, shape: tuple[int, ...] = (12, 3, 2, 2)) -> torch.Tensor:
    """Latents with a different mean and spread per channel (0.5 + c, 2 + 1.5c), far from N(0, 1)."""
    channels = torch.arange(shape[1], dtype=F64).reshape(1, -1, 1, 1)
    return seeded(shape, seed) * (2 + 1.5 * channels) + 0.5 + channels


STATISTICS_CASES = [(False, True), (True, True), (False, False)]


@pytest.mark.points(1)
@pytest.mark.exercise("6.4", "latent_statistics")
@pytest.mark.parametrize("per_channel, center", STATISTICS_CASES,
                         ids=[f"per_channel={p} center={c}" for p, c in STATISTICS_CASES])
def test_latent_statistics(impl, ref, per_channel, center):
    """latent_statistics gives shift = mean (or 0) and scale = 1 / std, overall or per channel"""
    check_latent_statistics(impl, ref, training_latents(40), per_channel, center)


def check_latent_statistics(impl, ref, latents: torch.Tensor, per_channel: bool, center: bool) -> None:
    dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
    shape = (-1, 1, 1) if per_channel else ()
    overall = {"mean": latents.mean(), "std": latents.std()}
    wanted = {"mean": latents.mean(dim=dims).reshape(shape), "std": latents.std(dim=dims).reshape(shape),
              "biased": latents.std(dim=dims, unbiased=False).reshape(shape),
              "var": latents.var(dim=dims).reshape(shape)}
    zero = torch.zeros_like(wanted["mean"])
    channels = latents.shape[1]
    wrong_shapes = nan_shaped((1,), (1, 1, 1)) if per_channel else nan_shaped(
        (channels, 1, 1), (channels,), (1, channels, 1, 1))
    shift_mistakes = {"latent_stats_shape": wrong_shapes,
                      "latent_center_ignored": zero if center else wanted["mean"]}
    scale_mistakes = {"scale_is_std": wanted["std"], "latent_std_biased": 1 / wanted["biased"],
                      "scale_is_inverse_variance": 1 / wanted["var"], "latent_stats_shape": wrong_shapes}
    if per_channel:  # one statistic for all channels: shaped () as without per_channel, or broadcast to (C, 1, 1)
        shift_mistakes["latent_stats_per_channel_ignored"] = [overall["mean"], overall["mean"].expand_as(zero)]
        scale_mistakes["latent_stats_per_channel_ignored"] = [1 / overall["std"],
                                                              (1 / overall["std"]).expand_as(wanted["std"])]
    got = pair(impl.latent.latent_statistics(latents, per_channel, center), "latent_statistics", "6.4",
               ("shift", "scale"))
    expected = ref.latent.latent_statistics(latents, per_channel, center)
    inputs = {"latents": latents, "per_channel": per_channel, "center": center}
    for what, mine, theirs, known in zip(("the shift", "the scale"), got, expected, (shift_mistakes, scale_mistakes)):
        check_close(mine, theirs, function="latent_statistics", section="6.4", inputs=inputs, what=what,
                    mistakes=known)


def scaling_inputs(seed: int, per_channel: bool):
    latents = training_latents(seed, (3, 3, 2, 2))
    if per_channel:
        return latents, torch.tensor([0.5, -1.0, 2.0], dtype=F64).reshape(3, 1, 1), \
            torch.tensor([0.25, 0.5, 4.0], dtype=F64).reshape(3, 1, 1)
    return latents, torch.tensor(1.5, dtype=F64), torch.tensor(0.2, dtype=F64)


@pytest.mark.points(1)
@pytest.mark.exercise("6.4", "to_diffusion")
@pytest.mark.parametrize("per_channel", [False, True], ids=["one scale", "per channel"])
def test_to_diffusion(impl, ref, per_channel):
    """to_diffusion is (z − shift) · scale"""
    check_to_diffusion(impl, ref, *scaling_inputs(41, per_channel))


def check_to_diffusion(impl, ref, z: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> None:
    check_close(impl.latent.to_diffusion(z, shift, scale), ref.latent.to_diffusion(z, shift, scale),
                function="to_diffusion", section="6.4", inputs={"latents": z, "shift": shift, "scale": scale},
                mistakes={"scale_forgotten": z - shift, "scale_divides": (z - shift) / scale,
                          "shift_scale_order": z * scale - shift, "shift_forgotten": z * scale,
                          "shift_added": (z + shift) * scale})


@pytest.mark.points(1)
@pytest.mark.exercise("6.4", "from_diffusion")
@pytest.mark.parametrize("per_channel", [False, True], ids=["one scale", "per channel"])
def test_from_diffusion(impl, ref, per_channel):
    """from_diffusion is u / scale + shift, the inverse of to_diffusion"""
    check_from_diffusion(impl, ref, *scaling_inputs(42, per_channel))


def check_from_diffusion(impl, ref, u: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> None:
    check_close(impl.latent.from_diffusion(u, shift, scale), ref.latent.from_diffusion(u, shift, scale),
                function="from_diffusion", section="6.4", inputs={"u": u, "shift": shift, "scale": scale},
                mistakes={"unscale_forgotten": u + shift, "unscale_multiplies": u * scale + shift,
                          "unscale_wrong_order": (u + shift) / scale, "shift_forgotten": u / scale,
                          "from_diffusion_applies_to_diffusion": (u - shift) * scale,
                          "shift_added": u / scale - shift})


# ---------------------------------------------------------------------------
# §6.5 Diffusion in the latent space
# ---------------------------------------------------------------------------

SMALL_AE = dict(image_channels=1, latent_channels=2, channels=(8, 8), groups=4)


def reference_autoencoder(ref, seed: int, config: dict = SMALL_AE) -> nn.Module:
    """A small reference Autoencoder with random float64 weights, in evaluation mode."""
    return randomize_(ref.latent.Autoencoder(**config).double(), seed=seed).eval()


class Lent:
    """What the §6.5 functions may use of an autoencoder, its encode and decode, run by the reference's.

    A plain object (not a module), so your code gets a stand-in whose two methods run here.
    """

    def __init__(self, autoencoder: nn.Module) -> None:
        self.autoencoder = autoencoder

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.autoencoder.encode(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(latents)


class Dropping(nn.Module):
    """A module whose output depends on training mode (dropout), with parameters: what freeze must fix."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)
        self.dropout = nn.Dropout(0.5)


@pytest.mark.points(2)
@pytest.mark.exercise("6.5", "freeze")
def test_freeze(impl):
    """freeze puts the autoencoder in evaluation mode, with no parameter requiring a gradient, and returns it"""
    module = Dropping().train()
    returned = impl.latent.freeze(module)
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    in_training = [name or "the module" for name, m in module.named_modules() if m.training]
    if trainable:
        fail(f"after freeze(autoencoder), {len(trainable)} parameter(s) still require a gradient "
             f"(e.g. {trainable[0]}).{classic_mistake('autoencoder_trainable')}\nSee IMPLEMENTATION_GUIDE.md §6.5.")
    if in_training:
        fail(f"after freeze(autoencoder), {in_training[0]} is still in training mode (its dropout would drop)."
             f"{classic_mistake('autoencoder_train_mode')}\nSee IMPLEMENTATION_GUIDE.md §6.5.")
    if returned is not module:
        fail(f"freeze(autoencoder) should return the autoencoder it froze; got {type(returned).__name__}. "
             "See IMPLEMENTATION_GUIDE.md §6.5.")


def scale_and_shift() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([0.3, -0.2], dtype=F64).reshape(2, 1, 1), torch.tensor([2.5, 0.4], dtype=F64).reshape(2, 1, 1)


@pytest.mark.points(2)
@pytest.mark.exercise("6.5", "encode_to_diffusion")
@pytest.mark.parametrize("with_noise", [True, False], ids=["posterior sample", "mode"])
def test_encode_to_diffusion(impl, ref, with_noise):
    """encode_to_diffusion is to_diffusion(a posterior sample, or the mean)"""
    autoencoder = reference_autoencoder(ref, 50)
    images = seeded((2, 1, 8, 8), 51).tanh()
    shift, scale = scale_and_shift()
    mean, logvar = autoencoder.encode(images)
    noise = seeded(tuple(mean.shape), 52) if with_noise else None
    with reference_parts(impl.latent.module, ref.latent, LATENT_HELPERS):
        got = impl.latent.encode_to_diffusion(Lent(autoencoder), images, shift, scale, noise)
    expected = ref.latent.encode_to_diffusion(autoencoder, images, shift, scale, noise)
    with torch.no_grad():
        sample = mean if noise is None else ref.latent.posterior_sample(mean, logvar, noise)
        mistakes = {"scale_forgotten": sample - shift, "latents_not_scaled": [sample, mean],
                    "encode_mean_not_sample": ref.latent.to_diffusion(mean, shift, scale),
                    "shift_scale_order": sample * scale - shift, "scale_divides": (sample - shift) / scale}
        if noise is None:
            del mistakes["encode_mean_not_sample"]
    inputs = {"images": images, "shift": shift, "scale": scale, "noise": noise}
    check_close(got, expected, function="encode_to_diffusion", section="6.5", inputs=inputs, mistakes=mistakes)


@pytest.mark.points(2)
@pytest.mark.exercise("6.5", "decode_from_diffusion")
def test_decode_from_diffusion(impl, ref):
    """decode_from_diffusion decodes from_diffusion(u) and clamps the images to [-1, 1]"""
    autoencoder = reference_autoencoder(ref, 53)
    for parameter in autoencoder.decoder_head.parameters():  # large outputs, so that the clamp shows
        parameter.data *= 20
    shift, scale = scale_and_shift()
    u = seeded((2, 2, 4, 4), 54)
    with reference_parts(impl.latent.module, ref.latent, LATENT_HELPERS):
        got = impl.latent.decode_from_diffusion(Lent(autoencoder), u, shift, scale)
    expected = ref.latent.decode_from_diffusion(autoencoder, u, shift, scale)
    with torch.no_grad():
        decode = autoencoder.decode
        z = ref.latent.from_diffusion(u, shift, scale)
        mistakes = {"decode_without_unscaling": [decode(u).clamp(-1, 1), decode(u)],
                    "decoded_not_clamped": decode(z),
                    "latents_clamped_before_decoding": [decode(z.clamp(-1, 1)).clamp(-1, 1), decode(z.clamp(-1, 1))],
                    "decode_applies_to_diffusion": decode(ref.latent.to_diffusion(u, shift, scale)).clamp(-1, 1)}
    check_close(got, expected, function="decode_from_diffusion", section="6.5",
                inputs={"u": u, "shift": shift, "scale": scale}, mistakes=mistakes)


class LatentDenoiser(nn.Module):
    """A fixed stand-in for a latent U-Net: its x̂_0 reaches far beyond [-1, 1], as unit-variance latents do."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        wave = torch.sin(x * 1.7 + t.to(x.dtype).reshape(-1, 1, 1, 1) / 97.0)
        if class_labels is not None:
            wave = wave + 0.2 * class_labels.to(x.dtype).reshape(-1, 1, 1, 1)
        return 0.4 * x + wave


@pytest.mark.points(2)
@pytest.mark.exercise("6.5", "latent_sample")
@pytest.mark.parametrize("prediction", ["x0", "eps"])
def test_latent_sample(impl, ref, prediction):
    """latent_sample runs sample_loop on latents without clipping x̂_0, then decodes"""
    check_latent_sample(impl, ref, ref.noise_schedule.NoiseSchedule.from_name("cosine", 50, dtype=F64),
                        dict(sampler="ddim", num_steps=5, prediction=prediction), seed=55)


def check_latent_sample(impl, ref, schedule, options: dict, seed: int) -> None:
    """Your latent_sample (with the reference's sample_loop and decode_from_diffusion) against the reference's."""
    autoencoder = reference_autoencoder(ref, seed)
    shift, scale = scale_and_shift()
    shape = (2, 2, 4, 4)

    def run(latent, **extra):
        return latent.latent_sample(LatentDenoiser(), Lent(autoencoder), schedule, shape, shift, scale,
                                    generator=torch.Generator().manual_seed(seed + 1), **options, **extra)

    with reference_parts(impl.latent.module, ref.latent, ("decode_from_diffusion",)), \
            reference_parts(impl.latent.module, ref.diffusion, ("sample_loop",)):
        got = run(impl.latent)
    expected = run(ref.latent)

    def decoded(u):
        with torch.no_grad():
            return ref.latent.decode_from_diffusion(autoencoder, u, shift, scale)

    def loop(**change):
        settings = dict(options, clip_x0=False, generator=torch.Generator().manual_seed(seed + 1)) | change
        return ref.diffusion.sample_loop(LatentDenoiser(), schedule, shape, **settings)

    clipped = loop(clip_x0=True)
    mistakes = {"latents_clipped": [decoded(clipped), clipped],
                "latent_sample_not_decoded": loop(),
                "decode_without_unscaling": autoencoder.decode(loop()).detach().clamp(-1, 1)}
    check_close(got, expected, function="latent_sample", section="6.5",
                inputs={"shape": shape, "shift": shift, "scale": scale, **options}, mistakes=mistakes)
