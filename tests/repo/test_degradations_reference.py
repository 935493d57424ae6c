"""Independent tests of the reference degradations (``solutions/degradations.py``, Phase 5).

The graded checks (tests/checks/) compare a learner's functions with the reference; these
tests check the reference itself against properties worked out by hand: what a blur keeps,
what the DCT quantiser keeps, the metrics on known cases, the masks, and the errors.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from solutions import degradations as D


def noise(*shape: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Uniform values in [low, high), float64, reproducible."""
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


# ---------------------------------------------------------------------------
# Gaussian noise
# ---------------------------------------------------------------------------


def test_gaussian_noise_adds_sigma_times_the_generators_normal_draw():
    images = noise(2, 3, 8, 8)
    noisy = D.add_gaussian_noise(images, 0.4, torch.Generator().manual_seed(5))
    expected = images + 0.4 * torch.randn(images.shape, generator=torch.Generator().manual_seed(5), dtype=images.dtype)
    torch.testing.assert_close(noisy, expected)


def test_gaussian_noise_has_the_asked_standard_deviation():
    images = torch.zeros(4, 1, 64, 64)
    noisy = D.add_gaussian_noise(images, 0.4, torch.Generator().manual_seed(0))
    assert abs(noisy.std().item() - 0.4) < 0.01 and abs(noisy.mean().item()) < 0.01


# ---------------------------------------------------------------------------
# Gaussian blur
# ---------------------------------------------------------------------------


def test_gaussian_kernel_is_normalised_symmetric_and_three_sigma_wide():
    for sigma in (0.5, 1.0, 1.5, 2.2):
        kernel = D.gaussian_kernel(sigma, torch.float64)
        assert kernel.numel() == 2 * max(1, math.ceil(3 * sigma)) + 1
        torch.testing.assert_close(kernel.sum(), torch.tensor(1.0, dtype=torch.float64))
        torch.testing.assert_close(kernel, kernel.flip(0))
        assert kernel.argmax().item() == kernel.numel() // 2


@pytest.mark.parametrize("sigma", [0.7, 1.5])
def test_blurring_a_constant_image_gives_the_constant(sigma):
    images = torch.full((2, 3, 20, 20), 0.37, dtype=torch.float64)
    torch.testing.assert_close(D.gaussian_blur(images, sigma), images)


def test_blur_keeps_the_mean_of_an_image_whose_borders_are_constant():
    """With reflection padding, mass leaks at the borders only if something varies within r + 1 pixels of them."""
    sigma = 1.0
    radius = math.ceil(3 * sigma)  # 3
    images = torch.full((1, 2, 16, 16), -0.25, dtype=torch.float64)
    inner = slice(radius + 1, 16 - radius - 1)  # rows and columns 4 … 11
    images[..., inner, inner] = noise(1, 2, 8, 8, seed=1)
    blurred = D.gaussian_blur(images, sigma)
    torch.testing.assert_close(blurred.mean(dim=(2, 3)), images.mean(dim=(2, 3)))
    assert not torch.allclose(blurred, images), "the blur must change the image"


def test_the_blur_of_an_impulse_is_the_outer_product_of_the_kernel():
    sigma = 1.2
    kernel = D.gaussian_kernel(sigma, torch.float64)
    radius = kernel.numel() // 2
    images = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    images[0, 0, 10, 10] = 1.0
    blurred = D.gaussian_blur(images, sigma)
    expected = torch.zeros_like(images)
    expected[0, 0, 10 - radius : 10 + radius + 1, 10 - radius : 10 + radius + 1] = torch.outer(kernel, kernel)
    torch.testing.assert_close(blurred, expected)


def test_blur_works_channel_by_channel():
    images = noise(1, 3, 12, 12, seed=2)
    together = D.gaussian_blur(images, 1.0)
    for channel in range(3):
        alone = D.gaussian_blur(images[:, channel : channel + 1], 1.0)
        torch.testing.assert_close(together[:, channel : channel + 1], alone)


# ---------------------------------------------------------------------------
# Downsampling (super-resolution's input)
# ---------------------------------------------------------------------------


def test_downsample_keeps_the_size_and_a_constant():
    images = torch.full((2, 1, 16, 16), 0.6, dtype=torch.float64)
    out = D.downsample(images, 2)
    assert out.shape == images.shape
    torch.testing.assert_close(out, images)


