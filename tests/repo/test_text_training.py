"""Tests of Phase 7 in train.py: --captions trains a text-conditioned U-Net (pixels, or latents).

Every run is tiny (200 digits, batches of 8, a U-Net of base width 8 without attention
levels, a text encoder of width 16 and one layer) and runs in-process with the
reference (--impl solutions). What is checked: what the checkpoint carries (the
tokenizer, the TextUNet's config), that the held-out combinations never reach a batch
and every image comes with its own caption, the caption dropout, exact resume, the
latent variant, and the errors.
"""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

import pytest
import torch
from PIL import Image

import provided.sampling as sampling
import provided.training as training
import solutions.text as reference_text
import solutions.train as reference_train
from provided.captions import MAX_LENGTH, Tokenizer, captioned_digits
from provided.conditioning import text_guidance
from provided.image_data import make_dataset
from provided.training import main

from test_train_cli import assert_same_run, interrupt_then_resume, load  # noqa: E402 (tests/repo is on sys.path)

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)

NUM_IMAGES = 200
COMMON = ["--impl", "solutions", "--dataset", "digits", "--num-images", str(NUM_IMAGES), "--batch-size", "8",
          "--warmup-steps", "2", "--sample-every", "2", "--num-samples", "12", "--sample-steps", "2",
          "--timesteps", "50"]
TEXT = ["--captions", "--base-channels", "8", "--channel-mults", "1,2", "--attention-levels", "",
        "--text-dim", "16", "--text-layers", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A private data folder: the digits are generated (and cached) there, not in data/."""
    return tmp_path_factory.mktemp("data")


def text_arguments(data_dir: Path, out: Path, *extra: str, steps: int = 4) -> list[str]:
    return [*COMMON, *TEXT, "--data-dir", str(data_dir), "--steps", str(steps), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, data_dir):
    """A finished 4-step --captions run in pixel space; its folder."""
    out = tmp_path_factory.mktemp("text") / "run"
    assert main(text_arguments(data_dir, out)) == 0
    return out


@pytest.fixture(scope="module")
def captioned(data_dir, text_run):
    """The run's images (N, 1, 28, 28) in [-1, 1], their captions' tokens (N, L) and the held-out-free indices."""
    data = captioned_digits("digits", num_images=NUM_IMAGES, data_dir=data_dir)
    dataset = make_dataset("digits", num_images=NUM_IMAGES, data_dir=data_dir, augment=False)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]) * 2 - 1
    return images, Tokenizer().encode(data.captions), data.keep


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, data_dir):
    """One epoch (22 steps of 8 of the 182 kept images) at --p-uncond 0.5, recording every call of
    drop_captions and training_step, in order."""
    events = []
    real_drop, real_step = reference_text.drop_captions, reference_train.training_step

    def drop(tokens, p_uncond, empty_tokens, generator):
        before = generator.get_state()
        dropped = real_drop(tokens, p_uncond, empty_tokens, generator)
        events.append(("drop", tokens.clone(), p_uncond, empty_tokens.clone(), before, dropped.clone()))
        return dropped

    def step(model, x0, schedule, *, generator, class_labels, **options):
        events.append(("step", x0.clone(), class_labels.clone(), generator.get_state()))
        return real_step(model, x0, schedule, generator=generator, class_labels=class_labels, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference_text, "drop_captions", drop)
        patch.setattr(reference_train, "training_step", step)
        out = tmp_path_factory.mktemp("text") / "recorded"
        assert main(text_arguments(data_dir, out, "--p-uncond", "0.5", "--sample-every", "0", steps=22)) == 0
    return events


def test_the_checkpoint_carries_the_tokenizer_and_the_text_model(text_run):
    state = load(text_run / "last.pt")
    tokenizer = Tokenizer(max_length=MAX_LENGTH)
    text = state["config"]["text"]
    assert state["config"]["captions"] is True
    assert text["tokenizer"] == tokenizer.to_dict()
    assert Tokenizer.from_dict(text["tokenizer"]).vocab == tokenizer.vocab
    assert text["images"] + text["held_out_images"] == NUM_IMAGES and text["held_out_images"] > 0
    assert {(pair["kind"], pair["digit"], pair["value"]) for pair in text["held_out"]} == {
        ("stroke", 7, "bold"), ("stroke", 2, "thin"), ("slant", 4, "left"), ("slant", 9, "right")}, \
        "grey digits: the colour pairs do not apply"
    config = state["model_config"]
    assert config["vocab_size"] == tokenizer.vocab_size and config["max_length"] == MAX_LENGTH
    assert config["empty_tokens"] == tokenizer.empty(1)[0].tolist()
    assert (config["text_dim"], config["text_layers"], config["text_heads"], config["cross_heads"]) == (16, 1, 4, 4)
    assert "num_classes" not in config and config["in_channels"] == 1
    assert torch.equal(state["ema"]["empty_tokens"], tokenizer.empty(1)[0])
    saved = json.loads((text_run / "config.json").read_text(encoding="utf-8"))
    assert saved["text"] == json.loads(json.dumps(text)) and saved["model"]["vocab_size"] == tokenizer.vocab_size


def test_the_caption_reaches_the_loss(text_run):
    """The text encoder trained: AdamW's moments of its token embedding are not zero."""
    state = load(text_run / "last.pt")
    model = reference_text.TextUNet(**state["model_config"])
    names = [name for name, _ in model.named_parameters()]
    index = names.index("text_encoder.token_embedding.weight")
    assert state["optimizer"]["state"][index]["exp_avg"].abs().sum() > 0
    assert all(torch.isfinite(tensor).all() for tensor in state["model"].values() if tensor.is_floating_point())


def test_grids_show_one_prompted_digit_per_column(text_run):
    prompts = load(text_run / "last.pt")["config"]["text"]["grid_prompts"]
    assert len(prompts) == 12
    Tokenizer().encode(prompts)  # every prompt in the vocabulary
    assert "7" in prompts[7] or "seven" in prompts[7]
    assert "bold" in prompts[10] or "thick" in prompts[10] or "heavy" in prompts[10], "row 1: bold digits"
    with Image.open(text_run / "samples.png") as image:
        assert image.size == (10 * 58 + 2, 2 * 58 + 2)  # 10 columns of 56 px cells, two rows for 12 prompts
    assert (text_run / "samples" / "step_000002.png").is_file()


def test_sampling_rebuilds_the_text_model(text_run):
    state = load(text_run / "last.pt")
    model, _ = sampling.load_model(state, "solutions", torch.device("cpu"))
    assert isinstance(model, reference_text.TextUNet)
    tokens = Tokenizer().encode(["a bold seven", ""])
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 28, 28), torch.tensor([10, 10]), tokens)
    assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()


