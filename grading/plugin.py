"""pytest plugin of the exercise checks (loaded by the repository's conftest.py, or by
grading/runner.py with ``-p grading.plugin --noconftest``).

Options:
    --impl learner|solutions   which code the phase checks test (default: $DIFFUSION_IMPL or learner)
    --submission DIR           a student's copy of the learner files (implies --impl learner)
    --grade-report-fd N        write one JSON line per collected check and per result to this
                               file descriptor (a pipe from grading/runner.py; no path to find)
    --grade-ack-fd N           after collection, wait for the runner to read it on this descriptor
    --check-timeout S          seconds one check's worker child may run before it is killed
    --worker-threads N         torch threads in the worker

Markers (registered in pyproject.toml, enforced with --strict-markers):
    phase1 … phase7            the phase a check belongs to
    points(n)                  what the check is worth
    exercise(section, name)    the guide section and the function it checks, e.g. ("1.6", "q_sample")
    visibility(v)              Gradescope visibility of a check (default "visible")
    uses(*functions)           an integration check: it also runs these other learner functions
                               (the only checks a mistake elsewhere may cost; their name says so)

Fixtures:
    impl   the implementation under test: ``impl.diffusion.q_sample(…)``, run in a
           fresh child of the worker (grading/sandbox.py), never in this process
    ref    the reference modules (``solutions``), unwrapped
"""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import torch

from provided.phases import EXERCISE_MODULES, GRADED_IMPLEMENTATIONS, PHASES, has_reference, resolve_impl, stubs_in

from . import checker, recording, wire
from .checker import GUIDE, fail, learner_error_message
from .mistakes import NOT_ATTEMPTED
from .sandbox import REPO_ROOT, Conversation, LearnerError, Limits, RemoteObject, Sandbox, learner_files, \
    reference_files

IMPL_KEY = pytest.StashKey[str]()  # the chosen implementation, kept on the config
TAPE_KEY = pytest.StashKey[object]()  # the recorder or the replay, when the reference is one
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
    group.addoption("--grade-report-fd", type=int, default=None, help="descriptor for grade.py's JSON lines")
    group.addoption("--grade-ack-fd", type=int, default=None, help="descriptor grade.py answers on after collection")
    group.addoption("--check-timeout", type=float, default=60.0,
                    help="seconds one check may take; its worker is killed after that (default 60)")
    group.addoption("--worker-threads", type=int, default=0,
                    help="torch threads in the worker that runs learner code (default: torch's)")
    group.addoption("--record-reference", type=Path, default=None, metavar="FILE",
                    help="maintainers: run the reference and write its answers to FILE (tools/release.py student)")
    group.addoption("--replay-reference", type=Path, default=None, metavar="FILE",
                    help="answer the reference's calls from FILE even where solutions/ exists")


def pytest_configure(config: pytest.Config) -> None:
    try:
        impl = resolve_impl(config.getoption("--impl"), default="learner", choices=GRADED_IMPLEMENTATIONS)
    except ValueError as error:  # e.g. DIFFUSION_IMPL=auto: the checks grade one implementation, never a mix
        raise pytest.UsageError(str(error)) from None
    if impl == "solutions" and not has_reference():
        raise pytest.UsageError("--impl solutions grades the reference in solutions/, which this copy (a student "
                                "release) does not have; grade your files with --impl learner")
    submission = config.getoption("--submission")
    if submission is not None:
        if impl != "learner":
            raise pytest.UsageError("--submission grades learner files; it cannot go with --impl solutions")
        if not submission.is_dir():
            raise pytest.UsageError(f"--submission must be a folder of learner files; {submission} is not one")
    report_fd = config.getoption("--grade-report-fd")
    if report_fd is not None:
        report = GradeReport(report_fd, config.getoption("--grade-ack-fd"))
        config.pluginmanager.register(report, "diffusion-grade-report")
    config.stash[IMPL_KEY] = impl  # read by the `impl` fixture


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


