"""Write the learner files at the top level from the reference in ``solutions/``.

Usage:
    python -m tools.make_stubs            # (re)write noise_schedule.py, diffusion.py, … at the top
    python -m tools.make_stubs --check    # exit 1 if the committed learner files have drifted
    python -m tools.make_stubs --out DIR  # write them into DIR instead

Every exercise in ``solutions/*.py`` is fenced like this (nbgrader's convention,
with the guide section after BEGIN):

    ### BEGIN SOLUTION §1.6
    # Gather √ᾱ_t and √(1 − ᾱ_t) per image with extract(), then mix signal and noise.
    signal_scale = ...
    return ...
    ### END SOLUTION

The comment lines right after BEGIN are the task; they stay in the learner file
as a TODO. The code is replaced by a ``raise NotImplementedError`` naming the
phase, the function and the guide section. Relative imports between solution
modules (``from .noise_schedule import X``) become top-level imports
(``from noise_schedule import X``) so each learner file imports its siblings.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"
GUIDE = "IMPLEMENTATION_GUIDE.md"

BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION §(?P<section>\d+\.\d+)\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
DEF = re.compile(r"^(?P<indent>\s*)(?:async\s+)?def\s+(?P<name>\w+)\s*\(")
CLASS = re.compile(r"^(?P<indent>\s*)class\s+(?P<name>\w+)\s*[(:]")
RELATIVE_FROM = re.compile(r"^(?P<indent>\s*)from \.(?P<module>\w+) import ", re.MULTILINE)
RELATIVE_PACKAGE = re.compile(r"^(?P<indent>\s*)from \. import (?P<names>.+)$", re.MULTILINE)

EXERCISE_HEADER = """\
# ─────────────────────────────────────────────────────────────────────────────
# YOUR FILE. Fill in each TODO (the guide's section is named beside it), then
# check your work with:   make grade PHASE={phases}
# Maintainers: this file is written by `make stubs` from solutions/{name};
# edit the solution and regenerate, never this committed copy.
# ─────────────────────────────────────────────────────────────────────────────
"""


class StubError(ValueError):
    """A solution file whose exercise regions cannot be turned into stubs."""


@dataclass(frozen=True)
class Region:
    """One fenced exercise: lines ``begin`` … ``end`` (0-based, inclusive) of a solution file."""

    begin: int
    end: int
    section: str  # e.g. "1.6"
    function: str  # the enclosing function, e.g. "q_sample"
    indent: str
    task: tuple[str, ...]  # the leading comment lines, without their "# "

    @property
    def phase(self) -> str:
        return self.section.split(".")[0]

    @property
    def message(self) -> str:
        """The NotImplementedError message; the grader recognises its "Phase " prefix."""
        return f"Phase {self.section} · {self.function} — see {GUIDE} §{self.section}"


def find_regions(text: str, filename: str = "<solution>") -> list[Region]:
    """All exercise regions of a solution file, in order, with their task and function."""
    lines = text.splitlines()
    regions: list[Region] = []
    index = 0
    while index < len(lines):
        begin = BEGIN.match(lines[index])
        if not begin:
            if END.match(lines[index]):
                raise StubError(f"{filename}:{index + 1}: END SOLUTION without a BEGIN")
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if END.match(lines[j])), None)
        nested = next((j for j in range(index + 1, end or len(lines)) if BEGIN.match(lines[j])), None)
        if end is None or nested is not None:
            raise StubError(f"{filename}:{index + 1}: BEGIN SOLUTION without its END SOLUTION")
        indent = begin["indent"]
        task = []
        for line in lines[index + 1 : end]:
            stripped = line.strip()
            if not stripped.startswith("#"):
                break
            task.append(stripped.lstrip("#").strip())
        if not task:
            raise StubError(
                f"{filename}:{index + 1}: the region needs a comment right after BEGIN that "
                "says what to do; it becomes the learner's TODO"
            )
        regions.append(
            Region(index, end, begin["section"], _enclosing_function(lines, index, indent, filename), indent, tuple(task))
        )
        index = end + 1
    return regions


def _enclosing_function(lines: list[str], index: int, indent: str, filename: str) -> str:
    """Name of the nearest ``def`` above line ``index`` indented less than the region.

    A method is named with its class, e.g. "ResidualBlock.forward".
    """
    for position in range(index - 1, -1, -1):
        match = DEF.match(lines[position])
        if match and len(match["indent"]) < len(indent):
            owner = _enclosing_class(lines, position, match["indent"])
            return f"{owner}.{match['name']}" if owner else match["name"]
    raise StubError(f"{filename}:{index + 1}: an exercise region must sit inside a function")


def _enclosing_class(lines: list[str], index: int, indent: str) -> str | None:
    """The class whose body holds the ``def`` at line ``index`` (None for a plain function)."""
    for line in reversed(lines[:index]):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#") or len(line) - len(stripped) >= len(indent):
            continue  # blank lines, comments and lines inside the body we are in
        match = CLASS.match(line)
        return match["name"] if match else None  # the first line indented less decides
    return None


def to_top_level_imports(text: str, filename: str = "<solution>") -> str:
    """Rewrite ``from .x import y`` as ``from x import y`` (and ``from . import x`` as ``import x``)."""
    text = RELATIVE_FROM.sub(lambda m: f"{m['indent']}from {m['module']} import ", text)
    text = RELATIVE_PACKAGE.sub(lambda m: f"{m['indent']}import {m['names']}", text)
    if re.search(r"^\s*from \.+", text, re.MULTILINE):
        raise StubError(f"{filename}: only 'from .module import …' relative imports are supported")
    return text


def stub_out(text: str, filename: str = "<solution>", keep_phases: Collection[str] = ()) -> str:
    """The solution text with each region replaced by its TODO and NotImplementedError.

    Regions of the phases in ``keep_phases`` (e.g. {"4"}) keep their reference code: a
    submission with exactly those phases done, used to prove each phase is graded alone.
    """
    lines = text.splitlines()
    out: list[str] = []
    previous_end = -1
    for region in find_regions(text, filename):
        if region.phase in keep_phases:
            continue
        out.extend(lines[previous_end + 1 : region.begin])
        first, *rest = region.task
        out.append(f"{region.indent}# TODO §{region.section}: {first}")
        out.extend(f"{region.indent}#   {line}".rstrip() for line in rest)
        out.append(f'{region.indent}raise NotImplementedError("{region.message}")')
        previous_end = region.end
    out.extend(lines[previous_end + 1 :])
    return "\n".join(out) + "\n"


def learner_source(text: str, name: str, keep_solutions: bool = False, keep_phases: Collection[str] = ()) -> str:
    """The top-level learner file for solution file ``name`` (e.g. "diffusion.py").

    With ``keep_solutions`` the regions keep their reference code (used to build
    mutants: a complete learner file with one deliberate mistake); with
    ``keep_phases`` only the regions of those phases do.
    """
    regions = find_regions(text, name)
    if not regions:
        raise StubError(f"{name}: no exercise region; provided code belongs in provided/, not in solutions/")
    body = text if keep_solutions else stub_out(text, name, keep_phases)
    phases = ",".join(sorted({region.phase for region in regions}))
    return EXERCISE_HEADER.format(phases=phases, name=name) + to_top_level_imports(body, name)


def solution_files(solutions_dir: Path = SOLUTIONS_DIR) -> list[Path]:
    """The solution modules, each of which has a learner twin (every .py but __init__.py).

    Only files with exercises live in ``solutions/``: provided code is written once, in
    ``provided/`` and ``utils.py``, and imported by both the learner files and the reference.
    """
    return sorted(p for p in solutions_dir.glob("*.py") if p.name != "__init__.py")


def generate(solutions_dir: Path = SOLUTIONS_DIR) -> dict[str, str]:
    """Map each learner file name to the text the generator writes for it."""
    return {
        path.name: learner_source(path.read_text(encoding="utf-8"), path.name)
        for path in solution_files(solutions_dir)
    }


def write(out_dir: Path, solutions_dir: Path = SOLUTIONS_DIR) -> list[Path]:
    """Write every learner file into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate(solutions_dir).items():
        target = out_dir / name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def drift(out_dir: Path = REPO_ROOT, solutions_dir: Path = SOLUTIONS_DIR) -> list[str]:
    """Unified diffs of every learner file in ``out_dir`` that differs from the generator's."""
    diffs = []
    for name, expected in generate(solutions_dir).items():
        target = out_dir / name
        actual = target.read_text(encoding="utf-8") if target.exists() else ""
        if actual != expected:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        expected.splitlines(keepends=True),
                        actual.splitlines(keepends=True),
                        f"generated/{name}",
                        f"committed/{name}",
                    )
                )
                or f"{name}: missing\n"
            )
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    parser.add_argument("--out", type=Path, default=REPO_ROOT, help="folder for the learner files")
    args = parser.parse_args(argv)
    if args.check:
        diffs = drift(args.out)
        if diffs:
            print("".join(diffs))
            print(
                f"{len(diffs)} learner file(s) differ from `make stubs`. Maintainers: run `make stubs` "
                "and commit. Students who filled in their stubs: expected — use `make grade`."
            )
            return 1
        print("learner files match the generator")
        return 0
    for path in write(args.out):
        print(f"wrote {path.relative_to(args.out) if args.out == REPO_ROOT else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