SAMPLE = ["--impl", "solutions", "--steps", "3", "--threads", "1"]


def test_sample_py_draws_the_prompts_guided_by_the_empty_caption(text_run, tmp_path, capsys):
    """sample.py --prompt: the images are the DDIM samples of TextGuidedModel(EMA model, w) for the prompts'
    tokens (cycling through the prompts), from the seed's generator; the tensor records the prompts."""
    prompts = ["a bold seven", "the digit two in a serif font"]
    out, saved = tmp_path / "grid.png", tmp_path / "images.pt"
    assert sampling.main([*SAMPLE, "--checkpoint", str(text_run), "--prompt", prompts[0], "--prompt", prompts[1],
                          "--num-samples", "3", "--guidance-scale", "2.5", "--seed", "7", "--out", str(out),
                          "--save-tensor", str(saved)]) == 0
    assert 'prompts "a bold seven", "the digit two in a serif font", guidance w = 2.5' in capsys.readouterr().out
    written = torch.load(saved, weights_only=True)
    assert written["prompts"] == [prompts[0], prompts[1], prompts[0]]

    state = load(text_run / "last.pt")
    model, schedule = sampling.load_model(state, "solutions", torch.device("cpu"))
    tokens = Tokenizer.from_dict(state["config"]["text"]["tokenizer"]).encode([prompts[0], prompts[1], prompts[0]])
    with torch.no_grad():
        expected = import_module("solutions.diffusion").sample_loop(
            reference_text.TextGuidedModel(model, 2.5), schedule, (3, 1, 28, 28), generator=torch.Generator().manual_seed(7),
            sampler="ddim", num_steps=3, eta=0.0, spacing="trailing", prediction=state["config"]["prediction"],
            clip_x0=True, class_labels=tokens)
    torch.testing.assert_close(written["images"], expected.clamp(-1, 1), rtol=0, atol=1e-6)
    with Image.open(out) as image:  # one prompt per column: 2 columns of 56 px cells (28 px enlarged twice)
        assert image.size[0] == 2 * 58 + 2


