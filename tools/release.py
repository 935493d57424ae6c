"""Build what instructors hand out, from this repository (the single source).

    python -m tools.release student [--out dist/student]
    python -m tools.release autograder [--extra-checks DIR …] [--out dist/autograder.zip]

``student``: the repository as students get it (a folder to publish): without
``solutions/``, the hidden checks, the maintainers' tests and tools. Its visible
checks answer the reference's calls from a recording of the reference at work
(``tests/checks/reference_outputs.bin``, grading/recording.py), made here by
running those checks on the reference; the recording is kept in ``dist/`` and
made again when the reference, the checks or the grading code change.

``autograder``: Gradescope's autograder zip. At its root, ``setup.sh`` (run
once when Gradescope builds the image: Python, a CPU-only torch, the grading
requirements) and ``run_autograder`` (run per submission: grades
``/autograder/submission`` and always writes ``/autograder/results/results.json``),
beside the grading code: ``grade.py``, ``grading/``, ``provided/``, the
reference in ``solutions/`` (never readable by student code: README, "For
instructors"), the visible checks in ``tests/checks/`` and the hidden ones in
``tests/hidden/``, with your own (``--extra-checks``) copied in beside them.
To add hidden checks, write them like those in ``tests/hidden/`` and rebuild.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from grading import wire

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "autograder"

#: What grading needs, relative to the repository (folders are copied without caches).
AUTOGRADER_FILES = ("grade.py", "conftest.py", "pyproject.toml", "utils.py", "grading", "provided", "solutions",
                    "tests/checks", "tests/hidden")
#: The packages grading needs besides torch and torchvision (setup.sh installs those CPU-only).
GRADING_PACKAGES = ("numpy", "pytest")


def requirement_lines(names: tuple[str, ...]) -> list[str]:
    """The lines of requirements.txt for ``names``, with the versions given there."""
    lines = []
    for line in (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        name = re.split(r"[<>=!~\[ ;]", line.strip(), maxsplit=1)[0]
        if name and not line.lstrip().startswith("#") and name in names:
            lines.append(line.strip())
    missing = set(names) - {re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0] for line in lines}
    if missing:
        raise SystemExit(f"error: requirements.txt has no line for {', '.join(sorted(missing))}")
    return lines


def copy_tree(source: Path, target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ipynb_checkpoints")
    if source.is_dir():
        shutil.copytree(source, target, ignore=ignore)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def check_files(paths: list[Path]) -> list[Path]:
    """The check files (test_*.py) under ``paths``, in order; SystemExit naming a path that has none."""
    found = []
    for path in paths:
        files = sorted(path.rglob("test_*.py")) if path.is_dir() else [path]
        if not path.exists() or not files or any(f.suffix != ".py" for f in files):
            raise SystemExit(f"error: --extra-checks: {path} is not a check file (test_*.py) or a folder of them")
        found += files
    return found


#: What a student release leaves out (relative to the repository): the reference, the hidden checks,
#: and what only maintainers run (their tests, CI, the stub generator, mutants, benchmarks, releases).
STUDENT_EXCLUDED = ("solutions", "tests/hidden", "tests/repo", ".ci", "CONTRIBUTING.md", "tools/make_stubs.py",
                    "tools/release.py", "tools/autograder", "tools/benchmarks", "grading/mutants.py")
STUDENT_NOTE = """> **Student release.** This copy has no `solutions/`: the checks (`make grade`, `make test`)
> compare your code with the reference's answers, recorded in `tests/checks/reference_outputs.bin`
> (reference {solutions}, checks {checks}). The commands and notebooks run your code, phase by phase
> as far as it is finished. Parts of this README written for maintainers and instructors (the
> reference, `make demo`'s reference run, the mutants and benchmarks) describe the full repository.

"""


def tracked_files() -> list[Path]:
    """The repository's files as git sees them (committed, or new and not ignored), relative to it."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                             capture_output=True, check=True)
    return [Path(name) for name in listing.stdout.decode().split("\0") if name]


def excluded(path: Path, names: tuple[str, ...]) -> bool:
    return any(path == Path(name) or Path(name) in path.parents for name in names)


def record_reference(cache: Path, mutant_names: tuple[str, ...] | None = None) -> Path:
    """The reference's recorded answers for the visible checks, made again only when a stamp changed.

    The reference is graded, and then every mutant of grading/mutants.py (or those named): each
    run writes down what the reference answers there, so that in the student release a learner
    who makes one of the catalogued mistakes still gets its name, also where the mistake makes
    a function call a lent reference helper or a model with inputs the reference never uses.
    """
    from concurrent.futures import ThreadPoolExecutor

    from grading import recording
    from grading.mutants import MUTANTS, run_mutant
    from grading.runner import run_checks

    mutants = tuple(m for m in MUTANTS if mutant_names is None or m.name in mutant_names)
    stamps = {"solutions": recording.solutions_stamp(), "checks": recording.checks_stamp(),
              "mutants": hashlib.sha256("\n".join(m.name for m in mutants).encode()).hexdigest()[:16]}
    if cache.is_file():
        try:
            if recording.Recording.load(cache).stamps == stamps:
                return cache
        except (OSError, ValueError, wire.ProtocolError):
            pass
    with tempfile.TemporaryDirectory(prefix="recording-") as folder:
        reference = Path(folder) / "reference.bin"
        failed = [check for phase in run_checks(impl="solutions", record=reference, time_budget=1800)
                  for check in phase.checks if not check.passed]
        if failed or not reference.is_file():
            raise SystemExit("error: the checks failed on the reference while recording its answers: "
                             + "; ".join(f"{c.number} {c.output[:200]}" for c in failed[:5]))
        merged = recording.Recording.load(reference)
        paths = [Path(folder) / f"mutant-{index}.bin" for index in range(len(mutants))]
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda pair: run_mutant(pair[0], record=pair[1]), zip(mutants, paths)))
        for path in paths:
            if path.is_file():  # a run that did not finish wrote nothing: its answers are missing, no more
                merged.merge(recording.Recording.load(path))
        merged.stamps = stamps
        cache.parent.mkdir(parents=True, exist_ok=True)
        merged.save(cache)
    return cache


