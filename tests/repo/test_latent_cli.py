"""Tests of Phase 6 in the commands: train.py --train-autoencoder and --autoencoder, sample.py, evaluate.py.

Every run is tiny (64 digits, batches of 8, a few steps) and in-process, with the
reference (--impl solutions): an autoencoder, then a class-conditional U-Net on its
latents. What is checked: what the checkpoints carry (the scale, the autoencoder's
config, weights and file hash), exact resume, that sampling decodes, and the errors.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

import provided.evaluation as evaluation
import provided.sampling as sampling
import solutions.latent as reference_latent
import solutions.train as reference_train
from provided.image_data import make_dataset
from provided.latent_space import LatentSpace
from provided.training import main

from test_train_cli import assert_same_run, interrupt_then_resume, load  # noqa: E402 (tests/repo is on sys.path)

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)

COMMON = ["--impl", "solutions", "--dataset", "digits", "--num-images", "64", "--batch-size", "8",
          "--warmup-steps", "2", "--sample-every", "2", "--num-samples", "8"]
AUTOENCODER = ["--train-autoencoder", "--ae-channels", "8,8,16", "--latent-channels", "2"]
LATENT = ["--class-conditional", "--base-channels", "8", "--channel-mults", "1,2", "--attention-levels", "",
          "--timesteps", "50", "--sample-steps", "2", "--statistics-images", "32"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory, data_dir):
    """A finished 4-step autoencoder run; its folder."""
    out = tmp_path_factory.mktemp("latent") / "ae"
    assert main([*COMMON, *AUTOENCODER, "--data-dir", str(data_dir), "--steps", "4", "--out", str(out)]) == 0
    return out


def latent_arguments(ae_run: Path, data_dir: Path, out: Path, steps: int = 4) -> list[str]:
    return [*COMMON, *LATENT, "--autoencoder", str(ae_run / "last.pt"), "--data-dir", str(data_dir),
            "--steps", str(steps), "--out", str(out)]


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory, ae_run, data_dir):
    """A finished 4-step class-conditional latent diffusion run on ``ae_run``'s autoencoder; its folder."""
    out = tmp_path_factory.mktemp("latent") / "diffusion"
    assert main(latent_arguments(ae_run, data_dir, out)) == 0
    return out


def test_the_autoencoder_run_resizes_the_digits_to_32_and_writes_reconstructions(ae_run):
    state = load(ae_run / "last.pt")
    assert state["config"]["image_size"] == 32, "28 is rounded up to a multiple of 4 · 2^(3 − 1) = 16"
    assert state["model_config"] == {"image_channels": 1, "latent_channels": 2, "channels": (8, 8, 16), "groups": 8}
    for name in ("samples.png", "samples/step_000002.png", "loss.png", "config.json"):
        assert (ae_run / name).is_file(), name


def test_the_latent_checkpoint_carries_the_scale_and_the_autoencoder(ae_run, latent_run):
    state = load(latent_run / "last.pt")
    entry = state["config"]["latent"]
    digest = hashlib.sha256((ae_run / "last.pt").read_bytes()).hexdigest()
    assert entry["autoencoder_sha256"] == digest
    assert entry["autoencoder_config"]["channels"] == [8, 8, 16]
    assert entry["image_shape"] == [1, 32, 32] and entry["latent_shape"] == [2, 8, 8]
    assert state["model_config"]["in_channels"] == 2, "the U-Net works on the latents' channels"
    assert entry["scale"] > 0
    autoencoder = load(ae_run / "last.pt")["ema"]
    assert all(torch.equal(autoencoder[name], state["autoencoder"][name]) for name in autoencoder)


def test_the_scale_gives_the_training_latents_unit_variance(ae_run, latent_run, data_dir):
    """Measured again from scratch: posterior samples of the 32 images the run used, scaled, have std 1."""
    space = LatentSpace.from_checkpoint(load(latent_run / "last.pt"), reference_latent, torch.device("cpu"), "run")
    dataset = make_dataset("digits", image_size=32, data_dir=data_dir, num_images=64)
    images = torch.stack([dataset[i][0] for i in range(32)]) * 2 - 1
    generator = torch.Generator().manual_seed(0)  # the run's --seed: the same posterior draws
    with torch.no_grad():
        mean, logvar = space.autoencoder.encode(images)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator)
    u = (z - space.shift) * space.scale
    assert abs(u.std().item() - 1) < 1e-4 and abs(u.mean().item()) < 1e-4


def test_interrupt_then_resume_is_bit_identical_for_latent_diffusion(ae_run, latent_run, data_dir, tmp_path,
                                                                      monkeypatch, capsys):
    out = tmp_path / "resumed"
    assert interrupt_then_resume(out, latent_arguments(ae_run, data_dir, out), monkeypatch, capsys)["step"] == 4
    assert_same_run(latent_run, out)
    assert load(out / "last.pt")["config"]["latent"] == load(latent_run / "last.pt")["config"]["latent"]


