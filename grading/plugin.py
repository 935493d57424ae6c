"""pytest plugin of the exercise checks (loaded by the repository's conftest.py).

Options:
    --impl learner|solutions   which code the phase checks test (default: $DIFFUSION_IMPL or learner)
    --submission DIR           a student's copy of the learner files (implies --impl learner)
    --grade-report FILE        write one JSON line per collected check and per result (grade.py reads it)

Markers (registered in pyproject.toml, enforced with --strict-markers):
    phase1 … phase5            the phase a check belongs to
    points(n)                  what the check is worth
    exercise(section, name)    the guide section and the function it checks, e.g. ("1.6", "q_sample")
    visibility(v)              Gradescope visibility of a check (default "visible")

Fixtures:
    impl   the implementation under test: ``impl.diffusion.q_sample(…)``, each
           module wrapped in :class:`grading.checker.CheckedModule`
    ref    the reference modules (``solutions``), unwrapped
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from provided.phases import GRADED_IMPLEMENTATIONS, resolve_impl

from .checker import CheckedModule, fail

PHASES = (1, 2, 3, 4, 5)
IMPL_KEY = pytest.StashKey[str]()  # the chosen implementation, kept on the config
TIMEOUT_MESSAGE = re.compile(r"Timeout \(?>\s*(?P<seconds>[0-9.]+)\s*s")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("diffusion exercises")
    group.addoption(
        "--impl",
        choices=GRADED_IMPLEMENTATIONS,
        default=None,
        help="code under test: your top-level files (learner) or the reference (solutions); "
        "default $DIFFUSION_IMPL, else learner",
    )
    group.addoption(
        "--submission",
        type=Path,
        default=None,
        help="folder with a student's learner files, graded instead of the top-level ones",
    )
    group.addoption("--grade-report", type=Path, default=None, help="JSON-lines file for grade.py")


def pytest_configure(config: pytest.Config) -> None:
    try:
        impl = resolve_impl(config.getoption("--impl"), default="learner", choices=GRADED_IMPLEMENTATIONS)
    except ValueError as error:  # e.g. DIFFUSION_IMPL=auto: the checks grade one implementation, never a mix
        raise pytest.UsageError(str(error)) from None
    submission = config.getoption("--submission")
    if submission is not None:
        if impl != "learner":
            raise pytest.UsageError("--submission grades learner files; it cannot go with --impl solutions")
        if not submission.is_dir():
            raise pytest.UsageError(f"--submission must be a folder of learner files; {submission} is not one")
        # The student's files shadow the top-level stubs; the reference package is already imported.
        sys.path.insert(0, str(submission.resolve()))
    report_path = config.getoption("--grade-report")
    if report_path is not None:
        config.pluginmanager.register(GradeReport(report_path), "diffusion-grade-report")
    config.stash[IMPL_KEY] = impl  # read by the `impl` fixture


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


class Implementation:
    """Lazily imported modules of one implementation; import failures become check failures."""

    def __init__(self, impl: str) -> None:
        self.name = impl
        self._modules: dict[str, CheckedModule] = {}
        self._failures: dict[str, str] = {}

    def __getattr__(self, module_name: str) -> CheckedModule:
        if module_name.startswith("_"):
            raise AttributeError(module_name)
        if module_name in self._failures:
            fail(self._failures[module_name])
        if module_name not in self._modules:
            self._modules[module_name] = CheckedModule(self._import(module_name))
        return self._modules[module_name]

    def _import(self, module_name: str) -> ModuleType:  # type: ignore[return]
        qualified = module_name if self.name == "learner" else f"solutions.{module_name}"
        try:
            return importlib.import_module(qualified)
        except BaseException as error:  # noqa: BLE001 - SyntaxError, ImportError, a timeout…
            if isinstance(error, KeyboardInterrupt):
                raise
            where = ""
            if isinstance(error, SyntaxError):
                where = f" (line {error.lineno}: `{(error.text or '').strip()}`)"
            message = (
                f"{module_name}.py could not be imported: {type(error).__name__}: {error}{where}. "
                "Fix it first: no check of this file can run."
            )
            self._failures[module_name] = message
            sys.modules.pop(qualified, None)
        fail(self._failures[module_name])  # outside the except block: no chained traceback


@pytest.fixture(scope="session")
def impl(request: pytest.FixtureRequest) -> Implementation:
    """The implementation under test (learner files or the reference), per --impl."""
    return Implementation(request.config.stash[IMPL_KEY])


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    """The reference modules from solutions/."""
    names = ("noise_schedule", "diffusion", "unet", "train", "degradations")
    return SimpleNamespace(**{n: importlib.import_module(f"solutions.{n}") for n in names})


# ---------------------------------------------------------------------------
# Metadata of the checks
# ---------------------------------------------------------------------------


def check_metadata(item: pytest.Item) -> dict | None:
    """Phase, points, section and function of a check; None for tests that are not checks."""
    exercise = item.get_closest_marker("exercise")
    if exercise is None:
        return None
    phases = [p for p in PHASES if item.get_closest_marker(f"phase{p}")]
    points = item.get_closest_marker("points")
    visibility = item.get_closest_marker("visibility")
    section, function = exercise.args
    callspec = getattr(item, "callspec", None)
    if function.startswith("{") and callspec is not None:
        # exercise("1.9", "{name}"): the function is the test's parameter called `name`.
        function = str(callspec.params[function.strip("{}")])
    problems = []
    if len(phases) != 1:
        problems.append("exactly one phaseN marker")
    elif str(phases[0]) != section.split(".")[0]:
        problems.append(f"a phase marker that agrees with section {section}")
    if points is None or not points.args or points.args[0] <= 0:
        problems.append("a points(n) marker with n > 0")
    if visibility is not None and visibility.args[0] not in VISIBILITIES:
        problems.append(f"a visibility among {VISIBILITIES}")
    if problems:
        raise pytest.UsageError(f"{item.nodeid}: a check needs {', '.join(problems)}")
    doc = (getattr(item, "obj", None).__doc__ or "").strip().splitlines()
    name = doc[0] if doc else item.name
    if callspec is not None:
        name += f" [{callspec.id}]"
    return {
        "phase": phases[0],
        "points": float(points.args[0]),
        "section": section,
        "function": function,
        "name": name,
        "visibility": visibility.args[0] if visibility else "visible",
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        check_metadata(item)  # fail collection early on a malformed check


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def short_output(report: pytest.TestReport) -> str:
    """The one readable reason of a failed check (the message, not a traceback)."""
    text = report.longreprtext.strip()
    timeout = TIMEOUT_MESSAGE.search(text)  # pytest-timeout's "Timeout (>30.0s)" or "Timeout >30.0s"
    if timeout:
        return f"timed out after {float(timeout['seconds']):g} s: an endless loop, or something far too slow."
    if text.startswith("Failed: "):
        return text[len("Failed: "):]
    lines = [line[2:] for line in text.splitlines() if line.startswith("E ")]
    return "\n".join(lines[-12:]) if lines else text[-2000:]


class GradeReport:
    """Writes the grade report: JSON lines, flushed one by one so a killed run keeps what it had.

    Registered as a plugin by ``pytest_configure`` when ``--grade-report`` is given.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """One "collected" record per check, numbered section.k in collection order."""
        counters: dict[str, int] = {}
        for item in session.items:
            meta = check_metadata(item)
            if meta is None:
                continue
            counters[meta["section"]] = counters.get(meta["section"], 0) + 1
            meta["number"] = f"{meta['section']}.{counters[meta['section']]}"
            self.write({"kind": "collected", "nodeid": item.nodeid, **meta})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """One "result" record per check: its call, or the setup or teardown that failed."""
        setup_or_teardown_problem = report.when != "call" and not report.passed
        if report.when != "call" and not setup_or_teardown_problem:
            return
        output = short_output(report) if report.failed else ""
        if report.skipped and isinstance(report.longrepr, tuple):
            output = str(report.longrepr[-1])
        self.write(
            {
                "kind": "result",
                "nodeid": report.nodeid,
                "outcome": report.outcome,
                "output": output,
                "duration": round(report.duration, 4),
            }
        )
