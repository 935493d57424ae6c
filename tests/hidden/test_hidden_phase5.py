"""Hidden Phase 5 checks: conditioning, guidance, degradations and inpainting with other inputs.

Students never see these (the student release leaves tests/hidden/ out), so code
fitted to the visible checks' inputs (K = 4 classes, guidance scales 0–7.5, 16×16
RGB images, σ 0.8 / 1.5, factors 2 / 4, a cosine schedule) rather than written from
the guide still loses points here. Each reuses the visible checks' helpers and the
same wrong variants, so its messages and named mistakes are the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from grading.checker import check_close, fail, naming_crash
from grading.modules import randomize_, reference_parts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))  # the visible checks, whatever ran first
import test_phase5_enhancement as enhancement  # noqa: E402
import test_phase5_guidance as guidance  # noqa: E402

pytestmark = [pytest.mark.phase5, pytest.mark.visibility("hidden")]

F64 = torch.float64
K_HIDDEN = 7  # classes of the hidden checks' tables and toy models


# ---------------------------------------------------------------------------
# §5.1–§5.3 class conditioning and guidance
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("5.1", "add_class_embedding")
def test_add_class_embedding_other_table(impl, ref):
    """add_class_embedding with K = 7 classes, a 10-wide table and 6 images, with labels and with None"""
    table = randomize_(nn.Embedding(K_HIDDEN + 1, 10).double(), seed=501)
    time_emb = torch.randn((6, 10), generator=torch.Generator().manual_seed(502), dtype=F64)
    rows = table.weight
    for labels in (torch.tensor([6, K_HIDDEN, 0, 3, 3, 5]), None):
        with torch.no_grad(), naming_crash("null_label_past_table", "index out of range"):
            got = impl.unet.add_class_embedding(time_emb, table, labels, K_HIDDEN)
        with torch.no_grad():
            expected = ref.unet.add_class_embedding(time_emb, table, labels, K_HIDDEN)
            mistakes = guidance.class_embedding_variants(time_emb, expected)
            if labels is None:
                mistakes["null_class_collides"] = [time_emb + rows[0], time_emb + rows[K_HIDDEN - 1]]
        check_close(got, expected, function="add_class_embedding", section="5.1",
                    inputs={"time_emb": time_emb, "class_labels": labels, "num_classes": K_HIDDEN},
                    mistakes=mistakes)


@pytest.mark.points(1)
@pytest.mark.exercise("5.1", "add_class_embedding")
def test_class_conditional_unet_other_config(impl, ref):
    """A class-conditional U-Net of another configuration (K = 3, 2 channels) with your add_class_embedding"""
    classes = 3
    model = randomize_(ref.unet.UNet(in_channels=2, base_channels=8, channel_mults=(1, 2), attention_levels=(0,),
                                     num_heads=4, groups=2, num_classes=classes).double(), seed=503).eval()
    generator = torch.Generator().manual_seed(504)
    x = torch.randn((4, 2, 4, 8), generator=generator, dtype=F64)
    t = torch.tensor([999, 0, 123, 640])
    labels = torch.tensor([classes, 1, 2, 0])
    with torch.no_grad():
        expected = model(x, t, labels), model(x, t)
        with reference_parts(ref.unet, guidance.yours(impl, "unet", "add_class_embedding"), ("add_class_embedding",)):
            got = model(x, t, labels), model(x, t)
    for what, mine, theirs in zip((f"with labels {labels.tolist()}", "with class_labels=None"), got, expected):
        check_close(mine, theirs, function="UNet.forward", section="5.1", what=f"the output {what}",
                    inputs={"x": x, "t": t, "class_labels": labels, "num_classes": classes})


@pytest.mark.points(1)
@pytest.mark.exercise("5.2", "drop_labels")
def test_drop_labels_other_inputs(impl, ref):
    """drop_labels with p_uncond 0.3, K = 5, 30 labels and another seed"""
    p_uncond, classes, batch = 0.3, 5, 30
    seed = 505 + batch
    labels = (torch.arange(batch) * 2 + 1) % classes
    got = impl.train.drop_labels(labels, p_uncond, classes, torch.Generator().manual_seed(seed))
    expected = ref.train.drop_labels(labels, p_uncond, classes, torch.Generator().manual_seed(seed))
    draws = torch.rand(batch, generator=torch.Generator().manual_seed(seed))
    mistakes = guidance.label_dropout_variants(labels, draws, p_uncond, classes)
    check_close(got, expected, function="drop_labels", section="5.2",
                inputs={"class_labels": labels, "p_uncond": p_uncond, "num_classes": classes,
                        "generator": f"torch.Generator().manual_seed({seed})"},
                mistakes=mistakes)


@pytest.fixture()
def hidden_toy():
    """The visible checks' toy conditional model with 3 channels and K = 7 classes, other weights."""
    return randomize_(guidance.ToyConditional(channels=3, num_classes=K_HIDDEN).double(), seed=510).eval()