def test_downsample_only_sees_the_block_means():
    """Any pattern with zero mean inside every k × k block is invisible to the low-resolution camera."""
    images = noise(2, 3, 16, 16, seed=3)
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64).repeat(8, 8)  # zero mean per 2×2 block
    torch.testing.assert_close(D.downsample(images + 0.3 * checker, 2), D.downsample(images, 2))
    assert not torch.allclose(D.downsample(images, 2), images)


@pytest.mark.parametrize("factor", [2, 4])
def test_downsample_keeps_the_mean_of_the_image(factor):
    """Bilinear upsampling (align_corners=False) gives each low-resolution pixel a total weight of k per
    axis, so the image mean survives exactly, although avg_pool(downsample(x)) differs from avg_pool(x)."""
    images = noise(2, 3, 16, 16, seed=4)
    out = D.downsample(images, factor)
    torch.testing.assert_close(out.mean(dim=(2, 3)), images.mean(dim=(2, 3)))
    assert not torch.allclose(F.avg_pool2d(out, factor), F.avg_pool2d(images, factor), atol=1e-3), \
        "bilinear upsampling smooths across blocks: the block means are not kept (if this fails, test them)"


# ---------------------------------------------------------------------------
# JPEG-style blocks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [4, 8])
def test_dct_matrix_is_orthonormal(size):
    matrix = D.dct_matrix(size, torch.float64)
    identity = torch.eye(size, dtype=torch.float64)
    torch.testing.assert_close(matrix @ matrix.T, identity)
    torch.testing.assert_close(matrix.T @ matrix, identity)
    torch.testing.assert_close(matrix[0], torch.full((size,), 1 / math.sqrt(size), dtype=torch.float64))


def test_jpeg_blocks_with_a_tiny_step_change_almost_nothing():
    images = noise(2, 3, 16, 16, seed=5)
    step = 1e-6
    out = D.jpeg_blocks(images, quality_step=step, block=4)
    # Each coefficient moves by at most step·(1 + u + v)/2 ≤ 3.5·step; the orthonormal inverse keeps that scale.
    assert (out - images).abs().max() < 4 * 4 * step


def test_jpeg_blocks_with_a_huge_step_quantise_even_the_mean_to_zero():
    """The DC coefficient is rounded to a multiple of quality_step too: |DC| ≤ block · 1 ≪ 1000 rounds to 0."""
    images = noise(1, 3, 8, 8, seed=6)
    assert torch.equal(D.jpeg_blocks(images, quality_step=1000.0, block=4), torch.zeros_like(images))


def test_jpeg_blocks_keep_only_each_tiles_mean_quantised_when_the_detail_is_small():
    """Small detail: every AC coefficient is below half its step, so only the DC survives, rounded.

    DC = block · mean of the tile (orthonormal DCT), so each tile becomes the constant
    step · round(block · mean / step) / block: here, with step 0.5 and block 4, its mean
    rounded to a multiple of 1/8.
    """
    block, step = 4, 0.5
    means = torch.tensor([[0.30, -0.70], [0.05, 0.52]], dtype=torch.float64)  # one per tile, away from x.0625
    detail = noise(1, 1, 8, 8, seed=7, low=-0.05, high=0.05)
    tiles = detail.reshape(2, block, 2, block)
    detail = (tiles - tiles.mean(dim=(1, 3), keepdim=True)).reshape(1, 1, 8, 8)  # zero mean per tile
    images = means.repeat_interleave(block, 0).repeat_interleave(block, 1)[None, None] + detail
    out = D.jpeg_blocks(images, quality_step=step, block=block)
    expected_means = step * torch.round(block * means / step) / block  # [[0.25, -0.75], [0, 0.5]]
    expected = expected_means.repeat_interleave(block, 0).repeat_interleave(block, 1)[None, None]
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(expected_means, torch.tensor([[0.25, -0.75], [0.0, 0.5]], dtype=torch.float64))


def test_jpeg_blocks_work_tile_by_tile():
    """Changing one tile leaves the others as they were."""
    images = noise(1, 1, 8, 8, seed=8)
    changed = images.clone()
    changed[..., :4, :4] = noise(1, 1, 4, 4, seed=9)
    before, after = D.jpeg_blocks(images, 0.3, 4), D.jpeg_blocks(changed, 0.3, 4)
    torch.testing.assert_close(before[..., 4:, :], after[..., 4:, :])
    torch.testing.assert_close(before[..., :4, 4:], after[..., :4, 4:])


