"""Argument types, help texts and one-line errors shared by the commands (provided).

Every argument type raises ``argparse.ArgumentTypeError``, which argparse reports
as one line, "argument --flag: …", and exit status 2. The size flags have upper bounds
(``MAX_*`` below, shown in each command's --help); :func:`setting_problem` checks the
settings a command saved (in a checkpoint) with the same rules; :func:`check_writable`
refuses an output before the work; :func:`run_command` turns every expected failure
(memory that runs out, a file that cannot be written…) into one line, exit status 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable

import torch


# ---------------------------------------------------------------------------
# Upper bounds of the size flags
# ---------------------------------------------------------------------------
# Far above any use of this project, yet low enough that a slip (an extra zero, 1000000000)
# is refused at once instead of running for days or filling the memory. --help shows each.

#: T, the diffusion steps (DDPM uses 1000).
MAX_TIMESTEPS = 100_000
#: Pixels per side (the datasets here are 28 to 64; a 1024² U-Net needs a large GPU).
MAX_IMAGE_SIZE = 1024
#: train.py --num-images (MNIST has 60,000 training images).
MAX_TRAIN_IMAGES = 1_000_000
#: Test images: sample.py --from-dataset, evaluate.py --num-samples (the test splits hold 10,000).
MAX_TEST_IMAGES = 10_000
#: Images sampled in one run of sample.py (the usual FID count, 50,000, fits).
MAX_SAMPLES = 100_000
#: Images per batch, every command.
MAX_BATCH_SIZE = 65_536
#: Optimizer steps of a run (with --steps, or what --epochs makes), and warm-up steps.
MAX_STEPS = 10_000_000
#: Images of train.py's sample grids.
MAX_GRID_IMAGES = 1024
#: torch seeds are 64-bit: torch.manual_seed refuses anything larger.
MAX_SEED = 2**63 - 1
SEED_WHY = "torch's seeds are 64-bit"
#: --threads, --num-workers, --grad-accum, --resample: beyond these, a slip rather than a choice.
MAX_THREADS = 1024
MAX_WORKERS = 256
MAX_GRAD_ACCUM = 1024
MAX_RESAMPLE = 100
#: U-Net size flags: --base-channels, --num-res-blocks, --num-heads.
MAX_BASE_CHANNELS = 1024
MAX_RES_BLOCKS = 16
MAX_HEADS = 64


def document_bounds(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Append "; at most N" to the help of every flag whose type has an upper bound (the bound enforced
    is the bound shown); return the parser."""
    for action in parser._actions:
        maximum = getattr(action.type, "maximum", None)
        if maximum is not None and action.help:
            why = getattr(action.type, "why", "")
            action.help += f"; at most {maximum}" + (f" ({why})" if why else "")
    return parser


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


def int_at_least(minimum: int, maximum: int | None = None, why: str = ""):
    """A whole number ≥ ``minimum`` (and ≤ ``maximum``, if given; ``why`` says why, in the messages)."""
    expected = f"a whole number ≥ {minimum}" if maximum is None else f"a whole number from {minimum} to {maximum}"
    expected += f" ({why})" if why else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {expected}; got {value}")
        return value

    parse.__name__ = f"int ≥ {minimum}"
    parse.expected, parse.values, parse.maximum, parse.why = expected, (int,), maximum, why
    return parse


def float_in(low: float, high: float | None = None, *, low_open: bool = True, high_open: bool = True):
    """A finite number in the interval from ``low`` to ``high`` (None: no upper end), open or closed at each."""
    left = "(" if low_open else "["
    right = "∞)" if high is None else (f"{high:g})" if high_open else f"{high:g}]")
    expected = f"a number in {left}{low:g}, {right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        if not (math.isfinite(value) and above and below):
            raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}")
        return value

    parse.__name__ = "number"
    parse.expected, parse.values = expected, (int, float)
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
    parse.expected, parse.values = "whole numbers ≥ 0 separated by commas, such as 1,2,4", (list, tuple)
    return parse


