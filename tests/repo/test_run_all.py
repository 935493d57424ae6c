"""Tests of ``python -m tools.benchmarks.run_all``: its rows and verdicts, the time-to-quality rule, its flags,
and tiny end-to-end runs of the sections (sub-processes with one torch thread, a U-Net of width 8,
a few steps, a small classifier in a temporary data folder).

The grading and make-test sections are tested through their row functions on made-up results and
one real ``grade.py --phase 1`` run; running ``make test`` from inside the test suite would recurse.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from tools.benchmarks.run_all import (
    FIT_SHARE,
    PROBE_STEPS,
    Finished,
    QualityPoint,
    Row,
    checkpoint_clock,
    first_sustained,
    fitted_steps,
    grading_row,
    main,
    make_test_row,
    minutes_and_seconds,
    parse_args,
    pytest_summaries,
    sampling_row,
    summary_table,
    text_train,
    time_to_quality_row,
    unet_row,
)

from provided.classifier import default_classifier_path, save_classifier, train_on_dataset

TINY_UNET = "--baseline standin --batch-size 4 --steps 1 --warmup 0"
TINY_SAMPLING = "--ddpm-steps 6 --ddim-steps 2 --repeats 1 --warmup 0 --batch-size 2"
#: 8 steps of a width-8 U-Net with T = 100 on 256 digits: checkpoints at steps 2, 4, 6 and 8.
TINY_TRAIN = "--num-images 256 --batch-size 16 --base-channels 8 --timesteps 100 --steps 8 --warmup-steps 1"
TINY_EVAL = "--steps 2 --batch-size 10"


def run(argv: list[str]) -> tuple[int, str]:
    """``main(argv)``'s exit status and stdout (the report)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(argv)
    return status, buffer.getvalue()


