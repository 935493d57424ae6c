"""Processes a grading run starts, and those a submission leaves behind (standard library only).

The grader makes itself a child subreaper: a process that a submission
detaches (a double fork, ``setsid``) is adopted by the grader instead of init
when its parent dies, so :func:`sweep_orphans` can find it and kill it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper() -> None:
    """Adopt the orphans of this process's descendants (Linux; elsewhere nothing happens)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def children_of(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` and ``pid`` itself; gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def sweep_orphans(keep: set[int] = frozenset(), rounds: int = 20) -> None:
    """Kill and reap every process adopted by this one (a subreaper), except those in ``keep``."""
    own = set(keep) | {child.pid for child in getattr(subprocess, "_active", []) or []}
    for _ in range(rounds):
        adopted = [pid for pid in children_of(os.getpid()) if pid not in own]
        if not adopted:
            return
        for pid in adopted:
            kill_group(pid)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
