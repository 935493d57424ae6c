"""Provided helpers (no exercises here): choosing the implementation, devices, seeding, pictures.

Nothing in this file is graded. Read it when you want to know how the
commands and notebooks pick your code or the reference, or how images are saved.
"""

from __future__ import annotations

import importlib
import os
import random
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

# ---------------------------------------------------------------------------
# Which implementation: your files ("learner") or the reference ("solutions")
# ---------------------------------------------------------------------------

#: The accepted values of ``--impl`` and of the DIFFUSION_IMPL environment variable.
IMPLEMENTATIONS = ("learner", "solutions")
IMPL_ENV_VAR = "DIFFUSION_IMPL"


def resolve_impl(impl: str | None = None) -> str:
    """The implementation to use: ``impl`` if given, else $DIFFUSION_IMPL, else "learner"."""
    chosen = impl or os.environ.get(IMPL_ENV_VAR) or "learner"
    if chosen not in IMPLEMENTATIONS:
        source = "--impl" if impl else IMPL_ENV_VAR
        raise ValueError(
            f"{source} must be one of {', '.join(IMPLEMENTATIONS)}; got {chosen!r}"
        )
    return chosen


def import_impl(module_name: str, impl: str | None = None) -> ModuleType:
    """Import ``module_name`` (e.g. "diffusion") from your files or from ``solutions/``.

    Args:
        module_name: a top-level module of the exercises, such as "noise_schedule".
        impl: "learner" or "solutions"; None means $DIFFUSION_IMPL or "learner".
    """
    if resolve_impl(impl) == "solutions":
        return importlib.import_module(f"solutions.{module_name}")
    return importlib.import_module(module_name)


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


def ensure_parent(path: str | os.PathLike) -> Path:
    """Create the folder that will hold ``path``; return it as a Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