def table(report: str) -> dict[str, list[str]]:
    """The summary table's rows, keyed by their first cell."""
    rows = {}
    lines = report.split("| benchmark |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows[cells[0]] = cells
    return rows


def point(step: int, accuracy: float) -> QualityPoint:
    return QualityPoint(step, step / 100, {"accuracy": accuracy, "num_samples": 200})


# ---------------------------------------------------------------------------
# Pure pieces
# ---------------------------------------------------------------------------


def test_time_to_quality_needs_two_checkpoints_in_a_row():
    curve = [point(50, 0.5), point(100, 0.95), point(150, 0.85), point(200, 0.90), point(250, 0.93)]
    assert first_sustained(curve, 0.9).step == 200  # 100 alone was a lucky evaluation
    assert first_sustained(curve[:4], 0.9) is None  # 200 is not yet confirmed
    assert first_sustained(curve, 0.96) is None
    assert first_sustained([], 0.9) is None


def test_the_time_to_quality_row_reports_the_first_sustained_checkpoint():
    args = parse_args(["--target-accuracy", "0.9"])
    curve = [point(100, 0.4), point(300, 0.92), point(400, 0.97)]
    row = time_to_quality_row(args, curve)
    assert row.measured.startswith("3.0 min (step 300; 92.0% of 200)")
    assert row.target == "≤ 5 min" and row.verdict == "met"
    slow = [point(600, 0.95), point(700, 0.96)]
    assert time_to_quality_row(args, slow).verdict.startswith("**NOT met**")
    never = time_to_quality_row(args, [point(100, 0.5), point(200, 0.8), point(300, 0.7)])
    assert never.measured == "not reached (best 80.0% at 2.0 min)"
    assert never.verdict.startswith("**NOT met**")


def test_rows_report_the_ratios_and_verdicts_of_the_figures():
    figures = {
        "baseline_kind": "diffusers", "batch_size": 128, "target_speedup": 3.0, "train_speedup": 4.31,
        "default": {"train_images_per_s": 302.2, "step_seconds": 0.4236},
        "baseline": {"train_images_per_s": 69.6, "step_seconds": 1.84},
    }
    row = unet_row(figures)
    assert (row.ratio, row.target, row.verdict) == ("4.3×", "≥ 3×", "met")
    assert "302 img/s (424 ms per step of 128)" == row.measured
    assert row.compared_with == "diffusers UNet2DModel: 69.6 img/s"
    figures["train_speedup"] = 2.5
    assert unet_row(figures).verdict.startswith("**NOT met**")

    sampling = {
        "from_checkpoint": False, "batch_size": 16, "speedup": 21.71, "ideal_speedup": 20.0,
        "ddpm": {"steps": 1000, "images_per_s": 0.3601}, "ddim": {"steps": 50, "images_per_s": 7.815},
    }
    row = sampling_row(sampling)
    assert row.ratio == "21.7× (ideal 20×)"
    assert "untrained UNet()" in row.benchmark
    assert row.measured == "DDIM 50 steps: 7.82 img/s" and row.compared_with == "DDPM 1000 steps: 0.36 img/s"


def grade_results(statuses: list[str]) -> dict:
    tests = [{"status": status, "max_score": 2.0, "score": 2.0 if status == "passed" else 0.0} for status in statuses]
    return {"score": sum(test["score"] for test in tests), "tests": tests}


def test_the_grading_row_wants_full_marks_within_twenty_seconds(tmp_path):
    log = tmp_path / "grade.log"
    row = grading_row(Finished(0, 19.5, log), grade_results(["passed"] * 3))
    assert row.measured == "19.5 s; 6/6 points, 3/3 checks passed" and row.verdict == "met", row
    row = grading_row(Finished(0, 95.2, log), grade_results(["passed"] * 3))
    assert row.measured == "1 min 35 s; 6/6 points, 3/3 checks passed" and row.verdict == "**NOT met** (too slow)"
    row = grading_row(Finished(1, 95.2, log), grade_results(["passed", "failed", "passed"]))
    assert "4/6 points, 2/3 checks passed" in row.measured and row.verdict == "**NOT met** (exit 1)"
    # A phase whose checks could not run adds a failed entry worth 0 points: the score alone looks full.
    results = grade_results(["passed", "passed"])
    results["tests"].append({"status": "failed", "max_score": 0.0, "score": 0.0})
    row = grading_row(Finished(1, 30.0, log), results)
    assert "4/4 points, 2/3 checks passed" in row.measured and row.verdict == "**NOT met** (exit 1)"
    crashed = grading_row(Finished(2, 1.0, log), None)
    assert crashed.verdict == "failed" and "exit 2" in crashed.measured and "grade.log" in crashed.measured


def test_the_make_test_row_wants_a_pass_within_ten_minutes(tmp_path):
    log = tmp_path / "make_test.log"
    summaries = ["932 passed, 5 skipped in 279.31s (0:04:39)", "41 passed in 67.12s (0:01:07)"]
    row = make_test_row(Finished(0, 431.0, log), summaries)
    assert row.measured == "7 min 11 s; " + "; ".join(summaries) and row.verdict == "met"
    assert make_test_row(Finished(0, 700.0, log), summaries).verdict == "**NOT met** (slower)"
    failed = make_test_row(Finished(2, 300.0, log), summaries[:1])
    assert failed.verdict == "**NOT met** (failed)" and "**exit 2**" in failed.measured


def test_pytest_summaries_are_found_in_a_log():
    log = "\n".join([
        "tests/repo/test_x.py ....",
        "===== 1 failed, 931 passed, 5 skipped, 2 warnings in 279.31s (0:04:39) =====",
        "make: *** [Makefile:50: test] Error 1",
        "=== 41 passed in 6.12s ===",
        "=== short test summary info ===",
    ])
    assert pytest_summaries(log) == ["1 failed, 931 passed, 5 skipped, 2 warnings in 279.31s (0:04:39)",
                                     "41 passed in 6.12s"]
    assert pytest_summaries("no pytest here") == []


def test_durations_and_the_table_read_well():
    assert minutes_and_seconds(42.14) == "42.1 s"
    assert minutes_and_seconds(75.4) == "1 min 15 s"
    assert minutes_and_seconds(600) == "10 min 00 s"
    text = summary_table([Row("a|b", "1")])
    assert text.splitlines()[2] == "| a\\|b | 1 | — | — | — | — |"


# ---------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "unet,speed"], "argument --only: unknown section speed; choose among unet, sampling, grading"),
        (["--skip", ""], "argument --skip: unknown section ''"),
        (["--skip", "unet,sampling,grading,make-test,quality,latent,text"], "argument --skip: nothing left to run"),
        (["--only", "unet", "--skip", "quality"], "not allowed with argument"),
        (["--target-accuracy", "0"], "argument --target-accuracy: must be a number in (0, 1]; got '0'"),
        (["--target-accuracy", "1.5"], "argument --target-accuracy: must be a number in (0, 1]; got '1.5'"),
        (["--quality-minutes", "-1"], "argument --quality-minutes: must be a number in (0, ∞); got '-1'"),
        (["--quality-every", "0"], "argument --quality-every: must be a whole number ≥ 1"),
        (["--threads", "two"], "argument --threads: must be a whole number ≥ 1; got 'two'"),
        (["--train-args", "--seed '1"], "argument --train-args: cannot split"),
    ],
)
def test_bad_flags_name_their_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_out_and_work_must_be_a_file_and_a_folder(tmp_path, capsys):
    a_file = tmp_path / "report.md"
    a_file.write_text("old")
    for argv, message in (
        (["--out", str(tmp_path)], f"argument --out: {tmp_path} exists and is not a file name"),
        (["--work", str(a_file)], f"argument --work: {a_file} exists and is not a folder"),
    ):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert message in capsys.readouterr().err


