"""Writing files so that an interruption never leaves half of one (provided).

Atomic writes, JSON, checkpoints and PNG grids: every file the commands write
goes through :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from utils import to_unit_range


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask



def atomic_write(path: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it onto ``path``.

    ``os.replace`` is atomic on one file system: a crash or Ctrl-C leaves either the
    old file or the new one, never half of one, and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise



def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint dict with ``torch.save``, atomically."""
    atomic_write(path, lambda handle: torch.save(state, handle))



def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """Save (N, C, H, W) images in [-1, 1] as one PNG grid of ``nrow`` per row (default: about √N),
    small images enlarged (nearest pixel)."""
    from torchvision.utils import make_grid, save_image

    images = to_unit_range(images.detach().float().cpu())
    scale = max(1, 64 // images.shape[-1])
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    grid = make_grid(images, nrow=nrow or math.ceil(math.sqrt(images.shape[0])), padding=2, pad_value=0.5)
    atomic_write(path, lambda handle: save_image(grid, handle, format="png"))



def write_json(path: Path, value: dict) -> None:
    """Write ``value`` as indented JSON (keys sorted), atomically."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))



#: What a checkpoint says it is; a file without it is refused with a clear message.
CHECKPOINT_FORMAT = "diffusion-exercises/train.py checkpoint"



CHECKPOINT_VERSION = 1

