"""The one checker every phase check goes through.

Two pieces:

* :func:`learner_error_message` turns what the worker reports about learner
  code (it runs in a separate process, see grading/sandbox.py) into one
  readable line: a stub is "not attempted yet", a crash names the line of the
  learner's file that raised.
* :func:`check_close` compares a learner's tensor with the reference's in a fixed
  order: type, dtype, device, shape (with a hint), NaN/inf, values
  (``torch.testing.assert_close``), and on failure probes the known wrong
  variants to name the classic mistake.

Failures are reported with ``pytest.fail(…, pytrace=False)``: the student reads
a message, not a traceback of the checking code.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import pytest
import torch

from .mistakes import MISTAKES, NOT_ATTEMPTED
from .sandbox import LearnerError, RemoteObject

GUIDE = "IMPLEMENTATION_GUIDE.md"

#: Tolerances by dtype: float64 tight enough to catch float32 rounding, float32 as torch's.
TOLERANCES = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-12},
    torch.float32: {"rtol": 1.3e-6, "atol": 1e-5},
}


def fail(message: str) -> None:
    """Fail the current check with ``message`` only (no traceback of the checking code)."""
    pytest.fail(message, pytrace=False)


def nan_shaped(*shapes: tuple[int, ...]) -> list[torch.Tensor]:
    """Stand-ins for wrong outputs known by their shape alone (check_close names a shape that matches)."""
    return [torch.full(shape, math.nan, dtype=torch.float64) for shape in shapes]


def pair(got, function: str, section: str, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``got`` as a pair of tensors, or a failed check saying what the function should return."""
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(g, torch.Tensor) for g in got)):
        fail(f"{function} should return a pair of tensors ({names[0]}, {names[1]}); got {type(got).__name__}"
             f"{f' of length {len(got)}' if isinstance(got, (tuple, list)) else ''}. "
             f"See {GUIDE} §{section}.")
    return got[0], got[1]


def classic_mistake(key: str) -> str:
    """The sentence naming catalogue mistake ``key``, as check_close words it, for checks that find it otherwise."""
    return _name(key)


@contextmanager
def naming_crash(key: str, *fragments: str) -> Iterator[None]:
    """Name the mistake ``key`` when the block fails (a failed check, or learner code that raised) with a message
    containing every one of ``fragments`` (any case): the crash that this mistake causes. The message replaces
    the failure, so the report shows it once."""
    try:
        yield
    except (LearnerError, pytest.fail.Exception) as error:
        message = learner_error_message(error.info) if isinstance(error, LearnerError) else str(error.msg)
        if not all(fragment.lower() in message.lower() for fragment in fragments):
            raise
        raise pytest.fail.Exception(message + _name(key), pytrace=False) from None


# ---------------------------------------------------------------------------
# Reporting what learner code did in the worker
# ---------------------------------------------------------------------------


def learner_error_message(info: dict) -> str:
    """One readable report of a learner error sent by the worker (see grading.worker.describe_error).

    A stub becomes the one-line "not attempted yet"; a crash names the learner's
    line; an import failure says that no check of the file can run. Texts from
    the worker are the learner's own and are shortened there.
    """
    kind, label = info.get("kind"), str(info.get("label", ""))
    message, error_type = str(info.get("message", "")), str(info.get("type", "Error"))
    if kind == "stub":
        if f"· {label} " in message:
            return f"`{label}`: {NOT_ATTEMPTED} ({message})."
        return (f"`{label}` calls a function that is still a stub ({message}): finish that one, and this "
                "check runs.")
    if kind == "modified":
        mistake = MISTAKES["input_modified_in_place"]
        return f"`{label}` modified its input {message}: **{mistake.title}**. {mistake.advice}"
    if kind == "import":
        return (f"{info.get('module', 'a learner file')}.py could not be imported: {error_type}: {message}. "
                "Fix it first: no check of this file can run.")
    if kind == "absent":
        return (f"{info.get('module', 'a learner file')}.py is not in the submission: hand it in as a plain "
                "file with that name, beside the others (no check of it can run).")
    if kind == "missing":
        return (f"{info.get('file') or 'your file'} has no `{message}`: keep the names and signatures of the "
                "stubs (the checks call them by name).")
    if kind == "exit":
        return f"`{label}` tried to end the process ({error_type}: {message}); learner code must return."
    if kind == "lent":
        return (f"`{label}` called a reference helper that the check lends it, with inputs the reference "
                f"refuses: {error_type}: {message}")
    where = f" at {info['where']}" if info.get("where") else ""
    function = str(info.get("function") or "")
    if function and function.rsplit(".", 1)[-1] != label.rsplit(".", 1)[-1]:
        where += f", in your `{function}`"
    section = section_of(function) or section_of(label)
    see = f" See {GUIDE} §{section}." if section else ""
    text = f"`{label}` raised {error_type}: {message}{where}"
    return f"{text}{'' if text.endswith('.') else '.'}{see}"


