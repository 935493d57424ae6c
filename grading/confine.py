"""Confine the worker before it imports anything else (run by the worker's bootstrap).

Copied beside ``worker.py`` into the sandbox's scratch folder; standard library
only, because it runs before torch is imported.

When the grader runs as root (Gradescope, a container, a course server) the
worker gives up root for an unprivileged user, so that it cannot read files
only root may read, write the grader's files, signal the grader or undo any of
this. Where the kernel lets root make a private mount namespace, the worker
first makes one, in which:

- the grading checkout (the reference, the checks, the grader) and the
  submission folders are covered by empty read-only folders, so files that
  every user may read are hidden too;
- every other mount is read-only, except the worker's scratch ``work`` folder;
- folders that the unprivileged user could not pass through on the way to
  Python and its packages (a Python installed under ``/root``, say) are
  covered by a folder that it can pass, holding only what it needs.

Settings come from the environment variable ``GRADING_CONFINE`` (JSON):
``{"user": uid, "hide": [paths], "reach": [paths], "writable": path}``.
Without it, or with ``"user": null``, nothing is changed. What was done is
returned as a short note for the grader (see ``grading/sandbox.py``).
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS = 38
KEEP_WRITABLE_TYPES = {"proc", "sysfs", "devtmpfs", "devpts", "mqueue", "cgroup", "cgroup2"}

_libc = ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args: object) -> None:
    if getattr(_libc, name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


def _mount(source: str | None, target: str | Path, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda value: None if value is None else str(value).encode()  # noqa: E731
    _call("mount", encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))


def _passable(folder: Path) -> bool:
    """Whether any user may pass through ``folder`` (its "others" execute bit)."""
    return bool(folder.stat().st_mode & stat.S_IXOTH)


def _first_blocked(path: Path) -> tuple[Path, str] | None:
    """The first folder on the way to ``path`` that others cannot pass, and the next name under it."""
    parts = path.parts
    for depth in range(1, len(parts)):
        folder = Path(*parts[:depth])
        if not _passable(folder):
            return folder, parts[depth]
    return None


def make_reachable(paths: list[Path], stage: Path) -> None:
    """Cover each blocked folder on the way to ``paths`` with a passable one holding only those entries."""
    for _ in range(16):  # one blocked level per round, from the top
        blocked: dict[Path, set[str]] = {}
        for path in paths:
            found = _first_blocked(path)
            if found is not None:
                blocked.setdefault(found[0], set()).add(found[1])
        if not blocked:
            return
        folder = min(blocked, key=lambda p: len(p.parts))
        names = sorted(blocked[folder])
        staged = []
        for number, name in enumerate(names):
            target = stage / f"{len(folder.parts)}-{number}"
            target.mkdir(parents=True, exist_ok=True)
            _mount(str(folder / name), target, None, MS_BIND | MS_REC)
            staged.append((name, target))
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for name, target in staged:
            (folder / name).mkdir()
            _mount(str(target), folder / name, None, MS_BIND | MS_REC)
            _call("umount2", str(target).encode(), MNT_DETACH)
        _mount(None, folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    raise OSError("too many blocked folders on the way to Python")


def hide(paths: list[Path]) -> None:
    """Cover folders with an empty read-only folder and files with an empty file."""
    for path in paths:
        if path.is_symlink() or not path.exists():
            continue
        if path.is_dir():
            _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=4k")
        else:
            _mount("/dev/null", path, None, MS_BIND)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def make_read_only(writable: Path) -> None:
    """Every mount read-only, except ``writable`` (bound onto itself first) and kernel file systems."""
    _mount(str(writable), writable, None, MS_BIND)
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        point = fields[4].encode().decode("unicode_escape")
        options, fstype = fields[5].split(","), fields[separator + 1]
        mounts.append((point, options, fstype))
    for point, options, fstype in mounts:
        if point == str(writable) or fstype in KEEP_WRITABLE_TYPES or "ro" in options:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= (MS_NOSUID if "nosuid" in options else 0) | (MS_NODEV if "nodev" in options else 0)
        flags |= MS_NOEXEC if "noexec" in options else 0
        try:
            _mount(None, point, None, flags)
        except OSError:
            pass  # a mount the kernel will not remount: it stays as it was


CONFINED = "private mount namespace: the grading files hidden, every other folder read-only"


def drop_to(user: int) -> None:
    os.setgroups([])
    os.setgid(user)
    os.setuid(user)
    _call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def apply() -> str:
    """Confine this process as ``GRADING_CONFINE`` says; a note on what was done."""
    settings = json.loads(os.environ.get("GRADING_CONFINE") or "{}")
    user = settings.get("user")
    if user is None:
        return ""
    writable = Path(settings["writable"])
    try:
        _call("unshare", CLONE_NEWNS)
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as error:
        note = f"no private mount namespace ({error.strerror}): files every user may read stay readable"
    else:
        make_reachable([Path(p) for p in settings.get("reach", [])], writable.parent / "stage")
        hide([Path(p) for p in settings.get("hide", [])])
        make_read_only(writable)
        os.chdir(writable)  # the old working directory is the read-only view of the folder
        note = CONFINED
    drop_to(user)
    return note