class LearnerModule:
    """One learner module in the check's worker: ``module.q_sample(…)`` runs there.

    ``module.module`` is the module's own handle, for :func:`grading.modules.reference_parts`.
    """

    def __init__(self, remote: RemoteObject) -> None:
        self.module = remote

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.module, name)


class Implementation:
    """The implementation under test, in a fresh worker child for this check (see grading/sandbox.py).

    ``impl.diffusion.q_sample(…)`` imports diffusion.py in the child and calls
    it there; stubs, crashes, timeouts and import errors fail the check with one
    readable line. ``impl.backward(loss)`` backpropagates into learner code.
    """

    def __init__(self, conversation: Conversation) -> None:
        self._conversation = conversation
        self._modules: dict[str, LearnerModule] = {}

    def __getattr__(self, module_name: str) -> LearnerModule:
        if module_name.startswith("_"):
            raise AttributeError(module_name)
        if module_name not in self._modules:
            self._modules[module_name] = LearnerModule(self._conversation.import_module(module_name))
        return self._modules[module_name]

    def backward(self, loss: torch.Tensor) -> None:
        self._conversation.backward(loss)


def _report(error: Exception, own_stub: dict | None = None) -> None:
    """Fail the check with the message of a learner error or a worker problem (no traceback).

    ``own_stub``: the check's own function as a stub reports itself ({"label", "message"}) when it
    is still a stub in the learner's files. Then any stub the check runs into first (one its setup
    needs, say) makes it "not attempted yet", pointing at the check's own section.
    """
    message = learner_error_message(error.info) if isinstance(error, LearnerError) else str(error)
    if isinstance(error, LearnerError) and error.info.get("kind") == "stub" and own_stub \
            and NOT_ATTEMPTED not in message:
        message = learner_error_message({**error.info, **own_stub})
    fail(message)


def _own_stub(item: pytest.Item, files: dict[str, bytes]) -> dict | None:
    """The check's own function (its exercise marker) as its stub would report itself, if a learner
    file still holds that stub; else None."""
    exercise = item.get_closest_marker("exercise")
    if exercise is None:
        return None
    section, function = exercise.args
    stubs = {what for source in files.values() for _, what in stubs_in(source.decode("utf-8", "replace"))}
    if f"§{section} {function}" not in stubs:
        return None
    return {"label": function, "message": f"Phase {section} · {function} — see {GUIDE} §{section}"}


@pytest.fixture(scope="session")
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The worker's zygote for this run: the learner files (or the reference) in a scratch folder."""
    config = request.config
    impl = config.stash[IMPL_KEY]
    if impl == "solutions":
        files, package = reference_files(), "solutions"
    else:
        files, package = learner_files(config.getoption("--submission") or REPO_ROOT), ""
    limits = Limits(check_seconds=config.getoption("--check-timeout"), threads=config.getoption("--worker-threads"))
    hidden = (config.getoption("--submission").resolve(),) if config.getoption("--submission") else ()
    with Sandbox(files, package, limits, hidden=hidden) as started:
        report = config.pluginmanager.get_plugin("diffusion-grade-report")
        if report is not None:
            report.write({"kind": "sandbox", "confined": started.confined, "note": started.note})
        yield started


