"""Run every benchmark of the repository and write one markdown table.

Usage (from the repository root):
    python -m tools.benchmarks.run_all                                # everything: about an hour on two CPU cores
    python -m tools.benchmarks.run_all --out runs/bench/report.md    # also write the report to a file
    python -m tools.benchmarks.run_all --only unet,sampling           # some sections only
    python -m tools.benchmarks.run_all --skip make-test               # all but some
    python -m tools.benchmarks.run_all --threads 1                    # one torch thread everywhere (busy machines)

The seven sections, each run in its own process(es) so that one cannot slow down or
break another, and each measured against a baseline from the same run where the
question has one:

* **unet**: training throughput of the default U-Net against the course baseline
  (``bench_unet.py``: diffusers' ``UNet2DModel``, or its stand-in).
* **sampling**: DDPM with all T steps against DDIM with 50 (``bench_sampling.py``),
  on the demo checkpoint when ``make demo`` has written it.
* **grading**: the wall time of the full grading suite on the reference,
  ``python grade.py --impl solutions``, and its score (it must be full marks).
* **make-test**: the wall time of ``make test`` (the whole test suite and the
  notebooks) and whether it passed.
* **quality**: time to quality. ``train.py --class-conditional`` trains the
  default U-Net on the embedded digits for ``--quality-minutes`` (10) minutes, or
  ``--quality-steps`` (2400, about as long on two idle cores), keeping a checkpoint
  every ``--quality-every`` (50) steps; ``evaluate.py`` then measures the
  classifier accuracy of class-conditional samples at guidance w = 3, checkpoint
  after checkpoint, until two checkpoints in a row reach ``--target-accuracy``
  (90%). The time to quality is the training time (``train_seconds`` of the
  checkpoint: the optimisation steps only, not the sample grids or the saving)
  of the first of those two. The last checkpoint is then measured on more
  samples (``--final-samples``, 500): accuracy, Fréchet distance and its floor,
  precision and recall.
* **text**: Phase 7. An autoencoder for ``--text-ae-minutes`` (3) and a text-conditioned
  latent model (``train.py --captions --autoencoder``) for ``--text-minutes`` (7), so at most
  10 minutes of training in all, on ``--text-dataset`` (digits); ``evaluate.py`` then measures
  its prompt adherence at w = 3 (the digit, each attribute, held-out pairs against seen
  ones), and ``sample.py`` times 64 prompted images with DDIM 50 at w = 3, against w = 1.
* **latent**: Phase 6. The cost of a latent training step and sampling step against
  pixel space at the same U-Net width (``bench_latent.py``); the autoencoder trained
  for ``--latent-ae-minutes`` (4) and its reconstruction PSNR on 500 held-out digits
  (``evaluate.py``); then a class-conditional U-Net trained on its latents for
  ``--latent-minutes`` (5) and measured at w = 3 (accuracy, Fréchet distance), against
  the pixel-space model trained for as many minutes in the same run.

The report (stdout, and ``--out``) starts with one table, a row per measurement:
what was measured, what it was compared with in the same run, the ratio, the
target and whether it was met; then each section's details, and the machine.
Logs, sub-reports and the quality run go to ``--work`` (``runs/bench``).

The exit status is 0 when every section ran, 1 when one of them failed to run
(its row says so and names its log), 2 for bad arguments. A missed target is a
measurement, not a failure: its row says ``NOT met``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from provided.adherence import KINDS
from provided.cli import float_in, int_at_least
from tools.benchmarks.bench_unet import load_average, machine_description

#: The sections in the order they run (the cheapest first).
SECTIONS = ("unet", "sampling", "grading", "make-test", "quality", "latent", "text")
#: The issue's targets.
TARGET_MINUTES_TO_QUALITY = 5.0
TARGET_MAKE_TEST_MINUTES = 10.0
#: Phase 6's targets: the autoencoder's PSNR after at most its minutes, the latent model's accuracy after its.
TARGET_AUTOENCODER_PSNR = 28.0
TARGET_AUTOENCODER_MINUTES = 4.0
TARGET_LATENT_MINUTES = 5.0
#: Phase 7's targets: after at most TARGET_TEXT_MINUTES of training in all (autoencoder and text model), the
#: digit of TARGET_TEXT_DIGIT of the prompted images and each attribute in TARGET_TEXT_ATTRIBUTE of them, the
#: held-out pairs within TARGET_HELD_OUT_POINTS of the seen ones; 64 prompted images in TARGET_TEXT_SAMPLE_SECONDS.
TARGET_TEXT_MINUTES = 10.0
TARGET_TEXT_DIGIT = 0.9
TARGET_TEXT_ATTRIBUTE = 0.85
TARGET_HELD_OUT_POINTS = 10.0
TARGET_TEXT_SAMPLE_SECONDS = 30.0
#: The text section's trainings run as many steps as fit FIT_SHARE of their minutes, timed by a probe of
#: PROBE_STEPS steps (the rest of the minutes is the margin for a machine that slows down on the way).
PROBE_STEPS = 40
FIT_SHARE = 0.92
#: The prompts of the sampling-speed row (eight, cycled over the 64 images).
SPEED_PROMPTS = ("a bold seven", "a thin 2", "4, leaning left", "a 9 leaning right", "the digit three",
                 "an upright 0", "a thick 5", "a slender 1")
#: Guidance scale of the time-to-quality measurement.
QUALITY_GUIDANCE = 3.0
NOT_APPLICABLE = "—"


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def section_list(text: str) -> tuple[str, ...]:
    """An argparse ``type``: comma-separated section names, each one of SECTIONS."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SECTIONS]
    if not names or unknown:
        shown = ", ".join(unknown) if unknown else repr(text)
        raise argparse.ArgumentTypeError(f"unknown section {shown}; choose among {', '.join(SECTIONS)}")
    return names


