"""Phase 5 (and 7) glue that the training and sampling commands share (provided).

How a guidance scale becomes the arguments of ``diffusion.sample_loop`` (for class
labels, or for a caption's tokens with Phase 7's ``text.TextGuidedModel``), how an
image-conditioned U-Net is seen as a plain denoiser, and how three versions of
each image are laid out in one grid.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
from torch import nn


#: Phase 5: images per row of the grids that compare three versions of each image (--task here,
#: --task and --inpaint in sample.py): every group of up to this many images takes three rows.
TRIPLET_COLUMNS = 8


def guidance_inputs(class_labels: torch.Tensor, guidance_scale: float, null_label: int) -> dict:
    """The ``class_labels`` and ``guidance_scale`` to give ``diffusion.sample_loop`` for w = guidance_scale.

    w = 1 is the plain conditional prediction and w = 0 the unconditional one, so both are
    sampled with one network call per step (no guidance: the labels, or the null label for
    every image); any other w is classifier-free guidance, two calls in one doubled batch.
    """
    if guidance_scale == 1:
        return {"class_labels": class_labels, "guidance_scale": None}
    if guidance_scale == 0:
        return {"class_labels": torch.full_like(class_labels, null_label), "guidance_scale": None}
    return {"class_labels": class_labels, "guidance_scale": float(guidance_scale)}


def text_guidance(text_module: ModuleType, model: nn.Module, tokens: torch.Tensor, guidance_scale: float):
    """The network and tokens that sample ``model`` guided at w with its own empty caption as the null:
    w = 1 is the plain conditional model, w = 0 the model given the empty caption, any other w
    text.TextGuidedModel (two calls in one doubled batch), as :func:`guidance_inputs` for labels."""
    if guidance_scale == 1:
        return model, tokens
    if guidance_scale == 0:
        return model, model.empty_tokens.to(tokens.device).expand_as(tokens)
    return text_module.TextGuidedModel(model, float(guidance_scale)), tokens


class ImageConditioned(nn.Module):
    """An image-conditioned U-Net seen as ``model(x_t, t, class_labels)`` (Phase 5, --task).

    ``training_step`` and the samplers call ``model(x_t, t, class_labels)`` and know nothing
    of a condition image; a U-Net built with ``cond_channels`` also needs ``cond``. This
    wrapper holds the condition of the current batch in ``.cond`` (set it before each
    training step or sampling run) and calls ``model(x_t, t, class_labels, cond)``.

    It has no weights of its own: its parameters are the U-Net's (so ``call_model`` finds
    their dtype), but its ``state_dict`` would prefix every name with ``model.``, so
    checkpoints and the EMA keep using the U-Net itself, never this wrapper.
    """

    def __init__(self, model: nn.Module, cond: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.cond = cond  # (B, C, H, W) in [-1, 1], the degraded images

    @property
    def num_classes(self) -> int:
        """The wrapped U-Net's number of classes (``call_model`` reads it for guidance)."""
        return getattr(self.model, "num_classes", 0) or 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond is None:
            raise RuntimeError("ImageConditioned: set .cond, the (B, C, H, W) condition images, before calling it")
        cond = self.cond
        if cond.shape[0] != x.shape[0] and cond.shape[0] and x.shape[0] % cond.shape[0] == 0:
            cond = cond.repeat(x.shape[0] // cond.shape[0], 1, 1, 1)  # a guided batch is doubled
        return self.model(x, t, class_labels, cond.to(x.dtype))


def triplet_rows(
    first: torch.Tensor, second: torch.Tensor, third: torch.Tensor, columns: int = TRIPLET_COLUMNS
) -> tuple[torch.Tensor, int]:
    """Three versions of N images (e.g. degraded, restored, original) arranged for a grid, row by row.

    The images go in groups of ``columns`` (fewer if N is smaller): each group takes three
    rows, one per version, so every image sits above its other versions. A last, partial
    group is filled with mid-grey cells (0 in [-1, 1]), which the grid's grey background hides.

    Args:
        first, second, third: (N, C, H, W) each, in [-1, 1].
        columns: images per row at most.

    Returns:
        (3 · groups · per_row, C, H, W) images on the CPU, and per_row = min(columns, N), the
        ``nrow`` to give the grid.
    """
    count = first.shape[0]
    per_row = max(1, min(columns, count))
    groups = math.ceil(count / per_row)
    parts = []
    for images in (first, second, third):
        images = images.detach().float().cpu()
        missing = groups * per_row - count
        if missing:
            images = torch.cat([images, images.new_zeros(missing, *images.shape[1:])])
        parts.append(images.reshape(groups, per_row, *images.shape[1:]))
    return torch.stack(parts, dim=1).flatten(0, 2), per_row  # (groups, 3, per_row, …) → rows

