"""Helpers for checking ``nn.Module`` exercises (the U-Net's blocks, Phase 2 onwards).

A learner's block is compared with the reference on *shared weights*: the
reference block gets seeded random weights, the learner's block loads them with
``load_state_dict(strict=True)`` (which works when the module names follow the
guide), and both run on the same inputs. When the names or shapes differ,
:func:`load_reference_weights` explains how, and names a classic mistake when
the shapes point to one.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from types import ModuleType
from typing import Callable, Iterator

import torch
from torch import nn

from . import wire
from .checker import GUIDE, fail
from .mistakes import MISTAKES
from .sandbox import RemoteObject, lent


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded random weights, in place (:func:`grading.wire.randomize_` says how); return ``model``.

    A learner's model (a handle to the worker) is randomised there, by the same rule.
    """
    if isinstance(model, RemoteObject):
        return model._conversation.randomize(model, seed)
    return wire.randomize_(model, seed)


# ---------------------------------------------------------------------------
# Loading the reference's weights into the learner's module
# ---------------------------------------------------------------------------

#: (pattern on a parameter name, test on (learner shape, reference shape), mistake key):
#: the shape differences that betray a known mistake.
SHAPE_DIAGNOSES: tuple[tuple[str, Callable[[tuple, tuple], bool], str], ...] = (
    # Decoder blocks that take fewer input channels than running + skip channels.
    (r"decoder\.\d+\.blocks\.\d+\.(conv1|skip)\.weight$", lambda mine, ref: mine[1] < ref[1], "skip_not_concatenated"),
    (r"decoder\.\d+\.blocks\.\d+\.norm1\.(weight|bias)$", lambda mine, ref: mine[0] < ref[0], "skip_not_concatenated"),
)
#: Missing names that betray a known mistake.
MISSING_DIAGNOSES: tuple[tuple[str, str], ...] = (
    (r"decoder\.\d+\.blocks\.\d+\.skip\.weight$", "skip_not_concatenated"),
    (r"(^|\.)norm\d?\.weight$", "groupnorm_missing"),
)


#: Names the reference lacks that betray a known mistake.
UNEXPECTED_DIAGNOSES: tuple[tuple[str, str], ...] = (
    (r"^downsamples\.\d+\.conv\.weight$", "ae_downsample_every_level"),  # the autoencoder's: one per level
)


def _first(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def weight_differences(mine: nn.Module, reference: nn.Module) -> tuple[list[str], list[str], list[str]]:
    """Missing names, unexpected names and shape mismatches of ``mine`` against ``reference``."""
    own = {name: tuple(value.shape) for name, value in mine.state_dict().items()}
    ref = {name: tuple(value.shape) for name, value in reference.state_dict().items()}
    missing = [name for name in ref if name not in own]
    unexpected = [name for name in own if name not in ref]
    mismatched = [f"{name}: yours {own[name]}, reference {ref[name]}" for name in ref if name in own and own[name] != ref[name]]
    return missing, unexpected, mismatched


def diagnose(mine: nn.Module, reference: nn.Module) -> str | None:
    """The key of the classic mistake that the names and shapes of ``mine`` point to, if any."""
    own = {name: tuple(value.shape) for name, value in mine.state_dict().items()}
    for name, ref_value in reference.state_dict().items():
        ref_shape = tuple(ref_value.shape)
        for pattern, test, key in SHAPE_DIAGNOSES:
            if name in own and own[name] != ref_shape and re.search(pattern, name) and test(own[name], ref_shape):
                return key
        if name not in own and not _whole_block_missing(name, own):
            for pattern, key in MISSING_DIAGNOSES:
                if re.search(pattern, name):
                    return key
    references = reference.state_dict()
    for name in own:
        for pattern, key in UNEXPECTED_DIAGNOSES:
            if name not in references and re.search(pattern, name):
                return key
    return None


def _whole_block_missing(name: str, own: dict) -> bool:
    """True when the block holding parameter ``name`` is missing altogether ("decoder.0.blocks.1.norm1.weight"
    with no "decoder.0.blocks.1." at all): a missing block, not a missing layer inside one."""
    parts = name.split(".")
    if len(parts) < 3:
        return False
    block = ".".join(parts[:-2]) + "."
    return not any(key.startswith(block) for key in own)


def load_reference_weights(mine: nn.Module, reference: nn.Module, *, what: str, section: str) -> None:
    """Copy ``reference``'s weights into ``mine`` (strict); fail the check with an explanation if they do not fit."""
    missing, unexpected, mismatched = weight_differences(mine, reference)
    if not (missing or unexpected or mismatched):
        mine.load_state_dict(reference.state_dict(), strict=True)
        return
    lines = [
        f"{what} does not have the reference's parameters, so it cannot load them with "
        f"load_state_dict(strict=True) (the checks compare blocks on shared weights; {GUIDE} §2.0 "
        f"lists the names and §{section} this module)."
    ]
    if missing:
        lines.append(f"  missing (the reference has them, yours not): {_first(missing)}")
    if unexpected:
        lines.append(f"  unexpected (yours has them, the reference not): {_first(unexpected)}")
    if mismatched:
        lines.append(f"  different shapes: {_first(mismatched, 4)}")
    key = diagnose(mine, reference)
    if key is not None:
        mistake = MISTAKES[key]
        lines.append(f"  This looks like a classic mistake: **{mistake.title}**. {mistake.advice}")
    fail("\n".join(lines))


def check_parameter_count(mine: nn.Module, reference: nn.Module, *, what: str, section: str) -> None:
    """Fail unless ``mine`` has as many trainable parameters as ``reference`` (a check that ignores names)."""
    own = sum(p.numel() for p in mine.parameters() if p.requires_grad)
    ref = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    if own == ref:
        return
    message = (
        f"{what} has {own:,} trainable parameters; the reference has {ref:,} "
        f"({'fewer' if own < ref else 'more'} by {abs(own - ref):,})."
    )
    key = diagnose(mine, reference)
    if key is not None:
        mistake = MISTAKES[key]
        message += f"\n  This looks like a classic mistake: **{mistake.title}**. {mistake.advice}"
    else:
        message += " Compare your layers with the table of shapes in the guide."
    fail(f"{message}\nSee {GUIDE} §{section}.")


@contextmanager
def reference_parts(learner_module: ModuleType, reference_module: ModuleType, names: tuple[str, ...]) -> Iterator[None]:
    """Temporarily put the reference's classes and functions ``names`` into the learner's module.

    With the reference blocks inside, the learner's ``UNet`` is graded on its
    assembly alone: a mistake in a block costs that block's checks, not these.
    When the learner's module lives in the worker, the reference objects stay
    here and the worker gets stand-ins (:func:`grading.sandbox.lent`).
    """
    if isinstance(learner_module, RemoteObject):
        with lent(learner_module, reference_module, names):
            yield
        return
    saved = {name: getattr(learner_module, name, None) for name in names}
    try:
        for name in names:
            setattr(learner_module, name, getattr(reference_module, name))
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(learner_module, name)
            else:
                setattr(learner_module, name, value)
