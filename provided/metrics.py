"""Sample-quality metrics on feature vectors: Fréchet distance, k-NN precision and recall, accuracy.

Everything here works on features, (N, D) tensors, whatever network made them (the
small classifier of :mod:`provided.classifier`, or Inception for the usual FID).
The computations run in float64 on the CPU, with torch only.

Fréchet distance (Dowson & Landau 1982; as FID, Heusel et al. 2017)
    Fit a Gaussian to each set, N(μ₁, Σ₁) and N(μ₂, Σ₂) (the sample mean and the
    unbiased sample covariance), and take the squared 2-Wasserstein distance between them:

        d² = ‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2 Tr((Σ₁ Σ₂)^{1/2})

    Σ₁ Σ₂ is not symmetric, but Tr((Σ₁ Σ₂)^{1/2}) = Tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}), a
    symmetric PSD matrix: both square roots come from symmetric eigendecompositions
    (``torch.linalg.eigh``), with round-off's tiny negative eigenvalues set to 0.
    The estimate is biased upwards by a term that shrinks like 1/N, so numbers are only
    comparable at the same number of images N: compare sets of equal size.

Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models")
    Each set stands for a manifold: the union of balls around its points, each ball's
    radius the distance to the point's k-th nearest neighbour in its own set.
    Precision is the fraction of generated points inside the real manifold (are the
    samples realistic?); recall, the fraction of real points inside the generated
    manifold (is all of the data's variety produced?). Both are in [0, 1].
"""

from __future__ import annotations

import torch

__all__ = [
    "DEFAULT_KNN",
    "accuracy",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "knn_radii",
    "manifold_coverage",
    "precision_recall",
    "sqrtm_psd",
]

#: k of the k-nearest-neighbour balls (the paper's default).
DEFAULT_KNN = 3
#: Rows of a pairwise-distance block computed at once (bounds the memory: rows × N × 8 bytes).
DISTANCE_ROWS = 1024


def _as_features(features: torch.Tensor, name: str) -> torch.Tensor:
    """``features`` as a float64 (N, D) CPU tensor; ValueError naming it if it is not one."""
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"{name} must be a (N, D) tensor of feature vectors; got {shape}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} holds NaN or inf values")
    return features.detach().to("cpu", torch.float64)


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (D,) and the unbiased covariance (D, D) of (N, D) features, in float64 (N ≥ 2)."""
    features = _as_features(features, "features")
    if features.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors; got {features.shape[0]}")
    mean = features.mean(dim=0)
    centred = features - mean
    covariance = centred.T @ centred / (features.shape[0] - 1)
    return mean, covariance


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (float64).

    ``matrix`` is symmetrised first ((A + Aᵀ) / 2, which only removes round-off), then
    V diag(√max(λ, 0)) Vᵀ from its eigendecomposition A = V diag(λ) Vᵀ.
    """
    matrix = matrix.to(torch.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"sqrtm_psd needs a square matrix; got shape {tuple(matrix.shape)}")
    symmetric = (matrix + matrix.T) / 2
    eigenvalues, eigenvectors = torch.linalg.eigh(symmetric)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance_from_statistics(
    mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor
) -> float:
    """d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}) between N(μ₁, Σ₁) and N(μ₂, Σ₂); ≥ 0.

    Exact for Gaussians: N(0, I) and N(μ, I) are ‖μ‖² apart; N(0, diag a) and
    N(0, diag b) are Σᵢ (√aᵢ − √bᵢ)² apart.
    """
    mean1, mean2 = mean1.to(torch.float64), mean2.to(torch.float64)
    cov1, cov2 = cov1.to(torch.float64), cov2.to(torch.float64)
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (mean1.numel(), mean1.numel()):
        raise ValueError(
            f"the two Gaussians must have the same dimension: means {tuple(mean1.shape)} and {tuple(mean2.shape)}, "
            f"covariances {tuple(cov1.shape)} and {tuple(cov2.shape)}"
        )
    root1 = sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1  # symmetric PSD, with the same eigenvalues as Σ₁ Σ₂
    middle = (middle + middle.T) / 2
    trace_of_root = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    distance = (mean1 - mean2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_of_root
    return max(float(distance), 0.0)


def frechet_distance(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of (N, D) features.

    Use sets of the same size: the estimate's bias depends on N.
    """
    features1, features2 = _as_features(features1, "features1"), _as_features(features2, "features2")
    if features1.shape[1] != features2.shape[1]:
        raise ValueError(f"the two sets of features differ in width: {features1.shape[1]} and {features2.shape[1]}")
    return frechet_distance_from_statistics(*feature_statistics(features1), *feature_statistics(features2))


def _distance_blocks(queries: torch.Tensor, points: torch.Tensor):
    """(row slice, distances) blocks of the (Q, P) Euclidean distances, DISTANCE_ROWS rows at a time."""
    for start in range(0, queries.shape[0], DISTANCE_ROWS):
        rows = slice(start, start + DISTANCE_ROWS)
        yield rows, torch.cdist(queries[rows], points)


def knn_radii(features: torch.Tensor, k: int = DEFAULT_KNN) -> torch.Tensor:
    """(N,) distance from each point to its k-th nearest neighbour among the others (k < N)."""
    features = _as_features(features, "features")
    count = features.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < count:
        raise ValueError(
            f"k must be a whole number from 1 to N − 1 = {count - 1} (the set has {count} points); got {k!r}"
        )
    radii = torch.empty(count, dtype=torch.float64)
    for rows, distances in _distance_blocks(features, features):
        # The point itself is at distance 0, the smallest: its k-th neighbour is the (k + 1)-th value.
        radii[rows] = distances.kthvalue(k + 1, dim=1).values
    return radii


def manifold_coverage(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """(Q,) booleans: whether each query lies in the union of the balls B(points[j], radii[j])."""
    queries, points = _as_features(queries, "queries"), _as_features(points, "points")
    radii = radii.to(torch.float64)
    inside = torch.empty(queries.shape[0], dtype=torch.bool)
    for rows, distances in _distance_blocks(queries, points):
        inside[rows] = (distances <= radii).any(dim=1)
    return inside


def precision_recall(
    real: torch.Tensor, generated: torch.Tensor, k: int = DEFAULT_KNN
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``generated`` against ``real``.

    Args:
        real: (N, D) features of real images.
        generated: (M, D) features of generated images.
        k: the k-th nearest neighbour sets each ball's radius (k < N and k < M).

    Returns:
        (precision, recall): the fraction of generated points inside the real manifold,
        and the fraction of real points inside the generated manifold.
    """
    real, generated = _as_features(real, "real"), _as_features(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real and generated features differ in width: {real.shape[1]} and {generated.shape[1]}")
    precision = manifold_coverage(generated, real, knn_radii(real, k)).double().mean()
    recall = manifold_coverage(real, generated, knn_radii(generated, k)).double().mean()
    return float(precision), float(recall)


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of ``predicted`` (N,) class indices equal to ``labels`` (N,)."""
    if predicted.shape != labels.shape or predicted.ndim != 1 or not len(labels):
        raise ValueError(
            f"predicted and labels must be non-empty (N,) tensors of one shape; got {tuple(predicted.shape)} "
            f"and {tuple(labels.shape)}"
        )
    return float((predicted.cpu() == labels.cpu()).double().mean())