# ---------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------


def test_apply_mask_with_all_ones_is_the_identity_and_with_zeros_the_fill():
    images = noise(2, 3, 8, 8, seed=10)
    torch.testing.assert_close(D.apply_mask(images, torch.ones(1, 1, 8, 8, dtype=torch.float64)), images)
    filled = D.apply_mask(images, torch.zeros(2, 1, 8, 8, dtype=torch.float64), fill=-0.5)
    assert torch.equal(filled, torch.full_like(images, -0.5))


def test_apply_mask_keeps_the_known_pixels_in_every_channel():
    images = noise(1, 3, 8, 8, seed=11)
    mask = D.make_mask("left", (8, 8), dtype=torch.float64)
    masked = D.apply_mask(images, mask)
    assert torch.equal(masked[..., 4:], images[..., 4:])
    assert torch.equal(masked[..., :4], torch.zeros(1, 3, 8, 4, dtype=torch.float64))


@pytest.mark.parametrize("size", [(8, 8), (28, 28), (32, 16)])
def test_left_hides_half_and_center_a_quarter(size):
    height, width = size
    left = D.make_mask("left", size)
    center = D.make_mask("center", size)
    for mask in (left, center):
        assert mask.shape == (1, 1, height, width) and mask.dtype == torch.float32
        assert torch.all((mask == 0) | (mask == 1))
    assert int((left == 0).sum()) == height * width // 2 and torch.all(left[..., : width // 2] == 0)
    assert int((center == 0).sum()) == (height // 2) * (width // 2)
    assert center[0, 0, height // 2, width // 2] == 0 and center[0, 0, 0, 0] == 1


def test_strokes_are_random_but_reproducible():
    first = D.make_mask("strokes", (28, 28), generator=torch.Generator().manual_seed(0))
    again = D.make_mask("strokes", (28, 28), generator=torch.Generator().manual_seed(0))
    other = D.make_mask("strokes", (28, 28), generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    hidden = int((first == 0).sum())
    assert 0 < hidden < 28 * 28 // 2 and torch.all((first == 0) | (first == 1))


def test_load_mask_reads_a_png_white_known_black_hidden(tmp_path):
    pixels = Image.new("L", (8, 4), 255)
    for x in range(3):
        for y in range(4):
            pixels.putpixel((x, y), 0)  # the left 3 columns are hidden
    path = tmp_path / "mask.png"
    pixels.save(path)
    mask = D.load_mask(path, (4, 8))
    expected = torch.ones(1, 1, 4, 8)
    expected[..., :3] = 0
    assert torch.equal(mask, expected)
    bigger = D.load_mask(path, (8, 16))  # nearest-neighbour resize: each pixel becomes 2 × 2
    assert bigger.shape == (1, 1, 8, 16) and int((bigger == 0).sum()) == 4 * 3 * 4


def test_load_mask_of_a_colour_png_uses_its_brightness(tmp_path):
    path = tmp_path / "colour.png"
    picture = Image.new("RGB", (4, 4), (250, 250, 250))
    picture.putpixel((0, 0), (10, 0, 30))
    picture.save(path)
    mask = D.load_mask(path, (4, 4))
    assert mask[0, 0, 0, 0] == 0 and int(mask.sum()) == 15


# ---------------------------------------------------------------------------
# The tasks and the (x0, condition) pair
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("task", list(D.TASKS))
def test_condition_pair_maps_to_minus_one_one_then_degrades(task):
    images = noise(2, 1, 16, 16, seed=12, low=0.0, high=1.0).float()
    x0, cond = D.condition_pair(images, task, torch.Generator().manual_seed(3))
    torch.testing.assert_close(x0, 2 * images - 1)
    torch.testing.assert_close(cond, D.degrade(2 * images - 1, task, torch.Generator().manual_seed(3)))
    assert cond.shape == images.shape and not torch.allclose(cond, x0)


def test_each_task_is_its_documented_degradation():
    x = noise(1, 1, 16, 16, seed=13).float()
    torch.testing.assert_close(D.degrade(x, "deblur"), D.gaussian_blur(x, 1.5))
    torch.testing.assert_close(D.degrade(x, "superres"), D.downsample(x, 2))
    torch.testing.assert_close(D.degrade(x, "jpeg"), D.jpeg_blocks(x, 0.5, 4))
    torch.testing.assert_close(D.degrade(x, "mask"), D.apply_mask(x, D.make_mask("center", (16, 16))))
    torch.testing.assert_close(
        D.degrade(x, "denoise", torch.Generator().manual_seed(1)),
        D.add_gaussian_noise(x, 0.4, torch.Generator().manual_seed(1)),
    )


def test_only_denoise_draws_from_the_generator():
    x = noise(1, 1, 16, 16, seed=14).float()
    for task in D.TASKS:
        generator = torch.Generator().manual_seed(0)
        before = generator.get_state()
        D.degrade(x, task, generator)
        assert torch.equal(generator.get_state(), before) == (task != "denoise"), task


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def test_psnr_of_identical_images_is_infinite():
    images = noise(3, 1, 8, 8, seed=15)
    assert torch.isinf(D.psnr(images, images)).all() and (D.psnr(images, images) > 0).all()


def test_psnr_of_an_offset_of_one_tenth_is_26_dB():
    images = noise(2, 3, 8, 8, seed=16, low=-0.5, high=0.5)  # + 0.1 stays inside [-1, 1]: no clamping
    expected = 10 * math.log10(4 / 0.01)
    assert abs(expected - 26.0206) < 1e-4
    torch.testing.assert_close(D.psnr(images + 0.1, images), torch.full((2,), expected, dtype=torch.float64))


def test_psnr_clamps_the_restored_images():
    original = torch.ones(1, 1, 4, 4)
    assert torch.isinf(D.psnr(original + 5, original)).all()


def test_ssim_of_identical_images_is_one_and_of_unrelated_noise_near_zero():
    a = noise(2, 1, 64, 64, seed=17)
    b = noise(2, 1, 64, 64, seed=18)
    torch.testing.assert_close(D.ssim(a, a), torch.ones(2, dtype=torch.float64))
    assert D.ssim(a, b).abs().max() < 0.05
    assert (D.ssim(D.gaussian_blur(a, 1.0), a) < 0.9).all() and (D.ssim(a + 0.01, a) > 0.99).all()


# ---------------------------------------------------------------------------
# Errors name the argument
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, named",
    [
        (lambda x: D.add_gaussian_noise(x, 0.0), ValueError, "sigma"),
        (lambda x: D.gaussian_blur(x, -1.0), ValueError, "sigma"),
        (lambda x: D.gaussian_blur(x[0], 1.0), TypeError, "images"),
        (lambda x: D.downsample(x, 1), ValueError, "factor"),
        (lambda x: D.downsample(x, 3), ValueError, "factor"),
        (lambda x: D.downsample(x, 2.0), ValueError, "factor"),
        (lambda x: D.jpeg_blocks(x, 0.0), ValueError, "quality_step"),
        (lambda x: D.jpeg_blocks(x, 0.5, block=5), ValueError, "block"),
        (lambda x: D.degrade(x, "sharpen"), ValueError, "task"),
        (lambda x: D.apply_mask(x, torch.ones(1, 1, 4, 4)), ValueError, "mask"),
        (lambda x: D.apply_mask(x, torch.full((1, 1, 16, 16), 0.5)), ValueError, "mask"),
        (lambda x: D.apply_mask(x, torch.ones(1, 1, 16, 16, dtype=torch.int64)), TypeError, "mask"),
        (lambda x: D.make_mask("diagonal", (16, 16)), ValueError, "mask"),
        (lambda x: D.psnr(x.long(), x), TypeError, "restored"),
        (lambda x: D.ssim(x, x[0]), TypeError, "original"),
    ],
    ids=["noise-sigma", "blur-sigma", "blur-3d", "factor-1", "factor-3", "factor-float", "quality-step",
         "block", "task", "mask-shape", "mask-values", "mask-dtype", "preset", "psnr", "ssim"],
)
def test_bad_inputs_raise_naming_the_argument(call, error, named):
    images = noise(2, 1, 16, 16, seed=19).float()
    with pytest.raises(error, match=named):
        call(images)


def test_load_mask_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(ValueError, match="mask file .* does not exist"):
        D.load_mask(missing, (8, 8))
    text = tmp_path / "notes.png"
    text.write_text("not a picture", encoding="utf-8")
    with pytest.raises(ValueError, match="mask file .* is not a readable image"):
        D.load_mask(text, (8, 8))
