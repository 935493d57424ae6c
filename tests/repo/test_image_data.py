"""Tests of ``provided/image_data.py``: the embedded digits, torchvision's sets offline, folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from provided import captions, image_data
from provided.image_data import DATASETS, INK_VALUE_RANGE, DatasetUnavailable, dataset_summary, make_dataset

#: The real MNIST files beside the checkout (torchvision layout, .gz only); absent on some machines.
SHARED_MNIST_RAW = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "MNIST" / "raw"

N = 500  # digits per small test set


def stack(dataset, count=None):
    """All (or the first ``count``) images and labels of a dataset, through ``__getitem__``."""
    count = len(dataset) if count is None else min(count, len(dataset))
    pairs = [dataset[i] for i in range(count)]
    return torch.stack([image for image, _ in pairs]), torch.tensor([label for _, label in pairs])


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("digits_data")


@pytest.fixture(scope="module")
def digits(digits_dir):
    """N training digits, seed 0, as (images, labels)."""
    return stack(make_dataset("digits", num_images=N, data_dir=digits_dir))


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------


def test_the_catalogue_names_every_dataset():
    assert set(DATASETS) == {"digits", "digits-rgb", "mnist", "fashion-mnist", "cifar10", "folder"}
    for name, info in DATASETS.items():
        assert info.name == name
        assert info.channels in (1, 3)
        assert info.image_size >= 8
        assert name in dataset_summary(name)
        assert "\n" not in dataset_summary(name)
    assert not DATASETS["digits"].flips and not DATASETS["mnist"].flips
    assert DATASETS["cifar10"].flips and DATASETS["folder"].flips
    assert DATASETS["folder"].num_classes == 0


# ---------------------------------------------------------------------------
# The embedded digits
# ---------------------------------------------------------------------------


def test_digits_are_grey_28x28_in_the_unit_range(digits):
    images, labels = digits
    assert images.shape == (N, 1, 28, 28)
    assert images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert images.max() == 1  # the strokes reach full white
    assert labels.dtype == torch.int64


def test_digits_labels_cover_0_to_9_about_equally(digits):
    counts = torch.bincount(digits[1], minlength=10)
    assert counts.numel() == 10
    assert counts.min() >= N // 10 * 0.6 and counts.max() <= N // 10 * 1.4, counts.tolist()


def test_full_default_split_sizes_are_declared():
    assert image_data.DIGITS_SIZES == {"train": 60_000, "test": 10_000}


def test_digits_are_deterministic_by_seed(digits, tmp_path):
    again = stack(make_dataset("digits", num_images=N, data_dir=tmp_path / "fresh"))  # no cache there
    assert torch.equal(again[0], digits[0]) and torch.equal(again[1], digits[1])
    other = stack(make_dataset("digits", num_images=N, data_dir=tmp_path, seed=1))
    assert not torch.equal(other[0], digits[0])


def test_train_and_test_digits_differ(digits, digits_dir):
    test_images, _ = stack(make_dataset("digits", split="test", num_images=N, data_dir=digits_dir))
    assert test_images.shape == digits[0].shape
    # No test image equals any training image.
    distances = torch.cdist(test_images.flatten(1), digits[0].flatten(1))
    assert distances.min() > 0.5


def test_a_small_set_is_the_start_of_a_larger_one(digits):
    small, small_labels = image_data.generate_digits(120, seed=0)
    assert torch.equal(small.float() / 255, digits[0][:120])
    assert torch.equal(small_labels, digits[1][:120])


def test_the_digits_cache_is_written_then_reused(tmp_path, monkeypatch):
    first = stack(make_dataset("digits", num_images=200, data_dir=tmp_path))
    cached = list((tmp_path / "digits").glob("*.pt"))
    assert len(cached) == 1 and "seed0" in cached[0].name
    assert not [p for p in (tmp_path / "digits").iterdir() if p.suffix != ".pt"], "a temporary file was left"

    def must_not_run(*args, **kwargs):
        raise AssertionError("the digits were generated again instead of read from the cache")

    monkeypatch.setattr(image_data, "generate_digits", must_not_run)
    second = stack(make_dataset("digits", num_images=200, data_dir=tmp_path))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_a_corrupt_cache_is_regenerated_with_a_warning(tmp_path):
    first = stack(make_dataset("digits", num_images=200, data_dir=tmp_path))
    (path,) = (tmp_path / "digits").glob("*.pt")
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="cache"):
        again = stack(make_dataset("digits", num_images=200, data_dir=tmp_path))
    assert torch.equal(first[0], again[0])
    saved = torch.load(path, weights_only=True)  # the file was rewritten whole
    assert saved["images"].shape == (200, 1, 28, 28)


def test_digits_resize_to_32(digits_dir):
    dataset = make_dataset("digits", num_images=N, data_dir=digits_dir, image_size=32)
    image, label = dataset[0]
    assert image.shape == (1, 32, 32)
    assert image.min() >= 0 and image.max() <= 1
    assert isinstance(label, int)


def test_digits_rgb_is_bright_coloured_ink_on_black(digits, digits_dir):
    images, labels = stack(make_dataset("digits-rgb", num_images=N, data_dir=digits_dir))
    assert images.shape == (N, 3, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(labels, digits[1])  # the same digits, coloured
    grey = digits[0]  # (N, 1, 28, 28) in [0, 1]
    assert torch.equal(images.amax(dim=1) > 0, grey[:, 0] > 0), "ink where the grey digit has ink, black elsewhere"
    strongest = images.flatten(2).amax(dim=2)  # (N, 3): each channel at the digit's strongest ink
    value = strongest.amax(dim=1) / grey.flatten(1).amax(dim=1)
    low, high = INK_VALUE_RANGE
    assert (value >= low - 0.01).all() and (value <= high + 0.01).all(), "the ink's brightest channel is off"
    assert strongest.std(dim=0).min() > 0.1, "the ink colours do not vary"
    assert len(set(captions.colour_class(strongest).tolist()) - {-1}) == len(captions.COLOURS), (
        "not every named colour occurs")


def test_digits_look_like_digits(digits, tmp_path):
    images, labels = digits
    # MNIST's mean pixel is 0.13: mostly black with white strokes.
    assert 0.07 < images.mean() < 0.25
    border = torch.cat([images[:, :, :2].flatten(1), images[:, :, -2:].flatten(1)], dim=1)
    assert border.mean() < 0.02  # centred: the edges stay black
    # A nearest-class-mean classifier fitted to seed 0 must recognise seed 1's
    # test digits: the labels match the drawn glyphs. It scores about 0.77
    # here (about 0.82 on MNIST), chance is 0.1; the data are fixed by the seeds.
    means = torch.stack([images[labels == k].mean(0) for k in range(10)]).flatten(1)
    others, other_labels = stack(make_dataset("digits", split="test", seed=1, num_images=N, data_dir=tmp_path))
    predicted = torch.cdist(others.flatten(1), means).argmin(dim=1)
    accuracy = (predicted == other_labels).float().mean().item()
    assert accuracy > 0.6, f"nearest-class-mean accuracy {accuracy:.2f}"


def test_digits_are_never_flipped(digits, digits_dir):
    dataset = make_dataset("digits", num_images=N, data_dir=digits_dir, augment=True)
    torch.manual_seed(0)
    for i in range(20):
        assert torch.equal(dataset[i][0], digits[0][i])


# ---------------------------------------------------------------------------
# torchvision's datasets
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """A copy of the shared MNIST files (only .gz) in torchvision's layout."""
    if not SHARED_MNIST_RAW.is_dir():
        pytest.skip(f"no shared MNIST files beside the checkout ({SHARED_MNIST_RAW.parent.parent} is absent)")
    root = tmp_path_factory.mktemp("mnist_data")
    shutil.copytree(SHARED_MNIST_RAW, root / "MNIST" / "raw")
    return root


