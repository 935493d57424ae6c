"""Which code runs: your files, the reference, or each phase from whichever is ready (provided).

``--impl`` (a flag of train.py, sample.py and evaluate.py) and the DIFFUSION_IMPL
environment variable take one of :data:`IMPLEMENTATIONS`:

* ``auto`` (the default of the commands, the notebooks and the guide's "Try it"
  snippets): each phase runs your code when it is complete (none of its functions
  is still a stub and its file imports) and the reference otherwise. The first use
  prints one line per phase saying which, e.g.
  "Phase 1: the reference (yours: §1.2 cosine_betas not attempted yet)".
* ``learner``: your files only; a stub stops the command with "not attempted yet".
  The checks (``make grade``) always grade this.
* ``solutions``: the reference only, whatever state your files are in.

How ``auto`` composes the two: your modules are imported as usual (a module that
does not import is stood in for by the reference's while the others import); then,
in each of your modules, every function or class of an unfinished phase is replaced
by the reference's, and so is every reference to it held by your other modules (your
``train.py`` did ``from diffusion import q_sample``: it gets the reference's
q_sample too). Your finished functions then call the reference where they need an
unfinished one, and the reference's call only the reference.

This module never imports your files or the reference when it loads: only
:func:`import_impl` does, when called.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

#: The accepted values of ``--impl`` and of the DIFFUSION_IMPL environment variable.
IMPLEMENTATIONS = ("auto", "learner", "solutions")
#: What the checks may grade (``pytest --impl``, ``grade.py --impl``): never a mix.
GRADED_IMPLEMENTATIONS = ("learner", "solutions")
IMPL_ENV_VAR = "DIFFUSION_IMPL"
#: How a summary names each implementation.
CODE_NAMES = {"auto": "your code where its phase is complete (else the reference)", "learner": "your code",
              "solutions": "the reference code"}

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"
#: The exercise files, in an order where each imports only files before it.
EXERCISE_MODULES = ("noise_schedule", "diffusion", "unet", "degradations", "train", "latent", "text")
PHASES = (1, 2, 3, 4, 5, 6, 7)
GUIDE = "IMPLEMENTATION_GUIDE.md"

#: The line a stub raises (written by tools/make_stubs.py): "Phase 1.2 · cosine_betas — see …".
STUB_LINE = re.compile(r'raise NotImplementedError\(\s*"Phase (?P<phase>\d+)\.(?P<minor>\d+) · (?P<function>[\w.]+)')
#: The fence of an exercise in a reference file.
BEGIN_SOLUTION = re.compile(r"^\s*### BEGIN SOLUTION §(?P<phase>\d+)\.\d+\s*$")


class ImplementationError(RuntimeError):
    """Code that cannot be run as asked (a file that does not import, an unknown --impl); one line."""


def resolve_impl(impl: str | None = None, default: str = "auto", choices: tuple[str, ...] = IMPLEMENTATIONS) -> str:
    """The implementation to use: ``impl`` if given, else $DIFFUSION_IMPL, else ``default``."""
    chosen = impl or os.environ.get(IMPL_ENV_VAR) or default
    if chosen not in choices:
        source = "--impl" if impl else IMPL_ENV_VAR
        raise ValueError(f"{source} must be one of {', '.join(choices)}; got {chosen!r}")
    return chosen


def has_reference() -> bool:
    """Whether this copy holds the reference solutions (a student release does not)."""
    return (SOLUTIONS_DIR / "__init__.py").is_file()


def import_impl(module_name: str, impl: str | None = None) -> ModuleType:
    """Import ``module_name`` (e.g. "diffusion") from your files, the reference, or phase by phase.

    Args:
        module_name: one of :data:`EXERCISE_MODULES`.
        impl: "auto", "learner" or "solutions"; None means $DIFFUSION_IMPL, else "auto".

    Raises:
        ImplementationError: your file does not import (with ``learner``), or the reference
            is missing (with ``solutions``).
    """
    if module_name not in EXERCISE_MODULES:
        raise ValueError(f"module_name must be one of {', '.join(EXERCISE_MODULES)}; got {module_name!r}")
    chosen = resolve_impl(impl)
    if chosen == "solutions":
        if not has_reference():
            raise ImplementationError("--impl solutions needs the reference in solutions/, which this copy does not have")
        return importlib.import_module(f"solutions.{module_name}")
    if chosen == "learner":
        failure = _import_learner(module_name)
        if failure:
            raise ImplementationError(f"{failure}; fix it, or run the reference with --impl solutions")
        return sys.modules[module_name]
    return compose().modules[module_name]


# ---------------------------------------------------------------------------
# Which of your phases are complete
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseStatus:
    """Whether phase ``phase`` runs your code, and if not, why not."""

    phase: int
    yours: bool
    reasons: tuple[str, ...] = ()  # e.g. ("§1.2 cosine_betas not attempted yet",)

    def line(self, reference_available: bool = True) -> str:
        """One line for the user, e.g. "Phase 3: yours"."""
        if self.yours:
            return f"Phase {self.phase}: yours"
        why = "; ".join(self.reasons[:3]) + (f"; … ({len(self.reasons) - 3} more)" if len(self.reasons) > 3 else "")
        if reference_available:
            return f"Phase {self.phase}: the reference (yours: {why})"
        return (f"Phase {self.phase}: yours, unfinished ({why}); this copy has no reference to fall back on, "
                "so finish this phase before a command needs it")


def learner_path(module_name: str) -> Path:
    return REPO_ROOT / f"{module_name}.py"


def stubs_in(source: str) -> list[tuple[int, str]]:
    """The (phase, "§N.M function") of every stub line left in a learner file's source."""
    return [(int(m["phase"]), f"§{m['phase']}.{m['minor']} {m['function']}") for m in STUB_LINE.finditer(source)]