@pytest.mark.points(1)
@pytest.mark.exercise("5.3", "guided_model_output")
def test_guided_model_output_other_scale(impl, ref, hidden_toy):
    """guided_model_output with w = 0.25, 3 channels, K = 7 and 6 images, in one batched pass"""
    w = 0.25  # not 0.5: there, swapping the conditional and unconditional outputs changes nothing
    generator = torch.Generator().manual_seed(511)
    x_t = torch.randn((6, 3, 3, 5), generator=generator, dtype=F64)
    t = torch.tensor([29, 0, 7, 7, 15, 1])
    labels = torch.tensor([6, 0, 2, 5, 1, 6])
    with torch.no_grad(), reference_parts(impl.diffusion.module, ref.diffusion, ("call_model",)):
        got = impl.diffusion.guided_model_output(hidden_toy, x_t, t, labels, w, K_HIDDEN)
    seen = [call.tolist() for call in hidden_toy.calls]
    with torch.no_grad():
        expected = ref.diffusion.guided_model_output(hidden_toy, x_t, t, labels, w, K_HIDDEN)
        conditional, unconditional = hidden_toy(x_t, t, labels), hidden_toy(x_t, t, torch.full_like(labels, K_HIDDEN))
        guessed = hidden_toy(x_t, t, torch.full_like(labels, int(labels.max()) + 1))  # null label = max + 1
    mistakes = guidance.guidance_variants(got, conditional, unconditional, guessed, expected, w)
    inputs = {"x_t": x_t, "t": t, "class_labels": labels, "guidance_scale": w, "null_label": K_HIDDEN}
    check_close(got, expected, function="guided_model_output", section="5.3", inputs=inputs, mistakes=mistakes)
    wanted = torch.cat([labels, torch.full_like(labels, K_HIDDEN)]).tolist()
    if seen != [wanted]:
        fail(f"guided_model_output(x_t of batch 6, class_labels={labels.tolist()}, guidance_scale={w}, "
             f"null_label={K_HIDDEN}) called the model {len(seen)} time(s) with the labels {seen}; expected one call "
             f"on the doubled batch with the labels {wanted} (the images with their labels, then the same "
             "images with the null label). See IMPLEMENTATION_GUIDE.md §5.3."
             + guidance.guessed_null(seen, labels, K_HIDDEN))


@pytest.mark.points(1)
@pytest.mark.exercise("5.3", "guided_model_output")
def test_guided_sampling_other_loop(impl, ref, hidden_toy):
    """The reference loop with your guided_model_output: DDIM η 0.5, 7 steps, w 4, x0-prediction, T = 20"""
    schedule = ref.noise_schedule.NoiseSchedule.from_name("linear", 20, dtype=F64)
    options = dict(sampler="ddim", num_steps=7, eta=0.5, guidance_scale=4.0, prediction="x0")
    labels = torch.tensor([5, 0, 6])
    shape = (3, 3, 4, 4)

    def draw(**changes) -> torch.Tensor:
        return ref.diffusion.sample_loop(hidden_toy, schedule, shape, class_labels=labels,
                                         generator=torch.Generator().manual_seed(512), **dict(options, **changes))

    expected = draw()
    with reference_parts(ref.diffusion, guidance.yours(impl, "diffusion", "guided_model_output"),
                         ("guided_model_output",)):
        got = draw()
    w = options["guidance_scale"]
    with torch.no_grad():  # what (1 + w) and (w − 1) do to the whole loop
        shifted = {"cfg_paper_convention": draw(guidance_scale=w + 1), "cfg_w_minus_one": draw(guidance_scale=w - 1)}
    check_close(got, expected, function="guided_model_output", section="5.3", what="the samples of a guided loop",
                inputs={"T": 20, **options, "class_labels": labels}, mistakes=shifted)


