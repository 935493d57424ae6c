"""Measure a model's samples: class accuracy, Fréchet distance, precision and recall (provided).

    python evaluate.py --checkpoint runs/demo/last.pt --num-samples 1000
    python evaluate.py --checkpoint runs/digits-cfg --sweep 0,1,2,3,5
    python evaluate.py --samples samples.pt            # images of sample.py --save-tensor

The images (drawn from a train.py checkpoint with the sampler of sample.py, or read
from a sample.py --save-tensor file) are compared with N images of the held-out test
split of the checkpoint's dataset, N being the number of samples, in the feature space
of a small classifier trained once per dataset (``provided/classifier.py``, cached
in ``data/classifiers/<dataset>.pt``; the first run trains it, about half a minute for
the digits on a CPU). Reported:

* accuracy: the fraction of class-conditional samples the classifier assigns to the
  class they were asked for (unconditional models: not defined; the predicted classes
  are counted instead);
* Fréchet distance: between Gaussians fitted to the features of the samples and of
  the N held-out images (FID's formula on the classifier's features). It depends on N,
  so it is always computed with N images on both sides;
* its floor: the same distance between the N held-out images and N training images,
  what real images score at this N;
* precision and recall with k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019):
  how many samples look real, and how much of the real variety the samples cover.

--sweep repeats the measurement of a class-conditional model at several guidance
scales w (every scale from the same noise) and writes a table and a plot.

A text-conditioned checkpoint (train.py --captions, Phase 7) is measured for prompt
adherence instead (provided/adherence.py): --per-pair images of every digit × attribute
prompt (thin or bold, a slant, a colour), held-out pairs five times as many, each image
judged against its own prompt: the digit by the classifier, the stroke by its width,
the slant by its image moments, the colour by its foreground hue. The same rules on
real test images give the floor; seen and held-out pairs are reported apart. When
pytorch-fid or torchmetrics and their Inception weights are installed, the usual
Inception FID is added; otherwise one line says so.

Nothing here is graded. The sampling runs your noise_schedule.py, unet.py and
diffusion.py with --impl learner (the default), the reference with --impl solutions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from utils import import_impl, seed_everything

from .classifier import (
    ClassifierError,
    FeatureClassifier,
    classifier_for,
    classify,
    dataset_tensors,
    default_classifier_path,
    load_classifier,
)
from .inception import InceptionUnavailable, inception_extractor, inception_features
from .metrics import DEFAULT_KNN, accuracy, frechet_distance, precision_recall
from .choices import DEFAULT_DDIM_STEPS, DEFAULT_GUIDANCE_SCALE, SAMPLERS
from . import cli
from .cli import (
    SEED_WHY, CommandError, check_writable, flag, float_in, guidance_scales, int_at_least,
    one_line, run_command, setting_problem,
)
from . import adherence, captions
from .captions import Prompt, Tokenizer
from .files import UnreadableFile, atomic_write, read_torch_file, write_json
from .latent_space import LatentError, load_autoencoder, measure_statistics, reconstruction_rows
from .image_data import DATASETS, DatasetUnavailable, labelled_datasets, make_dataset
from .sampling import (
    SampleError,
    check_finite,
    checkpoint_path,
    cycled_labels,
    draw_samples,
    image_shape,
    load_model,
    open_latent_space,
    read_checkpoint,
    resolve_run_flags,
    write_grid,
)
from .training import build_parser as train_parser

#: What metrics.json says it is (its "format" field).
METRICS_FORMAT = "diffusion-exercises/evaluate.py metrics"
METRICS_VERSION = 1
#: Images sampled (and real images in each reference set) without --num-samples.
DEFAULT_NUM_SAMPLES = 1000
DEFAULT_BATCH_SIZE = 100
DEFAULT_SEED = 0
#: How many samples the samples.png grid shows.
GRID_IMAGES = 100
#: Text-conditioned checkpoints (Phase 7): images per seen digit × attribute pair without --per-pair,
#: and how many times more each held-out pair gets (there are only a few of them).
DEFAULT_PER_PAIR = 8
MAX_PER_PAIR = 100
HELD_OUT_REPEATS = 5
#: The phrasings of the evaluation prompts (captions.evaluation_prompts' seed): the same set every time.
PROMPT_SEED = 0
#: The flags that only sampling uses (refused with --samples, whose images are drawn already).
SAMPLING_FLAGS = ("sampler", "steps", "guidance_scale", "sweep", "batch_size", "seed", "no_ema", "per_pair")


class EvaluateError(CommandError):
    """A problem that stops the command, reported as one line (``evaluate.py: error: …``), exit status 1."""


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------

HELP_DESCRIPTION = """\
Measure the samples of a diffusion model against the held-out test split of its dataset, in
the feature space of a small classifier trained once per dataset (cached in
DATA_DIR/classifiers/DATASET.pt): class accuracy, Fréchet distance (and its floor, held-out
vs training images), precision and recall (k-NN manifolds, Kynkäänniemi et al. 2019)."""

HELP_EPILOG = """\
metrics.json (in --out) holds:
  accuracy             fraction of the samples that the classifier puts in the class they were
                       drawn for (null for an unconditional model)
  frechet_distance     Fréchet distance between the classifier features of the N samples and
                       of N held-out (test-split) images: ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½)
  frechet_distance_floor  the same between the N held-out images and N training images: what
                       real images score (the distance grows as N shrinks: compare equal N only)
  precision, recall    fraction of samples inside the held-out images' k-NN manifold, and of
                       held-out images inside the samples' one (k = --knn)
  floor                accuracy, precision and recall of the N held-out images themselves
                       (against their true labels, and against the N training images)
  predicted_classes    how many samples the classifier puts in each class
  num_samples, knn, guidance_scale, dataset, image_size, classifier (its file and test accuracy),
  inception (Inception FID and its floor, or null and the reason), sweep (one entry per
  --sweep scale, or null), source (the checkpoint or samples file, the sampler), seconds
 with --sweep also sweep.md (a table) and sweep.png (accuracy, Fréchet distance, precision
 and recall against w); samples.png shows the first samples.

A text-conditioned checkpoint (train.py --captions, Phase 7) is measured for prompt adherence: one
image per evaluation prompt (provided/captions.py), --per-pair K per seen digit × attribute pair
and 5·K per held-out pair, each judged against its prompt at the model's own image size (the
digit by a classifier trained at that size, DATA_DIR/classifiers/DATASET-SIZEpx.pt when it is not
the dataset's own; thin or bold by the stroke width against the digit's training images; the
slant class by image moments;
the colour class by the foreground hue; provided/adherence.py). metrics.json then holds
"adherence" (seen and held-out: digit, attribute and both followed, per attribute kind, and
pair by pair), "floor" (the same rules on real test images), "sweep", "prompts"; adherence.md
the tables, samples.png a row per attribute value and a column per digit.