#: The guide section of each graded function ("ddpm_step" → "4.4"), filled in as the checks are collected.
SECTIONS: dict[str, str] = {}


def section_of(function: str) -> str:
    """The guide section of a learner function or method ("UNet.forward" → "2.7"), "" when unknown."""
    return SECTIONS.get(function) or SECTIONS.get(function.split(".")[0], "")


# ---------------------------------------------------------------------------
# Describing inputs
# ---------------------------------------------------------------------------


def describe(value: Any) -> str:
    """A short description of an argument: shape and dtype for tensors, the value for the rest."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        if value.dtype == torch.int64 and value.numel() <= 8:
            return f"tensor({value.tolist()})"
        device = "" if value.device.type == "cpu" else f" on {value.device}"
        return f"{dtype} tensor of shape {tuple(value.shape)}{device}"
    if hasattr(value, "num_timesteps"):
        return f"a {getattr(value, 'name', None) or 'custom'} schedule with T = {value.num_timesteps}"
    return repr(value)


def describe_call(function: str, inputs: Mapping[str, Any] | None) -> str:
    args = ", ".join(f"{key}={describe(value)}" for key, value in (inputs or {}).items())
    return f"`{function}({args})`"


# ---------------------------------------------------------------------------
# Comparing outputs
# ---------------------------------------------------------------------------


def type_name(value: Any) -> str:
    """The type of a learner's value as the learner wrote it (an object in the worker: its own class)."""
    return value.type_name if isinstance(value, RemoteObject) else type(value).__name__


def check_close(
    got: Any,
    expected: torch.Tensor,
    *,
    function: str,
    section: str,
    inputs: Mapping[str, Any] | None = None,
    mistakes: Mapping[str, torch.Tensor | list[torch.Tensor]] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "the result",
) -> None:
    """Fail the check unless ``got`` matches ``expected``; explain what is wrong if not.

    Args:
        got: what the learner's function returned.
        expected: what the reference returned for the same inputs.
        function: the function's name, for the message.
        section: the guide section, e.g. "1.6".
        inputs: the arguments, described in the message (name → value).
        mistakes: known wrong outputs for the same inputs (a tensor, or a list of
            tensors when a mistake has several forms), keyed by a
            :data:`grading.mistakes.MISTAKES` key; a match names the mistake.
        rtol, atol: tolerances; default by dtype (:data:`TOLERANCES`).
        what: which output this is, when a function returns several.
    """
    mistakes = mistakes or {}
    unknown = set(mistakes) - set(MISTAKES)
    if unknown:
        raise KeyError(f"unknown mistake keys {sorted(unknown)}; add them to grading/mistakes.py")
    call = describe_call(function, inputs)
    see = f"See {GUIDE} §{section}."

    if not isinstance(got, torch.Tensor):
        fail(
            f"{call}: {what} should be a torch.Tensor of shape {tuple(expected.shape)}, "
            f"got {type_name(got)}. {see}"
        )
    if got.dtype != expected.dtype:
        fail(f"{call}: {what} has dtype {got.dtype}, expected {expected.dtype}.{_dtype_hint(got, expected, section)}"
             f" {see}")
    if got.device != expected.device:
        fail(f"{call}: {what} is on {got.device}, expected {expected.device}. {see}")
    if got.shape != expected.shape:
        fail(
            f"{call}: {what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}."
            f"{_shape_hint(got, expected, mistakes)} {see}"
        )

    tolerances = dict(TOLERANCES.get(expected.dtype, {"rtol": 1e-5, "atol": 1e-8}))
    if rtol is not None:
        tolerances["rtol"] = rtol
    if atol is not None:
        tolerances["atol"] = atol

    bad = ~torch.isfinite(got) & torch.isfinite(expected)
    if bad.any():
        index = tuple(bad.nonzero()[0].tolist())
        fail(
            f"{call}: {what} has NaN or ±inf where the reference is finite, first at index "
            f"{index} ({got[index].item()})."
            f"{_mistake_hint(got, mistakes, tolerances)} {see}"
        )

    try:
        torch.testing.assert_close(got, expected, equal_nan=True, **tolerances)
        return
    except AssertionError as error:
        summary = _value_summary(got, expected, error)
    hint = _mistake_hint(got, mistakes, tolerances) or _float32_hint(got, expected)
    fail(f"{call}: wrong values in {what}.\n{summary}{hint}\n{see}")


