"""The input checks that the functions of your files start with (provided).

Each exercise function in your files calls one of these on its arguments before
the TODO, so that a wrong shape, dtype or range fails at once with a message
naming the argument, instead of somewhere deep inside your code. Nothing here is
graded. The checks shared by several files come first, then one section per file.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Collection, Iterator

import torch

from .choices import LOSS_TYPES, PREDICTION_TYPES, SAMPLERS, SPACINGS, VARIANCES

SIGNED_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8)


# ---------------------------------------------------------------------------
# Shared by several files
# ---------------------------------------------------------------------------


def check_choice(value: str, name: str, choices: Collection[str], *, alternative: str | None = None) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming ``name`` (and ``alternative``, if any)."""
    if value not in choices:
        also = f" or {alternative}" if alternative else ""
        raise ValueError(f"{name} must be one of {', '.join(choices)}{also}; got {value!r}")
    return value


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is a whole number ≥ ``minimum``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int ≥ {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value}")
    return value


def check_int_at_least(value: int, name: str, minimum: int) -> int:
    """Return ``value`` if it is an int ≥ ``minimum`` (not a bool), else raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}; got {value!r}")
    return value


def check_unit_interval(value: float, name: str, *, include_one: bool = True) -> None:
    """Raise unless 0 ≤ ``value`` ≤ 1 (0 ≤ ``value`` < 1 when ``include_one`` is False)."""
    below_top = value <= 1.0 if include_one else value < 1.0
    if not (0.0 <= value and below_top):
        raise ValueError(f"{name} must lie in [0, 1{']' if include_one else ')'}, got {value}")


def check_timesteps(t: torch.Tensor, num_timesteps: int, batch_size: int) -> None:
    """Raise unless ``t`` is an int64 tensor of shape (batch_size,) with values in [0, T)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor of int64 timesteps, got {type(t).__name__}")
    if t.dtype not in SIGNED_INTEGER_DTYPES:
        # uint8 and bool are excluded on purpose: torch treats them as masks when indexing.
        raise TypeError(
            f"t must hold integer timesteps (torch.int64, or another signed integer dtype), "
            f"got dtype {t.dtype}"
        )
    if t.shape != (batch_size,):
        raise ValueError(
            f"t must have shape (B,) = ({batch_size},), one timestep per image; "
            f"got shape {tuple(t.shape)}"
        )
    if batch_size and (t.min() < 0 or t.max() >= num_timesteps):
        raise ValueError(
            f"t must lie in [0, {num_timesteps - 1}] (0-indexed, T = {num_timesteps}); "
            f"got values from {t.min().item()} to {t.max().item()}"
        )


def check_images(**tensors: torch.Tensor) -> None:
    """Raise unless every keyword is a floating-point tensor of shape (B, …), all of one shape and dtype."""
    shapes, dtypes = {}, {}
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        if value.ndim < 1:
            raise ValueError(f"{name} must have a batch dimension, shape (B, …); got a scalar")
        shapes[name], dtypes[name] = tuple(value.shape), value.dtype
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"these tensors must have the same shape: {listed}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"these tensors must have the same dtype: {listed}")


def check_inputs(schedule: NoiseSchedule, t: torch.Tensor, **tensors: torch.Tensor) -> None:
    """Validate the images, then their timesteps against the schedule."""
    check_images(**tensors)
    first = next(iter(tensors.values()))
    check_timesteps(t, schedule.num_timesteps, batch_size=first.shape[0])


# ---------------------------------------------------------------------------
# noise_schedule.py
# ---------------------------------------------------------------------------


def check_num_timesteps(num_timesteps: int, minimum: int = 1) -> int:
    """Return ``num_timesteps`` if it is a whole number ≥ ``minimum``, else raise."""
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int):
        raise TypeError(
            f"num_timesteps must be an int (the number of diffusion steps T), "
            f"got {type(num_timesteps).__name__} {num_timesteps!r}"
        )
    if num_timesteps < minimum:
        raise ValueError(f"num_timesteps must be at least {minimum}, got {num_timesteps}")
    return num_timesteps


