"""Tests of ``python -m tools.benchmarks.bench_sampling``: a tiny run's report, the checkpoint, its flags."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch

from tools.benchmarks import bench_sampling
from tools.benchmarks.bench_sampling import load_checkpoint, main, parse_args
from solutions.unet import UNet

#: A run small enough for a test: 2 images, 4 DDPM and 2 DDIM steps, 1 timed run, no warm-up, and one
#: thread (tiny convolutions gain nothing from more, and lose much when the cores are busy).
TINY = [
    "--ddpm-steps", "4", "--ddim-steps", "2", "--batch-size", "2", "--repeats", "1", "--warmup", "0", "--threads", "1",
]
#: The tiny checkpoint's training setup (T small, so that step counts above it are quick to test).
TINY_CONFIG = {"schedule": "linear", "timesteps": 100, "prediction": "eps", "image_size": 16}
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def table_rows(report: str) -> dict[str, list[str]]:
    """The markdown table's body rows, keyed by their sampler ("DDPM", "DDIM")."""
    rows = {}
    for line in report.splitlines():
        if line.startswith("| DDPM") or line.startswith("| DDIM"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0].split(",")[0]] = cells
    return rows


def number(cell: str) -> float:
    match = NUMBER.search(cell)
    assert match, f"no number in table cell {cell!r}"
    return float(match.group().replace(",", ""))


