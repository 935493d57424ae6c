"""§3.5 · The training loop and the ``python train.py`` command (provided: nothing to fill in here).

``python train.py`` runs :func:`main` below. It follows DDPM's Algorithm 1 with the
usual modern additions: AdamW, learning-rate warm-up then cosine decay, gradient
clipping, gradient accumulation, mixed precision on CUDA, an EMA of the weights, and
checkpoints that resume exactly (same weights, bit for bit, on the CPU).

Your Phase 3 functions live in train.py; this loop calls them (or the reference's,
with --impl solutions) through the module chosen at run time. With --class-conditional
(Phase 5) it also trains on the dataset's labels, dropping each to the null label with
probability --p-uncond (your ``drop_labels``), for classifier-free guidance. With
--task (Phase 5) it trains an image-conditioned U-Net to undo a degradation: each batch
becomes a pair (x_0, y) with your ``degradations.condition_pair``, and the U-Net sees y
concatenated to x_t on the channels (through :class:`ImageConditioned`). With --captions
(Phase 7) it trains a text-conditioned U-Net (your ``text.TextUNet``) on the embedded digits'
true captions (:mod:`provided.captions`), the held-out combinations left out, dropping each
caption to the empty one with probability --p-uncond (your ``text.drop_captions``); with
--autoencoder too, that is a small Stable Diffusion.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from utils import DEVICES, IMPLEMENTATIONS, import_impl, pick_device, resolve_impl, seed_everything

from .choices import (
    DEFAULT_AUTOENCODER_CONFIG, DEFAULT_GUIDANCE_SCALE, DEFAULT_KL_WEIGHT, DEFAULT_TEXT_CONFIG, DEFAULT_UNET_CONFIG,
    LOSS_TYPES, PREDICTION_TYPES, RECONSTRUCTION_LOSSES, SCHEDULE_NAMES, TASK_NAMES,
)
from . import cli
from .cli import (
    IMPL_HELP, SEED_WHY, THREADS_HELP, CommandError, apply_threads, check_writable, flag, float_in, int_at_least,
    int_list, one_line, run_command, setting_problem,
)
from .conditioning import ImageConditioned, guidance_inputs, text_guidance, triplet_rows
from .files import (
    CHECKPOINT_FORMAT, CHECKPOINT_VERSION, UnreadableFile, atomic_write, exclusive_lock, load_weights, read_torch_file,
    save_checkpoint, save_grid, sweep_temporaries, weights_problem, write_json,
)
from .image_data import DATASETS, MIN_IMAGE_SIZE
from .latent_space import DEFAULT_STATISTICS_IMAGES, LatentError, LatentSpace, load_autoencoder, measure_statistics, \
    reconstruction_rows
from .phases import CODE_NAMES

#: The settings ``python train.py`` uses without flags: those of ``make demo``, about 4–5 minutes
#: on two CPU cores for recognisable digits (README.md, "Training").
DEFAULT_STEPS = 1200
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 2e-3
DEFAULT_WARMUP_STEPS = 100
DEFAULT_SCHEDULE = "cosine"
#: v rather than ε by default: with the cosine schedule ᾱ_{T−1} ≈ 2e-9, so the x̂_0 that an
#: ε-prediction implies at the noisiest steps, (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, magnifies every
#: error ~10⁴ times (clipped, it draws blobs); v stays well-behaved at every t (Salimans & Ho 2022).
DEFAULT_PREDICTION = "v"
#: The cosine decay ends at this fraction of the peak learning rate (not 0: the last
#: steps still learn, and a run extended with --resume does not restart from nothing).
MIN_LR_RATIO = 0.1
#: Gradients are rescaled so that their global L2 norm is at most this.
GRAD_CLIP_NORM = 1.0
AMP_CHOICES = ("auto", "bf16", "fp16", "none")
#: Settings a --resume may change: how the run is carried out, not what it trains.
RESUMABLE_SETTINGS = (
    "steps", "epochs", "time_limit", "sample_every", "sample_steps", "num_samples",
    "checkpoint_every", "save_every", "device", "amp", "channels_last", "compile", "num_workers",
    "data_dir", "download", "impl", "sample_guidance", "threads",
)
#: The model-size flags and the UNet argument each sets.
MODEL_FLAGS = ("base_channels", "channel_mults", "num_res_blocks", "attention_levels", "num_heads", "dropout")
LOSS_CSV_FIELDS = ("step", "loss", "lr", "images_per_s")
#: Settings that checkpoints of older versions may lack (read with their defaults); a resumed run
#: needs every other setting of its checkpoint.
LATER_SETTINGS = ("class_conditional", "p_uncond", "sample_guidance", "task", "save_every", "threads",
                  "train_autoencoder", "autoencoder", "kl_weight", "reconstruction", "ae_channels", "latent_channels",
                  "statistics_images", "captions", "text_dim", "text_layers")
#: What sample.py and evaluate.py need from a checkpoint, and from the settings saved in it.
SAMPLING_KEYS = ("config", "model_config", "model", "ema")
SAMPLING_SETTINGS = ("schedule", "timesteps", "prediction", "image_size")
#: What a resumed run needs besides, and the counters among them (whole numbers ≥ 0).
RESUME_KEYS = SAMPLING_KEYS + ("step", "epoch", "batch_in_epoch", "optimizer", "scheduler", "rng")
COUNTERS = ("step", "epoch", "batch_in_epoch")
#: The file in --out that a run holds locked (fcntl.flock) while it runs: a second train.py is refused.
LOCK_NAME = ".train.lock"
#: Phase 5: the usual probability of training a batch image without its label (Ho & Salimans 2022).
DEFAULT_P_UNCOND = 0.1
#: Phase 7: the datasets that have true captions (provided/captions.py).
CAPTIONED_DATASETS = ("digits", "digits-rgb")
#: Phase 7: the text-encoder flags and the TextUNet argument each sets (the rest of DEFAULT_TEXT_CONFIG is fixed).
TEXT_FLAGS = ("text_dim", "text_layers")


class TrainError(CommandError):
    """A problem that stops a run, reported as one line (``train.py: error: …``), exit status 1."""


HELP_DESCRIPTION = """\
Train the denoiser (DDPM, Ho et al. 2020, Algorithm 1) and sample from its EMA weights with DDIM.

Writes into --out: config.json (every setting and the model's), last.pt (the
checkpoint, replaced atomically), step_NNNNNN.pt (with --checkpoint-every),
samples/step_NNNNNN.png (grids, with --sample-every), loss.csv (step, loss, lr,
images_per_s), loss.png (the loss curve) and, at the end, samples.png.
Ctrl-C (or SIGTERM) stops after the current step and saves last.pt; --resume continues.
Only one train.py at a time may use an --out (it holds the file .train.lock there).

