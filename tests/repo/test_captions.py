"""Tests of ``provided/captions.py`` (true captions of the embedded digits, the word tokenizer)
and of ``image_data.digit_attributes``, which the captions start from.

The measurements are checked on synthetic images with known answers, the captions by
parsing every attribute they mention back and comparing it with the image's attributes.
"""

from __future__ import annotations

import colorsys
import re

import numpy as np
import pytest
import torch

from provided import captions, image_data
from provided.captions import (
    COLOURS,
    FAMILIES,
    FONT_FAMILIES,
    HELD_OUT,
    MAX_LENGTH,
    SLANTS,
    STROKES,
    HeldOutPair,
    Tokenizer,
    UnknownWordsError,
)
from provided.files import read_torch_file, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)

N = 1500  # images per captioned test set: one whole chunk of 1000 and half of the next


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("captions_data")


@pytest.fixture(scope="module")
def grey(data_dir):
    """The captioned "digits" (train, seed 0)."""
    return captions.captioned_digits("digits", num_images=N, data_dir=data_dir)


@pytest.fixture(scope="module")
def rgb(data_dir):
    """The captioned "digits-rgb" (the same grey images in colour)."""
    return captions.captioned_digits("digits-rgb", num_images=N, data_dir=data_dir)


@pytest.fixture(scope="module")
def rgb_images(data_dir):
    """The clean "digits-rgb" images (N, 3, 28, 28), their grey ink and their (foreground, background) colours."""
    _, images, colours = captions.caption_attributes("digits-rgb", num_images=N, data_dir=data_dir)
    ink = images.float() / 255
    foreground, background = colours[:, 0, :, None, None], colours[:, 1, :, None, None]
    return background + ink * (foreground - background), ink, colours


# ---------------------------------------------------------------------------
# Parsing a caption back into the attributes it mentions
# ---------------------------------------------------------------------------

_DIGIT_OF = {**{word: d for d, word in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))}, **{str(d): d for d in range(10)}}
_MEANING = {
    "stroke": {"thin": "thin", "slender": "thin", "regular": "regular", "medium": "regular",
               "bold": "bold", "thick": "bold", "heavy": "bold"},
    "slant": {"left": "left", "right": "right", "upright": "upright", "straight": "upright"},
    "family": {"sans": "sans", "serif": "serif", "monospace": "mono", "typewriter": "mono", "mono": "mono"},
    "colour": {"red": "red", "yellow": "yellow", "green": "green", "cyan": "cyan", "blue": "blue",
               "magenta": "magenta", "purple": "magenta"},
}
#: The words that name no attribute.
_FILLER = {"a", "an", "the", ",", "digit", "number", "with", "strokes", "leaning", "slanted", "tilted", "to",
           "standing", "in", "font", "type", "coloured"}


def mentioned(caption: str) -> dict:
    """The attributes a caption names: {"digit": int or None, "stroke", "slant", "family", "colour": word or None}.

    Fails when a caption names two values of one attribute or holds a word of no known role.
    """
    words = caption.replace(",", " , ").split()
    found = {"digit": set(), **{kind: set() for kind in _MEANING}}
    for word in words:
        if word in _DIGIT_OF:
            found["digit"].add(_DIGIT_OF[word])
            continue
        kinds = [kind for kind, table in _MEANING.items() if word in table]
        if kinds:
            found[kinds[0]].add(_MEANING[kinds[0]][word])
        else:
            assert word in _FILLER, f"{caption!r}: a word of no known role: {word!r}"
    assert all(len(values) <= 1 for values in found.values()), f"{caption!r} names two values of one attribute"
    return {kind: next(iter(values)) if values else None for kind, values in found.items()}


def said_pairs(caption: str) -> set[HeldOutPair]:
    said = mentioned(caption)
    return {HeldOutPair(kind, said["digit"], said[kind]) for kind in ("stroke", "slant", "colour")
            if said["digit"] is not None and said[kind] is not None}


def test_the_parser_reads_the_docstring_examples():
    assert mentioned("a bold seven") == {"digit": 7, "stroke": "bold", "slant": None, "family": None, "colour": None}
    assert mentioned("7, thin, leaning right") == {"digit": 7, "stroke": "thin", "slant": "right", "family": None,
                                                   "colour": None}
    assert mentioned("the digit two in a monospace font")["family"] == "mono"
    assert mentioned("a red serif 3")["colour"] == "red"
    with pytest.raises(AssertionError):
        mentioned("a bold thin seven")


# ---------------------------------------------------------------------------
# image_data.digit_attributes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("split", ["train", "test"])
def test_digit_attributes_give_the_generators_labels(seed, split):
    _, labels = image_data.generate_digits(N, seed=seed, split=split)
    drawn = image_data.digit_attributes(N, seed=seed, split=split)
    assert set(drawn) == {"digit", "font", "stroke_level"}
    for values in drawn.values():
        assert values.shape == (N,) and values.dtype == torch.int64
    assert torch.equal(drawn["digit"], labels)
    fonts = len(image_data.digit_font_names())
    assert drawn["font"].min() >= 0 and drawn["font"].max() < fonts
    assert set(drawn["font"].tolist()) == set(range(fonts))  # every font is drawn in 1500 images
    assert set(drawn["stroke_level"].tolist()) == set(range(len(image_data._STROKE_LEVELS)))


