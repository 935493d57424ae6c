"""Writing files so that an interruption never leaves half of one, and reading them back (provided).

Atomic writes, JSON, checkpoints and PNG grids: every file the commands write
goes through :func:`atomic_write`; :func:`unwritable` checks an output before the
work that fills it, :func:`read_torch_file` reads what ``torch.save`` wrote (with
``weights_only=True``), and :func:`load_weights` loads a U-Net's weights, saying in one
line what does not match.

torch is imported inside the functions that use it, so that a command that only
writes files (grade.py) starts without it: importing torch takes about 2 s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
import zipfile
from pathlib import Path

#: What a train.py checkpoint says it is (its "format" field); a file without it is refused.
CHECKPOINT_FORMAT = "diffusion-exercises/train.py checkpoint"
CHECKPOINT_VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class WriteError(OSError):
    """A file that could not be written (the disk full, a read-only folder…), in one line naming it."""


def temporary_prefix(name: str) -> str:
    """How the temporary files of :func:`atomic_write` for a file called ``name`` start (they end in .tmp)."""
    return f".{name}."


def atomic_write(path: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it onto ``path``.

    ``os.replace`` is atomic on one file system: a crash or Ctrl-C leaves either the
    old file or the new one, never half of one, and no temporary file behind (a killed
    process may leave one, ``.NAME.*.tmp``, which :func:`sweep_temporaries` removes).

    Raises:
        WriteError: an ``OSError`` on the way (the disk full…), saying which file and that
            the previous one, if any, is kept.
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".tmp")
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise write_error(path, error) from error
        raise


def write_error(path: Path, error: OSError) -> WriteError:
    """The :class:`WriteError` for ``error`` met while writing ``path``."""
    reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
    if error.errno == errno.ENOSPC:
        reason += " (the disk is full: free some space, or write elsewhere)"
    kept = "; the previous file is kept" if path.is_file() else ""
    failure = WriteError(f"cannot write {path}: {reason}{kept}")
    failure.errno = error.errno
    return failure


def unwritable(path: Path, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written, in a few words; None when it can.

    ``path`` is a file to write (its folders may still be missing), or with ``folder`` a
    folder to write files into. The check is a real probe, not a look at permission bits
    (which root ignores, and which say nothing of a read-only disk): it creates and
    removes an empty temporary file in the folder that would hold ``path``, or in its
    nearest existing ancestor when that folder is still to be made.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return "it is not a folder"
    if not folder and path.is_dir():
        return "it is a folder, not a file"
    ancestor = path if folder else path.parent
    try:
        while not ancestor.exists():
            ancestor = ancestor.parent
    except OSError as error:
        return f"{ancestor} cannot be reached ({error.strerror or error})"
    if not ancestor.is_dir():
        return f"{ancestor} is not a folder"
    try:
        descriptor, probe = tempfile.mkstemp(dir=ancestor, prefix=temporary_prefix(path.name), suffix=".tmp")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        return f"no file can be created in {ancestor} ({error.strerror or error})"
    return None


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` that a killed process left in ``folder``
    (``.NAME.*.tmp``); return their paths. Call it only while no other process writes there."""
    removed = []
    for stale in sorted(Path(folder).glob(f"{temporary_prefix('*')}*.tmp")):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            stale.unlink()
            removed.append(stale)
    return removed


@contextlib.contextmanager
def exclusive_lock(path: Path):
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if missing) for the ``with`` block.

    Yields True while holding it, False when another process holds it (nothing waits). The
    kernel releases the lock when the process ends, however it ends. Where there is no
    ``fcntl`` (Windows), it yields True and locks nothing.
    """
    try:
        import fcntl
    except ImportError:
        yield True
        return
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class UnreadableFile(ValueError):
    """A file that ``torch.load(weights_only=True)`` could not read; the message says why in a few words."""


def read_torch_file(path: Path):
    """What ``torch.save`` wrote at ``path``, read with ``torch.load(weights_only=True)`` onto the CPU.

    Raises:
        UnreadableFile: the file is missing or unreadable, not a torch file, cut short, or
            holds Python objects that ``weights_only=True`` refuses (never loaded otherwise).
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, not a torch file, a foreign pickle…
        raise UnreadableFile(unreadable_reason(Path(path), error)) from None


def unreadable_reason(path: Path, error: Exception) -> str:
    """Why torch.load failed on ``path``, in a few words (torch.save writes a zip archive)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError as unreadable:  # missing, or no permission to read it
        return unreadable.strerror or " ".join(str(unreadable).split())
    if start != b"PK\x03\x04":
        return "it is not a file that torch.save wrote"
    if not zipfile.is_zipfile(path):
        return "it is cut short: the end of the file is missing"
    text = str(error)
    if "Weights only load failed" in text or "weights_only" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        held = f" ({found.group(1)})" if found else ""
        return (f"it holds non-tensor Python objects{held}, refused for safety: loading them could run any code")
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    line = " ".join(text.splitlines()[0].split()) if text else type(error).__name__
    return line if len(line) <= 200 else line[:199] + "…"


def weights_problem(weights: object) -> str | None:
    """None if ``weights`` is a state_dict (a dict of tensors by name), else what it is instead."""
    import torch

    if isinstance(weights, dict) and all(isinstance(key, str) and isinstance(value, torch.Tensor)
                                         for key, value in weights.items()):
        return None
    return f"a {type(weights).__name__}, not the U-Net's weights (a dict of tensors)"


def load_weights(model: torch.nn.Module, weights: object, shown: int = 3) -> None:
    """``model.load_state_dict(weights)``, strictly; ValueError, in one line, when they do not match.

    The line counts the missing, unexpected and differently shaped tensors and names
    the first ``shown`` of each (torch's own message lists every one, on many lines).
    """
    problem = weights_problem(weights)
    if problem:
        raise ValueError(problem)
    expected = model.state_dict()
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    reshaped = [f"{name} {tuple(weights[name].shape)} instead of {tuple(tensor.shape)}"
                for name, tensor in expected.items() if name in weights and weights[name].shape != tensor.shape]

    def some(names: list[str]) -> str:
        return ", ".join(names[:shown]) + (", …" if len(names) > shown else "")

    parts = [f"{len(names)} {what} ({some(names)})" for names, what in
             ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if names]
    if parts:
        raise ValueError(f"{'; '.join(parts)} of {len(expected)} tensors")
    model.load_state_dict(weights)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint dict with ``torch.save``, atomically."""
    import torch

    atomic_write(path, lambda handle: torch.save(state, handle))


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """Save (N, C, H, W) images in [-1, 1] as one PNG grid of ``nrow`` per row (default: about √N),
    small images enlarged (nearest pixel)."""
    import torch.nn.functional as F
    from torchvision.utils import make_grid, save_image

    from utils import to_unit_range

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
