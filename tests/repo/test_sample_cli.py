"""Tests of ``python sample.py``: what it writes, reproducibility, its errors, and learner stubs.

Module fixtures train three tiny models with train.py (64 digits, 2 steps, a U-Net of base
width 8, T = 100): one unconditional, one --class-conditional and one --task deblur (Phase 5);
every sampling run here is in-process through ``main(argv)`` with the reference
(``--impl solutions``), a few images and a few steps.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import solutions.degradations as reference_degradations
import solutions.diffusion as reference_diffusion
import solutions.noise_schedule as reference_noise_schedule
import solutions.unet as reference_unet
from provided.image_data import make_dataset
from provided.sampling import MASK_PRESETS, SAMPLES_FORMAT, main
from provided.training import main as train_main
from tools.make_stubs import SOLUTIONS_DIR, learner_source

REPO_ROOT = Path(__file__).resolve().parents[2]
T = 100
TINY_TRAIN = [
    "--impl", "solutions", "--dataset", "digits", "--num-images", "64", "--batch-size", "8",
    "--base-channels", "8", "--sample-every", "0", "--sample-steps", "2", "--num-samples", "4",
    "--timesteps", str(T), "--warmup-steps", "2", "--steps", "2",
]
#: 5 images in batches of 2 (2 + 2 + 1), 4 DDIM steps.
FIRST_RUN = ["--num-samples", "5", "--batch-size", "2", "--steps", "4"]
RUN_NUMBERS = itertools.count()


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a finished 2-step training run (its EMA and raw weights differ)."""
    root = tmp_path_factory.mktemp("sample_cli")
    out = root / "run"
    assert train_main([*TINY_TRAIN, "--data-dir", str(root / "data"), "--out", str(out)]) == 0
    return out / "last.pt"


@pytest.fixture(scope="module")
def class_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a 2-step class-conditional run (Phase 5) on the 10 classes of the digits."""
    root = tmp_path_factory.mktemp("sample_cli_classes")
    out = root / "run"
    assert train_main([*TINY_TRAIN, "--class-conditional", "--data-dir", str(root / "data"), "--out", str(out)]) == 0
    return out / "last.pt"


@pytest.fixture(scope="module")
def task_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a 2-step --task deblur run (Phase 5: an image-conditioned U-Net)."""
    root = tmp_path_factory.mktemp("sample_cli_task")
    out = root / "run"
    assert train_main([*TINY_TRAIN, "--task", "deblur", "--data-dir", str(root / "data"), "--out", str(out)]) == 0
    return out / "last.pt"


def sample(checkpoint: Path, *extra: str) -> int:
    """``python sample.py --checkpoint CHECKPOINT --impl solutions EXTRA…``; its exit status."""
    return main(["--checkpoint", str(checkpoint), "--impl", "solutions", *extra])


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def saved_tensor(checkpoint: Path, tmp_path: Path, *extra: str) -> dict:
    """The --save-tensor dict of one run with ``extra`` flags."""
    saved = tmp_path / f"images_{next(RUN_NUMBERS)}.pt"
    assert sample(checkpoint, "--out", str(tmp_path / "grid.png"), "--save-tensor", str(saved), *extra) == 0
    return load(saved)


def images_of(checkpoint: Path, tmp_path: Path, *extra: str) -> torch.Tensor:
    """The images of one run with ``extra`` flags (through --save-tensor)."""
    return saved_tensor(checkpoint, tmp_path, *extra)["images"]


@pytest.fixture(scope="module")
def first_run(checkpoint, tmp_path_factory):
    """The folder of one run that wrote all three outputs (grid, GIF, tensor) with FIRST_RUN."""
    out = tmp_path_factory.mktemp("first_run")
    status = sample(
        checkpoint, *FIRST_RUN, "--out", str(out / "grid.png"), "--gif", str(out / "trajectory.gif"),
        "--save-tensor", str(out / "samples.pt"),
    )
    assert status == 0
    return out


# ---------------------------------------------------------------------------
# What a run writes
# ---------------------------------------------------------------------------