A latent diffusion checkpoint (train.py --autoencoder, Phase 6) is measured the same way, its
samples decoded and resized to the dataset's own size. An autoencoder's checkpoint (train.py
--train-autoencoder) is measured instead on N held-out images: reconstruction PSNR and SSIM (from
the posterior mean), the KL per latent element, and the standard deviation of its latents before
and after the scale of latent_statistics (measured on N training images); it writes
metrics.json and reconstructions.png (originals above reconstructions).

examples:
  python evaluate.py --checkpoint runs/demo/last.pt --num-samples 500
  python evaluate.py --checkpoint runs/ae/last.pt --num-samples 500   # an autoencoder (Phase 6)
  python evaluate.py --checkpoint runs/digits-cfg --guidance-scale 3 --sweep 0,1,2,3,5
  python evaluate.py --checkpoint runs/digits-text --sweep 1,3,5   # prompt adherence (Phase 7)
  python evaluate.py --samples samples.pt --out runs/demo/eval_samples
  python evaluate.py --checkpoint runs/demo --impl solutions --device cpu --knn 5"""


def build_parser() -> argparse.ArgumentParser:
    """The command line, one argument group per concern."""
    parser = argparse.ArgumentParser(
        prog="evaluate.py", description=HELP_DESCRIPTION, epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("what to measure (one of the two)").add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="FILE",
                        help="a checkpoint of train.py (such as runs/demo/last.pt) or a run's folder (its last.pt): "
                        "the images are sampled from its EMA weights")
    source.add_argument("--samples", metavar="FILE",
                        help="instead, images already drawn: a file of sample.py --save-tensor (its dataset, labels "
                        "and guidance scale are read from it)")

    sampling = parser.add_argument_group("sampling (with --checkpoint)")
    sampling.add_argument("--num-samples", default=None, type=int_at_least(2, cli.MAX_TEST_IMAGES), metavar="N",
                          help=f"images to sample (default: {DEFAULT_NUM_SAMPLES}); with --samples, measure the "
                          "file's first N (default: all). Each reference set (held-out, training) has N images too")
    sampling.add_argument("--sampler", default=None, choices=SAMPLERS, help="the sampler (default: ddim)")
    sampling.add_argument("--steps", default=None, type=int_at_least(1, cli.MAX_TIMESTEPS), metavar="S",
                          help=f"network calls per image, at most T (default: {DEFAULT_DDIM_STEPS} for ddim, "
                          "T for ddpm)")
    sampling.add_argument("--guidance-scale", default=None, type=float_in(0.0, low_open=False), metavar="W",
                          help="class-conditional models: the classifier-free guidance scale w (0: unconditional, "
                          f"1: plain conditional; default: {DEFAULT_GUIDANCE_SCALE:g}); the classes are cycled, so "
                          "each has N / K samples")
    sampling.add_argument("--sweep", default=None, type=guidance_scales, metavar="W1,W2,…",
                          help="class-conditional models: also measure at each of these scales, such as 0,1,2,3,5 "
                          "(every scale from the same noise); writes sweep.md and sweep.png")
    sampling.add_argument("--batch-size", default=None, type=int_at_least(1, cli.MAX_BATCH_SIZE), metavar="B",
                          help=f"images sampled at once (default: {DEFAULT_BATCH_SIZE})")
    sampling.add_argument("--seed", default=None, type=int_at_least(0, cli.MAX_SEED, SEED_WHY), metavar="S",
                          help=f"seed of the sampling noise (default: {DEFAULT_SEED}); the real images do not "
                          "depend on it: N of each split for the checkpoint's data seed (the digits: the first N "
                          "drawn)")
    sampling.add_argument("--per-pair", default=None, type=int_at_least(1, MAX_PER_PAIR), metavar="K",
                          help="text-conditioned checkpoints (train.py --captions): images of each seen digit × "
                          f"attribute pair, each with its own phrasing (default: {DEFAULT_PER_PAIR}); each held-out "
                          f"pair gets {HELD_OUT_REPEATS}×K")
    sampling.add_argument("--no-ema", action="store_true",
                          help="sample with the trained weights as they are rather than their EMA")

    metrics = parser.add_argument_group("metrics")
    metrics.add_argument("--knn", default=DEFAULT_KNN, type=int_at_least(1, cli.MAX_TEST_IMAGES), metavar="K",
                         help="k of the k-nearest-neighbour balls of precision and recall (default: %(default)s)")
    metrics.add_argument("--data-dir", default=None, metavar="DIR",
                         help="where the dataset is, and its classifiers/ cache (default: the checkpoint's "
                         "train.py --data-dir, usually data)")
    metrics.add_argument("--download", action="store_true",
                         help="let torchvision download a missing dataset (MNIST, Fashion-MNIST, CIFAR-10)")
    metrics.add_argument("--classifier", default=None, metavar="FILE",
                         help="the classifier file to use, or to train and write when it does not exist "
                         "(default: DATA_DIR/classifiers/DATASET.pt)")
    metrics.add_argument("--retrain-classifier", action="store_true",
                         help="train the classifier again (seeded) and overwrite its file")
    metrics.add_argument("--no-inception", dest="inception", action="store_false",
                         help="do not look for Inception (pytorch-fid or torchmetrics) to add the usual FID")

    output = parser.add_argument_group("output")
    output.add_argument("--out", default=None, metavar="DIR",
                        help="folder for metrics.json, samples.png and the sweep's sweep.md and sweep.png "
                        "(default: eval/ beside the checkpoint, or FILE_eval/ beside the --samples file)")

    cli.add_run_flags(parser)
    return cli.document_bounds(parser)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """The checked flags (impl and device resolved) and the parser, for later errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_run_flags(args, parser)
    if args.samples is not None:
        for name in SAMPLING_FLAGS:
            if getattr(args, name) not in (None, False):
                parser.error(f"argument {flag(name)}: used with --checkpoint only (the images of --samples are "
                             "drawn already); drop it")
    return args, parser


# ---------------------------------------------------------------------------
# What is measured: a checkpoint to sample from, or a file of samples
# ---------------------------------------------------------------------------


@dataclass
class Source:
    """The model or the file the images come from, and what the metrics need to know of it."""

    kind: str  # "checkpoint" or "samples"
    path: Path
    dataset: str
    image_size: int
    channels: int
    num_classes: int  # K of a class-conditional model, else 0
    data_dir: str
    data_seed: int
    num_samples: int
    checkpoint: dict | None = None
    images: torch.Tensor | None = None  # --samples: (N, C, H, W) in [-1, 1]
    labels: torch.Tensor | None = None
    guidance_scale: float | None = None
    details: dict = field(default_factory=dict)
    prompts: list[Prompt] | None = None  # a text-conditioned checkpoint's evaluation prompts, one per image


