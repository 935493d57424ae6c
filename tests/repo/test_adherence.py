"""Tests of prompt adherence (provided/adherence.py) and ``evaluate.py`` on a text-conditioned checkpoint.

The rules are tested on images whose answer is known: synthetic bars of known width, and
real test digits asked for the attributes they have (most must pass) or for the opposite
ones (most must fail). The command is tested end to end on a tiny ``train.py --captions``
run whose sampler is replaced by real digits chosen for each prompt: right images must
score high, the same images shifted by one prompt must score low, so the report cannot
be blind to which image answered which prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import provided.evaluation as evaluation
from provided import adherence, captions
from provided.captions import COLOURS, HELD_OUT, STROKES
from provided.classifier import dataset_tensors, default_classifier_path, save_classifier, train_on_dataset
from provided.image_data import make_dataset
from provided.training import main as train_main

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)

REAL_IMAGES = 3000
OPPOSITE = {"thin": "bold", "bold": "thin", "left": "right", "right": "left", "upright": "left"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adherence_data")


@pytest.fixture(scope="module")
def rule(data_dir) -> adherence.StrokeRule:
    return adherence.stroke_rule("digits-rgb", data_dir=data_dir, num_images=6000)


@pytest.fixture(scope="module")
def real(data_dir):
    """Test digits-rgb images (N, 3, 28, 28) in [0, 1] and their true attributes."""
    attributes, _, _ = captions.caption_attributes("digits-rgb", split="test", num_images=REAL_IMAGES,
                                                   data_dir=data_dir)
    images, labels = dataset_tensors(make_dataset("digits-rgb", split="test", num_images=REAL_IMAGES,
                                                  data_dir=data_dir, augment=False))
    assert torch.equal(labels, attributes["digit"])
    return images, attributes


def bar(width: float, length: int = 16, size: int = 28) -> torch.Tensor:
    """A vertical white bar of ``width`` pixels (soft edges) and ``length`` rows on black, (1, 1, size, size)."""
    x = torch.arange(size, dtype=torch.float32) + 0.5
    centre = size / 2
    columns = (torch.minimum(x + 0.5, torch.tensor(centre + width / 2))
               - torch.maximum(x - 0.5, torch.tensor(centre - width / 2))).clamp(0, 1)  # pixel coverage
    image = torch.zeros(size, size)
    top = (size - length) // 2
    image[top:top + length] = columns
    return image[None, None]


# ---------------------------------------------------------------------------
# The measurements
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", [2.0, 3.0, 4.0, 5.0])  # thinner bars never reach full ink (the docstring)
@pytest.mark.parametrize("length", [8, 20])
def test_stroke_width_of_a_bar_is_its_area_over_half_its_perimeter(width, length):
    """A w × L rectangle: 2·(wL) / (2(L + w)), whatever the soft edges (the ink mass grows with L instead)."""
    assert captions.stroke_width(bar(width, length)).item() == pytest.approx(width * length / (length + width),
                                                                             rel=0.08)
    assert captions.ink_mass(bar(width, length)).item() == pytest.approx(width * length / 28**2, rel=1e-5)


def test_stroke_width_grows_with_the_width_and_is_zero_without_ink():
    widths = [captions.stroke_width(bar(w)).item() for w in (1.0, 2.0, 3.0, 4.0, 5.0)]
    assert widths == sorted(widths) and widths[-1] > 2 * widths[0]
    assert captions.stroke_width(torch.zeros(2, 1, 28, 28)).tolist() == [0.0, 0.0]


def test_the_stroke_rule_splits_thin_from_bold_digit_by_digit():
    rule = adherence.StrokeRule(thin=torch.arange(10.0), bold=torch.arange(10.0) + 2)
    digits = torch.tensor([0, 0, 5, 5])
    assert rule.threshold(digits).tolist() == [1.0, 1.0, 6.0, 6.0]
    widths = torch.tensor([0.9, 1.1, 5.9, 6.1])
    assert [STROKES[i] for i in rule.classify(widths, digits).tolist()] == ["thin", "bold", "thin", "bold"]


def test_the_stroke_rule_of_the_digits_orders_thin_below_bold(rule):
    assert (rule.thin < rule.bold).all()
    assert ((rule.thin > 1.0) & (rule.bold < 5.0)).all()  # pixel widths of 28×28 digits


def requests(attributes: dict, flip: bool = False) -> tuple[torch.Tensor, list[dict]]:
    """The real images' own requests, or (flip) the opposite value of the same kind."""
    indices, asked = adherence.real_requests(attributes)
    if flip:
        for request in asked:
            kind = adherence.asked_kind(request)
            value = request[kind]
            request[kind] = COLOURS[(COLOURS.index(value) + 3) % 6] if kind == "colour" else OPPOSITE[value]
    return indices, asked


