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

import pytest
import torch
from PIL import Image

import solutions.train as reference_train
import solutions.trainer as reference_trainer
from solutions.trainer import CHECKPOINT_FORMAT, atomic_write, main

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--impl", "solutions", "--dataset", "digits", "--num-images", "64", "--batch-size", "8",
    "--base-channels", "8", "--sample-every", "2", "--sample-steps", "2", "--num-samples", "4",
    "--timesteps", "100", "--warmup-steps", "2",
]


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


def test_interrupt_then_resume_is_bit_identical(run_dir, tiny, tmp_path, monkeypatch, capsys):
    """2 steps, Ctrl-C (saves last.pt), --resume to 4 == 4 steps in one go, tensor for tensor."""
    out = tmp_path / "resumed"
    real_update = reference_train.ema_update
    calls = []

    def update_then_interrupt(*args, **kwargs):
        real_update(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # as if Ctrl-C were pressed during step 2

    monkeypatch.setattr(reference_train, "ema_update", update_then_interrupt)
    assert main(tiny(out)) == 130
    assert "--resume" in capsys.readouterr().out
    assert load(out / "last.pt")["step"] == 2
    monkeypatch.setattr(reference_train, "ema_update", real_update)

    assert main(["--resume", "--out", str(out)]) == 0
    one_go, resumed = load(run_dir / "last.pt"), load(out / "last.pt")
    assert resumed["step"] == 4
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
    with open(run_dir / "loss.csv", encoding="utf-8") as a, open(out / "loss.csv", encoding="utf-8") as b:
        losses_a = [row["loss"] for row in csv.DictReader(a)]
        losses_b = [row["loss"] for row in csv.DictReader(b)]
    assert losses_a == losses_b


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
    assert printed.count("your ddim_sample is not written yet") == 1
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
    ],
    ids=["dataset", "steps-0", "lr-negative", "prediction", "steps-and-epochs", "channel-mults", "ema-decay", "impl"],
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
                 "--impl", "--time-limit", "--channels-last", "--compile"):
        assert name in text, f"--help does not mention {name}"


def test_python_train_py_help_runs_from_the_repository_root():
    done = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--resume" in done.stdout and "--time-limit" in done.stdout