def check_dataset(name: object, where: str) -> str:
    """``name`` if it is a labelled dataset of DATASETS, else EvaluateError naming ``where``."""
    labelled = labelled_datasets()
    if name not in DATASETS:
        raise EvaluateError(f"{where}: its dataset {name!r} is unknown; evaluate.py knows {', '.join(labelled)}")
    if not DATASETS[name].num_classes:
        raise EvaluateError(
            f"{where}: its dataset {name!r} has no class labels, and the metrics need a classifier trained on "
            f"labels; evaluate a model of {', '.join(labelled)}"
        )
    return name


def open_checkpoint(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Source:
    """The --checkpoint, checked against the sampling flags."""
    path = checkpoint_path(args.checkpoint)
    try:
        checkpoint = read_checkpoint(path)
    except SampleError as error:
        raise EvaluateError(f"argument --checkpoint: {error}") from None
    config = checkpoint["config"]
    if config.get("task"):
        raise EvaluateError(
            f"argument --checkpoint: {path} was trained with --task {config['task']}: it restores images rather "
            "than generating them; evaluate a model trained without --task"
        )
    dataset = check_dataset(config.get("dataset"), f"argument --checkpoint: {path}")
    num_classes = checkpoint["model_config"].get("num_classes") or 0
    prompts, per_pair = None, None
    if config.get("captions"):  # Phase 7: one image per evaluation prompt, judged against it
        if args.num_samples is not None:
            parser.error(f"argument --num-samples: {path} is text-conditioned (train.py --captions): it draws "
                         "--per-pair images of every digit × attribute prompt instead; drop --num-samples")
        per_pair = args.per_pair or DEFAULT_PER_PAIR
        prompts = adherence.prompt_set(dataset, per_pair, per_pair * HELD_OUT_REPEATS, PROMPT_SEED)
    elif args.per_pair is not None:
        parser.error("argument --per-pair: for text-conditioned checkpoints (train.py --captions) only; use "
                     "--num-samples")
    if not num_classes and prompts is None:
        for name in ("guidance_scale", "sweep"):
            if getattr(args, name) is not None:
                parser.error(f"argument {flag(name)}: the checkpoint's model is unconditional (trained without "
                             "--class-conditional): it has no classes to guide towards; drop the flag")
    sampler = args.sampler or "ddim"
    timesteps = config["timesteps"]
    steps = args.steps or (timesteps if sampler == "ddpm" else min(DEFAULT_DDIM_STEPS, timesteps))
    if steps > timesteps:
        parser.error(f"argument --steps: at most T = {timesteps} (the checkpoint's --timesteps); got {steps}")
    latent = bool(config.get("latent"))  # Phase 6: latents are not clipped, and decode to image_shape
    options = dict(sampler=sampler, num_steps=steps, eta=0.0, variance="small", spacing="trailing",
                   prediction=config["prediction"], clip_x0=not latent)
    return Source(
        kind="checkpoint", path=path, dataset=dataset,
        # decoded latents are measured at the dataset's own size; text-conditioned samples at the model's, where
        # the strokes are not blurred by one more resizing (and the classifier is one trained at that size)
        image_size=config["image_size"] if prompts is not None or not latent else DATASETS[dataset].image_size,
        channels=image_shape(checkpoint)[0], num_classes=num_classes,
        data_dir=config.get("data_dir") or "data", data_seed=int(config.get("seed") or 0),
        num_samples=len(prompts) if prompts is not None else args.num_samples or DEFAULT_NUM_SAMPLES,
        checkpoint=checkpoint, prompts=prompts,
        guidance_scale=(DEFAULT_GUIDANCE_SCALE if args.guidance_scale is None else args.guidance_scale)
        if num_classes or prompts is not None else None,
        details={"checkpoint": str(path), "train_step": checkpoint.get("step"), "sampling": options,
                 "seed": DEFAULT_SEED if args.seed is None else args.seed,
                 "batch_size": args.batch_size or DEFAULT_BATCH_SIZE, "weights": "raw" if args.no_ema else "ema",
                 "impl": args.impl, "device": str(args.device), **({"per_pair": per_pair} if prompts else {})},
    )


def open_samples(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Source:
    """The --samples file of sample.py --save-tensor, checked."""
    path = Path(args.samples)
    where = f"argument --samples: {path}"
    if not path.is_file():
        raise EvaluateError(f"argument --samples: there is no file {path}; write one with "
                            "python sample.py --checkpoint … --save-tensor FILE")
    try:
        payload = read_torch_file(path)
    except UnreadableFile as error:
        raise EvaluateError(f"{where} cannot be read ({error}): the file is damaged "
                            "or was not written by sample.py --save-tensor") from None
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise EvaluateError(f"{where} is not a file of sample.py --save-tensor: it has no (N, C, H, W) float images")
    if "task" in payload or "inpainted" in payload:
        raise EvaluateError(f"{where} holds restored or inpainted test images (sample.py --task / --inpaint), not "
                            "generated ones; save samples without those flags")
    guidance = payload.get("guidance_scale")
    if isinstance(guidance, (list, tuple)):
        raise EvaluateError(f"{where} mixes several guidance scales (sample.py --guidance-grid); save one scale per "
                            "file, or measure several with evaluate.py --checkpoint … --sweep")
    train_config = payload.get("train_config") if isinstance(payload.get("train_config"), dict) else {}
    problem = setting_problem(train_parser(), train_config)
    if problem:
        raise EvaluateError(f"{where}: its train_config's {problem}; the file is damaged or was edited")
    if guidance is not None and (isinstance(guidance, bool) or not isinstance(guidance, (int, float))
                                 or not (math.isfinite(guidance) and guidance >= 0)):
        raise EvaluateError(f"{where}: its guidance_scale is {guidance!r}, expected a number ≥ 0 (or None)")
    dataset = check_dataset(payload.get("dataset") or train_config.get("dataset"), where)
    if not torch.isfinite(images).all():
        raise EvaluateError(f"{where}: some images hold NaN or inf values")
    count = args.num_samples or images.shape[0]
    if count > images.shape[0]:
        parser.error(f"argument --num-samples: {path} holds {images.shape[0]} images; got {count}")
    labels = payload.get("labels")
    num_classes = DATASETS[dataset].num_classes if labels is not None else 0
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
            raise EvaluateError(f"{where}: its labels are not one class per image")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise EvaluateError(f"{where}: its labels run outside the {num_classes} classes of {dataset}")
        labels = labels[:count].long()
    return Source(
        kind="samples", path=path, dataset=dataset, image_size=images.shape[-1], channels=images.shape[1],
        num_classes=num_classes, data_dir=train_config.get("data_dir") or "data",
        data_seed=int(train_config.get("seed") or 0), num_samples=count, images=images[:count].float(),
        labels=labels, guidance_scale=None if labels is None or guidance is None else float(guidance),
        details={"samples": str(path), "checkpoint": payload.get("checkpoint"), "train_step": payload.get("train_step"),
                 "sampling": payload.get("sampling"), "seed": payload.get("seed")},
    )


# ---------------------------------------------------------------------------
# The classifier and the real images
# ---------------------------------------------------------------------------


def classifier_size(source: Source) -> int | None:
    """The image size the classifier works at: a text model's own (prompt adherence judges its samples as drawn;
    a classifier trained at 28 pixels misreads ~6% of real digits resized 28→32→28), else None: the dataset's."""
    return source.image_size if source.prompts is not None else None


def the_classifier(args: argparse.Namespace, source: Source, data_dir: str) -> tuple[FeatureClassifier, dict, Path]:
    """The dataset's classifier (at classifier_size): --classifier's file, or the cache (trained when missing)."""
    size = classifier_size(source)
    if args.classifier is not None and Path(args.classifier).exists() and not args.retrain_classifier:
        try:
            model, record = load_classifier(args.classifier, source.dataset, size)
        except ClassifierError as error:
            raise EvaluateError(f"argument --classifier: {error}; give another file, or add --retrain-classifier "
                                "to train one there") from None
        path = Path(args.classifier)
    else:
        try:
            model, record, path = classifier_for(
                source.dataset, data_dir=data_dir, path=args.classifier, image_size=size,
                retrain=args.retrain_classifier, download=args.download, device=args.device,
            )
        except ClassifierError as error:
            raise EvaluateError(str(error)) from None
    if model.config["in_channels"] != source.channels:
        raise EvaluateError(f"the classifier in {path} takes {model.config['in_channels']}-channel images, but the "
                            f"images to measure have {source.channels}")
    return model, record, path


def real_images(
    dataset: str, split: str, source: Source, data_dir: str, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first N images of a split at the source's size ((N, C, H, W) in [0, 1]) and their labels."""
    try:
        images = make_dataset(dataset, split=split, image_size=source.image_size, data_dir=data_dir,
                              download=download, seed=source.data_seed, num_images=source.num_samples, augment=False)
    except DatasetUnavailable as error:
        raise EvaluateError(" ".join(str(error).split())) from None
    except ValueError as error:
        message = str(error)
        named = "--data-dir" if "data_dir" in message else "--num-samples"
        message = message.replace("data_dir", "--data-dir").replace("num_images", "--num-samples")
        raise EvaluateError(f"argument {named}: the {split} split of {dataset}: {message}") from None
    return dataset_tensors(images)


@dataclass
class Reference:
    """The N held-out (test) and N training images, their classifier features, and what they score."""

    test_images: torch.Tensor
    train_images: torch.Tensor
    test_features: torch.Tensor
    train_features: torch.Tensor
    floor: dict


def reference_set(
    classifier: FeatureClassifier, source: Source, data_dir: str, download: bool, knn: int, device: torch.device
) -> Reference:
    """The reference sets and the floor: held-out vs training images, both N."""
    test_images, test_labels = real_images(source.dataset, "test", source, data_dir, download)
    train_images, _ = real_images(source.dataset, "train", source, data_dir, download)
    if test_images.shape[1] != source.channels:
        raise EvaluateError(f"the images of {source.dataset} have {test_images.shape[1]} channels, but the images to "
                            f"measure have {source.channels}")
    test_features, test_predicted = classify(classifier, test_images, device)
    train_features, _ = classify(classifier, train_images, device)
    precision, recall = precision_recall(test_features, train_features, knn)
    floor = {
        "accuracy": accuracy(test_predicted, test_labels),
        "frechet_distance": frechet_distance(train_features, test_features),
        "precision": precision,
        "recall": recall,
    }
    return Reference(test_images, train_images, test_features, train_features, floor)


def score(
    images: torch.Tensor, labels: torch.Tensor | None, classifier: FeatureClassifier, reference: Reference, knn: int,
    device: torch.device,
) -> dict:
    """The metrics of images in [0, 1] (requested ``labels``, or None) against the held-out set."""
    features, predicted = classify(classifier, images, device)
    precision, recall = precision_recall(reference.test_features, features, knn)
    return {
        "accuracy": None if labels is None else accuracy(predicted, labels),
        "frechet_distance": frechet_distance(features, reference.test_features),
        "precision": precision,
        "recall": recall,
        "predicted_classes": torch.bincount(predicted, minlength=classifier.config["num_classes"]).tolist(),
    }


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


class Sampler:
    """Draws N images of a checkpoint at a guidance scale, every scale from the same noise (--seed)."""

    def __init__(self, args: argparse.Namespace, source: Source) -> None:
        self.args, self.source = args, source
        self.diffusion = import_impl("diffusion", args.impl)
        try:
            self.model, self.schedule = load_model(source.checkpoint, args.impl, args.device, ema=not args.no_ema,
                                                   name=str(source.path))
        except SampleError as error:
            raise EvaluateError(f"argument --checkpoint: {error}") from None
        try:
            self.space = open_latent_space(source.checkpoint, args.impl, args.device, str(source.path))
        except SampleError as error:
            raise EvaluateError(f"argument --checkpoint: {error}") from None
        count = source.num_samples
        self.labels = cycled_labels(list(range(source.num_classes)), count) if source.num_classes else None
        self.tokens, self.text_module = None, None
        if source.prompts is not None:  # Phase 7: each image's prompt, in the checkpoint's own tokens
            self.text_module = import_impl("text", args.impl)
            try:
                tokenizer = Tokenizer.from_dict(source.checkpoint["config"]["text"]["tokenizer"])
                self.tokens = tokenizer.encode([prompt.text for prompt in source.prompts])
            except (KeyError, TypeError, ValueError) as error:
                raise EvaluateError(f"argument --checkpoint: {source.path}: its tokenizer cannot encode the "
                                    f"evaluation prompts ({one_line(error)})") from None
        self.seconds = 0.0

    def draw(self, guidance_scale: float | None) -> torch.Tensor:
        """(N, C, H, W) images in [-1, 1] on the CPU."""
        source, details = self.source, self.source.details
        started = time.perf_counter()
        generator = seed_everything(details["seed"])
        shape = (source.channels, source.image_size, source.image_size) if self.space is None else self.space.shape
        with torch.inference_mode():
            images = draw_samples(
                self.diffusion, self.model, self.schedule, shape,
                source.num_samples, details["batch_size"], details["sampling"], generator,
                progress=sys.stderr.isatty(), labels=self.labels,
                guidance_scale=DEFAULT_GUIDANCE_SCALE if guidance_scale is None else guidance_scale,
                space=self.space, tokens=self.tokens, text_module=self.text_module,
            )
        if images.shape[-1] != source.image_size:  # decoded latents: back to the dataset's own size
            images = torch.nn.functional.interpolate(images, size=(source.image_size,) * 2, mode="bilinear",
                                                     antialias=True, align_corners=False)
        try:
            check_finite(images, self.args.impl)
        except SampleError as error:
            raise EvaluateError(str(error)) from None
        self.seconds += time.perf_counter() - started
        return images.clamp(-1, 1)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] → [0, 1] (what the classifier takes)."""
    return ((images + 1) / 2).clamp(0, 1)


def inception_scores(
    samples: torch.Tensor, reference: Reference, device: torch.device
) -> dict:
    """Inception FID of the samples and its floor (held-out vs training), or the reason there is none."""
    try:
        extract, package = inception_extractor(device)
    except InceptionUnavailable as error:
        return {"fid": None, "fid_floor": None, "package": None, "reason": str(error)}
    features = {name: inception_features(extract, images, device) for name, images in
                (("samples", samples), ("test", reference.test_images), ("train", reference.train_images))}
    return {
        "fid": frechet_distance(features["samples"], features["test"]),
        "fid_floor": frechet_distance(features["train"], features["test"]),
        "package": package, "reason": None,
    }


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def summary_table(metrics: dict) -> str:
    """The main numbers, samples beside the held-out floor, as aligned text."""
    floor, k = metrics["floor"], metrics["knn"]
    rows = [
        ("", "samples", "held-out (floor)"),
        ("accuracy", percent(metrics["accuracy"]), percent(floor["accuracy"])),
        ("Fréchet distance", f"{metrics['frechet_distance']:.3f}", f"{metrics['frechet_distance_floor']:.3f}"),
        (f"precision (k = {k})", f"{metrics['precision']:.3f}", f"{floor['precision']:.3f}"),
        (f"recall (k = {k})", f"{metrics['recall']:.3f}", f"{floor['recall']:.3f}"),
    ]
    inception = metrics["inception"]
    if inception is not None and inception["fid"] is not None:
        rows.append((f"Inception FID ({inception['package']})", f"{inception['fid']:.2f}",
                     f"{inception['fid_floor']:.2f}"))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}" for row in rows)


def sweep_markdown(metrics: dict) -> str:
    """The --sweep results as a markdown table with a heading and the settings."""
    source = metrics["source"]
    sampling = source["sampling"]
    lines = [
        f"## Guidance sweep: {source['checkpoint']}",
        "",
        f"N = {metrics['num_samples']} samples per guidance scale w (the {metrics['dataset']} classes in turn, every "
        f"scale from the same noise, seed {source['seed']}), {sampling['sampler']} with {sampling['num_steps']} "
        f"steps, compared with N held-out images in the features of the {metrics['dataset']} classifier "
        f"(test accuracy {metrics['classifier']['test_accuracy']:.2%}); precision and recall with k = "
        f"{metrics['knn']}.",
        f"Real held-out images score: accuracy {percent(metrics['floor']['accuracy'])}, Fréchet distance "
        f"{metrics['frechet_distance_floor']:.3f} (vs N training images), precision "
        f"{metrics['floor']['precision']:.3f}, recall {metrics['floor']['recall']:.3f}.",
        "",
        "| w | accuracy | Fréchet distance | precision | recall |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in metrics["sweep"]:
        lines.append(f"| {row['guidance_scale']:g} | {percent(row['accuracy'])} | {row['frechet_distance']:.3f} | "
                     f"{row['precision']:.3f} | {row['recall']:.3f} |")
    return "\n".join(lines) + "\n"


def plot_sweep(metrics: dict, path: Path) -> None:
    """Accuracy, Fréchet distance (with the floor) and precision/recall against w, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = metrics["sweep"]
    scales = [row["guidance_scale"] for row in rows]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.6))
    left.plot(scales, [100 * row["accuracy"] for row in rows], "o-", label="samples")
    left.axhline(100 * metrics["floor"]["accuracy"], color="grey", linestyle="--", label="held-out images")
    left.set(xlabel="guidance scale w", ylabel="accuracy (%)", ylim=(0, 102), title="class accuracy")
    middle.plot(scales, [row["frechet_distance"] for row in rows], "o-", label="samples")
    middle.axhline(metrics["frechet_distance_floor"], color="grey", linestyle="--", label="floor (held-out vs train)")
    middle.set(xlabel="guidance scale w", ylabel="Fréchet distance",
               title=f"Fréchet distance (N = {metrics['num_samples']})")
    right.plot(scales, [row["precision"] for row in rows], "o-", label="precision")
    right.plot(scales, [row["recall"] for row in rows], "s-", label="recall")
    right.set(xlabel="guidance scale w", ylim=(0, 1.02), title=f"precision and recall (k = {metrics['knn']})")
    for axes in (left, middle, right):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"Guidance sweep of {metrics['source']['checkpoint']}", fontsize=10)
    figure.tight_layout()
    try:
        atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    finally:
        plt.close(figure)


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def default_out(source: Source) -> Path:
    if source.kind == "checkpoint":
        return source.path.parent / "eval"
    return source.path.with_name(f"{source.path.stem}_eval")


