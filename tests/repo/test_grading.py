"""The grader end to end: full marks on the reference, "not attempted" on the stubs,
readable reasons on wrong code, a report even when a submission breaks, valid Gradescope JSON.
"""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

import jsonschema
import pytest

import grade
from grading.mutants import MUTANTS, build_submission
from grading.report import SCHEMA_PATH, check_line
from grading.runner import run_phase
from tools import make_stubs

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=[1, 2, 3, 4, 5], ids=["phase 1", "phase 2", "phase 3", "phase 4", "phase 5"])
def reference_result(request):
    return run_phase(request.param, impl="solutions")


@pytest.fixture(scope="module")
def stub_folder(tmp_path_factory):
    """Freshly generated stubs (not the working tree's files, which a student may have edited)."""
    folder = tmp_path_factory.mktemp("stubs")
    make_stubs.write(folder)
    return folder


def complete_submission(folder: Path) -> Path:
    """Complete learner files (the reference code kept in every region)."""
    for path in make_stubs.solution_files():
        text = make_stubs.learner_source(path.read_text(encoding="utf-8"), path.name, keep_solutions=True)
        (folder / path.name).write_text(text, encoding="utf-8")
    return folder


def test_reference_gets_full_marks(reference_result):
    assert reference_result.checks, f"phase {reference_result.phase} has no checks"
    failed = [(c.number, c.output) for c in reference_result.checks if not c.passed]
    assert not failed
    assert reference_result.score == reference_result.max_score > 0


def test_every_check_is_numbered_by_its_section(reference_result):
    numbers = [check.number for check in reference_result.checks]
    assert len(set(numbers)) == len(numbers)
    for check in reference_result.checks:
        assert check.number.startswith(check.section + ".")
        assert check.phase == reference_result.phase and check.points > 0


def test_untouched_stubs_score_zero_with_one_line_each(stub_folder, reference_result):
    result = run_phase(reference_result.phase, submission=stub_folder)
    assert len(result.checks) == len(reference_result.checks)
    assert result.score == 0
    for check in result.checks:
        assert check.not_attempted, (check.number, check.output)
        assert "\n" not in check.output and "Traceback" not in check.output
        # Its own section, or an earlier one of the phase it needs (UNet.forward needs UNet.__init__).
        pointed = re.search(r"see IMPLEMENTATION_GUIDE\.md §(\d+)\.(\d+)", check.output)
        assert pointed, check.output
        assert (int(pointed[1]), int(pointed[2])) <= tuple(map(int, check.section.split(".")))
        assert pointed[1] == str(reference_result.phase)


def test_a_wrong_value_names_function_input_expected_got_and_the_mistake(tmp_path):
    mutant = next(m for m in MUTANTS if m.mistake == "beta_not_beta_tilde")
    build_submission(mutant, tmp_path)
    result = run_phase(1, submission=tmp_path)
    check = next(c for c in result.checks if c.function == "compute_posterior_variance")
    assert not check.passed
    for expected_text in ("compute_posterior_variance(", "betas=float64 tensor of shape (1000,)",
                          "largest difference at index", "expected", "got", "relative error",
                          "β_t used where β̃_t belongs", "IMPLEMENTATION_GUIDE.md §1.4"):
        assert expected_text in check.output
    # Checks of other functions use the reference for everything else, so they still pass.
    others = [c for c in result.checks if c.function != "compute_posterior_variance"]
    assert all(c.passed for c in others)
    # The README shows this very failure: each piece of its sample (split at its "…") is in today's report.
    readme = (Path(grade.__file__).parent / "README.md").read_text(encoding="utf-8")
    sample = readme[readme.index("✗ 1.4.1"):readme.index("§1.4.", readme.index("✗ 1.4.1"))]
    report = check_line(check)
    missing = [piece.strip() for line in sample.splitlines() for piece in line.split("…")
               if piece.strip() and piece.strip() not in report]
    assert not missing, f"the README's sample output of check 1.4.1 is stale: {missing}"


def test_syntax_error_in_a_learner_file_is_reported_per_check(tmp_path):
    complete_submission(tmp_path)
    (tmp_path / "diffusion.py").write_text("def broken(:\n    pass\n")
    result = run_phase(1, submission=tmp_path)
    forward = [c for c in result.checks if c.section >= "1.5"]
    schedules = [c for c in result.checks if c.section < "1.5"]
    assert forward and all("diffusion.py could not be imported: SyntaxError" in c.output for c in forward)
    assert schedules and all(c.passed for c in schedules)


def with_line_replaced(folder: Path, file: str, line: str, replacement: str, appended: str = "") -> Path:
    """Complete learner files in ``folder`` with ``line`` of ``file`` (found once) replaced, and ``appended``
    added at the end of that file."""
    complete_submission(folder)
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert text.count(line) == 1
    path.write_text(text.replace(line, replacement) + appended, encoding="utf-8")
    return folder


