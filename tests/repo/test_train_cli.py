"""Tests of ``python train.py``: what a run writes, exact resume, Ctrl-C, and its errors.

Every run here is tiny (64 images, batches of 8, 4 steps, a U-Net of base width 8)
and runs in-process through ``main(argv)`` with the reference (``--impl solutions``).
"""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import solutions.degradations as reference_degradations
import solutions.train as reference_train
import provided.training as reference_trainer
from provided.image_data import make_dataset
from provided.training import CHECKPOINT_FORMAT, ImageConditioned, atomic_write, main, triplet_rows

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--impl", "solutions", "--dataset", "digits", "--num-images", "64", "--batch-size", "8",
    "--base-channels", "8", "--sample-every", "2", "--sample-steps", "2", "--num-samples", "4",
    "--timesteps", "100", "--warmup-steps", "2",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A private data folder: the 64 digits are generated (and cached) there, not in data/."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def tiny(data_dir):
    """The arguments of a tiny run into ``out``."""

    def arguments(out: Path, *extra: str, steps: int = 4) -> list[str]:
        return [*TINY, "--data-dir", str(data_dir), "--steps", str(steps), "--out", str(out), *extra]

    return arguments


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny):
    """One finished 4-step run; its folder."""
    out = tmp_path_factory.mktemp("train") / "run"
    assert main(tiny(out, "--checkpoint-every", "2")) == 0
    return out


@pytest.fixture(scope="module")
def task_run_dir(tmp_path_factory, tiny):
    """One finished 4-step --task denoise run (Phase 5: the degradation that draws noise); its folder."""
    out = tmp_path_factory.mktemp("train") / "task_run"
    assert main(tiny(out, "--task", "denoise")) == 0
    return out


@pytest.fixture(scope="module")
def class_run_dir(tmp_path_factory, tiny):
    """One finished 4-step class-conditional run (Phase 5) on the 10 classes of the digits; its folder."""
    out = tmp_path_factory.mktemp("train") / "class_run"
    assert main(tiny(out, "--class-conditional")) == 0
    return out


# ---------------------------------------------------------------------------
# What a run writes
# ---------------------------------------------------------------------------


def test_a_run_writes_its_files(run_dir):
    for name in ("config.json", "last.pt", "loss.csv", "loss.png", "samples.png", "step_000002.pt",
                 "step_000004.pt", "samples/step_000002.png", "samples/step_000004.png"):
        assert (run_dir / name).is_file(), f"{name} was not written"
    assert not list(run_dir.rglob("*.tmp")), "a temporary file was left behind"


def test_config_holds_the_settings_and_the_model(run_dir):
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["steps"] == 4 and config["batch_size"] == 8 and config["dataset"] == "digits"
    assert config["impl"] == "solutions" and config["prediction"] == "v"
    assert config["model"]["base_channels"] == 8 and config["model"]["in_channels"] == 1
    assert config["image_size"] == 28 and config["dataset_size"] == 64


