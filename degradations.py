# ─────────────────────────────────────────────────────────────────────────────
# YOUR FILE. Fill in each TODO (the guide's section is named beside it), then
# check your work with:   make grade PHASE=5
# Maintainers: this file is written by `make stubs` from solutions/degradations.py;
# edit the solution and regenerate, never this committed copy.
# ─────────────────────────────────────────────────────────────────────────────
"""Phase 5 · Degradations: what an image-conditioned model learns to undo (guide §5.4–§5.5).

Enhancement as conditional generation: the U-Net sees the noisy x_t and, concatenated
on the channels, a degraded copy y of the clean image; it learns p(x_0 | y). Each
degradation below is a documented transform with its parameters. All of them take
and return images in the model's range [-1, 1], shape (B, C, H, W).

Sections of the guide: §5.4 the degradations (Gaussian noise, Gaussian blur,
downsampling, JPEG-style blocks, masking), §5.5 making the (x_0, condition) pair.
The masks for inpainting (§5.6) and the PSNR / SSIM metrics are provided here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from provided.choices import MASK_PRESETS
from provided.validate import (
    check_batch,
    check_choice,
    check_downsample_arguments,
    check_jpeg_arguments,
    check_mask,
    check_positive,
    mask_file_errors,
)

# ---------------------------------------------------------------------------
# §5.4 The degradations
# ---------------------------------------------------------------------------


def add_gaussian_noise(images: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """y = x + σ · n with n ~ N(0, I): sensor noise (the images are not clamped afterwards).

    Random draws: one ``torch.randn`` shaped like ``images`` from ``generator`` (on its device).

    Args:
        images: (B, C, H, W) in [-1, 1].
        sigma: the noise's standard deviation, in the units of [-1, 1] (0.4 is strong).
        generator: the random source.

    Returns:
        (B, C, H, W) noisy images.
    """
    check_batch(images)
    check_positive(sigma, "sigma")
    # TODO §5.4: Draw on the generator's device (so a seed means the same noise everywhere), then move it.
    raise NotImplementedError("Phase 5.4 · add_gaussian_noise — see IMPLEMENTATION_GUIDE.md §5.4")


def gaussian_kernel(sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 1-D Gaussian kernel of standard deviation σ, radius ⌈3σ⌉, normalised to sum 1 (provided).

    Returns:
        (2r + 1,) weights exp(−k² / (2σ²)) / Σ, for k = −r … r.
    """
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-offsets**2 / (2 * sigma**2))
    return (weights / weights.sum()).to(dtype)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel with a Gaussian of standard deviation σ pixels (out of focus, camera shake).

    The 2-D Gaussian is separable: blur the rows with :func:`gaussian_kernel`, then the
    columns. Borders are padded by reflection, so the output keeps the input's size
    and no dark frame creeps in from zero padding.

    Args:
        images: (B, C, H, W) in [-1, 1], H and W larger than the kernel's radius ⌈3σ⌉.
        sigma: the blur's standard deviation in pixels (1.5 is strong on 28×28 digits).

    Returns:
        (B, C, H, W) blurred images.
    """
    check_batch(images)
    check_positive(sigma, "sigma")
    # TODO §5.4: One depthwise convolution per direction (groups = C): a (C, 1, 1, k) kernel, then its transpose.
    raise NotImplementedError("Phase 5.4 · gaussian_blur — see IMPLEMENTATION_GUIDE.md §5.4")


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Super-resolution's input: average k×k blocks, then upsample back bilinearly to the original size.

    The condition of a U-Net must have the image's size, so the low-resolution
    picture (H/k × W/k) is brought back to H × W; it stays blurry and blocky.

    Args:
        images: (B, C, H, W) in [-1, 1], H and W divisible by ``factor``.
        factor: k ≥ 2.

    Returns:
        (B, C, H, W) the upsampled low-resolution images.
    """
    check_downsample_arguments(images, factor)
    # TODO §5.4: Average pooling is the low-resolution camera; bilinear interpolation (align_corners=False) brings it back.
    raise NotImplementedError("Phase 5.4 · downsample — see IMPLEMENTATION_GUIDE.md §5.4")


