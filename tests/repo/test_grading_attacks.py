"""Attack submissions: each is the untouched stubs plus a trick a determined student might try.

Every one must earn nothing (the stubs earn nothing), leave the grading files
as they were and leave no process behind. Attacks that read or write files by
path need the confined worker (the grader running as root with a private
mount namespace, grading/confine.py); where the worker cannot be confined they
are skipped with the reason, and README "For instructors" says what stays
exposed then.
"""

from __future__ import annotations

import json
import os
import py_compile
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest

from grading.report import SCHEMA_PATH
from grading.runner import REPO_ROOT, run_checks
from grading.processes import children_of, set_subreaper, sweep_orphans
from grading.sandbox import Sandbox
from tools import make_stubs

pytestmark = pytest.mark.slow

# A few checks of Phase 1 are enough: every payload replaces every function of the module.
SOME_CHECKS = "linear_betas or q_sample"
MARKER = "grading-attack-marker"  # in the command line of the processes an attack leaves running
REFERENCE = REPO_ROOT / "solutions" / "noise_schedule.py"
CHECK_FILE = REPO_ROOT / "tests" / "checks" / "test_phase1_schedules.py"


@pytest.fixture(scope="module")
def confined() -> bool:
    with Sandbox({}) as sandbox:
        return sandbox.confined


def needs_confinement(confined: bool) -> None:
    if not confined:
        pytest.skip("the worker cannot be confined here (grade as root, with mount namespaces): "
                    "files this user may read stay readable to it")


def stubs(folder: Path) -> Path:
    make_stubs.write(folder)
    return folder


def complete_source(name: str) -> str:
    path = REPO_ROOT / "solutions" / name
    return make_stubs.learner_source(path.read_text(encoding="utf-8"), name, keep_solutions=True)


def append(folder: Path, payload: str, module: str = "noise_schedule.py") -> None:
    path = folder / module
    path.write_text(path.read_text(encoding="utf-8") + "\n" + textwrap.dedent(payload), encoding="utf-8")


def grade_some(folder: Path, **options):
    results = run_checks((1,), submission=folder, keyword=SOME_CHECKS, check_timeout=10, **options)
    checks = [check for result in results for check in result.checks]
    assert checks, "the attack was graded on no check at all"
    return results, checks


def assert_earns_nothing(folder: Path) -> list:
    results, checks = grade_some(folder)
    earned = [(check.number, check.output) for check in checks if check.passed]
    assert not earned and sum(result.score for result in results) == 0
    return checks


def leftover_processes() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if MARKER.encode() in handle.read():
                    found.append(entry)
        except OSError:
            continue
    return found


def test_the_harness_can_see_points_when_they_are_earned(tmp_path):
    """The control: the same checks give a complete submission full marks, so a zero below means something."""
    for name in ("noise_schedule.py", "diffusion.py"):
        (tmp_path / name).write_text(complete_source(name), encoding="utf-8")
    results, checks = grade_some(tmp_path)
    assert all(check.passed for check in checks) and sum(result.score for result in results) > 0


# ---------------------------------------------------------------------------
# Importing or reading the reference
# ---------------------------------------------------------------------------

# Each payload replaces the module's functions with the reference's, if it can get them.
IMPORT_ATTACKS = {
    "import solutions": """
        try:
            from solutions.noise_schedule import *  # noqa
        except Exception:
            pass
        try:
            import sys as _sys, importlib as _il
            _sys.modules[__name__] = _il.import_module("solutions.noise_schedule")
        except Exception:
            pass
        """,
    "import with the checkout on sys.path": f"""
        import sys as _sys
        _sys.path.insert(0, {str(REPO_ROOT)!r})
        try:
            from solutions.noise_schedule import *  # noqa
        except Exception:
            pass
        """,
}

PATH_ATTACKS = {
    "exec the reference's source by path": f"""
        import pathlib as _pl
        try:
            exec(compile(_pl.Path({str(REFERENCE)!r}).read_text(), "x", "exec"), globals())
        except Exception:
            pass
        """,
    "load the reference through /proc/PID/cwd": """
        import os as _os
        for _pid in _os.listdir("/proc"):
            try:
                _src = open(f"/proc/{_pid}/cwd/solutions/noise_schedule.py").read()
            except Exception:
                continue
            exec(compile(_src, "x", "exec"), globals())
            break
        """,
    "leak a check's source in an error message": f"""
        def linear_betas(*args, **kwargs):
            raise RuntimeError(open({str(CHECK_FILE)!r}).read())
        q_sample = linear_betas
        """,
}


@pytest.mark.parametrize("payload", IMPORT_ATTACKS.values(), ids=IMPORT_ATTACKS.keys())
def test_importing_the_reference_earns_nothing(tmp_path, payload):
    folder = stubs(tmp_path)
    append(folder, payload)
    assert_earns_nothing(folder)