@pytest.mark.parametrize("split, size", [("train", 60_000), ("test", 10_000)])
def test_real_mnist_loads_from_gz_files(mnist_dir, split, size):
    dataset = make_dataset("mnist", split=split, data_dir=mnist_dir)
    assert len(dataset) == size
    images, labels = stack(torch.utils.data.Subset(dataset, range(0, size, 53)))
    assert images.shape[1:] == (1, 28, 28)
    assert images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.99
    assert set(labels.tolist()) == set(range(10))
    assert 0.1 < images.mean() < 0.16  # MNIST's mean pixel is 0.13


def test_real_mnist_subset_and_resize(mnist_dir):
    dataset = make_dataset("mnist", split="test", data_dir=mnist_dir, num_images=100, image_size=32)
    assert len(dataset) == 100
    assert dataset[0][0].shape == (1, 32, 32)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_files_offline_say_how_to_get_them(name, tmp_path):
    with pytest.raises(DatasetUnavailable) as caught:
        make_dataset(name, data_dir=tmp_path)  # download is off: nothing touches the network
    message = str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    assert "download=True" in message and "--download" in message
    assert "--data-dir" in message
    assert str(tmp_path) in message


def test_the_mnist_message_names_the_raw_folder(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"MNIST[/\\]raw"):
        make_dataset("mnist", data_dir=tmp_path)