def autoencoder_path(args: argparse.Namespace) -> Path | None:
    """--checkpoint's file when it holds an autoencoder (train.py --train-autoencoder), else None."""
    if args.checkpoint is None:
        return None
    path = checkpoint_path(args.checkpoint)
    try:
        state = read_torch_file(path) if path.is_file() else None
    except UnreadableFile:
        return None  # open_checkpoint says what is wrong with it
    config = state.get("config") if isinstance(state, dict) else None
    return path if isinstance(config, dict) and config.get("train_autoencoder") else None


def measure_autoencoder(args: argparse.Namespace, parser: argparse.ArgumentParser, path: Path) -> int:
    """Phase 6: reconstruction PSNR and SSIM on N held-out images, the KL, the latents' std before and after scaling."""
    started = time.perf_counter()
    for name in ("sampler", "steps", "guidance_scale", "sweep", "no_ema"):
        if getattr(args, name) not in (None, False):
            parser.error(f"argument {flag(name)}: {path} is an autoencoder, which does not sample; drop the flag")
    latent = import_impl("latent", args.impl)
    degradations = import_impl("degradations", args.impl)  # psnr and ssim (provided)
    try:
        autoencoder, state, _ = load_autoencoder(path, latent, args.device)
    except LatentError as error:
        raise EvaluateError(f"argument --checkpoint: {error}") from None
    config = state["config"]
    count = args.num_samples or DEFAULT_NUM_SAMPLES
    data_dir = args.data_dir if args.data_dir is not None else config.get("data_dir") or "data"
    out = Path(args.out) if args.out is not None else path.parent / "eval"
    check_writable(parser, "--out", out, folder=True)
    source = Source(kind="checkpoint", path=path, dataset=config["dataset"], image_size=config["image_size"],
                    channels=autoencoder.config["image_channels"], num_classes=0, data_dir=data_dir,
                    data_seed=int(config.get("seed") or 0), num_samples=count)
    test_images = real_images(source.dataset, "test", source, data_dir, args.download)[0] * 2 - 1
    train_images = real_images(source.dataset, "train", source, data_dir, args.download)[0] * 2 - 1
    batch = args.batch_size or DEFAULT_BATCH_SIZE
    generator = seed_everything(DEFAULT_SEED if args.seed is None else args.seed)
    reconstructions, kls, latents = [], [], []
    with torch.inference_mode():
        shift, scale = measure_statistics(latent, autoencoder, train_images, generator)
        for start in range(0, count, batch):
            images = test_images[start : start + batch].to(args.device)
            mean, logvar = autoencoder.encode(images)
            reconstructions.append(autoencoder.decode(mean).clamp(-1, 1).float().cpu())
            kls.append((latent.kl_divergence(mean, logvar) / mean[0].numel()).float().cpu())
            noise = torch.randn(mean.shape, generator=generator).to(mean)
            latents.append(latent.posterior_sample(mean, logvar, noise).float().cpu())
    reconstructed = torch.cat(reconstructions)
    raw = torch.cat(latents)
    scaled = latent.to_diffusion(raw, shift, scale)
    metrics = {
        "format": METRICS_FORMAT, "version": METRICS_VERSION, "kind": "autoencoder",
        "dataset": source.dataset, "image_size": source.image_size, "num_images": count,
        "psnr": degradations.psnr(reconstructed, test_images).mean().item(),
        "ssim": degradations.ssim(reconstructed, test_images).mean().item(),
        "kl_per_element": torch.cat(kls).mean().item(),
        "latent_shape": list(raw.shape[1:]), "latent_std": raw.std().item(), "scaled_latent_std": scaled.std().item(),
        "scaled_latent_mean": scaled.mean().item(), "shift": shift.tolist(), "scale": scale.tolist(),
        "source": {"checkpoint": str(path), "train_step": state.get("step"), "impl": args.impl,
                   "device": str(args.device)},
    }
    metrics["seconds"] = time.perf_counter() - started
    shown = min(count, 32) // 8 * 8 or min(count, 8)
    write_grid(reconstruction_rows(test_images[:shown], reconstructed[:shown], min(8, shown)),
               out / "reconstructions.png", nrow=min(8, shown))
    write_json(out / "metrics.json", metrics)
    print(f"autoencoder {path} (step {state.get('step')}) on {count} held-out {source.dataset} images of "
          f"{source.channels}×{source.image_size}×{source.image_size} → latents {'×'.join(map(str, raw.shape[1:]))}")
    print(f"reconstruction PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}; KL {metrics['kl_per_element']:.4g} "
          f"per latent element")
    print(f"latent std {metrics['latent_std']:.4g}; after latent_statistics' scale (from {count} training images) "
          f"{metrics['scaled_latent_std']:.4f} (mean {metrics['scaled_latent_mean']:+.4f})")
    print(f"took {metrics['seconds']:.0f} s; wrote {out / 'metrics.json'}, {out / 'reconstructions.png'}")
    return 0


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Open the source, get the classifier and the real images, sample, measure, write, print."""
    started = time.perf_counter()
    autoencoder = autoencoder_path(args)
    if autoencoder is not None:
        return measure_autoencoder(args, parser, autoencoder)
    source = open_checkpoint(args, parser) if args.checkpoint is not None else open_samples(args, parser)
    count = source.num_samples
    if args.knn >= count:
        parser.error(f"argument --knn: must be smaller than the number of images N = {count} (the k-th nearest "
                     f"neighbour among the others); got {args.knn}")
    data_dir = args.data_dir if args.data_dir is not None else source.data_dir
    out = Path(args.out) if args.out is not None else default_out(source)
    check_writable(parser, "--out", out, folder=True)  # before any work
    classifier_path = Path(args.classifier or
                           default_classifier_path(source.dataset, data_dir, classifier_size(source)))
    if args.retrain_classifier or not classifier_path.exists():  # it will be trained, then written there
        check_writable(parser, "--classifier", classifier_path)
    sampler = Sampler(args, source) if source.kind == "checkpoint" else None  # a broken model fails early

    phase = time.perf_counter()
    classifier, record, classifier_path = the_classifier(args, source, data_dir)
    classifier_seconds = time.perf_counter() - phase
    print(f"classifier: {classifier_path} (test accuracy {record['test_accuracy']:.2%} on {record['test_images']} "
          f"{source.dataset} test images; {classifier.config['feature_dim']} features)")
    if source.prompts is not None:
        return run_prompts(args, source, sampler, classifier, (classifier_path, record), data_dir, out, started)

    phase = time.perf_counter()
    reference = reference_set(classifier, source, data_dir, args.download, args.knn, args.device)
    reference_seconds = time.perf_counter() - phase

    scales = []
    if sampler is not None:
        scales = [source.guidance_scale] + [w for w in (args.sweep or ()) if w != source.guidance_scale]
    results, drawn = {}, {}
    if sampler is None:
        drawn[source.guidance_scale] = source.images
        results[source.guidance_scale] = score(to_unit(source.images), source.labels, classifier, reference, args.knn,
                                               args.device)
    for w in scales:
        guided = "" if w is None else f" at guidance scale w = {w:g}"
        print(f"sampling {count} images{guided} ({source.details['sampling']['sampler']}, "
              f"{source.details['sampling']['num_steps']} steps) …", flush=True)
        images = sampler.draw(w)
        if w == source.guidance_scale:
            drawn[w] = images
        results[w] = score(to_unit(images), sampler.labels, classifier, reference, args.knn, args.device)

    main_images = drawn[source.guidance_scale]
    phase = time.perf_counter()
    inception = None
    if args.inception:
        inception = inception_scores(to_unit(main_images), reference, args.device)
    inception_seconds = time.perf_counter() - phase

    headline = results[source.guidance_scale]
    metrics = {
        "format": METRICS_FORMAT, "version": METRICS_VERSION,
        "dataset": source.dataset, "image_size": source.image_size,
        "num_samples": count, "num_reference": count, "knn": args.knn,
        "class_conditional": bool(source.num_classes), "guidance_scale": source.guidance_scale,
        "accuracy": headline["accuracy"], "frechet_distance": headline["frechet_distance"],
        "frechet_distance_floor": reference.floor["frechet_distance"],
        "precision": headline["precision"], "recall": headline["recall"],
        "floor": dict(reference.floor), "predicted_classes": headline["predicted_classes"],
        "inception": inception,
        "classifier": {"path": str(classifier_path), "test_accuracy": record["test_accuracy"],
                       "test_images": record["test_images"], "feature_dim": classifier.config["feature_dim"],
                       "epochs": record.get("epochs")},
        "sweep": None if args.sweep is None else [
            {"guidance_scale": w, **results[w]} for w in sorted(args.sweep)
        ],
        "source": {"kind": source.kind, "data_dir": str(data_dir), "data_seed": source.data_seed, **source.details},
    }
    written = [out / "metrics.json", out / "samples.png"]
    write_grid(main_images[:GRID_IMAGES], out / "samples.png")
    if metrics["sweep"] is not None:
        atomic_write(out / "sweep.md", lambda handle: handle.write(sweep_markdown(metrics).encode()))
        plot_sweep(metrics, out / "sweep.png")
        written += [out / "sweep.md", out / "sweep.png"]
    metrics["seconds"] = {
        "classifier": classifier_seconds, "reference": reference_seconds,
        "sampling": 0.0 if sampler is None else sampler.seconds, "inception": inception_seconds,
        "total": time.perf_counter() - started,
    }
    write_json(out / "metrics.json", metrics)

    what = f"{count} samples of {source.path}"
    if source.kind == "checkpoint":
        what += f" (step {source.details['train_step']}, {source.details['weights']} weights)"
    guided = "" if source.guidance_scale is None else f", guidance w = {source.guidance_scale:g}"
    print(f"\n{what}{guided} vs {count} held-out {source.dataset} images (floor: held-out vs {count} training images)")
    print(summary_table(metrics))
    if headline["accuracy"] is None:
        print(f"classes predicted (unconditional model): {' '.join(map(str, headline['predicted_classes']))}")
    if inception is not None and inception["fid"] is None:
        print(f"Inception FID: not computed ({inception['reason']}); the classifier metrics above stand on their own")
    if metrics["sweep"] is not None:
        print("\n" + sweep_markdown(metrics).split("\n\n", 2)[2].rstrip())
    print(f"\ntook {metrics['seconds']['total']:.0f} s (sampling {metrics['seconds']['sampling']:.0f} s); wrote "
          + ", ".join(str(path) for path in written))
    return 0


# ---------------------------------------------------------------------------
# Phase 7: prompt adherence of a text-conditioned checkpoint
# ---------------------------------------------------------------------------

#: Real test images whose attributes give the floor of the adherence rules.
FLOOR_IMAGES = 5000
#: How the report names each attribute kind's row.
KIND_ROWS = {"stroke": "stroke (thin, bold)", "slant": "slant (left, upright, right)", "colour": "colour"}


def judged(images: torch.Tensor, asked: list[dict], classifier: FeatureClassifier, rule: adherence.StrokeRule,
           device: torch.device) -> dict:
    """adherence.judge of images in [0, 1] at the model's size, where the classifier works too (classifier_size)."""
    _, predicted = classify(classifier, images, device)
    return adherence.judge(images, asked, predicted, rule)