@pytest.mark.parametrize("payload", PATH_ATTACKS.values(), ids=PATH_ATTACKS.keys())
def test_reading_the_grading_files_by_path_earns_nothing(tmp_path, confined, payload):
    needs_confinement(confined)
    folder = stubs(tmp_path)
    append(folder, payload)
    checks = assert_earns_nothing(folder)
    check_source = CHECK_FILE.read_text(encoding="utf-8")
    assert not any("def test_linear_betas" in check.output or check_source[:200] in check.output
                   for check in checks)


def test_files_that_are_not_plain_learner_files_are_ignored(tmp_path):
    """A symlink to the reference, a package and a stale .pyc beside the stubs, each with the reference in it."""
    folder = stubs(tmp_path)
    (folder / "diffusion.py").unlink()
    (folder / "diffusion.py").symlink_to(REPO_ROOT / "solutions" / "diffusion.py")
    package = folder / "noise_schedule"
    package.mkdir()
    (package / "__init__.py").write_text(complete_source("noise_schedule.py"), encoding="utf-8")
    complete = folder / "complete.py"
    complete.write_text(complete_source("noise_schedule.py"), encoding="utf-8")
    cache = folder / "__pycache__"
    cache.mkdir()
    tag = sys.implementation.cache_tag
    py_compile.compile(str(complete), cfile=str(cache / f"noise_schedule.{tag}.pyc"),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    complete.unlink()
    assert_earns_nothing(folder)


# ---------------------------------------------------------------------------
# Reaching into the checker, forging results
# ---------------------------------------------------------------------------


def test_frames_objects_and_monkeypatches_earn_nothing(tmp_path):
    """Look for expected values in frames and in memory; patch the comparisons; return a tensor subclass."""
    folder = stubs(tmp_path)
    append(folder, """
        import builtins as _b, gc as _gc, sys as _sys
        import torch as _t

        _t.testing.assert_close = lambda *a, **k: None
        _t.allclose = lambda *a, **k: True
        _t.equal = lambda *a, **k: True
        try:
            import grading.checker as _c
            _c.check_close = lambda *a, **k: None
        except Exception:
            pass

        class _Anything(_t.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if getattr(func, "__name__", "") in ("allclose", "equal", "eq", "isclose", "__eq__"):
                    return True
                return super().__torch_function__(func, types, args, kwargs or {})

        def _found():
            frame = _sys._getframe()
            while frame is not None:
                for name in ("expected", "want", "ref"):
                    if name in frame.f_locals:
                        return frame.f_locals[name]
                frame = frame.f_back
            tensors = [o for o in _gc.get_objects() if isinstance(o, _t.Tensor)]
            return tensors[-1] if tensors else None

        def linear_betas(*args, **kwargs):
            return _t.zeros(1000, dtype=_t.float64).as_subclass(_Anything)

        def q_sample(*args, **kwargs):
            return _found()

        scaled_linear_betas = linear_betas
        """)
    checks = assert_earns_nothing(folder)
    subclassed = [check.output for check in checks if check.function == "linear_betas"]
    assert subclassed and all("linear_betas(" in output for output in subclassed), subclassed


def test_forged_report_lines_and_atexit_hooks_earn_nothing(tmp_path):
    """Write "passed" records to every descriptor, every process's descriptors, and again at exit."""
    folder = stubs(tmp_path)
    append(folder, """
        import atexit as _atexit, json as _json, os as _os

        def _forge():
            line = _json.dumps({"kind": "result", "nodeid": "", "outcome": "passed", "output": ""}) + "\\n"
            forged = [line.replace('"nodeid": ""', f'"nodeid": "{n}"') for n in range(1000)]
            fake = _json.dumps({"kind": "collected", "nodeid": "fake", "name": "free points", "number": "1.1.99",
                                "section": "1.1", "function": "x", "phase": 1, "points": 1000.0,
                                "visibility": "visible"}) + "\\n"
            data = (fake + "".join(forged)).encode()
            for fd in range(3, 256):
                try:
                    _os.write(fd, data)
                except OSError:
                    pass
            for pid in _os.listdir("/proc"):
                try:
                    fds = _os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        with open(f"/proc/{pid}/fd/{fd}", "ab") as handle:
                            handle.write(data)
                    except OSError:
                        pass

        _forge()
        _atexit.register(_forge)
        """)
    results, checks = grade_some(folder)
    assert sum(result.score for result in results) == 0
    assert not any(check.points >= 1000 or check.name == "free points" for check in checks)


def test_a_conftest_in_the_submission_folder_is_never_loaded(tmp_path):
    folder = stubs(tmp_path)
    (folder / "conftest.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(item, call):
            outcome = yield
            report = outcome.get_result()
            report.outcome, report.longrepr = "passed", None
        """), encoding="utf-8")
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -p conftest\n", encoding="utf-8")
    assert_earns_nothing(folder)


# ---------------------------------------------------------------------------
# Denial of service
# ---------------------------------------------------------------------------


def test_processes_a_submission_leaves_running_are_killed(tmp_path):
    """A double-forked, setsid'd helper (to rewrite results later) and a non-daemon thread do not outlive grading."""
    folder = stubs(tmp_path)
    append(folder, f"""
        import os as _os, sys as _sys, threading as _th, time as _time

        if _os.fork() == 0:
            _os.setsid()
            if _os.fork() == 0:
                _os.execv(_sys.executable, [_sys.executable, "-c", "import time; time.sleep(120)", {MARKER!r}])
            _os._exit(0)
        _th.Thread(target=lambda: _time.sleep(120)).start()
        """)
    assert_earns_nothing(folder)
    assert leftover_processes() == []


def test_huge_output_exits_and_crashes_are_contained(tmp_path):
    folder = stubs(tmp_path)
    append(folder, """
        import os as _os, sys as _sys
        _block = "x" * 2**20
        for _ in range(200):
            _sys.stdout.write(_block)
            _sys.stderr.write(_block)

        def linear_betas(*args, **kwargs):
            raise RuntimeError("y" * 50_000_000)

        def q_sample(*args, **kwargs):
            _os._exit(0)
        """)
    checks = assert_earns_nothing(folder)
    assert max(len(check.output) for check in checks) < 10_000  # a huge message is cut, not copied


def test_memory_and_fork_bombs_fail_their_checks_only(tmp_path, confined):
    needs_confinement(confined)  # the process limit holds for the worker's own user only
    folder = stubs(tmp_path)
    append(folder, """
        import os as _os
        import torch as _t

        def linear_betas(*args, **kwargs):
            return _t.ones(2**36, dtype=_t.float64)  # 512 GiB

        def q_sample(*args, **kwargs):
            while True:
                try:
                    _os.fork()
                except OSError:
                    pass
        """)
    assert_earns_nothing(folder)


# ---------------------------------------------------------------------------
# The grading run itself: results.json and the grading files
# ---------------------------------------------------------------------------


def grade_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "grade.py"), *args]


