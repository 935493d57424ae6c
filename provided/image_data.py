"""Provided datasets (no exercises here): the embedded digits, torchvision's sets, folders of images.

Every dataset that :func:`make_dataset` returns yields ``(image, label)``:

* ``image``: a float32 tensor of shape (C, H, W) with values in **[0, 1]**,
  resized to ``image_size`` (square). The training code maps it to [-1, 1].
* ``label``: an int (always 0 for an unlabelled folder).

The names in :data:`DATASETS`:

``digits`` (the default, no download)
    Labelled 28×28 grey digits 0–9 that this module draws itself from the
    TrueType fonts matplotlib ships (DejaVu Sans/Serif/Mono, STIX, Computer
    Modern), each one bent by a random affine map, an elastic distortion
    (a smoothed random displacement field, Simard et al. 2003) and a random
    stroke thickness, so that the set looks like handwriting: white on black,
    the digit fitted in a 20×20 box and centred by its centre of mass as in
    MNIST. 60,000 training and 10,000 test images by default, the same tensors
    for the same seed on any machine with the same torch, Pillow and
    matplotlib. The first call generates them (a few seconds) and caches them
    under ``<data_dir>/digits/``; later calls read the cache.
``digits-rgb``
    The same digits in colour: ink of a random bright colour per image on a
    black background (as the grey digits are white ink on black).
``mnist``, ``fashion-mnist``, ``cifar10``
    torchvision's datasets under ``data_dir`` (torchvision's folder layout).
    They are downloaded only when ``download=True``; otherwise, or when the
    download fails, :class:`DatasetUnavailable` says where to put the files.
``folder``
    Any folder of images (``data_dir`` is that folder; nesting allowed).
    Images are converted to RGB, resized so the shorter side is
    ``image_size`` (64 when None) and centre-cropped to a square. A file
    that is not an image (0 bytes, a text renamed .png…) is not skipped:
    :func:`make_dataset` names it (ValueError), so that the data is what
    the folder says it is.

Preview a dataset (a grid of 100 images and the class counts)::

    python -m provided.image_data --dataset digits --out runs/digits_preview.png
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import hashlib
import math
import os
import shutil
import sys
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .files import atomic_write, read_torch_file, save_checkpoint

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetUnavailable",
    "FolderDataset",
    "INK_VALUE_RANGE",
    "SPLITS",
    "TensorImageDataset",
    "dataset_summary",
    "digit_attributes",
    "digit_font_names",
    "generate_digits",
    "make_dataset",
]


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset name stands for.

    Attributes:
        name: the key in :data:`DATASETS` (and the value of ``--dataset``).
        channels: 1 (grey) or 3 (RGB).
        num_classes: how many labels; 0 means unlabelled (every label is 0).
        image_size: the native height and width (for "folder", the size used
            when ``image_size`` is None).
        flips: whether random horizontal flips are a sensible augmentation.
        description: one line for ``--help`` and the README.
    """

    name: str
    channels: int
    num_classes: int
    image_size: int
    flips: bool
    description: str


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "digits", 1, 10, 28, False,
            "28×28 grey digits 0–9 drawn from matplotlib's fonts with random affine and elastic "
            "distortion (embedded, no download)",
        ),
        DatasetInfo(
            "digits-rgb", 3, 10, 28, False,
            "the embedded digits in a random bright ink colour on black",
        ),
        DatasetInfo(
            "mnist", 1, 10, 28, False,
            "MNIST handwritten digits, 28×28 grey (torchvision; --download or --data-dir)",
        ),
        DatasetInfo(
            "fashion-mnist", 1, 10, 28, True,
            "Fashion-MNIST clothing, 28×28 grey (torchvision; --download or --data-dir)",
        ),
        DatasetInfo(
            "cifar10", 3, 10, 32, True,
            "CIFAR-10 photos, 32×32 (torchvision; --download or --data-dir)",
        ),
        DatasetInfo(
            "folder", 3, 0, 64, True,
            "any folder of images given by --data-dir, as RGB squares (64×64 unless --image-size)",
        ),
    )
}

#: The accepted values of ``split``.
def labelled_datasets() -> tuple[str, ...]:
    """The datasets with class labels (those a classifier can be trained on)."""
    return tuple(name for name, info in DATASETS.items() if info.num_classes)