def grid_size(count: int, side: int = 28) -> tuple[int, int]:
    """(width, height) of utils.image_grid for ``count`` images: ⌈√count⌉ per row, 2 px gaps, ×2 enlarged."""
    per_row = math.ceil(math.sqrt(count))
    rows = math.ceil(count / per_row)
    cell = side * max(1, 64 // side) + 2
    return per_row * cell + 2, rows * cell + 2


def test_a_run_writes_its_files_and_no_temporary_ones(first_run):
    for name in ("grid.png", "trajectory.gif", "samples.pt"):
        assert (first_run / name).is_file(), f"{name} was not written"
    assert not [path.name for path in first_run.iterdir() if path.name.startswith(".")], "a temporary file is left"


def test_the_grid_is_a_png_with_one_cell_per_image(first_run):
    with Image.open(first_run / "grid.png") as image:
        assert image.format == "PNG"
        assert image.size == grid_size(5) == (176, 118)  # 3 + 2 images of 56 px


def test_the_gif_has_one_frame_per_visited_step_and_one_for_the_samples(first_run):
    with Image.open(first_run / "trajectory.gif") as image:
        assert image.format == "GIF"
        assert image.n_frames == 4 + 1
        # The first batch (2 images): its x_t grid, a gap of 8 px, its x̂_0 grid.
        width, height = grid_size(2)
        assert image.size == (2 * width + 8, height)


def test_gif_frames_spreads_fewer_frames_over_the_steps(checkpoint, tmp_path):
    gif = tmp_path / "few.gif"
    assert sample(checkpoint, "--num-samples", "1", "--steps", "10", "--gif", str(gif), "--gif-frames", "4",
                  "--out", str(tmp_path / "grid.png")) == 0
    with Image.open(gif) as image:
        assert image.n_frames == 4


def test_saved_tensor_holds_the_images_and_how_they_were_made(first_run, checkpoint):
    saved = load(first_run / "samples.pt")
    images = saved["images"]
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0
    assert saved["format"] == SAMPLES_FORMAT and saved["version"] == 1
    assert saved["sampling"] == {
        "sampler": "ddim", "num_steps": 4, "eta": 0.0, "variance": "small", "spacing": "trailing",
        "prediction": "v", "clip_x0": True,
    }
    assert (saved["seed"], saved["batch_size"], saved["weights"]) == (0, 2, "ema")
    assert saved["checkpoint"] == str(checkpoint) and saved["train_step"] == 2
    assert (saved["dataset"], saved["image_size"], saved["num_timesteps"]) == ("digits", 28, T)
    assert saved["model_config"]["base_channels"] == 8 and saved["train_config"]["timesteps"] == T
    assert saved["impl"] == "solutions" and saved["seconds"] > 0
    assert saved["labels"] is None and saved["guidance_scale"] is None  # an unconditional model


def test_the_summary_names_the_files_and_the_speed(checkpoint, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert sample(checkpoint, "--num-samples", "2", "--steps", "3", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "images/s" in printed
    assert "ddim, 3 steps (trailing)" in printed and "EMA" in printed


def test_without_out_the_grid_goes_beside_the_checkpoint_and_a_run_folder_is_accepted(checkpoint):
    expected = checkpoint.parent / "samples_ddim_3steps.png"
    assert sample(checkpoint.parent, "--num-samples", "1", "--steps", "3") == 0
    assert expected.is_file()
    assert (checkpoint.parent / "samples.png").is_file(), "train.py's samples.png must stay"


# ---------------------------------------------------------------------------
# Reproducibility and the sampling flags
# ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_images_and_another_seed_others(first_run, checkpoint, tmp_path):
    first = load(first_run / "samples.pt")["images"]
    again = images_of(checkpoint, tmp_path, *FIRST_RUN)
    assert torch.equal(first, again)
    other = images_of(checkpoint, tmp_path, *FIRST_RUN, "--seed", "1")
    assert not torch.allclose(first, other)


def test_batches_draw_from_one_generator_in_order(first_run, checkpoint, tmp_path):
    """The first batch does not depend on how many batches follow it."""
    first = load(first_run / "samples.pt")["images"]
    alone = images_of(checkpoint, tmp_path, "--num-samples", "2", "--batch-size", "2", "--steps", "4")
    assert torch.equal(first[:2], alone)
    assert not torch.allclose(first[:2], first[2:4]), "the second batch must get new noise"


@pytest.mark.parametrize("sampler, steps", [("ddim", 50), ("ddpm", T)])
def test_default_steps(checkpoint, tmp_path, sampler, steps):
    saved = tmp_path / "samples.pt"
    assert sample(checkpoint, "--sampler", sampler, "--num-samples", "1", "--out", str(tmp_path / "grid.png"),
                  "--save-tensor", str(saved)) == 0
    assert load(saved)["sampling"]["num_steps"] == steps


def test_ddpm_and_ddim_both_sample(first_run, checkpoint, tmp_path, capsys):
    ddim = load(first_run / "samples.pt")["images"]
    ddpm = images_of(checkpoint, tmp_path, *FIRST_RUN, "--sampler", "ddpm", "--variance", "large", "--eta", "0.5")
    assert ddpm.shape == ddim.shape and torch.isfinite(ddpm).all()
    assert not torch.allclose(ddpm, ddim)
    assert "--eta is used by --sampler ddim only" in capsys.readouterr().out


def test_eta_and_no_clip_change_ddim(first_run, checkpoint, tmp_path):
    deterministic = load(first_run / "samples.pt")["images"]
    assert not torch.allclose(deterministic, images_of(checkpoint, tmp_path, *FIRST_RUN, "--eta", "1"))
    unclipped = images_of(checkpoint, tmp_path, *FIRST_RUN, "--no-clip")
    assert unclipped.min() >= -1 and unclipped.max() <= 1  # the saved images are clamped
    assert not torch.allclose(deterministic, unclipped)


def test_no_ema_samples_with_the_raw_weights(first_run, checkpoint, tmp_path, monkeypatch):
    loaded = []
    real_load = reference_unet.UNet.load_state_dict

    def spy(model, state, *args, **kwargs):
        loaded.append(state)
        return real_load(model, state, *args, **kwargs)

    monkeypatch.setattr(reference_unet.UNet, "load_state_dict", spy)
    raw = images_of(checkpoint, tmp_path, *FIRST_RUN, "--no-ema")
    weights = load(checkpoint)
    assert len(loaded) == 1
    for name, tensor in weights["model"].items():
        assert torch.equal(loaded[0][name], tensor), f"{name} is not the raw weight"
    assert not torch.allclose(raw, load(first_run / "samples.pt")["images"])


def test_samples_with_nan_are_an_error_and_nothing_is_written(checkpoint, tmp_path, monkeypatch, capsys):
    def diverged(model, schedule, shape, **options):
        return torch.full(shape, torch.nan)

    monkeypatch.setattr(reference_diffusion, "sample_loop", diverged)
    assert sample(checkpoint, "--num-samples", "2", "--out", str(tmp_path / "grid.png")) == 1
    assert "NaN" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------
# Class conditioning and classifier-free guidance (Phase 5)
# ---------------------------------------------------------------------------

#: 4 images, 3 DDIM steps: enough to see the labels and the guidance.
FEW = ["--num-samples", "4", "--steps", "3"]


@pytest.mark.parametrize(
    "class_id, labels",
    [(None, [0, 1, 2, 3]), ("all", [0, 1, 2, 3]), ("7", [7, 7, 7, 7]), ("3,9,5", [3, 9, 5, 3])],
    ids=["default", "all", "one", "list"],
)
def test_the_labels_follow_class_id(class_checkpoint, tmp_path, class_id, labels):
    extra = [] if class_id is None else ["--class-id", class_id]
    saved = saved_tensor(class_checkpoint, tmp_path, *FEW, *extra)
    assert saved["labels"].dtype == torch.int64 and saved["labels"].tolist() == labels
    assert saved["guidance_scale"] == 3.0
    assert saved["images"].shape == (4, 1, 28, 28)


def test_the_guidance_scale_changes_the_images(class_checkpoint, tmp_path):
    plain = saved_tensor(class_checkpoint, tmp_path, *FEW, "--guidance-scale", "1")
    guided = saved_tensor(class_checkpoint, tmp_path, *FEW, "--guidance-scale", "3")
    assert plain["guidance_scale"] == 1.0 and guided["guidance_scale"] == 3.0
    assert not torch.allclose(plain["images"], guided["images"])
    assert not torch.allclose(plain["images"], images_of(class_checkpoint, tmp_path, *FEW, "--class-id", "5"))


def test_the_guidance_grid_has_a_row_per_class_and_a_column_per_scale(class_checkpoint, tmp_path, capsys):
    out = class_checkpoint.parent / "guidance_grid_ddim_3steps_w0-1-3-5.png"  # the default name, beside it
    saved = tmp_path / "grid.pt"
    assert sample(class_checkpoint, "--steps", "3", "--class-id", "1,2,4", "--guidance-grid", "0,1,3,5",
                  "--save-tensor", str(saved)) == 0
    assert "w = 0, 1, 3, 5" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.size == (4 * 58 + 2, 3 * 58 + 2)  # 4 columns, 3 rows of 56 px cells
    grid = load(saved)
    assert grid["labels"].tolist() == [1] * 4 + [2] * 4 + [4] * 4
    assert grid["guidance_scale"] == [0.0, 1.0, 3.0, 5.0]
    # Column w is the run with --guidance-scale w: every row starts from the same noise in every column.
    cells = grid["images"].view(3, 4, 1, 28, 28)
    for column, scale in enumerate(["0", "1", "3"]):
        alone = images_of(class_checkpoint, tmp_path, "--num-samples", "3", "--steps", "3", "--class-id", "1,2,4",
                          "--guidance-scale", scale)
        assert torch.equal(cells[:, column], alone), f"column w = {scale} is not the plain run with that scale"
    assert not torch.allclose(cells[:, 1], cells[:, 2])


@pytest.mark.parametrize(
    "bad, named",
    [
        (["--class-id", "10"], "--class-id"),
        (["--class-id", "-1"], "--class-id"),
        (["--class-id", "three"], "--class-id"),
        (["--guidance-scale", "-1"], "--guidance-scale"),
        (["--guidance-grid", "1,x"], "--guidance-grid"),
        (["--guidance-grid", "1,3", "--guidance-scale", "2"], "--guidance-scale"),
        (["--guidance-grid", "1,3", "--gif", "trajectory.gif"], "--gif"),
    ],
    ids=["class-id-10", "class-id-negative", "class-id-word", "scale-negative", "grid-word", "grid-and-scale",
         "grid-and-gif"],
)
def test_bad_conditioning_flags_exit_2_naming_the_flag(class_checkpoint, tmp_path, capsys, bad, named):
    with pytest.raises(SystemExit) as stopped:
        sample(class_checkpoint, "--out", str(tmp_path / "grid.png"), *bad)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {named}" in err
    if bad[1] == "10":
        assert "10 classes, 0 to 9" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "flag, value", [("--class-id", "3"), ("--guidance-scale", "2"), ("--guidance-grid", "0,1")]
)
def test_conditioning_flags_on_an_unconditional_checkpoint_are_refused(checkpoint, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as stopped:
        sample(checkpoint, "--out", str(tmp_path / "grid.png"), flag, value)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "unconditional" in err
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------
# Restoring test images with a --task checkpoint (Phase 5)
# ---------------------------------------------------------------------------


def dataset_test_images(checkpoint: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` test digits of the checkpoint's run, in [-1, 1], and their labels."""
    config = load(checkpoint)["config"]
    dataset = make_dataset("digits", split="test", data_dir=config["data_dir"], num_images=count, seed=config["seed"])
    return torch.stack([dataset[i][0] for i in range(count)]) * 2 - 1, torch.tensor([dataset[i][1] for i in
                                                                                     range(count)])


def printed_number(text: str, before: str) -> float:
    """The number printed right after ``before`` in ``text``."""
    return float(text.split(before, 1)[1].split()[0])


@pytest.fixture(scope="module")
def restored(task_checkpoint, tmp_path_factory):
    """One restoring run of 3 test images (3 DDIM steps): its folder (grid.png, restored.pt) and printout."""
    out = tmp_path_factory.mktemp("restored")
    with contextlib.redirect_stdout(io.StringIO()) as printed:  # capsys is for single tests only
        status = sample(task_checkpoint, "--from-dataset", "3", "--steps", "3", "--out", str(out / "grid.png"),
                        "--save-tensor", str(out / "restored.pt"))
    assert status == 0
    return out, printed.getvalue()


def test_restoring_writes_degraded_restored_original_rows(restored):
    out, _ = restored
    with Image.open(out / "grid.png") as image:
        assert image.format == "PNG" and image.size == (3 * 58 + 2, 3 * 58 + 2)  # 3 images, 3 rows of 56 px cells


def test_restoring_saves_the_three_versions_and_the_metrics(restored, task_checkpoint):
    out, _ = restored
    saved = load(out / "restored.pt")
    for key in ("images", "restored", "degraded", "original", "psnr", "ssim", "task"):
        assert key in saved, key
    assert saved["task"] == "deblur" and saved["labels"] is None
    original, _ = dataset_test_images(task_checkpoint, 3)
    torch.testing.assert_close(saved["original"], original)  # the test split, in [-1, 1]
    torch.testing.assert_close(saved["degraded"], reference_degradations.degrade(original, "deblur"))
    assert torch.equal(saved["images"], saved["restored"]) and saved["restored"].shape == (3, 1, 28, 28)
    assert saved["restored"].min() >= -1 and saved["restored"].max() <= 1
    for name, metric in (("psnr", reference_degradations.psnr), ("ssim", reference_degradations.ssim)):
        torch.testing.assert_close(saved[name]["restored"], metric(saved["restored"], original))
        torch.testing.assert_close(saved[name]["degraded"], metric(saved["degraded"], original))


def test_restoring_prints_psnr_and_ssim_of_restored_and_degraded(restored):
    out, printed = restored
    saved = load(out / "restored.pt")
    restored_line = next(line for line in printed.splitlines() if line.startswith("restored vs original"))
    degraded_line = next(line for line in printed.splitlines() if line.startswith("degraded vs original"))
    for line, kind in ((restored_line, "restored"), (degraded_line, "degraded")):
        assert printed_number(line, "PSNR") == pytest.approx(saved["psnr"][kind].mean().item(), abs=0.006)
        assert printed_number(line, "SSIM") == pytest.approx(saved["ssim"][kind].mean().item(), abs=0.0006)
    assert "means over 3 images" in printed and "deblur" in printed and str(out / "grid.png") in printed


def test_restoring_in_batches_and_a_larger_grid(restored, task_checkpoint, tmp_path):
    """10 images in batches of 4: two groups of 8 and 2 columns, three rows each; the first batch is the same."""
    out, _ = restored
    saved = saved_tensor(task_checkpoint, tmp_path, "--from-dataset", "10", "--batch-size", "4", "--steps", "3",
                         "--task", "deblur")
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (8 * 58 + 2, 6 * 58 + 2)
    first = saved_tensor(task_checkpoint, tmp_path, "--from-dataset", "4", "--batch-size", "4", "--steps", "3")
    assert torch.equal(saved["restored"][:4], first["restored"]), "the first batch must not depend on the others"
    assert torch.equal(saved["original"][:3], load(out / "restored.pt")["original"])


def test_restoring_without_out_writes_beside_the_checkpoint(task_checkpoint):
    assert sample(task_checkpoint, "--from-dataset", "1", "--steps", "2") == 0
    assert (task_checkpoint.parent / "restored_deblur_ddim_2steps.png").is_file()


@pytest.mark.parametrize(
    "which, bad, named",
    [
        ("task", ["--task", "denoise", "--from-dataset", "2"], "--task"),
        ("plain", ["--task", "deblur", "--from-dataset", "2"], "--task"),
        ("task", [], "--from-dataset"),
        ("task", ["--inpaint", "--from-dataset", "2"], "--inpaint"),
        ("task", ["--task", "deblur", "--inpaint", "--from-dataset", "2"], "--inpaint"),
        ("task", ["--task", "sharpen", "--from-dataset", "2"], "--task"),
        ("task", ["--from-dataset", "0"], "--from-dataset"),
        ("task", ["--class-id", "3", "--from-dataset", "2"], "--class-id"),
    ],
    ids=["other-task", "unconditional", "no-from-dataset", "inpaint", "inpaint-and-task", "unknown-task",
         "from-dataset-0", "class-id"],
)
def test_bad_task_flags_exit_2_naming_the_flag(task_checkpoint, checkpoint, tmp_path, capsys, which, bad, named):
    with pytest.raises(SystemExit) as stopped:
        sample(task_checkpoint if which == "task" else checkpoint, "--out", str(tmp_path / "grid.png"), *bad)
    assert stopped.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_learner_stub_degradation_is_not_attempted_yet(task_checkpoint, tmp_path, monkeypatch, capsys):
    """Phases 1–4 done (the reference's files stand in), degradations.py's §5.4 still stubs."""
    for name, module in (("noise_schedule", reference_noise_schedule), ("unet", reference_unet),
                         ("diffusion", reference_diffusion)):
        monkeypatch.setitem(sys.modules, name, module)
    use_learner_stub("degradations", tmp_path, monkeypatch)
    status = main(["--checkpoint", str(task_checkpoint), "--impl", "learner", "--from-dataset", "2",
                   "--out", str(tmp_path / "grid.png")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("sample.py: error: not attempted yet: Phase 5.4 · gaussian_blur") and err.count("\n") == 1
    assert "degradations.py" in err and not (tmp_path / "grid.png").exists()


def test_a_dataset_that_is_not_there_is_one_line_saying_how_to_get_it(checkpoint, tmp_path, capsys):
    state = load(checkpoint)
    state["config"].update(dataset="mnist", data_dir=str(tmp_path / "no_mnist"))
    path = tmp_path / "mnist.pt"
    torch.save(state, path)
    assert sample(path, "--inpaint", "--from-dataset", "2", "--out", str(tmp_path / "grid.png")) == 1
    err = capsys.readouterr().err
    assert "'mnist' is not available" in err and "--download" in err and err.count("\n") == 1
    assert not (tmp_path / "grid.png").exists()


# ---------------------------------------------------------------------------
# Inpainting test images with any checkpoint (Phase 5, RePaint)
# ---------------------------------------------------------------------------


def known_pixels_are_kept(saved: dict) -> bool:
    known = saved["mask"].expand_as(saved["original"]) == 1
    return torch.equal(saved["inpainted"][known], saved["original"][known])


@pytest.mark.parametrize("mask", ["left", "center", "strokes", "png"])
def test_inpainting_keeps_the_known_pixels_with_every_mask(checkpoint, tmp_path, capsys, mask):
    if mask == "png":
        picture = Image.new("L", (14, 14), 255)
        for x in range(4, 10):
            for y in range(0, 14):
                picture.putpixel((x, y), 0)  # a black band: hidden
        mask = str(tmp_path / "band.png")
        picture.save(mask)
    saved = saved_tensor(checkpoint, tmp_path, "--inpaint", "--mask", mask, "--from-dataset", "3", "--steps", "3",
                         "--resample", "2")
    printed = capsys.readouterr().out
    assert saved["mask"].shape == (1, 1, 28, 28) and 0 < saved["mask"].mean() < 1
    assert known_pixels_are_kept(saved), "inpaint_loop must give back the known pixels exactly"
    assert not torch.equal(saved["inpainted"], saved["original"])
    assert torch.isinf(saved["psnr"]["known"]).all() and torch.isfinite(saved["psnr"]["whole"]).all()
    assert "PSNR inf dB over the known pixels" in printed and "over the whole images" in printed
    torch.testing.assert_close(saved["masked"], reference_degradations.apply_mask(saved["original"], saved["mask"]))
    torch.testing.assert_close(saved["psnr"]["whole"], reference_degradations.psnr(saved["inpainted"],
                                                                                  saved["original"]))
    assert saved["resample"] == 2 and torch.equal(saved["images"], saved["inpainted"])
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (3 * 58 + 2, 3 * 58 + 2)  # rows: original, masked, inpainted


def test_inpainting_masks_are_the_presets_and_strokes_follow_the_seed(checkpoint, tmp_path):
    assert MASK_PRESETS == reference_degradations.MASK_PRESETS
    saved = saved_tensor(checkpoint, tmp_path, "--inpaint", "--from-dataset", "1", "--steps", "2")
    assert saved["mask_name"] == "center" and torch.equal(saved["mask"], reference_degradations.make_mask("center",
                                                                                                          (28, 28)))
    strokes = saved_tensor(checkpoint, tmp_path, "--inpaint", "--mask", "strokes", "--from-dataset", "1", "--steps",
                           "2", "--seed", "5")
    expected = reference_degradations.make_mask("strokes", (28, 28), generator=torch.Generator().manual_seed(5))
    assert torch.equal(strokes["mask"], expected)
    original, _ = dataset_test_images(checkpoint, 1)
    torch.testing.assert_close(saved["original"], original)


def test_inpainting_with_resampling_changes_the_filled_pixels(checkpoint, tmp_path):
    once = saved_tensor(checkpoint, tmp_path, "--inpaint", "--from-dataset", "2", "--steps", "3")
    again = saved_tensor(checkpoint, tmp_path, "--inpaint", "--from-dataset", "2", "--steps", "3")
    resampled = saved_tensor(checkpoint, tmp_path, "--inpaint", "--from-dataset", "2", "--steps", "3",
                             "--resample", "3")
    assert torch.equal(once["inpainted"], again["inpainted"])
    assert not torch.equal(once["inpainted"], resampled["inpainted"]) and known_pixels_are_kept(resampled)


def test_inpainting_a_class_conditional_model_uses_the_images_labels(class_checkpoint, tmp_path):
    saved = saved_tensor(class_checkpoint, tmp_path, "--inpaint", "--from-dataset", "3", "--steps", "3")
    _, labels = dataset_test_images(class_checkpoint, 3)
    assert saved["labels"].tolist() == labels.tolist() and saved["guidance_scale"] == 3.0
    assert known_pixels_are_kept(saved)
    other = saved_tensor(class_checkpoint, tmp_path, "--inpaint", "--from-dataset", "3", "--steps", "3",
                         "--class-id", "7", "--guidance-scale", "2")
    assert other["labels"].tolist() == [7, 7, 7] and other["guidance_scale"] == 2.0
    assert not torch.equal(saved["inpainted"], other["inpainted"])


def test_inpainting_records_a_gif(checkpoint, tmp_path):
    gif = tmp_path / "inpainting.gif"
    assert sample(checkpoint, "--inpaint", "--from-dataset", "2", "--steps", "3", "--gif", str(gif),
                  "--out", str(tmp_path / "grid.png")) == 0
    with Image.open(gif) as image:
        assert image.n_frames == 3 + 1


@pytest.mark.parametrize(
    "bad, named",
    [
        (["--inpaint", "--mask", "diagonal", "--from-dataset", "2"], "--mask"),
        (["--inpaint", "--mask", "missing/nothing.png", "--from-dataset", "2"], "--mask"),
        (["--inpaint", "--mask", "NOT_A_PICTURE", "--from-dataset", "2"], "--mask"),
        (["--inpaint", "--resample", "0", "--from-dataset", "2"], "--resample"),
        (["--inpaint"], "--from-dataset"),
        (["--from-dataset", "2"], "--from-dataset"),
        (["--mask", "left"], "--mask"),
        (["--resample", "2"], "--resample"),
    ],
    ids=["unknown-preset", "missing-png", "unreadable-png", "resample-0", "no-from-dataset",
         "from-dataset-without-inpaint", "mask-without-inpaint", "resample-without-inpaint"],
)
def test_bad_inpainting_flags_exit_2_naming_the_flag(checkpoint, tmp_path, capsys, bad, named):
    folder = tmp_path / "masks"
    folder.mkdir()
    (folder / "notes.png").write_text("not a picture", encoding="utf-8")
    bad = [str(folder / "notes.png") if value == "NOT_A_PICTURE" else value for value in bad]
    with pytest.raises(SystemExit) as stopped:
        sample(checkpoint, "--out", str(tmp_path / "grid.png"), *bad)
    assert stopped.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["masks"]


def test_the_guidance_grid_is_not_for_inpainting(class_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        sample(class_checkpoint, "--inpaint", "--from-dataset", "2", "--guidance-grid", "1,3",
               "--out", str(tmp_path / "grid.png"))
    assert stopped.value.code == 2
    assert "argument --guidance-grid" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_a_missing_checkpoint_is_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "nothing" / "last.pt"
    assert sample(missing) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "content, says",
    [
        (b"PK\x03\x04 the start of a zip archive, cut short", "cannot read the checkpoint"),
        (b'{"not": "a torch file"}', "not a file that torch.save wrote"),
        ({"weights": torch.zeros(2)}, "is not a train.py checkpoint"),
        ({"format": "diffusion-exercises/train.py checkpoint", "config": {"timesteps": 10}}, "is incomplete"),
    ],
    ids=["cut-short", "not-torch", "not-from-train-py", "incomplete"],
)
def test_an_unusable_checkpoint_is_one_line_naming_it(tmp_path, capsys, content, says):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    assert sample(path, "--out", str(tmp_path / "grid.png")) == 1
    err = capsys.readouterr().err
    assert says in err and str(path) in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "grid.png").exists()


def test_weights_that_do_not_fit_the_unet_are_one_line(checkpoint, tmp_path, capsys):
    state = load(checkpoint)
    state["ema"].pop(next(iter(state["ema"])))
    path = tmp_path / "damaged.pt"
    torch.save(state, path)
    assert sample(path, "--out", str(tmp_path / "grid.png")) == 1
    err = capsys.readouterr().err
    assert "do not fit solutions/unet.py" in err and str(path) in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "bad, named",
    [
        (["--steps", str(T + 1)], "--steps"),
        (["--steps", "0"], "--steps"),
        (["--eta", "1.5"], "--eta"),
        (["--eta", "-0.1"], "--eta"),
        (["--sampler", "euler"], "--sampler"),
        (["--variance", "huge"], "--variance"),
        (["--spacing", "middle"], "--spacing"),
        (["--num-samples", "0"], "--num-samples"),
        (["--batch-size", "0"], "--batch-size"),
        (["--seed", "-1"], "--seed"),
        (["--gif-frames", "1"], "--gif-frames"),
        (["--gif", "trajectory.png"], "--gif"),
        (["--out", "grid.txt"], "--out"),
        (["--device", "tpu"], "--device"),
        (["--impl", "mine"], "--impl"),
        (["--threads", "0"], "--threads"),
    ],
    ids=lambda value: value if isinstance(value, str) else "_".join(value).lstrip("-"),
)
def test_bad_flags_exit_2_naming_the_flag(checkpoint, tmp_path, capsys, bad, named):
    with pytest.raises(SystemExit) as stopped:
        main(["--checkpoint", str(checkpoint), "--impl", "solutions", "--out", str(tmp_path / "grid.png"), *bad])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {named}" in err
    if bad[0] == "--steps" and bad[1] != "0":
        assert f"T = {T}" in err
    assert not list(tmp_path.iterdir())


def test_threads_sets_torchs_threads(checkpoint, tmp_path):
    torch.set_num_threads(2)
    try:
        assert sample(checkpoint, "--threads", "1", "--num-samples", "2", "--steps", "2",
                      "--out", str(tmp_path / "grid.png")) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)  # this module's setting


def test_the_checkpoint_flag_is_required(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--impl", "solutions"])
    assert stopped.value.code == 2
    assert "--checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_gpu_names_device(checkpoint, capsys):
    with pytest.raises(SystemExit) as stopped:
        sample(checkpoint, "--device", "cuda")
    assert stopped.value.code == 2
    assert "argument --device" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# The learner's stubs
# ---------------------------------------------------------------------------


def use_learner_stub(name: str, tmp_path: Path, monkeypatch) -> None:
    """Make the learner module ``name`` the generated stub (as a fresh repository has it), for one test."""
    path = tmp_path / f"{name}.py"
    solution = (SOLUTIONS_DIR / path.name).read_text(encoding="utf-8")
    path.write_text(learner_source(solution, path.name), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # undone after the test
    spec.loader.exec_module(module)


@pytest.mark.parametrize("gif", [False, True], ids=["grid", "gif"])
def test_phase_4_stubs_say_not_attempted_yet(checkpoint, tmp_path, monkeypatch, capsys, gif):
    """Phases 1–3 done (the reference's files stand in for them), diffusion.py's Phase 4 still stubs."""
    monkeypatch.setitem(sys.modules, "noise_schedule", reference_noise_schedule)
    monkeypatch.setitem(sys.modules, "unet", reference_unet)
    use_learner_stub("diffusion", tmp_path, monkeypatch)
    extra = ["--gif", str(tmp_path / "trajectory.gif")] if gif else []
    status = main(["--checkpoint", str(checkpoint), "--impl", "learner", "--out", str(tmp_path / "grid.png"), *extra])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("sample.py: error: not attempted yet: Phase 4.") and err.count("\n") == 1
    assert "--impl solutions" in err and "Traceback" not in err
    assert not (tmp_path / "grid.png").exists()


def test_a_fresh_repository_says_not_attempted_yet(checkpoint, tmp_path, monkeypatch, capsys):
    for name in ("noise_schedule", "unet", "diffusion"):
        use_learner_stub(name, tmp_path, monkeypatch)
    assert main(["--checkpoint", str(checkpoint), "--impl", "learner", "--out", str(tmp_path / "grid.png")]) == 1
    err = capsys.readouterr().err
    assert "not attempted yet: Phase 1." in err and "--impl solutions" in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# Help
# ---------------------------------------------------------------------------


def test_help_lists_every_flag_and_the_tensor_format(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    for name in ("--checkpoint", "--no-ema", "--sampler", "--steps", "--eta", "--variance", "--spacing",
                 "--no-clip", "--num-samples", "--batch-size", "--seed", "--out", "--gif", "--gif-frames",
                 "--save-tensor", "--device", "--impl", "weights_only=True", "--class-id", "--guidance-scale",
                 "--guidance-grid", "labels", "guidance_scale", "--task", "--from-dataset", "--data-dir",
                 "--download", "--inpaint", "--mask", "--resample", "psnr", "ssim", "restored", "inpainted"):
        assert name in text, f"--help does not mention {name}"


def test_python_sample_py_help_runs_from_the_repository_root():
    done = subprocess.run(
        [sys.executable, "sample.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--checkpoint" in done.stdout and "--save-tensor" in done.stdout