def test_sample_py_guidance_grid_has_one_row_per_prompt(text_run, tmp_path):
    """Row r is prompt r, column c scale c; each column is the plain run with that --guidance-scale."""
    prompts = ["--prompt", "a thin 4", "--prompt", "9"]
    grid, plain = tmp_path / "grid.pt", tmp_path / "plain.pt"
    assert sampling.main([*SAMPLE, "--checkpoint", str(text_run), *prompts, "--guidance-grid", "0,1,3",
                          "--out", str(tmp_path / "grid.png"), "--save-tensor", str(grid)]) == 0
    assert sampling.main([*SAMPLE, "--checkpoint", str(text_run), *prompts, "--guidance-scale", "3",
                          "--num-samples", "2", "--out", str(tmp_path / "plain.png"), "--save-tensor", str(plain)]) == 0
    written, column = torch.load(grid, weights_only=True), torch.load(plain, weights_only=True)
    assert written["images"].shape == (6, 1, 28, 28)
    assert written["prompts"] == ["a thin 4"] * 3 + ["9"] * 3
    torch.testing.assert_close(written["images"][2::3], column["images"], rtol=0, atol=0)
    assert not torch.equal(written["images"][0::3], written["images"][2::3]), "w = 0 and w = 3 should differ"


@pytest.mark.parametrize("extra, words", [
    ([], ["argument --prompt", "text-conditioned", "--prompt \"a bold seven\""]),
    (["--prompt", "a bold elephant"], ["argument --prompt", "'elephant'", "seven", "serif"]),
    (["--prompt", "a bold seven", "--class-id", "3"], ["argument --class-id", "--prompt"]),
    (["--prompt", "   "], ["argument --prompt", "empty prompt"]),
    (["--prompt", "a bold seven", "--inpaint", "--from-dataset", "2"], ["argument --inpaint", "text-conditioned"]),
], ids=["no prompt", "unknown word", "class id", "empty prompt", "inpaint"])
def test_sample_py_refuses_bad_prompts_in_one_line(text_run, tmp_path, capsys, extra, words):
    with pytest.raises(SystemExit) as exit_info:
        sampling.main([*SAMPLE, "--checkpoint", str(text_run), "--out", str(tmp_path / "x.png"), *extra])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert all(word in error for word in words), error
    assert "Traceback" not in error and not (tmp_path / "x.png").exists()


def test_prompt_is_refused_for_a_model_without_text(data_dir, tmp_path, capsys):
    out = tmp_path / "plain"
    assert main([*COMMON, "--base-channels", "8", "--channel-mults", "1,2", "--attention-levels", "",
                 "--data-dir", str(data_dir), "--steps", "1", "--out", str(out)]) == 0
    with pytest.raises(SystemExit) as exit_info:
        sampling.main([*SAMPLE, "--checkpoint", str(out), "--prompt", "a bold seven"])
    assert exit_info.value.code == 2 and "argument --prompt: the checkpoint's model was trained without --captions" \
        in capsys.readouterr().err


def test_held_out_images_never_reach_a_batch_and_each_image_has_its_caption(recorded, captioned):
    images, tokens, keep = captioned
    index_of = {images[i].numpy().tobytes(): i for i in range(len(images))}
    kept = set(keep.tolist())
    assert len(kept) < len(images), "the 200 digits hold some held-out combinations"
    drops = [event for event in recorded if event[0] == "drop"]
    steps = [event for event in recorded if event[0] == "step"]
    assert len(drops) == len(steps) == 22
    seen = []
    for (_, given, *_), (_, x0, _, _) in zip(drops, steps):
        for row in range(x0.shape[0]):
            index = index_of[x0[row].numpy().tobytes()]
            assert index in kept, f"image {index}, of a held-out combination, was in a batch"
            assert torch.equal(given[row], tokens[index]), f"image {index} came without its own caption"
            seen.append(index)
    assert len(set(seen)) == len(seen) == 22 * 8, "one epoch: every kept image at most once"


def test_captions_are_dropped_to_the_empty_caption_with_the_training_generator(recorded):
    empty = Tokenizer().empty(1)[0]
    dropped_rows = 0
    for position, event in enumerate(recorded):
        if event[0] != "drop":
            continue
        _, given, p_uncond, empty_tokens, before, dropped = event
        _, _, passed, after = recorded[position + 1]
        assert p_uncond == 0.5 and torch.equal(empty_tokens, empty)
        assert torch.equal(passed, dropped), "training_step gets the tokens drop_captions returned"
        generator = torch.Generator().set_state(before)
        draws = torch.rand((given.shape[0],), generator=generator)  # drop_captions' one draw
        assert torch.equal(after, generator.get_state()), "drop_captions draws once, before training_step"
        expected = torch.where((draws < 0.5)[:, None], empty.expand_as(given), given)
        assert torch.equal(dropped, expected)
        dropped_rows += int((draws < 0.5).sum())
    assert 0.35 < dropped_rows / (22 * 8) < 0.65, "about --p-uncond of the captions are dropped"