SPLITS = ("train", "test")
#: The smallest accepted ``image_size`` (the U-Net halves the size a few times).
MIN_IMAGE_SIZE = 8


class DatasetUnavailable(RuntimeError):
    """A torchvision dataset whose files are not on disk and could not be downloaded."""


def dataset_summary(name: str) -> str:
    """One line about dataset ``name``, e.g. for ``--help`` or a README table."""
    info = _info(name)
    colour = "grey" if info.channels == 1 else "RGB"
    if info.num_classes:
        classes = f"{info.num_classes} classes"
    else:  # "folder": ImageFolder-style class subfolders give labels, anything else is unlabelled
        classes = "labels from class subfolders, else unlabelled"
    return f"{info.name}: {info.description} [{colour}, {classes}]"


# ---------------------------------------------------------------------------
# The embedded digits: glyphs rendered once, then distorted in batches
# ---------------------------------------------------------------------------

#: Bump when anything below changes the generated pixels: it names the cache files.
DIGITS_VERSION = 1
#: Images per split when ``num_images`` is None.
DIGITS_SIZES = {"train": 60_000, "test": 10_000}
#: Images drawn with one random generator; a set of n images is the first n of
#: ceil(n / chunk) whole chunks, so a small set is a prefix of a larger one.
DIGITS_CHUNK = 1000

#: The fonts matplotlib ships whose digits render properly (others there are
#: symbol fonts, or old-style figures as in cmmi10). Missing ones are skipped.
DIGIT_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)

_SIZE = 28  # output height and width
_BOX = 20  # the digit's bounding box is fitted into _BOX × _BOX (as in MNIST)
_PX = 3  # glyph-bank pixels per output pixel
_CANVAS = 32  # the glyph bank's extent in output pixels (room for the centring shift)
_RENDER = 112  # font size in pixels for the first, high-resolution rendering
_SUPERSAMPLE = 2  # output pixels are averages of 2 × 2 samples (antialiasing)
#: Stroke widths (output pixels) the glyphs are thickened or thinned to; thinning
#: stops at _MAX_THINNING (so the hairlines of bold serif fonts survive).
_STROKE_LEVELS = (1.5, 2.0, 2.5, 3.0, 3.6)
_MAX_THINNING = 1.0