def test_interrupt_then_resume_is_bit_identical_for_the_autoencoder(ae_run, data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "resumed"
    arguments = [*COMMON, *AUTOENCODER, "--data-dir", str(data_dir), "--steps", "4", "--out", str(out)]
    assert interrupt_then_resume(out, arguments, monkeypatch, capsys)["step"] == 4
    assert_same_run(ae_run, out)


def test_the_autoencoder_is_frozen_and_untouched_by_diffusion_training(ae_run, latent_run):
    before, after = load(ae_run / "last.pt")["ema"], load(latent_run / "last.pt")["autoencoder"]
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_training_step_gets_scaled_latents_not_images(ae_run, data_dir, tmp_path, monkeypatch):
    """train.py --autoencoder hands training_step the batch's scaled latents (B, 2, 8, 8), of about unit std."""
    seen = []
    real_step = reference_train.training_step

    def recording_step(model, x0, schedule, **kwargs):
        seen.append(x0.clone())
        return real_step(model, x0, schedule, **kwargs)

    monkeypatch.setattr(reference_train, "training_step", recording_step)
    assert main(latent_arguments(ae_run, data_dir, tmp_path / "run", steps=1)) == 0
    state = load(tmp_path / "run" / "last.pt")
    assert seen[0].shape == (8, 2, 8, 8), "training_step gets latents, not images"
    assert abs(seen[0].std().item() - 1) < 0.5, "scaled latents have about unit variance"
    assert state["config"]["latent"]["latent_shape"] == [2, 8, 8]


def test_sample_py_decodes_without_the_autoencoder_file(ae_run, latent_run, tmp_path, capsys):
    """The latent checkpoint is self-contained: sampling works with the autoencoder's file gone."""
    run = tmp_path / "copy"
    shutil.copytree(latent_run, run)
    grid = tmp_path / "grid.png"
    tensor = tmp_path / "samples.pt"
    assert sampling.main(["--impl", "solutions", "--checkpoint", str(run / "last.pt"), "--num-samples", "4",
                          "--steps", "2", "--out", str(grid), "--save-tensor", str(tensor),
                          "--gif", str(tmp_path / "t.gif")]) == 0
    output = capsys.readouterr().out
    assert "x̂_0 not clipped" in output and "images of 1×32×32" in output
    images = load(tensor)["images"]
    assert images.shape == (4, 1, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert grid.is_file() and (tmp_path / "t.gif").is_file()


def test_sample_py_refuses_an_autoencoder_checkpoint(ae_run, capsys):
    assert sampling.main(["--impl", "solutions", "--checkpoint", str(ae_run / "last.pt")]) == 1
    error = capsys.readouterr().err
    assert "is an autoencoder" in error and "--autoencoder" in error


def test_evaluate_py_measures_an_autoencoder(ae_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluation.main(["--impl", "solutions", "--checkpoint", str(ae_run / "last.pt"), "--num-samples", "16",
                            "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["kind"] == "autoencoder" and metrics["latent_shape"] == [2, 8, 8]
    assert 0 < metrics["psnr"] < 60 and -1 <= metrics["ssim"] <= 1
    assert abs(metrics["scaled_latent_std"] - 1) < 0.5
    assert (out / "reconstructions.png").is_file()


# ---------------------------------------------------------------------------
# Errors: one line naming the flag
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("extra, words", [
    (["--class-conditional"], "--train-autoencoder: not with --class-conditional"),
    (["--task", "deblur"], "--train-autoencoder: not with --task"),
    (["--ae-channels", "8,8,8", "--image-size", "30"], "--image-size: 30 is not divisible by 4"),
], ids=["class-conditional", "task", "size"])
def test_autoencoder_flags_that_do_not_mix_are_refused(tmp_path, capsys, extra, words):
    with pytest.raises(SystemExit) as stopped:
        main([*COMMON, "--train-autoencoder", *extra, "--steps", "1", "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    assert words in capsys.readouterr().err


def test_a_missing_autoencoder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*COMMON, *LATENT, "--autoencoder", str(tmp_path / "none.pt"), "--steps", "1",
              "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "argument --autoencoder: there is no autoencoder checkpoint" in error and "--train-autoencoder" in error


def test_a_diffusion_checkpoint_is_not_an_autoencoder(latent_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*COMMON, *LATENT, "--autoencoder", str(latent_run / "last.pt"), "--steps", "1",
              "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    assert "is a diffusion model's checkpoint, not an autoencoder's" in capsys.readouterr().err


def test_an_autoencoder_of_another_dataset_is_refused(ae_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*COMMON[:3], "digits-rgb", *COMMON[4:], *LATENT, "--autoencoder", str(ae_run / "last.pt"),
              "--steps", "1", "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    assert "it was trained on 'digits', not on --dataset 'digits-rgb'" in capsys.readouterr().err


def test_a_damaged_latent_scale_is_a_clear_error(latent_run, tmp_path, capsys):
    state = load(latent_run / "last.pt")
    state["config"]["latent"]["scale"] = -1.0
    torch.save(state, tmp_path / "damaged.pt")
    assert sampling.main(["--impl", "solutions", "--checkpoint", str(tmp_path / "damaged.pt")]) == 1
    assert "latent scale must be finite and > 0" in capsys.readouterr().err