def check_scaled_linear_arguments(num_timesteps: int, beta_end: float) -> None:
    """Accept T ≥ 1 large enough that the rescaled last β, beta_end · 1000 / T, stays below 1."""
    check_num_timesteps(num_timesteps)
    if beta_end * 1000 / num_timesteps >= 1:
        raise ValueError(
            f"num_timesteps={num_timesteps} is too small for scaled_linear: beta_end "
            f"{beta_end} × 1000 / T would reach 1; use T > {math.floor(beta_end * 1000)}"
        )


def check_sigmoid_arguments(num_timesteps: int, start: float, end: float, tau: float) -> None:
    """Accept T ≥ 1, an input range with end > start, and a temperature tau > 0."""
    check_num_timesteps(num_timesteps)
    if not end > start:
        raise ValueError(f"sigmoid_betas needs end > start, got start={start}, end={end}")
    if not tau > 0:
        raise ValueError(f"sigmoid_betas needs tau > 0, got tau={tau}")


def check_karras_arguments(num_timesteps: int, sigma_min: float, sigma_max: float) -> None:
    """Accept T ≥ 2 (the formula divides by T − 1) and noise levels 0 < sigma_min < sigma_max."""
    check_num_timesteps(num_timesteps, minimum=2)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"karras_betas needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}"
        )


def check_schedule_name(name: str, schedules: Collection[str]) -> None:
    """Raise unless ``name`` is one of the schedule names ``schedules``."""
    if name not in schedules:
        raise ValueError(
            f"unknown schedule {name!r}; accepted schedule names: {', '.join(schedules)}"
        )


def check_betas(betas: torch.Tensor) -> torch.Tensor:
    """Return ``betas`` as a float64 CPU tensor of shape (T,), checking every value is in (0, 1)."""
    if not isinstance(betas, torch.Tensor):
        raise TypeError(f"betas must be a torch.Tensor of shape (T,), got {type(betas).__name__}")
    if betas.ndim != 1 or betas.numel() < 1:
        raise ValueError(f"betas must have shape (T,) with T ≥ 1, got shape {tuple(betas.shape)}")
    if not betas.is_floating_point():
        raise TypeError(f"betas must be a floating-point tensor, got dtype {betas.dtype}")
    betas = betas.detach().to(device="cpu", dtype=torch.float64)
    outside = ~((betas > 0) & (betas < 1))  # also catches NaN
    if outside.any():
        index = int(outside.nonzero()[0])
        raise ValueError(
            f"betas must lie strictly between 0 and 1; betas[{index}] = {betas[index].item()!r}"
        )
    return betas