#: Ranges of the random distortion of one digit (uniform unless noted).
DISTORTION = {
    "rotation_deg": 12.0,  # ± degrees
    "scale": (0.85, 1.08),  # overall size
    "aspect": (0.8, 1.1),  # width / height
    "shear": 0.25,  # ± horizontal slant (x += shear · y)
    "shift_px": 1.0,  # ± output pixels in x and y
    "elastic_px": (0.0, 1.3),  # std of the displacement field, output pixels
    "elastic_sigma_px": 3.0,  # smoothing of the displacement field, output pixels
}


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _render(font, digit: int, stroke: int = 0) -> np.ndarray:
    """``digit`` drawn white on black with a PIL font, cropped to its ink; uint8 (h, w).

    ``stroke`` > 0 thickens every stroke by that many pixels on each side (a
    round pen); ``stroke`` < 0 thins it (a minimum filter).
    """
    from PIL import Image, ImageDraw, ImageFilter

    side = 3 * _RENDER
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text(
        (side / 2, side / 2), str(digit), fill=255, font=font, anchor="mm",
        stroke_width=max(stroke, 0), stroke_fill=255,
    )
    box = canvas.getbbox()
    if box is not None and stroke < 0:  # thin the cropped glyph (cheaper than the whole canvas)
        left, top, right, bottom = box
        canvas = canvas.crop((left - 1, top - 1, right + 1, bottom + 1))
        canvas = canvas.filter(ImageFilter.MinFilter(2 * -stroke + 1))
        box = canvas.getbbox()
    if box is None:
        return np.zeros((0, 0), dtype=np.uint8)
    return np.asarray(canvas.crop(box), dtype=np.uint8)


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width of a glyph in its own pixels: 2 · area / perimeter."""
    mask = ink >= 128
    padded = np.pad(mask, 1)
    interior = (
        padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    )
    perimeter = max(int((mask & ~interior).sum()), 1)
    return 2.0 * float(mask.sum()) / perimeter


def _place(ink: np.ndarray) -> np.ndarray:
    """Scale a cropped glyph into the _BOX box and centre its centre of mass on the bank canvas."""
    from PIL import Image

    h, w = ink.shape
    factor = _BOX * _PX / max(h, w)
    new_w, new_h = max(1, round(w * factor)), max(1, round(h * factor))
    small = Image.fromarray(ink).resize((new_w, new_h), Image.LANCZOS)
    glyph = np.asarray(small, dtype=np.float32) / 255.0
    total = glyph.sum()
    rows = (glyph.sum(axis=1) * (np.arange(new_h) + 0.5)).sum() / total
    cols = (glyph.sum(axis=0) * (np.arange(new_w) + 0.5)).sum() / total
    side = _CANVAS * _PX
    # The box is 20 of 32 units wide: room for the centring shift (clipped for safety).
    top = min(max(round(side / 2 - rows), 0), side - new_h)
    left = min(max(round(side / 2 - cols), 0), side - new_w)
    canvas = np.zeros((side, side), dtype=np.float32)
    canvas[top:top + new_h, left:left + new_w] = glyph
    return canvas


@functools.lru_cache(maxsize=1)
def _digit_fonts() -> tuple[tuple[str, object, tuple[np.ndarray, ...]], ...]:
    """The fonts of DIGIT_FONTS that exist and draw ten distinct digits: (file name, PIL font, plain glyphs)."""
    from PIL import ImageFont

    usable = []
    for file_name in DIGIT_FONTS:
        path = _font_dir() / file_name
        if not path.is_file():
            continue
        try:
            font = ImageFont.truetype(str(path), _RENDER)
        except OSError:
            continue
        plain = tuple(_render(font, digit) for digit in range(10))
        # A font without digits draws nothing, or the same "missing glyph" box for each.
        if any(ink.size == 0 for ink in plain) or len({ink.tobytes() for ink in plain}) < 10:
            continue
        usable.append((file_name, font, plain))
    return tuple(usable)


def digit_font_names() -> tuple[str, ...]:
    """The font files the digits are drawn from, in the order of the ``"font"`` indices of
    :func:`digit_attributes` (the fonts of :data:`DIGIT_FONTS` this machine has; fast: no glyph bank)."""
    return tuple(name for name, _, _ in _digit_fonts())


@functools.lru_cache(maxsize=1)
def _glyph_bank() -> tuple[torch.Tensor, tuple[str, ...]]:
    """Every (font, stroke level, digit) glyph, rendered once: (fonts, levels, 10, S, S) in [0, 1]."""
    bank, names = [], []
    for file_name, font, plain in _digit_fonts():
        # Output pixels per rendered pixel, and the font's own stroke width in output pixels.
        scales = [_BOX / max(ink.shape) for ink in plain]
        width = float(np.mean([_stroke_width(ink) * s for ink, s in zip(plain, scales)]))
        levels = []
        for target in _STROKE_LEVELS:
            glyphs = []
            for digit, ink in enumerate(plain):
                change = max(target - width, -_MAX_THINNING)  # output pixels, both sides together
                grow = round(change / 2 / scales[digit])
                glyphs.append(_place(_render(font, digit, grow) if grow else ink))
            levels.append(np.stack(glyphs))
        bank.append(np.stack(levels))
        names.append(file_name)
    if not bank:
        raise RuntimeError(f"none of matplotlib's fonts under {_font_dir()} could draw the digits")
    return torch.from_numpy(np.stack(bank)).clamp_(0, 1), tuple(names)


def _chunk_generator(seed: int, split: str, chunk: int, stream: str = "digits") -> torch.Generator:
    """A torch generator for one chunk, seeded from (seed, split, chunk) the same way everywhere."""
    digest = hashlib.sha256(f"{stream}/{DIGITS_VERSION}/{seed}/{split}/{chunk}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _elastic_field(n: int, strength: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Smoothed random displacements (Simard et al. 2003), output pixels: (n, R, R, 2).

    Uniform noise on a 14 × 14 grid (2 output pixels apart) is smoothed with a
    Gaussian, rescaled to unit standard deviation, then interpolated up to the
    sampling grid and multiplied by each image's ``strength``.
    """
    grid = _SIZE // 2
    sigma = DISTORTION["elastic_sigma_px"] / 2  # in grid cells
    kernel = _gaussian_kernel(sigma)
    k = kernel.numel()
    noise = torch.rand(n, 2, grid, grid, generator=gen) * 2 - 1
    pad = k // 2
    down, across = kernel.view(1, 1, k, 1).repeat(2, 1, 1, 1), kernel.view(1, 1, 1, k).repeat(2, 1, 1, 1)
    smooth = F.conv2d(F.pad(noise, (0, 0, pad, pad), mode="reflect"), down, groups=2)  # along y
    smooth = F.conv2d(F.pad(smooth, (pad, pad, 0, 0), mode="reflect"), across, groups=2)  # along x
    # Uniform(-1, 1) noise has standard deviation √(1/3); smoothing along both
    # axes with the 1-D kernel k multiplies it by Σ k² (= √Σ of the 2-D kernel²).
    smooth = smooth / (math.sqrt(1 / 3) * float((kernel**2).sum()))
    side = _SIZE * _SUPERSAMPLE
    field = F.interpolate(smooth, size=(side, side), mode="bicubic", align_corners=False)
    return field.permute(0, 2, 3, 1) * strength.view(n, 1, 1, 1)


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def _draw_identity(gen: torch.Generator, n: int, fonts: int, levels: int) -> tuple[torch.Tensor, ...]:
    """The first draws of a chunk, per image: label (balanced), font index, stroke level (int64 (n,) each)."""
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=gen)]
    font = torch.randint(fonts, (n,), generator=gen)
    level = torch.randint(levels, (n,), generator=gen)
    return labels, font, level


