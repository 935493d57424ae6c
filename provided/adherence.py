"""Prompt adherence of a text-conditioned model (Phase 7, provided): does each image show what its prompt asked?

``evaluate.py --checkpoint`` of a ``train.py --captions`` model samples one image per
evaluation prompt (:func:`provided.captions.evaluation_prompts`: every digit × attribute
pair, split into the pairs seen in training and the held-out ones) and judges each
image with the measurements the captions were made from, no CLIP needed:

==========  ===========================================================================
asked       followed when
==========  ===========================================================================
digit       the dataset's classifier (``provided/classifier.py``) predicts the digit
stroke      thin or bold: the :func:`~provided.captions.stroke_width` is on the asked
            side of the midpoint between the median widths of the thin and of the bold
            training images of that digit (:class:`StrokeRule`)
slant       :func:`~provided.captions.slant_class` of the image's slant is the asked
            one (an image in a dead zone between two classes follows neither)
colour      :func:`~provided.captions.colour_class` of its foreground colour is the
            asked one (unsaturated, dark or between two hues: none)
==========  ===========================================================================

The same rules run on real test images that have the attributes (the *floor*): the
embedded digits are distorted at random after drawing, so even real thin digits are
measured thin only about 80 % of the time; a model can beat that floor by drawing
its thin digits thinner than the data does (guidance does), or fall below it.

Nothing here is graded; :func:`judge` and :func:`summarise` are pure functions of
tensors and prompts, tested in ``tests/repo/test_adherence.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import captions
from .captions import COLOURS, HELD_OUT, SLANTS, STROKES, HeldOutPair, Prompt
from .image_data import resize_images

#: The attribute kinds of the evaluation prompts, in the order of the report.
KINDS = ("stroke", "slant", "colour")
#: The stroke values the prompts ask for (regular sits between them and is never asked).
ASKED_STROKES = ("thin", "bold")
#: Training images whose stroke widths set the thresholds of :class:`StrokeRule`.
RULE_IMAGES = 20000


@dataclass(frozen=True)
class StrokeRule:
    """Thin or bold, digit by digit, from the stroke width (:func:`provided.captions.stroke_width`).

    Attributes:
        thin, bold: (10,) the median stroke width of the thin and of the bold training
            images of each digit; an image of digit d is thin when its width is below
            ``(thin[d] + bold[d]) / 2``, bold otherwise.
    """

    thin: torch.Tensor
    bold: torch.Tensor

    def threshold(self, digits: torch.Tensor) -> torch.Tensor:
        """(N,) the width that splits thin from bold for each of ``digits`` (N,)."""
        return ((self.thin + self.bold) / 2)[digits]

    def classify(self, widths: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
        """(N,) index into STROKES: thin (0) below the digit's threshold, else bold (2)."""
        thin, bold = STROKES.index("thin"), STROKES.index("bold")
        return torch.where(widths < self.threshold(digits), thin, bold)

    def to_dict(self) -> dict:
        return {"thin_median": self.thin.tolist(), "bold_median": self.bold.tolist()}


def stroke_rule(name: str, *, seed: int = 0, data_dir: str | Path = "data", num_images: int = RULE_IMAGES,
                image_size: int | None = None) -> StrokeRule:
    """The :class:`StrokeRule` of the first ``num_images`` training digits of ``name`` (seed ``seed``).

    ``image_size``: measure the digits resized to it, as the model to judge saw them (a latent model's
    autoencoder works at 32×32): resizing blurs the strokes, so widths compare only at one size.
    """
    attributes, images, _ = captions.caption_attributes(name, split="train", seed=seed, num_images=num_images,
                                                        data_dir=data_dir)
    images = images.float() / 255.0  # the grey ink: what ink() recovers from an RGB image
    if image_size is not None:
        images = resize_images(images, image_size)
    widths = captions.stroke_width(images)
    medians = {}
    for value in ASKED_STROKES:
        chosen = attributes["stroke"] == STROKES.index(value)
        medians[value] = torch.stack([widths[chosen & (attributes["digit"] == digit)].median() for digit in range(10)])
    return StrokeRule(medians["thin"], medians["bold"])


def asked_kind(attributes: dict) -> str:
    """The attribute kind of an evaluation prompt's ``attributes`` (besides its digit)."""
    kinds = [kind for kind in KINDS if kind in attributes]
    if len(kinds) != 1 or "digit" not in attributes:
        raise ValueError(f"an evaluation prompt asks for a digit and one of {', '.join(KINDS)}; got {attributes!r}")
    return kinds[0]


def judge(images: torch.Tensor, asked: Sequence[dict], predicted_digits: torch.Tensor, rule: StrokeRule) -> dict:
    """Whether each image follows what was asked of it.

    Args:
        images: (N, C, H, W) in [0, 1], C = 1 or 3.
        asked: N dicts such as ``{"digit": 7, "stroke": "bold"}`` (a :class:`Prompt`'s attributes).
        predicted_digits: (N,) the classifier's digit for each image.
        rule: thin or bold from the stroke width.

    Returns:
        ``{"digit": (N,) bool, "attribute": (N,) bool, "measured": list of N str}``: the
        digit followed, the asked attribute followed, and what was measured of that
        attribute ("thin", "left", "red", or "none").
    """
    if images.shape[0] != len(asked) or predicted_digits.shape != (len(asked),):
        raise ValueError(f"one prompt and one predicted digit per image: {images.shape[0]} images, {len(asked)} "
                         f"prompts, predicted digits of shape {tuple(predicted_digits.shape)}")
    digits = torch.tensor([attributes["digit"] for attributes in asked], dtype=torch.int64)
    kinds = [asked_kind(attributes) for attributes in asked]
    measured = torch.full((len(asked),), -1, dtype=torch.int64)
    names = {"stroke": STROKES, "slant": SLANTS, "colour": COLOURS}
    for kind in set(kinds):
        chosen = torch.tensor([k == kind for k in kinds])
        some = images[chosen]
        if kind == "stroke":
            measured[chosen] = rule.classify(captions.stroke_width(some), digits[chosen])
        elif kind == "slant":
            measured[chosen] = captions.slant_class(captions.slant(some))
        else:
            measured[chosen] = captions.colour_class(captions.foreground_colour(some))
    wanted = torch.tensor([names[kind].index(attributes[kind]) for kind, attributes in zip(kinds, asked)])
    return {
        "digit": predicted_digits.cpu() == digits,
        "attribute": measured == wanted,
        "measured": [names[kind][index] if index >= 0 else "none" for kind, index in zip(kinds, measured.tolist())],
    }


