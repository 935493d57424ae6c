"""Provided code never needs the learner's files to load, and ``--impl auto`` runs each phase from whoever finished it.

Every test here works on a copy of the repository in a temporary folder, so that it can
break or complete the learner files freely, and runs the commands there as a learner
would (``python train.py …`` in a fresh process).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from provided.choices import SCHEDULE_NAMES, TASK_NAMES
from provided.phases import EXERCISE_MODULES, PhaseStatus, stubs_in
from tools import make_stubs

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "data"  # the embedded digits, cached once for every test
TINY_MODEL = ["--base-channels", "8", "--timesteps", "50"]
TINY_TRAIN = ["--num-images", "32", "--batch-size", "8", "--steps", "2", "--warmup-steps", "1",
              "--sample-every", "0", "--sample-steps", "2", "--num-samples", "2", "--threads", "1",
              "--data-dir", str(DATA_DIR), *TINY_MODEL]
SYNTAX_ERROR = "\ndef broken(:\n"


def copy_repository(destination: Path, with_solutions: bool = True) -> Path:
    """The repository's code (no git, venv, runs, data or notebooks) copied to ``destination``."""
    skip = shutil.ignore_patterns(".git", ".venv", "runs", "data", "notebooks", "__pycache__", ".pytest_cache")
    shutil.copytree(REPO, destination, ignore=skip)
    if not with_solutions:
        shutil.rmtree(destination / "solutions")
    return destination


def run(root: Path, *argv: str) -> subprocess.CompletedProcess:
    """``python argv…`` in ``root``, as a learner types it (no DIFFUSION_IMPL from the test's environment)."""
    environment = {key: value for key, value in os.environ.items() if key != "DIFFUSION_IMPL"}
    environment.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *argv], cwd=root, env=environment, capture_output=True, text=True,
                          timeout=300)


def write_learner_files(root: Path, complete: tuple[str, ...] = ()) -> None:
    """The learner files in ``root``: the stubs, except the modules in ``complete`` (the reference's code)."""
    for path in make_stubs.solution_files():
        text = path.read_text(encoding="utf-8")
        keep = path.stem in complete
        (root / path.name).write_text(make_stubs.learner_source(text, path.name, keep_solutions=keep), encoding="utf-8")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """A copy of the repository with a tiny trained checkpoint and a tiny digits classifier."""
    from provided.classifier import save_classifier, train_on_dataset

    root = copy_repository(tmp_path_factory.mktemp("phases") / "repo")
    result = run(root, "train.py", "--impl", "solutions", *TINY_TRAIN, "--out", "run")
    assert result.returncode == 0, result.stderr
    torch.set_num_threads(1)
    model, record = train_on_dataset("digits", data_dir=DATA_DIR, num_train=200, num_test=100, epochs=1,
                                     batch_size=50, log=lambda line: None)
    classifier = root / "classifier.pt"
    save_classifier(classifier, model, record)
    return {"root": root, "checkpoint": root / "run" / "last.pt", "classifier": classifier}


# ---------------------------------------------------------------------------
# --impl solutions works whatever state the learner's files are in
# ---------------------------------------------------------------------------


#: Runs each command line of the JSON list in argv[1] as `python …` would (as __main__), in this one
#: process (one start of torch for them all); prints their exit statuses as a JSON list.
RUN_AS_MAIN = """
import json, runpy, sys
statuses = []
for argv in json.loads(sys.argv[1]):
    sys.argv = argv[1:] if argv[0] == "-m" else argv
    try:
        if argv[0] == "-m":
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(argv[0], run_name="__main__")
        statuses.append(0)
    except SystemExit as stop:
        statuses.append(stop.code if isinstance(stop.code, int) else int(stop.code is not None))
print(json.dumps(statuses))
"""


def run_each(root: Path, *command_lines: list[str]) -> tuple[list[int], str]:
    """Run the command lines one after the other in one fresh process; their exit statuses and stderr."""
    result = run(root, "-c", RUN_AS_MAIN, json.dumps(list(command_lines)))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("broken", EXERCISE_MODULES)