def test_sections_run_in_their_fixed_order():
    assert parse_args(["--only", "quality,unet"]).sections == ("unet", "quality")
    assert parse_args(["--skip", "make-test"]).sections == ("unet", "sampling", "grading", "quality", "latent", "text")


# ---------------------------------------------------------------------------
# Tiny end-to-end runs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data folder whose cached digits classifiers, at 28 and 32 pixels, are small (500 images each, seconds)."""
    folder = tmp_path_factory.mktemp("run_all_data")
    for size in (28, 32):  # 32: the text section's latent model is judged at its own size
        model, record = train_on_dataset("digits", data_dir=folder, num_train=500, num_test=200, epochs=1,
                                         image_size=size, log=lambda _: None)
        save_classifier(default_classifier_path("digits", folder, size), model, record)
    return folder


def test_speed_sections_report_their_figures(tmp_path):
    out = tmp_path / "report.md"
    status, report = run([
        "--only", "unet,sampling", "--work", str(tmp_path / "work"), "--out", str(out), "--threads", "1",
        "--unet-args", TINY_UNET, "--sampling-args", TINY_SAMPLING,
    ])
    assert status == 0
    assert out.read_text(encoding="utf-8") == report
    rows = table(report)
    unet = json.loads((tmp_path / "work" / "bench_unet.json").read_text())
    sampling = json.loads((tmp_path / "work" / "bench_sampling.json").read_text())
    assert rows["training throughput, default U-Net"][3] == f"{unet['train_speedup']:.1f}×"
    assert unet["train_speedup"] == pytest.approx(unet["baseline"]["step_seconds"] / unet["default"]["step_seconds"])
    sampling_rows = [cells for name, cells in rows.items() if name.startswith("sampling throughput")]
    assert len(sampling_rows) == 1
    assert sampling_rows[0][3] == f"{sampling['speedup']:.1f}× (ideal 3×)"
    # The sections' own reports follow, one heading level down, and the machine is described.
    assert "### U-Net benchmark: default vs baseline" in report and "### Sampling benchmark: DDPM vs DDIM" in report
    machine = report.split("\n\n")[3]  # heading, sentence, table, then the machine
    assert machine.startswith("Machine: ") and "torch.get_num_threads() = 1" in machine and "CPU cores" in machine


def test_the_grading_section_times_grade_py(tmp_path):
    status, report = run(["--only", "grading", "--work", str(tmp_path), "--grade-args", "--phase 1"])
    assert status == 0
    row = table(report)["grading suite on the reference (`grade.py --impl solutions`)"]
    results = json.loads((tmp_path / "grade_results.json").read_text())
    points = sum(test["max_score"] for test in results["tests"])
    assert points > 0 and f"{points:g}/{points:g} points" in row[1] and row[5] == "met"