def is_held_out(attributes: dict) -> bool:
    """Whether a (digit, attribute) request is one of the held-out pairs (captions.HELD_OUT)."""
    kind = asked_kind(attributes)
    return HeldOutPair(kind, attributes["digit"], attributes[kind]) in set(HELD_OUT)


def _rates(digit: torch.Tensor, attribute: torch.Tensor) -> dict:
    """Counts and the fractions followed (None when there are no images)."""
    count = int(digit.numel())
    if count == 0:
        return {"count": 0, "digit": None, "attribute": None, "both": None}
    return {
        "count": count,
        "digit": digit.float().mean().item(),
        "attribute": attribute.float().mean().item(),
        "both": (digit & attribute).float().mean().item(),
    }


def summarise(asked: Sequence[dict], verdicts: dict) -> dict:
    """The fractions followed, by group (seen, held-out) and attribute kind, and pair by pair.

    Returns ``{"seen": G, "held_out": G, "all": G, "pairs": [...]}`` where each G holds the
    rates of all its images (``count``, ``digit``, ``attribute``, ``both``) and
    ``by_kind`` the same per attribute kind; each pair entry names its ``kind``,
    ``asked_digit``, ``value`` and ``held_out`` beside its rates.
    """
    digit, attribute = verdicts["digit"], verdicts["attribute"]
    kinds = [asked_kind(attributes) for attributes in asked]
    held = torch.tensor([is_held_out(attributes) for attributes in asked], dtype=torch.bool)
    summary = {}
    for group, chosen in (("seen", ~held), ("held_out", held), ("all", torch.ones_like(held))):
        by_kind = {}
        for kind in KINDS:
            of_kind = chosen & torch.tensor([k == kind for k in kinds], dtype=torch.bool)
            if of_kind.any():
                by_kind[kind] = _rates(digit[of_kind], attribute[of_kind])
        summary[group] = {**_rates(digit[chosen], attribute[chosen]), "by_kind": by_kind}
    keys = [(kind, attributes["digit"], attributes[kind]) for kind, attributes in zip(kinds, asked)]
    pairs = []
    for key in dict.fromkeys(keys):  # first-seen order
        chosen = torch.tensor([k == key for k in keys], dtype=torch.bool)
        kind, number, value = key
        pairs.append({"kind": kind, "asked_digit": number, "value": value,
                      "held_out": HeldOutPair(kind, number, value) in set(HELD_OUT),
                      **_rates(digit[chosen], attribute[chosen])})
    summary["pairs"] = pairs
    return summary


def real_requests(attributes: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[dict]]:
    """What real images of :func:`provided.captions.caption_attributes` show, as evaluation requests.

    Each image yields one request per attribute kind it has a value of that the prompts
    ask for (thin or bold; a slant class; a colour class): the floor of :func:`judge`.

    Returns:
        (M,) int64 indices of the images, and M request dicts like a Prompt's attributes.
    """
    indices, asked = [], []
    digits = attributes["digit"].tolist()
    columns = {"stroke": ("stroke", STROKES), "slant": ("slant_class", SLANTS), "colour": ("colour", COLOURS)}
    for kind, (key, names) in columns.items():
        if key not in attributes:
            continue
        for index, value in enumerate(attributes[key].tolist()):
            if value < 0 or (kind == "stroke" and names[value] not in ASKED_STROKES):
                continue
            indices.append(index)
            asked.append({"digit": digits[index], kind: names[value]})
    return torch.tensor(indices, dtype=torch.int64), asked


def prompt_set(name: str, per_pair: int, held_out_per_pair: int, seed: int) -> list[Prompt]:
    """The evaluation prompts: ``per_pair`` phrasings of each seen pair, then ``held_out_per_pair`` of each held-out one."""
    seen = captions.evaluation_prompts(name, per_pair=per_pair, seed=seed)["seen"]
    held = captions.evaluation_prompts(name, per_pair=held_out_per_pair, seed=seed)["held_out"]
    return seen + held


def grid_order(asked: Sequence[dict]) -> tuple[list[int], list[str]]:
    """One image per (attribute value, digit) for a grid: rows are values, columns digits 0–9.

    Returns the index of the first image of each cell, row by row (a row's cells
    that have no image are skipped, so use it for complete rows only), and the row names.
    """
    first: dict[tuple[str, str, int], int] = {}
    for index, attributes in enumerate(asked):
        kind = asked_kind(attributes)
        first.setdefault((kind, attributes[kind], attributes["digit"]), index)
    rows = list(dict.fromkeys((kind, value) for kind, value, _ in first))
    order = [first[(kind, value, digit)] for kind, value in rows for digit in range(10) if (kind, value, digit) in first]
    return order, [f"{value} ({kind})" for kind, value in rows]
