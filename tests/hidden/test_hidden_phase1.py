"""Hidden Phase 1 checks: the visible checks' code on other shapes, seeds, schedules and lengths.

Students never see these (the student release leaves tests/hidden/ out), so code
fitted to the visible checks' inputs rather than written from the guide still
loses points here. Each reuses a visible check's body, so its messages and
named mistakes are the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))  # the visible checks, whatever ran first
import test_phase1_forward as forward  # noqa: E402
import test_phase1_schedules as schedules  # noqa: E402

pytestmark = [pytest.mark.phase1, pytest.mark.visibility("hidden")]

HIDDEN_CASES = {
    "float64-sigmoid, odd sizes": dict(shape=(5, 2, 3, 7), t=[17, 998, 1, 500, 0], schedule="sigmoid",
                                       dtype=torch.float64),
    "float32-quadratic, 2-D": dict(shape=(3, 11), t=[640, 999, 2], schedule="quadratic", dtype=torch.float32),
}


@pytest.fixture(params=list(HIDDEN_CASES), scope="module")
def hidden_case(request, ref):
    return forward.build_case(HIDDEN_CASES[request.param], ref, seed=2027)


@pytest.mark.points(1)
@pytest.mark.exercise("1.1", "linear_betas")
def test_linear_betas_other_length(impl, ref):
    """linear_betas with T = 37 and other ends"""
    schedules.test_linear_betas(impl, ref, 37, 5e-4, 0.03)


@pytest.mark.points(1)
@pytest.mark.exercise("1.5", "extract")
def test_extract_five_dimensions(impl, ref):
    """extract for a 5-D x"""
    forward.test_extract(impl, ref, (4, 2, 3, 1, 2))


FORWARD_CHECKS = [pytest.param(check, marks=pytest.mark.exercise(section, check.__name__.removeprefix("test_")),
                               id=check.__name__.removeprefix("test_"))
                  for section, check in (("1.6", forward.test_q_sample), ("1.7", forward.test_q_step),
                                         ("1.8", forward.test_v_target))]


@pytest.mark.points(1)
@pytest.mark.parametrize("check", FORWARD_CHECKS)
def test_forward_process_other_inputs(impl, ref, hidden_case, check):
    """the forward-process function on other shapes, timesteps, schedules and seeds"""
    check(impl, ref, hidden_case)


@pytest.mark.points(1)
@pytest.mark.exercise("1.9", "{name}")
@pytest.mark.parametrize("name", ["x0_from_eps", "eps_from_x0", "x0_from_v", "eps_from_v"])
def test_conversions_other_inputs(impl, ref, hidden_case, name):
    """the conversions on other shapes, timesteps, schedules and seeds"""
    forward.test_conversions(impl, ref, hidden_case, name)