def check_schedule_arguments(betas: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Accept a floating-point torch.dtype and betas in (0, 1); return the betas as float64, (T,)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return check_betas(betas)


# ---------------------------------------------------------------------------
# diffusion.py
# ---------------------------------------------------------------------------


def check_timesteps_or_clean(t: torch.Tensor, num_timesteps: int, batch_size: int) -> None:
    """Raise unless ``t`` is a signed integer tensor of shape (batch_size,) with values in [-1, T).

    −1 stands for the clean image x_0, the end of every sampling pair.
    """
    if not isinstance(t, torch.Tensor) or t.dtype not in SIGNED_INTEGER_DTYPES:
        raise TypeError(f"t must be a tensor of signed integer timesteps (int64), got {t!r:.60}")
    if t.shape != (batch_size,):
        raise ValueError(f"t must have shape (B,) = ({batch_size},); got {tuple(t.shape)}")
    if t.numel() and (t.min() < -1 or t.max() >= num_timesteps):
        raise ValueError(f"t must lie in [-1, {num_timesteps - 1}] (−1: the clean image); got {t.tolist()}")


def check_previous_timesteps(t_prev: torch.Tensor, t: torch.Tensor) -> None:
    """Raise unless ``t_prev`` is an integer tensor shaped like ``t`` with −1 ≤ t_prev < t (provided)."""
    if not isinstance(t_prev, torch.Tensor) or t_prev.dtype not in SIGNED_INTEGER_DTYPES:
        raise TypeError(f"t_prev must be a tensor of signed integer timesteps (int64), got {t_prev!r:.60}")
    if t_prev.shape != t.shape:
        raise ValueError(f"t_prev must have the shape of t, {tuple(t.shape)}; got {tuple(t_prev.shape)}")
    if t_prev.numel() and (t_prev.min() < -1 or (t_prev >= t).any()):
        raise ValueError(
            "t_prev must satisfy −1 ≤ t_prev < t for every image (−1 means 'the clean x_0'); "
            f"got t = {t.tolist()} and t_prev = {t_prev.tolist()}"
        )


def check_eta(eta: float) -> float:
    """Raise unless η is a number in [0, 1] (provided)."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like); got {eta!r}")
    return float(eta)


def check_ddim_noise(eta: float, noise: torch.Tensor | None) -> float:
    """Return η as a float; raise unless it is in [0, 1] and, when η > 0, ``noise`` is given."""
    eta = check_eta(eta)
    if noise is None and eta > 0:
        raise ValueError(f"ddim_step with eta = {eta} > 0 needs noise, a (B, C, H, W) tensor; got None")
    return eta


def check_inference_arguments(num_timesteps: int, num_steps: int, spacing: str) -> None:
    """Accept a spacing among SPACINGS and N = ``num_steps``, an int in [1, T]."""
    check_choice(spacing, "spacing", SPACINGS)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be an int in [1, T = {num_timesteps}]; got {num_steps!r}")


def check_sampling_arguments(
    sampler: str,
    variance: str,
    eta: float,
    *,
    prediction: str | None = None,
    shape: tuple[int, ...] | None = None,
    resample: int = 1,
) -> float:
    """Return η as a float after checking the options of a sampling loop.

    Accepted: a sampler among SAMPLERS, a variance among VARIANCES, a prediction among
    PREDICTION_TYPES (when given), η in [0, 1], a shape (B, C, H, W) of positive ints
    (when given) and an int ``resample`` ≥ 1.
    """
    check_choice(sampler, "sampler", SAMPLERS)
    check_choice(variance, "variance", VARIANCES)
    if prediction is not None:
        check_choice(prediction, "prediction", PREDICTION_TYPES)
    eta = check_eta(eta)
    if shape is not None and (len(shape) < 2 or any(not isinstance(size, int) or size < 1 for size in shape)):
        raise ValueError(f"shape must be (B, C, H, W) of positive ints; got {shape!r}")
    check_int_at_least(resample, "resample", 1)
    return eta


def check_guidance(guidance_scale: float, class_labels: torch.Tensor | None, name: str = "class_labels") -> None:
    """Accept a condition (class labels, or tokens for a text model: guidance needs one) and w ≥ 0."""
    if class_labels is None:
        raise ValueError(f"guidance_scale needs {name}: guidance mixes the conditional and "
                         "unconditional predictions")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
        raise ValueError(f"guidance_scale must be a number ≥ 0 (1: plain conditional); got {guidance_scale!r}")


# ---------------------------------------------------------------------------
# unet.py
# ---------------------------------------------------------------------------


def check_groups(groups: int, channels: int, name: str = "channels") -> None:
    """Raise unless GroupNorm's ``groups`` divides ``channels`` (GroupNorm needs whole groups)."""
    check_positive_int(groups, "groups")
    if channels % groups:
        raise ValueError(
            f"groups={groups} must divide {name} ({channels}): GroupNorm splits the channels "
            f"into equal groups. Pick groups among the divisors of {channels}, or change the channels."
        )


def check_embedding_arguments(t: torch.Tensor, dim: int) -> None:
    """Accept an even embedding width ``dim`` ≥ 2 and timesteps ``t`` of shape (B,)."""
    check_positive_int(dim, "dim", minimum=2)
    if dim % 2:
        raise ValueError(f"dim must be even (half sines, half cosines), got {dim}")
    if not isinstance(t, torch.Tensor) or t.ndim != 1:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must be a tensor of shape (B,), one timestep per image; got {shape}")


def check_residual_block_arguments(
    in_channels: int, out_channels: int, embed_dim: int, groups: int, dropout: float
) -> None:
    """Accept positive widths, ``groups`` dividing both channel counts, and dropout in [0, 1)."""
    check_positive_int(in_channels, "in_channels")
    check_positive_int(out_channels, "out_channels")
    check_positive_int(embed_dim, "embed_dim")
    check_groups(groups, in_channels, "in_channels")
    check_groups(groups, out_channels, "out_channels")
    check_unit_interval(dropout, "dropout", include_one=False)


def check_attention_arguments(channels: int, num_heads: int, groups: int) -> None:
    """Accept positive ``channels`` and ``num_heads``, both ``groups`` and ``num_heads`` dividing ``channels``."""
    check_positive_int(channels, "channels")
    check_positive_int(num_heads, "num_heads")
    check_groups(groups, channels)
    if channels % num_heads:
        raise ValueError(
            f"num_heads={num_heads} must divide channels={channels}: each head gets channels / num_heads"
        )


def check_config(
    in_channels: int,
    out_channels: int,
    base_channels: int,
    channel_mults: tuple[int, ...],
    num_res_blocks: int,
    attention_levels: tuple[int, ...],
    num_heads: int,
    dropout: float,
    groups: int,
    num_classes: int | None,
    cond_channels: int,
) -> None:
    """Raise a clear error for a U-Net configuration that cannot be built (provided)."""
    check_positive_int(in_channels, "in_channels")
    check_positive_int(out_channels, "out_channels")
    check_positive_int(base_channels, "base_channels")
    check_positive_int(num_res_blocks, "num_res_blocks")
    check_positive_int(num_heads, "num_heads")
    if not channel_mults:
        raise ValueError("channel_mults must name at least one level, e.g. (1, 2, 2)")
    for mult in channel_mults:
        check_positive_int(mult, "every entry of channel_mults")
    for level in attention_levels:
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < len(channel_mults):
            raise ValueError(
                f"attention_levels must be level indices in [0, {len(channel_mults) - 1}] "
                f"(one per entry of channel_mults); got {attention_levels}"
            )
    widths = [base_channels * mult for mult in channel_mults]
    for width in [base_channels, *widths]:
        check_groups(groups, width, "every level's width (base_channels × channel_mults)")
    attended = [widths[level] for level in attention_levels] + [widths[-1]]  # the middle always attends
    for width in attended:
        if width % num_heads:
            raise ValueError(
                f"num_heads={num_heads} must divide the width of every level with attention; "
                f"{width} is not divisible by {num_heads}"
            )
    check_unit_interval(dropout, "dropout", include_one=False)
    if num_classes is not None and num_classes != 0:
        check_positive_int(num_classes, "num_classes")
    if isinstance(cond_channels, bool) or not isinstance(cond_channels, int) or cond_channels < 0:
        raise ValueError(f"cond_channels must be an int ≥ 0 (0: no condition image), got {cond_channels!r}")


def check_unet_image_size(height: int, width: int, channel_mults: tuple[int, ...]) -> None:
    """Raise unless len(channel_mults) − 1 halvings of (height, width) stay whole numbers."""
    num_levels = len(channel_mults)
    factor = 2 ** (num_levels - 1)
    if height % factor or width % factor:
        sizes = " → ".join(f"{height / 2**i:g}" for i in range(num_levels))
        raise ValueError(
            f"image size {height}×{width} cannot be halved evenly by the {num_levels} levels "
            f"of channel_mults={channel_mults} ({sizes}): height and width must be "
            f"divisible by 2^{num_levels - 1} = {factor}. Resize the images (--image-size) "
            "or use fewer levels."
        )


def check_unet_inputs(
    model: torch.nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
) -> None:
    """Raise a clear error for inputs of the wrong shape, dtype or range for the U-Net ``model``.

    Accepted: x, a floating-point (B, in_channels, H, W) tensor whose H and W the levels can
    halve (``model.check_image_size``); t of shape (B,), integer or float; class_labels only
    for a class-conditional model, int64 (B,) in [0, num_classes]; cond exactly when the
    model has cond_channels, of shape (B, cond_channels, H, W).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != model.in_channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (B, {model.in_channels}, H, W); got {shape}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    model.check_image_size(x.shape[2], x.shape[3])
    if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must have shape (B,) = ({x.shape[0]},), one timestep per image; got {shape}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"t must hold integer or float timesteps, got dtype {t.dtype}")
    if class_labels is not None:
        if not model.num_classes:
            raise ValueError("class_labels were given, but this UNet was built with num_classes=None")
        if class_labels.shape != (x.shape[0],) or class_labels.dtype != torch.int64:
            raise ValueError(
                f"class_labels must be an int64 tensor of shape ({x.shape[0]},); "
                f"got {class_labels.dtype} of shape {tuple(class_labels.shape)}"
            )
        if class_labels.numel() and (class_labels.min() < 0 or class_labels.max() > model.num_classes):
            raise ValueError(
                f"class_labels must lie in [0, {model.num_classes}] ({model.num_classes} = no class); "
                f"got values from {class_labels.min().item()} to {class_labels.max().item()}"
            )
    if model.cond_channels and cond is None:
        raise ValueError(f"this UNet needs cond, a (B, {model.cond_channels}, H, W) condition image")
    if cond is not None:
        expected = (x.shape[0], model.cond_channels, *x.shape[2:])
        if not model.cond_channels:
            raise ValueError("cond was given, but this UNet was built with cond_channels=0")
        if tuple(cond.shape) != expected:
            raise ValueError(f"cond must have shape {expected}; got {tuple(cond.shape)}")


# ---------------------------------------------------------------------------
# train.py
# ---------------------------------------------------------------------------


def check_min_snr_arguments(t: torch.Tensor, schedule: NoiseSchedule, prediction: str, gamma: float) -> None:
    """Accept a prediction among PREDICTION_TYPES, γ > 0 and int64 timesteps t of shape (B,) in [0, T)."""
    check_choice(prediction, "prediction", PREDICTION_TYPES)
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    check_timesteps(t, schedule.num_timesteps, t.shape[0] if isinstance(t, torch.Tensor) and t.ndim else -1)


def check_loss_arguments(
    output: torch.Tensor, target: torch.Tensor, loss_type: str, weights: torch.Tensor | None
) -> None:
    """Accept a loss_type among LOSS_TYPES, output and target of one shape, and weights None or (B,)."""
    check_choice(loss_type, "loss_type", LOSS_TYPES)
    if output.shape != target.shape:
        raise ValueError(f"output and target must have the same shape; got {tuple(output.shape)} and {tuple(target.shape)}")
    if weights is not None and weights.shape != (output.shape[0],):
        raise ValueError(f"weights must have shape (B,) = ({output.shape[0]},); got {tuple(weights.shape)}")


def check_ema_decay_arguments(step: int, max_decay: float) -> None:
    """Accept an int step ≥ 0 (not a bool) and max_decay in [0, 1)."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int ≥ 0, got {step!r}")
    check_unit_interval(max_decay, "max_decay", include_one=False)


