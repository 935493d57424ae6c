"""Hidden Phase 4 checks: whole sampling loops with other step counts, lengths, shapes and seeds.

Students never see these (the student release leaves tests/hidden/ out). Each
reuses the visible loop check, so its messages and named mistakes are the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))  # the visible checks, whatever ran first
import test_phase4_sampling as sampling  # noqa: E402

pytestmark = [pytest.mark.phase4, pytest.mark.visibility("hidden")]

T_HIDDEN = 25
HIDDEN_LOOPS = {
    "ddim 5 trailing steps, eta 0.3, v": dict(sampler="ddim", num_steps=5, eta=0.3, prediction="v"),
    "ddpm 13 linspace steps, x0, clipped": dict(sampler="ddpm", num_steps=13, spacing="linspace", prediction="x0",
                                                clip_x0=True),
    "ddim all 25 steps, eta 0, eps": dict(sampler="ddim", num_steps=T_HIDDEN, eta=0.0, prediction="eps"),
}


@pytest.fixture(scope="module")
def hidden_schedule(ref):
    return ref.noise_schedule.NoiseSchedule.from_name("cosine", T_HIDDEN, dtype=sampling.F64)


@pytest.mark.points(1)
@pytest.mark.exercise("4.7", "sample_loop")
@pytest.mark.parametrize("case", list(HIDDEN_LOOPS))
def test_sample_loop_other_step_counts(impl, ref, hidden_schedule, case):
    """sample_loop with other step counts, T, shape and seed"""
    model = sampling.randomize_(sampling.ToyDenoiser().double(), seed=7).eval()
    sampling.check_sample_loop(impl, ref, hidden_schedule, model, HIDDEN_LOOPS[case], (2, 2, 5, 3), seed=97)