def flag_list(text: str) -> list[str]:
    """An argparse ``type``: extra flags for a sub-command, split as a shell would."""
    try:
        return shlex.split(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"cannot split {text!r} into flags ({error})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.benchmarks.run_all",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--only", type=section_list, default=None, metavar="S1,S2",
                       help=f"run only these sections, among {', '.join(SECTIONS)} (default: all)")
    which.add_argument("--skip", type=section_list, default=None, metavar="S1,S2",
                       help="run all sections but these")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="also write the markdown report to FILE")
    parser.add_argument("--work", type=Path, default=Path("runs/bench"), metavar="DIR",
                        help="logs, sub-reports and the quality run (default: %(default)s)")
    parser.add_argument("--threads", type=int_at_least(1), default=None, metavar="N",
                        help="torch threads of every sub-process (OMP_NUM_THREADS; default: torch's choice)")
    parser.add_argument("--data-dir", default="data", metavar="DIR",
                        help="datasets and the cached classifier of the quality section (default: %(default)s)")

    quality = parser.add_argument_group("quality (time to quality)")
    quality.add_argument("--quality-minutes", type=float_in(0.0), default=10.0, metavar="MIN",
                         help="minutes of training (train.py --time-limit; default: %(default)g)")
    quality.add_argument("--quality-steps", type=int_at_least(1), default=2400, metavar="N",
                         help="train.py --steps: the length of the learning-rate schedule; about 10 minutes "
                         "on two idle cores, and --quality-minutes stops it sooner on a slower machine "
                         "(default: %(default)s)")
    quality.add_argument("--quality-every", type=int_at_least(1), default=50, metavar="N",
                         help="keep a checkpoint every N steps (default: %(default)s)")
    quality.add_argument("--target-accuracy", type=float_in(0.0, 1.0, high_open=False), default=0.9, metavar="A",
                         help="the accuracy at w = 3 to reach (default: %(default)g)")
    quality.add_argument("--quality-samples", type=int_at_least(10), default=200, metavar="N",
                         help="samples per intermediate checkpoint (default: %(default)s)")
    quality.add_argument("--final-samples", type=int_at_least(10), default=500, metavar="N",
                         help="samples for the last checkpoint's metrics (default: %(default)s)")

    latent = parser.add_argument_group("latent (Phase 6)")
    latent.add_argument("--latent-ae-minutes", type=float_in(0.0), default=TARGET_AUTOENCODER_MINUTES, metavar="MIN",
                        help="minutes of autoencoder training (default: %(default)g)")
    latent.add_argument("--latent-ae-steps", type=int_at_least(1), default=800, metavar="N",
                        help="the autoencoder's train.py --steps (default: %(default)s)")
    latent.add_argument("--latent-minutes", type=float_in(0.0), default=TARGET_LATENT_MINUTES, metavar="MIN",
                        help="minutes of latent diffusion training, and of the pixel model it is compared with "
                        "(default: %(default)g)")
    latent.add_argument("--latent-steps", type=int_at_least(1), default=2000, metavar="N",
                        help="the latent model's train.py --steps (default: %(default)s)")

    text = parser.add_argument_group("text (Phase 7)")
    text.add_argument("--text-dataset", choices=("digits", "digits-rgb"), default="digits",
                      help="the captioned digits to train on (digits-rgb adds colours; default: %(default)s)")
    text.add_argument("--text-ae-minutes", type=float_in(0.0), default=3.0, metavar="MIN",
                      help="minutes of autoencoder training (default: %(default)g)")
    text.add_argument("--text-ae-steps", type=int_at_least(1), default=None, metavar="N",
                      help="the autoencoder's train.py --steps (default: as many as fit --text-ae-minutes, from a "
                      f"{PROBE_STEPS}-step probe)")
    text.add_argument("--text-minutes", type=float_in(0.0), default=7.0, metavar="MIN",
                      help="minutes of text-conditioned training (default: %(default)g)")
    text.add_argument("--text-steps", type=int_at_least(1), default=None, metavar="N",
                      help="the text model's train.py --steps (default: as many as fit --text-minutes, from a "
                      f"{PROBE_STEPS}-step probe)")
    text.add_argument("--text-per-pair", type=int_at_least(1), default=8, metavar="K",
                      help="evaluate.py --per-pair: images per seen digit × attribute pair (default: %(default)s)")
    text.add_argument("--text-args", type=flag_list, default=[], metavar="'FLAGS'",
                      help="for the text section's two train.py runs, e.g. '--num-images 256'")
    text.add_argument("--text-sample-args", type=flag_list, default=[], metavar="'FLAGS'",
                      help="for the text section's evaluate.py and sample.py, e.g. '--steps 2'")

    extra = parser.add_argument_group("extra flags for the sub-commands (quick looks and tests)")
    extra.add_argument("--unet-args", type=flag_list, default=[], metavar="'FLAGS'",
                       help="for bench_unet, e.g. '--baseline standin --steps 3'")
    extra.add_argument("--sampling-args", type=flag_list, default=[], metavar="'FLAGS'",
                       help="for bench_sampling, e.g. '--ddpm-steps 100 --repeats 1'")
    extra.add_argument("--grade-args", type=flag_list, default=[], metavar="'FLAGS'",
                       help="for grade.py, e.g. '--phase 1'")
    extra.add_argument("--train-args", type=flag_list, default=[], metavar="'FLAGS'",
                       help="for the quality section's train.py, e.g. '--steps 600'")
    extra.add_argument("--eval-args", type=flag_list, default=[], metavar="'FLAGS'",
                       help="for the quality and latent sections' evaluate.py of diffusion models, e.g. '--steps 25'")
    extra.add_argument("--latent-args", type=flag_list, default=[], metavar="'FLAGS'",
                       help="for the latent section's three train.py runs, e.g. '--num-images 256'")
    extra.add_argument("--latent-cost-args", type=flag_list, default=[], metavar="'FLAGS'",
                       help="for bench_latent, e.g. '--repeats 1'")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, path in (("--out", args.out), ("--work", args.work)):
        if path is not None and path.exists() and (path.is_dir() != (flag == "--work")):
            wanted = "a folder" if flag == "--work" else "a file name"
            parser.error(f"argument {flag}: {path} exists and is not {wanted}")
    if args.only:
        args.sections = tuple(name for name in SECTIONS if name in args.only)
    else:
        args.sections = tuple(name for name in SECTIONS if name not in (args.skip or ()))
    if not args.sections:
        parser.error(f"argument --skip: nothing left to run (the sections are {', '.join(SECTIONS)})")
    return args


