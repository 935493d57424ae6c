"""Provided helpers (no exercises here): choosing the implementation, devices, seeding, pictures.

Nothing in this file is graded, and nothing here is generated: this is the only copy.
``import_impl("diffusion")`` gives your diffusion.py, the reference's, or (the default,
``auto``) yours phase by phase where a phase is complete; provided/phases.py explains how.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

# Which implementation: yours, the reference, or phase by phase (provided/phases.py explains).
from provided.phases import IMPL_ENV_VAR, IMPLEMENTATIONS, import_impl, resolve_impl  # noqa: F401


# ---------------------------------------------------------------------------
# Devices and seeds
# ---------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``: "auto" takes CUDA, then MPS, then the CPU."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but this machine has no MPS; use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Map images from [-1, 1] to [0, 1] for display, clamping what falls outside."""
    return ((images + 1) / 2).clamp(0, 1)


def render_digit(digit: int, size: int = 28) -> torch.Tensor:
    """One clean digit drawn with the DejaVu Sans Bold font that matplotlib ships.

    Args:
        digit: 0–9.
        size: height and width in pixels.

    Returns:
        Tensor of shape (1, size, size) in [-1, 1]: white digit on black.
    """
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be between 0 and 9, got {digit}")
    font_path = font_manager.findfont(
        font_manager.FontProperties(family="DejaVu Sans", weight="bold"), fallback_to_default=True
    )
    font = ImageFont.truetype(font_path, int(size * 0.8))
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((size / 2, size / 2), str(digit), fill=255, font=font, anchor="mm")
    pixels = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)  # (H, W) in [0, 1]
    return (pixels * 2 - 1).unsqueeze(0)  # (1, H, W) in [-1, 1]


def image_grid(images: torch.Tensor, nrow: int | None = None, min_size: int = 64) -> torch.Tensor:
    """Tile images in [-1, 1] into one picture, small ones enlarged (nearest pixel) for viewing.

    Args:
        images: (N, C, H, W) with C = 1 or 3, values in about [-1, 1].
        nrow: images per row (default: about √N, so the grid is square).
        min_size: enlarge by an integer factor until each image is at least this tall.

    Returns:
        (3, H', W') float tensor in [0, 1], grey between the images.
    """
    from torchvision.utils import make_grid

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W); got {tuple(images.shape)}")
    images = to_unit_range(images.detach().float().cpu())
    scale = max(1, min_size // images.shape[-2])
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    nrow = nrow or max(1, int(np.ceil(np.sqrt(images.shape[0]))))
    return make_grid(images, nrow=nrow, padding=2, pad_value=0.5)


def to_pil(picture: torch.Tensor):
    """A (3, H, W) tensor in [0, 1] (such as an :func:`image_grid`) as a PIL image."""
    from PIL import Image

    pixels = (picture.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)
    return Image.fromarray(pixels)


def side_by_side(left: torch.Tensor, right: torch.Tensor, gap: int = 8) -> torch.Tensor:
    """Two (3, H, W) pictures of equal height joined with a white gap: (3, H, W_left + gap + W_right)."""
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"pictures must have the same height; got {left.shape[1]} and {right.shape[1]}")
    spacer = torch.ones(3, left.shape[1], gap)
    return torch.cat([left, spacer, right], dim=2)


def save_gif(frames: list[torch.Tensor], path: str | os.PathLike, seconds_per_frame: float = 0.08,
             hold_last: float = 1.5) -> Path:
    """Write (3, H, W) pictures in [0, 1] as an endlessly looping GIF; the last frame is held longer.

    Args:
        frames: the pictures, all of one size.
        path: the .gif file to write (its folder is created).
        seconds_per_frame: how long each frame shows.
        hold_last: how long the final frame shows before the loop restarts.
    """
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    pictures = [to_pil(frame) for frame in frames]
    durations = [round(seconds_per_frame * 1000)] * (len(pictures) - 1) + [round(hold_last * 1000)]
    from provided.files import atomic_write  # imported here: provided/files.py imports this module

    path = Path(path)
    atomic_write(path, lambda handle: pictures[0].save(handle, format="GIF", save_all=True,
                                                       append_images=pictures[1:], duration=durations, loop=0))
    return path


def trajectory_frames(trajectory, max_images: int = 16) -> list[torch.Tensor]:
    """One picture per recorded step of a ``diffusion.Trajectory``: the x_t grid beside the x̂_0 grid.

    Args:
        trajectory: a Trajectory after sampling (its x_t and x0_hat are (F, B, C, H, W)).
        max_images: how many of the batch's images to show.

    Returns:
        F pictures, each (3, H, W) in [0, 1].
    """
    x_t, x0_hat = trajectory.x_t[:, :max_images], trajectory.x0_hat[:, :max_images]
    return [side_by_side(image_grid(noisy), image_grid(clean)) for noisy, clean in zip(x_t, x0_hat)]