def test_digit_attributes_are_prefixes_and_need_no_pixels(monkeypatch):
    full = image_data.digit_attributes(N)
    monkeypatch.setattr(image_data, "_glyph_bank", lambda: pytest.fail("digit_attributes drew the glyph bank"))
    for count in (1, 700, 1000, 1001):
        part = image_data.digit_attributes(count)
        assert all(torch.equal(part[key], full[key][:count]) for key in full)
    other = image_data.digit_attributes(N, seed=1)
    assert not torch.equal(other["font"], full["font"])


def test_digit_attributes_draw_fonts_among_the_fonts_found(monkeypatch):
    """A machine with fewer of the fonts draws font indices among those it has (as the glyph bank does)."""
    found = image_data._digit_fonts()[:10]
    monkeypatch.setattr(image_data, "_digit_fonts", lambda: found)
    assert len(image_data.digit_font_names()) == 10
    fonts = image_data.digit_attributes(N)["font"]
    assert set(fonts.tolist()) == set(range(10))


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "100", None])
def test_digit_attributes_reject_a_bad_count(bad):
    with pytest.raises(ValueError, match="num_images"):
        image_data.digit_attributes(bad)


def test_digit_attributes_reject_a_bad_split():
    with pytest.raises(ValueError):
        image_data.digit_attributes(10, split="validation")


def test_the_font_names_are_the_glyph_banks_and_each_has_a_family():
    names = image_data.digit_font_names()
    assert names == image_data._glyph_bank()[1]  # the order of the "font" indices
    assert names and set(names) <= set(image_data.DIGIT_FONTS)
    assert set(image_data.DIGIT_FONTS) <= set(FONT_FAMILIES)
    assert set(FONT_FAMILIES.values()) == set(FAMILIES)
    for name, family in FONT_FAMILIES.items():  # DejaVu's and STIX's names, Computer Modern's tt, ss
        expected = ("mono" if re.search("Mono|cmtt", name) else "sans" if re.search("Sans|cmss", name) else "serif")
        assert family == expected, name


def test_the_drawn_fonts_and_stroke_levels_show_in_the_pixels(grey):
    """Oblique and italic fonts lean right; a higher stroke level puts more ink on the image."""
    attributes = grey.attributes
    names = image_data.digit_font_names()
    italic = torch.tensor([bool(re.search("Oblique|Italic|Ita|cmti", name)) for name in names])[attributes["font"]]
    assert italic.sum() > 100 and (~italic).sum() > 100
    assert attributes["slant"][italic].mean() > attributes["slant"][~italic].mean() + 0.1
    means = [attributes["ink_mass"][attributes["stroke_level"] == level].mean().item() for level in range(5)]
    assert all(a < b for a, b in zip(means, means[1:])), means


def test_caption_attributes_agree_with_the_images_and_the_generator(data_dir, grey, rgb, rgb_images):
    attributes = grey.attributes
    dataset = image_data.make_dataset("digits", num_images=N, data_dir=data_dir, augment=False)
    assert torch.equal(attributes["digit"], dataset.labels)
    drawn = image_data.digit_attributes(N)
    assert torch.equal(attributes["font"], drawn["font"]) and torch.equal(attributes["stroke_level"], drawn["stroke_level"])
    assert torch.equal(attributes["stroke"], torch.tensor([0, 0, 1, 2, 2])[drawn["stroke_level"]])
    names = image_data.digit_font_names()
    assert [FAMILIES[f] for f in attributes["family"].tolist()] == [FONT_FAMILIES[names[f]] for f in drawn["font"].tolist()]
    assert torch.allclose(attributes["slant"], captions.slant(dataset.images), atol=1e-6)
    assert torch.equal(attributes["slant_class"], captions.slant_class(attributes["slant"]))
    assert torch.allclose(attributes["ink_mass"], dataset.images.float().mean(dim=(1, 2, 3)) / 255, atol=1e-6)
    assert "colour" not in attributes
    # "digits-rgb": the same grey images, plus the colour of the generator's foreground.
    for key in attributes:
        assert torch.equal(rgb.attributes[key], attributes[key]), key
    _, _, colours = rgb_images
    assert torch.equal(rgb.attributes["colour"], captions.colour_class(colours[:, 0]))
    assert set(rgb.attributes["colour"].tolist()) == set(range(-1, len(COLOURS)))


# ---------------------------------------------------------------------------
# Measurements on images with known answers
# ---------------------------------------------------------------------------


def bar(shear: float = 0.0, width: float = 2.0, size: int = 28) -> torch.Tensor:
    """A grey (1, 1, size, size) bar 20 rows high whose centre moves shear pixels right per row up."""
    rows = torch.arange(size, dtype=torch.float32)[:, None]
    cols = torch.arange(size, dtype=torch.float32)[None, :]
    centre = (size - 1) / 2 + shear * ((size - 1) / 2 - rows)  # rows above the middle have y > 0
    coverage = (width / 2 + 0.5 - (cols - centre).abs()).clamp(0, 1)
    coverage[(rows[:, 0] < 4) | (rows[:, 0] >= 24)] = 0
    return coverage[None, None]


