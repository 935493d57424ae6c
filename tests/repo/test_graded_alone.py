"""Each phase is graded alone, and a mistake costs only its own function's points.

* A submission with exactly one phase done (the reference's code in that phase's
  regions, every other exercise a stub) gets that phase's full marks, visible and
  hidden checks alike: no check of a phase needs a function of another phase.
* The mutation test (tests/repo/test_mutants.py) bounds the cascade inside a phase:
  no mutant fails a check of another function than the one it edits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grading.runner import run_phase
from provided.phases import PHASES
from tools import make_stubs


def only_phase_done(folder: Path, phase: int) -> Path:
    """Learner files in ``folder``: phase ``phase`` complete (the reference's regions), every other one a stub."""
    for path in make_stubs.solution_files():
        text = make_stubs.learner_source(path.read_text(encoding="utf-8"), path.name, keep_phases={str(phase)})
        (folder / path.name).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES, ids=[f"phase {p}" for p in PHASES])
def test_a_phase_done_alone_gets_full_marks(tmp_path, phase):
    result = run_phase(phase, submission=only_phase_done(tmp_path, phase), threads=1, check_timeout=120)
    assert result.checks and not result.problem
    lost = [f"{check.number} {check.name}: {check.output[:300]}" for check in result.checks if not check.passed]
    assert not lost, f"Phase {phase} done alone, with the other phases stubs, still loses points:\n" + "\n".join(lost)


def test_the_other_phases_of_such_a_submission_are_stubs(tmp_path):
    """The submission really is one phase: Phase 1 alone leaves Phase 4 with nothing done."""
    only_phase_done(tmp_path, 1)
    text = (tmp_path / "diffusion.py").read_text(encoding="utf-8")
    assert 'raise NotImplementedError("Phase 4.4 · ddpm_step' in text
    assert 'raise NotImplementedError("Phase 1.6 · q_sample' not in text
