"""Benchmark sampling speed on the CPU: DDPM with all T steps against DDIM with 50 steps.

Usage (from the repository root):
    python -m tools.benchmarks.bench_sampling                       # runs/demo/last.pt, batch 16, 1 warm-up + 3 timed runs
    python -m tools.benchmarks.bench_sampling --out runs/bench_sampling.md
    python -m tools.benchmarks.bench_sampling --checkpoint runs/mine/last.pt --ddim-steps 25
    python -m tools.benchmarks.bench_sampling --ddpm-steps 100 --repeats 1   # a quick look

The model is the EMA network of a training checkpoint (by default the demo's,
``runs/demo/last.pt``, which ``make demo`` writes), with the noise schedule, T
and prediction type the checkpoint was trained with. Both samplers are the
reference ones, ``solutions.diffusion.ddpm_sample`` and ``ddim_sample`` (η = 0),
run on the same batch size, threads and model.

When the default checkpoint does not exist (``make demo`` has not been run), the
benchmark uses a freshly initialised ``UNet()`` with the cosine schedule, T = 1000
and v-prediction, and says so in the report: the speed of sampling depends on
the network's shape and the number of steps, not on the values of its weights.
A ``--checkpoint`` given explicitly must exist.

For each sampler the benchmark reports:

* **network calls/image**: the number of steps; each step calls the network once
  on the whole batch.
* **s/batch**: seconds to sample one batch from x_T to x_0, the median of the
  timed runs.
* **images/s**: batch size / s/batch.
* **ms/step**: s/batch / steps, the cost of one step (one network call plus the
  sampler's own arithmetic and, for DDPM, drawing the noise z).

and the ratio DDIM images/s / DDPM images/s next to the ideal ratio DDPM steps /
DDIM steps (1000 / 50 = 20 by default), which it would be if every step cost the
same. The gap between the two is the difference in the two samplers' per-step
overhead. The script always exits 0 after a run: it measures, it does not test.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from provided.cli import int_at_least
from tools.benchmarks.bench_unet import (
    add_common_flags, load_average, machine_description, refuse_folder_outputs, write_outputs,
)
from utils import seed_everything
from solutions.diffusion import ddim_sample, ddpm_sample
from solutions.noise_schedule import NoiseSchedule
from solutions.unet import UNet, count_parameters

#: The checkpoint ``make demo`` writes.
DEFAULT_CHECKPOINT = Path("runs/demo/last.pt")
#: Without a checkpoint: the schedule, T and prediction of the demo's training.
FALLBACK_CONFIG = dict(schedule="cosine", timesteps=1000, prediction="v")
#: Side of the images when a checkpoint's config does not say (the digits are 28×28).
DEFAULT_IMAGE_SIZE = 28
#: Keys a checkpoint must hold for this benchmark.
REQUIRED_KEYS = ("config", "model_config", "ema")


# ---------------------------------------------------------------------------
# The model under test
# ---------------------------------------------------------------------------


@dataclass
class Setup:
    """The network, its schedule and how it was trained, and where they came from."""

    model: nn.Module
    schedule: NoiseSchedule
    prediction: str
    image_shape: tuple[int, int, int]
    source: str  # a sentence for the report
    from_checkpoint: bool
    num_classes: int = 0


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message says why."""


