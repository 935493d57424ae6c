"""Tests of ``provided.metrics`` on data whose answers are known in closed form.

Fréchet distance: exact for Gaussians given by their mean and covariance (N(0, I) vs N(μ, I)
is ‖μ‖² apart; diagonal covariances give Σ (√a − √b)²; in general the trace of the square root
of Σ₁Σ₂ is the sum of the square roots of its eigenvalues). Precision and recall: identical,
disjoint, nested and half-covering point clouds.
"""

from __future__ import annotations

import math

import pytest
import torch

from provided import metrics
from provided.metrics import (
    accuracy,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    knn_radii,
    manifold_coverage,
    precision_recall,
    sqrtm_psd,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)


def gaussian(count: int, dim: int, seed: int, mean: torch.Tensor | float = 0.0, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, dim, generator=generator, dtype=torch.float64) * scale + mean


def random_psd(dim: int, seed: int, rank: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(dim, rank or dim, generator=generator, dtype=torch.float64)
    return factor @ factor.T / dim


# ---------------------------------------------------------------------------
# The matrix square root
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [None, 3])
def test_sqrtm_psd_squares_back_and_is_symmetric(rank):
    matrix = random_psd(8, seed=1, rank=rank)  # rank 3: singular, eigenvalues ~0 that round-off may make negative
    root = sqrtm_psd(matrix)
    assert torch.isfinite(root).all()
    torch.testing.assert_close(root, root.T)
    torch.testing.assert_close(root @ root, matrix, atol=1e-10, rtol=1e-8)
    assert torch.linalg.eigvalsh(root).min() > -1e-10


def test_sqrtm_psd_of_a_diagonal_matrix_is_elementwise():
    values = torch.tensor([4.0, 9.0, 0.25, 0.0], dtype=torch.float64)
    torch.testing.assert_close(sqrtm_psd(torch.diag(values)), torch.diag(values.sqrt()))


# ---------------------------------------------------------------------------
# Fréchet distance from statistics: closed forms
# ---------------------------------------------------------------------------


def test_isotropic_gaussians_are_the_squared_mean_difference_apart():
    mean = torch.tensor([3.0, -4.0, 0.0, 1.0], dtype=torch.float64)
    identity = torch.eye(4, dtype=torch.float64)
    distance = frechet_distance_from_statistics(torch.zeros(4), identity, mean, identity)
    assert distance == pytest.approx(float(mean.pow(2).sum()), rel=1e-12)  # 26


