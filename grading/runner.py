"""Run the checks in one trusted pytest process and collect the results.

The pytest process holds the checks, the reference and the report; learner
code runs only in the sandbox's worker (grading/sandbox.py), one fresh child
per check, killed from outside when it overruns its per-check timeout. The
report comes back over a pipe that only the pytest process holds, so nothing
a submission does can write a result: the list of checks and their points is
what pytest collected from the trusted check files, and a result for a check
that was not collected, or a second one for the same check, is ignored.

pytest is started so that nothing outside the grader can load code into it:
no conftest.py (``--noconftest``), no plugin auto-loading, the plugin named
explicitly, the repository's own pyproject.toml, an environment without
PYTHON* or PYTEST* variables. A total time budget bounds the run: when it is
spent, the whole process group is killed and the checks that had not reported
are marked "did not finish"; the checks that had finished still count.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .mistakes import NOT_ATTEMPTED
from .processes import children_of, set_subreaper, sweep_orphans

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKS_DIR = REPO_ROOT / "tests" / "checks"
#: Checks students do not see: other seeds, shapes and step counts (left out of the student release).
HIDDEN_CHECKS_DIR = REPO_ROOT / "tests" / "hidden"
MAX_REPORT_BYTES = 32 * 2**20  # far more than the checks ever write
DEFAULT_TIME_BUDGET = 480.0  # seconds: Gradescope's default limit is 10 minutes, setup included

PHASE_TITLES = {
    1: "Noise schedules and the forward process",
    2: "The U-Net denoiser",
    3: "The training loop",
    4: "DDPM and DDIM sampling",
    5: "Conditioning and classifier-free guidance",
    6: "Latent diffusion",
    7: "Text-to-image",
}
PHASES = tuple(PHASE_TITLES)


@dataclass
class CheckResult:
    """One graded check: what it is (from the collection record) and how it went."""

    nodeid: str
    name: str
    number: str
    section: str
    function: str
    phase: int
    points: float
    visibility: str = "visible"
    uses: tuple[str, ...] = ()  # other learner functions an integration check runs (the `uses` marker)
    outcome: str = "not run"  # passed | failed | skipped | not run
    output: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def score(self) -> float:
        return self.points if self.passed else 0.0

    @property
    def not_attempted(self) -> bool:
        return not self.passed and NOT_ATTEMPTED in self.output


@dataclass
class PhaseResult:
    """All checks of one phase, plus a note when the phase's run itself went wrong."""

    phase: int
    checks: list[CheckResult] = field(default_factory=list)
    problem: str = ""
    seconds: float = 0.0
    isolation: str = ""  # how the worker ran, when it was not fully confined (README, "For instructors")

    @property
    def title(self) -> str:
        return PHASE_TITLES.get(self.phase, f"Phase {self.phase}")

    @property
    def score(self) -> float:
        return sum(check.score for check in self.checks)

    @property
    def max_score(self) -> float:
        return sum(check.points for check in self.checks)


def pytest_command(
    phases: tuple[int, ...],
    *,
    impl: str,
    submission: Path | None,
    check_timeout: float,
    report_fd: int,
    ack_fd: int,
    extra_paths: tuple[Path, ...] = (),
    threads: int | None = None,
    keyword: str | None = None,
    replay: Path | None = None,
    record: Path | None = None,
) -> list[str]:
    """The pytest command line that runs the checks of ``phases`` and reports on ``report_fd``.

    With ``replay``, the reference's answers come from that recording (grading/recording.py); with
    ``record``, they are written to it. Either way only the visible checks run (a recording holds
    only theirs).
    """
    hidden = [str(HIDDEN_CHECKS_DIR)] if HIDDEN_CHECKS_DIR.is_dir() and replay is record is None else []
    command = [
        sys.executable, "-m", "pytest", str(CHECKS_DIR), *hidden, *map(str, extra_paths),
        "-m", " or ".join(f"phase{phase}" for phase in phases),
        f"--impl={impl}",
        f"--grade-report-fd={report_fd}", f"--grade-ack-fd={ack_fd}",
        f"--check-timeout={check_timeout:g}",
        "--noconftest", "-p", "grading.plugin",
        f"-c={REPO_ROOT / 'pyproject.toml'}", f"--rootdir={REPO_ROOT}",
        "-q", "--no-header", "-rN", "--tb=no",
    ]
    if threads:
        command.append(f"--worker-threads={threads}")
    if keyword:
        command += ["-k", keyword]
    if replay is not None:
        command.append(f"--replay-reference={replay}")
    if record is not None:
        command.append(f"--record-reference={record}")
    if submission is not None:
        command.append(f"--submission={submission}")  # one word: never a path pytest looks at
    return command


