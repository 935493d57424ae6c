"""Phase 6 for the commands (provided): a frozen autoencoder and the scale of its latents.

``python train.py --train-autoencoder`` trains the autoencoder of your latent.py;
``python train.py --autoencoder runs/ae/last.pt`` then trains a U-Net on the latents
of that autoencoder, frozen (IMPLEMENTATION_GUIDE.md §6.6). This module holds what
the two share with sample.py and evaluate.py:

* :class:`LatentSpace`: the frozen autoencoder, its shift and scale (§6.4), and the
  way to and from the diffusion model's space (your ``encode_to_diffusion`` and
  ``decode_from_diffusion``). A latent diffusion checkpoint stores what rebuilds it:
  ``config["latent"]`` (shift, scale, the autoencoder's config, the SHA-256 of its
  checkpoint file) and ``checkpoint["autoencoder"]`` (its weights), so that sampling
  needs no other file.
* :func:`load_autoencoder`: an autoencoder checkpoint, checked, as a frozen model.
* :func:`measure_statistics`: the shift and scale of the training latents.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from .files import UnreadableFile, load_weights, read_torch_file, weights_problem

#: The images whose latents give the shift and scale (more than one batch: Rombach et al. used one,
#: MAR the whole set; 2,000 digits give the std to about 1 %).
DEFAULT_STATISTICS_IMAGES = 2000
#: What an autoencoder checkpoint (train.py --train-autoencoder) must hold.
AUTOENCODER_KEYS = ("config", "model_config", "ema")


class LatentError(ValueError):
    """An autoencoder or latent checkpoint that cannot be used, in one line naming the file."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_autoencoder(latent: ModuleType, model_config: dict, name: str) -> nn.Module:
    """``latent.Autoencoder(**model_config)``; LatentError naming ``name`` if the config builds none."""
    try:
        kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in model_config.items()}
        return latent.Autoencoder(**kwargs)
    except NotImplementedError:
        raise
    except (TypeError, ValueError, AttributeError) as error:
        raise LatentError(f"{name}: its autoencoder config {model_config} makes no Autoencoder of latent.py: "
                          f"{error}") from None


def frozen(latent: ModuleType, autoencoder: nn.Module, weights: dict, name: str, device: torch.device) -> nn.Module:
    """``autoencoder`` with ``weights`` loaded, on ``device``, frozen with your ``freeze`` (§6.5)."""
    try:
        load_weights(autoencoder, weights)
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise LatentError(f"{name}: its autoencoder weights do not fit latent.py's Autoencoder: {error}") from None
    return latent.freeze(autoencoder.to(device))


def load_autoencoder(path: Path, latent: ModuleType, device: torch.device) -> tuple[nn.Module, dict, str]:
    """The autoencoder trained by ``train.py --train-autoencoder`` into ``path`` (its EMA weights), frozen.

    Returns:
        the frozen model, the checkpoint (a dict), and the SHA-256 of the file.

    Raises:
        LatentError: no such file, not a checkpoint, or not an autoencoder's.
    """
    path = Path(path)
    if not path.is_file():
        raise LatentError(f"there is no autoencoder checkpoint {path}: train one first with "
                          "python train.py --train-autoencoder --out runs/ae (then --autoencoder runs/ae/last.pt)")
    try:
        state = read_torch_file(path)
    except UnreadableFile as error:
        raise LatentError(f"cannot read the autoencoder checkpoint {path} ({error}): the file is damaged "
                          "or was not written by train.py") from None
    if not isinstance(state, dict) or any(key not in state for key in AUTOENCODER_KEYS):
        raise LatentError(f"{path} is not a train.py checkpoint (it lacks {', '.join(AUTOENCODER_KEYS)})")
    if not state["config"].get("train_autoencoder"):
        raise LatentError(f"{path} is a diffusion model's checkpoint, not an autoencoder's: give the last.pt of "
                          "a run of python train.py --train-autoencoder")
    problem = weights_problem(state["ema"])
    if problem:
        raise LatentError(f"{path}: its ema weights are {problem}")
    model = build_autoencoder(latent, state["model_config"], str(path))
    return frozen(latent, model, state["ema"], str(path), device), state, file_sha256(path)