def test_a_killed_grader_leaves_a_valid_results_json(tmp_path):
    folder = stubs(tmp_path / "submission")
    append(folder, """
        def linear_betas(*args, **kwargs):
            while True:
                pass
        """)
    out = tmp_path / "results.json"
    set_subreaper()  # the grader's pytest and worker are adopted here when it is killed
    before = set(children_of(os.getpid()))
    process = subprocess.Popen(grade_command("--submission", str(folder), "--json", str(out), "--phase", "1"),
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert out.exists(), "no results.json was written before the checks ran"
        time.sleep(1)  # some checks run
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        sweep_orphans(before)
    data = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert data["score"] == 0 and data["tests"] and "did not finish" in data["output"]


def test_a_poisoning_submission_changes_neither_the_checkout_nor_the_next_score(tmp_path, confined):
    """Batch mode: the first submission tries to edit the grading files; the second (complete) is graded alone."""
    submissions = tmp_path / "class"
    poisoner = stubs(submissions / "a-poisoner")
    hooks = REPO_ROOT / "conftest.py"
    targets = [hooks, REPO_ROOT / "solutions" / "noise_schedule.py", CHECK_FILE]
    before = {path: path.read_bytes() for path in targets}
    if not confined:
        pytest.skip("without confinement a submission can write what the grader's user may write; "
                    "batch mode then stops when the grading files change (exit 3)")
    append(poisoner, f"""
        for _path in {[str(path) for path in targets]!r}:
            try:
                with open(_path, "a") as _handle:
                    _handle.write("\\nraise SystemExit('poisoned')\\n")
            except OSError:
                pass
        """)
    honest = submissions / "b-honest"
    honest.mkdir()
    for name in ("noise_schedule.py", "diffusion.py"):
        (honest / name).write_text(complete_source(name), encoding="utf-8")
    out = tmp_path / "grades"
    process = subprocess.run(
        grade_command("--submissions", str(submissions), "--out", str(out), "--phase", "1", "-k", SOME_CHECKS),
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert {path: path.read_bytes() for path in targets} == before
    assert process.returncode == 0, process.stdout + process.stderr
    rows = (out / "scores.csv").read_text(encoding="utf-8").splitlines()
    scores = {row.split(",")[0]: row.split(",") for row in rows[1:]}
    assert float(scores["a-poisoner"][-3]) == 0
    assert float(scores["b-honest"][-3]) == float(scores["b-honest"][-2]) > 0
    assert json.loads((out / "b-honest.json").read_text(encoding="utf-8"))["score"] > 0