def load_checkpoint(path: Path) -> Setup:
    """The EMA network of a training checkpoint, with its schedule, T and prediction type.

    The EMA weights are loaded strictly into a fresh ``UNet(**model_config)``, so
    a checkpoint of another architecture is refused rather than half-loaded.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, truncated, or holds pickled objects
        raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks {', '.join(repr(key) for key in missing)}; "
            "expected a training checkpoint such as runs/demo/last.pt"
        )
    config, model_config = state["config"], dict(state["model_config"])
    try:
        schedule_name, timesteps, prediction = config["schedule"], int(config["timesteps"]), config["prediction"]
    except KeyError as error:
        raise CheckpointError(f"checkpoint {path}: its config lacks {error}") from None
    if model_config.get("cond_channels"):
        raise CheckpointError(
            f"checkpoint {path} is an image-conditioned model (cond_channels="
            f"{model_config['cond_channels']}); this benchmark samples unconditional or class-conditional models only"
        )
    try:
        model = UNet(**model_config)
        model.load_state_dict(state["ema"], strict=True)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {path}: its EMA weights do not fit UNet(**model_config): {error}") from None
    schedule = NoiseSchedule.from_name(schedule_name, timesteps, dtype=torch.float32)
    size = int(config.get("image_size", DEFAULT_IMAGE_SIZE))
    step = state.get("step")
    trained = f", {step} training steps" if step is not None else ""
    return Setup(
        model=model,
        schedule=schedule,
        prediction=prediction,
        image_shape=(model.in_channels, size, size),
        source=f"checkpoint `{path.as_posix()}` (EMA weights{trained})",
        from_checkpoint=True,
        num_classes=model.num_classes,
    )


def fallback_setup(path: Path) -> Setup:
    """A freshly initialised ``UNet()`` with the demo's schedule, T and prediction."""
    model = UNet()
    schedule = NoiseSchedule.from_name(
        FALLBACK_CONFIG["schedule"], FALLBACK_CONFIG["timesteps"], dtype=torch.float32
    )
    return Setup(
        model=model,
        schedule=schedule,
        prediction=FALLBACK_CONFIG["prediction"],
        image_shape=(model.in_channels, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE),
        source=(
            f"**No checkpoint at `{path.as_posix()}`** (run `make demo` to write it): a freshly initialised "
            f"`UNet()` with the {FALLBACK_CONFIG['schedule']} schedule, T = {FALLBACK_CONFIG['timesteps']}, "
            f"{FALLBACK_CONFIG['prediction']}-prediction. The speed does not depend on the weights, only on "
            "the network's shape and the number of steps; the images would be noise."
        ),
        from_checkpoint=False,
    )


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read and check the command line and load the model; bad values exit with status 2 and a message.

    Adds ``args.setup`` (a :class:`Setup`) and resolves ``args.ddpm_steps`` to T when not given.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tools.benchmarks.bench_sampling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"training checkpoint whose EMA weights to sample with (default {DEFAULT_CHECKPOINT.as_posix()}; "
        "when that one is missing, an untrained UNet())",
    )
    parser.add_argument(
        "--batch-size", type=int_at_least(1), default=16, help="images sampled together (default 16)"
    )
    parser.add_argument(
        "--ddpm-steps",
        type=int_at_least(1),
        default=None,
        help="DDPM steps (default: T, all of them; fewer only for a quick look)",
    )
    parser.add_argument(
        "--ddim-steps", type=int_at_least(1), default=50, help="DDIM steps, at most T (default 50)"
    )
    parser.add_argument(
        "--repeats",
        type=int_at_least(1),
        default=3,
        help="timed sampling runs per sampler; the median is reported (default 3)",
    )
    parser.add_argument(
        "--warmup", type=int_at_least(0), default=1, help="untimed sampling runs per sampler first (default 1)"
    )
    add_common_flags(parser, seed_help="seed of x_T and of DDPM's noise (default 0)")
    args = parser.parse_args(argv)

    refuse_folder_outputs(parser, args, "bench_sampling")

    path = DEFAULT_CHECKPOINT if args.checkpoint is None else args.checkpoint
    if args.checkpoint is None and not path.exists():
        args.setup = fallback_setup(path)
    elif not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        parser.error(f"--checkpoint {path} {what} (`make demo` writes {DEFAULT_CHECKPOINT.as_posix()})")
    else:
        try:
            args.setup = load_checkpoint(path)
        except CheckpointError as error:
            parser.error(f"--checkpoint: {error}")

    timesteps = args.setup.schedule.num_timesteps
    if args.ddpm_steps is None:
        args.ddpm_steps = timesteps
    for flag, steps in (("--ddpm-steps", args.ddpm_steps), ("--ddim-steps", args.ddim_steps)):
        if steps > timesteps:
            parser.error(f"{flag} {steps} is more than the model's T = {timesteps} diffusion steps")
    return args