def measure_statistics(
    latent: ModuleType, autoencoder: nn.Module, images: torch.Tensor, generator: torch.Generator,
    per_channel: bool = False, batch_size: int = 250,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Your ``latent_statistics`` of posterior samples of ``images`` (N, C, H, W) in [-1, 1] (§6.4).

    The latents are samples z = mean + σ·ε, as the diffusion model will see them, with ε
    drawn from ``generator``. Returned on the CPU, in float32.
    """
    device = next(autoencoder.parameters()).device
    latents = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            mean, logvar = autoencoder.encode(images[start : start + batch_size].to(device))
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(device)
            latents.append(latent.posterior_sample(mean, logvar, noise).float().cpu())
    shift, scale = latent.latent_statistics(torch.cat(latents), per_channel=per_channel)
    return shift.float(), scale.float()


class LatentSpace:
    """A frozen autoencoder with the shift and scale of its latents: the data of a latent diffusion model.

    Attributes:
        latent: the latent module (your latent.py, or the reference's).
        autoencoder: the frozen Autoencoder.
        shift, scale: tensors of shape () or (C, 1, 1), on the autoencoder's device.
        image_shape: (C, H, W) of the images; ``shape``: (c, h, w) of the latents.
    """

    def __init__(self, latent: ModuleType, autoencoder: nn.Module, shift: torch.Tensor, scale: torch.Tensor,
                 image_shape: tuple[int, int, int]) -> None:
        device = next(autoencoder.parameters()).device
        self.latent, self.autoencoder = latent, autoencoder
        self.shift, self.scale = shift.to(device), scale.to(device)
        self.image_shape = tuple(image_shape)
        self.shape = tuple(autoencoder.latent_shape(*self.image_shape[1:]))
        self.source: tuple[Path, str, dict] | None = None  # (checkpoint file, its SHA-256, model config) when loaded

    def encode(self, images: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Images in [-1, 1] → the diffusion model's data (your ``encode_to_diffusion``)."""
        return self.latent.encode_to_diffusion(self.autoencoder, images, self.shift, self.scale, noise)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """The diffusion model's samples → images in [-1, 1] (your ``decode_from_diffusion``)."""
        u = u.to(device=self.shift.device, dtype=self.shift.dtype)  # e.g. a trajectory's frames, kept on the CPU
        return self.latent.decode_from_diffusion(self.autoencoder, u, self.shift, self.scale)

    def describe(self, source: Path, sha256: str, model_config: dict) -> dict:
        """What a latent diffusion checkpoint's config keeps of this space (JSON-friendly)."""
        return {"shift": self.shift.cpu().tolist(), "scale": self.scale.cpu().tolist(),
                "image_shape": list(self.image_shape), "latent_shape": list(self.shape),
                "autoencoder": str(source), "autoencoder_sha256": sha256,
                "autoencoder_config": {k: list(v) if isinstance(v, tuple) else v for k, v in model_config.items()}}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, latent: ModuleType, device: torch.device, name: str) -> "LatentSpace":
        """The space a latent diffusion checkpoint was trained in (its config["latent"] and "autoencoder")."""
        entry = checkpoint["config"].get("latent")
        weights = checkpoint.get("autoencoder")
        if not isinstance(entry, dict) or not isinstance(weights, dict):
            raise LatentError(f"{name}: a latent diffusion checkpoint needs config['latent'] and the autoencoder's "
                              "weights; the file is damaged or was edited")
        problem = weights_problem(weights)
        if problem:
            raise LatentError(f"{name}: its autoencoder weights are {problem}")
        try:
            shift = torch.tensor(entry["shift"], dtype=torch.float32)
            scale = torch.tensor(entry["scale"], dtype=torch.float32)
            image_shape = tuple(int(v) for v in entry["image_shape"])
            model_config = dict(entry["autoencoder_config"])
        except (KeyError, TypeError, ValueError) as error:
            raise LatentError(f"{name}: its config['latent'] is damaged ({error})") from None
        if not bool(torch.isfinite(scale).all() and (scale > 0).all() and torch.isfinite(shift).all()):
            raise LatentError(f"{name}: its latent scale must be finite and > 0; the file is damaged or was edited")
        autoencoder = frozen(latent, build_autoencoder(latent, model_config, name), weights, name, device)
        return cls(latent, autoencoder, shift, scale, image_shape)


def reconstruction_rows(original: torch.Tensor, reconstructed: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """Interleave rows of ``per_row`` originals and their reconstructions, for one grid (N, C, H, W each)."""
    rows = []
    for start in range(0, len(original), per_row):
        rows += [original[start : start + per_row], reconstructed[start : start + per_row]]
    return torch.cat(rows)
