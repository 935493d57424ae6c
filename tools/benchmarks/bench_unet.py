"""Benchmark the default U-Net against the U-Net a learner would otherwise pick.

Usage (from the repository root):
    python -m tools.benchmarks.bench_unet                      # batch 128, 2 warm-up + 5 timed steps
    python -m tools.benchmarks.bench_unet --steps 10 --out runs/bench_unet.md
    python -m tools.benchmarks.bench_unet --baseline standin   # no diffusers needed
    python -m tools.benchmarks.bench_unet --channels-last      # both models in channels_last memory format

The two contenders:

* **default**: ``solutions.unet.UNet()``, the configuration ``DEFAULT_CONFIG`` that
  the exercises train on 28×28 digits (16 base channels, three levels, one
  residual block per level, attention at 7×7 only).
* **baseline**: what a learner would otherwise reach for, the U-Net of the
  Hugging Face diffusion course, unit 1: diffusers' ``UNet2DModel`` with
  32/64/64 channels, two residual blocks per level and attention at 14×14 and
  7×7. When diffusers is not installed (it is not a requirement of the
  exercises) a **stand-in** of the same shape is built from our own ``UNet``:
  same channels, blocks, attention levels, heads and GroupNorm groups, hence the
  same number of parameters and of multiply-accumulates.

For each one the benchmark reports:

* **parameters**: trainable weights and biases; they set the memory of the
  weights, of their gradients and of AdamW's two moment buffers (4 copies).
* **MACs/image**: multiply-accumulate operations of one forward pass on one
  image, counted by ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2).
  It counts the convolutions and the matrix products (linear layers, attention);
  normalisations, activations, softmax and additions are not counted. On a CPU
  those are most of the arithmetic, but not all of the time.
* **train img/s** and **step time**: one full training step on a batch of 128
  (forward, MSE loss, backward, AdamW step, zero_grad), the median over the
  timed steps; images/s = batch / step time.
* **forward img/s**: one forward pass in eval mode under ``torch.inference_mode``
  (no autograd bookkeeping), as when sampling.
* **50-step samples/s**: a 50-step DDIM sample calls the network 50 times per
  image, so finished samples/s = forward img/s / 50 (the sampler's own
  arithmetic is negligible next to the network's).

The issue this measures asks that the default trains at least 3× faster per
step than the baseline on the same CPU. The script prints whether it does, but
always exits 0: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from provided.cli import int_at_least
from provided.files import atomic_write
from utils import seed_everything
from solutions.unet import UNet, count_parameters

#: One MNIST-sized grey image: (channels, height, width).
IMAGE_SHAPE = (1, 28, 28)
#: Training timesteps t are drawn from [0, NUM_TIMESTEPS), as in the exercises.
NUM_TIMESTEPS = 1000
#: Network calls per image of a DDIM sample, for the "50-step samples/s" column.
DDIM_STEPS = 50
#: The issue's target: the default's training step at least this many times faster.
TARGET_SPEEDUP = 3.0
#: Learning rate of the AdamW optimiser (it does not change the timing, only the weights).
LEARNING_RATE = 1e-4

#: The Hugging Face diffusion course, unit 1: its UNet2DModel for 28×28 digits.
DIFFUSERS_CONFIG = dict(
    sample_size=28,
    in_channels=1,
    out_channels=1,
    layers_per_block=2,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
)
#: The same shape built from our own UNet: 32·(1, 2, 2) channels, 2 blocks per level,
#: attention at levels 1 and 2, heads of 8 channels and 32 GroupNorm groups as in diffusers.
STANDIN_CONFIG = dict(
    base_channels=32,
    channel_mults=(1, 2, 2),
    num_res_blocks=2,
    attention_levels=(1, 2),
    num_heads=8,
    groups=32,
)
INSTALL_HINT = ".venv/bin/pip install -r tools/benchmarks/requirements.txt"


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def add_common_flags(parser: argparse.ArgumentParser, seed_help: str) -> None:
    """The flags every benchmark has: --threads, --seed, --out (the report) and --json (the figures)."""
    parser.add_argument(
        "--threads",
        type=int_at_least(1),
        default=torch.get_num_threads(),
        help=f"CPU threads for torch (default: torch's choice here, {torch.get_num_threads()})",
    )
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown report to this file")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the measured figures to this JSON file (for run_all)"
    )


def refuse_folder_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace, stem: str) -> None:
    """--out and --json name files: a folder is a flag error that suggests a file name inside it."""
    for flag, path, suffix in (("--out", args.out, ".md"), ("--json", args.json, ".json")):
        if path is not None and path.is_dir():
            parser.error(f"{flag} {path} is a folder; give a file name such as {path / (stem + suffix)}")


def import_diffusers_unet() -> tuple[type | None, str]:
    """Return (diffusers' ``UNet2DModel`` class, "") or (None, why it could not be imported)."""
    try:
        from diffusers import UNet2DModel
    except Exception as error:  # not installed, or an install that fails to import
        return None, f"{type(error).__name__}: {error}"
    return UNet2DModel, ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read and check the command line; bad values exit with status 2 and a message.

    Adds ``args.diffusers_class`` (the class to build, or None for the stand-in) and
    ``args.fallback_reason`` (why the stand-in replaced diffusers by default, else "").
    """
    parser = argparse.ArgumentParser(
        prog="python -m tools.benchmarks.bench_unet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--batch-size", type=int_at_least(1), default=128, help="images per step (default 128)"
    )
    parser.add_argument(
        "--steps", type=int_at_least(1), default=5, help="timed steps per model; the median is reported (default 5)"
    )
    parser.add_argument(
        "--warmup", type=int_at_least(0), default=2, help="untimed steps per model before the timed ones (default 2)"
    )
    parser.add_argument(
        "--baseline",
        choices=("diffusers", "standin"),
        default=None,
        help="the model to compare with: diffusers' UNet2DModel, or our UNet in the same shape "
        "(default: diffusers if it can be imported, else the stand-in)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="run both models and their inputs in channels_last memory format"
    )
    add_common_flags(parser, seed_help="seed of the weights and of the random batch (default 0)")
    args = parser.parse_args(argv)

    refuse_folder_outputs(parser, args, "bench_unet")

    args.diffusers_class, args.fallback_reason = None, ""
    if args.baseline in (None, "diffusers"):
        unet_class, reason = import_diffusers_unet()
        if unet_class is not None:
            args.baseline, args.diffusers_class = "diffusers", unet_class
        elif args.baseline == "diffusers":
            parser.error(
                f"--baseline diffusers needs the diffusers package, which could not be imported "
                f"({reason}). Install it with `{INSTALL_HINT}`, or pass --baseline standin."
            )
        else:
            args.baseline, args.fallback_reason = "standin", reason
    return args


# ---------------------------------------------------------------------------
# The two models
# ---------------------------------------------------------------------------


class DiffusersAdapter(nn.Module):
    """Give diffusers' ``UNet2DModel`` our calling convention: ``model(x, t)`` returns a tensor.

    ``UNet2DModel`` returns an output object whose ``.sample`` is the prediction.
    The adapter adds no parameters and no arithmetic.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner(x, t).sample


@dataclass
class Contender:
    """One model under test, its optimiser, and what was measured about it."""

    label: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    parameters: int = 0
    macs: int = 0
    step_times: list[float] = field(default_factory=list)
    forward_times: list[float] = field(default_factory=list)

    @property
    def step_time(self) -> float:
        """Median seconds of one training step (the median ignores a stray slow step)."""
        return statistics.median(self.step_times)

    @property
    def forward_time(self) -> float:
        """Median seconds of one forward pass of the whole batch."""
        return statistics.median(self.forward_times)


def build_baseline(args: argparse.Namespace) -> tuple[str, nn.Module]:
    """The baseline's table label and model (diffusers' UNet2DModel, or the stand-in)."""
    if args.baseline == "diffusers":
        return "baseline: diffusers UNet2DModel", DiffusersAdapter(args.diffusers_class(**DIFFUSERS_CONFIG))
    return "baseline: stand-in UNet (diffusers' shape)", UNet(in_channels=IMAGE_SHAPE[0], **STANDIN_CONFIG)


def make_contender(label: str, model: nn.Module, channels_last: bool) -> Contender:
    """Put a model in the requested memory format and give it its own AdamW optimiser."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    return Contender(label, model, optimizer)


# ---------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one call ``model(*inputs)``, counted by FlopCounterMode.

    FlopCounterMode watches the operators a forward pass runs and adds up the
    floating-point operations of the convolutions and the matrix products
    (including ``scaled_dot_product_attention``); one multiply-accumulate is two
    FLOPs, so MACs = FLOPs / 2. Biases, normalisations, activations, softmax and
    elementwise additions are not counted. The model's train/eval mode is left
    as it is, and no gradients are recorded.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def make_batch(batch_size: int, channels_last: bool, seed: int) -> tuple[torch.Tensor, ...]:
    """A random batch (x, t, target): images, int64 timesteps in [0, 1000), and the target noise.

    The values do not matter for the timing, only the shapes and dtypes; both
    models get the very same batch.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *IMAGE_SHAPE, generator=generator)
    t = torch.randint(0, NUM_TIMESTEPS, (batch_size,), dtype=torch.int64, generator=generator)
    target = torch.randn(batch_size, *IMAGE_SHAPE, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        target = target.contiguous(memory_format=torch.channels_last)
    return x, t, target


def training_step(contender: Contender, x: torch.Tensor, t: torch.Tensor, target: torch.Tensor) -> None:
    """One full optimisation step, as the training loop of Phase 3 runs it.

    forward → MSE loss against the target → backward → AdamW update → zero the
    gradients. Timing all of it (not just the forward) is what matters for how
    long training takes: the backward pass costs about twice the forward, and
    AdamW touches every parameter several times.
    """
    prediction = contender.model(x, t)
    loss = F.mse_loss(prediction, target)
    loss.backward()
    contender.optimizer.step()
    contender.optimizer.zero_grad(set_to_none=True)


def forward_pass(contender: Contender, x: torch.Tensor, t: torch.Tensor) -> None:
    """One forward pass, as a sampler runs it (the caller sets eval mode and inference_mode)."""
    contender.model(x, t)


def run_interleaved(
    contenders: list[Contender],
    work: Callable[[Contender], None],
    record: Callable[[Contender], list[float]],
    warmup: int,
    steps: int,
    what: str,
) -> None:
    """Time ``work`` for every contender, alternating between them: A B, B A, A B, …

    Timing all of A's steps and then all of B's would let a slow spell of the
    machine (another program, the CPU clocking down as it warms up) land on one
    model only. Alternating — and flipping the order every round — spreads such
    noise evenly over both. The first ``warmup`` rounds are not recorded: they
    pay one-off costs (memory allocation, choosing convolution algorithms,
    creating AdamW's buffers).

    CPU operations finish before they return, so a wall-clock difference
    around the call is the time of the step (on a GPU one would have to
    synchronise first).
    """
    for round_index in range(warmup + steps):
        order = contenders if round_index % 2 == 0 else contenders[::-1]
        for contender in order:
            start = time.perf_counter()
            work(contender)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                record(contender).append(elapsed)
        timed = max(0, round_index + 1 - warmup)
        print(f"  {what}: round {round_index + 1}/{warmup + steps} ({timed} timed)", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as ``N.N×``."""
    return f"{numerator / denominator:.1f}×"


def load_average() -> float | None:
    """The 1-minute load average (runnable processes, Unix only), or None where unknown.

    A load above the number of cores means other programs were competing for the
    CPU: the absolute img/s are then low, and only the ratios stay meaningful.
    """
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_model() -> str:
    """The CPU's model name where the system says it (Linux), else the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def memory_gib() -> float | None:
    """The machine's memory in GiB (POSIX), or None where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):
        return None


def machine_description(threads: int, load: float | None) -> str:
    """CPU count and model, memory, GPU, load, operating system, versions, threads and today's date."""
    gpu = "GPU present but not used" if torch.cuda.is_available() else "no GPU"
    memory = memory_gib()
    memory_text = "" if memory is None else f"{memory:.0f} GiB memory, "
    load_text = "" if load is None else f"1-min load average at start {load:.1f}, "
    return (
        f"Machine: {os.cpu_count()} CPU cores (os.cpu_count; {cpu_model()}), {memory_text}{gpu}, {load_text}"
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, torch.get_num_threads() = {threads}, "
        f"date {datetime.date.today().isoformat()}."
    )


def baseline_description(args: argparse.Namespace) -> list[str]:
    """Lines that say which baseline was measured (and, for the stand-in, why and how to change it)."""
    if args.baseline == "diffusers":
        import diffusers

        return [
            f"Baseline: diffusers {diffusers.__version__} `UNet2DModel` in the configuration of the "
            "Hugging Face diffusion course, unit 1."
        ]
    lines = [
        "**Stand-in baseline used**: our own `UNet` in the shape of the course's `UNet2DModel` "
        f"(`UNet({', '.join(f'{k}={v}' for k, v in STANDIN_CONFIG.items())})`), not diffusers itself."
    ]
    if args.fallback_reason:
        lines.append(f"diffusers could not be imported ({args.fallback_reason}).")
    lines.append(f"To measure diffusers' UNet2DModel: `{INSTALL_HINT}`, then run again.")
    return lines


def format_report(
    args: argparse.Namespace, default: Contender, baseline: Contender, threads: int, load: float | None = None
) -> str:
    """The markdown report: setup, table, ratios, target verdict, notes, machine."""
    memory_format = "channels_last" if args.channels_last else "contiguous (NCHW)"
    channels, height, width = IMAGE_SHAPE
    lines = ["## U-Net benchmark: default vs baseline", ""]
    lines += baseline_description(args)
    lines += [
        f"Batch {args.batch_size} of {channels}×{height}×{width}; median of {args.steps} timed step(s) after "
        f"{args.warmup} warm-up step(s), the two models interleaved; memory format {memory_format}; seed {args.seed}.",
        "",
        "| model | parameters | MACs/image | train img/s | step time | forward img/s | 50-step samples/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for contender in (default, baseline):
        train_rate = args.batch_size / contender.step_time
        forward_rate = args.batch_size / contender.forward_time
        lines.append(
            f"| {contender.label} | {contender.parameters:,} | {contender.macs / 1e6:.1f} M "
            f"| {train_rate:.1f} | {contender.step_time * 1e3:.0f} ms | {forward_rate:.1f} "
            f"| {forward_rate / DDIM_STEPS:.2f} |"
        )
    train_speedup = baseline.step_time / default.step_time
    lines += [
        "",
        f"default vs baseline: training step {ratio(baseline.step_time, default.step_time)} faster, "
        f"forward {ratio(baseline.forward_time, default.forward_time)} faster, "
        f"parameters {ratio(baseline.parameters, default.parameters)} fewer, "
        f"MACs {ratio(baseline.macs, default.macs)} fewer",
        f"Target (default's training step ≥ {TARGET_SPEEDUP:g}× faster than the baseline's on the same CPU): "
        + ("met" if train_speedup >= TARGET_SPEEDUP else f"NOT met ({train_speedup:.2f}×)"),
        "",
        "MACs: multiply-accumulates of one forward pass of one image (convolutions and matrix products only, "
        "FlopCounterMode FLOPs / 2). 50-step samples/s = forward img/s / 50.",
        machine_description(threads, load),
    ]
    return "\n".join(lines) + "\n"


def contender_figures(contender: Contender, batch_size: int) -> dict:
    """What was measured about one model, as plain numbers (seconds, images per second)."""
    return {
        "label": contender.label,
        "parameters": contender.parameters,
        "macs_per_image": contender.macs,
        "step_seconds": contender.step_time,
        "train_images_per_s": batch_size / contender.step_time,
        "forward_seconds": contender.forward_time,
        "forward_images_per_s": batch_size / contender.forward_time,
    }


def results(
    args: argparse.Namespace, default: Contender, baseline: Contender, threads: int, load: float | None
) -> dict:
    """The figures of the report, for ``--json``: both models, the ratios and the target."""
    return {
        "benchmark": "bench_unet",
        "baseline_kind": args.baseline,
        "batch_size": args.batch_size,
        "channels_last": args.channels_last,
        "default": contender_figures(default, args.batch_size),
        "baseline": contender_figures(baseline, args.batch_size),
        "train_speedup": baseline.step_time / default.step_time,
        "forward_speedup": baseline.forward_time / default.forward_time,
        "target_speedup": TARGET_SPEEDUP,
        "threads": threads,
        "load_average": load,
    }


def write_outputs(args: argparse.Namespace, report: str, figures: dict) -> None:
    """Write the markdown report to ``--out`` and the figures to ``--json`` (each when given)."""
    for path, text in ((args.out, report), (args.json, json.dumps(figures, indent=2) + "\n")):
        if path is None:
            continue
        atomic_write(path, lambda handle, text=text: handle.write(text.encode("utf-8")))
        print(f"(written to {path})", file=sys.stderr)


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
    if args.fallback_reason:
        print(
            f"diffusers is not available ({args.fallback_reason}); using the stand-in baseline. "
            f"Install diffusers with `{INSTALL_HINT}`.",
            file=sys.stderr,
        )

    seed_everything(args.seed)
    default = make_contender("default: UNet()", UNet(), args.channels_last)
    seed_everything(args.seed)
    baseline = make_contender(*build_baseline(args), args.channels_last)
    contenders = [default, baseline]

    # Size: parameters, and MACs of one forward pass of one image (batch 1).
    x1, t1, _ = make_batch(1, args.channels_last, args.seed)
    for contender in contenders:
        contender.parameters = count_parameters(contender.model)
        contender.model.eval()
        contender.macs = count_macs(contender.model, x1, t1)

    x, t, target = make_batch(args.batch_size, args.channels_last, args.seed)

    # Speed of training: full steps, models in train mode.
    for contender in contenders:
        contender.model.train()
    run_interleaved(
        contenders,
        lambda c: training_step(c, x, t, target),
        lambda c: c.step_times,
        args.warmup,
        args.steps,
        "training steps",
    )

    # Speed of sampling: forward passes only, eval mode, no autograd at all.
    for contender in contenders:
        contender.model.eval()
    with torch.inference_mode():
        run_interleaved(
            contenders,
            lambda c: forward_pass(c, x, t),
            lambda c: c.forward_times,
            args.warmup,
            args.steps,
            "forward passes",
        )

    report = format_report(args, default, baseline, threads, load)
    print(report, end="")
    write_outputs(args, report, results(args, default, baseline, threads, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