# ---------------------------------------------------------------------------
# §5.4 the degradations, on other images and strengths
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hidden_images():
    """(3, 2, 12, 12) float64 images in [-1, 1], seeded."""
    return torch.rand((3, 2, 12, 12), generator=torch.Generator().manual_seed(520), dtype=F64) * 2 - 1


def check_add_gaussian_noise(impl, ref, images):
    """add_gaussian_noise with σ = 0.7, from another seed."""
    sigma = 0.7
    got = impl.degradations.add_gaussian_noise(images, sigma, torch.Generator().manual_seed(521))
    expected = ref.degradations.add_gaussian_noise(images, sigma, torch.Generator().manual_seed(521))
    noise = (expected - images) / sigma
    check_close(got, expected, function="add_gaussian_noise", section="5.4",
                inputs={"images": images, "sigma": sigma, "generator": "torch.Generator().manual_seed(521)"},
                mistakes={"variance_as_std": images + sigma**2 * noise, "degradation_clamped": expected.clamp(-1, 1),
                          "generator_ignored": images + sigma * enhancement.global_noise(images.shape)})


def check_gaussian_blur(impl, ref, images):
    """gaussian_blur with σ = 2.2: a radius of 7 on 12×12 images, so the reflection reaches far in."""
    sigma = 2.2
    with naming_crash("blur_kernel_dtype", "double", "float"):
        got = impl.degradations.gaussian_blur(images, sigma)
    kernel = ref.degradations.gaussian_kernel(sigma, F64)
    check_close(got, ref.degradations.gaussian_blur(images, sigma), function="gaussian_blur", section="5.4",
                inputs={"images": images, "sigma": sigma}, mistakes=enhancement.blur_variants(images, kernel))


def check_downsample(impl, ref, images):
    """downsample with factor 3."""
    factor = 3
    got = impl.degradations.downsample(images, factor)
    check_close(got, ref.degradations.downsample(images, factor), function="downsample", section="5.4",
                inputs={"images": images, "factor": factor}, mistakes=enhancement.downsample_variants(images, factor))


def check_jpeg_blocks(impl, ref, images):
    """jpeg_blocks with step 0.3 and an odd block of 3."""
    quality_step, block = 0.3, 3
    got = impl.degradations.jpeg_blocks(images, quality_step, block)
    dct = ref.degradations.dct_matrix(block, F64)
    check_close(got, ref.degradations.jpeg_blocks(images, quality_step, block), function="jpeg_blocks",
                section="5.4", inputs={"images": images, "quality_step": quality_step, "block": block},
                mistakes=enhancement.jpeg_variants(images, dct, quality_step, block))


def check_apply_mask(impl, ref, images):
    """apply_mask with one mask per image (left half, centre, strokes) and fill 0.5."""
    fill = 0.5
    masks = [ref.degradations.make_mask(preset, (12, 12), generator=torch.Generator().manual_seed(522), dtype=F64)
             for preset in ("left", "center", "strokes")]
    mask = torch.cat(masks)  # (3, 1, 12, 12)
    got = impl.degradations.apply_mask(images, mask, fill)
    check_close(got, ref.degradations.apply_mask(images, mask, fill), function="apply_mask", section="5.4",
                inputs={"images": images, "mask": "one per image: left half, centre square, strokes hidden (0)",
                        "fill": fill},
                mistakes={"mask_inverted": (1 - mask) * images + mask * fill, "mask_fill_ignored": mask * images})


DEGRADATION_CHECKS = [
    pytest.param(check, marks=pytest.mark.exercise("5.4", check.__name__.removeprefix("check_")),
                 id=check.__name__.removeprefix("check_"))
    for check in (check_add_gaussian_noise, check_gaussian_blur, check_downsample, check_jpeg_blocks,
                  check_apply_mask)
]


@pytest.mark.points(1)
@pytest.mark.parametrize("check", DEGRADATION_CHECKS)
def test_degradation_other_strengths(impl, ref, hidden_images, check):
    """the degradation with another strength on 3 two-channel 12×12 images"""
    check(impl, ref, hidden_images)


# ---------------------------------------------------------------------------
# §5.5 condition_pair
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("5.5", "condition_pair")
def test_condition_pair_other_task(impl, ref, hidden_images):
    """condition_pair for the mask task (the visible checks leave it out), on other images"""
    enhancement.check_condition_pair(impl, ref, hidden_images, "mask", seed=523)