def setting_problem(parser: argparse.ArgumentParser, settings: dict, required: tuple[str, ...] = ()) -> str | None:
    """The first of ``settings`` (flags as a command saved them, dest → value) that its flag refuses.

    Each value is checked with the rule of its own flag in ``parser`` (its type, bounds and
    choices), so that a damaged file is refused with the words a flag would get. A value of
    None passes where the flag's default is None, except for the names in ``required``.

    Returns:
        "NAME is VALUE, expected WHAT", or None when every setting passes.
    """
    for action in parser._actions:
        name = action.dest
        if name not in settings or not action.option_strings or name == "help":
            continue
        value = settings[name]
        if value is None and action.default is None and name not in required:
            continue
        if action.nargs == 0:  # --flag alone: store_true, store_false
            expected = None if isinstance(value, bool) else "true or false"
        elif action.choices is not None:
            expected = None if value in action.choices else "one of " + ", ".join(map(str, action.choices))
        elif action.type is None:
            expected = None if isinstance(value, str) else "a text"
        else:
            expected = getattr(action.type, "expected", "what the flag accepts")
            if isinstance(value, getattr(action.type, "values", object)) and not isinstance(value, bool):
                text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
                try:
                    action.type(text)
                    expected = None
                except (argparse.ArgumentTypeError, TypeError, ValueError):
                    pass
        if expected is not None:
            return f"{name} is {value!r}, expected {expected}"
    return None


def check_writable(parser: argparse.ArgumentParser, name: str, path: Path, folder: bool = False) -> None:
    """Refuse (as an error of the flag ``name``, exit status 2) an output that cannot be written.

    ``path`` is the file to write, or with ``folder`` the folder to write files into; the
    probe (:func:`provided.files.unwritable`) really creates a file there, before any work.
    """
    from .files import unwritable

    reason = unwritable(Path(path), folder=folder)
    if reason:
        parser.error(f"argument {name}: cannot write {path}: {reason}")


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that memory ran out (on the CPU or a GPU)."""
    if isinstance(error, (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        words in text for words in ("out of memory", "can't allocate memory", "could not allocate", "not enough memory")
    )


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


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The "run" group of sample.py and evaluate.py: --device, --threads and --impl."""
    from utils import DEVICES, IMPLEMENTATIONS

    run = parser.add_argument_group("run")
    run.add_argument("--device", default="auto", choices=DEVICES,
                     help="auto: CUDA, then Apple's MPS, then the CPU (default: %(default)s)")
    run.add_argument("--threads", default=None, type=int_at_least(1, MAX_THREADS), metavar="N", help=THREADS_HELP)
    run.add_argument("--impl", default=None, choices=IMPLEMENTATIONS, help=IMPL_HELP)


class CommandError(RuntimeError):
    """A problem that stops a command, reported as one line ("train.py: error: …"), exit status 1."""


def not_attempted(error: NotImplementedError, needs: str) -> str:
    """The line for a stub a command needs: what is missing, what the command runs, and how to go on."""
    from .phases import has_reference

    way_on = ("or run the reference with --impl solutions (--impl auto takes the reference for "
              "every unfinished phase)" if has_reference() else "this copy has no reference to fall back on")
    return f"not attempted yet: {error}. {needs}; finish that function (make grade shows what is left), {way_on}"


def run_command(
    prog: str, body: Callable[[], int], *, needs: str, interrupted: str, memory: str = "lower --batch-size"
) -> int:
    """Run a command's ``body`` and turn every expected failure into one line on stderr.

    Args:
        prog: the command's name, which starts each error line ("train.py").
        body: the command; returns its exit status.
        needs: which of the learner's files the command runs, for the "not attempted yet" line.
        interrupted: what Ctrl-C leaves behind.
        memory: what to lower when memory runs out ("lower --batch-size").

    Returns:
        What ``body`` returns; 1 for a stub, an implementation that does not import, a
        :class:`CommandError`, memory that ran out or a file that could not be read or
        written (an ``OSError``: the disk full, a folder that went away…); 130 for Ctrl-C.
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
    except (MemoryError, RuntimeError) as error:
        if not out_of_memory(error):
            raise
        print(f"{prog}: error: out of memory: {memory} ({one_line(error, 200)})", file=sys.stderr)
    except OSError as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
    return 1