def run(argv: list[str]) -> str:
    """``main(argv)``'s stdout; it must exit 0. Torch's thread count is restored afterwards."""
    threads = torch.get_num_threads()
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A training-style checkpoint of a small UNet: config, model_config and EMA weights."""
    torch.manual_seed(0)
    model = UNet(base_channels=8)
    path = tmp_path_factory.mktemp("checkpoint") / "last.pt"
    torch.save(
        {"config": dict(TINY_CONFIG), "model_config": dict(model.config), "ema": model.state_dict(), "step": 7},
        path,
    )
    return path


@pytest.fixture(scope="module")
def tiny_report(tiny_checkpoint, tmp_path_factory):
    """Run the tiny benchmark on the tiny checkpoint once, writing --out; return (stdout, file text)."""
    out = tmp_path_factory.mktemp("bench") / "sub" / "bench.md"
    report = run([*TINY, "--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    return report, out.read_text(encoding="utf-8")


def test_table_has_both_rows_with_positive_numbers(tiny_report):
    report, _ = tiny_report
    header = next(line for line in report.splitlines() if line.startswith("| sampler"))
    assert header.count("|") == 6, "the table should have 5 columns"
    rows = table_rows(report)
    assert set(rows) == {"DDPM", "DDIM"}, f"rows found: {list(rows)}"
    assert number(rows["DDPM"][1]) == 4 and number(rows["DDIM"][1]) == 2, "network calls/image = steps"
    for name, cells in rows.items():
        assert len(cells) == 5, f"{name} row has {len(cells)} cells: {cells}"
        for cell in cells[1:]:
            assert number(cell) > 0, f"{name} row: {cell!r} is not positive"
        seconds, rate = number(cells[2]), number(cells[3])
        assert rate == pytest.approx(2 / seconds, rel=0.002), f"{name}: images/s ≠ batch / s/batch"


def test_ratio_is_the_ratio_of_the_printed_images_per_second(tiny_report):
    report, _ = tiny_report
    rows = table_rows(report)
    match = re.search(r"DDIM vs DDPM: (\d+\.\d+)× the images/s \(ideal from the step counts: 4 / 2 = 2\.00×", report)
    assert match, report
    printed = float(match.group(1))
    assert printed == pytest.approx(number(rows["DDIM"][3]) / number(rows["DDPM"][3]), rel=0.002, abs=0.006)


def test_report_names_the_model_and_the_machine(tiny_report, tiny_checkpoint):
    report, _ = tiny_report
    assert f"checkpoint `{tiny_checkpoint.as_posix()}` (EMA weights, 7 training steps)" in report
    assert "linear schedule, T = 100, eps-prediction" in report
    assert "Batch 2 of 1×16×16" in report
    assert "No checkpoint" not in report
    assert f"torch {torch.__version__}" in report
    assert "torch.get_num_threads() = 1" in report


def test_out_file_holds_the_printed_report(tiny_report):
    report, written = tiny_report
    assert written == report


def test_checkpoint_gives_the_ema_weights_and_its_setup(tiny_checkpoint):
    setup = load_checkpoint(tiny_checkpoint)
    saved = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    for name, tensor in setup.model.state_dict().items():
        assert torch.equal(tensor, saved["ema"][name]), name
    assert setup.schedule.num_timesteps == 100 and setup.prediction == "eps"
    assert setup.image_shape == (1, 16, 16) and setup.from_checkpoint


def test_ddpm_steps_default_to_all_of_t(tiny_checkpoint):
    args = parse_args(["--checkpoint", str(tiny_checkpoint)])
    assert args.ddpm_steps == 100 and args.ddim_steps == 50


def test_without_the_default_checkpoint_an_untrained_unet_is_timed(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_sampling, "DEFAULT_CHECKPOINT", tmp_path / "runs" / "demo" / "last.pt")
    args = parse_args([])
    assert not args.setup.from_checkpoint and args.ddpm_steps == 1000
    assert args.setup.prediction == "v" and args.setup.schedule.name == "cosine"
    report = run(["--ddpm-steps", "2", "--ddim-steps", "1", "--batch-size", "1", "--repeats", "1", "--threads", "1"])
    assert "**No checkpoint at" in report and "does not depend on the weights" in report
    assert set(table_rows(report)) == {"DDPM", "DDIM"}


def test_missing_checkpoint_given_explicitly_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(missing), *TINY])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "--checkpoint" in message and str(missing) in message and "does not exist" in message


def test_unusable_checkpoints_are_clear_errors(tmp_path, tiny_checkpoint, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    no_ema = tmp_path / "no_ema.pt"
    torch.save({"config": dict(TINY_CONFIG), "model_config": {}}, no_ema)
    wrong_shape = tmp_path / "wrong_shape.pt"
    saved = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    torch.save({**saved, "model_config": {**saved["model_config"], "base_channels": 16}}, wrong_shape)
    for path, fragment in ((garbage, "cannot read"), (no_ema, "'ema'"), (wrong_shape, "do not fit")):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(["--checkpoint", str(path)])
        assert exit_info.value.code == 2
        message = capsys.readouterr().err
        assert str(path) in message and fragment in message, message


@pytest.mark.parametrize("flag", ["--ddpm-steps", "--ddim-steps"])
def test_more_steps_than_t_is_refused(flag, tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--checkpoint", str(tiny_checkpoint), flag, "101"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert flag in message and "T = 100" in message


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--ddpm-steps", "0"], "--ddpm-steps"),
        (["--ddim-steps", "-5"], "--ddim-steps"),
        (["--ddim-steps", "fifty"], "--ddim-steps"),
        (["--repeats", "0"], "--repeats"),
        (["--warmup", "-1"], "--warmup"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_flags_exit_with_a_message(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_out_that_is_a_folder_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_report_arithmetic_and_busy_machine_warning(tiny_checkpoint):
    """Known times give known rates and ratios; a load above the cores adds a warning."""
    args = parse_args([*TINY, "--checkpoint", str(tiny_checkpoint)])
    ddpm = bench_sampling.Sampler("DDPM, 4 steps", 4, lambda: None, times=[2.0, 9.0, 1.0])  # median 2 s
    ddim = bench_sampling.Sampler("DDIM, 2 steps (η = 0)", 2, lambda: None, times=[0.5])
    report = bench_sampling.format_report(args, [ddpm, ddim], threads=2, load=0.0, seconds=12.0)
    rows = table_rows(report)
    assert rows["DDPM"][1:] == ["4", "2.000", "1.000", "500.0"]
    assert rows["DDIM"][1:] == ["2", "0.5000", "4.000", "250.0"]
    ratios = "DDIM vs DDPM: 4.00× the images/s (ideal from the step counts: 4 / 2 = 2.00×; measured / ideal = 200%)"
    assert ratios in report
    assert "Busy machine" not in report
    busy = bench_sampling.format_report(args, [ddpm, ddim], threads=2, load=1000.0, seconds=12.0)
    assert "**Busy machine**" in busy and "--threads 1" in busy
