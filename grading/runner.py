"""Run the checks of each phase in its own pytest process and collect the results.

One process per phase, each with a per-check timeout (pytest-timeout, signal
method) and an outer wall-clock bound, so that a learner file that does not
import, crashes the interpreter or hangs only costs the checks it touches:
the other phases are still graded, and checks that never reported are marked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .checker import NOT_ATTEMPTED

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKS_DIR = REPO_ROOT / "tests" / "checks"

PHASE_TITLES = {
    1: "Noise schedules and the forward process",
    2: "The U-Net denoiser",
    3: "The training loop",
    4: "DDPM and DDIM sampling",
    5: "Conditioning and classifier-free guidance",
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
    markers: str,
    report: Path,
    *,
    impl: str,
    submission: Path | None,
    check_timeout: float,
    extra_paths: tuple[Path, ...] = (),
) -> list[str]:
    """The pytest command line that runs the checks selected by ``markers`` (e.g. "phase1")."""
    command = [
        sys.executable, "-m", "pytest", str(CHECKS_DIR), *map(str, extra_paths),
        "-m", markers,
        "--impl", impl,
        "--grade-report", str(report),
        f"--timeout={check_timeout}",
        "-o", "timeout_method=signal",
        "-q", "--no-header", "-rN", "--tb=no", "-p", "no:cacheprovider",
    ]
    if submission is not None:
        command += ["--submission", str(submission)]
    return command


def phases_with_checks(extra_paths: tuple[Path, ...] = ()) -> set[int]:
    """The phases that have at least one check (one quick collect-only run, no learner code)."""
    with tempfile.TemporaryDirectory(prefix="grade-collect-") as scratch:
        report = Path(scratch) / "report.jsonl"
        every_phase = " or ".join(f"phase{p}" for p in PHASES)
        command = pytest_command(every_phase, report, impl="solutions", submission=None,
                                 check_timeout=60, extra_paths=extra_paths)
        subprocess.run(command + ["--collect-only"], cwd=REPO_ROOT, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=300)
        collected, _ = read_report(report)
    return {record["phase"] for record in collected}


def read_report(path: Path) -> tuple[list[dict], dict[str, dict]]:
    """The "collected" records in order and the "result" records by node id."""
    collected, results = [], {}
    if not path.exists():
        return collected, results
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed process
        if record.get("kind") == "collected":
            collected.append(record)
        elif record.get("kind") == "result":
            results[record["nodeid"]] = record
    return collected, results


def run_phase(
    phase: int,
    *,
    impl: str = "learner",
    submission: Path | None = None,
    check_timeout: float = 30.0,
    phase_timeout: float = 600.0,
    extra_paths: tuple[Path, ...] = (),
    threads: int | None = None,
) -> PhaseResult:
    """Grade one phase in a fresh pytest process; never raises for learner problems.

    ``threads`` caps torch's CPU threads in that process (None: torch's default), for
    callers that run several phases at once on a small machine.
    """
    import time

    result = PhaseResult(phase)
    with tempfile.TemporaryDirectory(prefix=f"grade-phase{phase}-") as scratch:
        report = Path(scratch) / "report.jsonl"
        command = pytest_command(
            f"phase{phase}", report, impl=impl, submission=submission,
            check_timeout=check_timeout, extra_paths=extra_paths,
        )
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # leave submissions untouched
        if threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        start = time.monotonic()
        try:
            process = subprocess.run(
                command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                timeout=phase_timeout, stdin=subprocess.DEVNULL,
            )
            returncode, stderr = process.returncode, process.stdout[-1500:] + process.stderr[-1500:]
        except subprocess.TimeoutExpired:
            returncode, stderr = None, ""
        result.seconds = time.monotonic() - start
        collected, results = read_report(report)

    for record in collected:
        check = CheckResult(**{key: record[key] for key in (
            "nodeid", "name", "number", "section", "function", "phase", "points", "visibility")})
        outcome = results.get(check.nodeid)
        if outcome is not None:
            check.outcome, check.output = outcome["outcome"], outcome["output"]
        elif returncode is None:
            check.output = (
                f"did not finish: the checks of phase {phase} were stopped after {phase_timeout:.0f} s "
                "(something hangs); the checks that had finished are counted."
            )
        else:
            check.output = (
                f"did not run: the checks of phase {phase} stopped early (exit code {returncode}); "
                "does your code exit or crash the interpreter?"
            )
        result.checks.append(check)

    result.checks.sort(key=lambda check: tuple(int(part) for part in check.number.split(".")))
    if returncode is None:
        result.problem = f"stopped after {phase_timeout:.0f} s"
    elif not collected and returncode not in (0, 5):
        # 5 means "no checks collected": the phase has none yet.
        result.problem = f"the checks could not run (pytest exit code {returncode}):\n{stderr.strip()}"
    return result