# ---------------------------------------------------------------------------
# Running the sub-commands
# ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the summary table."""

    benchmark: str
    measured: str
    compared_with: str = NOT_APPLICABLE
    ratio: str = NOT_APPLICABLE
    target: str = NOT_APPLICABLE
    verdict: str = NOT_APPLICABLE


@dataclass
class SectionResult:
    """What a section adds to the report: table rows, details, and whether it ran."""

    rows: list[Row] = field(default_factory=list)
    details: str = ""
    failed: bool = False


@dataclass
class Finished:
    """A sub-command that ran: its exit status, wall seconds and where its output went."""

    returncode: int
    seconds: float
    log: Path

    def failure_row(self, benchmark: str) -> Row:
        return Row(benchmark, f"**failed** (exit {self.returncode}; see {self.log.as_posix()})", verdict="failed")


def child_environment(threads: int | None) -> dict[str, str]:
    """The environment of the sub-processes: ours, with the thread count when one was asked for."""
    environment = dict(os.environ)
    if threads is not None:
        environment["OMP_NUM_THREADS"] = str(threads)  # torch's default thread count follows it
    return environment


def run_logged(command: list[str], log: Path, threads: int | None) -> Finished:
    """Run ``command`` with its stdout and stderr in ``log``; time it with the wall clock."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {shlex.join(command)}   (log: {log.as_posix()})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        completed = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=child_environment(threads))
    seconds = time.perf_counter() - start
    print(f"  exit {completed.returncode} after {minutes_and_seconds(seconds)}", file=sys.stderr, flush=True)
    return Finished(completed.returncode, seconds, log)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def minutes_and_seconds(seconds: float) -> str:
    """``75.4`` → ``1 min 15 s``; under a minute, ``42.1 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


