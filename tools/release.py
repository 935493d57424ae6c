"""Build what instructors hand out, from this repository (the single source).

    python -m tools.release autograder [--extra-checks DIR …] [--out dist/autograder.zip]

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
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

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
    autograder = commands.add_parser("autograder", help="Gradescope's autograder zip")
    autograder.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "autograder.zip", metavar="PATH",
                            help="where to write the zip (default dist/autograder.zip)")
    autograder.add_argument("--extra-checks", type=Path, nargs="+", default=[], metavar="PATH",
                            help="your own hidden check files or folders, added to tests/hidden/")
    args = parser.parse_args(argv)
    try:
        out = build_autograder(args.out, args.extra_checks)
    except OSError as error:
        parser.error(f"--out: cannot write {args.out} ({error.strerror or error})")
    print(f"Wrote {out} ({out.stat().st_size / 2**10:.0f} KiB): upload it as the autograder of a "
          "Gradescope programming assignment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
