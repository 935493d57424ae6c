"""Phase 5 checks: degradations, the enhancement pair and inpainting (guide §5.4–§5.6).

Each degradation is compared with the reference on float64 images with fine detail;
the inpainting functions are checked alone (the reference's ``alpha_bar_at`` put into
your module) and inside the reference's inpainting loop.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grading.checker import check_close, fail
from grading.modules import randomize_, reference_parts

pytestmark = pytest.mark.phase5

F64 = torch.float64
T = 1000


@pytest.fixture(scope="module")
def images():
    """(2, 3, 16, 16) float64 images in [-1, 1], seeded."""
    return torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(60), dtype=F64) * 2 - 1


def yours(impl, module: str, *names: str) -> SimpleNamespace:
    return SimpleNamespace(**{name: getattr(getattr(impl, module), name) for name in names})


# ---------------------------------------------------------------------------
# §5.4 The degradations
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("5.4", "add_gaussian_noise")
def test_add_gaussian_noise(impl, ref, images):
    """add_gaussian_noise adds σ · n, n drawn from the generator"""
    got = impl.degradations.add_gaussian_noise(images, 0.3, torch.Generator().manual_seed(61))
    expected = ref.degradations.add_gaussian_noise(images, 0.3, torch.Generator().manual_seed(61))
    noise = (expected - images) / 0.3
    check_close(got, expected, function="add_gaussian_noise", section="5.4",
                inputs={"images": images, "sigma": 0.3, "generator": "torch.Generator().manual_seed(61)"},
                mistakes={"variance_as_std": images + 0.09 * noise, "degradation_clamped": expected.clamp(-1, 1)})


def blur_variants(images: torch.Tensor, kernel: torch.Tensor) -> dict:
    """Separable blur written with other borders, or in one direction only."""
    channels, radius = images.shape[1], kernel.numel() // 2
    width = kernel.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    height = width.transpose(2, 3)
    zero = F.conv2d(F.conv2d(images, width, padding=(0, radius), groups=channels), height,
                    padding=(radius, 0), groups=channels)
    rows_only = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), width, groups=channels)
    return {"blur_zero_padding": zero, "blur_one_direction": rows_only}


@pytest.mark.points(2)
@pytest.mark.exercise("5.4", "gaussian_blur")
@pytest.mark.parametrize("sigma", [0.8, 1.5])
def test_gaussian_blur(impl, ref, images, sigma):
    """gaussian_blur: the separable Gaussian, reflected at the borders"""
    got = impl.degradations.gaussian_blur(images, sigma)
    kernel = ref.degradations.gaussian_kernel(sigma, F64)
    check_close(got, ref.degradations.gaussian_blur(images, sigma), function="gaussian_blur", section="5.4",
                inputs={"images": images, "sigma": sigma}, mistakes=blur_variants(images, kernel))


@pytest.mark.points(2)
@pytest.mark.exercise("5.4", "downsample")
@pytest.mark.parametrize("factor", [2, 4])
def test_downsample(impl, ref, images, factor):
    """downsample averages k×k blocks, then upsamples bilinearly to the original size"""
    got = impl.degradations.downsample(images, factor)
    low = F.avg_pool2d(images, factor)
    size = images.shape[-2:]
    check_close(got, ref.degradations.downsample(images, factor), function="downsample", section="5.4",
                inputs={"images": images, "factor": factor},
                mistakes={"superres_nearest": F.interpolate(low, size=size, mode="nearest"),
                          "superres_max_pool": F.interpolate(F.max_pool2d(images, factor), size=size,
                                                             mode="bilinear", align_corners=False),
                          "superres_align_corners": F.interpolate(low, size=size, mode="bilinear",
                                                                  align_corners=True)})


def jpeg_uniform(images: torch.Tensor, dct: torch.Tensor, step: float, block: int) -> torch.Tensor:
    """JPEG-style quantisation with one step for every frequency (written out independently)."""
    b, c, h, w = images.shape
    tiles = images.reshape(b, c, h // block, block, w // block, block).transpose(3, 4)
    restored = dct.T @ (torch.round(dct @ tiles @ dct.T / step) * step) @ dct
    return restored.transpose(3, 4).reshape(b, c, h, w)


@pytest.mark.points(2)
@pytest.mark.exercise("5.4", "jpeg_blocks")
@pytest.mark.parametrize("quality_step, block", [(0.5, 4), (0.2, 8)], ids=["step 0.5 block 4", "step 0.2 block 8"])
def test_jpeg_blocks(impl, ref, images, quality_step, block):
    """jpeg_blocks quantises each tile's DCT with a step that grows with the frequency"""
    got = impl.degradations.jpeg_blocks(images, quality_step, block)
    dct = ref.degradations.dct_matrix(block, F64)
    check_close(got, ref.degradations.jpeg_blocks(images, quality_step, block), function="jpeg_blocks",
                section="5.4", inputs={"images": images, "quality_step": quality_step, "block": block},
                mistakes={"jpeg_uniform_step": jpeg_uniform(images, dct, quality_step, block)})


