"""True captions for the embedded digits, and the word tokenizer of Phase 7 (provided, no exercises).

Phase 7 trains a text-conditioned denoiser on the embedded digits ("digits", and
"digits-rgb" for colours). The captions are *true by construction*: every word
comes from how :mod:`provided.image_data` drew the image, or from a measurement of
the clean image, so that a generated image can later be checked against its
prompt with the same measurements.

The attributes, and where each comes from
-----------------------------------------

==========  ===========================================  =====================================
attribute   values                                       source
==========  ===========================================  =====================================
digit       0–9 ("seven", "7")                           the generator's label
stroke      thin (levels 0, 1), regular (2),             the generator's stroke level
            bold (levels 3, 4)                           (``image_data._STROKE_LEVELS``)
family      sans, serif, mono                            the generator's font file
            (:data:`FONT_FAMILIES`)
slant       left, upright, right; unmentioned between    :func:`slant` of the clean image
            (the dead zones of :data:`SLANT_THRESHOLDS`)
colour      red, yellow, green, cyan, blue, magenta      the generator's foreground colour
            ("digits-rgb" only); unmentioned when        (:func:`colour_class`, which a
            unsaturated, dark or between two hues        generated image is measured with too)
==========  ===========================================  =====================================

Measurements (vectorised, for images (N, C, H, W) in [0, 1], C = 1 or 3)
------------------------------------------------------------------------

All of them start from the per-pixel *ink* (:func:`ink`), a weight in [0, 1]:

* grey images (C = 1) are white ink on black: the ink is the pixel value itself;
* RGB images are a blend ``background + ink · (foreground − background)`` of two
  unknown colours. The background is the per-channel median of the two-pixel
  border (digits never reach it in practice), and the ink is each pixel's colour
  distance from it, divided by the mean distance of the image's 1 % most distant
  pixels (its strongest ink), then clipped to [0, 1]. On a clean "digits-rgb" image
  this recovers the grey image's ink up to its brightest pixel; a difference of
  colour under :data:`MIN_CONTRAST` counts as no ink at all.

From the ink: :func:`ink_mass` (mean ink), :func:`stroke_width` (twice the ink over
its edge length: the stroke weight, whatever the digit), :func:`slant`
(the second-moment slope μ11/μ02 with x to the right and y *up*, so a positive
slant is a top leaning right) and :func:`foreground_colour` (the ink's colour,
extrapolated from the strong-ink pixels to full ink), with :func:`hsv` giving its
hue, saturation and value. Images without ink have a NaN slant and colour.

Captions
--------

A small grammar (:func:`prompts_for` shows it) names each attribute of an image
with some probability (the digit most of the time, the others less often) so that
a model also learns what an unmentioned attribute looks like on average, in
varied phrasing: "a bold seven", "7, thin, leaning right", "a red serif 3",
"the digit two in a monospace font", "a thick upright 4". Every image gets one
caption, drawn from a numpy generator seeded from (seed, split, chunk of 1000
images), so the captions of a small set are the first ones of a larger set.

Held-out combinations
---------------------

:data:`HELD_OUT` names a few (digit, attribute) pairs, e.g. a bold 7. Training
images that *have* such a pair (whatever their caption says) are left out of the
caption training set (:attr:`CaptionedDigits.keep`), so the model never sees that
combination; :func:`evaluation_prompts` then asks for every digit × attribute pair
with the same grammar, split into the pairs seen in training and the held-out ones
(compositional generalisation).

Tokens
------

:class:`Tokenizer` is word level over the grammar's whole vocabulary (no unknown
token: a word outside it is an error that lists the vocabulary). Text is
lower-cased and split at white space; a comma is a word of its own (the list form
of the captions uses it), any other punctuation is part of its word (so "seven."
is an unknown word). A caption becomes ``<bos> words <eos>`` padded with ``<pad>``
to ``max_length`` (:data:`MAX_LENGTH`); the empty caption "" (the unconditional one
of classifier-free guidance) is ``<bos> <eos>`` and padding, never all padding, so
attention always has a key to attend to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from . import image_data

__all__ = [
    "CAPTIONS_VERSION",
    "COLOURS",
    "FAMILIES",
    "FONT_FAMILIES",
    "HELD_OUT",
    "MAX_LENGTH",
    "SLANTS",
    "SLANT_THRESHOLDS",
    "STROKES",
    "CaptionedDigits",
    "HeldOutPair",
    "Prompt",
    "Tokenizer",
    "UnknownWordsError",
    "caption_attributes",
    "captioned_digits",
    "captions_for",
    "colour_class",
    "evaluation_prompts",
    "foreground_colour",
    "foreground_hue",
    "foreground_saturation",
    "held_out_mask",
    "hsv",
    "ink",
    "ink_mass",
    "longest_caption_words",
    "prompts_for",
    "slant",
    "slant_class",
    "stroke_class",
    "stroke_width",
    "vocabulary",
]

#: Bump when the grammar or the attribute rules change the captions of the same images.
CAPTIONS_VERSION = 3

# ---------------------------------------------------------------------------
# Attribute classes
# ---------------------------------------------------------------------------

#: Stroke classes, indexed by the ``"stroke"`` attribute; :data:`_STROKE_OF_LEVEL` maps
#: the generator's five stroke levels (1.5, 2.0, 2.5, 3.0, 3.6 output pixels) to them.
STROKES = ("thin", "regular", "bold")
_STROKE_OF_LEVEL = (0, 0, 1, 2, 2)

#: Slant classes, indexed by the ``"slant_class"`` attribute (-1: in a dead zone, unmentioned).
SLANTS = ("left", "upright", "right")
#: Limits of :func:`slant` (dx/dy of the ink, y up): "upright" within ±upright, "left" at or
#: below −leaning, "right" at or above +leaning; the dead zones between stay unmentioned.
#: Measured on the 60,000 training digits (seed 0): left 11.8 %, upright 20.9 %, right 30.5 %.
SLANT_THRESHOLDS = {"upright": 0.06, "leaning": 0.18}

#: Font families, indexed by the ``"family"`` attribute.
FAMILIES = ("sans", "serif", "mono")
#: The family of each font file of ``image_data.DIGIT_FONTS``.
FONT_FAMILIES = {
    "DejaVuSans.ttf": "sans", "DejaVuSans-Bold.ttf": "sans", "DejaVuSans-Oblique.ttf": "sans",
    "DejaVuSans-BoldOblique.ttf": "sans", "cmss10.ttf": "sans",
    "DejaVuSerif.ttf": "serif", "DejaVuSerif-Bold.ttf": "serif", "DejaVuSerif-Italic.ttf": "serif",
    "DejaVuSerif-BoldItalic.ttf": "serif", "STIXGeneral.ttf": "serif", "STIXGeneralBol.ttf": "serif",
    "STIXGeneralItalic.ttf": "serif", "STIXGeneralBolIta.ttf": "serif", "cmr10.ttf": "serif",
    "cmb10.ttf": "serif", "cmti10.ttf": "serif",
    "DejaVuSansMono.ttf": "mono", "DejaVuSansMono-Bold.ttf": "mono", "DejaVuSansMono-Oblique.ttf": "mono",
    "DejaVuSansMono-BoldOblique.ttf": "mono", "cmtt10.ttf": "mono",
}

#: Colour classes, indexed by the ``"colour"`` attribute (-1: unnamed), with their hues in degrees.
COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta")
_COLOUR_HUES = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
#: A colour is named when its hue is within ``hue_window`` degrees of one of :data:`COLOURS`
#: (so 20° between two windows are unnamed), its HSV saturation is at least ``saturation``
#: and its value (brightest channel) at least ``value``; otherwise it stays unmentioned.
COLOUR_RULE = {"hue_window": 20.0, "saturation": 0.5, "value": 0.4}

#: RGB colour distances under this are no ink (:func:`ink`).
MIN_CONTRAST = 0.1
_BORDER = 2  # pixels of the border that give an RGB image's background colour


class HeldOutPair(NamedTuple):
    """A (digit, attribute value) combination no training caption set shows: ``kind`` is
    "stroke", "slant" or "colour" and ``value`` a word of STROKES, SLANTS or COLOURS."""

    kind: str
    digit: int
    value: str


#: The combinations left out of training (images that have them, whatever their caption).
#: Colour pairs apply to "digits-rgb" only.
HELD_OUT = (
    HeldOutPair("stroke", 7, "bold"),
    HeldOutPair("stroke", 2, "thin"),
    HeldOutPair("slant", 4, "left"),
    HeldOutPair("slant", 9, "right"),
    HeldOutPair("colour", 3, "red"),
    HeldOutPair("colour", 8, "blue"),
)

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def _as_images(images: torch.Tensor) -> torch.Tensor:
    """float32 (N, C, H, W) in [0, 1] (uint8 is divided by 255, floats are clipped)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor (N, C, H, W) with C = 1 or 3; got {shape}")
    if min(images.shape[-2:]) < 2 * _BORDER + 1:
        raise ValueError(f"images must be at least {2 * _BORDER + 1} pixels high and wide; got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1] or uint8; got {images.dtype}")
    return images.float().clamp(0, 1)


