"""Turn phase results into the terminal report and Gradescope's results.json."""

from __future__ import annotations

from pathlib import Path

from .runner import PHASE_TITLES, CheckResult, PhaseResult

SCHEMA_PATH = Path(__file__).resolve().parent / "gradescope_schema.json"


def _points(value: float) -> str:
    return f"{value:g}"


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _counts(result: PhaseResult) -> str:
    passed = sum(check.passed for check in result.checks)
    not_attempted = sum(check.not_attempted for check in result.checks)
    failed = len(result.checks) - passed - not_attempted
    parts = [f"{passed} passed"]
    if failed:
        parts.append(f"{failed} failed")
    if not_attempted:
        parts.append(f"{not_attempted} not attempted")
    return f"{len(result.checks)} checks: " + ", ".join(parts)


def score_table(results: list[PhaseResult]) -> str:
    """Points per phase and in total, one line each."""
    width = max(len(title) for title in PHASE_TITLES.values())
    lines = [f"  Phase  {'Topic':<{width}}  Points"]
    for result in results:
        if result.checks:
            score = f"{_points(result.score)} / {_points(result.max_score)}   ({_counts(result)})"
        elif result.problem:
            score = "could not be graded (see below)"
        else:
            score = "no checks yet"
        lines.append(f"  {result.phase:<5}  {result.title:<{width}}  {score}")
    total = sum(r.score for r in results)
    total_max = sum(r.max_score for r in results)
    lines.append(f"  {'Total':<5}  {'':<{width}}  {_points(total)} / {_points(total_max)}")
    return "\n".join(lines)


def check_line(check: CheckResult, verbose: bool = False) -> str | None:
    """One check as the terminal shows it: a mark, the number and name, and why it failed."""
    head = f"{check.number:<7} {check.name}"
    if check.passed:
        return f"  ✓ {head}" if verbose else None
    if check.not_attempted:
        return f"  · {head}: not attempted yet"
    return f"  ✗ {head}  (0 / {_points(check.points)})\n{_indent(check.output)}"


def terminal_report(results: list[PhaseResult], verbose: bool = False) -> str:
    """The whole report: the table, then each phase's failing checks with one reason each."""
    blocks = [score_table(results)]
    for result in results:
        lines = [line for check in result.checks if (line := check_line(check, verbose))]
        if result.problem:
            lines.insert(0, f"  ! {result.problem}")
        if lines:
            blocks.append(f"Phase {result.phase} · {result.title}\n" + "\n".join(lines))
    if all(check.passed for r in results for check in r.checks) and any(r.checks for r in results):
        blocks.append("All checks pass.")
    return "\n\n".join(blocks)


def _test_output(check: CheckResult) -> str:
    if check.passed:
        return "Passed."
    if check.not_attempted:
        return "Not attempted yet."
    return check.output


def gradescope_results(results: list[PhaseResult], execution_time: float, note: str = "") -> dict:
    """The Gradescope autograder results (its results.json schema) for these phases.

    ``note`` goes above the score table (e.g. "grading did not finish" in the
    partial results written before any learner code runs).
    """
    tests = []
    for result in results:
        for check in result.checks:
            tests.append(
                {
                    "name": check.name,
                    "number": check.number,
                    "score": check.score,
                    "max_score": check.points,
                    "status": "passed" if check.passed else "failed",
                    "output": _test_output(check),
                    "output_format": "md",
                    "tags": [f"phase{check.phase}", check.function],
                    "visibility": check.visibility,
                }
            )
        if result.problem and not result.checks:
            tests.append(
                {
                    "name": f"Phase {result.phase}: the checks could not run",
                    "number": f"{result.phase}.0",
                    "score": 0.0,
                    "max_score": 0.0,
                    "status": "failed",
                    "output": f"```\n{result.problem}\n```",
                    "output_format": "md",
                    "tags": [f"phase{result.phase}"],
                    "visibility": "visible",
                }
            )
    summary = score_table(results)
    if note:
        summary = f"{note}\n\n{summary}"
    return {
        "score": sum(r.score for r in results),
        "execution_time": round(execution_time, 2),
        "output": f"```\n{summary}\n```",
        "output_format": "md",
        "test_output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
