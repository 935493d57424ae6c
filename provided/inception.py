"""The usual Inception FID, when a package that computes it and its weights are on this machine.

Nothing here downloads: the project does not depend on these packages. Two are tried,
in order, each only if its Inception-v3 weights (the 2015-12-05 TensorFlow port that
FID is defined with) are already in torch.hub's checkpoint folder
(``torch.hub.get_dir()/checkpoints``, usually ``~/.cache/torch/hub/checkpoints``):

* ``pytorch-fid`` (``pip install pytorch-fid``): ``pt_inception-2015-12-05-*.pth``;
* ``torchmetrics`` with ``torch-fidelity`` (``pip install torchmetrics torch-fidelity``):
  ``weights-inception-2015-12-05-*.pth``.

Running either package once while online stores the weights. The features are the
2048-dimensional pool features of images resized to 299×299 (grey images repeated to
three channels); the distance is :func:`provided.metrics.frechet_distance`. On 28×28
digits Inception's features say little: the classifier metrics are the better guide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch

__all__ = ["InceptionUnavailable", "inception_extractor", "inception_features"]

#: The file torch-fidelity (used by torchmetrics) loads its Inception weights from.
TORCH_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
#: Images per Inception forward pass.
INCEPTION_BATCH = 50


class InceptionUnavailable(RuntimeError):
    """No package computes Inception features here (its message says what is missing)."""


def hub_checkpoint(file_name: str) -> Path:
    """Where torch.hub keeps a downloaded file of that name."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def _from_pytorch_fid(device: torch.device) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

    weights = hub_checkpoint(Path(urlparse(FID_WEIGHTS_URL).path).name)
    if not weights.is_file():
        raise InceptionUnavailable(f"pytorch-fid is installed but its Inception weights are not in {weights.parent}")
    network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()

    def extract(images: torch.Tensor) -> torch.Tensor:  # [0, 1] in; the network resizes and rescales
        return network(images)[0].flatten(1)

    return extract, "pytorch-fid"


def _from_torchmetrics(device: torch.device) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    from torchmetrics.image.fid import FrechetInceptionDistance

    weights = hub_checkpoint(TORCH_FIDELITY_WEIGHTS)
    if not weights.is_file():
        raise InceptionUnavailable(f"torchmetrics is installed but its Inception weights are not in {weights.parent}")
    network = FrechetInceptionDistance(feature=2048).inception.to(device).eval()

    def extract(images: torch.Tensor) -> torch.Tensor:  # it takes uint8 images in [0, 255]
        return network((images * 255).round().to(torch.uint8)).flatten(1)

    return extract, "torchmetrics"


def inception_extractor(device: torch.device | str = "cpu") -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """A function from (B, 3, H, W) images in [0, 1] to (B, 2048) Inception features, and the package's name.

    Raises:
        InceptionUnavailable: neither package (or neither one's weights) is here; the message
            says what was missing for each, in one line.
    """
    device = torch.device(device)
    reasons = []
    for name, build in (("pytorch-fid", _from_pytorch_fid), ("torchmetrics", _from_torchmetrics)):
        try:
            return build(device)
        except ImportError:
            reasons.append(f"{name} is not installed")
        except InceptionUnavailable as error:
            reasons.append(str(error))
        except Exception as error:  # a version whose interface differs, a damaged weights file…
            message = " ".join(str(error).split())[:160]
            reasons.append(f"{name} failed to load Inception ({type(error).__name__}: {message})")
    raise InceptionUnavailable("; ".join(reasons))


@torch.no_grad()
def inception_features(
    extract: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device | str = "cpu",
    batch_size: int = INCEPTION_BATCH,
) -> torch.Tensor:
    """(N, 2048) float32 CPU features of (N, C, H, W) images in [0, 1] (grey ones made RGB)."""
    features = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device, torch.float32).clamp(0, 1)
        if batch.shape[1] == 1:
            batch = batch.repeat(1, 3, 1, 1)
        features.append(extract(batch).float().cpu())
    return torch.cat(features)