def rate(value: float) -> str:
    """Images per second with three significant digits (0.360, 7.82, 302)."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def verdict(met: bool, detail: str = "") -> str:
    return "met" if met else f"**NOT met**{f' ({detail})' if detail else ''}"


# ---------------------------------------------------------------------------
# The sections
# ---------------------------------------------------------------------------


def run_speed_script(args: argparse.Namespace, script: str, extra: list[str], name: str, row) -> SectionResult:
    """Run ``benchmarks.<script>`` with ``--out`` and ``--json`` in the work folder; turn its figures into a row.

    ``row`` maps the script's JSON figures to the table's :class:`Row`; the
    script's own markdown report becomes the section's details.
    """
    report, figures_path = args.work / f"{script}.md", args.work / f"{script}.json"
    command = [sys.executable, "-m", f"tools.benchmarks.{script}", "--out", str(report), "--json", str(figures_path), *extra]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    finished = run_logged(command, args.work / f"{script}.log", args.threads)
    if finished.returncode != 0:
        return SectionResult([finished.failure_row(name)], failed=True)
    return SectionResult([row(read_json(figures_path))], report.read_text(encoding="utf-8"))


def section_unet(args: argparse.Namespace) -> SectionResult:
    """Training throughput: the default U-Net against the course baseline (bench_unet.py)."""
    return run_speed_script(args, "bench_unet", args.unet_args, "training throughput, default U-Net", unet_row)


def unet_row(figures: dict) -> Row:
    default, baseline = figures["default"], figures["baseline"]
    speedup, target = figures["train_speedup"], figures["target_speedup"]
    baseline_name = "diffusers UNet2DModel" if figures["baseline_kind"] == "diffusers" else "stand-in of UNet2DModel"
    return Row(
        "training throughput, default U-Net",
        f"{rate(default['train_images_per_s'])} img/s ({default['step_seconds'] * 1e3:.0f} ms per step of "
        f"{figures['batch_size']})",
        f"{baseline_name}: {rate(baseline['train_images_per_s'])} img/s",
        f"{speedup:.1f}×",
        f"≥ {target:g}×",
        verdict(speedup >= target),
    )


def section_sampling(args: argparse.Namespace) -> SectionResult:
    """Sampling throughput: DDIM with 50 steps against DDPM with all T (bench_sampling.py)."""
    return run_speed_script(args, "bench_sampling", args.sampling_args, "sampling throughput", sampling_row)


def sampling_row(figures: dict) -> Row:
    ddpm, ddim = figures["ddpm"], figures["ddim"]
    model = "demo checkpoint" if figures["from_checkpoint"] else "untrained UNet()"
    return Row(
        f"sampling throughput ({model}, batch {figures['batch_size']})",
        f"DDIM {ddim['steps']} steps: {rate(ddim['images_per_s'])} img/s",
        f"DDPM {ddpm['steps']} steps: {rate(ddpm['images_per_s'])} img/s",
        f"{figures['speedup']:.1f}× (ideal {figures['ideal_speedup']:g}×)",
    )


def section_grading(args: argparse.Namespace) -> SectionResult:
    """Wall time and score of ``grade.py --impl solutions`` (the whole grading suite on the reference)."""
    results_path = args.work / "grade_results.json"
    results_path.unlink(missing_ok=True)
    command = [sys.executable, "grade.py", "--impl", "solutions", "--json", str(results_path), *args.grade_args]
    finished = run_logged(command, args.work / "grade.log", args.threads)
    row = grading_row(finished, read_json(results_path) if results_path.is_file() else None)
    shown = shlex.join(["grade.py", "--impl", "solutions", *args.grade_args])
    details = f"## Grading suite\n\n`{shown}`: exit {finished.returncode}; {row.measured}.\n"
    return SectionResult([row], details, failed=not results_path.is_file())


GRADING_TARGET_SECONDS = 20  # wall time on two cores, the student code confined (README, "For instructors")


def grading_row(finished: Finished, results: dict | None) -> Row:
    """The grading row: wall time, points and checks; full marks is the target (the reference must pass)."""
    name = "grading suite on the reference (`grade.py --impl solutions`)"
    if results is None:
        return finished.failure_row(name)
    tests = results["tests"]
    points = sum(test["max_score"] for test in tests)
    passed = sum(test["status"] == "passed" for test in tests)
    full = finished.returncode == 0 and passed == len(tests) and results["score"] == points
    fast = finished.seconds <= GRADING_TARGET_SECONDS
    return Row(
        name,
        f"{minutes_and_seconds(finished.seconds)}; {results['score']:g}/{points:g} points, "
        f"{passed}/{len(tests)} checks passed",
        target=f"full marks in ≤ {GRADING_TARGET_SECONDS} s",
        verdict=verdict(full and fast, f"exit {finished.returncode}" if not full else "too slow"),
    )


#: pytest's last line: "==== 932 passed, 5 skipped in 279.31s (0:04:39) ====".
PYTEST_SUMMARY = re.compile(r"^=+ (?P<summary>\d+ \w+.*? in [\d.]+s(?: \([\d:]+\))?) =+$", re.MULTILINE)


def pytest_summaries(output: str) -> list[str]:
    """Every pytest summary line in ``output``, without the ``=`` rules (one per pytest run)."""
    return [match.group("summary") for match in PYTEST_SUMMARY.finditer(output)]


def section_make_test(args: argparse.Namespace) -> SectionResult:
    """Wall time of ``make test``, with the summary line of each of its pytest runs."""
    finished = run_logged(["make", "test"], args.work / "make_test.log", args.threads)
    summaries = pytest_summaries(finished.log.read_text(encoding="utf-8", errors="replace"))
    row = make_test_row(finished, summaries)
    lines = ["## make test", "", f"`make test`: exit {finished.returncode} after "
             f"{minutes_and_seconds(finished.seconds)}. Its pytest runs:", ""]
    lines += [f"- {summary}" for summary in summaries] or ["- (no pytest summary found in the log)"]
    return SectionResult([row], "\n".join(lines) + "\n")


def make_test_row(finished: Finished, summaries: list[str]) -> Row:
    passed = finished.returncode == 0
    fast = finished.seconds <= TARGET_MAKE_TEST_MINUTES * 60
    measured = minutes_and_seconds(finished.seconds) + (f"; {'; '.join(summaries)}" if summaries else "")
    if not passed:
        measured += f"; **exit {finished.returncode}** (see {finished.log.as_posix()})"
    return Row(
        "`make test` (tests, checks, mutants, notebooks)",
        measured,
        target=f"passes, ≤ {TARGET_MAKE_TEST_MINUTES:g} min",
        verdict=verdict(passed and fast, "failed" if not passed else "slower"),
    )


# --- time to quality ---------------------------------------------------------


@dataclass
class QualityPoint:
    """One evaluated checkpoint: training step, training minutes, and evaluate.py's metrics."""

    step: int
    minutes: float
    metrics: dict

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


def first_sustained(points: list[QualityPoint], target: float) -> QualityPoint | None:
    """The first point whose accuracy and the next one's both reach ``target`` (None: no such pair).

    Two in a row, so that one lucky evaluation of a few hundred samples (each
    accuracy has a standard error of about 2 points) does not set the time.
    """
    for point, following in zip(points, points[1:]):
        if point.accuracy >= target and following.accuracy >= target:
            return point
    return None


def checkpoint_clock(path: Path) -> tuple[int, float]:
    """(step, minutes of training) stored in a train.py checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state["step"]), float(state["train_seconds"]) / 60


def step_checkpoints(run: Path) -> list[Path]:
    """The run's step_NNNNNN.pt files, in the order of their steps."""
    return sorted(run.glob("step_*.pt"))


def train_quality_run(args: argparse.Namespace) -> tuple[Path, Finished]:
    run = args.work / "quality_run"
    command = [
        sys.executable, "train.py", "--impl", "solutions", "--dataset", "digits", "--data-dir", args.data_dir,
        "--class-conditional", "--channels-last", "--out", str(run), "--overwrite",
        "--steps", str(args.quality_steps), "--time-limit", f"{args.quality_minutes:g}",
        "--checkpoint-every", str(args.quality_every),
        "--sample-every", "0", *args.train_args,
    ]
    return run, run_logged(command, args.work / "quality_train.log", args.threads)