def with_quadratic_betas_ending(folder: Path, ending: str) -> Path:
    """Complete learner files in ``folder`` whose quadratic_betas ends with ``ending`` instead of its return."""
    return with_line_replaced(folder, "noise_schedule.py", "    return sqrt_betas**2\n", ending)


def test_a_crash_in_learner_code_points_at_the_learner_line(tmp_path):
    with_quadratic_betas_ending(tmp_path, "    return sqrt_betas ** undefined_name\n")
    result = run_phase(1, submission=tmp_path)
    check = next(c for c in result.checks if c.function == "quadratic_betas")
    assert "raised NameError" in check.output
    assert "noise_schedule.py line" in check.output and "undefined_name" in check.output


def test_a_function_that_writes_into_its_input_is_told_so(tmp_path):
    """Right values computed in the caller's tensor: the worker sees the in-place version counter move."""
    with_line_replaced(tmp_path, "diffusion.py", "    return signal_scale * x0 + noise_scale * noise\n",
                       "    return x0.mul_(signal_scale).add_(noise_scale * noise)\n")
    result = run_phase(1, submission=tmp_path, keyword="q_sample")
    check = next(c for c in result.checks if c.function == "q_sample")
    assert not check.passed
    assert "`q_sample` modified its input `x0`" in check.output and "input modified in place" in check.output


def test_a_crash_names_the_learner_function_and_its_section(tmp_path):
    """A crash inside another function of the learner's names that function and its guide section."""
    with_line_replaced(tmp_path, "noise_schedule.py", "    return sqrt_betas**2\n", "    return _square(sqrt_betas)\n",
                       appended="\n\ndef _square(values):\n    return values ** undefined_name\n")
    result = run_phase(1, submission=tmp_path, keyword="quadratic_betas")
    check = next(c for c in result.checks if c.function == "quadratic_betas")
    assert "`quadratic_betas` raised NameError" in check.output
    assert "in your `_square`" in check.output and "undefined_name" in check.output


def test_a_call_into_another_stub_is_a_failure_that_says_which(tmp_path):
    """Calling a function that is still a stub is not "not attempted": the report names the stub."""
    from grading.checker import learner_error_message
    from grading.mistakes import NOT_ATTEMPTED

    info = {"kind": "stub", "label": "inpaint_combine",
            "message": "Phase 4.2 · alpha_bar_at — see IMPLEMENTATION_GUIDE.md §4.2"}
    text = learner_error_message(info)
    assert NOT_ATTEMPTED not in text and "alpha_bar_at" in text and "still a stub" in text
    own = learner_error_message({**info, "label": "alpha_bar_at"})
    assert NOT_ATTEMPTED in own


def test_an_integration_check_is_not_attempted_until_its_own_function_is_written(tmp_path):
    """A check whose setup runs into another stub: "not attempted" while its own function is a stub too,
    and, once that function is written, a failure that names the stub it still needs."""
    stub = '        raise NotImplementedError("Phase 7.4 · TextEncoder.__init__ — see IMPLEMENTATION_GUIDE.md §7.4")\n'
    with_line_replaced(tmp_path, "text.py", "        self.token_embedding = nn.Embedding(vocab_size, dim)\n", stub)
    written = run_phase(7, submission=tmp_path, keyword="text_unet_ignores_appended_padding")
    [check] = written.checks
    assert check.function == "TextUNet.forward" and not check.not_attempted
    assert "still a stub" in check.output and "TextEncoder.__init__" in check.output

    forward = "        return self.unet(x, t, context, keep, pooled)  # (B, out_channels, H, W)\n"
    with_line_replaced(tmp_path, "text.py", forward,
                       '        raise NotImplementedError("Phase 7.7 · TextUNet.forward — see IMPLEMENTATION_GUIDE.md §7.7")\n')
    text = (tmp_path / "text.py").read_text(encoding="utf-8")
    (tmp_path / "text.py").write_text(text.replace("        self.token_embedding = nn.Embedding(vocab_size, dim)\n", stub),
                                      encoding="utf-8")
    [check] = run_phase(7, submission=tmp_path, keyword="text_unet_ignores_appended_padding").checks
    assert check.not_attempted, check.output


def test_a_hang_that_blocks_signals_costs_one_checks_timeout_not_the_run(tmp_path):
    """The per-check timeout kills the worker from outside: a signal handler in learner code cannot stop it."""
    with_quadratic_betas_ending(tmp_path, (
        "    import signal\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM, signal.SIGTERM, signal.SIGINT])\n"
        "    while True:\n        pass\n"
    ))
    result = run_phase(1, submission=tmp_path, check_timeout=2, time_budget=120)
    assert not result.problem
    hung = [c for c in result.checks if c.function == "quadratic_betas"]
    assert hung and all("timed out after 2 s" in c.output for c in hung)
    assert all(c.passed for c in result.checks if c.function != "quadratic_betas")