def check_label_dropout_arguments(class_labels: torch.Tensor, p_uncond: float) -> None:
    """Accept p_uncond in [0, 1] and class_labels, an int64 tensor of shape (B,)."""
    check_unit_interval(p_uncond, "p_uncond")
    if class_labels.dtype != torch.int64 or class_labels.ndim != 1:
        raise TypeError(f"class_labels must be an int64 tensor of shape (B,), got {class_labels.dtype} "
                        f"of shape {tuple(class_labels.shape)}")


# ---------------------------------------------------------------------------
# degradations.py
# ---------------------------------------------------------------------------


def check_batch(images: torch.Tensor, name: str = "images") -> None:
    """Raise unless ``images`` is a floating-point tensor of shape (B, C, H, W)."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        described = f"{images.dtype} of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"{name} must be a floating-point tensor of shape (B, C, H, W); got {described}")


def check_positive(value: float, name: str) -> float:
    """Raise unless ``value`` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0; got {value!r}")
    return float(value)


def check_divides_image_size(images: torch.Tensor, size: int, name: str) -> None:
    """Raise unless ``size`` divides both the height and the width of ``images``."""
    if images.shape[-1] % size or images.shape[-2] % size:
        raise ValueError(f"{name} must divide the image size {tuple(images.shape[-2:])}; got {size}")