@pytest.fixture
def impl(sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[Implementation]:
    """The implementation under test (learner files or the reference), per --impl, in a fresh worker child."""
    conversation = sandbox.conversation()
    own_stub = None if sandbox.package else _own_stub(request.node, sandbox.files)
    conversation.report = lambda error: _report(error, own_stub)
    try:
        yield Implementation(conversation)
    finally:
        conversation.close()


REFERENCE_FILES = EXERCISE_MODULES


@pytest.fixture(scope="session")
def ref(request: pytest.FixtureRequest) -> Iterator[SimpleNamespace]:
    """The reference: the modules of solutions/, or their recorded answers (grading/recording.py).

    With ``--record-reference FILE`` the real modules run and every call is written
    down; in a copy without solutions/ (the student release), or with
    ``--replay-reference FILE``, the recording answers.
    """
    config = request.config
    record_to, replay_from = config.getoption("--record-reference"), config.getoption("--replay-reference")
    if record_to is None and replay_from is None and has_reference():
        yield SimpleNamespace(**{n: importlib.import_module(f"solutions.{n}") for n in REFERENCE_FILES})
        return
    if record_to is not None:
        modules = {n: importlib.import_module(f"solutions.{n}") for n in REFERENCE_FILES}
        tape: recording.Tape = recording.Recorder(recording.Recording(), modules)
    else:
        tape = recording.Replay(load_recording(replay_from or recording.RECORDING_PATH))
    config.stash[TAPE_KEY] = tape
    yield SimpleNamespace(**{n: tape.module(n) for n in REFERENCE_FILES})
    if record_to is not None:
        tape.recording.stamps = {"solutions": recording.solutions_stamp(), "checks": recording.checks_stamp()}
        tape.recording.save(record_to)


def load_recording(path: Path) -> recording.Recording:
    """The recording at ``path``, if it was made for these checks; otherwise every check fails saying why."""
    if not path.is_file():
        fail(f"This copy has neither the reference (solutions/) nor its recorded answers ({path.name}); "
             "get a complete student release (make student builds one) or the repository.")
    try:
        found = recording.Recording.load(path)
    except (OSError, ValueError, wire.ProtocolError) as error:
        fail(f"The reference's recorded answers in {path.name} cannot be read ({error}); get a fresh copy.")
    if found.stamps.get("checks") != recording.checks_stamp():
        fail(f"The reference's answers in {path.name} were recorded for other checks (stamp "
             f"{found.stamps.get('checks')}, these checks {recording.checks_stamp()}): the files in tests/checks, "
             "grading or provided were changed. Restore them, or rebuild the release (make student).")
    if has_reference() and found.stamps.get("solutions") != recording.solutions_stamp():
        fail(f"The reference's answers in {path.name} were recorded from another version of solutions/ "
             f"(stamp {found.stamps.get('solutions')}, now {recording.solutions_stamp()}): record them again "
             "(make student).")
    return found


@pytest.fixture(autouse=True)
def same_random_state(request: pytest.FixtureRequest) -> None:
    """Each check starts from torch's global random state seeded alike (its worker child does too), so
    that a check is the same in every run, and the same as when the reference's answers were recorded.
    Also tells the replay which check runs, so that an unrecorded call names its function."""
    meta = check_metadata(request.node)
    if meta is not None:  # a check (the repository's own tests keep their own random state)
        torch.manual_seed(wire.CHECK_SEED)
        recording.CURRENT_CHECK.update(function=meta["function"], section=meta["section"])


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
    uses = item.get_closest_marker("uses")
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
        "uses": list(uses.args) if uses else [],
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        meta = check_metadata(item)  # fail collection early on a malformed check
        if meta is not None:  # so that a crash in learner code names the section of the function that raised
            checker.SECTIONS.setdefault(meta["function"], meta["section"])


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
    """Writes the grade report: JSON lines on a pipe to grading/runner.py, flushed one by one.

    Registered as a plugin by ``pytest_configure`` when ``--grade-report-fd`` is
    given. The descriptors are not passed on to the worker (grading/sandbox.py
    hands it only its own socket), so learner code cannot write here.
    """

    def __init__(self, report_fd: int, ack_fd: int | None) -> None:
        self.pipe = os.fdopen(report_fd, "w", encoding="utf-8")
        self.ack_fd = ack_fd

    def write(self, record: dict) -> None:
        self.pipe.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.pipe.flush()

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
        self.write({"kind": "collection-done"})
        if self.ack_fd is not None:  # the runner writes its partial results.json before learner code runs
            with os.fdopen(self.ack_fd, "rb") as ack:
                ack.read(2)

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