def test_a_syntax_error_in_a_learner_file_does_not_stop_the_reference(workspace, broken):
    root = workspace["root"]
    path = root / f"{broken}.py"
    original = path.read_text(encoding="utf-8")
    path.write_text(original + SYNTAX_ERROR, encoding="utf-8")
    sample = ["sample.py", "--checkpoint", str(workspace["checkpoint"]), "--num-samples", "2", "--steps", "2",
              "--threads", "1", "--out", "grid.png"]
    evaluate = ["evaluate.py", "--checkpoint", str(workspace["checkpoint"]), "--num-samples", "10", "--steps", "2",
                "--batch-size", "10", "--threads", "1", "--classifier", str(workspace["classifier"]),
                "--no-inception", "--out", "eval"]
    # python train.py compiles train.py, so its own syntax error is Python's to report (file and line);
    # the same command then runs as python -m provided.training.
    train = [*(["-m", "provided.training"] if broken == "train" else ["train.py"]), *TINY_TRAIN,
             "--out", "run-again", "--overwrite"]
    try:
        statuses, stderr = run_each(root, [*sample, "--impl", "solutions"], [*evaluate, "--impl", "solutions"],
                                    [*train, "--impl", "solutions"])
        assert statuses == [0, 0, 0], f"sample, evaluate, train with a syntax error in {broken}.py:\n{stderr[-2000:]}"
        # The default, auto, runs too: every phase of the broken file falls back, naming the file and line.
        result = run(root, *sample)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{broken}.py does not import: SyntaxError at {broken}.py line" in result.stderr
    finally:
        path.write_text(original, encoding="utf-8")


def test_the_learner_option_names_the_file_that_does_not_import(workspace):
    root = workspace["root"]
    path = root / "noise_schedule.py"  # the first file sample.py imports
    original = path.read_text(encoding="utf-8")
    path.write_text(original + SYNTAX_ERROR, encoding="utf-8")
    try:
        result = run(root, "sample.py", "--impl", "learner", "--checkpoint", str(workspace["checkpoint"]),
                     "--num-samples", "2", "--steps", "2", "--out", "grid.png")
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sample.py: error: ") and "does not import: SyntaxError at noise_schedule.py line" in last
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------
# auto: each phase from whoever finished it
# ---------------------------------------------------------------------------

#: Appended to a complete learner train.py: proves that the loop called the learner's own training_step.
MARKER = '''

_learner_training_step = training_step


def training_step(*args, **kwargs):
    print("the learner's training_step ran", file=sys.stderr)
    return _learner_training_step(*args, **kwargs)
'''


@pytest.mark.slow
def test_phase_3_done_and_phase_1_a_stub_trains_with_both(tmp_path):
    root = copy_repository(tmp_path / "repo")
    write_learner_files(root, complete=("train",))
    with (root / "train.py").open("a", encoding="utf-8") as handle:
        handle.write(MARKER)

    result = run(root, "train.py", *TINY_TRAIN, "--out", "run")

    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert re.search(r"^Phase 1: the reference \(yours: §1\.1 linear_betas and \d+ more not attempted yet\)$",
                     result.stderr, re.MULTILINE)
    assert "Phase 3: yours" in lines
    assert any(line.startswith("Phase 2: the reference (yours: §2.1 timestep_embedding") for line in lines)
    assert result.stderr.count("the learner's training_step ran") == 2  # --steps 2
    assert (root / "run" / "last.pt").is_file()

    strict = run(root, "train.py", "--impl", "learner", *TINY_TRAIN, "--out", "run-strict")
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines()[-1].startswith("train.py: error: not attempted yet: Phase ")


