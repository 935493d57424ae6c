"""Phase 4 · The ``python sample.py`` command: images from a trained checkpoint (provided).

    python sample.py --checkpoint runs/demo/last.pt --num-samples 16
    python sample.py --checkpoint runs/demo/last.pt --sampler ddpm --gif trajectory.gif

It rebuilds the noise schedule and the U-Net that ``python train.py`` saved in the
checkpoint, loads the EMA weights (or the raw ones with --no-ema), and runs the
sampling loop of diffusion.py (§4.7) batch after batch, every random draw coming
from one generator seeded with --seed. It writes a PNG grid of the samples and, on
request, an animation of the reverse process (--gif) and the images themselves as a
tensor (--save-tensor).

A class-conditional checkpoint (train.py --class-conditional, Phase 5) samples the
classes of --class-id with classifier-free guidance of scale --guidance-scale;
--guidance-grid shows one class per row and one guidance scale per column.

A text-conditioned checkpoint (train.py --captions, Phase 7) draws the captions of
--prompt (repeat it for several: the images cycle through them, one prompt per
column of the grid) with guidance from the empty caption, at --guidance-scale; with
--guidance-grid, one prompt per row. A word outside the checkpoint's vocabulary is an
error that lists the vocabulary.

Two more Phase 5 uses take --from-dataset N images of the test split of the checkpoint's
dataset. A checkpoint of ``train.py --task NAME`` restores them: they are degraded
(``degradations.degrade``) and x_0 is sampled conditioned on the degraded copy; the grid
shows degraded / restored / original, and PSNR and SSIM are printed. --inpaint, with any
checkpoint trained without --task, hides part of each image (--mask) and fills it in with
RePaint (``diffusion.inpaint_loop``); the grid shows original / masked / inpainted.

Nothing here is graded. With --impl learner (the default) it runs your noise_schedule.py,
unet.py and diffusion.py; with --impl solutions, the reference.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from utils import (
    image_grid,
    import_impl,
    pick_device,
    resolve_impl,
    save_gif,
    seed_everything,
    to_pil,
    trajectory_frames,
)

from .choices import DEFAULT_DDIM_STEPS, DEFAULT_GUIDANCE_SCALE, MASK_PRESETS, SAMPLERS, SPACINGS, TASK_NAMES, VARIANCES
from . import cli
from .cli import (
    SEED_WHY, CommandError, apply_threads, check_writable, flag, float_in, guidance_scales,
    int_at_least, one_line, run_command,
)
from .captions import Tokenizer, UnknownWordsError
from .conditioning import ImageConditioned, guidance_inputs, text_guidance, triplet_rows
from .files import UnreadableFile, atomic_write, load_weights, read_torch_file
from .latent_space import LatentError, LatentSpace
from .phases import CODE_NAMES
from .training import SAMPLING_KEYS, SAMPLING_SETTINGS, checkpoint_problem

#: What a --save-tensor file says it is (its "format" field).
SAMPLES_FORMAT = "diffusion-exercises/sample.py samples"
SAMPLES_VERSION = 1
#: The number of images without --num-samples.
DEFAULT_NUM_SAMPLES = 64
#: How many images of the first batch the --gif animation shows.
GIF_IMAGES = 16
#: The picture formats --out may name, by file extension.
GRID_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
DEFAULT_MASK = "center"
#: Phase 5: the value the hidden pixels show in the --inpaint grid's "masked" row (0: mid-grey in [-1, 1]).
MASK_FILL = 0.0


class SampleError(CommandError):
    """A problem that stops the command, reported as one line (``sample.py: error: …``), exit status 1."""


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------

HELP_DESCRIPTION = """\
Draw images from a checkpoint of train.py with DDPM (Ho et al. 2020, Algorithm 2) or
DDIM (Song et al. 2021), and save them as a grid.