With --train-autoencoder (Phase 6) it trains the autoencoder of latent.py instead, and its
grids show originals above their reconstructions; with --autoencoder CHECKPOINT it trains
the U-Net on the scaled latents of that (frozen) autoencoder and decodes its samples.
The model is unconditional unless --class-conditional (Phase 5) is given: then it
learns the dataset's classes, and its sample grids show one class per column. With
--captions (Phase 7) it learns the digits' captions instead (the held-out combinations
left out); its grids show fixed prompts, one digit per column (config.json lists them).
With --task (Phase 5) it learns to restore degraded images instead: its grids show,
for the first --num-samples training images, three rows per group of up to
8 images: degraded, restored, original."""

HELP_EPILOG = """\
examples:
  python train.py                                   # the embedded digits, CPU-sized defaults
  python train.py --dataset mnist --epochs 50 --batch-size 128 --download --out runs/mnist
  python train.py --resume --out runs/mnist         # continue where it stopped
  python train.py --impl solutions --time-limit 5   # the reference, for at most 5 minutes
  python train.py --class-conditional --out runs/digits-cfg   # Phase 5: for guided sampling
  python train.py --task deblur --out runs/digits-deblur      # Phase 5: an image-conditioned restorer
  python train.py --train-autoencoder --out runs/ae           # Phase 6: the autoencoder (32×32 → 4×8×8)
  python train.py --autoencoder runs/ae/last.pt --class-conditional --out runs/latent  # Phase 6: diffusion on its latents
  python train.py --captions --out runs/digits-text              # Phase 7: text-to-image on the digits' captions
  python train.py --autoencoder runs/ae/last.pt --captions --out runs/latent-text  # Phase 7: small Stable Diffusion"""


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The command line. With ``suppress_defaults`` only the flags given appear in the result."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    def add(group, *flags, default=None, **kwargs):
        kwargs["default"] = argparse.SUPPRESS if suppress_defaults else default
        group.add_argument(*flags, **kwargs)

    model_defaults = dict(DEFAULT_UNET_CONFIG)

    def model_default(key: str, text=None) -> str:
        if key not in model_defaults:
            return "default: DEFAULT_CONFIG in unet.py"
        value = model_defaults[key]
        shown = text(value) if text else value
        return f"default: {shown}, from DEFAULT_CONFIG in unet.py"

    def joined(values) -> str:
        return ",".join(str(v) for v in values) if values else "none"

    data = parser.add_argument_group("data")
    add(data, "--dataset", default="digits", choices=tuple(DATASETS), metavar="NAME",
        help="what to train on: %(choices)s (default: %(default)s, the embedded digits, no download)")
    add(data, "--data-dir", default="data", metavar="DIR", help="where datasets are stored (default: %(default)s)")
    add(data, "--download", default=False, action="store_true",
        help="download the dataset into --data-dir if it is not there (MNIST, Fashion-MNIST, CIFAR-10)")
    add(data, "--image-size", default=None, type=int_at_least(MIN_IMAGE_SIZE, cli.MAX_IMAGE_SIZE), metavar="PX",
        help="resize images to PX×PX (default: the dataset's own size); must be divisible by "
        "2^(levels − 1) of the U-Net")
    add(data, "--num-images", default=None, type=int_at_least(1, cli.MAX_TRAIN_IMAGES), metavar="N",
        help="use only N images (quick runs; default: all)")

    diffusion = parser.add_argument_group("diffusion")
    add(diffusion, "--timesteps", default=1000, type=int_at_least(2, cli.MAX_TIMESTEPS), metavar="T",
        help="T, the number of diffusion steps (default: %(default)s)")
    add(diffusion, "--schedule", default=DEFAULT_SCHEDULE, choices=SCHEDULE_NAMES, metavar="NAME",
        help="noise schedule: %(choices)s (default: %(default)s)")
    add(diffusion, "--prediction", default=DEFAULT_PREDICTION, choices=PREDICTION_TYPES,
        help="what the network outputs: the noise ε, the clean image x_0 or v = √ᾱ ε − √(1 − ᾱ) x_0 "
        "(default: %(default)s, which samples best with the cosine schedule)")
    add(diffusion, "--loss", default="l2", choices=LOSS_TYPES, help="per-pixel loss (default: %(default)s)")
    add(diffusion, "--snr-gamma", default=None, type=float_in(0.0), metavar="GAMMA",
        help="weight the loss with Min-SNR-γ (Hang et al. 2023; 5 is usual); default: no weighting")

    optim = parser.add_argument_group("optimisation")
    length = optim.add_mutually_exclusive_group()
    add(length, "--steps", default=None, type=int_at_least(1, cli.MAX_STEPS), metavar="N",
        help=f"optimizer steps to train (default: {DEFAULT_STEPS}); not with --epochs")
    add(length, "--epochs", default=None, type=float_in(0.0), metavar="E",
        help=f"train for E passes over the dataset instead (may be fractional; at most {cli.MAX_STEPS} "
        "optimizer steps in all); not with --steps")
    add(optim, "--batch-size", default=DEFAULT_BATCH_SIZE, type=int_at_least(1, cli.MAX_BATCH_SIZE), metavar="B",
        help="images per forward pass (default: %(default)s); a step sees B × --grad-accum images")
    add(optim, "--grad-accum", default=1, type=int_at_least(1, cli.MAX_GRAD_ACCUM), metavar="K",
        help="accumulate the gradients of K batches per optimizer step (default: %(default)s)")
    add(optim, "--lr", default=DEFAULT_LR, type=float_in(0.0), metavar="LR",
        help="peak learning rate of AdamW (default: %(default)g); warm-up to it, then cosine decay "
        f"to {MIN_LR_RATIO:g} × LR at the last step")
    add(optim, "--warmup-steps", default=DEFAULT_WARMUP_STEPS, type=int_at_least(0, cli.MAX_STEPS), metavar="N",
        help="linear learning-rate warm-up (default: %(default)s)")
    add(optim, "--weight-decay", default=0.0, type=float_in(0.0, low_open=False), metavar="WD",
        help="AdamW's decoupled weight decay (default: %(default)g, as in DDPM)")
    add(optim, "--ema-decay", default=0.999, type=float_in(0.0, 1.0, low_open=False), metavar="D",
        help="the EMA's decay, reached after a warm-up min(D, (1 + step) / (10 + step)) "
        "(default: %(default)g)")

    model = parser.add_argument_group("model (the U-Net; unconditional until Phase 5)")
    add(model, "--base-channels", type=int_at_least(1, cli.MAX_BASE_CHANNELS), metavar="C",
        help=f"width of the first level ({model_default('base_channels')})")
    add(model, "--channel-mults", type=int_list(allow_empty=False), metavar="M1,M2,…",
        help=f"width multipliers, one level each ({model_default('channel_mults', joined)})")
    add(model, "--num-res-blocks", type=int_at_least(1, cli.MAX_RES_BLOCKS), metavar="N",
        help=f"residual blocks per level ({model_default('num_res_blocks')})")
    add(model, "--attention-levels", type=int_list(allow_empty=True), metavar="L1,…",
        help=f"levels with self-attention, '' for none ({model_default('attention_levels', joined)})")
    add(model, "--num-heads", type=int_at_least(1, cli.MAX_HEADS), metavar="H",
        help=f"attention heads ({model_default('num_heads')})")
    add(model, "--dropout", type=float_in(0.0, 1.0, low_open=False), metavar="P",
        help=f"dropout in the residual blocks ({model_default('dropout')})")

    conditioning = parser.add_argument_group(
        "class conditioning (Phase 5; off by default: Phases 3–4 train the unconditional model)"
    )
    add(conditioning, "--class-conditional", default=False, action="store_true",
        help="give the U-Net the dataset's class labels (a K + 1-row class embedding, row K the null "
        "label), for classifier-free guidance; needs a labelled dataset (not an unlabelled folder)")
    add(conditioning, "--p-uncond", default=DEFAULT_P_UNCOND,
        type=float_in(0.0, 1.0, low_open=False, high_open=False), metavar="P",
        help="with --class-conditional: the probability that an image is trained with the null label "
        "instead of its own (drop_labels; with --captions: with the empty caption, drop_captions; "
        "default: %(default)g). Each batch first draws its dropout "
        "from the training generator, then training_step draws its t and noise")
    add(conditioning, "--sample-guidance", default=DEFAULT_GUIDANCE_SCALE, type=float_in(0.0, low_open=False),
        metavar="W", help="with --class-conditional (or --captions): the guidance scale w of the sample grids, "
        "whose column j shows class (digit) j (default: %(default)g; 1 = plain conditional, 0 = unconditional)")

    text = parser.add_argument_group("text conditioning (Phase 7; off by default)")
    add(text, "--captions", default=False, action="store_true",
        help="train a text-conditioned U-Net (text.TextUNet) on the true captions of --dataset "
        f"{' or '.join(CAPTIONED_DATASETS)} (provided/captions.py), without the images of the held-out "
        "combinations (captions.HELD_OUT); each caption is dropped to the empty one with probability "
        "--p-uncond (text.drop_captions, drawn from the training generator before training_step's t and "
        "noise). Works with --autoencoder (latent space); not with --class-conditional, --task or "
        "--train-autoencoder")
    add(text, "--text-dim", type=int_at_least(1, 1024), metavar="D",
        help=f"with --captions: the width of the text encoder's vectors (default: {DEFAULT_TEXT_CONFIG['text_dim']}, "
        "from DEFAULT_TEXT_CONFIG in provided/choices.py); text_heads must divide it")
    add(text, "--text-layers", type=int_at_least(1, 16), metavar="N",
        help=f"with --captions: the text encoder's transformer layers (default: {DEFAULT_TEXT_CONFIG['text_layers']})")

    enhancement = parser.add_argument_group(
        "image conditioning (Phase 5; off by default: the model generates images from noise alone)"
    )
    add(enhancement, "--task", default=None, choices=TASK_NAMES, metavar="NAME",
        help="train a U-Net that restores degraded images instead: %(choices)s (degradations.TASKS). "
        "The U-Net gets cond_channels = the image channels, and each batch becomes (x_0, y) = "
        "condition_pair(images, task, generator); from the training generator a batch draws first "
        "the degradation's noise (denoise only), then training_step's t and noise. Not with "
        "--class-conditional")

    latent = parser.add_argument_group("latent diffusion (Phase 6; off by default: the U-Net works on pixels)")
    add(latent, "--train-autoencoder", default=False, action="store_true",
        help="train the autoencoder of latent.py (§6.2–§6.3) instead of a diffusion model; the images are "
        "resized to a multiple of 4 × 2^(levels − 1) (32×32 for the digits), so that the default U-Net can "
        "then diffuse the latents. Not with --class-conditional, --task, --captions or --autoencoder")
    add(latent, "--autoencoder", default=None, metavar="CHECKPOINT",
        help="train the U-Net on the latents of this autoencoder (a last.pt of --train-autoencoder), frozen: "
        "their shift and scale are measured first (latent_statistics of --statistics-images posterior "
        "samples) and saved in the checkpoint with the autoencoder's weights. Not with --task")
    add(latent, "--kl-weight", default=DEFAULT_KL_WEIGHT, type=float_in(0.0, low_open=False), metavar="BETA",
        help="with --train-autoencoder: β of autoencoder_loss, per element (default: %(default)g)")
    add(latent, "--reconstruction", default="l1", choices=RECONSTRUCTION_LOSSES,
        help="with --train-autoencoder: the reconstruction loss (default: %(default)s)")
    add(latent, "--ae-channels", default=list(DEFAULT_AUTOENCODER_CONFIG["channels"]), type=int_list(allow_empty=False),
        metavar="C1,C2,…", help="with --train-autoencoder: the width of each level; L levels make latents "
        "2^(L − 1) times smaller (default: %(default)s)")
    add(latent, "--latent-channels", default=DEFAULT_AUTOENCODER_CONFIG["latent_channels"],
        type=int_at_least(1, 64), metavar="C", help="with --train-autoencoder: the latents' channels "
        "(default: %(default)s)")
    add(latent, "--statistics-images", default=DEFAULT_STATISTICS_IMAGES, type=int_at_least(2, cli.MAX_TRAIN_IMAGES),
        metavar="N", help="with --autoencoder: how many training images give the latents' shift and scale "
        "(default: %(default)s)")

    speed = parser.add_argument_group("device and speed")
    add(speed, "--device", default="auto", choices=DEVICES,
        help="auto: CUDA, then Apple's MPS, then the CPU (default: %(default)s)")
    add(speed, "--amp", default="auto", choices=AMP_CHOICES,
        help="mixed precision, CUDA only: auto = bf16 where supported, else fp16 (with a "
        "GradScaler); ignored on the CPU and MPS (default: %(default)s)")
    add(speed, "--channels-last", default=False, action="store_true",
        help="channels-last memory layout (any device; about 10%% faster on CPUs and GPUs)")
    add(speed, "--compile", default=False, action="store_true",
        help="torch.compile the model (CUDA only; ignored elsewhere)")
    add(speed, "--threads", default=None, type=int_at_least(1, cli.MAX_THREADS), metavar="N", help=THREADS_HELP)
    add(speed, "--num-workers", default=0, type=int_at_least(0, cli.MAX_WORKERS), metavar="N",
        help="DataLoader worker processes (default: %(default)s; exact resume needs 0 when the "
        "dataset augments at random)")

    output = parser.add_argument_group("output")
    add(output, "--out", default=None, metavar="DIR",
        help="the run's folder (default: runs/DATASET)")
    add(output, "--sample-every", default=500, type=int_at_least(0), metavar="N",
        help="every N steps write samples/step_NNNNNN.png from the EMA weights, 0 = never "
        "(default: %(default)s)")
    add(output, "--sample-steps", default=50, type=int_at_least(1, cli.MAX_TIMESTEPS), metavar="N",
        help="DDIM steps per sample grid (default: %(default)s)")
    add(output, "--num-samples", default=64, type=int_at_least(1, cli.MAX_GRID_IMAGES), metavar="N",
        help="images per sample grid (default: %(default)s)")
    add(output, "--checkpoint-every", default=0, type=int_at_least(0), metavar="N",
        help="every N steps keep step_NNNNNN.pt besides last.pt, 0 = never (default: %(default)s)")
    add(output, "--save-every", default=100, type=int_at_least(0), metavar="N",
        help="refresh last.pt every N steps, so a crash loses at most N steps; 0 = only at the end "
        "and on Ctrl-C (default: %(default)s)")

    run = parser.add_argument_group("run")
    add(run, "--resume", default=False, action="store_true",
        help="continue the run in --out from its last.pt with its own settings; only --steps or "
        "--epochs, --time-limit, the output, device and speed flags, --data-dir, --download, --impl and "
        "--sample-guidance may change")
    add(run, "--overwrite", default=False, action="store_true",
        help="start afresh even if --out already holds a run (its checkpoints, grids and log are replaced)")
    add(run, "--time-limit", default=None, type=float_in(0.0, low_open=False), metavar="MIN",
        help="stop cleanly (saving, sampling) after MIN minutes of training in this session; 0 = no limit "
        "(a resumed run keeps its saved limit: --resume --time-limit 0 clears it)")
    add(run, "--seed", default=0, type=int_at_least(0, cli.MAX_SEED, SEED_WHY), metavar="S",
        help="seed of the weights, the data order and the noise (default: %(default)s)")
    add(run, "--impl", default=None, choices=IMPLEMENTATIONS,
        help=IMPL_HELP)
    return cli.document_bounds(parser)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, set[str], argparse.ArgumentParser]:
    """The parsed flags, the names of those given explicitly, and the parser (for its errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = set(vars(build_parser(suppress_defaults=True).parse_args(argv)))
    try:
        args.impl = resolve_impl(args.impl)
    except ValueError as error:
        parser.error(str(error))
    if args.out is None:
        args.out = str(Path("runs") / args.dataset)
    return args, given, parser


# ---------------------------------------------------------------------------
# Pieces of the loop
# ---------------------------------------------------------------------------


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = MIN_LR_RATIO):
    """The learning-rate factor of optimizer step s (0-based), for ``torch.optim.lr_scheduler.LambdaLR``.

    Linear warm-up (s + 1) / warmup over the first ``warmup_steps`` steps, then a cosine
    from 1 down to ``min_ratio`` at the last step. A plain function (not an object),
    so that LambdaLR's state_dict leaves it out and a resumed run rebuilds it.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps - 1)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of the dataset in ``epoch``: a permutation seeded by (seed, epoch) only."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randperm(size, generator=generator)


