"""A small CNN classifier per dataset: its predictions and its features measure samples.

The network is three 3×3 convolutions (each with batch norm and ReLU, the first two
followed by 2×2 max pooling), an adaptive average pool to 4×4, a fully connected
*feature layer* of :data:`FEATURE_DIM` units (ReLU) and a linear head over the classes.
:func:`classify` returns both the feature vectors, the space in which
:mod:`provided.metrics` compares samples with real images, and the predicted classes.

It is trained once per dataset on the dataset's training split (seeded: the same
weights every time on one machine), its accuracy measured on the whole test split, and
both cached with ``torch.save`` in ``<data_dir>/classifiers/<dataset>.pt``; later runs
read the cache (:func:`classifier_for`). A classifier of the dataset resized to another
size (prompt adherence judges a latent model's 32×32 samples at their own size) is
trained on the images resized to it and cached in ``<dataset>-<size>px.pt``: one trained
at 28 pixels misreads about 6% of real digits after a 28→32→28 round trip, and about 12%
of digits that went through a short-trained autoencoder, against under 1% at 32. On the
embedded digits one epoch over the 60,000 training images takes about half a minute on
one CPU core and reaches about 99.5% test accuracy.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CLASSIFIER_FORMAT",
    "ClassifierError",
    "check_accuracy",
    "FeatureClassifier",
    "classifier_for",
    "classify",
    "dataset_tensors",
    "default_classifier_path",
    "load_classifier",
    "save_classifier",
    "train_classifier",
    "train_on_dataset",
]

#: What a cached classifier file says it is (its "format" field); bump the version when the
#: network, its training or its data changes, so that old caches are trained again
#: (2: "digits-rgb" became bright ink on black).
CLASSIFIER_FORMAT = "diffusion-exercises/evaluate.py classifier"
CLASSIFIER_VERSION = 2
#: Output channels of the three convolutions, and the width of the feature layer.
WIDTHS = (16, 32, 64)
FEATURE_DIM = 128
#: Training: AdamW with a one-cycle learning rate (warm-up 15%, then cosine decay), batches of 128.
BATCH_SIZE = 128
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
WARMUP_FRACTION = 0.15
#: Epochs over the training split per dataset (the harder ones get more); others: DEFAULT_EPOCHS.
EPOCHS = {"digits": 1, "digits-rgb": 2, "mnist": 1, "fashion-mnist": 3, "cifar10": 10}
DEFAULT_EPOCHS = 2
#: The seed of the weights, the batches and (for the embedded digits) which digits are drawn.
CLASSIFIER_SEED = 0
#: Images per forward pass when classifying.
EVAL_BATCH = 500


class ClassifierError(RuntimeError):
    """A classifier file that cannot be used, or a dataset no classifier can be trained on."""


def default_classifier_path(dataset: str, data_dir: str | Path = "data", image_size: int | None = None) -> Path:
    """Where the classifier of ``dataset`` is cached: ``<data_dir>/classifiers/<dataset>.pt``, or
    ``<dataset>-<image_size>px.pt`` for the dataset resized to another ``image_size`` than its own."""
    from .image_data import DATASETS

    native = DATASETS[dataset].image_size if dataset in DATASETS else None
    suffix = "" if image_size is None or image_size == native else f"-{image_size}px"
    return Path(data_dir) / "classifiers" / f"{dataset}{suffix}.pt"


def default_epochs(dataset: str) -> int:
    """Epochs over the training split for ``dataset`` (see :data:`EPOCHS`)."""
    return EPOCHS.get(dataset, DEFAULT_EPOCHS)


# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------


def _conv_block(in_channels: int, out_channels: int, pool: bool) -> list[nn.Module]:
    layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
              nn.ReLU(inplace=True)]
    return layers + [nn.MaxPool2d(2)] if pool else layers


class FeatureClassifier(nn.Module):
    """A compact CNN: images in [0, 1] → ``feature_dim`` features → class logits.

    Attributes:
        image_size: the height and width it was trained at; :func:`classify` resizes
            other images to it.
        config: the constructor's arguments (saved with the weights).
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, widths: tuple[int, ...] = WIDTHS,
        feature_dim: int = FEATURE_DIM,
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths must name the channels of 3 convolutions; got {widths!r}")
        first, second, third = widths
        self.body = nn.Sequential(
            *_conv_block(in_channels, first, pool=True),
            *_conv_block(first, second, pool=True),
            *_conv_block(second, third, pool=False),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(third * 16, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.image_size = image_size
        self.config = dict(in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                           widths=list(widths), feature_dim=feature_dim)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) features of (B, C, H, W) images in [0, 1]."""
        return self.body(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) logits of (B, C, H, W) images in [0, 1]."""
        return self.head(self.features(images))


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) images resized to (size, size) (bilinear, antialiased), or as they are."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@torch.no_grad()
def classify(
    model: FeatureClassifier, images: torch.Tensor, device: torch.device | str = "cpu", batch_size: int = EVAL_BATCH
) -> tuple[torch.Tensor, torch.Tensor]:
    """The features and predicted classes of images in [0, 1] (resized to the model's size).

    Args:
        model: a trained classifier (put in eval mode here).
        images: (N, C, H, W) in [0, 1], C the model's channels.
        device: where to run the network.

    Returns:
        (N, feature_dim) float32 features and (N,) int64 predicted classes, on the CPU.
    """
    channels = model.config["in_channels"]
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"the classifier takes (N, {channels}, H, W) images; got {tuple(images.shape)}")
    model = model.to(device).eval()
    features, predicted = [], []
    for start in range(0, images.shape[0], batch_size):
        batch = resize_to(images[start : start + batch_size].to(device, torch.float32), model.image_size)
        batch_features = model.features(batch)
        features.append(batch_features.float().cpu())
        predicted.append(model.head(batch_features).argmax(dim=1).cpu())
    return torch.cat(features), torch.cat(predicted)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def dataset_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All of a dataset of ``make_dataset`` as tensors: (N, C, H, W) float32 in [0, 1], (N,) int64 labels."""
    from .image_data import TensorImageDataset

    if (
        isinstance(dataset, TensorImageDataset) and dataset.colours is None and not dataset.flip
        and tuple(dataset.images.shape[-2:]) == (dataset.image_size, dataset.image_size)
    ):  # the quick way, the same values as __getitem__
        return dataset.images.float() / 255.0, dataset.labels.clone()
    pairs = [dataset[index] for index in range(len(dataset))]
    return torch.stack([image for image, _ in pairs]), torch.tensor([label for _, label in pairs], dtype=torch.int64)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    epochs: int = 1,
    batch_size: int = BATCH_SIZE,
    lr: float = LEARNING_RATE,
    seed: int = CLASSIFIER_SEED,
    flips: bool = False,
    device: torch.device | str = "cpu",
) -> FeatureClassifier:
    """A :class:`FeatureClassifier` trained with cross-entropy on ``images`` (N, C, H, W) in [0, 1].

    Seeded: the initial weights, the order of the batches and the random flips (when
    ``flips``) all come from ``seed``, so a run gives the same weights on the same machine.
    Torch's global random state is left as it was.
    """
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"images must be (N, C, H, W) and labels (N,); got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    count = images.shape[0]
    batch_size = min(batch_size, count)
    batches_per_epoch = count // batch_size
    total = max(1, epochs * batches_per_epoch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureClassifier(images.shape[1], num_classes, images.shape[-1])
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total,
                                                    pct_start=WARMUP_FRACTION)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    while step < total:
        order = torch.randperm(count, generator=generator)
        for batch in range(batches_per_epoch):
            if step == total:
                break
            index = order[batch * batch_size : (batch + 1) * batch_size]
            x, y = images[index], labels[index]
            if flips:
                flip = torch.rand(len(index), generator=generator) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
    return model.eval()


def _dataset(name: str, split: str, data_dir: str | Path, download: bool, num_images: int | None,
             image_size: int | None):
    """The split of dataset ``name`` (at ``image_size``, None: its own) for the classifier; ClassifierError
    (one line) if unavailable."""
    from .image_data import DATASETS, DatasetUnavailable, labelled_datasets, make_dataset

    if name not in DATASETS:
        raise ClassifierError(f"unknown dataset {name!r}: the known ones are {', '.join(DATASETS)}")
    if not DATASETS[name].num_classes:
        raise ClassifierError(
            f"the dataset {name!r} has no class labels, so no classifier can be trained on it; the classifier "
            f"metrics need a labelled dataset ({', '.join(labelled_datasets())})"
        )
    try:
        return make_dataset(name, split=split, image_size=image_size, data_dir=data_dir, download=download,
                            seed=CLASSIFIER_SEED, num_images=num_images, augment=False)
    except DatasetUnavailable as error:
        raise ClassifierError(" ".join(str(error).split())) from None
    except ValueError as error:
        raise ClassifierError(f"cannot open the {split} split of {name!r}: {error}") from None


def train_on_dataset(
    name: str,
    *,
    data_dir: str | Path = "data",
    download: bool = False,
    epochs: int | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    image_size: int | None = None,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
) -> tuple[FeatureClassifier, dict]:
    """Train the classifier of dataset ``name`` on its training split; measure it on its test split.

    Args:
        name: a labelled dataset of ``provided.image_data.DATASETS``.
        data_dir, download: where the dataset is, and whether torchvision may download it.
        epochs: passes over the training images (None: :func:`default_epochs`).
        num_train, num_test: use only that many images of each split (None: all; tests use few).
        image_size: train and test on the images resized to it (None: the dataset's own size).
        batch_size: images per training step.
        device: where to train.
        log: where the progress lines go.

    Returns:
        The model (eval mode, on the CPU) and its record: everything :func:`save_classifier`
        stores besides the weights, including ``test_accuracy`` and ``test_images``.
    """
    from .image_data import DATASETS

    epochs = default_epochs(name) if epochs is None else epochs
    train_images, train_labels = dataset_tensors(_dataset(name, "train", data_dir, download, num_train, image_size))
    test_images, test_labels = dataset_tensors(_dataset(name, "test", data_dir, download, num_test, image_size))
    info = DATASETS[name]
    size = train_images.shape[-1]
    log(
        f"training the {name} classifier at {size}×{size}: {len(train_images)} training images, {epochs} epoch"
        f"{'s' if epochs != 1 else ''} (once per dataset; about half a minute per epoch of the digits on a CPU)"
    )
    started = time.perf_counter()
    model = train_classifier(train_images, train_labels, info.num_classes, epochs=epochs, batch_size=batch_size,
                             flips=info.flips, device=device).cpu()
    seconds = time.perf_counter() - started
    _, predicted = classify(model, test_images)
    test_accuracy = float((predicted == test_labels).double().mean())
    log(f"the {name} classifier: test accuracy {test_accuracy:.2%} on {len(test_images)} test images "
        f"(trained in {seconds:.0f} s)")
    record = {
        "dataset": name, "config": dict(model.config), "test_accuracy": test_accuracy,
        "test_images": len(test_images), "train_images": len(train_images), "epochs": epochs,
        "batch_size": batch_size, "lr": LEARNING_RATE, "seed": CLASSIFIER_SEED, "train_seconds": seconds,
        "torch_version": str(torch.__version__),
    }
    return model, record


# ---------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------


def save_classifier(path: str | Path, model: FeatureClassifier, record: dict) -> Path:
    """Write the weights and the record to ``path`` (torch.save, atomically; folders created)."""
    from .files import atomic_write

    payload = {"format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION, **record,
               "state_dict": {key: value.cpu() for key, value in model.state_dict().items()}}
    path = Path(path)
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


def _first_line(error: Exception) -> str:
    """An exception's first line, without terminal colour codes, at most 160 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    line = " ".join(text.splitlines()[0].split()) if text else type(error).__name__
    return line if len(line) <= 160 else line[:159] + "…"


def load_classifier(
    path: str | Path, dataset: str | None = None, image_size: int | None = None
) -> tuple[FeatureClassifier, dict]:
    """The classifier saved at ``path`` (eval mode, CPU) and its record.

    Raises:
        ClassifierError: the file is missing, unreadable, of another format or version, or
            (when ``dataset`` or ``image_size`` is given) the classifier of another dataset or
            trained at another size; the message says why.
    """
    from .files import UnreadableFile, load_weights, read_torch_file

    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"{path} is a folder, not a classifier file" if path.is_dir()
                              else f"there is no classifier file {path}")
    try:
        saved = read_torch_file(path)
    except UnreadableFile as error:  # truncated, not a torch file, a foreign pickle
        raise ClassifierError(f"cannot read the classifier file {path} ({error})") from None
    if not isinstance(saved, dict) or saved.get("format") != CLASSIFIER_FORMAT:
        raise ClassifierError(f"{path} is not a classifier file of evaluate.py (no format {CLASSIFIER_FORMAT!r})")
    if saved.get("version") != CLASSIFIER_VERSION:
        raise ClassifierError(
            f"{path} holds a classifier of version {saved.get('version')!r}; this evaluate.py makes version "
            f"{CLASSIFIER_VERSION}"
        )
    if dataset is not None and saved.get("dataset") != dataset:
        raise ClassifierError(f"{path} holds the classifier of {saved.get('dataset')!r}, not of {dataset!r}")
    try:
        config = dict(saved["config"])
        config["widths"] = tuple(config["widths"])
        model = FeatureClassifier(**config)
        load_weights(model, saved["state_dict"])
        float(saved["test_accuracy"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ClassifierError(f"the classifier file {path} is incomplete or damaged ({_first_line(error)})") from None
    if image_size is not None and model.image_size != image_size:
        raise ClassifierError(f"{path} holds a classifier of {model.image_size}×{model.image_size} images, not of "
                              f"{image_size}×{image_size}")
    record = {key: value for key, value in saved.items() if key != "state_dict"}
    return model.eval(), record


def classifier_for(
    dataset: str,
    *,
    data_dir: str | Path = "data",
    path: str | Path | None = None,
    image_size: int | None = None,
    retrain: bool = False,
    epochs: int | None = None,
    download: bool = False,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
) -> tuple[FeatureClassifier, dict, Path]:
    """The classifier of ``dataset`` (at ``image_size``, None: the dataset's own): read from its cache, or
    trained (and cached) when there is none.

    The cache at ``path`` (default :func:`default_classifier_path`) is trained again when
    ``retrain``, when it cannot be used (a note says why), or when ``epochs`` is given and
    differs from the cached classifier's.

    Returns:
        The model (eval mode, CPU), its record (``test_accuracy``, ``test_images``, …), the path.
    """
    path = Path(path) if path is not None else default_classifier_path(dataset, data_dir, image_size)
    if path.exists() and not retrain:
        try:
            model, record = load_classifier(path, dataset, image_size)
        except ClassifierError as error:
            log(f"note: {error}; training a new one")
        else:
            if epochs is None or record.get("epochs") == epochs:
                return model, record, path
            log(f"note: the classifier in {path} was trained for {record.get('epochs')} epochs, not {epochs}; "
                "training it again")
    model, record = train_on_dataset(dataset, data_dir=data_dir, download=download, epochs=epochs,
                                     image_size=image_size, device=device, log=log)
    save_classifier(path, model, record)
    log(f"cached the classifier in {path}")
    return model, {"format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION, **record}, path


def check_accuracy(model: FeatureClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of (N, C, H, W) images in [0, 1] that ``model`` classifies as ``labels``."""
    _, predicted = classify(model, images)
    return float((predicted == labels).double().mean())

