"""Phase 5 checks: degradations, the enhancement pair and inpainting (guide §5.4–§5.6).

Each degradation is compared with the reference on float64 images with fine detail;
the inpainting functions are checked alone (the reference's ``alpha_bar_at`` put into
your module) and inside the reference's inpainting loop, where they too call the
reference's ``alpha_bar_at``: a gap in Phase 4 costs nothing here.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grading.checker import check_close, fail, naming_crash
from grading.modules import randomize_, reference_parts
from grading.wire import CHECK_SEED

pytestmark = pytest.mark.phase5

F64 = torch.float64
T = 1000
#: The helpers inpaint_combine and renoise call (Phase 4's and Phase 1's): the reference's, while they are graded.
INPAINT_HELPERS = ("alpha_bar_at", "extract")


@pytest.fixture(scope="module")
def images():
    """(2, 3, 16, 16) float64 images in [-1, 1], seeded."""
    return torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(60), dtype=F64) * 2 - 1


def yours(impl, module: str, *names: str) -> SimpleNamespace:
    return SimpleNamespace(**{name: getattr(getattr(impl, module), name) for name in names})


def global_noise(shape: tuple) -> torch.Tensor:
    """The float64 noise torch's global random state gives first in a check (a generator ignored)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(CHECK_SEED), dtype=F64)


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
                mistakes={"variance_as_std": images + 0.09 * noise, "degradation_clamped": expected.clamp(-1, 1),
                          "generator_ignored": images + 0.3 * global_noise(images.shape)})


def blur_variants(images: torch.Tensor, kernel: torch.Tensor) -> dict:
    """Separable blur written with other borders, with F.pad's axes swapped, or in one direction only."""
    channels, radius = images.shape[1], kernel.numel() // 2
    width = kernel.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    height = width.transpose(2, 3)
    zero = F.conv2d(F.conv2d(images, width, padding=(0, radius), groups=channels), height,
                    padding=(radius, 0), groups=channels)

    def blur(first: str, second: str, pads=((radius, radius, 0, 0), (0, 0, radius, radius))) -> torch.Tensor:
        rows = F.conv2d(F.pad(images, pads[0], mode=first), width, groups=channels)
        return F.conv2d(F.pad(rows, pads[1], mode=second), height, groups=channels)

    rows_only = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), width, groups=channels)
    variants = {"blur_zero_padding": zero, "blur_one_direction": rows_only,
                "blur_replicate_padding": [blur("replicate", "reflect"), blur("reflect", "replicate"),
                                           blur("replicate", "replicate")]}
    if kernel.numel() <= images.shape[-1]:  # else the swapped padding crashes (the learner's code too)
        variants["blur_pad_axes_swapped"] = blur("reflect", "reflect", ((0, 0, radius, radius), (radius, radius, 0, 0)))
    return variants


@pytest.mark.points(2)
@pytest.mark.exercise("5.4", "gaussian_blur")
@pytest.mark.parametrize("sigma", [0.8, 1.5])
def test_gaussian_blur(impl, ref, images, sigma):
    """gaussian_blur: the separable Gaussian, reflected at the borders"""
    with naming_crash("blur_kernel_dtype", "double", "float"):
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
    check_close(got, ref.degradations.downsample(images, factor), function="downsample", section="5.4",
                inputs={"images": images, "factor": factor}, mistakes=downsample_variants(images, factor))


def downsample_variants(images: torch.Tensor, factor: int) -> dict:
    """The low-resolution image made or brought back another way."""
    low, size = F.avg_pool2d(images, factor), images.shape[-2:]
    up = lambda small, **how: F.interpolate(small, size=size, **how)  # noqa: E731
    bilinear = dict(mode="bilinear", align_corners=False)
    return {"superres_nearest": up(low, mode="nearest"),
            "superres_max_pool": up(F.max_pool2d(images, factor), **bilinear),
            "superres_align_corners": up(low, mode="bilinear", align_corners=True),
            "superres_bicubic": up(low, mode="bicubic", align_corners=False),
            "superres_interpolated_down": up(F.interpolate(images, scale_factor=1 / factor, **bilinear), **bilinear)}