# ---------------------------------------------------------------------------
# §5.6 inpaint_combine and renoise
# ---------------------------------------------------------------------------

T_INPAINT = 50


@pytest.fixture(scope="module")
def hidden_schedule(ref):
    return ref.noise_schedule.NoiseSchedule.from_name("scaled_linear", T_INPAINT, dtype=F64)


@pytest.fixture(scope="module")
def hidden_inpainting(ref, hidden_images):
    """A generated x_{t_prev}, the originals, a left-half mask and the noise z."""
    generator = torch.Generator().manual_seed(530)
    generated = torch.randn(hidden_images.shape, generator=generator, dtype=F64)
    noise = torch.randn(hidden_images.shape, generator=generator, dtype=F64)
    mask = ref.degradations.make_mask("left", (12, 12), dtype=F64)
    return generated, hidden_images, mask, noise


def check_inpaint_combine(impl, ref, hidden_schedule, hidden_inpainting):
    """inpaint_combine with a left-half mask and t_prev 49, −1 and 3."""
    generated, x0, mask, noise = hidden_inpainting
    t_prev = torch.tensor([T_INPAINT - 1, -1, 3])
    with reference_parts(impl.diffusion.module, ref.diffusion, enhancement.INPAINT_HELPERS):
        got = impl.diffusion.inpaint_combine(generated, x0, mask, t_prev, noise, hidden_schedule)
    expected = ref.diffusion.inpaint_combine(generated, x0, mask, t_prev, noise, hidden_schedule)
    check_close(got, expected, function="inpaint_combine", section="5.6",
                inputs={"x_generated": generated, "x0_known": x0, "mask": "the left half hidden (0)",
                        "t_prev": t_prev, "noise": noise},
                mistakes=enhancement.inpaint_combine_variants(ref, hidden_schedule, generated, x0, mask, t_prev, noise))


def check_renoise(impl, ref, hidden_schedule, hidden_inpainting):
    """renoise with the pairs (t_prev, t) = (4, 12), (30, 49) and (−1, 0)."""
    generated, _, _, noise = hidden_inpainting
    t, t_prev = torch.tensor([12, T_INPAINT - 1, 0]), torch.tensor([4, 30, -1])
    with reference_parts(impl.diffusion.module, ref.diffusion, enhancement.INPAINT_HELPERS):
        got = impl.diffusion.renoise(generated, t_prev, t, noise, hidden_schedule)
    check_close(got, ref.diffusion.renoise(generated, t_prev, t, noise, hidden_schedule), function="renoise",
                section="5.6", inputs={"x_prev": generated, "t_prev": t_prev, "t": t, "noise": noise},
                mistakes=enhancement.renoise_variants(ref, hidden_schedule, generated, t_prev, t, noise))


INPAINTING_CHECKS = [
    pytest.param(check, marks=pytest.mark.exercise("5.6", check.__name__.removeprefix("check_")),
                 id=check.__name__.removeprefix("check_"))
    for check in (check_inpaint_combine, check_renoise)
]


@pytest.mark.points(1)
@pytest.mark.parametrize("check", INPAINTING_CHECKS)
def test_inpainting_other_schedule(impl, ref, hidden_schedule, hidden_inpainting, check):
    """the inpainting function on a scaled-linear schedule of T = 50 and other images"""
    check(impl, ref, hidden_schedule, hidden_inpainting)


@pytest.mark.points(1)
@pytest.mark.exercise("5.6", "{name}")
@pytest.mark.parametrize("name", ["inpaint_combine", "renoise"])
def test_inpaint_loop_other_settings(impl, ref, name):
    """The reference inpainting loop with your function: DDPM, 4 steps, resample 2, x0-prediction, T = 20"""
    generator = torch.Generator().manual_seed(540)
    x0 = torch.rand((2, 3, 8, 8), generator=generator, dtype=F64) * 2 - 1
    mask = ref.degradations.make_mask("center", (8, 8), dtype=F64)
    model = randomize_(enhancement.ToyDenoiser().double(), seed=541).eval()
    schedule = ref.noise_schedule.NoiseSchedule.from_name("cosine", 20, dtype=F64)
    options = dict(sampler="ddpm", num_steps=4, resample=2, prediction="x0")

    enhancement.check_inpaint_loop(impl, ref, name, x0, mask, model, schedule, options, seed=542,
                                   described={"T": 20, "mask": "the centre square"})