def build_student(out: Path, cache: Path = REPO_ROOT / "dist" / ".reference_outputs.bin",
                  mutant_names: tuple[str, ...] | None = None) -> Path:
    """Write the student release into ``out`` (replacing it); return it.

    ``cache`` keeps the recording between builds; ``mutant_names`` limits the mutants whose calls
    are recorded (all by default).
    """
    from grading import recording

    cache = record_reference(cache, mutant_names)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for path in tracked_files():
        if not excluded(path, STUDENT_EXCLUDED) and (REPO_ROOT / path).is_file():
            copy_tree(REPO_ROOT / path, partial / path)
    shutil.copy2(cache, partial / recording.RECORDING_PATH.relative_to(REPO_ROOT))
    stamps = recording.Recording.load(cache).stamps
    readme = partial / "README.md"
    readme.write_text(STUDENT_NOTE.format(**stamps) + readme.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    partial.replace(out)
    return out


def build_autograder(out: Path, extra_checks: list[Path]) -> Path:
    """Write the autograder zip to ``out``; return it."""
    with tempfile.TemporaryDirectory(prefix="autograder-") as folder:
        root = Path(folder)
        for name in AUTOGRADER_FILES:
            if (REPO_ROOT / name).exists():
                copy_tree(REPO_ROOT / name, root / name)
        hidden = root / "tests" / "hidden"
        hidden.mkdir(parents=True, exist_ok=True)
        for path in check_files(extra_checks):
            target = hidden / path.name
            if target.exists():
                raise SystemExit(f"error: --extra-checks: {path.name} is already a check file of tests/hidden/; "
                                 "rename yours")
            shutil.copy2(path, target)
        (root / "requirements-autograder.txt").write_text("\n".join(requirement_lines(GRADING_PACKAGES)) + "\n",
                                                          encoding="utf-8")
        for script in ("setup.sh", "run_autograder"):
            shutil.copy2(TEMPLATES / script, root / script)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo.from_file(path, path.relative_to(root).as_posix())
                    executable = path.name in ("setup.sh", "run_autograder")
                    info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
        partial.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="the repository without the reference, for students")
    student.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "student", metavar="PATH",
                         help="the folder to write (replaced; default dist/student)")
    autograder = commands.add_parser("autograder", help="Gradescope's autograder zip")
    autograder.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "autograder.zip", metavar="PATH",
                            help="where to write the zip (default dist/autograder.zip)")
    autograder.add_argument("--extra-checks", type=Path, nargs="+", default=[], metavar="PATH",
                            help="your own hidden check files or folders, added to tests/hidden/")
    args = parser.parse_args(argv)
    if args.command == "student":
        try:
            out = build_student(args.out)
        except OSError as error:
            parser.error(f"--out: cannot write {args.out} ({error.strerror or error})")
        print(f"Wrote {out}: the student release (no solutions/; the checks replay the reference's recorded "
              "answers)")
        return 0
    try:
        out = build_autograder(args.out, args.extra_checks)
    except OSError as error:
        parser.error(f"--out: cannot write {args.out} ({error.strerror or error})")
    print(f"Wrote {out} ({out.stat().st_size / 2**10:.0f} KiB): upload it as the autograder of a "
          "Gradescope programming assignment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
