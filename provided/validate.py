"""The input checks that the exercise functions start with (provided).

Each exercise function in your files calls one of these on its arguments before
the TODO, so that a wrong shape, dtype or range fails at once with a message
naming the argument, instead of somewhere deep inside your code. Nothing here is
graded.
"""

from __future__ import annotations

import torch


SIGNED_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8)



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



def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming ``name`` (provided)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value



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



def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is a whole number ≥ ``minimum``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int ≥ {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value}")
    return value



def check_groups(groups: int, channels: int, name: str = "channels") -> None:
    """Raise unless GroupNorm's ``groups`` divides ``channels`` (GroupNorm needs whole groups)."""
    check_positive_int(groups, "groups")
    if channels % groups:
        raise ValueError(
            f"groups={groups} must divide {name} ({channels}): GroupNorm splits the channels "
            f"into equal groups. Pick groups among the divisors of {channels}, or change the channels."
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
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    if num_classes is not None and num_classes != 0:
        check_positive_int(num_classes, "num_classes")
    if isinstance(cond_channels, bool) or not isinstance(cond_channels, int) or cond_channels < 0:
        raise ValueError(f"cond_channels must be an int ≥ 0 (0: no condition image), got {cond_channels!r}")



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