def real_floors(args: argparse.Namespace, source: Source, classifier: FeatureClassifier, rule: adherence.StrokeRule,
                data_dir: str, space) -> dict:
    """The adherence rules on real test images asked for the attributes they have (adherence.summarise's "all"),
    and for a latent model on the same images through its autoencoder (what decoding alone leaves)."""
    count = min(FLOOR_IMAGES, cli.MAX_TEST_IMAGES)
    attributes, _, _ = captions.caption_attributes(source.dataset, split="test", seed=source.data_seed,
                                                   num_images=count, data_dir=data_dir)
    images, _ = real_images(source.dataset, "test", replace(source, num_samples=count), data_dir, args.download)
    indices, asked = adherence.real_requests(attributes)
    images = images[indices]
    floors = {"real": adherence.summarise(asked, judged(images, asked, classifier, rule, args.device))["all"]}
    if space is not None:
        decoded = []
        with torch.inference_mode():
            for start in range(0, len(images), DEFAULT_BATCH_SIZE):
                batch = images[start:start + DEFAULT_BATCH_SIZE].to(args.device) * 2 - 1
                decoded.append(to_unit(space.decode(space.encode(batch, None)).float().cpu()))
        floors["autoencoded"] = adherence.summarise(
            asked, judged(torch.cat(decoded), asked, classifier, rule, args.device))["all"]
    return floors