def test_loss_csv_has_one_row_per_step(run_dir):
    with open(run_dir / "loss.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4]
    for row in rows:
        assert math.isfinite(float(row["loss"])) and float(row["loss"]) > 0
        assert float(row["lr"]) > 0 and float(row["images_per_s"]) > 0
    lrs = [float(row["lr"]) for row in rows]
    assert lrs[0] < lrs[1], "the learning rate should warm up"


@pytest.mark.parametrize("name", ["loss.png", "samples.png", "samples/step_000002.png"])
def test_pictures_are_valid_pngs(run_dir, name):
    with Image.open(run_dir / name) as image:
        assert image.format == "PNG"
        image.verify()


def test_checkpoint_holds_everything_to_resume(run_dir):
    state = load(run_dir / "last.pt")
    assert state["format"] == CHECKPOINT_FORMAT
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (4, 0, 4)  # 8 batches per epoch
    for key in ("model", "ema", "optimizer", "scheduler", "rng", "config", "model_config"):
        assert key in state, key
    assert set(state["rng"]) >= {"generator", "torch", "python", "numpy"}
    assert state["model"].keys() == state["ema"].keys()
    assert state["model_config"]["base_channels"] == 8


# ---------------------------------------------------------------------------
# Exact resume, Ctrl-C
# ---------------------------------------------------------------------------


def interrupt_then_resume(out: Path, arguments: list[str], monkeypatch, capsys) -> dict:
    """Run ``arguments`` into ``out``, Ctrl-C during step 2 (saves last.pt), then --resume to the end.

    Returns the resumed run's last.pt.
    """
    real_update = reference_train.ema_update
    calls = []

    def update_then_interrupt(*args, **kwargs):
        real_update(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # as if Ctrl-C were pressed during step 2

    monkeypatch.setattr(reference_train, "ema_update", update_then_interrupt)
    assert main(arguments) == 130
    assert "--resume" in capsys.readouterr().out
    assert load(out / "last.pt")["step"] == 2
    monkeypatch.setattr(reference_train, "ema_update", real_update)
    assert main(["--resume", "--out", str(out)]) == 0
    return load(out / "last.pt")


def assert_same_run(one_go_dir: Path, resumed_dir: Path) -> None:
    """Two finished runs hold the same weights, optimizer state, generator and losses, bit for bit."""
    one_go, resumed = load(one_go_dir / "last.pt"), load(resumed_dir / "last.pt")
    assert resumed["step"] == one_go["step"]
    for part in ("model", "ema"):
        for name, tensor in one_go[part].items():
            assert torch.equal(tensor, resumed[part][name]), f"{part} tensor {name} differs after resume"
    states_a, states_b = one_go["optimizer"]["state"], resumed["optimizer"]["state"]
    assert states_a.keys() == states_b.keys()
    for index, entry in states_a.items():
        for key, value in entry.items():
            assert torch.equal(value, states_b[index][key]), f"optimizer state {index}.{key} differs"
    assert one_go["scheduler"]["last_epoch"] == resumed["scheduler"]["last_epoch"]
    assert torch.equal(one_go["rng"]["generator"], resumed["rng"]["generator"])
    with open(one_go_dir / "loss.csv", encoding="utf-8") as a, open(resumed_dir / "loss.csv", encoding="utf-8") as b:
        losses_a = [row["loss"] for row in csv.DictReader(a)]
        losses_b = [row["loss"] for row in csv.DictReader(b)]
    assert losses_a == losses_b


def test_interrupt_then_resume_is_bit_identical(run_dir, tiny, tmp_path, monkeypatch, capsys):
    """2 steps, Ctrl-C (saves last.pt), --resume to 4 == 4 steps in one go, tensor for tensor."""
    out = tmp_path / "resumed"
    assert interrupt_then_resume(out, tiny(out), monkeypatch, capsys)["step"] == 4
    assert_same_run(run_dir, out)


def test_threads_sets_torchs_threads_and_may_change_on_resume(tiny, tmp_path):
    out = tmp_path / "threads"
    torch.set_num_threads(2)
    try:
        assert main(tiny(out, "--threads", "1", "--sample-every", "0", steps=1)) == 0
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        assert main(tiny(out, "--resume", "--threads", "1", "--sample-every", "0", steps=2)) == 0  # a speed flag
        assert torch.get_num_threads() == 1 and load(out / "last.pt")["step"] == 2
    finally:
        torch.set_num_threads(1)  # this module's setting


def test_time_limit_stops_cleanly_saving_and_sampling(tiny, tmp_path, capsys):
    out = tmp_path / "timed"
    assert main(tiny(out, "--time-limit", "0.0001", "--sample-every", "0")) == 0  # 6 ms: one step
    assert "--time-limit: stopped at step 1 of 4" in capsys.readouterr().out
    assert load(out / "last.pt")["step"] == 1
    assert (out / "samples.png").is_file() and (out / "loss.png").is_file()


def test_epochs_and_gradient_accumulation(tiny, tmp_path):
    """64 images in batches of 8 are 8 batches an epoch; with --grad-accum 2, one epoch is 4 steps."""
    out = tmp_path / "epochs"
    arguments = [a for a in tiny(out, "--grad-accum", "2", "--epochs", "1", "--sample-every", "0")]
    del arguments[arguments.index("--steps") : arguments.index("--steps") + 2]
    assert main(arguments) == 0
    state = load(out / "last.pt")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (4, 1, 0)
    assert state["config"]["steps"] == 4


def test_grids_fall_back_to_the_reference_sampler_while_yours_is_a_stub(tiny, tmp_path, monkeypatch, capsys):
    import types

    real_import = reference_trainer.import_impl
    calls = []

    def stub_sampler(*args, **kwargs):
        raise NotImplementedError("Phase 4.5 · ddim_sample — see IMPLEMENTATION_GUIDE.md §4.5")

    def import_impl(name, impl=None):
        if name == "diffusion" and not calls:  # the first import is "yours": a stub
            calls.append(name)
            return types.SimpleNamespace(ddim_sample=stub_sampler)
        return real_import(name, impl)

    monkeypatch.setattr(reference_trainer, "import_impl", import_impl)
    out = tmp_path / "fallback"
    assert main(tiny(out, "--sample-every", "0", steps=1)) == 0
    printed = capsys.readouterr().out
    assert printed.count("your sampling code is not written yet") == 1
    assert (out / "samples.png").is_file()


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--resume", "--out", str(tmp_path / "nothing")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and str(tmp_path / "nothing" / "last.pt") in err


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "last.pt").write_bytes(b"PK\x03\x04 this is not a whole checkpoint")
    assert main(["--resume", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot read the checkpoint" in err and str(out / "last.pt") in err
    assert "Traceback" not in err


def test_an_existing_run_is_not_overwritten_by_accident(run_dir, tiny, capsys):
    before = (run_dir / "last.pt").stat().st_mtime_ns
    with pytest.raises(SystemExit) as stopped:
        main(tiny(run_dir))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert (run_dir / "last.pt").stat().st_mtime_ns == before


def test_resume_refuses_to_change_what_is_trained(run_dir, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--resume", "--out", str(run_dir), "--lr", "0.5"])
    assert stopped.value.code == 2
    assert "argument --lr" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Class conditioning (Phase 5)
# ---------------------------------------------------------------------------


def test_a_class_conditional_run_saves_a_model_with_its_classes(class_run_dir):
    state = load(class_run_dir / "last.pt")
    assert state["step"] == 4
    assert state["model_config"]["num_classes"] == 10
    assert state["model"]["class_embedding.weight"].shape == (11, 32)  # K + 1 rows (row K: no class), 4 × 8 wide
    assert state["config"]["class_conditional"] is True and state["config"]["p_uncond"] == 0.1
    config = json.loads((class_run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["class_conditional"] is True and config["model"]["num_classes"] == 10


def test_unconditional_is_the_default(run_dir):
    state = load(run_dir / "last.pt")
    assert state["config"]["class_conditional"] is False
    assert not state["model_config"]["num_classes"]
    assert not any(name.startswith("class_embedding") for name in state["model"])


def test_class_conditional_grids_have_one_class_per_column(class_run_dir):
    with Image.open(class_run_dir / "samples.png") as image:
        assert image.size == (4 * 58 + 2, 58 + 2)  # classes 0–3 in one row (4 < K = 10) of 56 px cells


def test_labels_are_dropped_with_the_training_generator_before_each_step(tiny, tmp_path, monkeypatch):
    """drop_labels(labels, p_uncond, K, generator) draws first; training_step gets what it returned."""
    events = []
    real_drop, real_step = reference_train.drop_labels, reference_train.training_step

    def drop(labels, p_uncond, num_classes, generator):
        events.append(("drop", labels.clone(), p_uncond, num_classes, generator.get_state()))
        dropped = real_drop(labels, p_uncond, num_classes, generator)
        events.append(("dropped", dropped))
        return dropped

    def step(model, x0, schedule, *, generator, class_labels, **options):
        events.append(("step", class_labels, generator.get_state()))
        return real_step(model, x0, schedule, generator=generator, class_labels=class_labels, **options)

    monkeypatch.setattr(reference_train, "drop_labels", drop)
    monkeypatch.setattr(reference_train, "training_step", step)
    out = tmp_path / "dropped"
    assert main(tiny(out, "--class-conditional", "--p-uncond", "0.5", "--sample-every", "0", steps=2)) == 0
    assert [event[0] for event in events] == ["drop", "dropped", "step"] * 2
    (_, labels, p_uncond, num_classes, before), (_, dropped), (_, given, after) = events[:3]
    assert labels.dtype == torch.int64 and labels.shape == (8,) and 0 <= labels.min() and labels.max() < 10
    assert (p_uncond, num_classes) == (0.5, 10)
    assert torch.equal(given, dropped) and ((dropped == labels) | (dropped == 10)).all()
    expected = torch.Generator().set_state(before)
    torch.rand((8,), generator=expected)  # drop_labels' one draw
    assert torch.equal(after, expected.get_state()), "drop_labels must draw once (B values) from the training generator"


def test_interrupt_then_resume_is_bit_identical_when_class_conditional(class_run_dir, tiny, tmp_path, monkeypatch,
                                                                       capsys):
    out = tmp_path / "class_resumed"
    resumed = interrupt_then_resume(out, tiny(out, "--class-conditional"), monkeypatch, capsys)
    assert resumed["config"]["class_conditional"] is True and resumed["config"]["p_uncond"] == 0.1
    assert_same_run(class_run_dir, out)


@pytest.mark.parametrize("change", [["--class-conditional"], ["--p-uncond", "0.2"]], ids=["conditional", "p-uncond"])
def test_resume_keeps_the_conditioning(run_dir, capsys, change):
    with pytest.raises(SystemExit) as stopped:
        main(["--resume", "--out", str(run_dir), *change])
    assert stopped.value.code == 2
    assert f"argument {change[0]}" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Image-conditioned restoration: --task (Phase 5)
# ---------------------------------------------------------------------------


def test_a_task_run_saves_an_image_conditioned_unet(task_run_dir):
    state = load(task_run_dir / "last.pt")
    assert state["step"] == 4
    assert state["model_config"]["cond_channels"] == 1  # the digits' one channel, concatenated to x_t
    assert state["model"]["stem.weight"].shape == (8, 2, 3, 3)  # in_channels + cond_channels = 2 inputs
    assert state["config"]["task"] == "denoise" and state["config"]["class_conditional"] is False
    assert state["model"].keys() == state["ema"].keys(), "the EMA must be the U-Net's, not a wrapper's"
    assert not any(name.startswith("model.") for name in state["model"]), "the U-Net itself is saved, not a wrapper"
    config = json.loads((task_run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["task"] == "denoise" and config["model"]["cond_channels"] == 1


def test_the_default_run_has_no_task(run_dir):
    state = load(run_dir / "last.pt")
    assert state["config"]["task"] is None and not state["model_config"]["cond_channels"]


def cell(picture: torch.Tensor, row: int, column: int, side: int = 56) -> torch.Tensor:
    """The (C, side, side) cell at (row, column) of a grid picture (2 px gaps)."""
    top, left = 2 + row * (side + 2), 2 + column * (side + 2)
    return picture[:, top : top + side, left : left + side]


def test_task_grids_show_degraded_restored_and_original_rows(task_run_dir, data_dir):
    """samples.png: the first 4 training images, degraded (row 1), restored (row 2) and as they are (row 3)."""
    with Image.open(task_run_dir / "samples.png") as image:
        assert image.size == (4 * 58 + 2, 3 * 58 + 2)
        picture = torch.from_numpy(np.array(image.convert("L"), dtype=np.float32))[None] / 255  # (1, H, W)
    dataset = make_dataset("digits", split="train", data_dir=data_dir, num_images=64, seed=0)
    for column in range(4):
        original = F.interpolate(dataset[column][0][None], scale_factor=2, mode="nearest")[0]  # (1, 56, 56)
        assert (cell(picture, 2, column) - original).abs().max() <= 1 / 255 + 1e-6, f"original {column}"
        assert (cell(picture, 0, column) - original).abs().mean() > 0.05, "row 1 must show the degraded image"
    with Image.open(task_run_dir / "samples" / "step_000002.png") as early:
        assert early.size == (4 * 58 + 2, 3 * 58 + 2)


def test_triplet_rows_put_each_image_above_its_other_versions():
    first, second, third = (torch.full((10, 1, 2, 2), value) for value in (-1.0, 0.5, 1.0))
    first[:, 0, 0, 0] = torch.arange(10) / 10
    images, per_row = triplet_rows(first, second, third, columns=8)
    assert per_row == 8 and images.shape == (2 * 3 * 8, 1, 2, 2)  # two groups of three rows
    assert torch.equal(images[:8], first[:8]) and torch.equal(images[8:16], second[:8])
    assert torch.equal(images[16:24], third[:8]) and torch.equal(images[24:26], first[8:])
    assert torch.equal(images[26:32], torch.zeros(6, 1, 2, 2)), "a partial group is padded with grey (0)"
    assert triplet_rows(first[:3], second[:3], third[:3])[1] == 3


def test_image_conditioned_passes_the_condition_and_repeats_it_for_a_doubled_batch():
    calls = []

    class Recorder(torch.nn.Module):
        num_classes = 10

        def forward(self, x, t, class_labels=None, cond=None):
            calls.append((class_labels, cond))
            return x

    cond = torch.randn(2, 1, 4, 4)
    wrapped = ImageConditioned(Recorder(), cond)
    assert wrapped.num_classes == 10
    wrapped(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64))
    assert calls[-1][0] is None and torch.equal(calls[-1][1], cond)
    wrapped(torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.int64), torch.arange(4))  # a guided batch
    assert torch.equal(calls[-1][1], torch.cat([cond, cond]))
    with pytest.raises(RuntimeError, match="cond"):
        ImageConditioned(Recorder())(torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.int64))


def test_the_degradation_draws_from_the_training_generator_before_each_step(tiny, tmp_path, monkeypatch):
    """condition_pair(images, task, generator) draws first (denoise: one randn like the batch); training_step
    then gets its x0, the same generator, and a model that hands its cond to the U-Net."""
    events = []
    real_pair, real_step = reference_degradations.condition_pair, reference_train.training_step

    def pair(images, task, generator):
        events.append(("pair", images.clone(), task, generator, generator.get_state()))
        x0, cond = real_pair(images, task, generator)
        events.append(("paired", x0, cond))
        return x0, cond

    def step(model, x0, schedule, *, generator, **options):
        events.append(("step", model, x0, model.cond, generator, generator.get_state()))
        return real_step(model, x0, schedule, generator=generator, **options)

    monkeypatch.setattr(reference_degradations, "condition_pair", pair)
    monkeypatch.setattr(reference_train, "training_step", step)
    assert main(tiny(tmp_path / "drawn", "--task", "denoise", "--sample-every", "0", steps=2)) == 0
    # First the sample grids' fixed inputs (4 images, their own generator), then one pair per step.
    assert [event[0] for event in events] == ["pair", "paired"] + ["pair", "paired", "step"] * 2
    grid_images, grid_generator = events[0][1], events[0][3]
    assert grid_images.shape == (4, 1, 28, 28)
    (_, images, task, generator, before), (_, x0, cond), (_, model, given_x0, given_cond, step_generator, after) = \
        events[2:5]
    assert task == "denoise" and images.shape == (8, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert generator is step_generator and generator is not grid_generator
    assert torch.equal(given_x0, x0) and torch.equal(given_cond, cond)
    assert isinstance(model, ImageConditioned)
    expected = torch.Generator().set_state(before)
    torch.randn((8, 1, 28, 28), generator=expected)  # add_gaussian_noise's one draw
    assert torch.equal(after, expected.get_state()), "the degradation must draw once, before training_step"


def test_interrupt_then_resume_is_bit_identical_with_a_task(task_run_dir, tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "task_resumed"
    resumed = interrupt_then_resume(out, tiny(out, "--task", "denoise"), monkeypatch, capsys)
    assert resumed["config"]["task"] == "denoise"
    assert_same_run(task_run_dir, out)


@pytest.mark.parametrize("which, change", [("task", "deblur"), ("plain", "denoise")], ids=["changed", "added"])
def test_resume_keeps_the_task(task_run_dir, run_dir, capsys, which, change):
    out = task_run_dir if which == "task" else run_dir
    with pytest.raises(SystemExit) as stopped:
        main(["--resume", "--out", str(out), "--task", change])
    assert stopped.value.code == 2
    assert "argument --task" in capsys.readouterr().err


def test_a_task_with_channels_last_trains(tiny, tmp_path):
    out = tmp_path / "channels_last"
    assert main(tiny(out, "--task", "superres", "--channels-last", "--sample-every", "0", steps=1)) == 0
    assert load(out / "last.pt")["model_config"]["cond_channels"] == 1 and (out / "samples.png").is_file()


def test_task_and_class_conditional_are_not_combined(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(tiny(tmp_path / "both", "--task", "deblur", "--class-conditional"))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "argument --task" in err and "--class-conditional" in err
    assert not (tmp_path / "both").exists()


def test_a_stub_condition_pair_is_not_attempted_yet(tiny, tmp_path, monkeypatch, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError("Phase 5.5 · condition_pair — see IMPLEMENTATION_GUIDE.md §5.5")

    monkeypatch.setattr(reference_degradations, "condition_pair", stub)
    out = tmp_path / "stub"
    assert main(tiny(out, "--task", "jpeg", steps=1)) == 1
    err = capsys.readouterr().err
    assert "train.py: error: not attempted yet: Phase 5.5 · condition_pair" in err
    assert "--task" in err and "Traceback" not in err
    assert not out.exists(), "the stub is found before the run writes anything"


def write_pictures(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (16, 16), (40 * index, 90, 200)).save(folder / f"{index}.png")


def test_class_conditional_needs_labels(tmp_path, capsys):
    """A folder of images without class subfolders has no labels: --class-conditional is refused."""
    write_pictures(tmp_path / "flat", 4)
    with pytest.raises(SystemExit) as stopped:
        main([*TINY, "--dataset", "folder", "--data-dir", str(tmp_path / "flat"), "--num-images", "4",
              "--class-conditional", "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    assert "argument --class-conditional" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_class_subfolders_are_the_classes_of_a_folder(tmp_path):
    for name in ("cats", "dogs", "owls"):
        write_pictures(tmp_path / "pictures" / name, 3)
    out = tmp_path / "run"
    assert main([*TINY, "--dataset", "folder", "--data-dir", str(tmp_path / "pictures"), "--image-size", "16",
                 "--num-images", "8", "--class-conditional", "--steps", "1", "--sample-every", "0",
                 "--out", str(out)]) == 0
    assert load(out / "last.pt")["model_config"]["num_classes"] == 3


def test_a_stub_drop_labels_is_not_attempted_yet(tiny, tmp_path, monkeypatch, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError("Phase 5.2 · drop_labels — see IMPLEMENTATION_GUIDE.md §5.2")

    monkeypatch.setattr(reference_train, "drop_labels", stub)
    assert main(tiny(tmp_path / "stub", "--class-conditional", "--sample-every", "0", steps=1)) == 1
    err = capsys.readouterr().err
    assert "train.py: error: not attempted yet: Phase 5.2 · drop_labels" in err  # after the progress bar
    assert "--class-conditional" in err and "Traceback" not in err


def test_conditioning_flags_without_class_conditional_are_noted(tiny, tmp_path, capsys):
    assert main(tiny(tmp_path / "noted", "--p-uncond", "0.3", "--sample-every", "0", steps=1)) == 0
    assert "--p-uncond is used with --class-conditional only" in capsys.readouterr().out


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.pt"]


# ---------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, named",
    [
        (["--dataset", "no-such-data"], "--dataset"),
        (["--steps", "0"], "--steps"),
        (["--lr", "-1"], "--lr"),
        (["--prediction", "banana"], "--prediction"),
        (["--steps", "10", "--epochs", "2"], "--epochs"),
        (["--channel-mults", "1,x"], "--channel-mults"),
        (["--ema-decay", "1"], "--ema-decay"),
        (["--impl", "mine"], "--impl"),
        (["--class-conditional", "--p-uncond", "1.5"], "--p-uncond"),
        (["--p-uncond", "-0.1"], "--p-uncond"),
        (["--sample-guidance", "-1"], "--sample-guidance"),
        (["--task", "sharpen"], "--task"),
        (["--threads", "0"], "--threads"),
    ],
    ids=["dataset", "steps-0", "lr-negative", "prediction", "steps-and-epochs", "channel-mults", "ema-decay", "impl",
         "p-uncond-above-1", "p-uncond-negative", "sample-guidance", "task", "threads-0"],
)
def test_bad_flags_exit_2_naming_the_flag(bad, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*bad, "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_image_size_the_unet_cannot_halve_gets_its_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*TINY, "--image-size", "30", "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "argument --image-size" in err and "cannot be halved" in err


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    for name in ("--dataset", "--data-dir", "--download", "--image-size", "--timesteps", "--schedule",
                 "--prediction", "--loss", "--snr-gamma", "--steps", "--epochs", "--batch-size", "--lr",
                 "--warmup-steps", "--ema-decay", "--grad-accum", "--amp", "--device", "--seed", "--out",
                 "--resume", "--sample-every", "--sample-steps", "--checkpoint-every", "--num-images",
                 "--base-channels", "--channel-mults", "--num-res-blocks", "--attention-levels", "--dropout",
                 "--impl", "--time-limit", "--channels-last", "--compile", "--class-conditional", "--p-uncond",
                 "--sample-guidance", "--task", "deblur", "superres", "--threads"):
        assert name in text, f"--help does not mention {name}"


def test_python_train_py_help_runs_from_the_repository_root():
    done = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--resume" in done.stdout and "--time-limit" in done.stdout