def coloured(ink: torch.Tensor, foreground, background) -> torch.Tensor:
    """An RGB image background + ink · (foreground − background) from a grey one."""
    foreground = torch.tensor(foreground, dtype=torch.float32).view(1, 3, 1, 1)
    background = torch.tensor(background, dtype=torch.float32).view(1, 3, 1, 1)
    return background + ink * (foreground - background)


def test_a_vertical_bar_is_upright_and_a_sheared_bar_slants_by_its_shear():
    assert captions.slant(bar(0.0)).abs().item() < 1e-5
    for shear in (0.1, 0.25, 0.4):
        right = captions.slant(bar(shear)).item()
        assert right == pytest.approx(shear, abs=0.02)  # top leaning right: positive
        assert captions.slant(bar(shear).flip(-1)).item() == pytest.approx(-right, abs=1e-5)
        assert captions.slant(bar(shear).flip(-2)).item() == pytest.approx(-right, abs=1e-5)
        assert captions.slant(torch.roll(bar(shear), (2, -3), dims=(2, 3))).item() == pytest.approx(right, abs=1e-5)
    batch = torch.cat([bar(0.3), bar(0.0), bar(-0.3)])
    slants = captions.slant(batch)
    assert slants.shape == (3,) and slants[0] > 0.25 and slants[2] < -0.25
    assert captions.slant_class(slants).tolist() == [2, 1, 0]


def test_the_slant_of_an_rgb_image_is_that_of_its_ink():
    image = coloured(bar(0.3, width=3), (0.9, 0.2, 0.1), (0.1, 0.3, 0.8))
    assert captions.slant(image).item() == pytest.approx(captions.slant(bar(0.3, width=3)).item(), abs=1e-3)


def test_an_empty_image_has_no_slant_colour_or_ink():
    empty = torch.zeros(2, 1, 28, 28)
    assert captions.slant(empty).isnan().all()
    assert captions.ink_mass(empty).tolist() == [0.0, 0.0]
    assert captions.foreground_colour(empty).isnan().all()
    flat = torch.full((1, 3, 28, 28), 0.4)  # one colour everywhere: no ink
    assert captions.slant(flat).isnan().all() and captions.ink_mass(flat).item() == 0
    assert captions.foreground_colour(flat).isnan().all()
    assert captions.colour_class(captions.foreground_colour(flat)).tolist() == [-1]
    assert captions.slant_class(captions.slant(flat)).tolist() == [-1]
    assert captions.foreground_hue(flat).isnan().all()
    # Colour differences under MIN_CONTRAST are no ink: faint noise on a flat image is not a digit.
    noisy = flat + 0.04 * (torch.rand(1, 3, 28, 28, generator=torch.Generator().manual_seed(0)) - 0.5)
    assert captions.ink_mass(noisy).item() == 0 and captions.slant(noisy).isnan().all()
    # One image without ink leaves the others of the batch alone.
    batch = torch.cat([torch.zeros(1, 1, 28, 28), bar(0.2)])
    assert captions.slant(batch)[0].isnan() and captions.slant(batch)[1] == pytest.approx(0.2, abs=0.02)


def test_ink_mass_grows_with_the_stroke_width():
    masses = [captions.ink_mass(bar(0.1, width)).item() for width in (1.0, 2.0, 3.0, 4.0)]
    assert all(a < b for a, b in zip(masses, masses[1:])), masses
    assert masses[1] == pytest.approx(2 * 20 / 28**2, rel=0.02)  # 20 rows of 2 pixels of ink
    image = bar(0.1, 3.0)
    assert captions.ink_mass(coloured(image, (1.0, 0.9, 0.0), (0.0, 0.0, 0.3))).item() == pytest.approx(
        captions.ink_mass(image).item(), rel=0.02)


def test_grey_ink_is_the_pixel_value_and_uint8_is_scaled():
    image = bar(0.2, 2.5)
    assert torch.equal(captions.ink(image), image[:, 0])
    as_bytes = (image * 255).round().to(torch.uint8)
    assert torch.allclose(captions.ink(as_bytes), image[:, 0], atol=1 / 255)
    assert captions.slant(as_bytes).item() == pytest.approx(captions.slant(image).item(), abs=1e-3)


def test_rgb_ink_recovers_the_grey_ink_of_the_digits(rgb_images):
    images, ink, _ = rgb_images
    recovered = captions.ink(images[:200])
    assert recovered.shape == (200, 28, 28)
    grey = ink[:200, 0]
    strong = grey >= 0.3  # fainter pixels may fall under MIN_CONTRAST
    assert (recovered[strong] - grey[strong]).abs().max() < 0.1
    # Exactly: the grey ink over that of the image's 1 % strongest pixels (784 // 100 = 7), clipped at 1.
    strongest = grey.flatten(1).topk(7, dim=1).values.mean(1)
    expected = (grey / strongest[:, None, None]).clamp(max=1)
    assert torch.allclose(recovered[strong], expected[strong], atol=1e-4)
    assert recovered[grey == 0].max() == 0