def test_the_quality_section_stops_at_the_first_sustained_pair(tmp_path, data_dir):
    work = tmp_path / "work"
    status, report = run([
        "--only", "quality", "--work", str(work), "--threads", "1", "--data-dir", str(data_dir),
        "--train-args", TINY_TRAIN, "--eval-args", TINY_EVAL, "--quality-every", "2",
        "--quality-samples", "20", "--final-samples", "30", "--target-accuracy", "0.01",
    ])
    assert status == 0
    # Any accuracy reaches 1%, so steps 2 and 4 settle it; 6 and 8 are not evaluated; last.pt is, on 30 samples.
    evaluated = sorted(path.name for path in (work / "quality_eval").iterdir() if path.is_dir())
    assert evaluated == ["last_30", "step_000002_20", "step_000004_20"]
    rows = table(report)
    assert rows["minutes of training to 1% accuracy at w = 3"][1].startswith("0.0 min (step 2;")
    final = json.loads((work / "quality_eval" / "last_30" / "metrics.json").read_text())
    final_row = next(cells for name, cells in rows.items() if name.startswith("quality after"))
    assert "(step 8)" in final_row[0]
    assert f"accuracy {final['accuracy']:.1%}, Fréchet distance {final['frechet_distance']:.1f}" in final_row[1]
    assert final["guidance_scale"] == 3.0 and final["num_samples"] == 30


def test_a_section_that_cannot_run_fails_the_command_and_names_its_log(tmp_path):
    status, report = run(["--only", "unet", "--work", str(tmp_path), "--unet-args", "--batch-size 0"])
    assert status == 1
    row = table(report)["training throughput, default U-Net"]
    assert row[1] == f"**failed** (exit 2; see {(tmp_path / 'bench_unet.log').as_posix()})" and row[5] == "failed"
    assert "argument --batch-size" in (tmp_path / "bench_unet.log").read_text()


def test_the_latent_section_reports_cost_autoencoder_and_quality_against_pixels(tmp_path, data_dir):
    work = tmp_path / "work"
    status, report = run([
        "--only", "latent", "--work", str(work), "--threads", "1", "--data-dir", str(data_dir),
        "--latent-args", "--num-images 128 --batch-size 16 --base-channels 8 --timesteps 100 --warmup-steps 1 "
        "--statistics-images 32", "--latent-ae-steps", "3", "--latent-steps", "3", "--quality-steps", "3",
        "--eval-args", TINY_EVAL, "--final-samples", "30", "--latent-cost-args", "--repeats 1 --warmup 0 --batch-size 2",
    ])
    assert status == 0, report
    rows = table(report)
    cost = json.loads((work / "bench_latent.json").read_text())
    cost_row = next(cells for name, cells in rows.items() if name.startswith("latent step cost"))
    assert cost_row[3] == f"{cost['train_speedup']:.1f}× / {cost['sample_speedup']:.1f}×"
    ae = json.loads((work / "latent_ae" / "eval" / "metrics.json").read_text())
    ae_row = next(cells for name, cells in rows.items() if name.startswith("autoencoder after"))
    assert f"PSNR {ae['psnr']:.1f} dB" in ae_row[1]
    assert ae["psnr"] < 28 and ae_row[5] == "**NOT met**", "3 steps cannot reach 28 dB: the verdict must say so"
    latent = json.loads((work / "latent_run" / "eval" / "metrics.json").read_text())
    pixel = json.loads((work / "pixel_run" / "eval" / "metrics.json").read_text())
    latent_row = next(cells for name, cells in rows.items() if name.startswith("latent diffusion after"))
    assert f"accuracy {latent['accuracy']:.1%}" in latent_row[1] and f"accuracy {pixel['accuracy']:.1%}" in latent_row[2]
    assert latent_row[3] == f"FD {latent['frechet_distance'] / pixel['frechet_distance']:.2f}× the pixel model's"
    assert latent["guidance_scale"] == 3.0 and latent["num_samples"] == 30
    assert latent_row[5] == "**NOT met**", "3 steps cannot reach 90% accuracy"


TINY_TEXT = ("--num-images 128 --batch-size 16 --base-channels 8 --timesteps 100 --warmup-steps 1 "
             "--statistics-images 32 --text-dim 16 --text-layers 1")