FLOOR_NAMES = {"real": "real digits", "autoencoded": "real, autoencoded"}


def adherence_table(summary: dict, floors: dict) -> list[tuple[str, ...]]:
    """Rows (what, seen, held-out, then each floor) of one guidance scale's summary."""
    groups = [summary["seen"], summary["held_out"], *floors.values()]

    def cells(pick) -> tuple[str, ...]:
        return tuple(percent(pick(group)) for group in groups)

    rows = [("digit (classifier)", *cells(lambda group: group["digit"]))]
    for kind in adherence.KINDS:
        if kind in summary["seen"]["by_kind"]:
            rows.append((KIND_ROWS[kind], *cells(lambda group: group["by_kind"].get(kind, {}).get("attribute"))))
    rows.append(("digit and attribute", *cells(lambda group: group["both"])))
    rows.append(("images", *(str(group["count"]) for group in groups)))
    return rows


def adherence_header(floors: dict) -> tuple[str, ...]:
    return ("", "seen pairs", "held-out pairs", *(FLOOR_NAMES[name] for name in floors))


def aligned(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                               for column, (cell, width) in enumerate(zip(row, widths))) for row in rows)


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|---" + "|---:" * (len(rows[0]) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def held_out_lines(summary: dict) -> list[tuple[str, ...]]:
    """Each held-out pair beside the seen pairs that ask for the same attribute value (other digits)."""
    rows = [("held-out pair", "digit", "attribute", "both", "same value, seen digits: both")]
    for pair in summary["pairs"]:
        if not pair["held_out"]:
            continue
        same = [other for other in summary["pairs"] if not other["held_out"] and other["kind"] == pair["kind"]
                and other["value"] == pair["value"]]
        seen_both = sum(other["both"] * other["count"] for other in same) / max(1, sum(o["count"] for o in same))
        rows.append((f"{pair['value']} {pair['asked_digit']} ({pair['kind']})", percent(pair["digit"]),
                     percent(pair["attribute"]), percent(pair["both"]), percent(seen_both) if same else "—"))
    return rows