def by_kind(asked: list[dict], followed: torch.Tensor) -> dict[str, float]:
    kinds = [adherence.asked_kind(request) for request in asked]
    return {kind: followed[torch.tensor([k == kind for k in kinds])].float().mean().item() for kind in set(kinds)}


def test_real_digits_follow_their_own_attributes(real, rule):
    images, attributes = real
    indices, asked = requests(attributes)
    verdicts = adherence.judge(images[indices], asked, attributes["digit"][indices], rule)
    rates = by_kind(asked, verdicts["attribute"])
    assert set(rates) == {"stroke", "slant", "colour"}
    # the captions measured the grey digits the same way; ink() recovers it from the colours closely
    assert rates["slant"] >= 0.98 and rates["colour"] >= 0.98
    assert rates["stroke"] >= 0.75  # random distortion blurs the stroke levels (the module docstring)
    assert verdicts["digit"].all()


def test_real_digits_fail_the_opposite_attributes(real, rule):
    images, attributes = real
    indices, asked = requests(attributes, flip=True)
    verdicts = adherence.judge(images[indices], asked, (attributes["digit"][indices] + 1) % 10, rule)
    rates = by_kind(asked, verdicts["attribute"])
    assert rates["slant"] <= 0.05 and rates["colour"] <= 0.02 and rates["stroke"] <= 0.25
    assert not verdicts["digit"].any()


def test_judge_reports_what_it_measured(rule):
    thin, thick = bar(1.2, 18), bar(4.5, 18)
    asked = [{"digit": 1, "stroke": "thin"}, {"digit": 1, "stroke": "thin"}, {"digit": 1, "slant": "upright"}]
    verdicts = adherence.judge(torch.cat([thin, thick, thin]), asked, torch.tensor([1, 7, 1]), rule)
    assert verdicts["measured"] == ["thin", "bold", "upright"]
    assert verdicts["attribute"].tolist() == [True, False, True]
    assert verdicts["digit"].tolist() == [True, False, True]
    with pytest.raises(ValueError, match="one prompt and one predicted digit per image"):
        adherence.judge(thin, asked, torch.tensor([1]), rule)
    with pytest.raises(ValueError, match="a digit and one of"):
        adherence.judge(thin, [{"digit": 1, "stroke": "thin", "slant": "left"}], torch.tensor([1]), rule)


# ---------------------------------------------------------------------------
# The summary
# ---------------------------------------------------------------------------


def test_summarise_counts_seen_and_held_out_pairs_apart():
    held = next(pair for pair in HELD_OUT if pair.kind == "stroke")
    seen_request = {"digit": (held.digit + 1) % 10, "stroke": held.value}
    asked = [seen_request, seen_request, seen_request, {"digit": 0, "slant": "left"},
             {"digit": held.digit, "stroke": held.value}, {"digit": held.digit, "stroke": held.value}]
    verdicts = {"digit": torch.tensor([True, True, False, True, True, False]),
                "attribute": torch.tensor([True, False, True, False, True, True])}
    summary = adherence.summarise(asked, verdicts)
    seen, held_out = summary["seen"], summary["held_out"]
    assert seen["count"] == 4 and held_out["count"] == 2
    assert seen["digit"] == 0.75 and seen["attribute"] == 0.5 and seen["both"] == 0.25
    assert seen["by_kind"]["stroke"] == pytest.approx({"count": 3, "digit": 2 / 3, "attribute": 2 / 3, "both": 1 / 3})
    assert seen["by_kind"]["slant"]["attribute"] == 0.0
    assert held_out["digit"] == 0.5 and held_out["attribute"] == 1.0 and held_out["both"] == 0.5
    assert set(held_out["by_kind"]) == {"stroke"}
    assert [(p["asked_digit"], p["held_out"], p["count"]) for p in summary["pairs"]] == [
        (seen_request["digit"], False, 3), (0, False, 1), (held.digit, True, 2)]
    assert summary["all"]["count"] == 6 and summary["all"]["digit"] == pytest.approx(4 / 6)
    assert summary["all"]["both"] == pytest.approx(2 / 6)