def jpeg_by_hand(images: torch.Tensor, dct: torch.Tensor, step, block: int, cut: bool = True, join: bool = True,
                 rounding=torch.round, inverse_forward: bool = False) -> torch.Tensor:
    """JPEG-style quantisation written out independently, with the pieces a mistake changes: the transpose
    when cutting or joining the tiles, the rounding, the inverse transform."""
    b, c, h, w = images.shape
    tiles = images.reshape(b, c, h // block, block, w // block, block)
    tiles = tiles.transpose(3, 4) if cut else tiles.reshape(b, c, h // block, w // block, block, block)
    quantised = rounding(dct @ tiles @ dct.T / step) * step
    restored = dct @ quantised @ dct.T if inverse_forward else dct.T @ quantised @ dct
    return (restored.transpose(3, 4) if join else restored).reshape(b, c, h, w)


def jpeg_variants(images: torch.Tensor, dct: torch.Tensor, quality_step: float, block: int) -> dict:
    """jpeg_blocks written wrong: another step table, tiles, rounding or inverse."""
    frequency = torch.arange(block, dtype=F64)
    step = quality_step * (1 + frequency.reshape(-1, 1) + frequency.reshape(1, -1))
    one_axis = [quality_step * (1 + frequency.reshape(shape)) for shape in ((1, -1), (-1, 1))]
    return {"jpeg_uniform_step": jpeg_by_hand(images, dct, quality_step, block),
            "jpeg_step_one_frequency": [jpeg_by_hand(images, dct, table, block) for table in one_axis],
            "jpeg_tiles_not_transposed": [jpeg_by_hand(images, dct, step, block, cut=False, join=join)
                                          for join in (True, False)],
            "jpeg_forward_as_inverse": jpeg_by_hand(images, dct, step, block, inverse_forward=True),
            "jpeg_floor": jpeg_by_hand(images, dct, step, block, rounding=torch.floor)}


@pytest.mark.points(2)
@pytest.mark.exercise("5.4", "jpeg_blocks")
@pytest.mark.parametrize("quality_step, block", [(0.5, 4), (0.2, 8)], ids=["step 0.5 block 4", "step 0.2 block 8"])
def test_jpeg_blocks(impl, ref, images, quality_step, block):
    """jpeg_blocks quantises each tile's DCT with a step that grows with the frequency"""
    got = impl.degradations.jpeg_blocks(images, quality_step, block)
    dct = ref.degradations.dct_matrix(block, F64)
    check_close(got, ref.degradations.jpeg_blocks(images, quality_step, block), function="jpeg_blocks",
                section="5.4", inputs={"images": images, "quality_step": quality_step, "block": block},
                mistakes=jpeg_variants(images, dct, quality_step, block))


@pytest.mark.points(1)
@pytest.mark.exercise("5.4", "apply_mask")
@pytest.mark.parametrize("fill", [0.0, -1.0])
def test_apply_mask(impl, ref, images, fill):
    """apply_mask keeps the pixels where mask = 1 and fills the others"""
    mask = ref.degradations.make_mask("center", (16, 16), dtype=F64)
    got = impl.degradations.apply_mask(images, mask, fill)
    check_close(got, ref.degradations.apply_mask(images, mask, fill), function="apply_mask", section="5.4",
                inputs={"images": images, "mask": "the centre square hidden (0), the rest known (1)", "fill": fill},
                mistakes={"mask_inverted": (1 - mask) * images + mask * fill, "mask_fill_ignored": mask * images})


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
                mistakes={"data_unit_range": unit, "pair_swapped": expected[1]})
    raw = ref.degradations.degrade(unit, task, torch.Generator().manual_seed(seed))
    # degrade without the generator draws from torch's global random state (here: the lent degrade runs here)
    unseeded = ref.degradations.degrade(expected[0], task, torch.Generator().manual_seed(CHECK_SEED))
    check_close(got[1], expected[1], function="condition_pair", section="5.5", inputs=inputs, what="cond",
                mistakes={"condition_not_normalised": raw, "generator_ignored": unseeded})


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
    with reference_parts(impl.diffusion.module, ref.diffusion, INPAINT_HELPERS):
        got = impl.diffusion.inpaint_combine(generated, x0, mask, t_prev, noise, schedule)
    expected = ref.diffusion.inpaint_combine(generated, x0, mask, t_prev, noise, schedule)
    check_close(got, expected, function="inpaint_combine", section="5.6",
                inputs={"x_generated": generated, "x0_known": x0, "mask": "random strokes hidden (0)",
                        "t_prev": t_prev, "noise": noise},
                mistakes=inpaint_combine_variants(ref, schedule, generated, x0, mask, t_prev, noise))


def inpaint_combine_variants(ref, schedule, generated, x0, mask, t_prev, noise) -> dict:
    """inpaint_combine written wrong: another known region, mask, noise scale or ᾱ'."""
    alpha_bar = ref.diffusion.alpha_bar_at(t_prev, schedule, x0)
    wrapped = schedule.alphas_cumprod[t_prev % schedule.num_timesteps].reshape(-1, 1, 1, 1)  # ᾱ_{-1} as ᾱ_{T-1}
    known = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise  # the original, noised to t_prev
    combine = lambda region: mask * region + (1 - mask) * generated  # noqa: E731
    return {"known_region_clean": combine(x0), "mask_inverted": (1 - mask) * known + mask * generated,
            "variance_as_std": combine(alpha_bar.sqrt() * x0 + (1 - alpha_bar) * noise),
            "alpha_bar_at_wraps": combine(wrapped.sqrt() * x0 + (1 - wrapped).sqrt() * noise),
            "inpaint_noise_everywhere": combine(alpha_bar.sqrt() * x0) + (1 - alpha_bar).sqrt() * noise}


@pytest.mark.points(2)
@pytest.mark.exercise("5.6", "renoise")
def test_renoise(impl, ref, schedule, inpainting):
    """renoise jumps forward from t_prev to t with the pair's α = ᾱ_t / ᾱ_{t_prev}"""
    generated, _, _, noise = inpainting
    t, t_prev = torch.tensor([999, 40]), torch.tensor([949, -1])
    with reference_parts(impl.diffusion.module, ref.diffusion, INPAINT_HELPERS):
        got = impl.diffusion.renoise(generated, t_prev, t, noise, schedule)
    check_close(got, ref.diffusion.renoise(generated, t_prev, t, noise, schedule), function="renoise",
                section="5.6", inputs={"x_prev": generated, "t_prev": t_prev, "t": t, "noise": noise},
                mistakes=renoise_variants(ref, schedule, generated, t_prev, t, noise))


def renoise_variants(ref, schedule, generated, t_prev, t, noise) -> dict:
    """renoise with another α (one step's, the inverted ratio, ᾱ_t) or the variance as the noise's scale."""
    alpha_bar_t, alpha_bar_prev = (ref.diffusion.alpha_bar_at(s, schedule, generated) for s in (t, t_prev))

    def jump(alpha: torch.Tensor, variance_as_std: bool = False) -> torch.Tensor:
        return alpha.sqrt() * generated + ((1 - alpha) if variance_as_std else (1 - alpha).sqrt()) * noise

    alpha = alpha_bar_t / alpha_bar_prev
    return {"one_step_beta_for_strided": jump(schedule.alphas[t].reshape(-1, 1, 1, 1)),
            "variance_as_std": jump(alpha, variance_as_std=True),
            "pair_alpha_inverted": jump(alpha_bar_prev / alpha_bar_t),
            "renoise_alpha_bar_t": jump(alpha_bar_t)}


@contextmanager
def yours_in_the_reference_loop(impl, ref, name: str) -> Iterator[None]:
    """The reference's inpaint_loop runs your ``name`` (inpaint_combine or renoise; it gets the reference's
    helpers) and the reference's other one, so that each of the two is graded alone."""
    with reference_parts(impl.diffusion.module, ref.diffusion, INPAINT_HELPERS), \
            reference_parts(ref.diffusion, yours(impl, "diffusion", name), (name,)):
        yield


def check_inpaint_loop(impl, ref, name: str, x0, mask, model, schedule, options: dict, seed: int,
                       described: dict) -> None:
    """The reference's inpainting loop with your ``name`` inside against the reference's own loop."""
    def run() -> torch.Tensor:
        return ref.diffusion.inpaint_loop(model, schedule, x0, mask, generator=torch.Generator().manual_seed(seed),
                                          **options)

    expected = run()
    with yours_in_the_reference_loop(impl, ref, name):
        got = run()
    check_close(got, expected, function=name, section="5.6",
                what=f"the images of the inpainting loop (your {name} inside the reference's)",
                inputs={**described, **options})
    if name == "inpaint_combine":
        check_close(got * mask, x0 * mask, function=name, section="5.6",
                    what="the known pixels of the result (they must equal the original's)",
                    inputs={**described, **options})


class ToyDenoiser(nn.Module):
    """A tiny deterministic stand-in for the U-Net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * (0.5 + t.to(x.dtype).reshape(-1, 1, 1, 1) / 30)


@pytest.mark.points(2)
@pytest.mark.exercise("5.6", "{name}")
@pytest.mark.parametrize("name, resample", [("inpaint_combine", 1), ("inpaint_combine", 3), ("renoise", 3)],
                         ids=["inpaint_combine, resample 1", "inpaint_combine, resample 3", "renoise, resample 3"])
def test_inpaint_loop(impl, ref, inpainting, name, resample):
    """The reference inpainting loop with your function inside: the same images (and the known pixels kept)"""
    _, x0, mask, _ = inpainting
    model = randomize_(ToyDenoiser().double(), seed=64).eval()
    schedule = ref.noise_schedule.NoiseSchedule.from_name("cosine", 30, dtype=F64)
    options = dict(sampler="ddim", num_steps=5, eta=0.5, resample=resample, prediction="eps")
    check_inpaint_loop(impl, ref, name, x0, mask, model, schedule, options, seed=65,
                       described={"T": 30, "mask": "random strokes"})