def sweep_rows(sweep: list[dict]) -> list[tuple[str, ...]]:
    """One row per guidance scale: the digit over all images, each attribute and both on seen pairs, both on held-out."""
    kinds = [kind for kind in adherence.KINDS if kind in sweep[0]["adherence"]["seen"]["by_kind"]]
    rows = [("w", "digit: all", *(f"{kind}: seen" for kind in kinds), "both: seen", "both: held-out")]
    for entry in sweep:
        seen, held = entry["adherence"]["seen"], entry["adherence"]["held_out"]
        rows.append((f"{entry['guidance_scale']:g}", percent(entry["adherence"]["all"]["digit"]),
                     *(percent(seen["by_kind"][kind]["attribute"]) for kind in kinds),
                     percent(seen["both"]), percent(held["both"])))
    return rows


def adherence_markdown(metrics: dict) -> str:
    """adherence.md: the settings, the main table, the held-out pairs, the sweep, every pair."""
    source, sampling = metrics["source"], metrics["source"]["sampling"]
    summary = metrics["adherence"]
    lines = [
        f"## Prompt adherence: {source['checkpoint']}",
        "",
        f"{metrics['num_samples']} images at guidance scale w = {metrics['guidance_scale']:g}: {metrics['per_pair']} "
        f"per seen digit × attribute pair and {metrics['held_out_per_pair']} per held-out pair, each with its own "
        f"phrasing; {sampling['sampler']} with {sampling['num_steps']} steps, seed {source['seed']}. The digit by the "
        f"{metrics['dataset']} classifier trained at the same size (test accuracy "
        f"{metrics['classifier']['test_accuracy']:.2%}); the stroke, slant and colour by the measurements of "
        f"provided/captions.py (provided/adherence.py); all on {metrics['image_size']}×{metrics['image_size']} images. Real digits: the same rules on real test images "
        f"(the first {metrics['floor_images']}), each asked for the attributes it has"
        + ("; autoencoded: the same images through the model's autoencoder." if "autoencoded" in metrics["floor"]
           else "."),
        "",
        markdown_table([adherence_header(metrics["floor"])] + adherence_table(summary, metrics["floor"])),
        "",
        markdown_table(held_out_lines(summary)),
    ]
    if metrics["sweep"] is not None:
        lines += ["", "### Guidance sweep", "", markdown_table(sweep_rows(metrics["sweep"]))]
    rows = [("pair", "held out", "images", "digit", "attribute", "both")]
    for pair in summary["pairs"]:
        rows.append((f"{pair['value']} {pair['asked_digit']} ({pair['kind']})", "yes" if pair["held_out"] else "",
                     str(pair["count"]), percent(pair["digit"]), percent(pair["attribute"]), percent(pair["both"])))
    lines += ["", "### Every pair", "", markdown_table(rows)]
    return "\n".join(lines) + "\n"


