"""Bad inputs to ``train.py``, ``sample.py`` and ``evaluate.py``: one clear line each, never a traceback.

One table, one row per bad input: a flag out of its range, an output that cannot be
written, a damaged checkpoint or data file, memory that runs out. Each row runs the
command in-process (``main(argv)``, the reference) and checks the exit status (2 for a
flag, argparse's usage then one error line; 1 otherwise, one error line), that the
error line names the flag or the file and what is accepted, and that no traceback is
printed. Rows marked ``before_work`` also check that the problem is found before any
training or sampling starts. Then a few tests of the behaviours around a run: SIGTERM,
stale temporary files, clearing --time-limit, the lock of --out, inpainting masks.
"""

from __future__ import annotations

import argparse
import errno
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from PIL import Image

import solutions.train as reference_train
import solutions.unet as reference_unet
from provided import evaluation, sampling, training
from provided.files import exclusive_lock

COMMANDS = {"train": training.main, "sample": sampling.main, "evaluate": evaluation.main}
TINY_TRAIN = [
    "--impl", "solutions", "--dataset", "digits", "--num-images", "64", "--batch-size", "8",
    "--base-channels", "8", "--timesteps", "100", "--sample-every", "0", "--warmup-steps", "2",
    "--num-samples", "4", "--sample-steps", "2",
]
TINY_SAMPLE = ["--impl", "solutions", "--num-samples", "2", "--steps", "2"]
TINY_EVALUATE = ["--impl", "solutions", "--device", "cpu", "--num-samples", "20", "--steps", "2"]
BIG = "1000000000"


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_inputs_data")


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory) -> Path:
    """A finished 2-step run (T = 100, 64 digits, U-Net of width 8); its folder."""
    out = tmp_path_factory.mktemp("bad_inputs_run") / "run"
    assert training.main([*TINY_TRAIN, "--steps", "2", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return out


@dataclass
class Context:
    """What a row's arguments are made from: a fresh folder, the trained run, helpers to damage copies."""

    tmp: Path
    run_dir: Path
    data_dir: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def a_file(self) -> Path:
        """A plain file, to stand where a folder is needed."""
        path = self.tmp / "a_file"
        path.write_text("not a folder")
        return path

    def folder(self, name: str) -> Path:
        """A folder called ``name``, to stand where a file is needed."""
        path = self.tmp / name
        path.mkdir()
        return path

    def damaged(self, change: Callable[[dict], None]) -> Path:
        """A copy of the checkpoint, changed by ``change(state)``."""
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        change(state)
        path = self.tmp / "damaged.pt"
        torch.save(state, path)
        return path

    def resumable(self, change: Callable[[dict], None] | None = None) -> Path:
        """A copy of the run's folder whose last.pt is changed by ``change(state)``."""
        folder = self.tmp / "run_copy"
        shutil.copytree(self.run_dir, folder)
        if change is not None:
            shutil.copy(self.damaged(change), folder / "last.pt")
        return folder

    def image_folder(self, bad_name: str, content: bytes) -> Path:
        """A folder of 8 small PNGs and one damaged file ``bad_name``."""
        folder = self.tmp / "pictures"
        folder.mkdir()
        for index in range(8):
            Image.new("RGB", (16, 16), (30 * index, 90, 200)).save(folder / f"{index}.png")
        (folder / bad_name).write_bytes(content)
        return folder

    def fail(self, target: str, error: BaseException) -> None:
        """Make ``target`` (a dotted name) raise ``error``."""

        def failing(*args, **kwargs):
            raise error

        self.monkeypatch.setattr(target, failing)


def setting(key: str, value) -> Callable[[dict], None]:
    return lambda state: state["config"].update({key: value})


def entry(key: str, value) -> Callable[[dict], None]:
    return lambda state: state.update({key: value})


def other_weights(state: dict) -> None:
    """The weights of a wider U-Net than the one the checkpoint's config builds."""
    model = reference_unet.UNet(**{**state["model_config"], "base_channels": 16})
    state["model"] = state["ema"] = model.state_dict()


def sample_damaged(change: Callable[[dict], None]) -> Callable[[Context], list[str]]:
    """The arguments of sample.py on a copy of the checkpoint changed by ``change(state)``."""
    return lambda ctx: sample_args(ctx, checkpoint=ctx.damaged(change))


def evaluate_damaged(change: Callable[[dict], None]) -> Callable[[Context], list[str]]:
    return lambda ctx: evaluate_args(ctx, checkpoint=ctx.damaged(change))


def resume_damaged(change: Callable[[dict], None]) -> Callable[[Context], list[str]]:
    """The arguments of train.py --resume of a copy of the run whose last.pt is changed by ``change(state)``."""
    return lambda ctx: ["--resume", "--out", str(ctx.resumable(change))]


def train_args(ctx: Context, *extra: str, out: Path | None = None) -> list[str]:
    length = [] if "--epochs" in extra else ["--steps", "2"]
    return [*TINY_TRAIN, *length, "--data-dir", str(ctx.data_dir), "--out", str(out or ctx.tmp / "out"), *extra]


def sample_args(ctx: Context, *extra: str, checkpoint: Path | None = None) -> list[str]:
    return ["--checkpoint", str(checkpoint or ctx.checkpoint), *TINY_SAMPLE, "--out", str(ctx.tmp / "grid.png"), *extra]


def evaluate_args(ctx: Context, *extra: str, checkpoint: Path | None = None) -> list[str]:
    return ["--checkpoint", str(checkpoint or ctx.checkpoint), *TINY_EVALUATE, "--out", str(ctx.tmp / "eval"),
            "--data-dir", str(ctx.data_dir), *extra]


def disk_full(ctx: Context, target: str) -> None:
    ctx.fail(target, OSError(errno.ENOSPC, "No space left on device"))


def disk_full_for_gifs(ctx: Context) -> None:
    """PIL's save fails with ENOSPC for GIFs only (the PNG grid, written first, goes through)."""
    from PIL import Image

    save = Image.Image.save

    def failing(self, handle, format=None, **kwargs):
        if format == "GIF":
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, handle, format=format, **kwargs)

    ctx.monkeypatch.setattr(Image.Image, "save", failing)


NON_TENSOR = argparse.Namespace(note="a Python object that weights_only=True refuses")
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch.OutOfMemoryError from 2.4
CPU_OOM = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 80000000000 bytes. Error code 12 (Cannot allocate memory)")


@dataclass
class Case:
    id: str
    command: str
    argv: Callable[[Context], list[str]]
    status: int
    names: tuple[str, ...]  # what the error line must say (the flag or the file, what is accepted)
    setup: Callable[[Context], None] | None = None
    before_work: bool = False  # the problem must be found before any training or sampling


CASES = [
    # --- outputs that cannot be written, found before the work -----------------------------------
    Case("train-out-is-a-file", "train", lambda c: train_args(c, out=c.a_file), 2,
         ("argument --out", "a_file: it is not a folder"), before_work=True),
    Case("train-out-under-a-file", "train", lambda c: train_args(c, out=c.a_file / "run"), 2,
         ("argument --out", "a_file is not a folder"), before_work=True),
    Case("train-out-under-proc", "train", lambda c: train_args(c, out=Path("/proc/diffusion-run")), 2,
         ("argument --out", "no file can be created in /proc"), before_work=True),
    Case("train-out-under-dev-null", "train", lambda c: train_args(c, out=Path("/dev/null/run")), 2,
         ("argument --out", "/dev/null is not a folder"), before_work=True),
    Case("train-disk-full", "train", lambda c: train_args(c), 1,
         ("cannot write", "last.pt", "the disk is full"), setup=lambda c: disk_full(c, "torch.save")),
    Case("sample-out-is-a-folder", "sample", lambda c: sample_args(c, "--out", str(c.tmp)), 2,
         ("argument --out", "must be a .png"), before_work=True),
    Case("sample-out-is-a-folder-named-png", "sample", lambda c: sample_args(c, "--out", str(c.folder("grid.png"))), 2,
         ("argument --out", "grid.png: it is a folder, not a file"), before_work=True),
    Case("sample-out-under-a-file", "sample", lambda c: [*sample_args(c), "--out", str(c.a_file / "grid.png")], 2,
         ("argument --out", "a_file is not a folder"), before_work=True),
    Case("sample-default-out-beside-unwritable", "sample",
         lambda c: ["--checkpoint", str(c.checkpoint), *TINY_SAMPLE], 2,
         ("argument --out", "samples_ddim_2steps.png", "no file can be created"),
         setup=lambda c: disk_full(c, "tempfile.mkstemp"), before_work=True),
    Case("sample-gif-under-dev-null", "sample", lambda c: sample_args(c, "--gif", "/dev/null/t.gif"), 2,
         ("argument --gif", "/dev/null is not a folder"), before_work=True),
    Case("sample-tensor-under-proc", "sample", lambda c: sample_args(c, "--save-tensor", "/proc/samples.pt"), 2,
         ("argument --save-tensor", "no file can be created in /proc"), before_work=True),
    Case("sample-tensor-is-a-folder", "sample", lambda c: sample_args(c, "--save-tensor", str(c.tmp)), 2,
         ("argument --save-tensor", "it is a folder, not a file"), before_work=True),
    Case("sample-disk-full", "sample", lambda c: sample_args(c), 1,
         ("cannot write", "grid.png", "the disk is full"), setup=lambda c: disk_full(c, "PIL.Image.Image.save")),
    Case("sample-gif-disk-full", "sample", lambda c: sample_args(c, "--gif", str(c.tmp / "t.gif")), 1,
         ("cannot write", "t.gif", "the disk is full"), setup=disk_full_for_gifs),
    Case("evaluate-out-under-a-file", "evaluate", lambda c: [*evaluate_args(c), "--out", str(c.a_file / "eval")], 2,
         ("argument --out", "a_file is not a folder"), before_work=True),
    Case("evaluate-out-is-a-file", "evaluate", lambda c: [*evaluate_args(c), "--out", str(c.a_file)], 2,
         ("argument --out", "a_file: it is not a folder"), before_work=True),
    Case("evaluate-out-under-proc", "evaluate", lambda c: [*evaluate_args(c), "--out", "/proc/eval"], 2,
         ("argument --out", "no file can be created in /proc"), before_work=True),
    Case("evaluate-classifier-under-dev-null", "evaluate",
         lambda c: evaluate_args(c, "--classifier", "/dev/null/digits.pt"), 2,
         ("argument --classifier", "/dev/null is not a folder"), before_work=True),
    # --- damaged values inside a checkpoint: the file is blamed, not a flag --------------------------
    Case("sample-ckpt-timesteps-text", "sample", sample_damaged(setting("timesteps", "abc")), 1,
         ("damaged.pt", "its config's timesteps is 'abc', expected a whole number from 2 to 100000")),
    Case("sample-ckpt-timesteps-bool", "sample", sample_damaged(setting("timesteps", True)), 1,
         ("damaged.pt", "timesteps is True, expected a whole number")),
    Case("sample-ckpt-timesteps-none", "sample", sample_damaged(setting("timesteps", None)), 1,
         ("damaged.pt", "timesteps is None, expected a whole number")),
    Case("sample-ckpt-image-size-huge", "sample", sample_damaged(setting("image_size", 4096)), 1,
         ("damaged.pt", "image_size is 4096, expected a whole number from 8 to 1024")),
    Case("sample-ckpt-image-size-unhalvable", "sample", sample_damaged(setting("image_size", 30)), 1,
         ("damaged.pt", "image_size does not fit its model", "cannot be halved")),
    Case("sample-ckpt-prediction", "sample", sample_damaged(setting("prediction", "banana")), 1,
         ("damaged.pt", "prediction is 'banana', expected one of eps, x0, v")),
    Case("sample-ckpt-schedule", "sample", sample_damaged(setting("schedule", 7)), 1,
         ("damaged.pt", "schedule is 7, expected one of")),
    Case("sample-ckpt-ema-text", "sample", sample_damaged(entry("ema", "abc")), 1,
         ("damaged.pt", "its ema is a str, not the U-Net's weights")),
    Case("sample-ckpt-config-text", "sample", sample_damaged(entry("config", "oops")), 1,
         ("damaged.pt", "its config is a str, expected a dict")),
    Case("sample-ckpt-model-config-list", "sample", sample_damaged(entry("model_config", [1])), 1,
         ("damaged.pt", "its model_config is a list")),
    Case("sample-ckpt-model-config-bad", "sample", sample_damaged(lambda s: s["model_config"].update(base_channels=-3)),
         1, ("damaged.pt", "its model_config makes no U-Net")),
    Case("sample-ckpt-other-weights", "sample", sample_damaged(other_weights), 1,
         ("damaged.pt", "do not fit", "of another shape", "…")),
    Case("sample-ckpt-non-tensor-objects", "sample", sample_damaged(entry("extra", NON_TENSOR)), 1,
         ("damaged.pt", "holds non-tensor Python objects (argparse.Namespace), refused for safety")),
    Case("evaluate-ckpt-timesteps-negative", "evaluate", evaluate_damaged(setting("timesteps", -5)), 1,
         ("argument --checkpoint", "damaged.pt", "timesteps is -5, expected a whole number from 2 to 100000")),
    Case("evaluate-ckpt-seed-text", "evaluate", evaluate_damaged(setting("seed", "abc")), 1,
         ("argument --checkpoint", "damaged.pt", "seed is 'abc', expected a whole number from 0 to")),
    Case("evaluate-ckpt-ema-none", "evaluate", evaluate_damaged(entry("ema", None)), 1,
         ("argument --checkpoint", "damaged.pt", "its ema is a NoneType")),
    Case("resume-ckpt-timesteps-text", "train", resume_damaged(setting("timesteps", "abc")), 1,
         ("last.pt", "its config's timesteps is 'abc', expected a whole number from 2 to 100000")),
    Case("resume-ckpt-ema-decay-out-of-range", "train", resume_damaged(setting("ema_decay", 2.5)), 1,
         ("last.pt", "its config's ema_decay is 2.5, expected a number in [0, 1)")),
    Case("resume-ckpt-lacks-a-setting", "train", resume_damaged(lambda s: s["config"].pop("lr")), 1,
         ("last.pt", "is incomplete", "config['lr']")),
    Case("resume-ckpt-step-negative", "train", resume_damaged(entry("step", -1)), 1,
         ("last.pt", "its step is -1, expected a whole number ≥ 0")),
    Case("resume-ckpt-ema-text", "train", resume_damaged(entry("ema", "abc")), 1, ("last.pt", "its ema is a str")),
    Case("resume-ckpt-other-weights", "train", resume_damaged(other_weights), 1,
         ("last.pt", "its model weights do not match the model in its config", "of another shape", "…")),
    Case("resume-ckpt-rng-damaged", "train", resume_damaged(entry("rng", {"generator": torch.zeros(3)})), 1,
         ("last.pt", "its rng state cannot be restored")),
    Case("resume-ckpt-non-tensor-objects", "train", resume_damaged(entry("extra", NON_TENSOR)), 1,
         ("last.pt", "refused for safety")),
    # --- a folder dataset holding a file that is not an image: the file is named ---------------------
    Case("train-folder-empty-file", "train",
         lambda c: [*train_args(c), "--dataset", "folder", "--data-dir", str(c.image_folder("empty.png", b"")),
                    "--image-size", "16", "--num-images", "9"],
         2, ("empty.png", "not an image", "it is empty")),
    Case("train-folder-fake-image", "train",
         lambda c: [*train_args(c), "--dataset", "folder", "--data-dir", str(c.image_folder("fake.jpg", b"hello")),
                    "--image-size", "16", "--num-images", "9"],
         2, ("fake.jpg", "not an image")),
    Case("train-folder-cut-short", "train",
         lambda c: [*train_args(c), "--dataset", "folder", "--data-dir", str(c.image_folder("cut.png", cut_png())),
                    "--image-size", "16", "--num-images", "9"],
         1, ("cannot read the image", "cut.png", "remove or replace it")),
    # --- sizes without bound, and other numbers ------------------------------------------------------
    Case("train-timesteps-huge", "train", lambda c: train_args(c, "--timesteps", BIG), 2,
         ("argument --timesteps", "from 2 to 100000", BIG)),
    Case("train-timesteps-1e9", "train", lambda c: train_args(c, "--timesteps", "1e9"), 2,
         ("argument --timesteps", "from 2 to 100000", "'1e9'")),
    Case("train-image-size-2048", "train", lambda c: train_args(c, "--image-size", "2048"), 2,
         ("argument --image-size", "from 8 to 1024")),
    Case("train-image-size-negative", "train", lambda c: train_args(c, "--image-size", "-8"), 2,
         ("argument --image-size", "from 8 to 1024")),
    Case("train-num-images-huge", "train", lambda c: train_args(c, "--num-images", BIG), 2,
         ("argument --num-images", "from 1 to 1000000")),
    Case("train-seed-1e20", "train", lambda c: train_args(c, "--seed", "1e20"), 2,
         ("argument --seed", "torch's seeds are 64-bit")),
    Case("train-seed-2-to-the-64", "train", lambda c: train_args(c, "--seed", str(2**64)), 2,
         ("argument --seed", f"from 0 to {2**63 - 1}", "torch's seeds are 64-bit")),
    Case("train-batch-size-huge", "train", lambda c: train_args(c, "--batch-size", BIG), 2,
         ("argument --batch-size", "from 1 to 65536")),
    Case("train-steps-huge", "train", lambda c: train_args(c, "--steps", "100000000000"), 2,
         ("argument --steps", "from 1 to 10000000")),
    Case("train-epochs-huge", "train",
         lambda c: train_args(c, "--epochs", "1e12"), 2,
         ("argument --epochs", "optimizer steps; at most 10000000")),
    Case("train-num-res-blocks-huge", "train", lambda c: train_args(c, "--num-res-blocks", BIG), 2,
         ("argument --num-res-blocks", "from 1 to 16")),
    Case("train-num-workers-huge", "train", lambda c: train_args(c, "--num-workers", "100000"), 2,
         ("argument --num-workers", "from 0 to 256")),
    Case("train-lr-nan", "train", lambda c: train_args(c, "--lr", "nan"), 2, ("argument --lr", "(0, ∞)")),
    Case("train-time-limit-inf", "train", lambda c: train_args(c, "--time-limit", "inf"), 2,
         ("argument --time-limit", "[0, ∞)")),
    Case("train-time-limit-negative", "train", lambda c: train_args(c, "--time-limit", "-1"), 2,
         ("argument --time-limit", "[0, ∞)")),
    Case("train-unknown-dataset", "train", lambda c: train_args(c, "--dataset", "imagenet"), 2,
         ("argument --dataset", "invalid choice: 'imagenet'")),
    Case("sample-num-samples-huge", "sample", lambda c: sample_args(c, "--num-samples", BIG), 2,
         ("argument --num-samples", "from 1 to 100000")),
    Case("sample-batch-size-huge", "sample", lambda c: sample_args(c, "--batch-size", "10000000"), 2,
         ("argument --batch-size", "from 1 to 65536")),
    Case("sample-from-dataset-1e8", "sample", lambda c: sample_args(c, "--inpaint", "--from-dataset", "1e8"), 2,
         ("argument --from-dataset", "from 1 to 10000")),
    Case("sample-from-dataset-huge", "sample", lambda c: sample_args(c, "--inpaint", "--from-dataset", "100000000"), 2,
         ("argument --from-dataset", "from 1 to 10000")),
    Case("sample-seed-2-to-the-63", "sample", lambda c: sample_args(c, "--seed", str(2**63)), 2,
         ("argument --seed", "torch's seeds are 64-bit")),
    Case("sample-resample-huge", "sample",
         lambda c: sample_args(c, "--inpaint", "--from-dataset", "2", "--resample", "100000"), 2,
         ("argument --resample", "from 1 to 100")),
    Case("sample-eta-inf", "sample", lambda c: sample_args(c, "--eta", "inf"), 2, ("argument --eta", "[0, 1]")),
    Case("evaluate-num-samples-huge", "evaluate", lambda c: evaluate_args(c, "--num-samples", BIG), 2,
         ("argument --num-samples", "from 2 to 10000")),
    Case("evaluate-num-samples-1e9", "evaluate", lambda c: evaluate_args(c, "--num-samples", "1e9"), 2,
         ("argument --num-samples", "from 2 to 10000")),
    Case("evaluate-seed-1e20", "evaluate", lambda c: evaluate_args(c, "--seed", "100000000000000000000"), 2,
         ("argument --seed", "torch's seeds are 64-bit")),
    Case("evaluate-guidance-nan", "evaluate", lambda c: evaluate_args(c, "--guidance-scale", "nan"), 2,
         ("argument --guidance-scale",)),
    # --- memory that runs out: one line saying what to lower -----------------------------------------
    Case("train-out-of-memory-cuda", "train", lambda c: train_args(c), 1,
         ("out of memory: lower --batch-size or --image-size",),
         setup=lambda c: c.fail("solutions.train.training_step", OUT_OF_MEMORY("CUDA out of memory."))),
    Case("train-out-of-memory-cpu", "train", lambda c: train_args(c), 1,
         ("out of memory: lower --batch-size or --image-size", "can't allocate memory"),
         setup=lambda c: c.fail("solutions.train.training_step", CPU_OOM)),
    Case("sample-out-of-memory", "sample", lambda c: sample_args(c), 1, ("out of memory: lower --batch-size",),
         setup=lambda c: c.fail("solutions.diffusion.sample_loop", CPU_OOM)),
    Case("evaluate-out-of-memory", "evaluate", lambda c: evaluate_args(c), 1, ("out of memory: lower --batch-size",),
         setup=lambda c: c.fail("provided.evaluation.load_model", MemoryError())),
]


def cut_png() -> bytes:
    """A PNG whose header is whole but whose pixels break off."""
    from io import BytesIO

    buffer = BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()[:200]


def run_command(command: str, argv: list[str], capsys) -> tuple[int, str]:
    """The exit status and stderr of one in-process run."""
    try:
        status = COMMANDS[command](argv)
    except SystemExit as stopped:
        status = stopped.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_is_one_clear_line(case, run_dir, data_dir, tmp_path, monkeypatch, capsys):
    ctx = Context(tmp_path, run_dir, data_dir, monkeypatch)
    argv = case.argv(ctx)
    if any(arg.startswith("/proc/") for arg in argv) and not Path("/proc/self").exists():
        pytest.skip("this system has no /proc")
    if case.setup is not None:
        case.setup(ctx)
    if case.before_work:
        for target in ("solutions.train.training_step", "solutions.diffusion.sample_loop"):
            ctx.fail(target, AssertionError("the work started before the problem was found"))
    status, err = run_command(case.command, argv, capsys)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert status == case.status, err
    assert len(errors) == 1 and errors[0] == lines[-1], f"expected one error line, last:\n{err}"
    prog = {"train": "train.py", "sample": "sample.py", "evaluate": "evaluate.py"}[case.command]
    assert errors[0].startswith(f"{prog}: error: "), err
    for words in case.names:
        assert words in errors[0], f"{words!r} is not in: {errors[0]}"
    if status == 2:  # argparse: its usage, then the error line
        assert lines[0].startswith("usage: "), err
        assert all(line.startswith(("usage: ", " ")) for line in lines[:-1]), err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err


# ---------------------------------------------------------------------------
# Around a run: SIGTERM, stale temporaries, --time-limit 0, the lock, inpainting masks
# ---------------------------------------------------------------------------


def test_sigterm_saves_like_ctrl_c(data_dir, tmp_path, monkeypatch, capsys):
    real_update = reference_train.ema_update
    calls = []

    def update_then_terminate(*args, **kwargs):
        real_update(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGTERM)  # as if the run were killed politely during step 1

    monkeypatch.setattr(reference_train, "ema_update", update_then_terminate)
    out = tmp_path / "run"
    assert training.main([*TINY_TRAIN, "--steps", "2", "--data-dir", str(data_dir), "--out", str(out)]) == 143
    printed = capsys.readouterr()
    assert "interrupted (SIGTERM)" in printed.out and "--resume" in printed.out
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "the handler is put back"


def test_stale_temporaries_are_swept_and_time_limit_0_clears_the_saved_limit(run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    state = torch.load(out / "last.pt", weights_only=True)
    state["config"]["time_limit"] = 1e-9  # a saved limit that would stop the run at once
    torch.save(state, out / "last.pt")
    stale = [out / ".last.pt.k1l2ed.tmp", out / "samples" / ".step_000002.png.x9y8.tmp"]
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half a file")
    keep = out / "notes.tmp"
    keep.write_text("mine")
    assert training.main(["--resume", "--out", str(out), "--steps", "3", "--time-limit", "0"]) == 0
    printed = capsys.readouterr().out
    assert "removed 2 temporary file(s)" in printed and "--time-limit: stopped" not in printed
    assert not any(path.exists() for path in stale) and keep.exists()
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3


def test_a_second_train_py_on_one_out_is_refused(run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    with exclusive_lock(out / training.LOCK_NAME) as held:  # as a running train.py holds it
        assert held
        status, err = run_command("train", ["--resume", "--out", str(out), "--steps", "3"], capsys)
    assert status == 1 and err.count("\n") == 1
    assert f"train.py: error: another train.py is using {out}" in err
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2, "the run was not touched"
    assert training.main(["--resume", "--out", str(out), "--steps", "3"]) == 0  # once it is let go


@pytest.mark.parametrize("colour, hidden", [(0, "100%"), (255, "0%")], ids=["hides-everything", "hides-nothing"])
def test_a_mask_that_hides_everything_or_nothing_warns(run_dir, tmp_path, capsys, colour, hidden):
    mask = tmp_path / "mask.png"
    Image.new("L", (28, 28), colour).save(mask)
    argv = ["--checkpoint", str(run_dir / "last.pt"), *TINY_SAMPLE, "--inpaint", "--mask", str(mask),
            "--from-dataset", "2", "--out", str(tmp_path / "grid.png")]
    assert sampling.main(argv) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"hides {hidden} of the pixels" in warnings[0], err