NAMED = [  # (foreground, background, colour class)
    ((0.9, 0.1, 0.1), (0.1, 0.1, 0.1), "red"),
    ((1.0, 0.0, 1 / 6), (0.9, 0.9, 0.9), "red"),  # hue 350°: red across 0°
    ((0.9, 0.85, 0.1), (0.05, 0.05, 0.3), "yellow"),
    ((0.1, 0.8, 0.2), (0.95, 0.95, 0.9), "green"),
    ((0.1, 0.8, 0.85), (0.3, 0.0, 0.0), "cyan"),
    ((0.15, 0.2, 0.9), (0.9, 0.9, 0.5), "blue"),
    ((0.85, 0.1, 0.8), (0.0, 0.0, 0.0), "magenta"),
]
UNNAMED = [
    ((0.7, 0.7, 0.7), (0.0, 0.0, 0.0)),  # grey
    ((0.9, 0.7, 0.7), (0.0, 0.0, 0.3)),  # pale: saturation 0.22
    ((0.3, 0.05, 0.05), (1.0, 1.0, 1.0)),  # dark: value 0.3
    ((1.0, 0.5, 0.0), (0.0, 0.0, 0.0)),  # orange, hue 30°: between red and yellow
    ((0.5, 0.0, 1.0), (0.9, 0.9, 0.9)),  # violet, hue 270°: between blue and magenta
]


@pytest.mark.parametrize("foreground, background, name", NAMED)
def test_the_foreground_colour_of_a_blend_is_its_ink_colour(foreground, background, name):
    image = coloured(bar(0.15, width=3), foreground, background)
    found = captions.foreground_colour(image)
    assert found.shape == (1, 3)
    assert torch.allclose(found[0], torch.tensor(foreground), atol=0.02), found
    assert captions.colour_class(found).tolist() == [COLOURS.index(name)]
    assert captions.colour_class(torch.tensor(foreground)).item() == COLOURS.index(name)
    hue = captions.foreground_hue(image).item()
    expected = colorsys.rgb_to_hsv(*foreground)[0] * 360
    assert min(abs(hue - expected), 360 - abs(hue - expected)) < 3


@pytest.mark.parametrize("foreground, background", UNNAMED)
def test_grey_pale_dark_and_in_between_colours_stay_unnamed(foreground, background):
    assert captions.colour_class(torch.tensor(foreground)).item() == -1
    found = captions.foreground_colour(coloured(bar(0.0, width=3), foreground, background))
    assert torch.allclose(found[0], torch.tensor(foreground), atol=0.02)
    assert captions.colour_class(found).item() == -1


def test_the_background_is_the_border_colour_even_under_much_ink():
    ink = torch.zeros(1, 1, 28, 28)
    ink[..., 3:25, 3:25] = 1  # ink on 62 % of the pixels, none on the border
    image = coloured(ink, (0.1, 0.2, 0.9), (0.9, 0.8, 0.1))
    assert captions.ink_mass(image).item() == pytest.approx(22**2 / 28**2, rel=1e-4)
    assert torch.allclose(captions.foreground_colour(image)[0], torch.tensor([0.1, 0.2, 0.9]), atol=1e-4)


def test_grey_images_have_white_ink():
    found = captions.foreground_colour(torch.cat([bar(0.1, 3.0), 0.7 * bar(0.1, 3.0)]))
    assert torch.allclose(found, torch.ones(2, 3))
    assert captions.colour_class(found).tolist() == [-1, -1]
    assert captions.foreground_saturation(bar(0.1, 3.0)).item() == 0


def test_the_measured_colour_of_the_rgb_digits_gives_their_colour_class(rgb, rgb_images):
    images, _, colours = rgb_images
    found = captions.foreground_colour(images)
    assert (found - colours[:, 0]).abs().max(dim=1).values.median() < 0.01
    measured = captions.colour_class(found)
    assert (measured == rgb.attributes["colour"]).float().mean() > 0.98


def test_hsv_agrees_with_colorsys():
    generator = torch.Generator().manual_seed(5)
    rgb = torch.rand(300, 3, generator=generator)
    rgb[:20] = rgb[:20, :1]  # greys
    rgb[20:30] = 0
    rgb[30:40] = torch.eye(3).repeat(4, 1)[:10]  # pure primaries: ties of the other two channels
    hue, saturation, value = captions.hsv(rgb)
    expected = torch.tensor([colorsys.rgb_to_hsv(*colour) for colour in rgb.double().tolist()], dtype=torch.float64)
    difference = (hue.double() - expected[:, 0] * 360).abs()
    assert torch.minimum(difference, 360 - difference).max() < 1e-2
    assert ((hue >= 0) & (hue < 360)).all()
    assert torch.allclose(saturation.double(), expected[:, 1], atol=1e-5)
    assert torch.allclose(value.double(), expected[:, 2], atol=1e-6)
    assert hue[:30].eq(0).all() and saturation[:30].eq(0).all()
    # Any leading shape, NaN in, NaN out.
    assert captions.hsv(rgb.view(10, 30, 3))[0].shape == (10, 30)
    nan = captions.hsv(torch.tensor([[float("nan"), 0.5, 0.5], [1.0, 0.0, 0.0]]))
    assert all(part[0].isnan() and not part[1].isnan() for part in nan)