def _background(images: torch.Tensor) -> torch.Tensor:
    """Per-channel median of the border pixels: (N, C)."""
    n, c, h, w = images.shape
    ring = torch.ones(h, w, dtype=torch.bool, device=images.device)
    ring[_BORDER:h - _BORDER, _BORDER:w - _BORDER] = False
    return images[:, :, ring].median(dim=-1).values


def ink(images: torch.Tensor) -> torch.Tensor:
    """The ink of each pixel, (N, H, W) in [0, 1] (see the module docstring for RGB)."""
    images = _as_images(images)
    if images.shape[1] == 1:
        return images[:, 0]
    distance = (images - _background(images)[:, :, None, None]).square().sum(1).sqrt()  # (N, H, W)
    k = max(1, distance[0].numel() // 100)
    strongest = distance.flatten(1).topk(k, dim=1).values.mean(1).clamp_min(MIN_CONTRAST)
    weight = distance / strongest[:, None, None]
    return torch.where(distance < MIN_CONTRAST, torch.zeros_like(weight), weight).clamp(0, 1)


def ink_mass(images: torch.Tensor) -> torch.Tensor:
    """Mean ink per image, (N,): a stroke-weight proxy (0 for an empty image)."""
    return ink(images).mean(dim=(1, 2))


def stroke_width(images: torch.Tensor) -> torch.Tensor:
    """The ink's mean stroke width in pixels, (N,): twice its ink mass over its edge length.

    A stroke of width w and length L holds w·L of ink and has 2·(L + w) of edge, so
    ``2 · Σ ink / Σ |∇ink|`` is w·L / (L + w), close to w for the long strokes of a
    digit whatever its shape and size, which the ink mass alone is not (a 1 holds
    less ink than an 8 of the same stroke). ∇ is the forward difference, which
    counts a soft edge's full height. A stroke under two pixels wide, whose pixels
    never reach full ink, measures a little wider than it is (a bar 1.5 pixels wide
    about 1.8). 0 for an image without ink.
    """
    weight = ink(images)
    gradient_x = torch.zeros_like(weight)
    gradient_y = torch.zeros_like(weight)
    gradient_x[:, :, :-1] = weight[:, :, 1:] - weight[:, :, :-1]
    gradient_y[:, :-1] = weight[:, 1:] - weight[:, :-1]
    edge = (gradient_x.square() + gradient_y.square()).sqrt().sum(dim=(1, 2))
    return 2 * weight.sum(dim=(1, 2)) / edge.clamp_min(1e-6)


def slant(images: torch.Tensor) -> torch.Tensor:
    """The ink's second-moment slant μ11 / μ02, (N,), with x to the right and y up.

    It is the least-squares slope dx/dy of the ink: 0 for an upright stroke, positive
    when the top leans right (a bar sheared by x += s·y has slant s), negative when
    it leans left. NaN for an image without ink.
    """
    weight = ink(images)
    h, w = weight.shape[-2:]
    x = torch.arange(w, dtype=weight.dtype, device=weight.device).view(1, 1, w)
    y = -torch.arange(h, dtype=weight.dtype, device=weight.device).view(1, h, 1)  # rows go down, y up
    total = weight.sum(dim=(1, 2))
    safe = total.clamp_min(1e-6)
    dx = x - ((weight * x).sum(dim=(1, 2)) / safe).view(-1, 1, 1)
    dy = y - ((weight * y).sum(dim=(1, 2)) / safe).view(-1, 1, 1)
    mu11 = (weight * dx * dy).sum(dim=(1, 2))
    mu02 = (weight * dy * dy).sum(dim=(1, 2))
    result = mu11 / mu02.clamp_min(1e-6)
    return torch.where(total > 1e-3, result, torch.full_like(result, float("nan")))


def foreground_colour(images: torch.Tensor) -> torch.Tensor:
    """The ink's colour, (N, 3) in [0, 1] (white for grey images); NaN for an image without ink.

    Pixels with at least half the image's strongest ink are a blend
    ``background + ink · (foreground − background)``; their summed difference from
    the background divided by their summed ink is foreground − background.
    """
    images = _as_images(images)
    weight = ink(images)
    strong = (weight >= 0.5).to(weight.dtype)
    background = _background(images) if images.shape[1] == 3 else torch.zeros_like(images[:, :, 0, 0])
    difference = ((images - background[:, :, None, None]) * strong[:, None]).sum(dim=(2, 3))
    amount = (weight * strong).sum(dim=(1, 2))
    colour = (background + difference / amount.clamp_min(1e-6)[:, None]).clamp(0, 1)
    colour = colour.expand(-1, 3) if colour.shape[1] == 1 else colour
    return torch.where((amount > 0)[:, None], colour, torch.full_like(colour, float("nan")))


def hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in degrees [0, 360), HSV saturation and value of colours (..., 3) in [0, 1] (hue 0 for greys)."""
    if not isinstance(rgb, torch.Tensor) or rgb.shape[-1:] != (3,):
        raise ValueError(f"rgb must be a tensor (..., 3); got {getattr(rgb, 'shape', type(rgb).__name__)}")
    rgb = rgb.float()
    r, g, b = rgb.unbind(-1)
    value, top = rgb.max(dim=-1)
    chroma = value - rgb.min(dim=-1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(top == 0, ((g - b) / safe) % 6, torch.where(top == 1, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue * 60.0, torch.zeros_like(hue)) % 360.0
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)),
                             torch.zeros_like(value))
    nan = rgb.isnan().any(dim=-1)
    return tuple(torch.where(nan, torch.full_like(part, float("nan")), part) for part in (hue, saturation, value))


def foreground_hue(images: torch.Tensor) -> torch.Tensor:
    """Hue in degrees of :func:`foreground_colour`, (N,) (0 for grey ink, NaN without ink)."""
    return hsv(foreground_colour(images))[0]


def foreground_saturation(images: torch.Tensor) -> torch.Tensor:
    """HSV saturation of :func:`foreground_colour`, (N,) in [0, 1] (0 for grey ink, NaN without ink)."""
    return hsv(foreground_colour(images))[1]


def colour_class(rgb: torch.Tensor) -> torch.Tensor:
    """Index into :data:`COLOURS` of colours (..., 3), or -1 when unnamed (:data:`COLOUR_RULE`; NaN: -1)."""
    hue, saturation, value = hsv(rgb)
    centres = torch.tensor(_COLOUR_HUES, device=hue.device)
    distance = (hue.unsqueeze(-1) - centres).abs() % 360.0
    distance = torch.minimum(distance, 360.0 - distance)
    nearest, index = distance.min(dim=-1)
    named = (
        (nearest <= COLOUR_RULE["hue_window"])
        & (saturation >= COLOUR_RULE["saturation"])
        & (value >= COLOUR_RULE["value"])
    )
    return torch.where(named, index, torch.full_like(index, -1))


def slant_class(values: torch.Tensor) -> torch.Tensor:
    """Index into :data:`SLANTS` of :func:`slant` values, or -1 in a dead zone (and for NaN)."""
    values = torch.as_tensor(values, dtype=torch.float32)
    upright, leaning = SLANT_THRESHOLDS["upright"], SLANT_THRESHOLDS["leaning"]
    classes = torch.full(values.shape, -1, dtype=torch.int64, device=values.device)
    classes[values <= -leaning] = 0
    classes[values.abs() <= upright] = 1
    classes[values >= leaning] = 2
    return classes


def stroke_class(levels: torch.Tensor) -> torch.Tensor:
    """Index into :data:`STROKES` of the generator's stroke levels 0..4."""
    return torch.tensor(_STROKE_OF_LEVEL, dtype=torch.int64)[torch.as_tensor(levels, dtype=torch.int64)]


def _in_batches(function, images: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    return torch.cat([function(images[i:i + batch]) for i in range(0, images.shape[0], batch)])


# ---------------------------------------------------------------------------
# The grammar
# ---------------------------------------------------------------------------

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_STROKE_WORDS = {"thin": ("thin", "slender"), "regular": ("regular", "medium"), "bold": ("bold", "thick", "heavy")}
_STROKE_AFTER = ("with {} strokes",)
_SLANT_AFTER = {
    "left": ("leaning left", "slanted left", "tilted to the left", "leaning to the left"),
    "upright": ("standing upright", "standing straight"),
    "right": ("leaning right", "slanted right", "tilted to the right", "leaning to the right"),
}
_SLANT_SHORT = {
    "left": ("leaning left", "slanted left", "tilted left"),
    "upright": ("upright", "straight"),
    "right": ("leaning right", "slanted right", "tilted right"),
}
_FAMILY_WORDS = {"sans": ("sans",), "serif": ("serif",), "mono": ("monospace", "typewriter", "mono")}
_FAMILY_AFTER = ("in a {} font", "in {} type")
_COLOUR_WORDS = {"red": ("red",), "yellow": ("yellow",), "green": ("green",), "cyan": ("cyan",),
                 "blue": ("blue",), "magenta": ("magenta", "purple")}
_COLOUR_AFTER = ("in {}", "coloured {}")
_NOUNS = ("digit", "number")

#: How often an attribute the image has is named in its training caption. The slant is named
#: often: "upright" narrows the slant to a band around the mean rather than shifting it, and
#: guidance (which pushes away from the unconditional answer) barely helps there; named in half
#: the captions, a 7-minute latent model drew upright digits only about 40% of the time when
#: asked, against about 60% at 0.8 (left and right: about 100% either way). Thin and bold are
#: named as often, so that the model learns them apart from the digit: at 0.5 the held-out thin
#: 2s and bold 7s came out thin or bold 65–70% of the time in two runs (seen pairs: 94–96%), at
#: 0.8 86–94% in four. Naming the slant still more often (0.95, or "upright" always) made the
#: held-out 9s leaning right worse, not the upright digits better.
_MENTION = {"digit": 0.9, "stroke": 0.8, "regular": 0.2, "slant": 0.8, "family": 0.35, "colour": 0.6}
_LIST_FORM = 0.25  # "7, thin, leaning right"
_AFTER = 0.35  # an attribute goes after the noun ("with thick strokes") rather than before
_MAX_AFTER = 2  # phrases after the noun, at most


class _Draws:
    """Uniform numbers from a numpy generator, in blocks (fast scalar draws, same sequence)."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._block = rng.random(1024)
        self._next = 0

    def uniform(self) -> float:
        if self._next == self._block.size:
            self._block, self._next = self._rng.random(1024), 0
        self._next += 1
        return float(self._block[self._next - 1])

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def one(self, options: Sequence):
        return options[min(int(self.uniform() * len(options)), len(options) - 1)]

    def shuffled(self, items: list) -> list:
        items = list(items)
        for i in range(len(items) - 1, 0, -1):  # Fisher–Yates
            j = min(int(self.uniform() * (i + 1)), i)
            items[i], items[j] = items[j], items[i]
        return items


def _rng(*parts) -> np.random.Generator:
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _article(word: str) -> str:
    return "an" if word == "8" or (word[0] in "aeiou" and word != "one") else "a"


def _compose(draw: _Draws, digit: int | None, stroke: str | None = None, slant: str | None = None,
             family: str | None = None, colour: str | None = None) -> str:
    """One caption naming exactly the attributes given (None: unmentioned)."""
    mentioned = [(kind, value) for kind, value in
                 (("stroke", stroke), ("slant", slant), ("colour", colour), ("family", family)) if value is not None]
    if mentioned and draw.chance(_LIST_FORM):  # "7, thin, leaning right"
        if digit is None:
            head = "a " + draw.one(_NOUNS)
        else:
            head = draw.one((_DIGIT_WORDS[digit], str(digit)))
        parts = []
        for kind, value in draw.shuffled(mentioned):
            if kind == "stroke":
                parts.append(draw.one(_STROKE_WORDS[value]))
            elif kind == "slant":
                parts.append(draw.one(_SLANT_SHORT[value]))
            elif kind == "colour":
                parts.append(draw.one(_COLOUR_WORDS[value]))
            else:
                parts.append(draw.one(_FAMILY_WORDS[value]) + draw.one(("", " font")))
        return ", ".join([head] + parts)

    # "a thick upright red serif seven in a monospace font leaning left": words before the
    # noun in that order, at most two phrases after it (a left or right slant always after).
    before: dict[str, str] = {}
    after: list[str] = []
    for kind, value in mentioned:
        forced = kind == "slant" and value != "upright"
        if forced or (len(after) < _MAX_AFTER and draw.chance(_AFTER)):
            if kind == "stroke":
                after.append(draw.one(_STROKE_AFTER).format(draw.one(_STROKE_WORDS[value])))
            elif kind == "slant":
                after.append(draw.one(_SLANT_AFTER[value]))
            elif kind == "colour":
                after.append(draw.one(_COLOUR_AFTER).format(draw.one(_COLOUR_WORDS[value])))
            else:
                after.append(draw.one(_FAMILY_AFTER).format(draw.one(_FAMILY_WORDS[value])))
        elif kind == "stroke":
            before[kind] = draw.one(_STROKE_WORDS[value])
        elif kind == "slant":
            before[kind] = draw.one(_SLANT_SHORT["upright"])
        elif kind == "colour":
            before[kind] = draw.one(_COLOUR_WORDS[value])
        else:
            before[kind] = draw.one(_FAMILY_WORDS[value])
    if digit is None:
        noun = draw.one(_NOUNS)
    else:
        form = draw.uniform()
        if form < 0.4:
            noun = _DIGIT_WORDS[digit]
        elif form < 0.7:
            noun = str(digit)
        elif form < 0.85:
            noun = "digit " + draw.one((_DIGIT_WORDS[digit], str(digit)))
        else:
            noun = "number " + draw.one((_DIGIT_WORDS[digit], str(digit)))
    words = [before[kind] for kind in ("stroke", "slant", "colour", "family") if kind in before] + [noun]
    first = words[0].split()[0]
    article = "the" if draw.chance(0.25) else _article(first)
    return " ".join([article] + words + after)


def longest_caption_words() -> int:
    """The most words (commas included) a caption of the grammar can have."""
    def longest(options) -> int:
        return max(len(option.replace(",", " , ").split()) for option in options)

    # The phrase form: article, the noun (two words), two phrases after it, one word before for each
    # other attribute (four attributes at most; a slant of two words only comes after the noun).
    after = sorted([
        max(longest(_STROKE_AFTER) - 1 + longest(sum(_STROKE_WORDS.values(), ())), 0),
        longest(sum(_SLANT_AFTER.values(), ())),
        longest(_COLOUR_AFTER) - 1 + longest(sum(_COLOUR_WORDS.values(), ())),
        longest(_FAMILY_AFTER) - 1 + longest(sum(_FAMILY_WORDS.values(), ())),
    ], reverse=True)
    phrase = 1 + 2 + sum(after[:_MAX_AFTER]) + (4 - _MAX_AFTER)
    # The list form: a head of at most two words ("a digit"), then a comma and a short phrase per attribute.
    short = [
        longest(sum(_STROKE_WORDS.values(), ())),
        longest(sum(_SLANT_SHORT.values(), ())),
        longest(sum(_COLOUR_WORDS.values(), ())),
        longest(sum(_FAMILY_WORDS.values(), ())) + 1,
    ]
    listed = 2 + sum(1 + words for words in short)
    return max(phrase, listed)


def vocabulary() -> tuple[str, ...]:
    """Every word the grammar can write (commas included), sorted."""
    phrases = [*_DIGIT_WORDS, *(str(d) for d in range(10)), *_NOUNS, "a", "an", "the", ",", "font"]
    phrases += [option.format("") for option in (*_STROKE_AFTER, *_FAMILY_AFTER, *_COLOUR_AFTER)]
    for table in (_STROKE_WORDS, _SLANT_AFTER, _SLANT_SHORT, _FAMILY_WORDS, _COLOUR_WORDS):
        for options in table.values():
            phrases += options
    return tuple(sorted({word for phrase in phrases for word in phrase.split()}))


def _check_choice(name: str, value, allowed: Sequence[str]) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)} or None; got {value!r}")


def prompts_for(digit: int | None, *, stroke: str | None = None, slant: str | None = None,
                family: str | None = None, colour: str | None = None, count: int = 1, seed: int = 0) -> list[str]:
    """``count`` phrasings of a prompt that names exactly these attributes (None: unmentioned).

    The training captions' grammar, so that a prompt never uses a word or phrasing the
    model has not seen. Deterministic by (attributes, seed).
    """
    if digit is not None and (isinstance(digit, bool) or not isinstance(digit, (int, np.integer)) or not 0 <= digit <= 9):
        raise ValueError(f"digit must be an integer 0..9 or None; got {digit!r}")
    _check_choice("stroke", stroke, STROKES)
    _check_choice("slant", slant, SLANTS)
    _check_choice("family", family, FAMILIES)
    _check_choice("colour", colour, COLOURS)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer; got {count!r}")
    draw = _Draws(_rng("prompts", CAPTIONS_VERSION, seed, digit, stroke, slant, family, colour))
    digit = None if digit is None else int(digit)
    return [_compose(draw, digit, stroke, slant, family, colour) for _ in range(count)]


def captions_for(attributes: dict[str, torch.Tensor], *, seed: int = 0, split: str = "train") -> list[str]:
    """One training caption per image of :func:`caption_attributes`, deterministic by (seed, split).

    Each attribute the image has is named with the probability of ``_MENTION``
    (regular strokes rarely, an unmentioned slant or colour never).
    """
    digits = attributes["digit"].tolist()
    strokes = attributes["stroke"].tolist()
    slants = attributes["slant_class"].tolist()
    families = attributes["family"].tolist()
    colours = attributes["colour"].tolist() if "colour" in attributes else [-1] * len(digits)
    captions = []
    chunk = image_data.DIGITS_CHUNK
    for start in range(0, len(digits), chunk):
        draw = _Draws(_rng("captions", CAPTIONS_VERSION, seed, split, start // chunk))
        for i in range(start, min(start + chunk, len(digits))):
            stroke = STROKES[strokes[i]]
            said_stroke = draw.chance(_MENTION["regular" if stroke == "regular" else "stroke"])
            said_slant = slants[i] >= 0 and draw.chance(_MENTION["slant"])
            said_family = draw.chance(_MENTION["family"])
            said_colour = colours[i] >= 0 and draw.chance(_MENTION["colour"])
            said_digit = draw.chance(_MENTION["digit"])
            captions.append(_compose(
                draw,
                digits[i] if said_digit else None,
                stroke if said_stroke else None,
                SLANTS[slants[i]] if said_slant else None,
                FAMILIES[families[i]] if said_family else None,
                COLOURS[colours[i]] if said_colour else None,
            ))
    return captions


# ---------------------------------------------------------------------------
# Attributes of the digits, held-out pairs, evaluation prompts
# ---------------------------------------------------------------------------

_DIGIT_DATASETS = ("digits", "digits-rgb")


def caption_attributes(name: str = "digits", *, split: str = "train", seed: int = 0, num_images: int | None = None,
                       data_dir: str | Path = "data") -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """The attributes of every image of a digits dataset, with its uint8 images and (RGB) colours.

    Returns ``(attributes, images, colours)``: ``attributes`` maps to (N,) tensors, int64
    ``"digit"``, ``"font"`` (index into ``image_data.digit_font_names()``), ``"stroke_level"``
    (0..4), ``"stroke"`` (STROKES), ``"family"`` (FAMILIES), ``"slant_class"`` (SLANTS or -1)
    and float ``"slant"``, ``"ink_mass"``; for "digits-rgb" also int64 ``"colour"``
    (COLOURS or -1), float ``"hue"`` and ``"saturation"`` of the foreground colour.
    ``images`` are the grey uint8 (N, 1, 28, 28) digits (the RGB ones are these blended
    between ``colours[:, 1]`` and ``colours[:, 0]``); the images come from the
    ``image_data`` cache under ``data_dir`` (generated once when missing).
    """
    if name not in _DIGIT_DATASETS:
        raise ValueError(f"captions exist for the datasets {', '.join(_DIGIT_DATASETS)}; got {name!r}")
    dataset = image_data.make_dataset(name, split=split, seed=seed, num_images=num_images, data_dir=data_dir,
                                      augment=False)
    images = dataset.images
    drawn = image_data.digit_attributes(images.shape[0], seed=seed, split=split)
    if not torch.equal(drawn["digit"], dataset.labels):
        raise RuntimeError(f"the cached digits under {data_dir} do not match the generator's labels; "
                           "delete the cache so that it is generated again")
    names = image_data.digit_font_names()
    family_of_font = torch.tensor([FAMILIES.index(FONT_FAMILIES[font]) for font in names], dtype=torch.int64)
    measured_slant = _in_batches(slant, images)
    attributes = {
        **drawn,
        "stroke": stroke_class(drawn["stroke_level"]),
        "family": family_of_font[drawn["font"]],
        "slant": measured_slant,
        "slant_class": slant_class(measured_slant),
        "ink_mass": _in_batches(ink_mass, images),
    }
    colours = dataset.colours
    if colours is not None:
        hue, saturation, _ = hsv(colours[:, 0])
        attributes.update(colour=colour_class(colours[:, 0]), hue=hue, saturation=saturation)
    return attributes, images, colours


def held_out_mask(attributes: dict[str, torch.Tensor], pairs: Sequence[HeldOutPair] = HELD_OUT) -> torch.Tensor:
    """True for the images that have one of the held-out pairs (colour pairs only where there are colours)."""
    digits = attributes["digit"]
    mask = torch.zeros(digits.shape, dtype=torch.bool)
    for pair in pairs:
        if pair.kind == "colour" and "colour" not in attributes:
            continue
        key, names = {"stroke": ("stroke", STROKES), "slant": ("slant_class", SLANTS),
                      "colour": ("colour", COLOURS)}[pair.kind]
        mask |= (digits == pair.digit) & (attributes[key] == names.index(pair.value))
    return mask


@dataclass(frozen=True)
class CaptionedDigits:
    """A digits dataset with one true caption per image (:func:`captioned_digits`).

    Attributes:
        name, split, seed: which images.
        captions: one caption per image.
        attributes: per-image tensors (:func:`caption_attributes`).
        keep: int64 indices of the images without a held-out pair (the caption training set).
    """

    name: str
    split: str
    seed: int
    captions: list[str]
    attributes: dict[str, torch.Tensor]
    keep: torch.Tensor


def captioned_digits(name: str = "digits", *, split: str = "train", seed: int = 0, num_images: int | None = None,
                     data_dir: str | Path = "data") -> CaptionedDigits:
    """Captions, attributes and the held-out-free training indices of "digits" or "digits-rgb".

    Deterministic by (name, split, seed, num_images); the images themselves are
    ``image_data.make_dataset(name, split=split, seed=seed, num_images=num_images)``.
    """
    attributes, _, _ = caption_attributes(name, split=split, seed=seed, num_images=num_images, data_dir=data_dir)
    captions = captions_for(attributes, seed=seed, split=split)
    keep = (~held_out_mask(attributes)).nonzero().flatten()
    return CaptionedDigits(name, split, seed, captions, attributes, keep)


class Prompt(NamedTuple):
    """An evaluation prompt: its ``text``, the ``attributes`` it asks for (e.g. {"digit": 7,
    "stroke": "bold"}), and whether that combination was ``held_out`` of training."""

    text: str
    attributes: dict
    held_out: bool


def evaluation_prompts(name: str = "digits", *, per_pair: int = 1, seed: int = 0) -> dict[str, list[Prompt]]:
    """Prompts for every digit × stroke (thin, bold), digit × slant and, for "digits-rgb",
    digit × colour pair, ``per_pair`` phrasings each, split into ``"seen"`` and ``"held_out"``."""
    if name not in _DIGIT_DATASETS:
        raise ValueError(f"evaluation prompts exist for the datasets {', '.join(_DIGIT_DATASETS)}; got {name!r}")
    kinds = [("stroke", ("thin", "bold")), ("slant", SLANTS)]
    if name == "digits-rgb":
        kinds.append(("colour", COLOURS))
    held = set(HELD_OUT)
    prompts: dict[str, list[Prompt]] = {"seen": [], "held_out": []}
    for kind, values in kinds:
        for digit in range(10):
            for value in values:
                is_held = HeldOutPair(kind, digit, value) in held
                for text in prompts_for(digit, **{kind: value}, count=per_pair, seed=seed):
                    prompts["held_out" if is_held else "seen"].append(
                        Prompt(text, {"digit": digit, kind: value}, is_held))
    return prompts


# ---------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------

#: The special tokens, ids 0, 1, 2.
SPECIALS = ("<pad>", "<bos>", "<eos>")
#: Tokens per encoded caption by default: <bos>, the longest caption's words, <eos>, padding.
MAX_LENGTH = 16
_TOKENIZER_FORMAT = "digit-captions-tokenizer"


class UnknownWordsError(ValueError):
    """A caption holds words outside the tokenizer's vocabulary (``.words`` lists them)."""

    def __init__(self, words: Sequence[str], vocabulary: Sequence[str]):
        self.words = tuple(words)
        super().__init__(
            f"unknown words {', '.join(repr(w) for w in self.words)}: captions may only use the vocabulary "
            f"{' '.join(vocabulary)} (lower case; a comma is a word, other punctuation is not allowed)"
        )


def _split(text: str) -> list[str]:
    return text.lower().replace(",", " , ").split()


class Tokenizer:
    """Word-level tokenizer of the caption grammar: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, then the words sorted.

    Args:
        words: the vocabulary besides the specials (default: the grammar's, :func:`vocabulary`).
        max_length: tokens per encoded caption, <bos> and <eos> included (at least 2).
    """

    def __init__(self, words: Sequence[str] | None = None, max_length: int = MAX_LENGTH):
        words = tuple(vocabulary() if words is None else words)
        problems = [w for w in words if not isinstance(w, str) or w in SPECIALS or _split(w) != [w]]
        if problems or len(set(words)) != len(words):
            raise ValueError(f"words must be distinct lower-case words without spaces, not the specials; "
                             f"got {problems or 'duplicates'}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer of at least 2 (<bos> and <eos>); got {max_length!r}")
        self.words = words
        self.vocab = SPECIALS + words
        self.max_length = max_length
        self._ids = {word: i for i, word in enumerate(self.vocab)}

    pad_id, bos_id, eos_id = 0, 1, 2

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, max_length={self.max_length})"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (B, max_length): <bos>, the words, <eos>, then <pad>."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise TypeError("encode takes a list of caption strings")
        tokens = torch.full((len(texts), self.max_length), self.pad_id, dtype=torch.int64)
        for row, text in enumerate(texts):
            words = _split(text)
            unknown = sorted({w for w in words if w not in self._ids or w in SPECIALS})
            if unknown:
                raise UnknownWordsError(unknown, self.words)
            if len(words) + 2 > self.max_length:
                raise ValueError(f"caption {text!r} has {len(words)} words; max_length={self.max_length} "
                                 f"allows {self.max_length - 2} besides <bos> and <eos>")
            ids = [self.bos_id] + [self._ids[w] for w in words] + [self.eos_id]
            tokens[row, :len(ids)] = torch.tensor(ids)
        return tokens

    def empty(self, batch: int) -> torch.Tensor:
        """The empty caption's tokens for ``batch`` rows (<bos> <eos> <pad>…): the unconditional input."""
        return self.encode([""] * batch)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Captions of token ids (B, L) or (L,): the words between <bos> and the first <eos>, pads skipped."""
        tokens = torch.as_tensor(tokens)
        if tokens.dim() == 1:
            tokens = tokens[None]
        if tokens.dim() != 2 or tokens.is_floating_point() or tokens.is_complex():
            raise ValueError(f"tokens must be integer ids of shape (B, L) or (L,); got {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}")
        texts = []
        for row in tokens.tolist():
            words = []
            for token in row:
                if token == self.eos_id:
                    break
                if token not in (self.pad_id, self.bos_id):
                    words.append(self.vocab[token])
            texts.append(" ".join(words).replace(" ,", ","))
        return texts

    def to_dict(self) -> dict:
        """A plain dict (for a checkpoint) that :meth:`from_dict` turns back into this tokenizer."""
        return {"format": _TOKENIZER_FORMAT, "vocab": list(self.vocab), "max_length": self.max_length}

    @classmethod
    def from_dict(cls, saved: dict) -> Tokenizer:
        """The tokenizer :meth:`to_dict` stored; ValueError saying what is wrong with a damaged dict."""
        def damaged(why: str) -> ValueError:
            return ValueError(f"not a stored caption tokenizer ({why}); expected the dict of Tokenizer.to_dict()")

        if not isinstance(saved, dict):
            raise damaged(f"a {type(saved).__name__}, not a dict")
        if saved.get("format") != _TOKENIZER_FORMAT:
            raise damaged(f"format {saved.get('format')!r}, not {_TOKENIZER_FORMAT!r}")
        vocab, max_length = saved.get("vocab"), saved.get("max_length")
        if not isinstance(vocab, (list, tuple)) or not all(isinstance(word, str) for word in vocab):
            raise damaged("'vocab' is not a list of words")
        if tuple(vocab[:len(SPECIALS)]) != SPECIALS:
            raise damaged(f"'vocab' does not start with {', '.join(SPECIALS)}")
        try:
            return cls(vocab[len(SPECIALS):], max_length)
        except ValueError as error:
            raise damaged(str(error)) from None