# ---------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------


@dataclass
class Sampler:
    """One sampler under test and the seconds of its timed runs."""

    label: str
    steps: int
    run: Callable[[], torch.Tensor]
    times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Median seconds per batch (the median ignores a stray slow run)."""
        return statistics.median(self.times)

    def images_per_second(self, batch_size: int) -> float:
        return batch_size / self.seconds


def make_samplers(args: argparse.Namespace) -> list[Sampler]:
    """DDPM and DDIM on the same model, schedule, batch shape and prediction type.

    Each run seeds its own generator, so every run of a sampler starts from the
    same x_T and draws the same noise: the runs do the same work.
    """
    setup = args.setup
    shape = (args.batch_size, *setup.image_shape)
    labels = None
    if setup.num_classes:
        labels = torch.arange(args.batch_size, dtype=torch.int64) % setup.num_classes
    common = dict(prediction=setup.prediction, device="cpu", class_labels=labels)

    def ddpm() -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)
        return ddpm_sample(setup.model, setup.schedule, shape, num_steps=args.ddpm_steps, generator=generator, **common)

    def ddim() -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)
        return ddim_sample(
            setup.model, setup.schedule, shape, num_steps=args.ddim_steps, eta=0.0, generator=generator, **common
        )

    return [
        Sampler(f"DDPM, {args.ddpm_steps} steps", args.ddpm_steps, ddpm),
        Sampler(f"DDIM, {args.ddim_steps} steps (η = 0)", args.ddim_steps, ddim),
    ]


def run_interleaved(samplers: list[Sampler], warmup: int, repeats: int) -> None:
    """Time every sampler's full runs, alternating between them: A B, B A, A B, …

    A slow spell of the machine (another program, the CPU clocking down) then
    falls on both samplers rather than on one: with the defaults a DDPM run
    lasts ~50 times as long as a DDIM run, so timing all DDPM runs first and then
    all DDIM runs would compare two different stretches of time. The first
    ``warmup`` rounds are not recorded: they pay one-off costs (allocating
    memory, choosing convolution algorithms). CPU operations finish before they
    return, so the wall-clock difference around a run is its time.
    """
    for round_index in range(warmup + repeats):
        order = samplers if round_index % 2 == 0 else samplers[::-1]
        for sampler in order:
            start = time.perf_counter()
            sampler.run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                sampler.times.append(elapsed)
            print(f"  {sampler.label}: {elapsed:.2f} s", file=sys.stderr, flush=True)
        timed = max(0, round_index + 1 - warmup)
        print(f"  round {round_index + 1}/{warmup + repeats} done ({timed} timed)", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def figures(value: float, min_decimals: int) -> str:
    """``value`` with at least four significant digits and ``min_decimals`` decimals.

    Tiny runs take milliseconds and long ones minutes; four digits keep the ratio
    of two printed numbers true to the ratio of the measured ones.
    """
    decimals = max(min_decimals, 3 - math.floor(math.log10(value))) if value > 0 else min_decimals
    return f"{value:.{decimals}f}"


def format_report(
    args: argparse.Namespace, samplers: list[Sampler], threads: int, load: float | None, seconds: float
) -> str:
    """The markdown report: model, setup, table, ratio against the ideal, notes, machine."""
    setup = args.setup
    ddpm, ddim = samplers
    channels, height, width = setup.image_shape
    lines = ["## Sampling benchmark: DDPM vs DDIM", ""]
    lines += [
        f"Model: {setup.source}.",
        f"UNet with {count_parameters(setup.model):,} parameters; {setup.schedule.name or 'custom'} schedule, "
        f"T = {setup.schedule.num_timesteps}, {setup.prediction}-prediction.",
        f"Batch {args.batch_size} of {channels}×{height}×{width}; median of {args.repeats} timed run(s) per sampler "
        f"after {args.warmup} warm-up run(s), the two samplers interleaved; seed {args.seed}; "
        f"the whole benchmark took {seconds:.0f} s.",
        "",
        "| sampler | network calls/image | s/batch | images/s | ms/step |",
        "|---|---:|---:|---:|---:|",
    ]
    for sampler in samplers:
        lines.append(
            f"| {sampler.label} | {sampler.steps} | {figures(sampler.seconds, 2)} "
            f"| {figures(sampler.images_per_second(args.batch_size), 1)} "
            f"| {sampler.seconds / sampler.steps * 1e3:.1f} |"
        )
    measured = ddim.images_per_second(args.batch_size) / ddpm.images_per_second(args.batch_size)
    ideal = ddpm.steps / ddim.steps
    lines += [
        "",
        f"DDIM vs DDPM: {measured:.2f}× the images/s (ideal from the step counts: "
        f"{ddpm.steps} / {ddim.steps} = {ideal:.2f}×; measured / ideal = {measured / ideal:.0%})",
        "",
        "images/s = batch / s/batch; ms/step = s/batch / steps, one network call on the batch plus the sampler's "
        "own arithmetic (DDPM also draws a fresh noise z every step). Measured / ideal below 100% means a DDIM "
        "step costs more than a DDPM step, above 100% that it costs less.",
    ]
    cores = os.cpu_count() or 1
    if load is not None and load > cores:
        lines.append(
            f"**Busy machine**: the load average ({load:.1f}) was above the {cores} cores, so other programs "
            "competed for the CPU. The absolute numbers are low and noisy; with more than one torch thread, "
            "a step can take many times longer whenever one of its threads waits for a core (try `--threads 1`)."
        )
    lines.append(machine_description(threads, load))
    return "\n".join(lines) + "\n"


def results(args: argparse.Namespace, samplers: list[Sampler], threads: int, load: float | None) -> dict:
    """The figures of the report, for ``--json``: both samplers and the measured and ideal ratios."""
    ddpm, ddim = samplers

    def sampler_figures(sampler: Sampler) -> dict:
        return {
            "label": sampler.label,
            "steps": sampler.steps,
            "seconds_per_batch": sampler.seconds,
            "images_per_s": sampler.images_per_second(args.batch_size),
        }

    return {
        "benchmark": "bench_sampling",
        "model": args.setup.source,
        "from_checkpoint": args.setup.from_checkpoint,
        "batch_size": args.batch_size,
        "ddpm": sampler_figures(ddpm),
        "ddim": sampler_figures(ddim),
        "speedup": ddim.images_per_second(args.batch_size) / ddpm.images_per_second(args.batch_size),
        "ideal_speedup": ddpm.steps / ddim.steps,
        "threads": threads,
        "load_average": load,
    }


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the markdown report (and write it to --out); return 0."""
    args = parse_args(argv)
    load = load_average()  # before our own work adds to it
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch threads: {threads}", file=sys.stderr)
    if not args.setup.from_checkpoint:
        print(
            f"no checkpoint at {DEFAULT_CHECKPOINT.as_posix()}: timing an untrained UNet() instead "
            "(the speed does not depend on the weights; run `make demo` to write the checkpoint)",
            file=sys.stderr,
        )
    seed_everything(args.seed)
    args.setup.model.eval()
    samplers = make_samplers(args)
    start = time.perf_counter()
    with torch.inference_mode():
        run_interleaved(samplers, args.warmup, args.repeats)
    report = format_report(args, samplers, threads, load, time.perf_counter() - start)
    print(report, end="")
    write_outputs(args, report, results(args, samplers, threads, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