def test_slant_and_stroke_classes():
    values = torch.tensor([-0.5, -0.181, -0.179, -0.061, -0.059, 0.0, 0.059, 0.061, 0.179, 0.181, 0.5, float("nan")])
    assert captions.slant_class(values).tolist() == [0, 0, -1, -1, 1, 1, 1, -1, -1, 2, 2, -1]
    assert captions.stroke_class(torch.arange(5)).tolist() == [0, 0, 1, 2, 2]
    assert [STROKES[s] for s in captions.stroke_class(torch.arange(5)).tolist()] == [
        "thin", "thin", "regular", "bold", "bold"]


@pytest.mark.parametrize("function", [captions.ink, captions.ink_mass, captions.slant, captions.foreground_colour,
                                      captions.foreground_hue])
@pytest.mark.parametrize("bad", [
    torch.zeros(28, 28),  # no batch or channel
    torch.zeros(1, 2, 28, 28),  # two channels
    torch.zeros(1, 1, 4, 4),  # too small for the border
    torch.zeros(1, 1, 28, 28, dtype=torch.int32),
    np.zeros((1, 1, 28, 28), dtype=np.float32),
])
def test_the_measurements_reject_bad_images(function, bad):
    with pytest.raises(ValueError, match="images"):
        function(bad)


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(2, 4), np.zeros((2, 3)), [1.0, 0.0, 0.0]])
def test_hsv_and_colour_class_reject_bad_colours(bad):
    for function in (captions.hsv, captions.colour_class):
        with pytest.raises(ValueError, match="rgb"):
            function(bad)


# ---------------------------------------------------------------------------
# The grammar
# ---------------------------------------------------------------------------


def test_every_caption_is_true(grey, rgb):
    for data in (grey, rgb):
        attributes = data.attributes
        assert len(data.captions) == N
        for i, caption in enumerate(data.captions):
            said = mentioned(caption)
            truth = {
                "digit": attributes["digit"][i].item(),
                "stroke": STROKES[attributes["stroke"][i]],
                "family": FAMILIES[attributes["family"][i]],
                "slant": SLANTS[attributes["slant_class"][i]] if attributes["slant_class"][i] >= 0 else None,
                "colour": COLOURS[attributes["colour"][i]] if data is rgb and attributes["colour"][i] >= 0 else None,
            }
            for kind, value in said.items():
                assert value is None or value == truth[kind], f"image {i}: {caption!r} but its {kind} is {truth[kind]}"


def test_captions_name_each_attribute_about_as_often_as_the_grammar_says(grey, rgb):
    attributes = rgb.attributes
    said = [mentioned(caption) for caption in rgb.captions]

    def rate(kind, among):
        chosen = [s[kind] is not None for s, keep in zip(said, among.tolist()) if keep]
        assert len(chosen) > 50
        return sum(chosen) / len(chosen)

    everyone = torch.ones(N, dtype=torch.bool)
    assert rate("digit", everyone) == pytest.approx(0.9, abs=0.04)
    assert rate("stroke", attributes["stroke"] != 1) == pytest.approx(0.8, abs=0.06)
    assert rate("stroke", attributes["stroke"] == 1) == pytest.approx(0.2, abs=0.06)
    assert rate("slant", attributes["slant_class"] >= 0) == pytest.approx(0.8, abs=0.06)
    assert rate("family", everyone) == pytest.approx(0.35, abs=0.05)
    assert rate("colour", attributes["colour"] >= 0) == pytest.approx(0.6, abs=0.08)
    assert not any(mentioned(caption)["colour"] for caption in grey.captions)  # grey digits have no colour
    # Both forms, every kind of noun.
    everything = " | ".join(rgb.captions)
    assert ", " in everything and " the " in f" {everything}" and "digit " in everything and "number " in everything
    assert any(caption.split(",")[0].isdigit() for caption in rgb.captions)  # "7, thin"


def test_captions_use_the_vocabulary_within_the_length_limit(grey, rgb):
    tokenizer = Tokenizer()
    longest = captions.longest_caption_words()
    assert MAX_LENGTH >= longest + 2 and tokenizer.max_length == MAX_LENGTH
    for caption in grey.captions + rgb.captions:
        assert len(caption.replace(",", " , ").split()) <= longest, caption
        assert caption == caption.lower().strip() and "  " not in caption
    tokenizer.encode(grey.captions + rgb.captions)  # no unknown word, none too long


def test_the_longest_caption_and_every_word_of_the_vocabulary_are_reachable():
    longest = captions.longest_caption_words()
    seen, most = set(), 0
    for digit in (None, *range(10)):
        for stroke in (None, *STROKES):
            for slant in (None, *SLANTS):
                for family in (None, *FAMILIES):
                    for colour in (None, *COLOURS):
                        for prompt in captions.prompts_for(digit, stroke=stroke, slant=slant, family=family,
                                                           colour=colour, count=2):
                            words = prompt.replace(",", " , ").split()
                            seen.update(words)
                            most = max(most, len(words))
    for prompt in captions.prompts_for(7, stroke="bold", slant="right", family="mono", colour="red", count=1500):
        words = prompt.replace(",", " , ").split()
        seen.update(words)
        most = max(most, len(words))
    assert most == longest
    assert seen == set(captions.vocabulary())
    assert list(captions.vocabulary()) == sorted(set(captions.vocabulary()))


