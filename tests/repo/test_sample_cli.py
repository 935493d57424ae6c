"""Tests of ``python sample.py``: what it writes, reproducibility, its errors, and learner stubs.

Module fixtures train two tiny models with train.py (64 digits, 2 steps, a U-Net of base
width 8, T = 100), one unconditional and one --class-conditional (Phase 5); every sampling
run here is in-process through ``main(argv)`` with the reference (``--impl solutions``),
a few images and a few steps.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import solutions.diffusion as reference_diffusion
import solutions.noise_schedule as reference_noise_schedule
import solutions.unet as reference_unet
from solutions.sample import SAMPLES_FORMAT, main
from solutions.trainer import main as train_main
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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module: a U-Net this small runs faster on one, and two threads
    spin against each other (10–100× slower) when the two cores are busy with something else."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
                 "--guidance-grid", "labels", "guidance_scale"):
        assert name in text, f"--help does not mention {name}"


def test_python_sample_py_help_runs_from_the_repository_root():
    done = subprocess.run(
        [sys.executable, "sample.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--checkpoint" in done.stdout and "--save-tensor" in done.stdout