def test_the_text_trainings_are_sized_to_their_minutes_by_a_probe(tmp_path, data_dir):
    args = parse_args(["--work", str(tmp_path), "--threads", "1", "--data-dir", str(data_dir),
                       "--text-args", TINY_TEXT])
    assert args.text_ae_steps is None and args.text_steps is None  # the default: fitted
    minutes = 0.25
    run, trained = text_train(args, "text_ae", ["--train-autoencoder"], minutes, args.text_ae_steps)
    assert trained.returncode == 0, trained.log.read_text()
    assert checkpoint_clock(tmp_path / "text_ae_probe" / "last.pt")[0] == PROBE_STEPS
    planned = json.loads((run / "config.json").read_text())["steps"]
    done, used = checkpoint_clock(run / "last.pt")
    assert planned > PROBE_STEPS, "a tiny model runs far more than 40 steps in a quarter of a minute"
    assert done == planned, "the time limit cut the training short: the probe fitted too many steps"
    assert used <= minutes and used >= 0.5 * FIT_SHARE * minutes, "the fitted steps should fill most of the minutes"


def test_a_failing_probe_is_reported_not_trained_on(tmp_path, data_dir):
    args = parse_args(["--work", str(tmp_path), "--threads", "1", "--data-dir", str(data_dir),
                       "--text-args", TINY_TEXT + " --latent-channels 0"])
    steps, probed = fitted_steps(args, "text_ae", ["--train-autoencoder"], 0.5)
    assert steps is None and probed.returncode != 0
    assert "--latent-channels" in probed.log.read_text()


@pytest.mark.timeout(600)  # two trainings, an evaluation and two sampling runs, each a process of its own
def test_the_text_section_reports_adherence_held_out_pairs_and_sampling_speed(tmp_path, data_dir):
    work = tmp_path / "work"
    status, report = run([
        "--only", "text", "--work", str(work), "--threads", "1", "--data-dir", str(data_dir),
        "--text-args", TINY_TEXT, "--text-ae-steps", "2", "--text-steps", "2",
        "--text-per-pair", "1", "--text-sample-args", "--steps 2",
    ])
    assert status == 0, report
    rows = table(report)
    metrics = json.loads((work / "text_run" / "eval" / "metrics.json").read_text())
    summary = metrics["adherence"]
    assert metrics["kind"] == "prompt adherence" and metrics["guidance_scale"] == 3.0
    assert metrics["image_size"] == 32 and Path(metrics["classifier"]["path"]).name == "digits-32px.pt"
    adherence_row = next(cells for name, cells in rows.items() if name.startswith("prompt adherence after"))
    assert adherence_row[1].startswith(f"digit {summary['all']['digit']:.1%}; stroke ")
    assert f"slant {summary['seen']['by_kind']['slant']['attribute']:.1%}" in adherence_row[1]
    assert adherence_row[5].startswith("**NOT met**"), "2 steps cannot reach 90% of digits"
    assert "(autoencoder " in adherence_row[0] and ", step 2 + text model " in adherence_row[0]
    assert set(metrics["floor"]) == {"real", "autoencoded"}  # a latent model: its autoencoder's floor too
    autoencoded = metrics["floor"]["autoencoded"]
    assert f"through the autoencoder: digit {autoencoded['digit']:.1%}" in adherence_row[2]
    held = rows["held-out pairs against seen pairs (digit and attribute both followed)"]
    assert held[3] == f"{100 * (summary['held_out']['both'] - summary['seen']['both']):+.1f} points"
    speed = next(cells for name, cells in rows.items() if name.startswith("64 prompted images"))
    guided = torch.load(work / "text_run" / "speed_w3.pt", map_location="cpu", weights_only=False)
    plain = torch.load(work / "text_run" / "speed_w1.pt", map_location="cpu", weights_only=False)
    assert guided["images"].shape[0] == 64 and len(set(guided["prompts"])) == 8
    assert speed[1].startswith(f"{guided['seconds']:.1f} s") and speed[3] == f"{guided['seconds'] / plain['seconds']:.2f}×"
    assert "## Prompt adherence" in report or "### Prompt adherence" in report
