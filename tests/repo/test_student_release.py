"""The student release, end to end: built from this repository (``make student``), it has no
reference and no hidden checks, yet its visible checks give the reference's exercise regions full
marks, the untouched stubs zero with "not attempted yet", and a classic mistake its name, from the
reference's recorded answers (also one that makes a lent model see other inputs, when that
mutant's calls were recorded); a mistake whose calls were not recorded still fails, saying what
to compare; a recording made for other checks is refused.

To keep it short, the release here records the calls of one mutant only (``make student``
records all of them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grading import recording
from grading.mistakes import MISTAKES
from grading.mutants import MUTANTS, build_submission
from tools import make_stubs, release

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the fixture records the reference: minutes, not seconds


RECORDED_MUTANTS = ("model given x_0",)


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    return release.build_student(folder / "student", cache=folder / "recording.bin", mutant_names=RECORDED_MUTANTS)


def grade(copy: Path, *options: str) -> dict:
    """``python grade.py --json`` run inside the student copy; its results.json."""
    out = copy / "results.json"
    out.unlink(missing_ok=True)
    process = subprocess.run([sys.executable, "grade.py", "--json", str(out), *options], cwd=copy,
                             capture_output=True, text=True, timeout=900)
    assert out.is_file(), process.stdout[-2000:] + process.stderr[-2000:]
    return json.loads(out.read_text(encoding="utf-8"))


def put_learner_files(copy: Path, folder: Path | None = None, keep_solutions: bool = True) -> None:
    """The reference's exercise regions (or the files of ``folder``) as the copy's learner files."""
    for path in make_stubs.solution_files():
        text = (folder / path.name).read_text(encoding="utf-8") if folder else \
            make_stubs.learner_source(path.read_text(encoding="utf-8"), path.name, keep_solutions)
        (copy / path.name).write_text(text, encoding="utf-8")


def test_the_release_holds_no_reference_and_no_hidden_checks(student):
    assert not (student / "solutions").exists() and not (student / "tests" / "hidden").exists()
    assert not (student / "tests" / "repo").exists() and not (student / ".ci").exists()
    assert (student / "tests" / "checks" / recording.RECORDING_PATH.name).is_file()
    fence = re.compile(r"^\s*### BEGIN SOLUTION §\d", re.MULTILINE)  # a reference's exercise region
    leaking = [path for path in student.rglob("*") if path.is_file() and path.suffix in (".py", ".md", ".ipynb")
               and fence.search(path.read_text(encoding="utf-8"))]
    assert not leaking
    assert "Student release" in (student / "README.md").read_text(encoding="utf-8")
    assert "--impl learner" in subprocess.run(["make", "-n", "test"], cwd=student, capture_output=True,
                                              text=True).stdout


def test_grading_the_reference_is_refused_in_one_line(student):
    for command in (["grade.py", "--impl", "solutions"], ["-m", "pytest", "--impl", "solutions", "tests/checks"]):
        process = subprocess.run([sys.executable, *command], cwd=student, capture_output=True, text=True, timeout=300)
        assert process.returncode != 0
        assert "solutions/, which this copy (a student release) does not have" in process.stderr, process.stderr
        assert "Traceback" not in process.stderr


def test_the_untouched_stubs_get_zero_with_not_attempted_lines(student):
    put_learner_files(student, keep_solutions=False)
    results = grade(student)
    assert results["score"] == 0 and len(results["tests"]) > 100
    assert all(test["output"] == "Not attempted yet." for test in results["tests"])


def test_the_reference_regions_get_full_marks_from_the_recording(student):
    put_learner_files(student)
    results = grade(student)
    failed = [test["name"] + ": " + test["output"][:300] for test in results["tests"]
              if test["score"] != test["max_score"]]
    assert not failed
    assert results["score"] == sum(test["max_score"] for test in results["tests"]) > 0


def failed_outputs(student: Path, tmp_path: Path, name: str) -> tuple[list[str], str]:
    """The outputs of the failed checks when the mutant ``name`` is graded in the student copy."""
    mutant = next((m for m in MUTANTS if m.name == name), None)
    assert mutant is not None, f"no mutant {name!r} in grading/mutants.py"
    build_submission(mutant, tmp_path)
    put_learner_files(student, tmp_path)
    results = grade(student, "--phase", str(mutant.phase))
    return [test["output"] for test in results["tests"] if test["score"] < test["max_score"]], \
        MISTAKES[mutant.mistake].title


# The first is named from the check's own recorded variants, the second from its mutant's calls.
@pytest.mark.parametrize("name", ["SNR inverted", *RECORDED_MUTANTS])
def test_a_classic_mistake_is_named_from_the_recording(student, tmp_path, name):
    outputs, title = failed_outputs(student, tmp_path, name)
    assert any(title in output for output in outputs), outputs


def test_a_mistake_whose_calls_were_not_recorded_still_fails_and_says_what_to_compare(student, tmp_path):
    outputs, title = failed_outputs(student, tmp_path, "renoise with one step's α")
    assert outputs and not any(title in output for output in outputs)
    assert any("the reference never computes" in output for output in outputs), outputs
    assert all("§5.6" in output for output in outputs), outputs


def test_a_recording_made_for_other_checks_is_refused(student, tmp_path):
    copy = tmp_path / "edited"
    shutil.copytree(student, copy)
    put_learner_files(copy)
    check = copy / "tests" / "checks" / "test_phase1_forward.py"
    check.write_text(check.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    results = grade(copy, "--phase", "1")
    assert results["score"] == 0
    assert all("were recorded for other checks" in test["output"] for test in results["tests"])