# ---------------------------------------------------------------------------
# A folder of images
# ---------------------------------------------------------------------------


def write_png(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


def test_a_flat_folder_loads_as_unlabelled_rgb(tmp_path):
    write_png(tmp_path / "a.png", (40, 30), "RGB", 1)
    write_png(tmp_path / "b.png", (20, 50), "L", 2)
    write_png(tmp_path / "deeper" / "c.png", (64, 64), "RGBA", 3)
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = make_dataset("folder", data_dir=tmp_path, image_size=16)
    assert len(dataset) == 3
    images, labels = stack(dataset)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert labels.tolist() == [0, 0, 0]


def test_an_imagefolder_layout_gives_labels(tmp_path):
    for i, name in enumerate(["cat", "cat", "dog"]):
        write_png(tmp_path / name / f"{i}.png", (24, 24), seed=i)
    dataset = make_dataset("folder", data_dir=tmp_path)
    images, labels = stack(dataset)
    assert images.shape == (3, 3, 64, 64)  # the default size of a folder
    assert labels.tolist() == [0, 0, 1]


def test_folder_flips_only_when_augmenting_the_train_split(tmp_path):
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[:, :4] = 255  # white on the left only
    Image.fromarray(pixels).save(tmp_path / "left.png")
    torch.manual_seed(0)
    flipped = make_dataset("folder", data_dir=tmp_path, image_size=16)
    left_means = {round(flipped[0][0][:, :, :4].mean().item()) for _ in range(30)}
    assert left_means == {0, 1}, "expected both orientations with flips on"
    for split, augment in [("train", False), ("test", True)]:
        plain = make_dataset("folder", data_dir=tmp_path, image_size=16, split=split, augment=augment)
        assert all(plain[0][0][:, :, :4].mean() > 0.99 for _ in range(10))


def test_a_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        make_dataset("folder", data_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no images"):
        make_dataset("folder", data_dir=tmp_path)


# ---------------------------------------------------------------------------
# Argument checks and the preview command
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"name": "imagenet"}, "name"),
        ({"name": "digits", "split": "val"}, "split"),
        ({"name": "digits", "image_size": 4}, "image_size"),
        ({"name": "digits", "image_size": 16.0}, "image_size"),
        ({"name": "digits", "num_images": 0}, "num_images"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_choices(kwargs, argument, tmp_path):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=argument) as caught:
        make_dataset(name, data_dir=tmp_path, **kwargs)
    if argument == "name":
        assert "digits" in str(caught.value) and "cifar10" in str(caught.value)
    if argument == "split":
        assert "train" in str(caught.value) and "test" in str(caught.value)
    assert not (tmp_path / "digits").exists()  # nothing was generated


def test_dataset_summary_rejects_unknown_names():
    with pytest.raises(ValueError, match="name"):
        dataset_summary("imagenet")


def test_the_preview_command_saves_a_grid_and_prints_counts(tmp_path, capsys):
    out = tmp_path / "preview.png"
    status = image_data.main(
        ["--dataset", "digits", "--num-images", "200", "--data-dir", str(tmp_path), "--out", str(out)]
    )
    assert status == 0
    with Image.open(out) as grid:
        assert grid.size == (302, 302)  # 10 × 10 tiles of 28 pixels, 2-pixel gaps
    printed = capsys.readouterr().out
    assert "class counts" in printed and "9: " in printed