def test_articles_agree_with_the_next_word(rgb):
    prompts = [p for digit in range(10) for p in captions.prompts_for(digit, slant="upright", count=30)]
    for caption in rgb.captions + prompts:
        words = caption.split()
        for article, following in zip(words, words[1:]):
            if article == "an":
                assert following in ("8", "eight") or (following[0] in "aeiou" and following != "one"), caption
            elif article == "a":
                assert following not in ("8", "eight", "upright") and following[0] not in "aei", caption
    assert any(caption.startswith("an ") for caption in rgb.captions + prompts)
    for caption in rgb.captions + captions.prompts_for(None, stroke="thin", slant="left", count=50):
        head = caption.split(",")[0].split()  # an article first, or the list form's "7", "seven", "a digit"
        assert head[0] in ("a", "an", "the") or (len(head) == 1 and head[0] in _DIGIT_OF), caption


def test_captions_are_deterministic_by_seed_and_split(grey):
    attributes = grey.attributes
    first = captions.captions_for(attributes, seed=0, split="train")
    assert first == grey.captions and captions.captions_for(attributes, seed=0, split="train") == first
    for other in (captions.captions_for(attributes, seed=1), captions.captions_for(attributes, split="test")):
        assert sum(a != b for a, b in zip(first, other)) > N // 2


def test_the_captions_of_a_small_set_begin_those_of_a_larger_one(grey, rgb, data_dir):
    for data in (grey, rgb):
        for count in (1, 300, 1000, 1200):
            head = {key: values[:count] for key, values in data.attributes.items()}
            assert captions.captions_for(head) == data.captions[:count]
    small = captions.captioned_digits("digits-rgb", num_images=300, data_dir=data_dir)
    assert small.captions == rgb.captions[:300]
    # Each chunk of 1000 has its own draws: changing image 0 leaves the second chunk alone.
    changed = {key: values.clone() for key, values in grey.attributes.items()}
    changed["slant_class"][:1000] = -1
    changed["stroke"][:1000] = 1
    again = captions.captions_for(changed)
    assert again[1000:] == grey.captions[1000:] and again[:1000] != grey.captions[:1000]
    # ... and draws other numbers: the same images in two chunks get other captions.
    twice = captions.captions_for({key: values[:1000].repeat(2) for key, values in grey.attributes.items()})
    assert sum(a != b for a, b in zip(twice[:1000], twice[1000:])) > 500


def test_prompts_name_exactly_the_attributes_given():
    cases = [dict(digit=d) for d in range(10)] + [dict(digit=None)]
    cases += [dict(digit=d, stroke=s) for d in (1, 8) for s in STROKES]
    cases += [dict(digit=d, slant=s) for d in (0, 4) for s in SLANTS]
    cases += [dict(digit=d, family=f) for d in (3, 9) for f in FAMILIES]
    cases += [dict(digit=d, colour=c) for d in (2, 6) for c in COLOURS]
    cases += [dict(digit=5, stroke="thin", slant="left", family="serif", colour="cyan"),
              dict(digit=None, stroke="bold", colour="magenta")]
    for case in cases:
        expected = {"digit": None, "stroke": None, "slant": None, "family": None, "colour": None, **case}
        prompts = captions.prompts_for(case.pop("digit"), **case, count=40)
        assert len(prompts) == 40 and len(set(prompts)) > 1  # varied phrasing
        for prompt in prompts:
            assert mentioned(prompt) == expected, prompt


def test_prompts_are_deterministic_by_seed():
    first = captions.prompts_for(7, stroke="bold", count=10, seed=0)
    assert captions.prompts_for(7, stroke="bold", count=10, seed=0) == first
    assert captions.prompts_for(np.int64(7), stroke="bold", count=10, seed=0) == first
    assert captions.prompts_for(7, stroke="bold", count=10, seed=1) != first


@pytest.mark.parametrize("digit, options, name", [
    (10, {}, "digit"), (-1, {}, "digit"), (True, {}, "digit"), (1.0, {}, "digit"), ("7", {}, "digit"),
    (7, {"stroke": "fat"}, "stroke"), (7, {"stroke": "Bold"}, "stroke"), (7, {"slant": "up"}, "slant"),
    (7, {"family": "gothic"}, "family"), (7, {"colour": "orange"}, "colour"),
    (7, {"count": 0}, "count"), (7, {"count": True}, "count"), (7, {"count": 2.0}, "count"),
])
def test_prompts_for_rejects_bad_arguments(digit, options, name):
    with pytest.raises(ValueError, match=name):
        captions.prompts_for(digit, **options)


# ---------------------------------------------------------------------------
# Held-out pairs and evaluation prompts
# ---------------------------------------------------------------------------


def has_pair(attributes: dict, i: int, pair: HeldOutPair) -> bool:
    if attributes["digit"][i] != pair.digit:
        return False
    if pair.kind == "stroke":
        return STROKES[attributes["stroke"][i]] == pair.value
    if pair.kind == "slant":
        return attributes["slant_class"][i] >= 0 and SLANTS[attributes["slant_class"][i]] == pair.value
    return "colour" in attributes and attributes["colour"][i] >= 0 and COLOURS[attributes["colour"][i]] == pair.value