@pytest.mark.points(1)
@pytest.mark.exercise("5.4", "apply_mask")
@pytest.mark.parametrize("fill", [0.0, -1.0])
def test_apply_mask(impl, ref, images, fill):
    """apply_mask keeps the pixels where mask = 1 and fills the others"""
    mask = ref.degradations.make_mask("center", (16, 16), dtype=F64)
    got = impl.degradations.apply_mask(images, mask, fill)
    check_close(got, ref.degradations.apply_mask(images, mask, fill), function="apply_mask", section="5.4",
                inputs={"images": images, "mask": "the centre square hidden (0), the rest known (1)", "fill": fill},
                mistakes={"mask_inverted": (1 - mask) * images + mask * fill})


# ---------------------------------------------------------------------------
# §5.5 condition_pair
# ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.exercise("5.5", "condition_pair")
@pytest.mark.parametrize("task", ["deblur", "superres", "denoise"])
def test_condition_pair(impl, ref, images, task):
    """condition_pair maps the data to [-1, 1], then degrades that same x_0"""
    check_condition_pair(impl, ref, images, task, seed=62)


def check_condition_pair(impl, ref, images: torch.Tensor, task: str, seed: int) -> None:
    """The learner's condition_pair (with the reference's degradations) on ``images`` in [-1, 1]."""
    unit = (images + 1) / 2  # what a dataset gives: [0, 1]
    degradations = ("add_gaussian_noise", "gaussian_blur", "downsample", "jpeg_blocks", "apply_mask", "degrade")
    with reference_parts(impl.degradations.module, ref.degradations, degradations):
        got = impl.degradations.condition_pair(unit, task, torch.Generator().manual_seed(seed))
    expected = ref.degradations.condition_pair(unit, task, torch.Generator().manual_seed(seed))
    if not isinstance(got, tuple) or len(got) != 2:
        fail(f"condition_pair must return a tuple (x0, cond); got {type(got).__name__}. "
             "See IMPLEMENTATION_GUIDE.md §5.5.")
    inputs = {"images (in [0, 1])": unit, "task": task, "generator": f"torch.Generator().manual_seed({seed})"}
    check_close(got[0], expected[0], function="condition_pair", section="5.5", inputs=inputs, what="x0",
                mistakes={"data_unit_range": unit})
    raw = ref.degradations.degrade(unit, task, torch.Generator().manual_seed(seed))
    check_close(got[1], expected[1], function="condition_pair", section="5.5", inputs=inputs, what="cond",
                mistakes={"condition_not_normalised": raw})


# ---------------------------------------------------------------------------
# §5.6 inpaint_combine and renoise
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schedule(ref):
    return ref.noise_schedule.NoiseSchedule.from_name("cosine", T, dtype=F64)


@pytest.fixture(scope="module")
def inpainting(ref, images):
    """A generated x_{t_prev}, the originals, a mask of strokes and the noise z."""
    generator = torch.Generator().manual_seed(63)
    generated = torch.randn(images.shape, generator=generator, dtype=F64)
    noise = torch.randn(images.shape, generator=generator, dtype=F64)
    mask = ref.degradations.make_mask("strokes", (16, 16), generator=generator, dtype=F64)
    return generated, images, mask, noise