def test_real_requests_skip_what_the_prompts_never_ask():
    attributes = {"digit": torch.tensor([3, 4, 5]), "stroke": torch.tensor([1, 0, 2]),
                  "slant_class": torch.tensor([-1, 2, 1]), "colour": torch.tensor([-1, -1, 4])}
    indices, asked = adherence.real_requests(attributes)
    assert list(zip(indices.tolist(), asked)) == [
        (1, {"digit": 4, "stroke": "thin"}), (2, {"digit": 5, "stroke": "bold"}),
        (1, {"digit": 4, "slant": "right"}), (2, {"digit": 5, "slant": "upright"}),
        (2, {"digit": 5, "colour": "blue"})]


def test_the_prompt_set_gives_held_out_pairs_more_images():
    prompts = adherence.prompt_set("digits", 2, 10, seed=0)
    held = [prompt for prompt in prompts if prompt.held_out]
    seen = [prompt for prompt in prompts if not prompt.held_out]
    grey_pairs = sum(pair.kind != "colour" for pair in HELD_OUT)
    assert len(held) == 10 * grey_pairs and len(seen) == 2 * (10 * 2 + 10 * 3 - grey_pairs)
    assert all(adherence.is_held_out(prompt.attributes) for prompt in held)
    order, rows = adherence.grid_order([prompt.attributes for prompt in prompts])
    assert rows == ["thin (stroke)", "bold (stroke)", "left (slant)", "upright (slant)", "right (slant)"]
    assert len(order) == 50 and all(prompts[i].attributes["digit"] == i_cell % 10 for i_cell, i in enumerate(order))


# ---------------------------------------------------------------------------
# evaluate.py on a text-conditioned checkpoint
# ---------------------------------------------------------------------------

TINY_TEXT = ["--impl", "solutions", "--dataset", "digits-rgb", "--num-images", "64", "--batch-size", "8",
             "--base-channels", "8", "--channel-mults", "1,2", "--attention-levels", "", "--captions",
             "--text-dim", "16", "--text-layers", "1", "--sample-every", "0", "--timesteps", "50", "--steps", "2",
             "--warmup-steps", "1"]
EVAL = ["--impl", "solutions", "--device", "cpu", "--steps", "2", "--per-pair", "1", "--no-inception"]