The images are drawn in batches of --batch-size from one generator seeded once with
--seed, so the same flags give the same images (on one device)."""

HELP_EPILOG = """\
--save-tensor writes, with torch.save, a dict that torch.load(path, weights_only=True) reads:
  images       float32 tensor (N, C, H, W) on the CPU, values in [-1, 1] (as in training)
  sampling     the keyword arguments given to diffusion.sample_loop: sampler, num_steps,
               eta, variance, spacing, prediction, clip_x0
  labels       int64 tensor (N,): the class of each image (class-conditional checkpoints);
               (N, L): the tokens of each image's prompt (text-conditioned checkpoints); else None
  prompts      text-conditioned checkpoints only: the prompt of each image (a list of N strings)
  guidance_scale  w (a float; None for an unconditional checkpoint); with --guidance-grid the
               list of the columns' scales, the images then being row after row
               (row r, column c is image r × columns + c)
  seed, batch_size, weights ("ema" or "raw"), checkpoint (its path), train_step,
  dataset, image_size, schedule, num_timesteps (T), model_config, train_config (all of
  train.py's settings), impl, device, seconds, format, version
 with a --task checkpoint (Phase 5), also (images are then the restored ones):
  task         the task's name; original, degraded, restored: float32 (N, C, H, W) in [-1, 1]
               (degraded as the model saw it, not clamped)
  psnr, ssim   dicts of float32 (N,) tensors, one value per image: "restored" (restored vs
               original) and "degraded" (degraded vs original); PSNR in dB, SSIM in [-1, 1]
 with --inpaint (images are then the inpainted ones):
  mask         float32 (1, 1, H, W), 1 = known (kept), 0 = filled in; mask_name (--mask)
  original, masked, inpainted: float32 (N, C, H, W) (masked: the hidden pixels set to 0, grey)
  psnr         a dict of float32 (N,) tensors in dB of inpainted vs original over the "known"
               pixels (inf: they are kept exactly), the "hidden" ones and the "whole" images
  resample     U, RePaint's tries per step; labels: the images' classes (class-conditional)

The random draws come, in order, from one generator seeded with --seed: --task's
degradation (denoise only) or --inpaint's mask (strokes only), then each batch's noise.

examples:
  python sample.py --checkpoint runs/demo/last.pt --num-samples 16
  python sample.py --checkpoint runs/demo --sampler ddpm --gif runs/demo/ddpm.gif
  python sample.py --checkpoint runs/demo/last.pt --steps 10 --spacing leading --out leading.png
  python sample.py --checkpoint runs/demo/last.pt --impl solutions --save-tensor samples.pt
  python sample.py --checkpoint runs/digits-cfg --class-id 3 --guidance-scale 5
  python sample.py --checkpoint runs/digits-cfg --guidance-grid 0,1,3,5   # rows: classes
  python sample.py --checkpoint runs/digits-text --prompt "a bold seven" --prompt "2, thin, leaning right"
  python sample.py --checkpoint runs/digits-text --prompt "a thin 4" --guidance-grid 0,1,3,5  # rows: prompts
  python sample.py --checkpoint runs/digits-deblur --from-dataset 16        # a --task checkpoint
  python sample.py --checkpoint runs/demo --inpaint --mask strokes --from-dataset 16 --resample 5"""


def build_parser() -> argparse.ArgumentParser:
    """The command line, one argument group per concern (class conditioning is Phase 5's)."""
    parser = argparse.ArgumentParser(
        prog="sample.py",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("the model")
    model.add_argument("--checkpoint", required=True, metavar="FILE",
                       help="a checkpoint written by train.py, such as runs/demo/last.pt, or a run's "
                       "folder (its last.pt is used)")
    model.add_argument("--no-ema", dest="ema", action="store_false",
                       help="use the trained weights as they are (default: their EMA, which samples better)")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--sampler", default="ddim", choices=SAMPLERS,
                          help="ddpm: ancestral sampling; ddim: fewer, larger steps (default: %(default)s)")
    sampling.add_argument("--steps", default=None, type=int_at_least(1, cli.MAX_TIMESTEPS), metavar="N",
                          help=f"network calls per image, at most T (the checkpoint's --timesteps); "
                          f"default: {DEFAULT_DDIM_STEPS} for ddim, T for ddpm")
    sampling.add_argument("--eta", default=None, type=float_in(0.0, 1.0, low_open=False, high_open=False),
                          metavar="ETA", help="ddim only: η, the noise of each step, from 0 (deterministic) to 1 "
                          "(as much as DDPM); default: 0")
    sampling.add_argument("--variance", default=None, choices=VARIANCES,
                          help="ddpm only: the step's variance, the posterior's β̃ (small) or β (large); "
                          "default: small")
    sampling.add_argument("--spacing", default="trailing", choices=SPACINGS,
                          help="which N of the T timesteps are visited (guide §4.6; default: %(default)s)")
    sampling.add_argument("--no-clip", dest="clip", action="store_false",
                          help="do not clamp the predicted x̂_0 to [-1, 1] at each step (default: clamp)")

    conditioning = parser.add_argument_group(
        "class conditioning and guidance (Phase 5; class-conditional checkpoints, and text-conditioned ones with "
        "--prompt)"
    )
    conditioning.add_argument("--class-id", default=None, type=_class_ids, metavar="IDS",
                              help="the classes to draw: one, such as 3, a list such as 0,2,4, or all (the "
                              "default); the images cycle through them")
    scale = conditioning.add_mutually_exclusive_group()
    scale.add_argument("--guidance-scale", default=None, type=float_in(0.0, low_open=False), metavar="W",
                       help="classifier-free guidance scale w: 1 = plain conditional, 0 = unconditional, "
                       f"> 1 = more like the class (default: {DEFAULT_GUIDANCE_SCALE:g})")
    scale.add_argument("--guidance-grid", default=None, type=guidance_scales, metavar="W1,W2,…",
                       help="instead, one row per --class-id class (or --prompt) and one column per scale, such as "
                       "0,1,3,5; every column starts from the same noise, so a row shows what w changes "
                       "(--num-samples is not used)")

    text = parser.add_argument_group("text conditioning (Phase 7; checkpoints of train.py --captions only)")
    text.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                      help="a caption to draw, such as \"a bold seven\" or \"7, thin, leaning right\"; repeat the "
                      "flag for several prompts: the images cycle through them, one prompt per column of the grid "
                      "(with --guidance-grid, one per row). Words must come from the captions the model was trained "
                      "on (an unknown word is an error that lists them); guided at --guidance-scale, with the empty "
                      "caption as the unconditional input")

    images = parser.add_argument_group(
        "image conditioning and inpainting (Phase 5): restore or complete test images"
    )
    images.add_argument("--task", default=None, choices=TASK_NAMES, metavar="NAME",
                        help="restore degraded images with a checkpoint of train.py --task NAME (%(choices)s); "
                        "default: the checkpoint's own task. The images are degraded with "
                        "degradations.degrade, then restored; the grid's rows are degraded, restored, "
                        "original (three rows per group of up to 8 images), and the mean PSNR and SSIM of "
                        "restored and of degraded vs original are printed. Needs --from-dataset")
    images.add_argument("--from-dataset", default=None, type=int_at_least(1, cli.MAX_TEST_IMAGES), metavar="N",
                        help="with --task or --inpaint: take N images of the test split of the checkpoint's "
                        "dataset, the same N every time (the digits are drawn with the run's --seed, the other "
                        "datasets keep a subset seeded with it); --num-samples is then not used")
    images.add_argument("--data-dir", default=None, metavar="DIR",
                        help="where that dataset is (default: the checkpoint's train.py --data-dir)")
    images.add_argument("--download", action="store_true",
                        help="download the dataset into --data-dir if it is not there (MNIST, Fashion-MNIST, "
                        "CIFAR-10)")
    images.add_argument("--inpaint", action="store_true",
                        help="fill in the hidden part of the images (RePaint, diffusion.inpaint_loop) with any "
                        "checkpoint trained without --task; a class-conditional one is given the images' own "
                        "labels (or --class-id) and --guidance-scale. The grid's rows are original, masked "
                        "(hidden pixels grey), inpainted; the PSNR over the known pixels (kept: inf) and over "
                        "the whole images is printed. Needs --from-dataset")
    images.add_argument("--mask", default=None, metavar="MASK",
                        help=f"with --inpaint: what is hidden: {', '.join(MASK_PRESETS)} (the left half, the "
                        "centre square of half the side, random strokes drawn with --seed) or a PNG file, "
                        f"resized to the images, white = known, black = filled in (default: {DEFAULT_MASK})")
    images.add_argument("--resample", default=None, type=int_at_least(1, cli.MAX_RESAMPLE), metavar="U",
                        help="with --inpaint: RePaint's tries per step, going back up with fresh noise between "
                        "them; more blends the seams better, at U times the cost (default: 1)")

    output = parser.add_argument_group("output")
    output.add_argument("--num-samples", default=None, type=int_at_least(1, cli.MAX_SAMPLES), metavar="N",
                        help=f"how many images (default: {DEFAULT_NUM_SAMPLES})")
    output.add_argument("--batch-size", default=64, type=int_at_least(1, cli.MAX_BATCH_SIZE), metavar="B",
                        help="images sampled at once (default: %(default)s); the images depend on it, "
                        "since the batches take their noise from one generator in turn")
    output.add_argument("--seed", default=0, type=int_at_least(0, cli.MAX_SEED, SEED_WHY), metavar="S",
                        help="seed of all the noise (default: %(default)s)")
    output.add_argument("--out", default=None, metavar="FILE",
                        help="the grid of samples, .png (or .jpg, .webp); default: "
                        "samples_SAMPLER_Nsteps.png beside the checkpoint, e.g. runs/demo/samples_ddim_50steps.png "
                        "(with --guidance-grid: guidance_grid_SAMPLER_Nsteps_wW1-W2-….png)")
    output.add_argument("--gif", default=None, metavar="FILE",
                        help="also write the reverse process of the first batch (up to "
                        f"{GIF_IMAGES} images) as an animated .gif: x_t beside the predicted x̂_0")
    output.add_argument("--gif-frames", default=40, type=int_at_least(2), metavar="F",
                        help="frames of the animation, at most N + 1: F − 1 evenly spread steps, then "
                        "the samples (default: %(default)s)")
    output.add_argument("--save-tensor", default=None, metavar="FILE",
                        help="also save the images as a tensor with their settings (format below)")

    cli.add_run_flags(parser)
    return cli.document_bounds(parser)


def _class_ids(text: str) -> str | tuple[int, ...]:
    """--class-id: "all", or whole numbers ≥ 0 separated by commas (checked against K later)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        ids = ()
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"must be all, or class numbers ≥ 0 such as 3 or 0,2,4; got {text!r}")
    return ids


def resolve_run_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Replace args.impl and args.device by the checked choices (a bad one is a flag error, exit 2);
    apply --threads."""
    try:
        args.impl = resolve_impl(args.impl)
    except ValueError as error:
        parser.error(str(error))
    try:
        args.device = pick_device(args.device)
    except ValueError as error:
        parser.error(f"argument --device: {error}")
    apply_threads(args.threads)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """The checked flags (impl and device resolved) and the parser, for later errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_run_flags(args, parser)
    if args.out is not None and Path(args.out).suffix.lower() not in GRID_FORMATS:
        parser.error(f"argument --out: the grid must be a {', '.join(GRID_FORMATS)} file; got {args.out!r}")
    if args.gif is not None and Path(args.gif).suffix.lower() != ".gif":
        parser.error(f"argument --gif: the animation must be a .gif file; got {args.gif!r}")
    if args.gif is not None and args.guidance_grid is not None:
        parser.error("argument --gif: not with --guidance-grid (sample with one --guidance-scale for an animation)")
    if args.inpaint and args.task is not None:
        parser.error(
            "argument --inpaint: not with --task (a --task model restores the whole image from its degraded copy; "
            "inpainting works with a model trained without --task)"
        )
    if args.inpaint and args.guidance_grid is not None:
        parser.error("argument --guidance-grid: not with --inpaint (inpaint with one --guidance-scale)")
    if not args.inpaint:
        for name in ("mask", "resample"):
            if getattr(args, name) is not None:
                parser.error(f"argument {flag(name)}: used with --inpaint only; add --inpaint or drop {flag(name)}")
    return args, parser


# ---------------------------------------------------------------------------
# The checkpoint and the model
# ---------------------------------------------------------------------------


def checkpoint_path(name: str) -> Path:
    """The checkpoint file that --checkpoint names: the file itself, or a run folder's last.pt."""
    path = Path(name)
    return path / "last.pt" if path.is_dir() else path


def read_checkpoint(path: Path) -> dict:
    """The dict train.py saved at ``path``, checked; SampleError, naming the file, if it cannot be used."""
    if not path.is_file():
        raise SampleError(
            f"there is no checkpoint {path}: train a model first (python train.py, or make demo "
            "for runs/demo/last.pt) or name another file with --checkpoint"
        )
    try:
        state = read_torch_file(path)
    except UnreadableFile as error:
        raise SampleError(
            f"cannot read the checkpoint {path} ({error}): the file is damaged "
            "(an interrupted copy?) or was not written by train.py"
        ) from None
    problem = checkpoint_problem(state, path, SAMPLING_KEYS, SAMPLING_SETTINGS)
    if problem:
        raise SampleError(problem)
    if state["config"].get("train_autoencoder"):
        raise SampleError(
            f"{path} is an autoencoder (train.py --train-autoencoder), which does not sample: train a diffusion "
            f"model on its latents with python train.py --autoencoder {path}, and sample from that one "
            f"(evaluate.py --checkpoint {path} measures the autoencoder)"
        )
    return state


def load_model(
    checkpoint: dict, impl: str, device: torch.device, ema: bool = True, name: str = "the checkpoint"
) -> tuple[nn.Module, object]:
    """The checkpoint's U-Net, in eval mode on ``device``, and its noise schedule (float32).

    Both come from the chosen implementation (``import_impl``): your unet.py and
    noise_schedule.py with --impl learner. The weights are the EMA's (``ema``) or the
    trained ones, loaded strictly: every tensor must fit the U-Net that the saved
    model_config builds. ``name`` is the checkpoint's path, for error messages.
    """
    config = checkpoint["config"]
    whose = "your " if impl == "learner" else "solutions/"
    try:
        schedule = import_impl("noise_schedule", impl).NoiseSchedule.from_name(
            config["schedule"], config["timesteps"], dtype=torch.float32, device=device
        )
    except NotImplementedError:
        raise  # a stub: main() says which one
    except (TypeError, ValueError, KeyError) as error:
        raise SampleError(
            f"{whose}noise_schedule.py cannot rebuild the schedule of {name} "
            f"({config['schedule']!r}, T = {config['timesteps']}): {one_line(error)}"
        ) from None
    text = "vocab_size" in checkpoint["model_config"]  # Phase 7 (train.py --captions): text.TextUNet
    try:
        if text:
            model = import_impl("text", impl).TextUNet(**checkpoint["model_config"])
        else:
            model = import_impl("unet", impl).UNet(**checkpoint["model_config"])
    except NotImplementedError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise SampleError(f"checkpoint {name}: its model_config makes no {'TextUNet' if text else 'U-Net'} of "
                          f"{whose}{'text' if text else 'unet'}.py: {one_line(error)}") from None
    try:
        model.check_image_size(config["image_size"], config["image_size"])
    except ValueError as error:
        raise SampleError(
            f"checkpoint {name}: its config's image_size does not fit its model: {one_line(error)}"
        ) from None
    try:
        load_weights(model, checkpoint["ema" if ema else "model"])
    except NotImplementedError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise SampleError(f"the weights in {name} do not fit {whose}unet.py: {one_line(error)}") from None
    return model.to(device).eval(), schedule


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


def sampling_options(args: argparse.Namespace, config: dict, parser: argparse.ArgumentParser) -> dict:
    """The keyword arguments of ``diffusion.sample_loop`` that the flags choose, checked against T."""
    num_timesteps = config["timesteps"]
    steps = args.steps
    if steps is None:
        steps = num_timesteps if args.sampler == "ddpm" else min(DEFAULT_DDIM_STEPS, num_timesteps)
    if steps > num_timesteps:
        parser.error(
            f"argument --steps: at most T = {num_timesteps} (the checkpoint's --timesteps); got {steps}"
        )
    return dict(
        sampler=args.sampler,
        num_steps=steps,
        eta=0.0 if args.eta is None else args.eta,
        variance=args.variance or "small",
        spacing=args.spacing,
        prediction=config["prediction"],
        clip_x0=args.clip,
    )


def ignored_flags(args: argparse.Namespace) -> list[str]:
    """Notes for flags that the chosen sampler (or --guidance-grid, or --from-dataset) does not use."""
    notes = []
    if args.from_dataset is not None and args.num_samples is not None:
        notes.append("note: --num-samples is not used with --from-dataset (one image per test image); ignored")
    if args.from_dataset is None:
        if args.data_dir is not None:
            notes.append("note: --data-dir is used with --from-dataset only; ignored")
        if args.download:
            notes.append("note: --download is used with --from-dataset only; ignored")
    if args.guidance_grid is not None and args.num_samples is not None:
        notes.append("note: --num-samples is not used with --guidance-grid (one row per --class-id class); ignored")
    if args.sampler == "ddpm" and args.eta is not None:
        notes.append("note: --eta is used by --sampler ddim only; ignored")
    if args.sampler == "ddim" and args.variance is not None:
        notes.append("note: --variance is used by --sampler ddpm only; ignored")
    return notes


# ---------------------------------------------------------------------------
# Class conditioning (Phase 5)
# ---------------------------------------------------------------------------


def class_ids(args: argparse.Namespace, num_classes: int, parser: argparse.ArgumentParser) -> list[int] | None:
    """The classes to draw (--class-id, all by default), checked against the model's K classes.

    None for an unconditional checkpoint (num_classes = 0), which takes none of the
    conditioning flags: each is refused, naming it.
    """
    if not num_classes:
        for name in ("class_id", "guidance_scale", "guidance_grid"):
            if getattr(args, name) is not None:
                parser.error(
                    f"argument {flag(name)}: the checkpoint's model is unconditional (trained without "
                    "--class-conditional), so it has no classes to guide towards; drop the flag"
                )
        return None
    if args.class_id in (None, "all"):
        return list(range(num_classes))
    outside = [label for label in args.class_id if label >= num_classes]
    if outside:
        parser.error(
            f"argument --class-id: the checkpoint's model knows {num_classes} classes, 0 to {num_classes - 1}; "
            f"got {', '.join(map(str, outside))}"
        )
    return list(args.class_id)


def cycled_labels(classes: list[int], count: int) -> torch.Tensor:
    """(count,) int64 labels going through ``classes`` again and again (e.g. [3, 5] → 3, 5, 3, 5, …)."""
    return torch.tensor(classes, dtype=torch.int64).repeat(math.ceil(count / len(classes)))[:count]


def scale_words(scales) -> str:
    """Guidance scales in a few words, e.g. "w = 0, 1, 3" (for the summary)."""
    return "w = " + ", ".join(f"{w:g}" for w in scales)


def class_words(classes: list[int]) -> str:
    """The classes in a few words, e.g. "class 3" or "classes 0, 2, 4"."""
    return ("class " if len(classes) == 1 else "classes ") + ", ".join(map(str, classes))


# ---------------------------------------------------------------------------
# Text conditioning (Phase 7)
# ---------------------------------------------------------------------------


def is_text_model(checkpoint: dict) -> bool:
    """Whether the checkpoint holds a text-conditioned model (train.py --captions)."""
    return bool(checkpoint["config"].get("captions"))


def prompt_tokens(args: argparse.Namespace, checkpoint: dict, parser: argparse.ArgumentParser) -> torch.Tensor | None:
    """--prompt's captions as (P, L) token ids of the checkpoint's own tokenizer; None for a model without text.

    A text-conditioned model needs at least one --prompt and takes no --class-id; any other
    model takes no --prompt; an unknown word is refused naming it and listing the vocabulary.
    """
    if not is_text_model(checkpoint):
        if args.prompt is not None:
            parser.error("argument --prompt: the checkpoint's model was trained without --captions, so it reads no "
                         "text; train one with train.py --captions, or drop --prompt")
        return None
    if args.class_id is not None:
        parser.error("argument --class-id: the checkpoint's model is text-conditioned (train.py --captions): "
                     "describe the image with --prompt instead, such as --prompt \"a bold seven\"")
    if not args.prompt:
        parser.error("argument --prompt: the checkpoint's model is text-conditioned (train.py --captions): give "
                     "one or more, such as --prompt \"a bold seven\" --prompt \"the digit two in a serif font\"")
    try:
        tokenizer = Tokenizer.from_dict(checkpoint["config"]["text"]["tokenizer"])
    except (KeyError, TypeError, ValueError) as error:
        raise SampleError(f"the checkpoint's stored tokenizer is damaged: {one_line(error)}") from None
    empty = [i for i, text in enumerate(args.prompt) if not text.strip()]
    if empty:
        parser.error("argument --prompt: an empty prompt draws unconditional images; use --guidance-scale 0 "
                     "with a real prompt for that, or give a caption such as \"a bold seven\"")
    try:
        return tokenizer.encode(args.prompt)
    except UnknownWordsError as error:
        parser.error(f"argument --prompt: {error}")
    except ValueError as error:
        parser.error(f"argument --prompt: {one_line(error)}")


def prompt_words(prompts: list[str]) -> str:
    """The prompts in a few words, e.g. 'prompts "a bold seven", "a thin 2"' (for the summary)."""
    return ("prompt " if len(prompts) == 1 else "prompts ") + ", ".join(f'"{text}"' for text in prompts)


# ---------------------------------------------------------------------------
# Restoring (--task) and inpainting (--inpaint) test images (Phase 5)
# ---------------------------------------------------------------------------


def image_task(args: argparse.Namespace, checkpoint: dict, parser: argparse.ArgumentParser) -> str | None:
    """The task the checkpoint's model restores (train.py --task), or None for a generating model,
    after checking --task, --inpaint and --from-dataset against it (each refused naming the flag)."""
    trained = checkpoint["config"].get("task")
    if args.task is not None and trained is None:
        parser.error(
            f"argument --task: the checkpoint's model was trained without --task: it generates images and "
            f"cannot restore them; train one with train.py --task {args.task}, or drop --task "
            "(--inpaint completes images with any model)"
        )
    if args.task is not None and args.task != trained:
        parser.error(
            f"argument --task: the checkpoint's model was trained for --task {trained}, not {args.task}; "
            f"drop --task, or pass --task {trained}"
        )
    if args.inpaint and trained is not None:
        parser.error(
            f"argument --inpaint: the checkpoint's model restores images (trained with --task {trained}); "
            "inpaint with a model trained without --task"
        )
    if (trained is not None or args.inpaint) and args.from_dataset is None:
        purpose = f"restore (the checkpoint's --task {trained})" if trained else "inpaint"
        parser.error(f"argument --from-dataset: give N, how many test images to {purpose}, such as --from-dataset 8")
    if trained is None and not args.inpaint and args.from_dataset is not None:
        parser.error(
            "argument --from-dataset: used with --inpaint, or with a checkpoint trained with --task; "
            "add --inpaint or drop --from-dataset"
        )
    return trained


def dataset_images(
    args: argparse.Namespace, checkpoint: dict, parser: argparse.ArgumentParser
) -> tuple[torch.Tensor, torch.Tensor]:
    """--from-dataset N: N images of the test split of the checkpoint's dataset, at its image size.

    The digits are drawn with the run's --seed; the other datasets keep a subset seeded with it.

    Returns:
        (N, C, H, W) images in [-1, 1] and their (N,) int64 labels, on the CPU.
    """
    from .image_data import DatasetUnavailable, make_dataset

    config = checkpoint["config"]
    data_dir = args.data_dir if args.data_dir is not None else config.get("data_dir") or "data"
    try:
        dataset = make_dataset(
            config["dataset"], split="test", image_size=config["image_size"], data_dir=data_dir,
            download=args.download, seed=config.get("seed", 0), num_images=args.from_dataset, augment=False,
        )
    except DatasetUnavailable as error:
        raise SampleError(one_line(error)) from None
    except ValueError as error:  # a missing folder, more images than the test split holds…
        message = str(error)
        named = "--data-dir" if "data_dir" in message else "--from-dataset"
        parser.error(f"argument {named}: " + message.replace("data_dir", "--data-dir").replace("num_images",
                                                                                              "--from-dataset"))
    pairs = [dataset[index] for index in range(len(dataset))]
    images = torch.stack([image for image, _ in pairs])  # (N, C, H, W) in [0, 1]
    labels = torch.tensor([label for _, label in pairs], dtype=torch.int64)
    if images.shape[1] != checkpoint["model_config"]["in_channels"]:
        raise SampleError(
            f"the test images of {config['dataset']} have {images.shape[1]} channels, but the checkpoint's model "
            f"takes {checkpoint['model_config']['in_channels']}"
        )
    return images * 2 - 1, labels


def inpainting_mask(
    args: argparse.Namespace, degradations: ModuleType, size: tuple[int, int], generator: torch.Generator,
    parser: argparse.ArgumentParser,
) -> torch.Tensor:
    """The (1, 1, H, W) mask of --mask (1 = known): a preset (strokes draw from ``generator``) or a PNG."""
    name = args.mask or DEFAULT_MASK
    if name in MASK_PRESETS:
        return degradations.make_mask(name, size, generator=generator)
    path = Path(name)
    if not path.suffix and not path.exists():
        parser.error(
            f"argument --mask: must be one of {', '.join(MASK_PRESETS)} or a PNG file (white = known); got {name!r}"
        )
    try:
        return degradations.load_mask(path, size)
    except ValueError as error:
        parser.error(f"argument --mask: {error} (a PNG, white = known, black = filled in)")


def masked_psnr(images: torch.Tensor, original: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image over the pixels where ``weights`` (1, 1, H, W) is 1, for images in [-1, 1].

    +inf where those pixels are equal; NaN for an image without such pixels. Returns (N,).
    """
    weights = weights.to(images.dtype).expand_as(images)
    error = ((images - original).pow(2) * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1)
    return 10 * torch.log10(4.0 / error)


def restore_images(
    diffusion: ModuleType, degradations: ModuleType, model: nn.Module, schedule, original: torch.Tensor,
    task: str, batch_size: int, options: dict, generator: torch.Generator, trajectory=None, progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """--task: degrade ``original`` with ``degradations.degrade`` (its draws first: denoise only), then sample
    x_0 conditioned on the degraded images, batch after batch, every draw from ``generator``.

    The model sees the degraded batch through ``provided.conditioning.ImageConditioned``, as in training.

    Returns:
        degraded and restored, (N, C, H, W) float32 on the CPU.
    """
    degraded = degradations.degrade(original, task, generator)
    device = schedule.betas.device
    network = ImageConditioned(model)
    restored = []
    for index, size in enumerate(batch_sizes(len(original), batch_size)):
        network.cond = degraded[index * batch_size : index * batch_size + size].to(device)
        restored.append(diffusion.sample_loop(
            network, schedule, tuple(network.cond.shape), generator=generator, device=device, progress=progress,
            trajectory=trajectory if index == 0 else None, **options,
        ).float().cpu())
    return degraded.float().cpu(), torch.cat(restored)


def inpaint_images(
    diffusion: ModuleType, model: nn.Module, schedule, original: torch.Tensor, mask: torch.Tensor,
    resample: int, batch_size: int, options: dict, generator: torch.Generator, labels: torch.Tensor | None = None,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE, trajectory=None, progress: bool = False,
) -> torch.Tensor:
    """--inpaint: ``diffusion.inpaint_loop`` on ``original`` batch after batch, every draw from ``generator``.

    A class-conditional model gets ``labels`` (N,) with ``guidance_scale`` (see ``provided.conditioning.guidance_inputs``).

    Returns:
        (N, C, H, W) float32 on the CPU: the known pixels are the original's.
    """
    device = schedule.betas.device
    inpainted = []
    for index, size in enumerate(batch_sizes(len(original), batch_size)):
        batch = slice(index * batch_size, index * batch_size + size)
        conditioning = {}
        if labels is not None:
            conditioning = guidance_inputs(labels[batch].to(device), guidance_scale, null_label=model.num_classes)
        inpainted.append(diffusion.inpaint_loop(
            model, schedule, original[batch], mask, resample=resample, generator=generator, device=device,
            progress=progress, trajectory=trajectory if index == 0 else None, **options, **conditioning,
        ).float().cpu())
    return torch.cat(inpainted)


def inpainting_labels(
    args: argparse.Namespace, classes: list[int] | None, labels: torch.Tensor, num_classes: int
) -> torch.Tensor | None:
    """The classes an --inpaint run asks a class-conditional model for: the test images' own labels,
    or --class-id's cycled when it is given; None for an unconditional model."""
    if classes is None:
        return None
    if args.class_id is not None:
        return cycled_labels(classes, len(labels))
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise SampleError(
            f"the test images' labels run from {labels.min().item()} to {labels.max().item()}, but the checkpoint's "
            f"model knows {num_classes} classes; choose them with --class-id"
        )
    return labels


def gif_timesteps(visited: list[int], frames: int) -> list[int]:
    """``frames`` − 1 of the ``visited`` timesteps (all, if fewer), evenly spread, first and last included."""
    count = min(frames - 1, len(visited))
    positions = torch.linspace(0, len(visited) - 1, count, dtype=torch.float64).round().long().tolist()
    return list(dict.fromkeys(visited[position] for position in positions))


class FirstImages:
    """Hands only the first ``count`` images of each step on to a ``diffusion.Trajectory``.

    ``sample_loop`` calls ``record`` and ``finish`` on whatever it is given as its
    trajectory; this keeps a large batch from filling the memory with frames no one sees.
    """

    def __init__(self, trajectory, count: int) -> None:
        self.trajectory, self.count = trajectory, count

    def record(self, t: int, x_t: torch.Tensor, x0_hat: torch.Tensor) -> None:
        self.trajectory.record(t, x_t[: self.count], x0_hat[: self.count])

    def finish(self, x0: torch.Tensor) -> None:
        self.trajectory.finish(x0[: self.count])


class DecodedFrames:
    """Phase 6: hands each frame of a latent sampling loop on to ``trajectory`` decoded into images."""

    def __init__(self, trajectory, space: LatentSpace) -> None:
        self.trajectory, self.space = trajectory, space

    def record(self, t: int, x_t: torch.Tensor, x0_hat: torch.Tensor) -> None:
        self.trajectory.record(t, self.space.decode(x_t), self.space.decode(x0_hat))

    def finish(self, x0: torch.Tensor) -> None:
        self.trajectory.finish(self.space.decode(x0))


def batch_sizes(num_samples: int, batch_size: int) -> list[int]:
    """The size of each batch: full ones, then what is left (e.g. 10 in 4s → [4, 4, 2])."""
    full, rest = divmod(num_samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def draw_samples(
    diffusion: ModuleType,
    model: nn.Module,
    schedule,
    image_shape: tuple[int, int, int],
    num_samples: int,
    batch_size: int,
    options: dict,
    generator: torch.Generator,
    trajectory=None,
    progress: bool = False,
    labels: torch.Tensor | None = None,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    space: LatentSpace | None = None,
    tokens: torch.Tensor | None = None,
    text_module: ModuleType | None = None,
) -> torch.Tensor:
    """``num_samples`` images from ``diffusion.sample_loop``, batch after batch.

    Every batch draws its noise from ``generator`` in turn, so the images depend on
    the seed and on ``batch_size``. The first batch is recorded into ``trajectory``
    (if given). ``options`` are sample_loop's keyword arguments (:func:`sampling_options`).
    For a class-conditional model, ``labels`` (num_samples,) are the images' classes,
    sampled with guidance scale ``guidance_scale`` (see ``provided.conditioning.guidance_inputs``).
    For a latent diffusion model (Phase 6) ``image_shape`` is the latents' and ``space`` decodes
    each batch (and each frame of the trajectory) into images. For a text-conditioned model
    (Phase 7), ``tokens`` (num_samples, L) are the images' captions, guided at ``guidance_scale``
    with the model's empty caption by ``text_module.TextGuidedModel``.

    Returns:
        (num_samples, C, H, W) float32 images on the CPU.
    """
    from tqdm.auto import tqdm

    sizes = batch_sizes(num_samples, batch_size)
    bar = tqdm(total=num_samples, desc="images", unit="img", disable=not progress or len(sizes) == 1)
    batches = []
    device = schedule.betas.device
    with bar:
        for index, size in enumerate(sizes):
            conditioning, network = {}, model
            if labels is not None:
                batch_labels = labels[index * batch_size : index * batch_size + size].to(device)
                conditioning = guidance_inputs(batch_labels, guidance_scale, null_label=model.num_classes)
            if tokens is not None:  # Phase 7: the captions go where class labels go, the guidance in the network
                batch_tokens = tokens[index * batch_size : index * batch_size + size].to(device)
                network, batch_tokens = text_guidance(text_module, model, batch_tokens, guidance_scale)
                conditioning = {"class_labels": batch_tokens}
            recorder = trajectory if index == 0 else None
            if recorder is not None and space is not None:
                recorder = DecodedFrames(recorder, space)
            images = diffusion.sample_loop(
                network, schedule, (size, *image_shape), generator=generator, device=device,
                progress=progress, trajectory=recorder, **options, **conditioning,
            )
            if space is not None:
                images = space.decode(images)
            batches.append(images.float().cpu())
            bar.update(size)
    return torch.cat(batches)


def draw_guidance_grid(
    diffusion: ModuleType, model: nn.Module, schedule, image_shape: tuple[int, int, int], classes: list[int] | None,
    scales: tuple[float, ...], batch_size: int, options: dict, generator: torch.Generator, progress: bool = False,
    space: LatentSpace | None = None, tokens: torch.Tensor | None = None, text_module: ModuleType | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """--guidance-grid: row r shows class ``classes[r]`` (or caption ``tokens[r]``), column c guidance
    scale ``scales[c]``.

    Each column is the run ``--num-samples len(classes) --guidance-scale w`` would make:
    the generator is put back to its starting state before every column, so every cell
    of a row starts from the same x_T (and, for a noisy sampler, gets the same z's).

    Returns:
        (rows × columns, C, H, W) images row after row, and their (rows × columns,) labels (or the
        (rows × columns, L) tokens).
    """
    labels = None if tokens is not None else torch.tensor(classes, dtype=torch.int64)
    rows = tokens if tokens is not None else labels
    start = generator.get_state()
    columns = []
    for scale in scales:
        generator.set_state(start)
        columns.append(draw_samples(
            diffusion, model, schedule, image_shape, len(rows), batch_size, options, generator,
            progress=progress, labels=labels, guidance_scale=scale, space=space, tokens=tokens,
            text_module=text_module,
        ))
    images = torch.stack(columns, dim=1).flatten(0, 1)  # (R, Cols, C, H, W) → row after row
    return images, rows.repeat_interleave(len(scales), dim=0)


def check_finite(images: torch.Tensor, impl: str) -> None:
    """Raise SampleError if any image holds NaN or ±inf (nothing is written then)."""
    bad = int((~torch.isfinite(images)).flatten(1).any(dim=1).sum())
    if bad:
        hint = (
            "check your Phase 4 functions (make grade PHASE=4) or compare with --impl solutions"
            if impl == "learner"
            else "the checkpoint's training may have diverged (see its loss.csv)"
        )
        raise SampleError(f"{bad} of {len(images)} samples hold NaN or inf values; nothing was written: {hint}")


# ---------------------------------------------------------------------------
# Writing the results
# ---------------------------------------------------------------------------


def default_grid_path(
    checkpoint: Path, options: dict, scales: tuple[float, ...] | None = None, prefix: str | None = None
) -> Path:
    """Where the grid goes without --out: beside the checkpoint, named after the sampler and N
    (and, for --guidance-grid, the scales of its columns, e.g. guidance_grid_ddim_50steps_w0-1-3-5.png;
    for --task and --inpaint, ``prefix``, e.g. restored_deblur_ddim_50steps.png)."""
    name = f"{options['sampler']}_{options['num_steps']}steps"
    if prefix is not None:
        return checkpoint.parent / f"{prefix}_{name}.png"
    if scales is not None:
        return checkpoint.parent / f"guidance_grid_{name}_w{'-'.join(f'{w:g}' for w in scales)}.png"
    return checkpoint.parent / f"samples_{name}.png"


def check_outputs(args: argparse.Namespace, parser: argparse.ArgumentParser, default_grid: Path) -> Path:
    """Refuse, before any sampling, a grid (--out, else ``default_grid``), --gif or --save-tensor that cannot be
    written, naming the flag; return the grid's path."""
    grid = Path(args.out) if args.out is not None else default_grid
    for name, path in (("--out", grid), ("--gif", args.gif), ("--save-tensor", args.save_tensor)):
        if path is not None:
            check_writable(parser, name, Path(path))
    return grid


def write_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] as one picture (``utils.image_grid``, ``nrow`` per row), atomically."""
    picture = to_pil(image_grid(images, nrow=nrow))
    image_format = GRID_FORMATS[path.suffix.lower()]
    atomic_write(path, lambda handle: picture.save(handle, format=image_format))
    return path


def write_gif(trajectory, path: Path) -> int:
    """Save a recorded trajectory as an animation (x_t beside x̂_0, frame by frame), atomically; return its frames."""
    frames = trajectory_frames(trajectory, max_images=GIF_IMAGES)
    save_gif(frames, path)
    return len(frames)


def write_tensor(images: torch.Tensor, metadata: dict, path: Path) -> Path:
    """Save the images and how they were made as one dict (format in ``--help``), atomically."""
    payload = {"format": SAMPLES_FORMAT, "version": SAMPLES_VERSION, "images": images, **metadata}
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


def describe(options: dict) -> str:
    """The sampler's settings in a few words, e.g. "ddim, 50 steps (trailing), η = 0, x̂_0 clipped"."""
    words = [f"{options['sampler']}, {options['num_steps']} steps ({options['spacing']})"]
    if options["sampler"] == "ddim":
        words.append(f"η = {options['eta']:g}")
    else:
        words.append(f"{options['variance']} variance")
    words.append("x̂_0 clipped" if options["clip_x0"] else "x̂_0 not clipped")
    return ", ".join(words)


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def image_shape(checkpoint: dict) -> tuple[int, int, int]:
    """(C, H, W) of the images the checkpoint's model was trained on (decoded ones, for a latent model)."""
    latent = checkpoint["config"].get("latent")
    if isinstance(latent, dict) and isinstance(latent.get("image_shape"), list):
        return tuple(latent["image_shape"])
    size = checkpoint["config"]["image_size"]
    return checkpoint["model_config"]["in_channels"], size, size


def open_latent_space(checkpoint: dict, impl: str, device: torch.device, name: str) -> LatentSpace | None:
    """Phase 6: the frozen autoencoder and scale a latent diffusion checkpoint was trained with (None: pixels)."""
    if not checkpoint["config"].get("latent"):
        return None
    try:
        return LatentSpace.from_checkpoint(checkpoint, import_impl("latent", impl), device, name)
    except LatentError as error:
        raise SampleError(str(error)) from None


def new_trajectory(diffusion: ModuleType, config: dict, options: dict, frames: int):
    """A ``diffusion.Trajectory`` keeping ``frames`` − 1 of the steps the sampler will visit."""
    visited = diffusion.inference_timesteps(config["timesteps"], options["num_steps"], options["spacing"])
    return diffusion.Trajectory(timesteps=gif_timesteps(visited.tolist(), frames))


def tensor_metadata(args: argparse.Namespace, path: Path, checkpoint: dict, options: dict, seconds: float) -> dict:
    """What --save-tensor stores beside the images (the format is in ``--help``)."""
    config = checkpoint["config"]
    return {
        "sampling": options, "seed": args.seed, "batch_size": args.batch_size,
        "weights": "ema" if args.ema else "raw", "checkpoint": str(path), "train_step": checkpoint.get("step"),
        "dataset": config.get("dataset"), "image_size": config["image_size"], "schedule": config["schedule"],
        "num_timesteps": config["timesteps"], "model_config": checkpoint["model_config"], "train_config": config,
        "impl": args.impl, "device": str(args.device), "seconds": seconds,
    }


def write_outputs(
    images: torch.Tensor, trajectory, args: argparse.Namespace, grid: Path, metadata: dict, nrow: int | None = None,
    grid_images: torch.Tensor | None = None,
) -> list[str]:
    """Write the grid (``nrow`` images per row; of ``grid_images`` if given, else of ``images``), and the
    GIF and the tensor if asked for; one summary line per file."""
    written = [f"grid:       {write_grid(images if grid_images is None else grid_images, grid, nrow)}"]
    if trajectory is not None:
        frames = write_gif(trajectory, Path(args.gif))
        written.append(f"trajectory: {args.gif} ({frames} frames)")
    if args.save_tensor is not None:
        written.append(f"tensor:     {write_tensor(images, metadata, Path(args.save_tensor))}")
    return written


def sample_images(
    args: argparse.Namespace, diffusion: ModuleType, model: nn.Module, schedule, checkpoint: dict, options: dict,
    classes: list[int] | None, generator: torch.Generator, trajectory=None, space: LatentSpace | None = None,
    prompts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images the flags ask for and their labels (None for an unconditional model; the tokens
    (N, L) of their captions for a text-conditioned one).

    Four cases: an unconditional model; a class-conditional one, whose images cycle
    through ``classes`` with guidance scale --guidance-scale; a text-conditioned one, whose
    images cycle through the ``prompts`` (P, L) the same way; or --guidance-grid. A latent
    diffusion model (``space``) samples latents and decodes them.
    """
    text_module = None if prompts is None else import_impl("text", args.impl)
    shape, progress = image_shape(checkpoint) if space is None else space.shape, sys.stderr.isatty()
    if args.guidance_grid is not None:
        return draw_guidance_grid(
            diffusion, model, schedule, shape, classes, args.guidance_grid, args.batch_size, options, generator,
            progress=progress, space=space, tokens=prompts, text_module=text_module,
        )
    num_samples = args.num_samples or DEFAULT_NUM_SAMPLES
    labels = None if classes is None else cycled_labels(classes, num_samples)
    tokens = None if prompts is None else prompts[cycled_labels(list(range(len(prompts))), num_samples)]
    images = draw_samples(
        diffusion, model, schedule, shape, num_samples, args.batch_size, options, generator,
        trajectory=None if trajectory is None else FirstImages(trajectory, GIF_IMAGES), progress=progress,
        labels=labels, guidance_scale=guidance_of(args), space=space, tokens=tokens, text_module=text_module,
    )
    return images, (labels if tokens is None else tokens)


def guidance_of(args: argparse.Namespace) -> float | list[float]:
    """The guidance scale w of the images: --guidance-scale (default 3), or --guidance-grid's list."""
    if args.guidance_grid is not None:
        return list(args.guidance_grid)
    return DEFAULT_GUIDANCE_SCALE if args.guidance_scale is None else args.guidance_scale


def conditioning_words(args: argparse.Namespace, classes: list[int] | None) -> str:
    """How the images were conditioned, for the summary ("" for an unconditional model)."""
    if classes is None and not args.prompt:
        return ""
    what = class_words(classes) if classes is not None else prompt_words(args.prompt)
    if args.guidance_grid is not None:
        return f"; rows: {what}; columns: guidance {scale_words(args.guidance_grid)}"
    return f"; {what}, guidance {scale_words([guidance_of(args)])}"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Load the checkpoint, sample, write the files, print a summary (see :func:`main`)."""
    path = checkpoint_path(args.checkpoint)
    checkpoint = read_checkpoint(path)
    options = sampling_options(args, checkpoint["config"], parser)
    prompts = prompt_tokens(args, checkpoint, parser)  # Phase 7: (P, L), or None for a model without text
    classes = None if prompts is not None else class_ids(args, checkpoint["model_config"].get("num_classes") or 0, parser)
    if prompts is not None and (args.inpaint or args.task is not None):
        parser.error(f"argument {'--inpaint' if args.inpaint else '--task'}: not with a text-conditioned checkpoint "
                     "(train.py --captions); it draws new images for --prompt")
    task = image_task(args, checkpoint, parser)
    for note in ignored_flags(args):
        print(note)
    if checkpoint["config"].get("latent"):
        if args.inpaint:
            parser.error(f"argument --inpaint: {path} is a latent diffusion model (Phase 6); inpainting works on "
                         "pixel models here")
        options["clip_x0"] = False  # latents have unit variance: about a third lies outside [-1, 1] (§6.5)
    if task is not None or args.inpaint:
        return run_on_test_images(args, parser, path, checkpoint, options, classes, task)

    scales = args.guidance_grid
    grid = check_outputs(args, parser, default_grid_path(path, options, scales))
    diffusion = import_impl("diffusion", args.impl)
    model, schedule = load_model(checkpoint, args.impl, args.device, ema=args.ema, name=str(path))
    space = open_latent_space(checkpoint, args.impl, args.device, str(path))
    trajectory = None if args.gif is None else new_trajectory(diffusion, checkpoint["config"], options, args.gif_frames)
    generator = seed_everything(args.seed)
    started = time.perf_counter()
    with torch.inference_mode():
        images, labels = sample_images(
            args, diffusion, model, schedule, checkpoint, options, classes, generator, trajectory, space, prompts
        )
    seconds = time.perf_counter() - started
    check_finite(images, args.impl)
    images = images.clamp(-1.0, 1.0)

    metadata = tensor_metadata(args, path, checkpoint, options, seconds)
    conditioned = classes is not None or prompts is not None
    metadata.update(labels=labels, guidance_scale=guidance_of(args) if conditioned else None)
    if prompts is not None:  # the tokens are in labels; the texts, image by image, here
        metadata["prompts"] = [args.prompt[i % len(args.prompt)] for i in range(len(images))] if not scales else \
            [text for text in args.prompt for _ in scales]
    nrow = len(scales) if scales else (len(args.prompt) if prompts is not None and len(args.prompt) > 1 else None)
    written = write_outputs(images, trajectory, args, grid, metadata, nrow=nrow)
    weights = "EMA" if args.ema else "raw (--no-ema)"
    print(
        f"sampled {len(images)} images of {'×'.join(map(str, image_shape(checkpoint)))} from the {weights} "
        f"weights of {path} (step {checkpoint.get('step', '?')}) with {CODE_NAMES[args.impl]} on {args.device}: "
        f"{describe(options)}; seed {args.seed}{conditioning_words(args, classes)}"
    )
    print(f"took {seconds:.1f} s, {len(images) / max(seconds, 1e-9):.1f} images/s")
    print("\n".join(written))
    return 0


def run_on_test_images(
    args: argparse.Namespace, parser: argparse.ArgumentParser, path: Path, checkpoint: dict, options: dict,
    classes: list[int] | None, task: str | None,
) -> int:
    """Phase 5: restore (``task``, a --task checkpoint) or inpaint (--inpaint) --from-dataset test images;
    write the grid of three rows per group, print the metrics (see :func:`run`)."""
    if task is not None:
        prefix = f"restored_{task}"
    else:
        mask_name = Path(args.mask).stem if args.mask and args.mask not in MASK_PRESETS else args.mask or DEFAULT_MASK
        prefix = f"inpainted_{mask_name}"
    grid = check_outputs(args, parser, default_grid_path(path, options, prefix=prefix))
    original, dataset_labels = dataset_images(args, checkpoint, parser)
    degradations = import_impl("degradations", args.impl)
    generator = seed_everything(args.seed)
    mask = None
    if args.inpaint:  # first, so that a bad --mask is reported before the model is loaded
        mask = inpainting_mask(args, degradations, tuple(original.shape[-2:]), generator, parser)
        hidden = 1 - mask.mean().item()
        if hidden in (0.0, 1.0):
            kept = "every pixel is kept as it is" if hidden == 0 else "nothing of the images is kept: it draws new ones"
            print(f"sample.py: warning: the mask {args.mask or DEFAULT_MASK} hides {hidden:.0%} of the pixels, so "
                  f"{kept}", file=sys.stderr)
    diffusion = import_impl("diffusion", args.impl)
    model, schedule = load_model(checkpoint, args.impl, args.device, ema=args.ema, name=str(path))
    trajectory = None if args.gif is None else new_trajectory(diffusion, checkpoint["config"], options, args.gif_frames)
    recorder = None if trajectory is None else FirstImages(trajectory, GIF_IMAGES)
    progress = sys.stderr.isatty()
    labels = inpainting_labels(args, classes, dataset_labels, model.num_classes) if args.inpaint else None
    started = time.perf_counter()
    with torch.inference_mode():
        if task is not None:
            degraded, images = restore_images(
                diffusion, degradations, model, schedule, original, task, args.batch_size, options, generator,
                trajectory=recorder, progress=progress,
            )
        else:
            images = inpaint_images(
                diffusion, model, schedule, original, mask, args.resample or 1, args.batch_size, options, generator,
                labels=labels, guidance_scale=guidance_of(args), trajectory=recorder, progress=progress,
            )
    seconds = time.perf_counter() - started
    check_finite(images, args.impl)
    images = images.clamp(-1.0, 1.0)
    metadata = tensor_metadata(args, path, checkpoint, options, seconds)
    count = len(images)
    if task is not None:
        scores = {
            name: {"restored": metric(images, original), "degraded": metric(degraded, original)}
            for name, metric in (("psnr", degradations.psnr), ("ssim", degradations.ssim))
        }
        metadata.update(task=task, original=original, degraded=degraded, restored=images, labels=None,
                        guidance_scale=None, **scores)
        grid_images, per_row = triplet_rows(degraded, images, original)
        rows = "degraded, restored, original"
        what = f"restored {count} test images of {checkpoint['config']['dataset']} ({task}: " \
               f"{degradations.TASKS[task].description})"
        means = {kind: (scores["psnr"][kind].mean().item(), scores["ssim"][kind].mean().item())
                 for kind in ("restored", "degraded")}
        metrics = [
            f"restored vs original: PSNR {means['restored'][0]:.2f} dB, SSIM {means['restored'][1]:.3f} "
            f"(means over {count} images)",
            f"degraded vs original: PSNR {means['degraded'][0]:.2f} dB, SSIM {means['degraded'][1]:.3f}",
        ]
    else:
        masked = degradations.apply_mask(original, mask, MASK_FILL)
        psnr = {"known": masked_psnr(images, original, mask), "hidden": masked_psnr(images, original, 1 - mask),
                "whole": degradations.psnr(images, original)}
        metadata.update(mask=mask, mask_name=args.mask or DEFAULT_MASK, original=original, masked=masked,
                        inpainted=images, psnr=psnr, resample=args.resample or 1, labels=labels,
                        guidance_scale=None if classes is None else guidance_of(args))
        grid_images, per_row = triplet_rows(original, masked, images)
        rows = "original, masked, inpainted"
        resampling = f", {args.resample} tries per step" if (args.resample or 1) > 1 else ""
        guided = "" if labels is None else f"; the images' classes, guidance {scale_words([guidance_of(args)])}"
        if labels is not None and args.class_id is not None:
            guided = f"; {class_words(classes)}, guidance {scale_words([guidance_of(args)])}"
        what = (f"inpainted {count} test images of {checkpoint['config']['dataset']} "
                f"(mask {args.mask or DEFAULT_MASK}: {hidden:.0%} hidden{resampling}{guided})")
        means = {kind: values.mean().item() for kind, values in psnr.items()}
        metrics = [
            f"inpainted vs original: PSNR {means['known']:.2f} dB over the known pixels (inf: kept as they were), "
            f"{means['hidden']:.2f} dB over the hidden ones, {means['whole']:.2f} dB over the whole images "
            f"(means over {count} images)"
        ]
    written = write_outputs(images, trajectory, args, grid, metadata, nrow=per_row, grid_images=grid_images)
    weights = "EMA" if args.ema else "raw (--no-ema)"
    print(
        f"{what} with the {weights} weights of {path} (step {checkpoint.get('step', '?')}) and "
        f"{CODE_NAMES[args.impl]} on {args.device}: {describe(options)}; seed {args.seed}; grid rows: {rows}"
    )
    print("\n".join(metrics))
    print(f"took {seconds:.1f} s, {count / max(seconds, 1e-9):.1f} images/s")
    print("\n".join(written))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python sample.py …``: returns the exit status.

    0: done; 1: an error (one line on stderr: a missing or damaged checkpoint, a stub
    not written yet, …); 2: a bad flag (argparse's message, naming the flag); 130: Ctrl-C.
    """
    args, parser = parse_args(argv)
    return run_command(
        "sample.py", lambda: run(args, parser),
        needs="Sampling runs noise_schedule.py, unet.py and diffusion.py (and degradations.py with --task "
              "or --inpaint)",
        interrupted="stopped by Ctrl-C", memory="lower --batch-size (or --num-samples)")