@pytest.mark.points(3)
@pytest.mark.exercise("5.6", "inpaint_combine")
@pytest.mark.parametrize("t_prev", [[500, 20], [-1, 0]], ids=["t_prev 500 and 20", "t_prev -1 and 0"])
def test_inpaint_combine(impl, ref, schedule, inpainting, t_prev):
    """inpaint_combine puts the original, noised to t_prev, into the known region"""
    generated, x0, mask, noise = inpainting
    t_prev = torch.tensor(t_prev)
    with reference_parts(impl.diffusion.module, ref.diffusion, ("alpha_bar_at", "extract")):
        got = impl.diffusion.inpaint_combine(generated, x0, mask, t_prev, noise, schedule)
    expected = ref.diffusion.inpaint_combine(generated, x0, mask, t_prev, noise, schedule)
    alpha_bar_prev = ref.diffusion.alpha_bar_at(t_prev, schedule, x0)
    known = alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev).sqrt() * noise  # the original, noised to t_prev
    check_close(got, expected, function="inpaint_combine", section="5.6",
                inputs={"x_generated": generated, "x0_known": x0, "mask": "random strokes hidden (0)",
                        "t_prev": t_prev, "noise": noise},
                mistakes={"known_region_clean": mask * x0 + (1 - mask) * generated,
                          "mask_inverted": (1 - mask) * known + mask * generated})


@pytest.mark.points(2)
@pytest.mark.exercise("5.6", "renoise")
def test_renoise(impl, ref, schedule, inpainting):
    """renoise jumps forward from t_prev to t with the pair's α = ᾱ_t / ᾱ_{t_prev}"""
    generated, _, _, noise = inpainting
    t, t_prev = torch.tensor([999, 40]), torch.tensor([949, -1])
    with reference_parts(impl.diffusion.module, ref.diffusion, ("alpha_bar_at", "extract")):
        got = impl.diffusion.renoise(generated, t_prev, t, noise, schedule)
    one_step = schedule.alphas[t].reshape(-1, 1, 1, 1)
    check_close(got, ref.diffusion.renoise(generated, t_prev, t, noise, schedule), function="renoise",
                section="5.6", inputs={"x_prev": generated, "t_prev": t_prev, "t": t, "noise": noise},
                mistakes={"one_step_beta_for_strided": one_step.sqrt() * generated + (1 - one_step).sqrt() * noise})


class ToyDenoiser(nn.Module):
    """A tiny deterministic stand-in for the U-Net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * (0.5 + t.to(x.dtype).reshape(-1, 1, 1, 1) / 30)


@pytest.mark.points(2)
@pytest.mark.exercise("5.6", "inpaint_combine")
@pytest.mark.parametrize("resample", [1, 3])
def test_inpaint_loop(impl, ref, inpainting, resample):
    """The reference inpainting loop with your inpaint_combine and renoise: same images, known pixels kept"""
    _, x0, mask, _ = inpainting
    model = randomize_(ToyDenoiser().double(), seed=64).eval()
    schedule = ref.noise_schedule.NoiseSchedule.from_name("cosine", 30, dtype=F64)
    options = dict(sampler="ddim", num_steps=5, eta=0.5, resample=resample, prediction="eps")

    def run() -> torch.Tensor:
        return ref.diffusion.inpaint_loop(model, schedule, x0, mask, generator=torch.Generator().manual_seed(65),
                                          **options)

    expected = run()
    with reference_parts(ref.diffusion, yours(impl, "diffusion", "inpaint_combine", "renoise"),
                         ("inpaint_combine", "renoise")):
        got = run()
    check_close(got, expected, function="inpaint_combine", section="5.6",
                what="the images of the inpainting loop (your inpaint_combine and renoise inside the reference's)",
                inputs={"T": 30, **options, "mask": "random strokes"})
    check_close(got * mask, x0 * mask, function="inpaint_combine", section="5.6",
                what="the known pixels of the result (they must equal the original's)",
                inputs={"T": 30, **options})