def _import_learner(module_name: str) -> str | None:
    """Import your ``module_name``; return None, or one line saying why it does not import."""
    if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None):
        return None
    try:
        importlib.import_module(module_name)
        return None
    except BaseException as error:  # noqa: BLE001 - SyntaxError, ImportError, anything its top level raises
        if isinstance(error, KeyboardInterrupt):
            raise
        sys.modules.pop(module_name, None)
        return _import_failure(module_name, error)


def _import_failure(module_name: str, error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        where = f"{Path(error.filename or module_name).name} line {error.lineno}"
        return f"{module_name}.py does not import: {type(error).__name__} at {where}: {error.msg}"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{module_name}.py does not import: {type(error).__name__}" + (f": {first_line}" if first_line else "")


# ---------------------------------------------------------------------------
# Composing your phases with the reference's
# ---------------------------------------------------------------------------


@dataclass
class Composition:
    """The modules ``auto`` hands out, and the status of each phase."""

    modules: dict[str, ModuleType]
    statuses: dict[int, PhaseStatus]


_COMPOSITION: Composition | None = None


def reference_phases(module_name: str) -> dict[str, set[int]]:
    """Each top-level name of ``solutions/<module_name>.py`` that holds exercises, with their phases.

    Read from the fences in the reference's source (the reference is not imported).
    """
    source = (SOLUTIONS_DIR / f"{module_name}.py").read_text(encoding="utf-8")
    lines = source.splitlines()
    phases: dict[str, set[int]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for line in lines[node.lineno - 1 : node.end_lineno]:
                match = BEGIN_SOLUTION.match(line)
                if match:
                    phases.setdefault(node.name, set()).add(int(match["phase"]))
    return phases


def phase_statuses(failures: dict[str, str]) -> dict[int, PhaseStatus]:
    """The status of every phase, from your files' sources and the modules that did not import."""
    reasons: dict[int, list[str]] = {phase: [] for phase in PHASES}
    stubs: dict[int, list[str]] = {phase: [] for phase in PHASES}
    for module_name in EXERCISE_MODULES:
        path = learner_path(module_name)
        source = path.read_text(encoding="utf-8") if path.is_file() else None
        if module_name in failures or source is None:
            why = failures.get(module_name, f"{module_name}.py is missing")
            for phase in _phases_of_file(module_name, source):
                reasons[phase].append(why)
            continue
        for phase, what in stubs_in(source):
            stubs[phase].append(what)
    for phase, names in stubs.items():
        if names:
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            reasons[phase].append(f"{names[0]}{more} not attempted yet")
    return {phase: PhaseStatus(phase, not found, tuple(found)) for phase, found in reasons.items()}


def _phases_of_file(module_name: str, source: str | None) -> set[int]:
    """The phases whose exercises live in ``module_name`` (from the reference, else from the stub lines)."""
    if has_reference():
        return {phase for phases in reference_phases(module_name).values() for phase in phases}
    return {phase for phase, _ in stubs_in(source or "")}


def compose(report=None) -> Composition:
    """Import your modules and stand the reference in for every unfinished phase (once per process).

    Args:
        report: called with each phase's line the first time (default: print to stderr).
    """
    global _COMPOSITION
    if _COMPOSITION is not None:
        return _COMPOSITION
    reference = has_reference()
    failures: dict[str, str] = {}
    modules: dict[str, ModuleType] = {}
    for module_name in EXERCISE_MODULES:
        failure = _import_learner(module_name)
        if failure is None:
            modules[module_name] = sys.modules[module_name]
        else:
            failures[module_name] = failure
            if reference:  # stands in while your later modules import, then leaves the name free
                modules[module_name] = importlib.import_module(f"solutions.{module_name}")
                sys.modules[module_name] = modules[module_name]
    for module_name in failures:
        if sys.modules.get(module_name) is modules.get(module_name):
            sys.modules.pop(module_name, None)
    statuses = phase_statuses(failures)
    if reference:
        _stand_in_reference(modules, failures, statuses)
    elif failures:
        first = next(iter(failures.values()))
        raise ImplementationError(f"{first}; this copy has no reference solutions to fall back on, so fix it first")
    for status in statuses.values():
        (report or _print_line)(status.line(reference))
    _COMPOSITION = Composition(modules, statuses)
    return _COMPOSITION


def _print_line(line: str) -> None:
    print(line, file=sys.stderr)


def _stand_in_reference(modules: dict[str, ModuleType], failures: dict[str, str], statuses: dict[int, PhaseStatus]) -> None:
    """In your modules, replace every exercise of an unfinished phase (and every alias of it) by the reference's."""
    replacements: dict[int, object] = {}  # id(your object) → the reference's
    keep_alive = []  # the replaced objects stay alive until the sweep, so that no id is reused meanwhile
    for module_name, module in modules.items():
        if module_name in failures:
            continue  # already the reference
        reference_module = importlib.import_module(f"solutions.{module_name}")
        for name, phases in reference_phases(module_name).items():
            if all(statuses[phase].yours for phase in phases):
                continue
            if hasattr(module, name):  # a learner who deleted the function has no alias of it to sweep
                yours = getattr(module, name)
                keep_alive.append(yours)
                replacements[id(yours)] = getattr(reference_module, name)
            setattr(module, name, getattr(reference_module, name))
    if not replacements:
        return
    for module_name, module in modules.items():
        if module_name in failures:
            continue
        for name, value in list(vars(module).items()):
            if id(value) in replacements:
                setattr(module, name, replacements[id(value)])
            elif isinstance(value, dict):  # tables of functions, e.g. noise_schedule.SCHEDULES
                for key, item in list(value.items()):
                    if id(item) in replacements:
                        value[key] = replacements[id(item)]


def report_lines() -> list[str]:
    """The phase lines of this process's ``auto`` composition (composing it if needed)."""
    composition = compose(report=lambda line: None)
    return [status.line(has_reference()) for status in composition.statuses.values()]