def pytest_environment(threads: int | None) -> dict[str, str]:
    """This environment without what could make Python or pytest load other code."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PYTEST"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


class ReportReader:
    """Reads the report pipe in a thread: the collected checks, then one result per check.

    Only the first "collected" record per node id and the first result of a
    collected check count. On the "collection done" record it calls
    ``on_collected`` (the checks, none run yet) and then lets pytest go on.
    """

    def __init__(self, report_fd: int, ack_fd: int, on_collected: Callable[[list[dict]], None] | None) -> None:
        self.collected: dict[str, dict] = {}
        self.results: dict[str, dict] = {}
        self.isolation = ""
        self._on_collected = on_collected
        self._ack_fd = ack_fd
        self._thread = threading.Thread(target=self._read, args=(report_fd,), daemon=True)
        self._thread.start()

    def _read(self, report_fd: int) -> None:
        received = 0
        with os.fdopen(report_fd, "rb") as pipe:
            for line in pipe:
                received += len(line)
                if received > MAX_REPORT_BYTES:
                    break
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    self._record(json.loads(line))
        self._release()

    def _record(self, record: dict) -> None:
        kind, nodeid = record.get("kind"), record.get("nodeid")
        if kind == "collected":
            self.collected.setdefault(nodeid, record)
        elif kind == "result" and nodeid in self.collected:
            self.results.setdefault(nodeid, record)
        elif kind == "sandbox" and not record.get("confined"):
            self.isolation = str(record.get("note") or "the worker is not confined")
        elif kind == "collection-done":
            if self._on_collected is not None:
                self._on_collected(list(self.collected.values()))
            self._release()

    def _release(self) -> None:
        if self._ack_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._ack_fd, b"go")
                os.close(self._ack_fd)
            self._ack_fd = -1

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def check_results(collected: list[dict], results: dict[str, dict] | None = None,
                  unfinished: str = "") -> list[CheckResult]:
    """CheckResults from trusted collection records, with the results that came back."""
    checks = []
    for record in collected:
        check = CheckResult(**{key: record[key] for key in (
            "nodeid", "name", "number", "section", "function", "phase", "points", "visibility")},
                            uses=tuple(record.get("uses", ())))
        outcome = (results or {}).get(check.nodeid)
        if outcome is not None:
            check.outcome, check.output = str(outcome.get("outcome")), str(outcome.get("output", ""))
        else:
            check.output = unfinished
        checks.append(check)
    return checks


def by_phase(phases: tuple[int, ...], checks: list[CheckResult]) -> list[PhaseResult]:
    results = {phase: PhaseResult(phase) for phase in phases}
    for check in checks:
        if check.phase in results:
            results[check.phase].checks.append(check)
    for result in results.values():
        result.checks.sort(key=lambda check: tuple(int(part) for part in check.number.split(".")))
    return list(results.values())


_running_lock = threading.Lock()
_LIVE: set[int] = set()  # pytest processes this process runs now (threads may run several)


def run_checks(
    phases: tuple[int, ...] = PHASES,
    *,
    impl: str = "learner",
    submission: Path | None = None,
    check_timeout: float = 30.0,
    time_budget: float = DEFAULT_TIME_BUDGET,
    extra_paths: tuple[Path, ...] = (),
    threads: int | None = None,
    keyword: str | None = None,
    replay: Path | None = None,
    record: Path | None = None,
    on_collected: Callable[[list[PhaseResult]], None] | None = None,
) -> list[PhaseResult]:
    """Grade ``phases`` in one pytest process; never raises for learner problems.

    ``on_collected`` gets the phases with every check "not run" before any
    learner code runs (grade.py writes its partial results.json then).
    ``threads`` caps torch's CPU threads (None: torch's default), for callers
    that grade several submissions at once on a small machine; ``keyword``
    selects checks by name, as pytest's -k does; ``replay`` answers the reference's calls from
    a recording (grading/recording.py), as a student release does, and ``record`` writes one.
    """
    phases = tuple(phases)
    report_read, report_write = os.pipe()
    ack_read, ack_write = os.pipe()
    reader = ReportReader(
        report_read, ack_write,
        None if on_collected is None else
        lambda records: on_collected(by_phase(phases, check_results(records, unfinished="not run yet"))),
    )
    command = pytest_command(phases, impl=impl, submission=submission, check_timeout=check_timeout,
                             report_fd=report_write, ack_fd=ack_read, extra_paths=extra_paths, threads=threads,
                             keyword=keyword, replay=replay, record=record)
    set_subreaper()  # whatever the run leaves behind is adopted here and swept below
    start = time.monotonic()
    with tempfile.TemporaryFile() as output:
        with _running_lock:
            before = set(children_of(os.getpid()))
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=pytest_environment(threads), stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, pass_fds=(report_write, ack_read),
                start_new_session=True,
            )
            _LIVE.add(process.pid)
        os.close(report_write)
        os.close(ack_read)
        try:
            returncode = process.wait(timeout=time_budget)
        except subprocess.TimeoutExpired:
            returncode = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever it started in its group goes too
        process.wait()
        with _running_lock:
            _LIVE.discard(process.pid)
            sweep_orphans(before | _LIVE)
        reader.join(timeout=10)
        output.seek(0, os.SEEK_END)
        output.seek(max(0, output.tell() - 3000))
        tail = output.read().decode("utf-8", errors="replace")
    seconds = time.monotonic() - start

    if returncode is None:
        unfinished = (f"did not finish: grading was stopped after {time_budget:.0f} s (the time budget); "
                      "something hangs or is far too slow. The checks that had finished are counted.")
    else:
        unfinished = (f"did not run: the grader stopped early (exit code {returncode}); "
                      "does your code exit or crash the interpreter?")
    results = by_phase(phases, check_results(list(reader.collected.values()), reader.results, unfinished))
    for result in results:
        result.seconds, result.isolation = seconds, reader.isolation
        if returncode is None and any(check.outcome == "not run" for check in result.checks):
            result.problem = f"stopped after {time_budget:.0f} s"
    if not reader.collected and returncode not in (0, 5):  # 5: nothing collected, no checks yet
        problem = f"the checks could not run (pytest exit code {returncode}):\n{tail.strip()}"
        for result in results:
            result.problem = problem
    return results


def run_phase(phase: int, **options) -> PhaseResult:
    """Grade one phase (see :func:`run_checks` for the options)."""
    return run_checks((phase,), **options)[0]

