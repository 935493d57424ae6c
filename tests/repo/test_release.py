"""The Gradescope autograder, end to end: built from this repository, unpacked in a stand-in for
/autograder, and run on a complete submission (nested in a folder, as zipped uploads are), on the
untouched stubs, on a broken one, and with a grader that cannot start at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from grading.report import SCHEMA_PATH
from tools import make_stubs, release

pytestmark = pytest.mark.slow

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def autograder(tmp_path_factory) -> Path:
    """A stand-in for /autograder: the zip unpacked in source/, as Gradescope does."""
    folder = tmp_path_factory.mktemp("gradescope")
    archive = release.build_autograder(folder / "autograder.zip", [])
    root = folder / "autograder"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(root / "source")
    return root


def run_autograder(root: Path, submission: dict[str, str], python: str = sys.executable) -> dict:
    """Put ``submission`` (relative path → text) in root/submission, run run_autograder, read results.json."""
    shutil.rmtree(root / "submission", ignore_errors=True)
    shutil.rmtree(root / "results", ignore_errors=True)
    for name, text in submission.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": python}
    process = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                             text=True, timeout=900)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    jsonschema.validate(results, SCHEMA)
    return results


def learner_files(keep_solutions: bool) -> dict[str, str]:
    return {path.name: make_stubs.learner_source(path.read_text(encoding="utf-8"), path.name, keep_solutions)
            for path in make_stubs.solution_files()}


def test_the_zip_has_gradescope_layout_and_the_hidden_checks(autograder):
    source = autograder / "source"
    for name in ("setup.sh", "run_autograder", "grade.py", "requirements-autograder.txt"):
        assert (source / name).is_file(), name
    assert sorted(p.name for p in (source / "tests" / "hidden").glob("test_*.py")) == \
        sorted(p.name for p in (release.REPO_ROOT / "tests" / "hidden").glob("test_*.py"))
    assert not list(source.rglob("__pycache__")) and not (source / "notebooks").exists()
    requirements = (source / "requirements-autograder.txt").read_text(encoding="utf-8")
    assert "numpy" in requirements and "pytest" in requirements and "jupyter" not in requirements


def test_instructor_checks_are_added_and_a_clash_is_refused(tmp_path):
    mine = tmp_path / "test_mine.py"
    mine.write_text("def test_x():\n    pass\n", encoding="utf-8")
    archive = release.build_autograder(tmp_path / "a.zip", [mine])
    assert "tests/hidden/test_mine.py" in zipfile.ZipFile(archive).namelist()
    clash = tmp_path / "test_hidden_phase1.py"
    clash.write_text("", encoding="utf-8")
    with pytest.raises(SystemExit, match="already a check file"):
        release.build_autograder(tmp_path / "b.zip", [clash])


def test_a_complete_submission_in_a_folder_gets_full_marks(autograder):
    results = run_autograder(autograder, {f"my-work/{name}": text for name, text in learner_files(True).items()})
    assert results["score"] == sum(test["max_score"] for test in results["tests"]) > 0
    assert any(test["visibility"] == "hidden" for test in results["tests"])


def test_the_stubs_get_zero_and_not_attempted_lines(autograder):
    results = run_autograder(autograder, learner_files(False))
    assert results["score"] == 0 and results["tests"]
    assert all(test["output"] == "Not attempted yet." for test in results["tests"])


def test_a_broken_submission_and_a_broken_grader_still_leave_results(autograder, tmp_path):
    files = learner_files(True)
    files["diffusion.py"] = "def broken(:\n"
    results = run_autograder(autograder, files)
    broken = [test for test in results["tests"] if "could not be imported" in test["output"]]
    assert broken and all(test["score"] == 0 for test in broken)
    assert 0 < results["score"] < sum(test["max_score"] for test in results["tests"])
    failing_python = tmp_path / "python"
    failing_python.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    failing_python.chmod(0o755)
    results = run_autograder(autograder, files, python=str(failing_python))
    assert results["score"] == 0 and "could not grade" in results["output"]
