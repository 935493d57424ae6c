"""Argument types, help texts and one-line errors shared by the commands (provided).

Every argument type raises ``argparse.ArgumentTypeError``, which argparse reports
as one line, "argument --flag: …", and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable

import torch


def flag(dest: str) -> str:
    """The command-line spelling of a setting: "batch_size" → "--batch-size"."""
    return "--" + dest.replace("_", "-")



#: The help of --threads, shared by train.py, sample.py and evaluate.py.
THREADS_HELP = (
    "CPU threads for torch (default: torch's choice, one per core); on a machine busy with other "
    "programs 1 is often several times faster"
)



def apply_threads(threads: int | None) -> None:
    """``--threads N``: the number of CPU threads torch uses in this process (None: leave torch's default).

    With more threads than free cores, every operation waits for whichever of its
    threads lost its core, so on a busy machine one thread can beat two by far.
    """
    if threads is not None:
        torch.set_num_threads(threads)



def int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number ≥ {minimum}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number ≥ {minimum}; got {value}")
        return value

    parse.__name__ = f"int ≥ {minimum}"
    return parse



def float_in(low: float, high: float | None = None, *, low_open: bool = True, high_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        if not (math.isfinite(value) and above and below):
            left = "(" if low_open else "["
            right = "∞)" if high is None else (f"{high:g})" if high_open else f"{high:g}]")
            raise argparse.ArgumentTypeError(f"must be a number in {left}{low:g}, {right}; got {text!r}")
        return value

    parse.__name__ = "number"
    return parse



def int_list(allow_empty: bool):
    def parse(text: str) -> tuple[int, ...]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        try:
            values = tuple(int(part) for part in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated whole numbers such as 1,2,4; got {text!r}"
            ) from None
        if not values and not allow_empty:
            raise argparse.ArgumentTypeError(f"must name at least one number, such as 1,2,4; got {text!r}")
        if any(value < 0 for value in values):
            raise argparse.ArgumentTypeError(f"must be whole numbers ≥ 0; got {text!r}")
        return values

    parse.__name__ = "list"
    return parse



def one_line(error: Exception | str, limit: int = 400) -> str:
    """An exception's message (or a text) on one line, shortened to ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"




def guidance_scales(text: str) -> tuple[float, ...]:
    """--guidance-grid, --sweep: guidance scales w ≥ 0 separated by commas, such as 0,1,3,5 (repeats dropped)."""
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        scales = ()
    if not scales or not all(math.isfinite(w) and w >= 0 for w in scales):
        raise argparse.ArgumentTypeError(
            f"must be guidance scales ≥ 0 separated by commas, such as 0,1,3,5; got {text!r}"
        )
    return tuple(dict.fromkeys(scales))


# ---------------------------------------------------------------------------
# --impl, and the one-line errors every command ends with
# ---------------------------------------------------------------------------

#: The help of --impl, shared by train.py, sample.py and evaluate.py.
IMPL_HELP = (
    "whose code runs: auto (each phase yours where it is complete, else the reference; one line "
    "per phase says which), learner (yours only) or solutions (the reference only); "
    "default: $DIFFUSION_IMPL, else auto"
)


class CommandError(RuntimeError):
    """A problem that stops a command, reported as one line ("train.py: error: …"), exit status 1."""


def not_attempted(error: NotImplementedError, needs: str) -> str:
    """The line for a stub a command needs: what is missing, what the command runs, and how to go on."""
    from .phases import has_reference

    way_on = ("or run the reference with --impl solutions (--impl auto takes the reference for "
              "every unfinished phase)" if has_reference() else "this copy has no reference to fall back on")
    return f"not attempted yet: {error}. {needs}; finish that function (make grade shows what is left), {way_on}"


def run_command(prog: str, body: Callable[[], int], *, needs: str, interrupted: str) -> int:
    """Run a command's ``body`` and turn every expected failure into one line on stderr.

    Args:
        prog: the command's name, which starts each error line ("train.py").
        body: the command; returns its exit status.
        needs: which of the learner's files the command runs, for the "not attempted yet" line.
        interrupted: what Ctrl-C leaves behind.

    Returns:
        What ``body`` returns; 1 for a stub, an implementation that does not import or a
        :class:`CommandError`; 130 for Ctrl-C.
    """
    from .phases import ImplementationError

    try:
        return body()
    except NotImplementedError as error:
        print(f"{prog}: error: {not_attempted(error, needs)}", file=sys.stderr)
    except (CommandError, ImplementationError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\n{prog}: {interrupted}", file=sys.stderr)
        return 130
    return 1