def test_interrupt_then_resume_is_bit_identical_with_captions(text_run, data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "resumed"
    resumed = interrupt_then_resume(out, text_arguments(data_dir, out), monkeypatch, capsys)
    assert resumed["step"] == 4 and resumed["config"]["captions"] is True
    assert_same_run(text_run, out)
    assert resumed["config"]["text"] == load(text_run / "last.pt")["config"]["text"]


@pytest.mark.parametrize("extra, words", [
    (["--class-conditional"], "argument --captions: not with --class-conditional"),
    (["--task", "deblur"], "argument --captions: not with --task"),
    (["--train-autoencoder"], "argument --train-autoencoder: not with --captions"),
    (["--dataset", "mnist"], "argument --captions: captions exist for --dataset digits or digits-rgb only"),
    (["--text-dim", "10"], "make no valid text-conditioned U-Net"),
], ids=["class-conditional", "task", "train-autoencoder", "dataset", "text-dim"])
def test_flags_that_do_not_mix_with_captions_are_refused(data_dir, tmp_path, capsys, extra, words):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(text_arguments(data_dir, out, *extra, steps=1))
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert words in error and "Traceback" not in error
    assert error.strip().splitlines()[-1].startswith("train.py: error: ")
    assert not (out / "last.pt").exists()


@pytest.mark.parametrize("change", [["--text-dim", "32"], ["--p-uncond", "0.2"]], ids=["text-dim", "p-uncond"])
def test_resume_keeps_the_text_settings(text_run, capsys, change):
    with pytest.raises(SystemExit) as stopped:
        main(["--resume", "--out", str(text_run), *change])
    assert stopped.value.code == 2
    assert f"argument {change[0]}: a resumed run keeps its settings" in capsys.readouterr().err


def test_a_captions_run_on_latents(tmp_path, data_dir, monkeypatch):
    """With --autoencoder the TextUNet diffuses the scaled latents, the captions where class labels go."""
    ae = tmp_path / "ae"
    assert main([*COMMON, "--train-autoencoder", "--ae-channels", "8,8,16", "--latent-channels", "2",
                 "--data-dir", str(data_dir), "--steps", "2", "--sample-every", "0", "--out", str(ae)]) == 0
    seen = []
    real_step = reference_train.training_step

    def step(model, x0, schedule, *, class_labels, **options):
        seen.append((x0.shape, class_labels.shape))
        return real_step(model, x0, schedule, class_labels=class_labels, **options)

    monkeypatch.setattr(reference_train, "training_step", step)
    out = tmp_path / "latent"
    assert main(text_arguments(data_dir, out, "--autoencoder", str(ae / "last.pt"), "--statistics-images", "32",
                               steps=2)) == 0
    assert seen == [((8, 2, 8, 8), (8, MAX_LENGTH))] * 2
    state = load(out / "last.pt")
    assert state["model_config"]["in_channels"] == 2 and state["config"]["latent"]["latent_shape"] == [2, 8, 8]
    assert "vocab_size" in state["model_config"] and "autoencoder" in state
    with Image.open(out / "samples.png") as image:  # decoded 32×32 digits, 64 px cells
        assert image.size == (10 * 66 + 2, 2 * 66 + 2)


def test_grid_guidance_uses_the_empty_caption_as_its_null(text_run):
    """w = 1: the model and the prompts; w = 0: the model and the empty caption; else TextGuidedModel."""
    model, _ = sampling.load_model(load(text_run / "last.pt"), "solutions", torch.device("cpu"))
    tokens = Tokenizer().encode(["a bold seven", "the digit two"])
    network, given = text_guidance(reference_text, model, tokens, 1.0)
    assert network is model and given is tokens
    network, given = text_guidance(reference_text, model, tokens, 0.0)
    assert network is model and torch.equal(given, Tokenizer().empty(2))
    network, given = text_guidance(reference_text, model, tokens, 3.0)
    assert isinstance(network, reference_text.TextGuidedModel) and network.guidance_scale == 3.0
    assert given is tokens


def test_colour_rows_in_the_grids_of_digits_rgb():
    prompts = training.grid_prompts("digits-rgb", 140, seed=0)
    rows = len(training.GRID_ATTRIBUTES)
    assert [prompt for prompt in prompts[rows * 10: rows * 10 + 10] if "red" not in prompt] == []
    assert training.grid_prompts("digits", 140, seed=0)[rows * 10:] == prompts[:70], "grey digits: rows repeat"