def test_the_training_set_leaves_out_exactly_the_images_with_a_held_out_pair(grey, rgb):
    for data, kinds in ((grey, {"stroke", "slant"}), (rgb, {"stroke", "slant", "colour"})):
        held = [[has_pair(data.attributes, i, pair) for i in range(N)] for pair in HELD_OUT]
        for pair, images in zip(HELD_OUT, held):
            assert any(images) == (pair.kind in kinds), pair  # each pair occurs: leaving it out means something
        expected = [i for i in range(N) if not any(images[i] for images in held)]
        assert data.keep.dtype == torch.int64 and data.keep.tolist() == expected
        assert torch.equal(captions.held_out_mask(data.attributes), ~torch.isin(torch.arange(N), data.keep))
        for i in data.keep.tolist():  # no kept caption shows a held-out pair either
            assert not said_pairs(data.captions[i]) & set(HELD_OUT), data.captions[i]
    assert len(rgb.keep) < len(grey.keep) < N


def test_held_out_pairs_name_values_of_their_kind():
    tables = {"stroke": STROKES, "slant": SLANTS, "colour": COLOURS}
    for pair in HELD_OUT:
        assert pair.value in tables[pair.kind] and 0 <= pair.digit <= 9
    assert {pair.kind for pair in HELD_OUT} == set(tables)


@pytest.mark.parametrize("name, kinds", [("digits", {"stroke": ("thin", "bold"), "slant": SLANTS}),
                                         ("digits-rgb", {"stroke": ("thin", "bold"), "slant": SLANTS,
                                                         "colour": COLOURS})])
def test_evaluation_prompts_cover_every_pair_and_keep_held_out_ones_apart(name, kinds):
    prompts = captions.evaluation_prompts(name, per_pair=2)
    assert set(prompts) == {"seen", "held_out"}
    pairs = {group: [] for group in prompts}
    for group, listed in prompts.items():
        for prompt in listed:
            assert prompt.held_out == (group == "held_out")
            (kind,) = set(prompt.attributes) - {"digit"}
            pair = HeldOutPair(kind, prompt.attributes["digit"], prompt.attributes[kind])
            assert (pair in HELD_OUT) == prompt.held_out
            said = mentioned(prompt.text)
            assert said["digit"] == pair.digit and said[kind] == pair.value, prompt
            assert sum(value is not None for value in said.values()) == 2, prompt  # nothing else named
            pairs[group].append(pair)
    every = {HeldOutPair(kind, digit, value) for kind, values in kinds.items() for digit in range(10) for value in values}
    assert set(pairs["seen"]) | set(pairs["held_out"]) == every
    assert set(pairs["held_out"]) == {pair for pair in HELD_OUT if pair.kind in kinds}
    assert all(pairs[group].count(pair) == 2 for group in pairs for pair in pairs[group])  # per_pair phrasings
    Tokenizer().encode([prompt.text for listed in prompts.values() for prompt in listed])


def test_evaluation_prompts_reject_other_datasets():
    with pytest.raises(ValueError, match="mnist"):
        captions.evaluation_prompts("mnist")
    with pytest.raises(ValueError, match="cifar10"):
        captions.caption_attributes("cifar10")


# ---------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------


def test_the_tokenizer_layout():
    tokenizer = Tokenizer()
    assert tokenizer.vocab[:3] == ("<pad>", "<bos>", "<eos>")
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2)
    assert tokenizer.vocab[3:] == captions.vocabulary()
    assert tokenizer.vocab_size == len(captions.vocabulary()) + 3 == len(set(tokenizer.vocab))


def test_captions_survive_encode_then_decode(rgb):
    tokenizer = Tokenizer()
    tokens = tokenizer.encode(rgb.captions)
    assert tokens.shape == (N, MAX_LENGTH) and tokens.dtype == torch.int64
    assert tokenizer.decode(tokens) == rgb.captions
    for caption, row in zip(rgb.captions[:100], tokens[:100].tolist()):
        words = caption.replace(",", " , ").split()
        assert row == [1] + [tokenizer.vocab.index(w) for w in words] + [2] + [0] * (MAX_LENGTH - len(words) - 2)
    assert tokenizer.decode(tokens[0]) == rgb.captions[:1]  # one row, (L,)


def test_encoding_lower_cases_and_splits_at_white_space_and_commas():
    tokenizer = Tokenizer()
    ids = tokenizer.encode(["7, thin", "7 , thin", "7,thin", "  7\t,THIN "])
    assert (ids == ids[0]).all()
    assert ids[0, :5].tolist() == [1, tokenizer.vocab.index("7"), tokenizer.vocab.index(","),
                                   tokenizer.vocab.index("thin"), 2]
    assert tokenizer.decode(tokenizer.encode(["A Bold Seven"])) == ["a bold seven"]


def test_the_empty_caption_is_bos_eos_then_padding():
    tokenizer = Tokenizer()
    empty = tokenizer.empty(3)
    assert empty.shape == (3, MAX_LENGTH)
    assert empty.tolist() == [[1, 2] + [0] * (MAX_LENGTH - 2)] * 3
    assert torch.equal(tokenizer.encode(["", "   "]), empty[:2])
    assert tokenizer.decode(empty) == ["", "", ""]