def _draw_chunk(bank: torch.Tensor, gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` distorted digits (uint8 (n, 1, 28, 28)) and their labels, balanced within the chunk."""
    fonts, levels = bank.shape[:2]
    labels, font, level = _draw_identity(gen, n, fonts, levels)
    source = bank.view(-1, 1, *bank.shape[-2:])[(font * levels + level) * 10 + labels]

    d = DISTORTION
    angle = torch.deg2rad(_uniform(n, -d["rotation_deg"], d["rotation_deg"], gen))
    scale = _uniform(n, *d["scale"], gen)
    aspect = _uniform(n, *d["aspect"], gen)
    shear = _uniform(n, -d["shear"], d["shear"], gen)
    shift = _uniform(2 * n, -d["shift_px"], d["shift_px"], gen).view(n, 1, 1, 2)
    strength = _uniform(n, *d["elastic_px"], gen)

    # Forward map of the glyph (bank → output, both centred, output pixels):
    # rotation · shear · diag(scale · aspect, scale). Sampling needs its inverse.
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([cos, -sin, sin, cos], dim=1).view(n, 2, 2)
    shearing = torch.eye(2).repeat(n, 1, 1)
    shearing[:, 0, 1] = shear
    scaling = torch.diag_embed(torch.stack([scale * aspect, scale], dim=1))
    inverse = torch.linalg.inv(rotation @ shearing @ scaling)

    side = _SIZE * _SUPERSAMPLE
    axis = (torch.arange(side, dtype=torch.float32) + 0.5) / _SUPERSAMPLE - _SIZE / 2
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    where = torch.stack([xs, ys], dim=-1) + _elastic_field(n, strength, gen) - shift  # (n, R, R, 2)
    grid = torch.einsum("nij,nhwj->nhwi", inverse, where) / (_CANVAS / 2)
    images = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    images = F.avg_pool2d(images, _SUPERSAMPLE)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def generate_digits(
    num_images: int, *, seed: int = 0, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the embedded digits (no cache): uint8 images (N, 1, 28, 28) and int64 labels (N,).

    The same (seed, split) always gives the same images; the two splits and
    different seeds give different ones. Labels are balanced within every
    chunk of 1000.
    """
    _check_split(split)
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer; got {num_images!r}")
    bank, _ = _glyph_bank()
    images, labels = [], []
    for chunk in range(math.ceil(num_images / DIGITS_CHUNK)):
        chunk_images, chunk_labels = _draw_chunk(bank, _chunk_generator(seed, split, chunk), DIGITS_CHUNK)
        images.append(chunk_images)
        labels.append(chunk_labels)
    return torch.cat(images)[:num_images].contiguous(), torch.cat(labels)[:num_images].contiguous()


def digit_attributes(num_images: int, *, seed: int = 0, split: str = "train") -> dict[str, torch.Tensor]:
    """How :func:`generate_digits` drew each of the same images, without drawing them (fast).

    Returns int64 (N,) tensors: ``"digit"`` (the label), ``"font"`` (an index into
    :func:`digit_font_names`) and ``"stroke_level"`` (an index into the stroke widths
    ``_STROKE_LEVELS``, 0 thinnest to 4 boldest). Each chunk's generator is replayed
    up to these first draws only.
    """
    _check_split(split)
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer; got {num_images!r}")
    fonts = len(digit_font_names())
    drawn = [
        _draw_identity(_chunk_generator(seed, split, chunk), DIGITS_CHUNK, fonts, len(_STROKE_LEVELS))
        for chunk in range(math.ceil(num_images / DIGITS_CHUNK))
    ]
    return {
        key: torch.cat([values[i] for values in drawn])[:num_images].contiguous()
        for i, key in enumerate(("digit", "font", "stroke_level"))
    }


def _digits_cache_path(data_dir: Path, split: str, seed: int, num_images: int) -> Path:
    return data_dir / "digits" / f"digits-v{DIGITS_VERSION}-{split}-seed{seed}-n{num_images}.pt"


def _load_digits_cache(path: Path, num_images: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached digits at ``path``; None (with a warning if the file is damaged) when unusable."""
    if not path.is_file():
        return None
    try:
        saved = read_torch_file(path)
        images, labels = saved["images"], saved["labels"]
        if (
            images.dtype != torch.uint8
            or tuple(images.shape) != (num_images, 1, _SIZE, _SIZE)
            or labels.dtype != torch.int64
            or tuple(labels.shape) != (num_images,)
        ):
            raise ValueError("unexpected contents")
    except Exception as error:  # any damage: truncated file, wrong format, wrong shapes
        warnings.warn(f"the digits cache {path} is unreadable ({error}); generating it again", stacklevel=3)
        return None
    return images, labels


def _cached_digits(data_dir: Path, split: str, seed: int, num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    path = _digits_cache_path(data_dir, split, seed, num_images)
    cached = _load_digits_cache(path, num_images)
    if cached is not None:
        return cached
    images, labels = generate_digits(num_images, seed=seed, split=split)
    try:
        save_checkpoint(path, {"images": images, "labels": labels, "version": DIGITS_VERSION})
    except OSError as error:
        warnings.warn(f"could not cache the digits at {path} ({error}); they will be generated again", stacklevel=3)
    return images, labels


#: The brightest channel of a "digits-rgb" ink colour is drawn uniformly from this range.
INK_VALUE_RANGE = (0.6, 1.0)


def _digit_colours(num_images: int, seed: int, split: str) -> torch.Tensor:
    """Foreground and background colours per image, (N, 2, 3) in [0, 1]: bright ink on black.

    The ink is a uniform random point of the RGB cube (so every hue and saturation
    occurs), rescaled so that its brightest channel (HSV value) lies in
    :data:`INK_VALUE_RANGE`. The background is black, as for the grey digits:
    with a random background colour as well, Phase 7's small latent text model
    learnt the colours but hardly the digits (IMPLEMENTATION_GUIDE.md §7.1).
    """
    gen = _chunk_generator(seed, split, 0, stream="digits-rgb")
    direction = torch.rand(num_images, 3, generator=gen)
    low, high = INK_VALUE_RANGE
    value = low + (high - low) * torch.rand(num_images, 1, generator=gen)
    ink = direction / direction.amax(dim=1, keepdim=True).clamp_min(1e-6) * value
    return torch.stack([ink, torch.zeros_like(ink)], dim=1)


# ---------------------------------------------------------------------------
# Dataset classes
# ---------------------------------------------------------------------------


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (N, C, H, W) images in [0, 1] to (N, C, size, size) with antialiasing, as the datasets serve them."""
    if images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.clamp_(0, 1)


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize one (C, H, W) image in [0, 1] to (C, size, size) with antialiasing."""
    return resize_images(image[None], size)[0]


class TensorImageDataset(Dataset):
    """Images held in memory as uint8 (N, C, H, W), served as float (C, size, size) in [0, 1].

    Attributes:
        images: the uint8 tensor; ``labels``: int64 (N,).
        info: the :class:`DatasetInfo`; ``channels``, ``image_size``, ``num_classes`` as served.
        flip: whether ``__getitem__`` flips images horizontally at random (torch's global RNG).
        colours: for "digits-rgb", (N, 2, 3) foreground and background colours, else None.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        info: DatasetInfo,
        image_size: int,
        flip: bool = False,
        colours: torch.Tensor | None = None,
    ):
        self.images = images
        self.labels = labels
        self.info = info
        self.image_size = image_size
        self.flip = flip
        self.colours = colours
        self.channels = 3 if colours is not None else images.shape[1]
        self.num_classes = info.num_classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = _resize(self.images[index].float() / 255.0, self.image_size)
        if self.colours is not None:  # grey ink → a blend of the two colours
            foreground, background = self.colours[index].view(2, 3, 1, 1)
            image = background + (foreground - background) * image
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, int(self.labels[index])


#: File endings the "folder" dataset reads (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class FolderDataset(Dataset):
    """Image files read on demand, served as RGB float (3, size, size) in [0, 1].

    Each image is converted to RGB, resized so that its shorter side is
    ``image_size`` and centre-cropped. Labels: when every image lies in one
    of two or more subfolders of the root (torchvision's ImageFolder layout),
    the sorted subfolder names are the classes (``classes``, ``num_classes``);
    otherwise every label is 0 and ``num_classes`` is 0.

    Damaged files are named, never skipped (skipping would change which images
    a seeded run sees): :func:`make_dataset` refuses a folder holding a file that
    is not an image at all (0 bytes, a fake), and a file that Pillow cannot decode
    further on (cut short) raises OSError naming it when it is read.
    """

    def __init__(self, root: Path, image_size: int, flip: bool = False, files: list[Path] | None = None):
        self.root = root
        self.image_size = image_size
        self.flip = flip
        self.channels = 3
        self.info = DATASETS["folder"]
        self.files = files if files is not None else _image_files(root)
        tops = [path.relative_to(root).parts for path in self.files]
        names = sorted({parts[0] for parts in tops if len(parts) > 1})
        if len(names) >= 2 and all(len(parts) > 1 for parts in tops):
            self.classes = names
            index = {name: i for i, name in enumerate(names)}
            self.labels = torch.tensor([index[parts[0]] for parts in tops], dtype=torch.int64)
        else:
            self.classes = []
            self.labels = torch.zeros(len(self.files), dtype=torch.int64)
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        try:
            with Image.open(self.files[index]) as opened:
                picture = opened.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # cut short, damaged…
            raise OSError(f"cannot read the image {self.files[index]} ({' '.join(str(error).split())}); "
                          "remove or replace it") from None
        width, height = picture.size
        factor = self.image_size / min(width, height)
        new_w, new_h = max(self.image_size, round(width * factor)), max(self.image_size, round(height * factor))
        picture = picture.resize((new_w, new_h), Image.BICUBIC)
        left, top = (new_w - self.image_size) // 2, (new_h - self.image_size) // 2
        picture = picture.crop((left, top, left + self.image_size, top + self.image_size))
        image = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, int(self.labels[index])


def _check_images(root: Path, files: list[Path]) -> None:
    """ValueError naming the first of ``files`` that Pillow does not recognise as an image (a 0-byte
    file, a text renamed .png…); only each file's header is read."""
    from PIL import Image

    for path in files:
        try:
            with Image.open(path):
                pass
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            reason = "it is empty" if path.stat().st_size == 0 else " ".join(str(error).split())
            raise ValueError(
                f"data_dir {root} holds a file that is not an image Pillow can read: {path} ({reason}); "
                "remove or replace it"
            ) from None


def _image_files(root: Path) -> list[Path]:
    return sorted(
        path for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


# ---------------------------------------------------------------------------
# torchvision's datasets, offline-friendly
# ---------------------------------------------------------------------------

_MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def _where_files_go(name: str, root: Path) -> str:
    if name == "cifar10":
        return (
            f"put {_CIFAR_ARCHIVE} or its extracted folder {_CIFAR_FOLDER}/ (torchvision layout) "
            f"under {root}"
        )
    folder = "MNIST" if name == "mnist" else "FashionMNIST"
    return (
        f"put the files under {root / folder / 'raw'} (torchvision layout: "
        f"{', '.join(_MNIST_FILES)}; .gz copies are fine)"
    )


def _unavailable(name: str, root: Path, reason: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"dataset {name!r} is not available: {reason}. Pass download=True (--download on the command "
        f"line) where the network allows, or {_where_files_go(name, root)} and pass --data-dir {root}."
    )


def _gunzip_missing(raw: Path) -> None:
    """Decompress ``X.gz`` to ``X`` in ``raw`` for every MNIST file that exists only compressed."""
    for base in _MNIST_FILES:
        target, packed = raw / base, raw / f"{base}.gz"
        if target.is_file() or not packed.is_file():
            continue
        with gzip.open(packed, "rb") as source:
            atomic_write(target, lambda sink: shutil.copyfileobj(source, sink, length=1 << 20))


def _extract_cifar(root: Path) -> None:
    archive = root / _CIFAR_ARCHIVE
    if (root / _CIFAR_FOLDER).is_dir() or not archive.is_file():
        return
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # Python without extraction filters: refuse unsafe member names ourselves
            for member in tar.getmembers():
                if member.name.startswith(("/", "..")) or ".." in Path(member.name).parts:
                    raise ValueError(f"{archive} holds an unsafe path {member.name!r}")
            tar.extractall(root)


def _torchvision_tensors(name: str, root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels of a torchvision dataset, or DatasetUnavailable."""
    from torchvision import datasets

    train = split == "train"
    if name == "cifar10":
        try:
            _extract_cifar(root)
        except (OSError, EOFError, tarfile.TarError) as error:
            raise _unavailable(name, root, f"extracting {root / _CIFAR_ARCHIVE} failed ({error})") from error
        present = all((root / _CIFAR_FOLDER / file).is_file() for file in _CIFAR_FILES)
        factory = datasets.CIFAR10
    else:
        factory = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        raw = root / factory.__name__ / "raw"
        if raw.is_dir():
            try:
                _gunzip_missing(raw)
            except (OSError, EOFError) as error:  # a damaged .gz, or a read-only folder
                raise _unavailable(name, root, f"decompressing the .gz files in {raw} failed ({error})") from error
        present = all((raw / file).is_file() for file in _MNIST_FILES)
    if not present and not download:
        raise _unavailable(name, root, f"its files are not under {root} and download is off")
    try:
        dataset = factory(str(root), train=train, download=download and not present)
    except Exception as error:  # offline, a failed checksum, a damaged file: all say the same
        raise _unavailable(name, root, f"loading it from {root} failed ({error})") from error
    if name == "cifar10":
        images = torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    else:
        images = dataset.data.unsqueeze(1).contiguous()
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return images, labels


# ---------------------------------------------------------------------------
# The one entry point
# ---------------------------------------------------------------------------


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"dataset name must be one of {', '.join(DATASETS)}; got {name!r}")
    return DATASETS[name]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _subset(count: int, num_images: int | None, seed: int, name: str) -> torch.Tensor | None:
    """Sorted indices of a seeded random subset of ``num_images`` out of ``count`` (None: all)."""
    if num_images is None or num_images == count:
        return None
    if num_images > count:
        raise ValueError(f"num_images must be at most {count} for {name!r}; got {num_images}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[:num_images].sort().values


def make_dataset(
    name: str,
    *,
    split: str = "train",
    image_size: int | None = None,
    data_dir: str | Path = "data",
    download: bool = False,
    seed: int = 0,
    num_images: int | None = None,
    augment: bool = True,
) -> Dataset:
    """The dataset ``name`` (a key of :data:`DATASETS`), yielding ``(image, label)`` pairs.

    Args:
        name: "digits", "digits-rgb", "mnist", "fashion-mnist", "cifar10" or "folder".
        split: "train" or "test". For "folder": the ``train``/``test`` subfolder
            when both exist, otherwise every image whatever the split.
        image_size: height and width of the served images (at least 8);
            None means the native size (64 for "folder").
        data_dir: the data folder: the digits cache lives in ``<data_dir>/digits``,
            torchvision's files in its own layout below it; for "folder" it is
            the folder of images itself.
        download: let torchvision download missing files (never otherwise).
        seed: which digits are drawn; for the other datasets, which subset
            ``num_images`` keeps.
        num_images: how many images (None: all; for the digits 60,000 train,
            10,000 test).
        augment: random horizontal flips, on the train split of datasets whose
            ``flips`` is True only.

    Returns:
        A :class:`TensorImageDataset` (digits, torchvision's) or :class:`FolderDataset`;
        images are float32 (C, H, W) in [0, 1], labels ints.

    Raises:
        ValueError: an unknown name or split, a bad image_size or num_images,
            a missing or empty folder, a folder holding a file that is not an image.
        DatasetUnavailable: torchvision's files are missing and not downloadable.
    """
    info = _info(name)
    _check_split(split)
    if image_size is not None and (not _is_int(image_size) or image_size < MIN_IMAGE_SIZE):
        raise ValueError(
            f"image_size must be an integer of at least {MIN_IMAGE_SIZE}, or None for the native size "
            f"({info.image_size} for {name!r}); got {image_size!r}"
        )
    if num_images is not None and (not _is_int(num_images) or num_images < 1):
        raise ValueError(f"num_images must be a positive integer, or None for all images; got {num_images!r}")
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    size = int(image_size) if image_size is not None else info.image_size
    num_images = int(num_images) if num_images is not None else None
    flip = augment and split == "train" and info.flips
    root = Path(data_dir)

    if name in ("digits", "digits-rgb"):
        count = num_images if num_images is not None else DIGITS_SIZES[split]
        images, labels = _cached_digits(root, split, int(seed), count)
        colours = _digit_colours(count, int(seed), split) if name == "digits-rgb" else None
        return TensorImageDataset(images, labels, info, size, flip=flip, colours=colours)

    if name == "folder":
        if not root.is_dir():
            raise ValueError(
                f"data_dir must be an existing folder of images for the 'folder' dataset; {root} is not a folder"
            )
        if (root / "train").is_dir() and (root / "test").is_dir():
            root = root / split
        files = _image_files(root)
        if not files:
            raise ValueError(
                f"data_dir {root} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)} in any subfolder)"
            )
        keep = _subset(len(files), num_images, int(seed), name)
        dataset = FolderDataset(root, size, flip=flip, files=files)
        if keep is not None:  # the labels come from the whole folder, then the subset
            dataset.files = [files[i] for i in keep.tolist()]
            dataset.labels = dataset.labels[keep]
        _check_images(root, dataset.files)
        return dataset

    images, labels = _torchvision_tensors(name, root, split, download)
    keep = _subset(images.shape[0], num_images, int(seed), name)
    if keep is not None:
        images, labels = images[keep], labels[keep]
    return TensorImageDataset(images, labels, info, size, flip=flip)


# ---------------------------------------------------------------------------
# Preview: python -m provided.image_data --dataset digits --out runs/digits_preview.png
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Save a 10 × 10 grid of a dataset's first images and print its class counts."""
    from torchvision.utils import save_image

    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__ + '.' if __package__ else ''}image_data",
        description="Preview a dataset: save a grid of 100 images and print the class counts.",
        epilog="datasets:\n" + "\n".join(f"  {dataset_summary(name)}" for name in DATASETS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", default="digits", choices=list(DATASETS), help="which dataset (default digits)")
    parser.add_argument("--split", default="train", choices=list(SPLITS))
    parser.add_argument("--data-dir", default="data", help="data folder (for 'folder': the folder of images)")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing files")
    parser.add_argument("--image-size", type=int, default=None, help="resize to this size (default: native)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-images", type=int, default=None, help="dataset size (default: all)")
    parser.add_argument("--out", default=None, help="PNG to write (default runs/<dataset>_preview.png)")
    args = parser.parse_args(argv)

    try:
        dataset = make_dataset(
            args.dataset, split=args.split, image_size=args.image_size, data_dir=args.data_dir,
            download=args.download, seed=args.seed, num_images=args.num_images, augment=False,
        )
    except (ValueError, DatasetUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shown = min(100, len(dataset))
    grid = torch.stack([dataset[i][0] for i in range(shown)])
    out = Path(args.out or f"runs/{args.dataset}_preview.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, out, nrow=10, padding=2)
    labels = dataset.labels
    counts = torch.bincount(labels, minlength=max(1, dataset.num_classes)).tolist()
    print(f"{args.dataset} ({args.split}): {len(dataset)} images of shape {tuple(grid.shape[1:])}, "
          f"mean pixel {grid.mean():.3f}")
    print("class counts: " + ", ".join(f"{label}: {count}" for label, count in enumerate(counts)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
