"""The names and defaults the commands accept, defined once (provided).

The exercise files import these tuples too, so a name the command line accepts is
always a name your code handles. Keep them in step with the dictionaries built from
them (``noise_schedule.SCHEDULES``, ``degradations.TASKS``): a repository test checks it.
"""

from __future__ import annotations

#: Phase 1: the noise schedules of ``noise_schedule.SCHEDULES`` (--schedule).
SCHEDULE_NAMES = ("linear", "scaled_linear", "quadratic", "cosine", "sigmoid", "karras")
#: Phase 1/3/4: what the network predicts: the noise ε, the clean image x_0, or the velocity v.
PREDICTION_TYPES = ("eps", "x0", "v")
#: Phase 3: the per-element losses of ``train.diffusion_loss`` (--loss).
LOSS_TYPES = ("l2", "l1", "huber")
#: Phase 4: "fixed small" β̃ (the posterior's) or "fixed large" β (DDPM §3.2).
VARIANCES = ("small", "large")
#: Phase 4: how ``diffusion.inference_timesteps`` spreads N steps over the T timesteps.
SPACINGS = ("leading", "trailing", "linspace")
#: Phase 4: the samplers of ``python sample.py --sampler``.
SAMPLERS = ("ddpm", "ddim")
#: Phase 4: DDIM's number of steps when --steps is not given (T if T is smaller).
DEFAULT_DDIM_STEPS = 50
#: Phase 5: the guidance scale w when none is given (1: plain conditional, 0: unconditional).
DEFAULT_GUIDANCE_SCALE = 3.0
#: Phase 5: the enhancement tasks of ``degradations.TASKS`` (--task).
TASK_NAMES = ("denoise", "deblur", "superres", "jpeg", "mask")
#: Phase 5: the inpainting masks that need no file (--mask).
MASK_PRESETS = ("left", "center", "strokes")
#: Phase 2: the default U-Net (IMPLEMENTATION_GUIDE.md §2.8 explains its shape).
DEFAULT_UNET_CONFIG = dict(
    in_channels=1, base_channels=16, channel_mults=(1, 2, 4), num_res_blocks=1,
    attention_levels=(2,), num_heads=4, dropout=0.0, groups=8,
)
#: Phase 6: the reconstruction losses of ``latent.autoencoder_loss`` (--reconstruction).
RECONSTRUCTION_LOSSES = ("l1", "l2")
#: Phase 6: the default autoencoder: 32×32 images → 4×8×8 latents (IMPLEMENTATION_GUIDE.md §6.2).
DEFAULT_AUTOENCODER_CONFIG = dict(image_channels=1, latent_channels=4, channels=(16, 32, 64), groups=8)
#: Phase 6: β of the autoencoder's loss, per element (IMPLEMENTATION_GUIDE.md §6.3; --kl-weight).
DEFAULT_KL_WEIGHT = 1e-4
#: Phase 7: the text encoder and the spatial transformers of a TextUNet (IMPLEMENTATION_GUIDE.md §7.4, §7.7).
DEFAULT_TEXT_CONFIG = dict(text_dim=64, text_heads=4, text_layers=2, cross_heads=4)