def run_prompts(args: argparse.Namespace, source: Source, sampler: "Sampler", classifier: FeatureClassifier,
                classifier_file: tuple[Path, dict], data_dir: str, out: Path, started: float) -> int:
    """Phase 7: sample each evaluation prompt, judge each image against its prompt, write and print the report."""
    classifier_path, record = classifier_file
    rule = adherence.stroke_rule(source.dataset, seed=source.data_seed, data_dir=data_dir,
                                 image_size=source.image_size)
    floor = real_floors(args, source, classifier, rule, data_dir, sampler.space)
    asked = [prompt.attributes for prompt in source.prompts]
    scales = [source.guidance_scale] + [w for w in (args.sweep or ()) if w != source.guidance_scale]
    results, main_images = {}, None
    for w in scales:
        print(f"sampling {len(asked)} prompted images at guidance scale w = {w:g} "
              f"({source.details['sampling']['sampler']}, {source.details['sampling']['num_steps']} steps) …",
              flush=True)
        images = to_unit(sampler.draw(w))
        results[w] = adherence.summarise(asked, judged(images, asked, classifier, rule, args.device))
        main_images = images if w == source.guidance_scale else main_images
    per_pair = source.details["per_pair"]
    metrics = {
        "format": METRICS_FORMAT, "version": METRICS_VERSION, "kind": "prompt adherence",
        "dataset": source.dataset, "image_size": source.image_size, "num_samples": len(asked),
        "per_pair": per_pair, "held_out_per_pair": per_pair * HELD_OUT_REPEATS,
        "guidance_scale": source.guidance_scale, "adherence": results[source.guidance_scale],
        "floor": floor, "floor_images": min(FLOOR_IMAGES, cli.MAX_TEST_IMAGES), "stroke_rule": rule.to_dict(),
        "prompts": [{"text": prompt.text, "held_out": prompt.held_out, **prompt.attributes} for prompt in source.prompts],
        "classifier": {"path": str(classifier_path), "image_size": classifier.image_size,
                       "test_accuracy": record["test_accuracy"], "test_images": record["test_images"]},
        "sweep": None if args.sweep is None else [
            {"guidance_scale": w, "adherence": results[w]} for w in sorted(args.sweep)],
        "source": {"kind": source.kind, "data_dir": str(data_dir), "data_seed": source.data_seed, **source.details},
    }
    order, row_names = adherence.grid_order(asked)
    write_grid(main_images[order] * 2 - 1, out / "samples.png", nrow=10)
    atomic_write(out / "adherence.md", lambda handle: handle.write(adherence_markdown(metrics).encode()))
    metrics["seconds"] = {"sampling": sampler.seconds, "total": time.perf_counter() - started}
    write_json(out / "metrics.json", metrics)

    print(f"\nprompt adherence of {source.path} (step {source.details['train_step']}, {source.details['weights']} "
          f"weights) at w = {source.guidance_scale:g}: {len(asked)} images, {per_pair} per seen pair and "
          f"{per_pair * HELD_OUT_REPEATS} per held-out pair; real digits: the same rules on real test images"
          + ("; autoencoded: through the model's autoencoder" if "autoencoded" in floor else ""))
    print(aligned([adherence_header(floor)] + adherence_table(results[source.guidance_scale], floor)))
    print("\n" + aligned(held_out_lines(results[source.guidance_scale])))
    if metrics["sweep"] is not None:
        print("\nguidance sweep:\n" + aligned(sweep_rows(metrics["sweep"])))
    print(f"\nsamples.png: one image per pair, a row per attribute value ({', '.join(row_names)}), a column per "
          f"digit 0–9 (held-out cells included)")
    print(f"took {metrics['seconds']['total']:.0f} s (sampling {sampler.seconds:.0f} s); wrote "
          f"{out / 'metrics.json'}, {out / 'adherence.md'}, {out / 'samples.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python evaluate.py …``: returns the exit status.

    0: done; 1: an error (one line on stderr: a missing or damaged file, a dataset that is not
    there, a stub not written yet, …); 2: a bad flag (argparse's message, naming the flag);
    130: Ctrl-C.
    """
    args, parser = parse_args(argv)
    return run_command("evaluate.py", lambda: run(args, parser),
                       needs="evaluate.py samples with noise_schedule.py, unet.py and diffusion.py",
                       interrupted="stopped by Ctrl-C", memory="lower --batch-size (or --num-samples)")