def test_the_time_budget_stops_the_run_and_keeps_what_finished(tmp_path):
    with_quadratic_betas_ending(tmp_path, "    while True:\n        pass\n")
    result = run_phase(1, submission=tmp_path, check_timeout=30, time_budget=10)
    assert "stopped after 10 s" in result.problem
    unfinished = [c for c in result.checks if c.outcome == "not run"]
    assert unfinished and all("did not finish" in c.output for c in unfinished)
    assert any(c.passed for c in result.checks)  # what finished before the hang still counts


def test_results_json_validates_and_is_written_for_broken_phases(tmp_path, stub_folder, capsys):
    """grade.py --json on the stubs, with an extra (hidden) phase-2 check that kills its process."""
    extra = tmp_path / "hidden_checks" / "test_hidden.py"
    extra.parent.mkdir()
    extra.write_text(textwrap.dedent('''
        import os
        import pytest

        @pytest.mark.phase2
        @pytest.mark.points(5)
        @pytest.mark.visibility("hidden")
        @pytest.mark.exercise("2.1", "crash")
        def test_hidden_crash():
            """a hidden check whose process dies"""
            os._exit(3)
    '''))
    out = tmp_path / "results.json"
    code = grade.main(["--submission", str(stub_folder), "--json", str(out), "--phase", "1", "2",
                       "--extra-checks", str(extra.parent)])
    assert code == 1
    data = json.loads(out.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["score"] == 0 and data["execution_time"] > 0
    phase1 = [t for t in data["tests"] if "phase1" in t["tags"]]
    assert phase1 and all(t["output"] == "Not attempted yet." for t in phase1)
    hidden = [t for t in data["tests"] if "crash" in t["tags"]]
    assert len(hidden) == 1 and "phase2" in hidden[0]["tags"] and hidden[0]["max_score"] == 5
    assert hidden[0]["visibility"] == "hidden"
    assert "did not run" in hidden[0]["output"]
    printed = capsys.readouterr().out
    assert "0 / " in printed and "not attempted yet" in printed


def test_full_marks_json_for_the_reference(tmp_path):
    out = tmp_path / "results.json"
    assert grade.main(["--impl", "solutions", "--phase", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["score"] == sum(t["max_score"] for t in data["tests"]) > 0
    assert all(t["status"] == "passed" for t in data["tests"])
    assert {tuple(t["tags"][:1]) for t in data["tests"]} == {("phase1",)}


@pytest.mark.parametrize(
    "argv",
    [["--phase", "9"], ["--impl", "banana"], ["--submission", "no/such/folder"],
     ["--submission", ".", "--impl", "solutions"], ["--check-timeout", "-1"],
     ["--extra-checks", "no/such/file.py"]],
    ids=["unknown phase", "unknown impl", "missing folder", "submission with solutions",
         "negative timeout", "missing extra checks"],
)
def test_bad_arguments_exit_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        grade.main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err



def test_a_crash_in_a_learner_module_names_the_class_method_and_line(tmp_path):
    """Phase 2 modules are wrapped too: a crash in forward names the block and the learner's line."""
    with_line_replaced(tmp_path, "unet.py", "        return self.conv(x)\n", "        return self.conv(x).view(-1, 7)\n")
    result = run_phase(2, submission=tmp_path)
    downsample = next(c for c in result.checks if c.function == "Downsample")
    assert not downsample.passed
    assert downsample.output.startswith("`Downsample.forward` raised RuntimeError")
    assert "at unet.py line" in downsample.output and "view(-1, 7)" in downsample.output
    upsample = next(c for c in result.checks if c.function == "Upsample")
    assert upsample.passed  # the other blocks are graded on their own


def test_batch_mode_grades_each_submission_alone(tmp_path, stub_folder, capsys):
    """--submissions: a complete folder, the stubs and one with a file missing; a report each and scores.csv."""
    class_folder = tmp_path / "class"
    for name in ("complete", "stubs", "partial"):
        (class_folder / name).mkdir(parents=True)
    complete_submission(class_folder / "complete")
    make_stubs.write(class_folder / "stubs")
    partial = complete_submission(class_folder / "partial")
    (partial / "diffusion.py").unlink()
    assert grade.main(["--submissions", str(class_folder), "--phase", "1"]) == 0
    out = tmp_path / "class-grades"
    rows = {row[0]: row for row in csv.reader((out / "scores.csv").read_text(encoding="utf-8").splitlines())}
    assert rows["submission"] == ["submission", "phase1", "total", "max", "seconds"]
    assert float(rows["complete"][1]) == float(rows["complete"][3]) > 0
    assert float(rows["stubs"][1]) == 0
    assert 0 < float(rows["partial"][1]) < float(rows["partial"][3])
    for name in ("complete", "stubs", "partial"):
        jsonschema.validate(json.loads((out / f"{name}.json").read_text(encoding="utf-8")), SCHEMA)
    assert "diffusion.py is not in the submission" in (out / "partial.txt").read_text(encoding="utf-8")
    assert "[3/3] stubs" in capsys.readouterr().out