def dct_matrix(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (size × size): row u is the u-th cosine basis vector (provided).

    D[u, n] = c_u · cos(π (2n + 1) u / (2 · size)), c_0 = √(1/size), c_u = √(2/size);
    D @ D.T = I, so the inverse transform is D.T.
    """
    n = torch.arange(size, dtype=torch.float64)
    u = n.reshape(-1, 1)
    matrix = torch.cos(math.pi * (2 * n + 1) * u / (2 * size)) * math.sqrt(2 / size)
    matrix[0] = math.sqrt(1 / size)
    return matrix.to(dtype)


def jpeg_blocks(images: torch.Tensor, quality_step: float = 0.5, block: int = 8) -> torch.Tensor:
    """JPEG-style block artifacts: quantise each block's 2-D DCT coefficients, then invert.

    Within each block×block tile, the coefficients C = D X Dᵀ (:func:`dct_matrix`) are
    rounded to multiples of a step that grows with the frequency, as JPEG's tables do:

        step(u, v) = quality_step · (1 + u + v),    Ĉ = step · round(C / step),    X̂ = Dᵀ Ĉ D

    High frequencies are lost first; the tiles no longer join smoothly.

    Args:
        images: (B, C, H, W) in [-1, 1], H and W divisible by ``block``.
        quality_step: the step of the lowest frequency (larger: stronger artifacts).
        block: the tile size (8 in JPEG; 4 suits 28×28 images).

    Returns:
        (B, C, H, W) images with block artifacts.
    """
    check_jpeg_arguments(images, quality_step, block)
    # TODO §5.4: Cut into tiles, transform, quantise with the frequency-dependent step, transform back, reassemble.
    raise NotImplementedError("Phase 5.4 · jpeg_blocks — see IMPLEMENTATION_GUIDE.md §5.4")


def apply_mask(images: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Keep the pixels where mask = 1, set the others to ``fill`` (0: mid-grey in [-1, 1]).

    Args:
        images: (B, C, H, W) in [-1, 1].
        mask: (B, 1, H, W) or (1, 1, H, W) of 0/1 values (1 = known), broadcast over channels.
        fill: the value of the hidden pixels.

    Returns:
        (B, C, H, W) masked images.
    """
    check_batch(images)
    check_mask(mask, images)
    # TODO §5.4: A blend with the mask as weight: known pixels from the image, the rest from the fill value.
    raise NotImplementedError("Phase 5.4 · apply_mask — see IMPLEMENTATION_GUIDE.md §5.4")


# ---------------------------------------------------------------------------
# §5.5 The (x_0, condition) pair of an enhancement task
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """An enhancement task: the degradation and its default strength (provided)."""

    name: str
    description: str
    params: dict = field(default_factory=dict)


#: The enhancement tasks of ``train.py --task`` and ``sample.py --task``.
TASKS = {
    "denoise": Task("denoise", "Gaussian noise of standard deviation 0.4", {"sigma": 0.4}),
    "deblur": Task("deblur", "Gaussian blur of 1.5 pixels", {"sigma": 1.5}),
    "superres": Task("superres", "2× downsampling (average), upsampled back bilinearly", {"factor": 2}),
    "jpeg": Task("jpeg", "4×4-block DCT quantisation with step 0.5 · (1 + u + v)", {"quality_step": 0.5, "block": 4}),
    "mask": Task("mask", "the centre square (half the side) hidden", {"preset": "center"}),
}


def degrade(images: torch.Tensor, task: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the degradation of ``task`` (a key of :data:`TASKS`) with its default strength (provided).

    Args:
        images: (B, C, H, W) in [-1, 1].
        task: "denoise", "deblur", "superres", "jpeg" or "mask".
        generator: the random source (only "denoise" draws).
    """
    check_choice(task, "task", TASKS)
    params = TASKS[task].params
    if task == "denoise":
        return add_gaussian_noise(images, params["sigma"], generator)
    if task == "deblur":
        return gaussian_blur(images, params["sigma"])
    if task == "superres":
        return downsample(images, params["factor"])
    if task == "jpeg":
        return jpeg_blocks(images, params["quality_step"], params["block"])
    mask = make_mask(params["preset"], images.shape[-2:], device=images.device, dtype=images.dtype)
    return apply_mask(images, mask)


def condition_pair(
    images: torch.Tensor, task: str, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pair of an enhancement task: the target x_0 and its degraded copy y, both in [-1, 1].

    Datasets give images in [0, 1]; the model works in [-1, 1] (§3.1). The condition is
    concatenated to x_t on the channels, so it must live in the same range as the data:
    map to [-1, 1] first, then degrade.

    Args:
        images: (B, C, H, W) in [0, 1], as a dataset returns them.
        task: a key of :data:`TASKS`.
        generator: the random source of the degradation.

    Returns:
        x0: (B, C, H, W) in [-1, 1]; cond: (B, C, H, W), the degraded x0.
    """
    check_batch(images)
    # TODO §5.5: Map to the model's range once; the condition is the degradation of that same x0.
    raise NotImplementedError("Phase 5.5 · condition_pair — see IMPLEMENTATION_GUIDE.md §5.5")


# ---------------------------------------------------------------------------
# Masks for inpainting (provided)
# ---------------------------------------------------------------------------


def make_mask(
    preset: str,
    size: tuple[int, int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A (1, 1, H, W) mask of 1s (known) and 0s (to fill in).

    "left": the left half is hidden; "center": the centre square of half the side is
    hidden; "strokes": a few random thick lines are hidden (drawn from ``generator``).
    """
    check_choice(preset, "mask", MASK_PRESETS, alternative="a PNG file")
    height, width = int(size[0]), int(size[1])
    mask = torch.ones(1, 1, height, width, dtype=torch.float64)
    if preset == "left":
        mask[..., : width // 2] = 0
    elif preset == "center":
        top, left = height // 4, width // 4
        mask[..., top: top + height // 2, left: left + width // 2] = 0
    else:
        mask = _strokes(height, width, generator)
    return mask.to(device=device, dtype=dtype)


def _strokes(height: int, width: int, generator: torch.Generator | None, count: int = 4) -> torch.Tensor:
    """Hide ``count`` random straight strokes about a tenth of the image thick."""
    rows = torch.arange(height, dtype=torch.float64).reshape(-1, 1)
    cols = torch.arange(width, dtype=torch.float64).reshape(1, -1)
    mask = torch.ones(1, 1, height, width, dtype=torch.float64)
    thickness = max(1.0, min(height, width) / 10)
    for _ in range(count):
        y0, x0, y1, x1 = (torch.rand(4, generator=generator, dtype=torch.float64) * torch.tensor(
            [height - 1, width - 1, height - 1, width - 1], dtype=torch.float64)).tolist()
        length = max(math.hypot(y1 - y0, x1 - x0), 1e-9)
        # Distance from every pixel to the segment (y0, x0)–(y1, x1).
        along = (((rows - y0) * (y1 - y0) + (cols - x0) * (x1 - x0)) / length**2).clamp(0, 1)
        distance = torch.hypot(rows - (y0 + along * (y1 - y0)), cols - (x0 + along * (x1 - x0)))
        mask[0, 0][distance <= thickness / 2] = 0
    return mask


def load_mask(path, size: tuple[int, int], *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A mask from a PNG (white = known, black = to fill in), resized to ``size`` (nearest): (1, 1, H, W)."""
    from PIL import Image

    with mask_file_errors(path), Image.open(path) as picture:
        grey = picture.convert("L").resize((int(size[1]), int(size[0])), Image.NEAREST)
    pixels = torch.from_numpy(np.asarray(grey, dtype=np.float64)).reshape(1, 1, int(size[0]), int(size[1]))
    return (pixels >= 128).to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------
# Metrics (provided): how close a restored image is to the original
# ---------------------------------------------------------------------------


def psnr(restored: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [-1, 1] (peak-to-peak range 2).

    PSNR = 10 log10(2² / MSE); identical images give +inf. Returns (B,).
    """
    check_batch(restored, "restored")
    check_batch(original, "original")
    error = (restored.clamp(-1, 1) - original).pow(2).flatten(1).mean(dim=1)  # (B,)
    return 10 * torch.log10(4.0 / error)


def ssim(restored: torch.Tensor, original: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, with a uniform window of 7×7 pixels.

    Computed on images mapped to [0, 1] with C1 = 0.01², C2 = 0.03²; averaged over pixels and
    channels (the window is cut at the borders). 1 means identical. Returns (B,).
    """
    check_batch(restored, "restored")
    check_batch(original, "original")
    a, b = (restored.clamp(-1, 1) + 1) / 2, (original + 1) / 2

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, window, stride=1, padding=window // 2, count_include_pad=False)

    mean_a, mean_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mean_a**2
    var_b = local_mean(b * b) - mean_b**2
    covariance = local_mean(a * b) - mean_a * mean_b
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(dim=1)