def test_diagonal_covariances_match_the_closed_form():
    a = torch.tensor([1.0, 4.0, 0.5, 2.0], dtype=torch.float64)
    b = torch.tensor([9.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    mean1 = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    mean2 = torch.tensor([1.0, 1.0, 0.0, 3.0], dtype=torch.float64)
    expected = (mean1 - mean2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum()
    distance = frechet_distance_from_statistics(mean1, torch.diag(a), mean2, torch.diag(b))
    assert distance == pytest.approx(float(expected), rel=1e-12)


def test_general_covariances_match_the_eigenvalues_of_their_product():
    """Tr((Σ₁Σ₂)^½) = Σ √λᵢ(Σ₁Σ₂): Σ₁Σ₂ is not symmetric, but its eigenvalues are real and ≥ 0."""
    cov1, cov2 = random_psd(6, seed=2), random_psd(6, seed=3)
    mean1, mean2 = gaussian(1, 6, seed=4)[0], gaussian(1, 6, seed=5)[0]
    eigenvalues = torch.linalg.eigvals(cov1 @ cov2).real.clamp(min=0)
    expected = (mean1 - mean2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * eigenvalues.sqrt().sum()
    distance = frechet_distance_from_statistics(mean1, cov1, mean2, cov2)
    assert distance == pytest.approx(float(expected), rel=1e-9)
    assert frechet_distance_from_statistics(mean2, cov2, mean1, cov1) == pytest.approx(distance, rel=1e-9)


def test_a_gaussian_is_at_distance_zero_from_itself_even_when_singular():
    cov = random_psd(10, seed=6, rank=4)
    mean = gaussian(1, 10, seed=7)[0]
    assert frechet_distance_from_statistics(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-10)


def test_mismatched_dimensions_are_refused():
    with pytest.raises(ValueError, match="same dimension"):
        frechet_distance_from_statistics(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))
    with pytest.raises(ValueError, match="width"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))


# ---------------------------------------------------------------------------
# Fréchet distance of feature sets
# ---------------------------------------------------------------------------


def test_feature_statistics_are_the_mean_and_unbiased_covariance():
    features = gaussian(50, 3, seed=8)
    mean, cov = feature_statistics(features)
    torch.testing.assert_close(mean, features.mean(dim=0))
    torch.testing.assert_close(cov, torch.cov(features.T))  # torch.cov divides by N − 1


def test_a_set_is_at_distance_zero_from_itself():
    features = gaussian(300, 16, seed=9)
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(features.float(), features.float()) == pytest.approx(0.0, abs=1e-4)


def test_a_shift_adds_its_squared_length_exactly():
    features = gaussian(300, 8, seed=10)
    direction = torch.nn.functional.normalize(gaussian(1, 8, seed=11)[0], dim=0)
    distances = []
    for length in (0.5, 1.0, 2.0, 4.0):
        distance = frechet_distance(features, features + length * direction)
        assert distance == pytest.approx(length**2, rel=1e-8)  # the covariance does not change
        distances.append(distance)
    assert distances == sorted(distances)


def test_samples_of_two_gaussians_estimate_their_distance():
    mean = torch.tensor([1.0, 0.0, -1.0, 2.0], dtype=torch.float64)
    first, second = gaussian(20_000, 4, seed=12), gaussian(20_000, 4, seed=13, mean=mean)
    assert frechet_distance(first, second) == pytest.approx(float(mean.pow(2).sum()), abs=0.05)  # 6
    narrow = gaussian(20_000, 4, seed=14, scale=2.0)  # N(0, 4I): 4 · (2 − 1)² = 4 away from N(0, I)
    assert frechet_distance(first, narrow) == pytest.approx(4.0, abs=0.1)


def test_bad_features_are_refused():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(torch.zeros(10), torch.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.full((4, 2), math.nan), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.zeros(1, 2), torch.zeros(3, 2))


# ---------------------------------------------------------------------------
# Precision and recall
# ---------------------------------------------------------------------------


def test_knn_radii_on_a_line():
    points = torch.arange(6, dtype=torch.float64).view(-1, 1)  # 0, 1, …, 5
    torch.testing.assert_close(knn_radii(points, k=1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(knn_radii(points, k=2), torch.tensor([2.0, 1, 1, 1, 1, 2], dtype=torch.float64))
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(points, k=6)
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(points, k=0)


def test_manifold_coverage_uses_each_points_own_radius():
    points = torch.tensor([[0.0], [10.0]], dtype=torch.float64)
    radii = torch.tensor([1.0, 3.0], dtype=torch.float64)
    queries = torch.tensor([[0.5], [1.5], [8.0], [6.5], [13.0]], dtype=torch.float64)
    assert manifold_coverage(queries, points, radii).tolist() == [True, False, True, False, True]


def test_identical_clouds_have_full_precision_and_recall():
    cloud = gaussian(200, 8, seed=15)
    assert precision_recall(cloud, cloud.clone(), k=3) == (1.0, 1.0)


def test_two_samples_of_one_distribution_score_high():
    precision, recall = precision_recall(gaussian(500, 4, seed=16), gaussian(500, 4, seed=17), k=3)
    assert precision > 0.85 and recall > 0.85


def test_disjoint_far_clouds_score_zero():
    real = gaussian(200, 8, seed=18)
    assert precision_recall(real, gaussian(200, 8, seed=19, mean=100.0), k=3) == (0.0, 0.0)


def test_a_sample_of_one_of_two_modes_is_precise_but_recalls_half():
    offset = torch.zeros(4, dtype=torch.float64)
    offset[0] = 20.0
    first_mode, second_mode = gaussian(400, 4, seed=20, mean=offset), gaussian(400, 4, seed=21, mean=-offset)
    generated = gaussian(400, 4, seed=22, mean=offset)  # all in the first mode
    precision, recall = precision_recall(torch.cat([first_mode, second_mode]), generated, k=3)
    one_mode_precision, one_mode_recall = precision_recall(first_mode, generated, k=3)
    assert precision > 0.85 and one_mode_recall > 0.85
    assert precision == pytest.approx(one_mode_precision, abs=0.02)  # the far mode's balls reach no sample
    assert recall == pytest.approx(one_mode_recall / 2, abs=1e-12)  # none of the second mode is covered
    assert 0.42 < recall <= 0.5


def test_a_narrow_sample_is_precise_and_a_wide_one_recalls():
    real = gaussian(500, 4, seed=23)
    narrow_precision, narrow_recall = precision_recall(real, gaussian(500, 4, seed=24, scale=0.3), k=3)
    wide_precision, wide_recall = precision_recall(real, gaussian(500, 4, seed=25, scale=3.0), k=3)
    assert narrow_precision > 0.95 and narrow_recall < 0.5
    assert wide_recall > 0.95 and wide_precision < 0.5


def test_blocks_of_rows_give_the_same_answer(monkeypatch):
    real, generated = gaussian(90, 5, seed=26), gaussian(70, 5, seed=27, mean=0.5)
    whole = precision_recall(real, generated, k=3)
    monkeypatch.setattr(metrics, "DISTANCE_ROWS", 16)
    assert precision_recall(real, generated, k=3) == whole


def test_accuracy():
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="shape"):
        accuracy(torch.tensor([1, 2]), torch.tensor([1, 2, 3]))