def _value_summary(got: torch.Tensor, expected: torch.Tensor, error: AssertionError) -> str:
    """Largest difference with its index, expected vs got there, and the relative error."""
    difference = (got.double() - expected.double()).abs()
    index = tuple(torch.nonzero(difference == difference.max())[0].tolist()) if got.ndim else ()
    scale = expected.double().abs().max().item()
    relative = difference.max().item() / scale if scale > 0 else math.inf
    mismatched = next(
        (line.strip() for line in str(error).splitlines() if line.strip().startswith("Mismatched")),
        "",
    )
    digits = 6 if relative > 1e-4 else 12  # a rounding-sized error needs the digits that show it
    return (
        f"  {mismatched}\n"
        f"  largest difference at index {index}: expected {expected[index].item():.{digits}g}, "
        f"got {got[index].item():.{digits}g}\n"
        f"  relative error (largest difference / largest |expected|): {relative:.2e}\n"
    )


def _variants(mistakes: Mapping) -> list[tuple[str, torch.Tensor]]:
    """Flatten ``{key: tensor or [tensors]}`` into (key, tensor) pairs."""
    pairs = []
    for key, wrong in mistakes.items():
        for tensor in wrong if isinstance(wrong, (list, tuple)) else [wrong]:
            pairs.append((key, tensor))
    return pairs


def _name(key: str) -> str:
    mistake = MISTAKES[key]
    return f"\n  This looks like a classic mistake: **{mistake.title}**. {mistake.advice}"


def _named(keys: list[str]) -> str:
    """Name one mistake, or several that give the same output on these inputs ("one of …")."""
    keys = list(dict.fromkeys(keys))  # each once, in the order given
    if len(keys) == 1:
        return _name(keys[0])
    titles = " or ".join(f"**{MISTAKES[key].title}**" for key in keys)
    advice = " ".join(f"({number}) {MISTAKES[key].advice}" for number, key in enumerate(keys, 1))
    return (f"\n  This looks like one of these classic mistakes, which give the same output on these inputs: "
            f"{titles}. {advice}")


def _mistake_hint(got: torch.Tensor, mistakes: Mapping, tolerances: dict) -> str:
    """Name every classic mistake whose output ``got`` matches (one of them, when several do), or say nothing."""
    keys = [key for key, wrong in _variants(mistakes) if _matches(got, wrong, tolerances)]
    return _named(keys) if keys else ""


def _float32_hint(got: torch.Tensor, expected: torch.Tensor) -> str:
    """A float64 result off by float32 rounding only (about 1e-7 relative) names that, whatever the function."""
    if expected.dtype != torch.float64 or not torch.isfinite(expected).all():
        return ""
    scale = expected.abs().max().clamp(min=1e-300)
    relative = ((got - expected).abs() / (expected.abs() + 1e-3 * scale)).max().item()
    return _name("float32_rounding") if 0 < relative < 1e-5 else ""


def _dtype_hint(got: torch.Tensor, expected: torch.Tensor, section: str) -> str:
    if {got.dtype, expected.dtype} != {torch.float32, torch.float64}:
        return ""
    if section in ("1.1", "1.2", "1.3", "1.4"):
        return (" Schedules are computed in float64: torch.linspace, torch.arange and torch.tensor make "
                "float32 unless you pass dtype=torch.float64.")
    return (" Return the dtype the docstring names (usually that of the tensor you were given, e.g. x's: "
            "`.to(x.dtype)`); a float32 constant or a float64 schedule mixed in changes it.")


def _matches(got: torch.Tensor, wrong: torch.Tensor, tolerances: dict) -> bool:
    if not isinstance(wrong, torch.Tensor) or wrong.shape != got.shape:
        return False
    wrong = wrong.to(device=got.device, dtype=got.dtype)
    return bool(torch.isclose(got, wrong, equal_nan=True, **tolerances).all())


def _shape_hint(got: torch.Tensor, expected: torch.Tensor, mistakes: Mapping) -> str:
    keys = [key for key, wrong in _variants(mistakes) if isinstance(wrong, torch.Tensor) and wrong.shape == got.shape]
    if keys:
        return _named(keys)
    if got.numel() == expected.numel():
        return " Same number of elements: check your reshape (the batch stays first)."
    if got.ndim > expected.ndim:
        return (
            " An extra dimension usually means a (B,) tensor broadcast against (B, C, H, W) "
            "from the wrong side: reshape it to (B, 1, 1, 1) first."
        )
    return ""