class EpochSampler(torch.utils.data.Sampler):
    """The indices of one epoch, from batch ``start_batch`` on (whole batches only).

    The order depends on (seed, epoch) alone, so a resumed run skips the batches it
    already used without loading them, and then sees exactly what the uninterrupted
    run would have seen.
    """

    def __init__(self, size: int, batch_size: int, seed: int, epoch: int, start_batch: int = 0) -> None:
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return (self.size // self.batch_size - self.start_batch) * self.batch_size

    def __iter__(self):
        order = epoch_order(self.size, self.seed, self.epoch)
        end = (self.size // self.batch_size) * self.batch_size  # drop the last partial batch
        return iter(order[self.start_batch * self.batch_size : end].tolist())


def batches(dataset, config: dict, device: torch.device, epoch: int, start_batch: int):
    """Yield (epoch, index of the next batch in that epoch, images, labels) for ever, epoch after epoch.

    The labels, (B,) int64, are used by --class-conditional runs only (Phase 5).

    One DataLoader per epoch over an :class:`EpochSampler`. With num_workers = 0
    (the default) the images are loaded in this process, in order, so any random
    augmentation draws from torch's global generator, whose state the checkpoints keep.
    """
    batch_size = config["batch_size"]
    per_epoch = len(dataset) // batch_size
    while True:
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochSampler(len(dataset), batch_size, config["seed"], epoch, start_batch),
            drop_last=True,
            num_workers=config["num_workers"],
            pin_memory=device.type == "cuda",
            # Its own generator: the loader draws a base seed per epoch, and that draw must not
            # touch torch's global generator (a resumed run would otherwise drift by one draw).
            generator=torch.Generator().manual_seed(config["seed"] + epoch),
        )
        index = start_batch
        for images, labels in loader:
            index += 1
            yield (epoch, index, images, labels) if index < per_epoch else (epoch + 1, 0, images, labels)
        epoch, start_batch = epoch + 1, 0


def capture_rng(generator: torch.Generator, device: torch.device) -> dict:
    """Every random state the run depends on, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }


def restore_rng(state: dict, generator: torch.Generator, device: torch.device) -> None:
    """Put back the random states saved by :func:`capture_rng`."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )


def checkpoint_problem(state: object, path: Path, keys: tuple[str, ...], settings: tuple[str, ...]) -> str | None:
    """What makes ``state``, read from the checkpoint ``path``, unusable, in one line; None if nothing.

    Checked: the format; the ``keys`` it must hold and the ``settings`` its config must hold;
    every saved setting against the rule of its own train.py flag (type, bounds, choices; those
    of :data:`SAMPLING_SETTINGS` may not be None); the weights (dicts of tensors) and the
    counters. The message blames the file, never a flag.
    """
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return f"{path} is not a train.py checkpoint (it has no format field {CHECKPOINT_FORMAT!r})"
    config = state.get("config")
    missing = [key for key in keys if key not in state]
    missing += [f"config[{key!r}]" for key in settings if isinstance(config, dict) and key not in config]
    if missing:
        return f"the checkpoint {path} is incomplete: it lacks {', '.join(missing)}"
    if not isinstance(config, dict):
        return f"checkpoint {path}: its config is a {type(config).__name__}, expected a dict of train.py's settings"
    problem = setting_problem(build_parser(), config, required=SAMPLING_SETTINGS)
    if problem:
        return f"checkpoint {path}: its config's {problem}; the file is damaged or was edited"
    if "model_config" in state and not isinstance(state["model_config"], dict):
        return f"checkpoint {path}: its model_config is a {type(state['model_config']).__name__}, expected a dict"
    for key in ("model", "ema"):
        problem = weights_problem(state.get(key)) if key in state else None
        if problem:
            return f"checkpoint {path}: its {key} is {problem}"
    for key in COUNTERS:
        value = state.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"checkpoint {path}: its {key} is {value!r}, expected a whole number ≥ 0"
    return None


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by this command to resume it; raise TrainError naming the file if it cannot be used."""
    path = Path(path)
    try:
        state = read_torch_file(path)
    except UnreadableFile as error:
        raise TrainError(
            f"cannot read the checkpoint {path}: {error}. The file is damaged (an interrupted copy?) "
            "or was not written by train.py; restore it from a step_*.pt, or start again "
            "with --overwrite or another --out"
        ) from None
    settings = tuple(action.dest for action in build_parser()._actions if action.option_strings
                     and action.dest not in ("help", "resume", "overwrite", *LATER_SETTINGS))
    problem = checkpoint_problem(state, path, RESUME_KEYS, settings)
    if problem:
        raise TrainError(problem)
    return state


def first_images(dataset, count: int) -> torch.Tensor:
    """The first ``count`` images of ``dataset`` (N, C, H, W) in [0, 1], without random flips or draws."""
    flip = getattr(dataset, "flip", False)
    if flip:
        dataset.flip = False  # no augmentation: the same images every time, and no draw from torch's RNG
    try:
        return torch.stack([dataset[index][0] for index in range(min(count, len(dataset)))])
    finally:
        if flip:
            dataset.flip = flip


class GridSampler:
    """Draws sample grids from the EMA weights with the implementation's ``ddim_sample``.

    Falls back to the reference's (with a one-line note) while your Phase 4
    ``ddim_sample`` (or, for a class-conditional model, your Phase 5 guidance) is
    still a stub; every grid starts from the same x_T, so grids of successive steps
    can be compared image by image. A class-conditional model (``num_classes`` = K)
    draws image i of class i mod K with guidance scale --sample-guidance. An
    image-conditioned model (--task) restores ``condition``, (N, C, H, W) degraded images
    (the shape's N must be theirs).
    """

    def __init__(
        self, impl: str, config: dict, schedule, device: torch.device, shape: tuple[int, ...], note,
        num_classes: int | None = None, condition: torch.Tensor | None = None, space: LatentSpace | None = None,
        tokens: torch.Tensor | None = None, text_module: ModuleType | None = None,
    ) -> None:
        self.diffusion = import_impl("diffusion", impl)
        self.space = space  # Phase 6: sample latents of this shape (shape's C, H, W), unclipped, then decode
        self.config, self.schedule, self.device, self.shape, self.note = config, schedule, device, shape, note
        self.disabled = False
        self.conditioning = {}
        self.condition = None if condition is None else condition.to(device)
        if num_classes:
            labels = torch.arange(shape[0], device=device) % num_classes  # (N,): 0, 1, …, K − 1, 0, 1, …
            self.conditioning = guidance_inputs(labels, config["sample_guidance"], null_label=num_classes)
        self.tokens, self.text_module = (None, None) if tokens is None else (tokens.to(device), text_module)

    def __call__(self, model: nn.Module) -> torch.Tensor | None:
        """(N, C, H, W) samples in about [-1, 1], or None when no ddim_sample is available."""
        if self.disabled:
            return None
        network = model if self.condition is None else ImageConditioned(model, self.condition)
        conditioning = self.conditioning
        if self.tokens is not None:  # Phase 7: the prompts' tokens where class labels go, guided at --sample-guidance
            network, tokens = text_guidance(self.text_module, model, self.tokens, self.config["sample_guidance"])
            conditioning = {"class_labels": tokens}

        def draw(diffusion: ModuleType) -> torch.Tensor:
            images = diffusion.ddim_sample(
                network, self.schedule, self.shape,
                num_steps=min(self.config["sample_steps"], self.config["timesteps"]),
                eta=0.0, prediction=self.config["prediction"], clip_x0=self.space is None,
                generator=torch.Generator().manual_seed(self.config["seed"]),
                device=self.device, **conditioning,
            )
            return images if self.space is None else self.space.decode(images)

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                try:
                    return draw(self.diffusion)
                except NotImplementedError as error:
                    try:
                        reference = import_impl("diffusion", "solutions")
                    except ImportError:  # a copy without solutions/: no grids until Phase 4 is done
                        self.note(f"note: no sample grids: your sampling code is not written yet ({error})")
                        self.disabled = True
                        return None
                    if reference is self.diffusion:
                        raise
                    self.note(f"note: your sampling code is not written yet ({error}); the grids use the reference's")
                    self.diffusion = reference
                    return draw(self.diffusion)
        finally:
            model.train(was_training)


def read_loss_log(path: Path) -> list[dict]:
    """The rows of loss.csv as dicts of floats (step as int); [] if there is none."""
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = []
        for row in csv.DictReader(handle):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                rows.append({key: (int(row[key]) if key == "step" else float(row[key])) for key in LOSS_CSV_FIELDS})
        return rows


def plot_loss(rows: list[dict], path: Path, title: str) -> None:
    """loss.png: the loss per step (faint) and its moving average, on a log scale, with the learning rate."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = np.array([row["step"] for row in rows])
    losses = np.array([row["loss"] for row in rows])
    figure = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if len(rows):
        window = max(1, min(100, len(rows) // 20))
        smoothed = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="loss per step")
        axes.plot(steps[window - 1 :], smoothed, color="tab:blue", linewidth=1.8, label=f"mean of {window} steps")
        if (losses > 0).all():
            axes.set_yscale("log")
        rates = axes.twinx()
        rates.plot(steps, [row["lr"] for row in rows], color="tab:gray", linestyle="--", linewidth=1)
        rates.set_ylabel("learning rate", color="tab:gray")
        rates.tick_params(axis="y", colors="tab:gray")
        axes.legend(loc="upper right")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("training loss")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png"))


class StopOnInterrupt:
    """Turn the first Ctrl-C (SIGINT) or SIGTERM into a request to stop after the current step; a
    second one stops at once. ``signal`` is the number of the first, for the exit status 128 + it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, note) -> None:
        self.requested = False
        self.signal = None
        self.note = note
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.note(f"interrupted ({name}): finishing this step, then saving last.pt (a second {name} stops at once, "
                  "unsaved)")

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


# ---------------------------------------------------------------------------
# Setting up a run
# ---------------------------------------------------------------------------


def settings_from_args(args: argparse.Namespace) -> dict:
    """The run's settings as a JSON-friendly dict (flags, before anything is resolved)."""
    config = {key: value for key, value in vars(args).items() if key not in ("resume", "overwrite")}
    for key in ("channel_mults", "attention_levels", "ae_channels"):
        if config.get(key) is not None:
            config[key] = list(config[key])
    return config


def merge_resumed_settings(saved: dict, args: argparse.Namespace, given: set[str], parser) -> dict:
    """A resumed run's settings: the saved ones, with the given resumable flags applied.

    A given flag that would change what is trained (the data, the model, the loss,
    the optimiser…) is refused, naming the flag: silently ignoring it would mislead.
    """
    config = dict(saved)
    wanted = settings_from_args(args)
    for key in sorted(given - {"resume", "overwrite", "out"}):
        if key in RESUMABLE_SETTINGS:
            config[key] = wanted[key]
            continue
        if wanted[key] != saved.get(key):
            parser.error(
                f"argument {flag(key)}: a resumed run keeps its settings ({flag(key)} was "
                f"{saved.get(key)!r}); drop {flag(key)}, or start a new run in another --out"
            )
    if "steps" in given:
        config["epochs"] = None
    elif "epochs" in given:
        config["steps"] = None
    config["out"] = args.out
    return config


def open_dataset(config: dict, parser):
    """The training set that the data flags name; a problem with them is reported against the flag."""
    from .image_data import DatasetUnavailable, make_dataset

    try:
        return make_dataset(
            config["dataset"], split="train", image_size=config["image_size"], data_dir=config["data_dir"],
            download=config["download"], seed=config["seed"], num_images=config["num_images"], augment=True,
        )
    except DatasetUnavailable as error:
        raise TrainError(str(error)) from None
    except ValueError as error:  # e.g. a folder without images, more --num-images than there are
        message = str(error)
        for name in ("data_dir", "num_images", "image_size"):
            message = message.replace(name, flag(name))
        parser.error(message)


def class_count(config: dict, info, parser) -> int | None:
    """K, the number of classes a --class-conditional run learns (None for an unconditional run).

    It is the dataset's number of labelled classes: fixed for the named datasets; for
    "folder", the number of class subfolders (listing the files is quick: no image is read).
    """
    if not config.get("class_conditional"):
        return None
    count = open_dataset(config, parser).num_classes if info.name == "folder" else info.num_classes
    if not count:
        parser.error(
            f"argument --class-conditional: the dataset {info.name!r} has no class labels here (a folder "
            "has them only when its images lie in two or more class subfolders); train without "
            "--class-conditional, or choose a labelled --dataset such as digits"
        )
    return count


def build_model(
    unet_module: ModuleType, config: dict, channels: int, parser, num_classes: int | None = None,
    cond_channels: int = 0, text: tuple[ModuleType, object] | None = None,
) -> nn.Module:
    """The U-Net of the run (class-conditional when ``num_classes`` is K > 0, image-conditioned when
    ``cond_channels`` > 0, text-conditioned when ``text`` is (text module, tokenizer): Phase 7's
    ``TextUNet``); a configuration it refuses is reported against the model flags."""
    defaults = unet_module.DEFAULT_CONFIG
    for key in MODEL_FLAGS:
        if config.get(key) is None:
            value = defaults[key]
            config[key] = list(value) if isinstance(value, tuple) else value
    kwargs = {key: tuple(config[key]) if isinstance(config[key], list) else config[key] for key in MODEL_FLAGS}
    if cond_channels:
        kwargs["cond_channels"] = cond_channels
    if text is not None:
        return build_text_model(*text, config, channels, kwargs, parser)
    try:
        return unet_module.UNet(in_channels=channels, num_classes=num_classes, **kwargs)
    except NotImplementedError:
        raise
    except (TypeError, ValueError) as error:
        parser.error(f"the model flags ({', '.join(flag(key) for key in MODEL_FLAGS)}) make no valid U-Net: {error}")


def build_text_model(text_module: ModuleType, tokenizer, config: dict, channels: int, unet_kwargs: dict,
                     parser) -> nn.Module:
    """--captions: text.TextUNet for the tokenizer, DEFAULT_TEXT_CONFIG with --text-dim and --text-layers,
    and the U-Net's flags; its null condition is the empty caption's tokens (<bos> <eos> <pad>…)."""
    for key in TEXT_FLAGS:
        if config.get(key) is None:
            config[key] = DEFAULT_TEXT_CONFIG[key]
    text_config = {**DEFAULT_TEXT_CONFIG, **{key: config[key] for key in TEXT_FLAGS}}
    try:
        return text_module.TextUNet(
            vocab_size=tokenizer.vocab_size, max_length=tokenizer.max_length,
            empty_tokens=tokenizer.empty(1)[0].tolist(), pad_id=tokenizer.pad_id, **text_config,
            in_channels=channels, **unet_kwargs,
        )
    except NotImplementedError:
        raise
    except (TypeError, ValueError) as error:
        parser.error(f"the model flags ({', '.join(flag(key) for key in MODEL_FLAGS + TEXT_FLAGS)}) make no valid "
                     f"text-conditioned U-Net: {error}")


def task_grid_inputs(degradations: ModuleType, dataset, config: dict, parser) -> tuple[torch.Tensor, torch.Tensor]:
    """--task: what the sample grids restore, the same at every step: the first --num-samples
    training images (no augmentation), degraded with a generator seeded with --seed (its own,
    not the training generator).

    Returns:
        degraded, original: (N, C, H, W) each, in [-1, 1], on the CPU.
    """
    images = first_images(dataset, config["num_samples"])
    try:
        original, degraded = degradations.condition_pair(
            images, config["task"], torch.Generator().manual_seed(config["seed"])
        )
    except ValueError as error:  # e.g. a size that the blocks of "jpeg" or the factor of "superres" do not divide
        parser.error(
            f"argument --task: {config['task']} cannot degrade these {images.shape[-2]}×{images.shape[-1]} "
            f"images: {error}"
        )
    return degraded.detach().cpu(), original.detach().cpu()


def resolve_amp(amp: str, device: torch.device, note) -> torch.dtype | None:
    """The autocast dtype (None: full float32). Mixed precision is used on CUDA only."""
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            note(f"note: --amp {amp} is used on CUDA only; training in float32 on {device.type}")
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def total_steps(config: dict, batches_per_epoch: int) -> int:
    """--steps, or --epochs converted to optimizer steps (each takes --grad-accum batches)."""
    if config.get("epochs") is not None:
        return max(1, int(config["epochs"] * batches_per_epoch) // config["grad_accum"])
    return config["steps"] if config.get("steps") is not None else DEFAULT_STEPS


def remove_previous_run(out: Path) -> None:
    """--overwrite: delete what an earlier run wrote in ``out`` (only the files this command writes)."""
    names = ["last.pt", "loss.csv", "loss.png", "samples.png", "config.json"]
    paths = [out / name for name in names] + list(out.glob("step_*.pt")) + list((out / "samples").glob("step_*.png"))
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ---------------------------------------------------------------------------
# Phase 6: the autoencoder, and diffusion on its latents
# ---------------------------------------------------------------------------


def latent_mode(config: dict, parser) -> str:
    """"autoencoder" (--train-autoencoder), "latents" (--autoencoder) or "pixels"; refuses what does not mix."""
    if config.get("train_autoencoder"):
        for key in ("autoencoder", "task", "class_conditional", "captions"):
            if config.get(key):
                parser.error(f"argument --train-autoencoder: not with {flag(key)} (the autoencoder learns images "
                             f"alone; train the diffusion model afterwards with --autoencoder)")
        return "autoencoder"
    if config.get("autoencoder"):
        if config.get("task"):
            parser.error("argument --autoencoder: not with --task (image-conditioned models work on pixels here)")
        return "latents"
    return "pixels"


def autoencoder_image_size(config: dict, info, levels: int) -> int:
    """--image-size, else the dataset's size rounded up to a multiple of 4 · 2^(levels − 1) (28 → 32)."""
    if config["image_size"] is not None:
        return config["image_size"]
    multiple = 4 * 2 ** (levels - 1)  # the latent's side then halves twice in the default U-Net
    return -(-info.image_size // multiple) * multiple


def new_autoencoder(latent_module: ModuleType, config: dict, info, parser) -> nn.Module:
    """--train-autoencoder: latent.py's Autoencoder for the data flags and --ae-channels, --latent-channels."""
    channels = tuple(config["ae_channels"])
    try:
        model = latent_module.Autoencoder(
            image_channels=info.channels, latent_channels=config["latent_channels"], channels=channels,
            groups=next(g for g in (DEFAULT_AUTOENCODER_CONFIG["groups"], 4, 2, 1) if all(c % g == 0 for c in channels)),
        )
    except NotImplementedError:
        raise
    except (TypeError, ValueError) as error:
        parser.error(f"argument --ae-channels: {error}")
    size = autoencoder_image_size(config, info, len(channels))
    if size % model.downsampling:
        parser.error(f"argument --image-size: {size} is not divisible by {model.downsampling}, which the "
                     f"autoencoder's {len(channels)} levels need")
    config["image_size"] = size
    return model


def open_latent_space(latent_module: ModuleType, config: dict, checkpoint: dict | None, device, parser) -> LatentSpace:
    """--autoencoder: the frozen autoencoder; from the checkpoint itself when resuming (its scale too),
    else from the file --autoencoder names (the scale measured later by :func:`measure_latent_space`)."""
    try:
        if checkpoint is not None:
            return LatentSpace.from_checkpoint(checkpoint, latent_module, device, str(Path(config["out"]) / "last.pt"))
        autoencoder, state, sha256 = load_autoencoder(Path(config["autoencoder"]), latent_module, device)
    except LatentError as error:
        parser.error(f"argument --autoencoder: {error}")
    saved = state["config"]
    if saved.get("dataset") != config["dataset"]:
        parser.error(f"argument --autoencoder: it was trained on {saved.get('dataset')!r}, not on --dataset "
                     f"{config['dataset']!r}; train one on this dataset, or give --dataset {saved.get('dataset')}")
    if config["image_size"] is not None and config["image_size"] != saved["image_size"]:
        parser.error(f"argument --image-size: the autoencoder works on {saved['image_size']}×{saved['image_size']} "
                     f"images; drop --image-size (it is taken from --autoencoder)")
    config["image_size"] = saved["image_size"]
    image_shape = (autoencoder.config["image_channels"], saved["image_size"], saved["image_size"])
    space = LatentSpace(latent_module, autoencoder, torch.zeros(()), torch.ones(()), image_shape)
    space.source = (Path(config["autoencoder"]), sha256, dict(state["model_config"]))
    return space


def measure_latent_space(space: LatentSpace, dataset, config: dict) -> LatentSpace:
    """The shift and scale of the first --statistics-images training images' latents, into config["latent"]."""
    images = first_images(dataset, config["statistics_images"]) * 2 - 1
    shift, scale = measure_statistics(space.latent, space.autoencoder, images,
                                      torch.Generator().manual_seed(config["seed"]))
    measured = LatentSpace(space.latent, space.autoencoder, shift, scale, space.image_shape)
    config["latent"] = measured.describe(*space.source)
    return measured


def draw_normal(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """N(0, I) of ``shape`` from ``generator`` (drawn on its device, then moved: the same draws on any device)."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def describe_tensor(value: torch.Tensor) -> str:
    return f"{value.item():.4g}" if value.numel() == 1 else "(" + ", ".join(f"{v:.3g}" for v in value.flatten()) + ")"


class ReconstructionGrid:
    """--train-autoencoder's grids: the first training images above their reconstructions (from the mean)."""

    def __init__(self, images: torch.Tensor, device: torch.device) -> None:
        self.images = images.to(device)
        self.per_row = min(8, len(images))
        self.images = self.images[: len(images) // self.per_row * self.per_row]

    def __call__(self, model: nn.Module) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                mean, _ = model.encode(self.images)
                reconstructed = model.decode(mean).clamp(-1, 1)
        finally:
            model.train(was_training)
        return reconstruction_rows(self.images.cpu(), reconstructed.float().cpu(), self.per_row)


# ---------------------------------------------------------------------------
# Phase 7: captions
# ---------------------------------------------------------------------------

#: The rows of --captions' sample grids: prompts naming the column's digit and these attributes
#: (then, for "digits-rgb", one row per colour); row r of a grid uses entry r mod their number.
GRID_ATTRIBUTES = ({}, {"stroke": "bold"}, {"stroke": "thin"}, {"slant": "left"}, {"slant": "right"},
                   {"family": "serif"}, {"family": "mono"})


def check_captions(config: dict, parser) -> None:
    """--captions: refuse what it does not mix with, and datasets without captions
    (--train-autoencoder and --captions: :func:`latent_mode`)."""
    if not config.get("captions"):
        return
    if config.get("class_conditional"):
        parser.error("argument --captions: not with --class-conditional (a model here follows a caption or a class "
                     "label, not both; a caption can name the digit); drop one of the two")
    if config.get("task"):
        parser.error("argument --captions: not with --task (a model here restores a degraded image or follows a "
                     "caption, not both); drop one of the two")
    if config["dataset"] not in CAPTIONED_DATASETS:
        parser.error(f"argument --captions: captions exist for --dataset {' or '.join(CAPTIONED_DATASETS)} only "
                     f"(provided/captions.py); got --dataset {config['dataset']}")


def grid_prompts(name: str, count: int, seed: int) -> list[str]:
    """The --captions grids' prompts: image i shows digit i mod 10 (one digit per column), with the
    attributes of row i // 10 (:data:`GRID_ATTRIBUTES`, then the colours for "digits-rgb")."""
    from .captions import COLOURS, prompts_for

    rows = list(GRID_ATTRIBUTES) + ([{"colour": colour} for colour in COLOURS] if name == "digits-rgb" else [])
    return [prompts_for(i % 10, **rows[(i // 10) % len(rows)], seed=seed)[0] for i in range(count)]


class CaptionedImages(torch.utils.data.Dataset):
    """The images of ``dataset`` that ``keep`` names, each with its caption's tokens (L,) in place of its label."""

    def __init__(self, dataset, keep: torch.Tensor, tokens: torch.Tensor) -> None:
        self.dataset, self.keep, self.tokens = dataset, keep.tolist(), tokens

    @property
    def flip(self) -> bool:  # first_images turns the augmentation off through this
        return getattr(self.dataset, "flip", False)

    @flip.setter
    def flip(self, value: bool) -> None:
        self.dataset.flip = value

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        source = self.keep[index]
        image, _ = self.dataset[source]
        return image, self.tokens[source]


def caption_dataset(dataset, config: dict, tokenizer, saved: dict | None) -> tuple[CaptionedImages, dict]:
    """--captions: the training images without the held-out combinations, with their tokenized captions,
    and what config["text"] records (the tokenizer, the held-out pairs, the counts, the grid prompts).

    ``saved`` is a resumed run's config["text"]: its tokenizer must be this one.
    """
    from .captions import HELD_OUT, captioned_digits

    captioned = captioned_digits(config["dataset"], split="train", seed=config["seed"],
                                 num_images=config["num_images"], data_dir=config["data_dir"])
    if len(captioned.captions) != len(dataset):
        raise TrainError(f"the captions of {config['dataset']} ({len(captioned.captions)}) do not match its "
                         f"{len(dataset)} training images; delete the cache under {config['data_dir']}")
    stored = tokenizer.to_dict()
    if saved is not None and saved.get("tokenizer") != stored:
        raise TrainError(f"checkpoint {Path(config['out']) / 'last.pt'}: its captions' tokenizer is not the one of "
                         "provided/captions.py any more (the vocabulary or max_length changed), so its weights do "
                         "not fit the tokens; start a new run in another --out")
    tokens = tokenizer.encode(captioned.captions)  # (N, L) int64, once
    held_out = [pair._asdict() for pair in HELD_OUT if pair.kind != "colour" or config["dataset"] == "digits-rgb"]
    record = {
        "tokenizer": stored, "held_out": held_out, "images": len(captioned.keep),
        "held_out_images": len(dataset) - len(captioned.keep),
        "grid_prompts": grid_prompts(config["dataset"], config["num_samples"], config["seed"]),
    }
    return CaptionedImages(dataset, captioned.keep, tokens), record


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python train.py …``: train, checkpoint, sample; returns the exit status.

    0: finished (or stopped by --time-limit); 1: an error (one line on stderr);
    2: a bad flag (argparse's message, naming the flag); 130: stopped by Ctrl-C, saved.
    """
    args, given, parser = parse_args(argv)
    return run_command(
        "train.py", lambda: train(args, given, parser),
        needs="Training runs Phases 1–3 (and §5.1–§5.2 with --class-conditional, §5.4–§5.5 with --task, "
        "§7.1–§7.7 with --captions)",
        interrupted="stopped at once (second Ctrl-C): last.pt holds the run as of its last save",
        memory="lower --batch-size or --image-size (or the U-Net: --base-channels, --channel-mults)")


def train(args: argparse.Namespace, given: set[str], parser: argparse.ArgumentParser) -> int:
    """The run itself (see :func:`main`); what it holds (the lock of --out) is let go at its end."""
    with contextlib.ExitStack() as held:
        return run_training(args, given, parser, held)


def run_training(
    args: argparse.Namespace, given: set[str], parser: argparse.ArgumentParser, held: contextlib.ExitStack
) -> int:
    """Check, set up, lock --out (into ``held``), train, save, sample (see :func:`main`)."""
    from tqdm.auto import tqdm


    bar = None

    def note(message: str) -> None:
        (bar.write if bar is not None else print)(message)

    apply_threads(args.threads)  # this process's, so taken from the flags even when resuming
    out = Path(args.out)
    check_writable(parser, "--out", out, folder=True)  # before any work
    last_path = out / "last.pt"
    checkpoint = None
    if args.resume:
        if args.overwrite:
            parser.error(
                "argument --overwrite: not allowed with --resume (one continues the run, the other replaces it)"
            )
        if not last_path.is_file():
            parser.error(
                f"argument --resume: there is no run to resume in {out} (no {last_path}); "
                "start a new run without --resume"
            )
        checkpoint = load_checkpoint(last_path)
        config = merge_resumed_settings(checkpoint["config"], args, given, parser)
    else:
        if last_path.exists() and not args.overwrite:
            parser.error(
                f"argument --out: {out} already holds a run ({last_path}); continue it with --resume, "
                "replace it with --overwrite, or choose another --out"
            )
        config = settings_from_args(args)

    task = config.get("task")  # Phase 5: None (generation) or a key of degradations.TASKS
    if task and config.get("class_conditional"):
        parser.error(
            "argument --task: not with --class-conditional (a model here restores a degraded image or "
            "follows a class label, not both); drop one of the two"
        )
    check_captions(config, parser)  # Phase 7
    mode = latent_mode(config, parser)  # "pixels", "autoencoder" (Phase 6) or "latents" (Phase 6)
    impl = config["impl"]
    train_module = import_impl("train", impl)  # your §3.1–§3.4 functions (or the reference's)
    latent_module = import_impl("latent", impl) if mode != "pixels" else None  # your §6.1–§6.5 functions
    degradations = import_impl("degradations", impl) if task else None  # your §5.4–§5.5 with --task
    text_module = import_impl("text", impl) if config.get("captions") else None  # your §7.1–§7.7 with --captions
    unet_module = import_impl("unet", impl)
    schedule_module = import_impl("noise_schedule", impl)
    try:
        device = pick_device(config["device"])
    except ValueError as error:
        parser.error(f"argument --device: {error}")
    amp_dtype = resolve_amp(config["amp"], device, note)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matrix products where there is no autocast
    if config["compile"] and device.type != "cuda":
        note(f"note: --compile is used on CUDA only; ignored on {device.type}")
    if config["snr_gamma"] is not None:
        config["snr_gamma"] = float(config["snr_gamma"])
    if not config.get("class_conditional") and not config.get("captions"):
        for key in sorted(given & {"p_uncond", "sample_guidance"}):
            note(f"note: {flag(key)} is used with --class-conditional only, or --captions; ignored")
    if not config.get("captions"):
        for key in sorted(given & set(TEXT_FLAGS)):
            note(f"note: {flag(key)} is used with --captions only; ignored")

    # The model first (its own checks are quick), then the data: errors come early.
    info = DATASETS[config["dataset"]]
    # The training generator: per batch, label dropout (--class-conditional), the degradation's noise
    # (--task denoise), then training_step's timesteps and noise.
    generator = seed_everything(config["seed"])
    num_classes = class_count(config, info, parser)  # K with --class-conditional, else None
    tokenizer = None  # Phase 7, with --captions: the word tokenizer of the captions
    text = None
    if text_module is not None:
        from .captions import MAX_LENGTH, Tokenizer

        tokenizer = Tokenizer(max_length=MAX_LENGTH)
        text = (text_module, tokenizer)
    space = None  # with --autoencoder: the frozen autoencoder and its latents' scale
    if mode == "autoencoder":
        model = new_autoencoder(latent_module, config, info, parser)
    elif mode == "latents":
        space = open_latent_space(latent_module, config, checkpoint, device, parser)
        model = build_model(unet_module, config, space.shape[0], parser, num_classes, text=text)
        try:
            model.check_image_size(*space.shape[1:])
        except ValueError as error:
            parser.error(f"argument --autoencoder: its latents of shape {space.shape} do not fit the U-Net: {error}")
    else:
        model = build_model(unet_module, config, info.channels, parser, num_classes, info.channels if task else 0,
                            text=text)
        if config["image_size"] is not None:
            try:
                model.check_image_size(config["image_size"], config["image_size"])
            except ValueError as error:
                parser.error(f"argument --image-size: {error}")
    dataset = open_dataset(config, parser)
    first_image, _ = dataset[0]
    channels, height, width = first_image.shape
    if channels != info.channels:
        raise TrainError(
            f"the dataset gave {channels}-channel images, but {config['dataset']} should have {info.channels}"
        )
    if tokenizer is not None:  # Phase 7: the images without held-out combinations, each with its caption's tokens
        all_images = len(dataset)
        dataset, config["text"] = caption_dataset(
            dataset, config, tokenizer, checkpoint["config"].get("text") if checkpoint is not None else None
        )
    if mode == "pixels":
        try:
            model.check_image_size(height, width)
        except ValueError as error:
            parser.error(f"argument --image-size: {error}")
    if len(dataset) < config["batch_size"]:
        parser.error(
            f"argument --batch-size: {config['batch_size']} is more than the {len(dataset)} images of the dataset; "
            "lower --batch-size or raise --num-images"
        )
    batches_per_epoch = len(dataset) // config["batch_size"]
    config["steps"] = total_steps(config, batches_per_epoch)
    if config["steps"] > cli.MAX_STEPS:
        parser.error(f"argument --epochs: {config['epochs']:g} epochs of {batches_per_epoch} batches make "
                     f"{config['steps']} optimizer steps; at most {cli.MAX_STEPS}")
    config["image_size"] = height
    config["model"] = dict(model.config)
    config["batches_per_epoch"] = batches_per_epoch
    config["dataset_size"] = len(dataset)
    if config["sample_steps"] > config["timesteps"]:
        parser.error(
            f"argument --sample-steps: at most --timesteps = {config['timesteps']}; got {config['sample_steps']}"
        )
    grid_inputs = task_grid_inputs(degradations, dataset, config, parser) if task else None  # (degraded, original)
    if mode == "latents" and checkpoint is None:
        space = measure_latent_space(space, dataset, config)

    model.to(device)
    if config["channels_last"]:
        model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    empty_tokens = tokenizer.empty(1)[0].to(device) if tokenizer is not None else None  # the null caption
    forward = torch.compile(model) if config["compile"] and device.type == "cuda" else model
    if task:
        forward = ImageConditioned(forward)  # training_step's model(x_t, t, None) → model(x_t, t, None, cond)
    schedule = schedule_module.NoiseSchedule.from_name(
        config["schedule"], config["timesteps"], dtype=torch.float32, device=device
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config["warmup_steps"], config["steps"]))
    scaler = None
    if amp_dtype == torch.float16:  # fp16 needs loss scaling; bf16 has float32's range and does not
        scaler = torch.amp.GradScaler("cuda") if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler()
    step, epoch, batch_in_epoch, seconds, session_seconds = 0, 0, 0, 0.0, 0.0

    out.mkdir(parents=True, exist_ok=True)
    if not held.enter_context(exclusive_lock(out / LOCK_NAME)):
        raise TrainError(
            f"another train.py is using {out} (it holds {out / LOCK_NAME}); wait until it ends or stop it, "
            "or choose another --out"
        )
    swept = sweep_temporaries(out) + sweep_temporaries(out / "samples")
    if swept:
        note(f"note: removed {len(swept)} temporary file(s) that an interrupted save left in {out}")
    if checkpoint is not None:
        part = "model"
        try:
            load_weights(model, checkpoint["model"])
            part = "ema"
            load_weights(ema, checkpoint["ema"])
        except ValueError as error:
            raise TrainError(
                f"checkpoint {last_path}: its {part} weights do not match the model in its config "
                f"({impl}'s unet.py): {error}"
            ) from None
        try:
            part = "optimizer"
            optimizer.load_state_dict(checkpoint["optimizer"])
            part = "scheduler"
            scheduler.load_state_dict(checkpoint["scheduler"])
            # The learning rate of the next step, from this run's schedule (the same value unless
            # --steps or --epochs changed the total, which stretches the cosine).
            for group, base_lr, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                group["lr"] = base_lr * factor(scheduler.last_epoch)
            part = "scaler"
            if scaler is not None and checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
            part = "train_seconds"
            seconds = float(checkpoint.get("train_seconds", 0.0))
            part = "rng"
            restore_rng(checkpoint["rng"], generator, device)
        except (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as error:
            raise TrainError(
                f"checkpoint {last_path}: its {part} state cannot be restored ({one_line(error, 200)}); the file is "
                "damaged: restore it from a step_*.pt, or start again with --overwrite or another --out"
            ) from None
        step, epoch, batch_in_epoch = checkpoint["step"], checkpoint["epoch"], checkpoint["batch_in_epoch"]
    elif args.overwrite:
        remove_previous_run(out)

    write_json(out / "config.json", config)
    log_path = out / "loss.csv"
    previous_rows = [row for row in read_loss_log(log_path) if row["step"] <= step] if checkpoint else []
    atomic_write(
        log_path,
        lambda handle: handle.write(
            (",".join(LOSS_CSV_FIELDS) + "\n"
             + "".join(f"{r['step']},{r['loss']:.6g},{r['lr']:.6g},{r['images_per_s']:.1f}\n" for r in previous_rows)
             ).encode("utf-8")
        ),
    )

    sample_shape = (len(grid_inputs[0]) if task else config["num_samples"], channels, height, width)
    if mode == "autoencoder":
        sampler = ReconstructionGrid(first_images(dataset, min(config["num_samples"], 32)) * 2 - 1, device)
    else:
        if space is not None:
            sample_shape = (config["num_samples"], *space.shape)
        grid_tokens = tokenizer.encode(config["text"]["grid_prompts"]) if tokenizer is not None else None
        sampler = GridSampler(
            impl, config, schedule, device, sample_shape, note, num_classes,
            condition=grid_inputs[0] if task else None, space=space, tokens=grid_tokens, text_module=text_module,
        )
    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=amp_dtype)

    parameters = sum(p.numel() for p in model.parameters())
    classes = f", {num_classes} classes, p_uncond {config['p_uncond']:g}" if num_classes else ""
    if task:
        classes = f", task {task}: {degradations.TASKS[task].description}"
    if tokenizer is not None:
        classes = (f" with captions, the {config['text']['held_out_images']} of {all_images} with a held-out "
                   f"combination left out, p_uncond {config['p_uncond']:g}")
    what = "the U-Net"
    if mode == "autoencoder":
        what = f"the autoencoder ({'×'.join(map(str, model.latent_shape(height, width)))} latents, β {config['kl_weight']:g})"
    elif mode == "latents":
        what = (f"the U-Net on {'×'.join(map(str, space.shape))} latents (scale {describe_tensor(space.scale)}, "
                f"shift {describe_tensor(space.shift)})")
    print(
        f"{'resuming' if checkpoint else 'training'} {what} ({parameters / 1e6:.2f} M parameters) with "
        f"{CODE_NAMES[impl]} on "
        f"{config['dataset']} ({len(dataset)} images of {channels}×{height}×{width}{classes}) on {device}"
        f"{f' with {config_amp_name(amp_dtype)}' if amp_dtype is not None else ''}: "
        f"{'from step ' + str(step) + ' ' if checkpoint else ''}to step {config['steps']}, "
        f"batch {config['batch_size']}{' × ' + str(config['grad_accum']) if config['grad_accum'] > 1 else ''}; "
        f"writing into {out}"
    )

    def state() -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "train_seconds": seconds,
            "model": model.state_dict(), "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": capture_rng(generator, device),
            "config": config, "model_config": dict(model.config), "torch_version": str(torch.__version__),
            **({"autoencoder": space.autoencoder.state_dict()} if space is not None else {}),
        }

    def write_samples(path: Path) -> None:
        images = sampler(ema)
        if images is None:
            return
        if task:  # rows: degraded, restored, original, for each group of TRIPLET_COLUMNS images
            degraded, original = grid_inputs
            images, per_row = triplet_rows(degraded, images, original)
            save_grid(images, path, nrow=per_row)
        elif mode == "autoencoder":  # rows: originals, then their reconstructions
            save_grid(images, path, nrow=sampler.per_row)
        elif tokenizer is not None:
            save_grid(images, path, nrow=10)  # --captions: column j shows digit j (config["text"]["grid_prompts"])
        else:
            save_grid(images, path, nrow=num_classes)  # class-conditional: column j is class j

    data = batches(dataset, config, device, epoch, batch_in_epoch)
    images_per_step = config["batch_size"] * config["grad_accum"]
    stopped = None  # None: reached the last step; else "time" or "interrupt"
    smoothed_loss = smoothed_rate = None
    limit = config["time_limit"] * 60 if config["time_limit"] else None
    model.train()
    log = open(log_path, "a", encoding="utf-8", newline="")
    bar = tqdm(total=config["steps"], initial=step, desc="training", unit="step", dynamic_ncols=True)
    try:
        with StopOnInterrupt(note) as interrupt:
            while step < config["steps"]:
                started = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss_sum = torch.zeros((), device=device)
                for _ in range(config["grad_accum"]):
                    epoch, batch_in_epoch, images, labels = next(data)
                    images = images.to(device, non_blocking=True)
                    if config["channels_last"]:
                        images = images.contiguous(memory_format=torch.channels_last)
                    # Phase 5: the labels, some dropped to the null label K (this draws from the
                    # generator first; training_step then draws t and the noise).
                    class_labels = None
                    if num_classes:
                        class_labels = train_module.drop_labels(
                            labels.to(device, torch.int64), config["p_uncond"], num_classes, generator
                        )
                    elif tokenizer is not None:  # Phase 7: the captions' tokens (B, L), some dropped to the empty
                        # caption, from the generator first as the labels are; they go where class labels go
                        class_labels = text_module.drop_captions(
                            labels.to(device, torch.int64), config["p_uncond"], empty_tokens, generator
                        )
                    if task:
                        # Phase 5 --task: the pair (x_0, y), both in [-1, 1]; "denoise" draws its noise from
                        # the generator here, before training_step's t and noise. The wrapper hands y to the U-Net.
                        x0, cond = degradations.condition_pair(images, task, generator)
                        if config["channels_last"]:
                            x0 = x0.contiguous(memory_format=torch.channels_last)
                            cond = cond.contiguous(memory_format=torch.channels_last)
                        forward.cond = cond
                    else:
                        x0 = train_module.to_model_range(images)
                    with autocast():
                        if mode == "autoencoder":  # Phase 6: the posterior's ε, then the loss of §6.3
                            noise = draw_normal((x0.shape[0], *model.latent_shape(*x0.shape[-2:])), generator, device)
                            reconstructions, mean, logvar = forward(x0, noise)
                            loss = latent_module.autoencoder_loss(x0, reconstructions, mean, logvar,
                                                                  config["kl_weight"], config["reconstruction"])
                        else:
                            if space is not None:  # Phase 6: the posterior's ε, then training_step's t and noise
                                x0 = space.encode(x0, draw_normal((x0.shape[0], *space.shape), generator, device))
                            loss = train_module.training_step(
                                forward, x0, schedule, prediction=config["prediction"], loss_type=config["loss"],
                                generator=generator, snr_gamma=config["snr_gamma"], class_labels=class_labels,
                            )
                    scaled = loss.float() / config["grad_accum"]
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                    loss_sum += loss.detach().float()
                if scaler is not None:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
                lr = optimizer.param_groups[0]["lr"]
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                train_module.ema_update(ema, model, train_module.ema_decay(step, config["ema_decay"]))
                step += 1
                loss_value = loss_sum.item() / config["grad_accum"]
                if not math.isfinite(loss_value) and scaler is None:
                    raise TrainError(
                        f"the loss became {loss_value} at step {step}; lower --lr (now {config['lr']:g}) "
                        f"or check the data (last.pt still holds the run as of its last save)"
                    )
                elapsed = time.perf_counter() - started
                seconds += elapsed
                session_seconds += elapsed
                rate = images_per_step / max(elapsed, 1e-9)
                log.write(f"{step},{loss_value:.6g},{lr:.6g},{rate:.1f}\n")
                log.flush()
                smoothed_loss = loss_value if smoothed_loss is None else 0.95 * smoothed_loss + 0.05 * loss_value
                smoothed_rate = rate if smoothed_rate is None else 0.9 * smoothed_rate + 0.1 * rate
                bar.set_postfix(
                    loss=f"{smoothed_loss:.4f}", img_s=f"{smoothed_rate:.0f}", lr=f"{lr:.2e}", refresh=False
                )
                bar.update(1)

                if config["sample_every"] and step % config["sample_every"] == 0:
                    write_samples(out / "samples" / f"step_{step:06d}.png")
                if config["checkpoint_every"] and step % config["checkpoint_every"] == 0:
                    snapshot = state()
                    save_checkpoint(out / f"step_{step:06d}.pt", snapshot)
                    save_checkpoint(last_path, snapshot)
                elif config.get("save_every") and step % config["save_every"] == 0:
                    save_checkpoint(last_path, state())
                if interrupt.requested:
                    stopped = "interrupt"
                    break
                if limit is not None and session_seconds >= limit and step < config["steps"]:
                    stopped = "time"
                    break
            save_checkpoint(last_path, state())
    finally:
        bar.close()
        log.close()
        with contextlib.suppress(Exception):
            title = (
                f"{config['dataset']}: {config['prediction']}-prediction, {config['loss']} loss, "
                f"{config['schedule']} schedule"
            )
            plot_loss(read_loss_log(log_path), out / "loss.png", title)

    rows = read_loss_log(log_path)
    recent = [row["loss"] for row in rows[-100:]]
    summary = "no steps taken"
    if recent:
        summary = f"final loss {sum(recent) / len(recent):.4f} (mean of the last {len(recent)} steps)"
    if stopped == "interrupt":
        print(f"stopped at step {step} of {config['steps']}; saved {last_path}. Continue with: "
              f"python train.py --resume --out {out}")
        return 128 + interrupt.signal  # 130 for Ctrl-C, 143 for SIGTERM
    last_grid = out / "samples" / f"step_{step:06d}.png"
    if config["sample_every"] and step and step % config["sample_every"] == 0 and last_grid.is_file():
        atomic_write(out / "samples.png", lambda handle: handle.write(last_grid.read_bytes()))  # same weights
    else:
        write_samples(out / "samples.png")
    if stopped == "time":
        print(f"--time-limit: stopped at step {step} of {config['steps']} after {session_seconds / 60:.1f} min; "
              f"continue with: python train.py --resume --out {out}")
    print(f"trained {step} steps ({seconds / 60:.1f} min of training in all); {summary}")
    print(f"samples:    {out / 'samples.png'}")
    print(f"loss curve: {out / 'loss.png'}")
    print(f"checkpoint: {last_path}")
    return 0


def config_amp_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast and a GradScaler"}.get(dtype, "float32")


if __name__ == "__main__":  # `python -m provided.training`: the same command, for when train.py itself does not compile
    sys.exit(main())