@pytest.fixture(scope="module")
def text_run(data_dir, tmp_path_factory) -> Path:
    """A 2-step digits-rgb --captions run, and a small classifier where evaluate.py looks for its cache."""
    model, record = train_on_dataset("digits-rgb", data_dir=data_dir, num_train=2000, num_test=500, epochs=2,
                                     batch_size=64, log=lambda line: None)
    save_classifier(default_classifier_path("digits-rgb", data_dir), model, record)
    out = tmp_path_factory.mktemp("text_run") / "run"
    assert train_main([*TINY_TEXT, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return out


def answers(real, prompts: list, shift: int = 0) -> torch.Tensor:
    """For each prompt, a real image in [-1, 1] that has what it asks (what prompt i + shift asks), a
    different image for each repeat of the same request."""
    images, attributes = real
    indices, asked = adherence.real_requests(attributes)
    chosen, used = [], set()
    for prompt in prompts[shift:] + prompts[:shift]:
        match = next(index for index, request in zip(indices.tolist(), asked)
                     if request == prompt.attributes and index not in used)
        used.add(match)
        chosen.append(images[match])
    return torch.stack(chosen) * 2 - 1


def evaluate_with_images(text_run, data_dir, tmp_path, monkeypatch, real, shift: int) -> dict:
    def draw(self, guidance_scale):  # instead of sampling: real digits chosen for the prompts
        return answers(real, self.source.prompts, shift)

    monkeypatch.setattr(evaluation.Sampler, "draw", draw)
    out = tmp_path / f"eval_{shift}"
    assert evaluation.main([*EVAL, "--checkpoint", str(text_run), "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_images_that_show_their_prompts_score_high(text_run, data_dir, tmp_path, monkeypatch, real):
    metrics = evaluate_with_images(text_run, data_dir, tmp_path, monkeypatch, real, shift=0)
    summary = metrics["adherence"]
    assert metrics["kind"] == "prompt adherence" and metrics["dataset"] == "digits-rgb"
    assert metrics["classifier"]["image_size"] == metrics["image_size"] == 28  # judged at the model's own size
    assert summary["seen"]["count"] == 10 * (2 + 3 + 6) - len(HELD_OUT)  # one image per seen pair
    assert summary["held_out"]["count"] == len(HELD_OUT) * evaluation.HELD_OUT_REPEATS
    for group in ("seen", "held_out"):  # real images: as good as the real images of the floor
        assert summary[group]["digit"] >= metrics["floor"]["real"]["digit"] - 0.15 >= 0.5
        assert summary[group]["by_kind"]["slant"]["attribute"] >= 0.9
        assert summary[group]["by_kind"]["colour"]["attribute"] >= 0.9
    assert metrics["floor"]["real"]["by_kind"]["slant"]["attribute"] >= 0.98
    assert set(metrics["floor"]) == {"real"}, "a pixel-space model has no autoencoder"


def test_images_of_other_prompts_score_low(text_run, data_dir, tmp_path, monkeypatch, real):
    metrics = evaluate_with_images(text_run, data_dir, tmp_path, monkeypatch, real, shift=1)
    seen = metrics["adherence"]["seen"]  # the next prompt: mostly the same digit, another value of the attribute
    assert seen["attribute"] <= 0.35 and seen["both"] <= 0.3


def test_evaluate_samples_a_text_checkpoint_and_writes_its_report(text_run, data_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluation.main([*EVAL, "--checkpoint", str(text_run), "--data-dir", str(data_dir), "--out", str(out),
                            "--sweep", "0,3"]) == 0
    printed = capsys.readouterr().out
    assert "prompt adherence" in printed and "held-out pair" in printed and "guidance sweep" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert [entry["guidance_scale"] for entry in metrics["sweep"]] == [0.0, 3.0]
    assert len(metrics["prompts"]) == metrics["num_samples"]
    report = (out / "adherence.md").read_text()
    assert "| digit (classifier) |" in report and "### Every pair" in report
    assert (out / "samples.png").is_file()


def test_evaluate_refuses_flags_that_do_not_fit_a_text_checkpoint(text_run, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main([*EVAL, "--checkpoint", str(text_run), "--num-samples", "10"])
    assert exit_info.value.code == 2 and "argument --num-samples" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main(["--samples", str(tmp_path / "none.pt"), "--per-pair", "2"])
    assert exit_info.value.code == 2 and "argument --per-pair" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main([*EVAL, "--checkpoint", str(text_run), "--per-pair", "0"])
    assert exit_info.value.code == 2 and "argument --per-pair" in capsys.readouterr().err


def test_evaluate_refuses_a_classifier_of_another_size_than_the_model(text_run, data_dir, tmp_path, capsys):
    """The digit is judged at the model's own size (28 here): a --classifier trained at 32 is refused in one line."""
    model, record = train_on_dataset("digits-rgb", data_dir=data_dir, num_train=200, num_test=100, epochs=1,
                                     image_size=32, log=lambda line: None)
    other = save_classifier(tmp_path / "digits-rgb-32px.pt", model, record)
    status = evaluation.main([*EVAL, "--checkpoint", str(text_run), "--data-dir", str(data_dir), "--classifier",
                              str(other), "--out", str(tmp_path / "eval")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(lines) == 1
    assert "argument --classifier" in lines[0] and "of 32×32 images, not of 28×28" in lines[0]