def check_downsample_arguments(images: torch.Tensor, factor: int) -> None:
    """Accept a (B, C, H, W) float batch and an int factor ≥ 2 dividing H and W."""
    check_batch(images)
    check_int_at_least(factor, "factor", 2)
    check_divides_image_size(images, factor, "factor")


def check_jpeg_arguments(images: torch.Tensor, quality_step: float, block: int) -> None:
    """Accept a (B, C, H, W) float batch, a quality_step > 0 and a block size dividing H and W."""
    check_batch(images)
    check_positive(quality_step, "quality_step")
    check_divides_image_size(images, block, "block")


def check_mask(mask: torch.Tensor, images: torch.Tensor) -> None:
    """Raise unless ``mask`` is a float 0/1 tensor of shape (B or 1, 1, H, W) matching ``images``."""
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point():
        raise TypeError(f"mask must be a floating-point tensor of 0s and 1s (1 = known); got {mask!r:.60}")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, images.shape[0]) \
            or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask must have shape (B or 1, 1, H, W) = ({images.shape[0]} or 1, 1, "
                         f"{images.shape[-2]}, {images.shape[-1]}); got {tuple(mask.shape)}")
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must hold only 0 (unknown: to generate) and 1 (known: kept)")


@contextmanager
def mask_file_errors(path) -> Iterator[None]:
    """Turn a failure to read the mask file ``path`` into a ValueError that names the file."""
    try:
        yield
    except FileNotFoundError:
        raise ValueError(f"mask file {path} does not exist") from None
    except OSError as error:  # PIL's UnidentifiedImageError is an OSError too
        raise ValueError(f"mask file {path} is not a readable image: {error}") from None