def evaluate_checkpoint(args: argparse.Namespace, checkpoint: Path, num_samples: int) -> tuple[dict | None, Finished]:
    """evaluate.py's metrics.json for ``checkpoint`` at w = 3 (None when evaluate.py failed)."""
    out = args.work / "quality_eval" / f"{checkpoint.stem}_{num_samples}"
    metrics_path = out / "metrics.json"
    metrics_path.unlink(missing_ok=True)
    command = [
        sys.executable, "evaluate.py", "--impl", "solutions", "--checkpoint", str(checkpoint),
        "--data-dir", args.data_dir, "--num-samples", str(num_samples),
        "--guidance-scale", f"{QUALITY_GUIDANCE:g}", "--no-inception", "--out", str(out), *args.eval_args,
    ]
    finished = run_logged(command, out.with_suffix(".log"), args.threads)
    metrics = read_json(metrics_path) if finished.returncode == 0 and metrics_path.is_file() else None
    return metrics, finished


def section_quality(args: argparse.Namespace) -> SectionResult:
    """Train class-conditional, then find when accuracy at w = 3 reaches the target, and measure the end."""
    run, trained = train_quality_run(args)
    name = "time to quality"
    if trained.returncode != 0 or not (run / "last.pt").is_file():
        return SectionResult([trained.failure_row(name)], failed=True)
    curve: list[QualityPoint] = []
    for checkpoint in step_checkpoints(run):
        metrics, finished = evaluate_checkpoint(args, checkpoint, args.quality_samples)
        if metrics is None:
            return SectionResult([finished.failure_row(name)], failed=True)
        curve.append(QualityPoint(*checkpoint_clock(checkpoint), metrics))
        print(f"  step {curve[-1].step}: {curve[-1].minutes:.2f} min, accuracy {curve[-1].accuracy:.1%}",
              file=sys.stderr, flush=True)
        if first_sustained(curve, args.target_accuracy):
            break
    metrics, finished = evaluate_checkpoint(args, run / "last.pt", args.final_samples)
    if metrics is None:
        return SectionResult([finished.failure_row("quality at the end of training")], failed=True)
    final = QualityPoint(*checkpoint_clock(run / "last.pt"), metrics)
    rows = [time_to_quality_row(args, curve), final_quality_row(final)]
    return SectionResult(rows, quality_details(args, curve, final, trained))


def time_to_quality_row(args: argparse.Namespace, curve: list[QualityPoint]) -> Row:
    reached = first_sustained(curve, args.target_accuracy)
    name = f"minutes of training to {args.target_accuracy:.0%} accuracy at w = {QUALITY_GUIDANCE:g}"
    target = f"≤ {TARGET_MINUTES_TO_QUALITY:g} min"
    if reached is None:
        best = max(curve, key=lambda point: point.accuracy, default=None)
        measured = "not reached" + (f" (best {best.accuracy:.1%} at {best.minutes:.1f} min)" if best else "")
        return Row(name, measured, target=target, verdict=verdict(False))
    return Row(
        name,
        f"{reached.minutes:.1f} min (step {reached.step}; {reached.accuracy:.1%} of {reached.metrics['num_samples']})",
        target=target,
        verdict=verdict(reached.minutes <= TARGET_MINUTES_TO_QUALITY),
    )


def final_quality_row(final: QualityPoint) -> Row:
    metrics = final.metrics
    return Row(
        f"quality after {final.minutes:.1f} min of training (step {final.step}), w = {QUALITY_GUIDANCE:g}",
        f"accuracy {metrics['accuracy']:.1%}, Fréchet distance {metrics['frechet_distance']:.1f}, "
        f"precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f} (N = {metrics['num_samples']})",
        f"floor (held-out vs train): FD {metrics['frechet_distance_floor']:.1f}",
        f"FD {metrics['frechet_distance'] / metrics['frechet_distance_floor']:.1f}× the floor",
    )