def test_auto_swaps_every_alias_of_an_unfinished_function(tmp_path):
    """The learner's train.py imported q_sample from its diffusion.py: under auto it holds the reference's."""
    root = copy_repository(tmp_path / "repo")
    write_learner_files(root, complete=("train", "unet"))
    # A learner who deleted an unfinished function, and a module global that is None: only the
    # learner's own objects are swapped, never a value that merely equals one.
    diffusion = root / "diffusion.py"
    text = diffusion.read_text(encoding="utf-8")
    start = text.index("def renoise(")
    end = text.index("\ndef ", start + 1)
    diffusion.write_text(text[:start] + text[end + 1:] + "\nNOTHING_HERE = None\n", encoding="utf-8")
    probe = (
        "import sys\n"
        "from utils import import_impl\n"
        "import solutions.diffusion, solutions.noise_schedule\n"
        "train, unet = import_impl('train'), import_impl('unet')\n"
        "assert train.q_sample is solutions.diffusion.q_sample, 'alias kept the stub'\n"
        "assert import_impl('diffusion').q_sample is solutions.diffusion.q_sample\n"
        "assert import_impl('noise_schedule').SCHEDULES['cosine'] is solutions.noise_schedule.cosine_betas\n"
        "assert train.training_step.__module__ == 'train', 'a finished phase must stay the learner’s'\n"
        "assert unet.UNet.__module__ == 'unet'\n"
        "assert import_impl('diffusion').renoise is solutions.diffusion.renoise\n"
        "assert import_impl('diffusion').NOTHING_HERE is None, 'a None global was swapped'\n"
        "print('ok')\n"
    )
    result = run(root, "-c", probe)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
    assert "Phase 2: yours" in result.stderr and "Phase 3: yours" in result.stderr


def test_a_copy_without_solutions_says_the_phase_must_be_finished(tmp_path):
    root = copy_repository(tmp_path / "repo", with_solutions=False)
    write_learner_files(root)  # all stubs, written from the maintainers' copy of solutions/

    result = run(root, "train.py", *TINY_TRAIN, "--out", "run")

    assert result.returncode == 1
    assert re.search(r"^Phase 1: yours, unfinished \(§1\.1 linear_betas and \d+ more not attempted yet\)", result.stderr,
                     re.MULTILINE)
    assert "no reference to fall back on" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: not attempted yet: Phase ") and "no reference" in last
    assert "Traceback" not in result.stderr

    reference = run(root, "train.py", "--impl", "solutions", *TINY_TRAIN, "--out", "run")
    assert reference.returncode == 1
    assert "--impl solutions needs the reference in solutions/" in reference.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------


def test_provided_code_imports_no_learner_module_when_it_loads():
    modules = sorted(f"provided.{path.stem}" for path in (REPO / "provided").glob("*.py") if path.stem != "__init__")
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r} + ['utils']:\n"
        "    importlib.import_module(name)\n"
        f"loaded = [name for name in sys.modules if name in {EXERCISE_MODULES!r} or name.startswith('solutions')]\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_stub_lines_are_found_with_their_phase_and_function():
    source = make_stubs.stub_out((make_stubs.SOLUTIONS_DIR / "unet.py").read_text(encoding="utf-8"))
    found = stubs_in(source)
    assert (2, "§2.3 ResidualBlock.__init__") in found
    assert (5, "§5.1 add_class_embedding") in found
    assert {phase for phase, _ in found} == {2, 5}
    assert stubs_in("def f():\n    return 1\n") == []


def test_phase_lines_say_whose_code_and_why():
    assert PhaseStatus(3, True).line() == "Phase 3: yours"
    waiting = PhaseStatus(1, False, ("§1.2 cosine_betas not attempted yet",))
    assert waiting.line() == "Phase 1: the reference (yours: §1.2 cosine_betas not attempted yet)"
    assert "no reference to fall back on" in waiting.line(reference_available=False)


def test_the_choices_match_the_tables_built_from_them():
    from solutions.degradations import TASKS
    from solutions.noise_schedule import SCHEDULES

    assert tuple(SCHEDULES) == SCHEDULE_NAMES
    assert tuple(TASKS) == TASK_NAMES