# ---------------------------------------------------------------------------
# latent.py (Phase 6)
# ---------------------------------------------------------------------------


def check_nonnegative(value: float, name: str) -> float:
    """Raise unless ``value`` is a finite number ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number ≥ 0; got {value!r}")
    return float(value)


def check_autoencoder_config(image_channels: int, latent_channels: int, channels: tuple[int, ...], groups: int) -> None:
    """Raise a clear error for an autoencoder configuration that cannot be built (provided)."""
    check_positive_int(image_channels, "image_channels")
    check_positive_int(latent_channels, "latent_channels")
    if not channels:
        raise ValueError("channels must name at least one level's width, e.g. (32, 64, 64)")
    for width in channels:
        check_positive_int(width, "every entry of channels")
        check_groups(groups, width, "every entry of channels")


def check_moments(moments: torch.Tensor) -> None:
    """Raise unless ``moments`` is a float (B, 2·C, h, w) tensor (an even number of channels)."""
    check_batch(moments, "moments")
    if moments.shape[1] % 2:
        raise ValueError(f"moments must have an even number of channels (the mean, then the log-variance); "
                         f"got shape {tuple(moments.shape)}")


def check_latent_statistics(latents: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> None:
    """Raise unless latents are (B, C, h, w) and shift and scale are () or (C, 1, 1) tensors, scale > 0."""
    check_batch(latents, "latents")
    for name, value in (("shift", shift), ("scale", scale)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape () or (C, 1, 1); got {type(value).__name__}")
        if tuple(value.shape) not in ((), (latents.shape[1], 1, 1)):
            raise ValueError(f"{name} must have shape () or ({latents.shape[1]}, 1, 1) for latents of shape "
                             f"{tuple(latents.shape)}; got {tuple(value.shape)}")
    if not bool((scale > 0).all()):
        raise ValueError("scale must be > 0 (it is 1 / the latents' standard deviation)")


# ---------------------------------------------------------------------------
# text.py (Phase 7)
# ---------------------------------------------------------------------------


def check_tokens(tokens: torch.Tensor, max_length: int | None = None, *, batch: int | None = None,
                 vocab_size: int | None = None) -> None:
    """Raise unless ``tokens`` is an int64 (B, L) tensor (L ≤ max_length, ids < vocab_size, B = batch if given)."""
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.int64 or tokens.ndim != 2:
        described = f"{tokens.dtype} of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) \
            else type(tokens).__name__
        raise TypeError(f"tokens must be an int64 tensor of shape (B, L), one row of token ids per caption; "
                        f"got {described}")
    if max_length is not None and tokens.shape[1] > max_length:
        raise ValueError(f"tokens must have at most max_length={max_length} columns; got shape {tuple(tokens.shape)}")
    if batch is not None and tokens.shape[0] != batch:
        raise ValueError(f"tokens must have one row per image ({batch}); got shape {tuple(tokens.shape)}")
    if vocab_size is not None and tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"tokens must be ids in [0, {vocab_size}) (the vocabulary's size); got values from "
                         f"{int(tokens.min())} to {int(tokens.max())}")


def check_keep_mask(keep: torch.Tensor, sequence: torch.Tensor | None = None) -> None:
    """Raise unless ``keep`` is a bool (B, L) tensor with a True in every row (matching (B, L, …) ``sequence``)."""
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or keep.ndim != 2:
        described = f"{keep.dtype} of shape {tuple(keep.shape)}" if isinstance(keep, torch.Tensor) \
            else type(keep).__name__
        raise TypeError(f"keep must be a bool tensor of shape (B, L), True = the token takes part; got {described}")
    if sequence is not None and tuple(sequence.shape[:2]) != tuple(keep.shape):
        raise ValueError(f"keep must have the shape (B, L) of the sequence's first two axes "
                         f"{tuple(sequence.shape[:2])}; got {tuple(keep.shape)}")
    if keep.numel() and not bool(keep.any(dim=1).all()):
        raise ValueError("keep must have at least one True per row: a caption always keeps <bos> and <eos> "
                         "(an all-padding row would leave attention nothing to attend to)")


def check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None) -> None:
    """Raise unless q (B, h, N, d), k (B, h, L, d), v (B, h, L, d_v) agree, and keep is None or (B, L)."""
    for name, value in (("q", q), ("k", k), ("v", v)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.ndim != 4:
            raise TypeError(f"{name} must be a floating-point tensor of shape (B, heads, n, d)")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q (B, heads, N, d), k (B, heads, L, d) and v (B, heads, L, d_v) must agree; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}")
    if keep is not None:
        check_keep_mask(keep)
        if tuple(keep.shape) != (k.shape[0], k.shape[2]):
            raise ValueError(f"keep must have shape (B, L) = {(k.shape[0], k.shape[2])} for keys of shape "
                             f"{tuple(k.shape)}; got {tuple(keep.shape)}")


def check_caption_dropout_arguments(tokens: torch.Tensor, p_uncond: float, empty_tokens: torch.Tensor) -> None:
    """Accept (B, L) int64 tokens, p_uncond in [0, 1] and (L,) int64 empty_tokens."""
    check_unit_interval(p_uncond, "p_uncond")
    check_tokens(tokens)
    if not isinstance(empty_tokens, torch.Tensor) or empty_tokens.dtype != torch.int64 \
            or tuple(empty_tokens.shape) != (tokens.shape[1],):
        described = f"{empty_tokens.dtype} of shape {tuple(empty_tokens.shape)}" \
            if isinstance(empty_tokens, torch.Tensor) else type(empty_tokens).__name__
        raise ValueError(f"empty_tokens must be an int64 tensor of shape (L,) = ({tokens.shape[1]},), the empty "
                         f"caption's tokens; got {described}")


def check_text_model_arguments(**arguments) -> None:
    """Raise a clear error for a text encoder, spatial transformer or TextUNet that cannot be built."""
    for name in ("vocab_size", "max_length", "channels", "context_dim", "heads"):
        if name in arguments:
            check_positive_int(arguments[name], name)
    if "channels" in arguments:
        check_groups(arguments.get("groups", 1), arguments["channels"])
        if arguments["channels"] % arguments["heads"]:
            raise ValueError(f"heads={arguments['heads']} must divide channels={arguments['channels']}: each "
                             "head gets channels / heads")
    if "empty_tokens" in arguments:
        empty = list(arguments["empty_tokens"])
        if len(empty) != arguments["max_length"] or any(not isinstance(i, int) for i in empty):
            raise ValueError(f"empty_tokens must be the empty caption's {arguments['max_length']} token ids "
                             f"(max_length); got {empty!r}")
        if all(i == arguments["pad_id"] for i in empty):
            raise ValueError("empty_tokens must keep at least one token other than <pad> (<bos>, <eos>): an "
                             "all-padding caption leaves cross-attention nothing to attend to")
    if arguments.get("unet_config", {}).get("num_classes"):
        raise ValueError("a TextUNet takes captions, not class labels: leave num_classes out")