def quality_details(args: argparse.Namespace, curve: list[QualityPoint], final: QualityPoint, trained: Finished) -> str:
    lines = [
        "## Time to quality",
        "",
        f"`train.py --class-conditional --channels-last --steps {args.quality_steps} "
        f"--time-limit {args.quality_minutes:g} "
        f"--checkpoint-every {args.quality_every} --sample-every 0"
        + (f" {shlex.join(args.train_args)}" if args.train_args else "")
        + f"` on the embedded digits: {final.step} steps, {final.minutes:.1f} min of training "
        f"({minutes_and_seconds(trained.seconds)} wall, with start-up and saving).",
        f"Each checkpoint: `evaluate.py --guidance-scale {QUALITY_GUIDANCE:g} --num-samples {args.quality_samples}` "
        f"(DDIM, the classifier of data/classifiers/), in order until two in a row reach "
        f"{args.target_accuracy:.0%}.",
        "",
        "| step | minutes of training | accuracy | Fréchet distance | precision | recall |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for point in curve + [final]:
        metrics = point.metrics
        lines.append(
            f"| {point.step} | {point.minutes:.2f} | {metrics['accuracy']:.1%} | {metrics['frechet_distance']:.1f} "
            f"| {metrics['precision']:.2f} | {metrics['recall']:.2f} |"
        )
    lines.append(f"\nThe last row is the end of training, on {final.metrics['num_samples']} samples.")
    return "\n".join(lines) + "\n"


def train_run(args: argparse.Namespace, name: str, flags: list[str], minutes: float, steps: int) -> tuple[Path, Finished]:
    """``train.py`` into ``--work``/``name`` for at most ``minutes`` of training (the latent section's runs)."""
    run = args.work / name
    command = [
        sys.executable, "train.py", "--impl", "solutions", "--dataset", "digits", "--data-dir", args.data_dir,
        "--channels-last", "--out", str(run), "--overwrite", "--steps", str(steps), "--time-limit", f"{minutes:g}",
        "--sample-every", "0", *flags, *args.latent_args,
    ]
    return run, run_logged(command, args.work / f"{name}.log", args.threads)


def evaluate_run(args: argparse.Namespace, run: Path, num_samples: int, *flags: str) -> tuple[dict | None, Finished]:
    """evaluate.py's metrics.json for ``run``'s last.pt (None when evaluate.py failed)."""
    out = run / "eval"
    (out / "metrics.json").unlink(missing_ok=True)
    command = [sys.executable, "evaluate.py", "--impl", "solutions", "--checkpoint", str(run / "last.pt"),
               "--data-dir", args.data_dir, "--num-samples", str(num_samples), "--out", str(out), *flags]
    finished = run_logged(command, run.with_name(run.name + "_eval.log"), args.threads)
    metrics_path = out / "metrics.json"
    return (read_json(metrics_path) if finished.returncode == 0 and metrics_path.is_file() else None), finished


def section_latent(args: argparse.Namespace) -> SectionResult:
    """Phase 6: the cost of a latent step, the autoencoder's PSNR, the latent model's quality against pixels'."""
    cost = run_speed_script(args, "bench_latent", args.latent_cost_args, "latent step cost", latent_cost_row)
    rows, failed = list(cost.rows), cost.failed
    ae_run, trained = train_run(args, "latent_ae", ["--train-autoencoder"], args.latent_ae_minutes,
                                args.latent_ae_steps)
    ae, evaluated = evaluate_run(args, ae_run, args.final_samples) if trained.returncode == 0 else (None, trained)
    if ae is None:
        return SectionResult(rows + [evaluated.failure_row("autoencoder PSNR")], cost.details, failed=True)
    ae_minutes = checkpoint_clock(ae_run / "last.pt")[1]
    rows.append(Row(
        f"autoencoder after {ae_minutes:.1f} min of training (32×32 → {'×'.join(map(str, ae['latent_shape']))})",
        f"PSNR {ae['psnr']:.1f} dB, SSIM {ae['ssim']:.3f} on {ae['num_images']} held-out digits; scaled latents' "
        f"std {ae['scaled_latent_std']:.3f}",
        target=f"≥ {TARGET_AUTOENCODER_PSNR:g} dB in ≤ {TARGET_AUTOENCODER_MINUTES:g} min",
        verdict=verdict(ae["psnr"] >= TARGET_AUTOENCODER_PSNR and ae_minutes <= TARGET_AUTOENCODER_MINUTES + 0.05),
    ))
    guided = ["--guidance-scale", f"{QUALITY_GUIDANCE:g}", "--no-inception", *args.eval_args]
    results = {}
    for name, flags in (("latent_run", ["--autoencoder", str(ae_run / "last.pt")]), ("pixel_run", [])):
        run, trained = train_run(args, name, ["--class-conditional", *flags], args.latent_minutes, args.latent_steps
                                 if name == "latent_run" else args.quality_steps)
        metrics, evaluated = evaluate_run(args, run, args.final_samples, *guided) if trained.returncode == 0             else (None, trained)
        if metrics is None:
            return SectionResult(rows + [evaluated.failure_row(f"{name}: quality at w = 3")], cost.details, True)
        results[name] = (metrics, *checkpoint_clock(run / "last.pt"))
    (latent, latent_step, latent_minutes), (pixel, pixel_step, pixel_minutes) = results["latent_run"],         results["pixel_run"]
    rows.append(Row(
        f"latent diffusion after {latent_minutes:.1f} min of training (step {latent_step}), w = {QUALITY_GUIDANCE:g}",
        f"accuracy {latent['accuracy']:.1%}, Fréchet distance {latent['frechet_distance']:.1f} "
        f"(N = {latent['num_samples']}; the autoencoder's {ae_minutes:.1f} min apart)",
        f"pixel space after {pixel_minutes:.1f} min (step {pixel_step}): accuracy {pixel['accuracy']:.1%}, FD "
        f"{pixel['frechet_distance']:.1f}",
        f"FD {latent['frechet_distance'] / pixel['frechet_distance']:.2f}× the pixel model's",
        f"≥ {args.target_accuracy:.0%} in ≤ {TARGET_LATENT_MINUTES:g} min",
        verdict(latent["accuracy"] >= args.target_accuracy and latent_minutes <= TARGET_LATENT_MINUTES + 0.05),
    ))
    return SectionResult(rows, cost.details, failed)


def latent_cost_row(figures: dict) -> Row:
    target = figures["target_speedup"]
    speedups = (figures["train_speedup"], figures["sample_speedup"])
    return Row(
        f"latent step cost ({'×'.join(map(str, figures['latent_shape']))} vs "
        f"{'×'.join(map(str, figures['pixel_shape']))}, batch {figures['batch_size']})",
        f"training {figures['latent_train_with_encoding_ms']:.0f} ms (with encoding), sampling "
        f"{figures['latent_sample_ms']:.0f} ms per step",
        f"pixels: training {figures['pixel_train_ms']:.0f} ms, sampling {figures['pixel_sample_ms']:.0f} ms",
        f"{speedups[0]:.1f}× / {speedups[1]:.1f}×",
        f"≥ {target:g}× each",
        verdict(min(speedups) >= target),
    )


# The text model's recipe, from runs of 7 minutes on two cores (2026-12-07): the default U-Net (spatial
# transformers at level 2 only: 2.4 steps/s at batch 128) beat --attention-levels 1,2 (fewer steps at batch
# 64; at batch 128 about as fast on a later machine, but its slant was lower in the one run) and
# --base-channels 32 (half the steps); batch 128 beat 64 (1700 steps) and 256 (500 steps) on held-out pairs.
# --text-steps (950) and --text-ae-steps (360) were what fits the minutes on that machine; since 2026-12-08
# a short probe sizes both to the minutes of the machine at hand (fitted_steps), so both cosine decays finish.
# The captions' mention rates (provided/captions.py, _MENTION) were tuned on this recipe, with three seeds.
TEXT_RECIPE = ["--batch-size", "128", "--lr", "2e-3", "--schedule", "cosine", "--prediction", "v",
               "--ema-decay", "0.999", "--warmup-steps", "100"]
# The autoencoder's flags per --text-dataset. On the colour digits an L1 autoencoder decodes grey: after
# 960 steps it kept 1.6% of the named ink colours (PSNR 25.0 dB), against 96.1% (33.2 dB) with L2, and
# 83.4% already at step 360 (2026-12-08; IMPLEMENTATION_GUIDE.md §6.3). The grey digits keep the default.
TEXT_AE_RECIPE = {"digits": [], "digits-rgb": ["--reconstruction", "l2"]}


def text_train(args: argparse.Namespace, name: str, flags: list[str], minutes: float,
               steps: int | None) -> tuple[Path, Finished]:
    """``train.py`` on --text-dataset into ``--work``/``name`` for at most ``minutes`` (the text section's runs).

    ``steps`` None: as many as fit ``minutes`` on this machine (:func:`fitted_steps`), so that the
    cosine decay of the learning rate ends with the minutes rather than being cut short by them.
    """
    if steps is None:
        steps, probed = fitted_steps(args, name, flags, minutes)
        if steps is None:
            return args.work / f"{name}_probe", probed
    run = args.work / name
    command = [
        sys.executable, "train.py", "--impl", "solutions", "--dataset", args.text_dataset, "--data-dir",
        args.data_dir, "--channels-last", "--out", str(run), "--overwrite", "--steps", str(steps),
        "--time-limit", f"{minutes:g}", "--sample-every", "0", *flags, *args.text_args,
    ]
    return run, run_logged(command, args.work / f"{name}.log", args.threads)


def fitted_steps(args: argparse.Namespace, name: str, flags: list[str], minutes: float) -> tuple[int | None, Finished]:
    """The steps of ``train.py flags`` that fit ``minutes``: a :data:`PROBE_STEPS`-step run's own clock (first
    steps included, which are the slowest) scaled to :data:`FIT_SHARE` of the minutes; None when the probe failed."""
    probe, finished = text_train(args, f"{name}_probe", flags, minutes, PROBE_STEPS)
    if finished.returncode != 0 or not (probe / "last.pt").is_file():
        return None, finished
    done, used = checkpoint_clock(probe / "last.pt")
    fitted = int(FIT_SHARE * minutes * done / max(used, 1e-9))
    print(f"  {done} steps took {used * 60:.1f} s: {fitted} steps fit {FIT_SHARE:.0%} of {minutes:g} min",
          file=sys.stderr, flush=True)
    return max(fitted, PROBE_STEPS), finished


def sampling_seconds(args: argparse.Namespace, run: Path, guidance: float) -> tuple[float | None, Finished]:
    """sample.py's own timing of 64 prompted images (DDIM 50) at ``guidance`` (None when it failed)."""
    tensor = run / f"speed_w{guidance:g}.pt"
    tensor.unlink(missing_ok=True)
    prompts = [flag for text in SPEED_PROMPTS for flag in ("--prompt", text)]
    command = [sys.executable, "sample.py", "--impl", "solutions", "--checkpoint", str(run / "last.pt"),
               "--num-samples", "64", "--batch-size", "64", "--guidance-scale", f"{guidance:g}", *prompts,
               "--out", str(run / f"speed_w{guidance:g}.png"), "--save-tensor", str(tensor), *args.text_sample_args]
    finished = run_logged(command, args.work / f"text_speed_w{guidance:g}.log", args.threads)
    if finished.returncode != 0 or not tensor.is_file():
        return None, finished
    return float(torch.load(tensor, map_location="cpu", weights_only=False)["seconds"]), finished


def section_text(args: argparse.Namespace) -> SectionResult:
    """Phase 7: prompt adherence of a latent text model after ≤ 10 min of training in all, and its sampling speed."""
    ae_run, trained = text_train(args, "text_ae", ["--train-autoencoder", *TEXT_AE_RECIPE[args.text_dataset]],
                                 args.text_ae_minutes, args.text_ae_steps)
    if trained.returncode != 0:
        return SectionResult([trained.failure_row("text: autoencoder")], failed=True)
    run, trained = text_train(args, "text_run", ["--captions", "--autoencoder", str(ae_run / "last.pt"), *TEXT_RECIPE],
                              args.text_minutes, args.text_steps)
    if trained.returncode != 0:
        return SectionResult([trained.failure_row("text: text-conditioned model")], failed=True)
    out = run / "eval"
    (out / "metrics.json").unlink(missing_ok=True)
    command = [sys.executable, "evaluate.py", "--impl", "solutions", "--checkpoint", str(run / "last.pt"),
               "--data-dir", args.data_dir, "--per-pair", str(args.text_per_pair), "--guidance-scale",
               f"{QUALITY_GUIDANCE:g}", "--out", str(out), *args.text_sample_args]
    evaluated = run_logged(command, args.work / "text_eval.log", args.threads)
    if evaluated.returncode != 0 or not (out / "metrics.json").is_file():
        return SectionResult([evaluated.failure_row("text: prompt adherence")], failed=True)
    metrics = read_json(out / "metrics.json")
    rows = text_rows(metrics, checkpoint_clock(ae_run / "last.pt"), checkpoint_clock(run / "last.pt"))
    guided, finished = sampling_seconds(args, run, QUALITY_GUIDANCE)
    plain, plain_finished = sampling_seconds(args, run, 1.0) if guided is not None else (None, finished)
    if guided is None or plain is None:
        return SectionResult(rows + [(finished if guided is None else plain_finished).failure_row(
            "text: sampling 64 prompted images")], failed=True)
    rows.append(Row(
        f"64 prompted images, DDIM 50, w = {QUALITY_GUIDANCE:g} (`sample.py --prompt` ×8, batch 64)",
        f"{guided:.1f} s ({rate(64 / guided)} img/s)",
        f"w = 1 (no guidance, half the network batch): {plain:.1f} s",
        f"{guided / plain:.2f}×",
        f"≤ {TARGET_TEXT_SAMPLE_SECONDS:g} s",
        verdict(guided <= TARGET_TEXT_SAMPLE_SECONDS),
    ))
    details = (out / "adherence.md").read_text(encoding="utf-8") if (out / "adherence.md").is_file() else ""
    return SectionResult(rows, details)


def text_rows(metrics: dict, autoencoder: tuple[int, float], text_model: tuple[int, float]) -> list[Row]:
    """The adherence row (digit and each attribute against the targets) and the held-out row; the two
    trainings as (step, minutes) of their checkpoints (:func:`checkpoint_clock`)."""
    minutes = (autoencoder[1], text_model[1])
    summary, floor = metrics["adherence"], metrics["floor"]
    seen = summary["seen"]
    kinds = [kind for kind in KINDS if kind in seen["by_kind"]]  # metrics.json sorts its keys
    digit = summary["all"]["digit"]
    attributes = {kind: seen["by_kind"][kind]["attribute"] for kind in kinds}
    total = sum(minutes)
    within_time = total <= TARGET_TEXT_MINUTES + 0.05
    met = digit >= TARGET_TEXT_DIGIT and min(attributes.values()) >= TARGET_TEXT_ATTRIBUTE and within_time
    adherence_row = Row(
        f"prompt adherence after {total:.1f} min of training in all (autoencoder {minutes[0]:.1f}, step "
        f"{autoencoder[0]} + text model {minutes[1]:.1f}, step {text_model[0]}), {metrics['dataset']}, "
        f"w = {metrics['guidance_scale']:g}",
        f"digit {digit:.1%}; " + ", ".join(f"{kind} {value:.1%}" for kind, value in attributes.items())
        + f" (seen pairs; N = {metrics['num_samples']})",
        "; ".join(f"{name}: digit {floor[key]['digit']:.1%}, " + ", ".join(
            f"{kind} {floor[key]['by_kind'][kind]['attribute']:.1%}" for kind in kinds)
            for key, name in (("real", "real digits"), ("autoencoded", "through the autoencoder")) if key in floor),
        target=f"digit ≥ {TARGET_TEXT_DIGIT:.0%}, each attribute ≥ {TARGET_TEXT_ATTRIBUTE:.0%}, in ≤ "
        f"{TARGET_TEXT_MINUTES:g} min",
        verdict=verdict(met, "" if within_time else "over time"),
    )
    held = summary["held_out"]
    gap = 100 * (held["both"] - seen["both"])
    held_row = Row(
        "held-out pairs against seen pairs (digit and attribute both followed)",
        f"held-out {held['both']:.1%} (N = {held['count']})",
        f"seen {seen['both']:.1%} (N = {seen['count']})",
        f"{gap:+.1f} points",
        f"at most {TARGET_HELD_OUT_POINTS:g} points below seen",
        verdict(gap >= -TARGET_HELD_OUT_POINTS),
    )
    return [adherence_row, held_row]


SECTION_RUNNERS = {
    "unet": section_unet,
    "sampling": section_sampling,
    "grading": section_grading,
    "make-test": section_make_test,
    "quality": section_quality,
    "latent": section_latent,
    "text": section_text,
}


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def summary_table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | measured | compared with (same run) | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = (row.benchmark, row.measured, row.compared_with, row.ratio, row.target, row.verdict)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def machine_line(threads: int | None, load: float | None) -> str:
    """The machine, as the speed scripts describe it, with the torch threads of the sub-processes."""
    return machine_description(threads if threads is not None else torch.get_num_threads(), load)


def demote_headings(markdown: str) -> str:
    """Every markdown heading one level deeper: the sections' reports sit under the report's own heading."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def format_report(args: argparse.Namespace, results: dict[str, SectionResult], seconds: float, load: float | None) -> str:
    """The whole report: heading, one summary table, the machine, then each section's details."""
    rows = [row for result in results.values() for row in result.rows]
    parts = [
        "## Benchmarks",
        f"`python -m tools.benchmarks.run_all` on {datetime.date.today().isoformat()}: sections "
        f"{', '.join(results)}; the whole run took {minutes_and_seconds(seconds)}.",
        summary_table(rows).rstrip("\n"),
        machine_line(args.threads, load),
    ]
    parts += [demote_headings(result.details.strip("\n")) for result in results.values() if result.details]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, print the report (and write it to --out); 1 if a section failed to run."""
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    load = load_average()  # before our own work adds to it
    start = time.perf_counter()
    results = {}
    for name in args.sections:
        print(f"== {name}", file=sys.stderr, flush=True)
        results[name] = SECTION_RUNNERS[name](args)
    report = format_report(args, results, time.perf_counter() - start, load)
    print(report, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
        print(f"(report written to {args.out})", file=sys.stderr)
    failed = [name for name, result in results.items() if result.failed]
    if failed:
        print(f"sections that failed to run: {', '.join(failed)} (see their logs in {args.work.as_posix()})",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