def test_decode_stops_at_eos_and_checks_its_ids():
    tokenizer = Tokenizer()
    seven, bold = tokenizer.vocab.index("seven"), tokenizer.vocab.index("bold")
    assert tokenizer.decode(torch.tensor([[1, bold, 0, seven, 2, seven, 0]])) == ["bold seven"]
    assert tokenizer.decode([[bold, seven]]) == ["bold seven"]  # no <eos>: every word
    with pytest.raises(ValueError):
        tokenizer.decode(torch.tensor([[1, tokenizer.vocab_size, 2]]))
    with pytest.raises(ValueError):
        tokenizer.decode(torch.tensor([[1, -1, 2]]))
    with pytest.raises(ValueError):
        tokenizer.decode(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError):
        tokenizer.decode(torch.ones(2, 2, 2, dtype=torch.int64))


@pytest.mark.parametrize("text, unknown", [
    ("a bold seven.", ["seven."]),  # punctuation other than the comma is part of its word
    ("a purple elephant, dancing", ["dancing", "elephant"]),
    ("a <pad> seven", ["<pad>"]),
    ("the digit 10", ["10"]),
])
def test_unknown_words_are_named_with_the_vocabulary(text, unknown):
    with pytest.raises(UnknownWordsError) as caught:
        Tokenizer().encode(["a seven", text])
    assert isinstance(caught.value, ValueError)
    assert list(caught.value.words) == unknown
    message = str(caught.value)
    for word in unknown:
        assert repr(word) in message
    assert all(word in message.split() for word in captions.vocabulary() if word != ",")


def test_a_caption_too_long_for_max_length_is_refused():
    tokenizer = Tokenizer()
    fits = " ".join(["seven"] * (MAX_LENGTH - 2))
    assert tokenizer.decode(tokenizer.encode([fits])) == [fits]
    with pytest.raises(ValueError, match="max_length") as caught:
        tokenizer.encode([fits + " seven"])
    assert not isinstance(caught.value, UnknownWordsError)
    short = Tokenizer(max_length=5)
    assert short.encode(["a bold seven"]).tolist() == [[1] + [short.vocab.index(w) for w in ("a", "bold", "seven")] + [2]]
    with pytest.raises(ValueError, match="max_length"):
        short.encode(["a bold, seven"])


def test_encode_wants_a_list_of_strings():
    with pytest.raises(TypeError):
        Tokenizer().encode("a bold seven")
    with pytest.raises(TypeError):
        Tokenizer().encode([7])


@pytest.mark.parametrize("words, max_length", [
    (["seven", "seven"], 16), (["Seven"], 16), (["two words"], 16), (["<pad>"], 16), (["a,b"], 16), ([7], 16),
    (["seven"], 1), (["seven"], True), (["seven"], 16.0),
])
def test_the_tokenizer_checks_its_arguments(words, max_length):
    with pytest.raises(ValueError):
        Tokenizer(words, max_length)


def test_the_tokenizer_survives_a_checkpoint(tmp_path, rgb):
    tokenizer = Tokenizer(max_length=20)
    saved = tokenizer.to_dict()
    path = tmp_path / "tokenizer.pt"
    save_checkpoint(path, {"tokenizer": saved})
    again = Tokenizer.from_dict(read_torch_file(path)["tokenizer"])  # torch.load(weights_only=True)
    assert again.vocab == tokenizer.vocab and again.max_length == 20
    assert torch.equal(again.encode(rgb.captions[:50]), tokenizer.encode(rgb.captions[:50]))
    custom = Tokenizer(["zebra", "apple", ","], max_length=5)
    restored = Tokenizer.from_dict(custom.to_dict())
    assert restored.vocab == ("<pad>", "<bos>", "<eos>", "zebra", "apple", ",")  # the order is kept, not re-sorted
    assert restored.max_length == 5
    assert restored.encode(["apple, zebra"]).tolist() == [[1, 4, 5, 3, 2]]


def _damaged():
    good = Tokenizer().to_dict()
    yield "not a dict", list(good.items())
    yield "no format", {k: v for k, v in good.items() if k != "format"}
    yield "other format", {**good, "format": "something-else"}
    yield "no vocab", {k: v for k, v in good.items() if k != "vocab"}
    yield "vocab a string", {**good, "vocab": " ".join(good["vocab"])}
    yield "specials missing", {**good, "vocab": good["vocab"][3:]}
    yield "specials moved", {**good, "vocab": good["vocab"][1:] + good["vocab"][:1]}
    yield "duplicate word", {**good, "vocab": good["vocab"] + ["seven"]}
    yield "not a word", {**good, "vocab": good["vocab"] + [3]}
    yield "no max_length", {k: v for k, v in good.items() if k != "max_length"}
    yield "max_length 1", {**good, "max_length": 1}
    yield "max_length text", {**good, "max_length": "16"}


@pytest.mark.parametrize("why, saved", list(_damaged()), ids=[why for why, _ in _damaged()])
def test_a_damaged_tokenizer_dict_is_refused(why, saved):
    with pytest.raises(ValueError, match="not a stored caption tokenizer"):
        Tokenizer.from_dict(saved)
