"""Benchmark the cost of latent diffusion against pixel space, at the same U-Net width.

Usage (from the repository root):
    python -m tools.benchmarks.bench_latent                     # batch 64, 2 warm-up + 5 timed runs of each
    python -m tools.benchmarks.bench_latent --repeats 2 --out runs/bench_latent.md

The U-Net is the default one (unet.py's DEFAULT_CONFIG) in both spaces; only its
input differs: 1×32×32 digits in pixel space, 4×8×8 latents of the default
autoencoder (latent.py's DEFAULT_AUTOENCODER_CONFIG, 32×32 → 4×8×8) in latent space.
The reference code is timed (solutions/), on random inputs and weights: the cost of
a step does not depend on the values.

Measured, each the median of the timed runs, interleaved so that a change of machine
load hits both spaces alike:

* **training step**: ``training_step`` forward and backward and an AdamW step, on a
  batch; in latent space also with the frozen autoencoder's encoding of the batch
  (``encode_to_diffusion``, as train.py --autoencoder does at every step).
* **sampling step**: one network call on a batch without gradients (what each DDIM
  or DDPM step costs); in latent space the one decoding of the final latents is
  reported apart, as ms per image, since it happens once per sample, not per step.

The ratios pixel / latent are the speed-ups. The script always exits 0 after a run:
it measures, it does not test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from provided.choices import DEFAULT_AUTOENCODER_CONFIG
from provided.cli import int_at_least
from solutions.latent import Autoencoder, encode_to_diffusion, freeze
from solutions.noise_schedule import NoiseSchedule
from solutions.train import training_step
from solutions.unet import UNet, count_parameters
from tools.benchmarks.bench_unet import (
    add_common_flags, load_average, machine_description, refuse_folder_outputs, write_outputs,
)

#: The issue's target: a latent step at least this many times cheaper than a pixel step.
TARGET_SPEEDUP = 3.0
IMAGE_SIZE = 32


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.benchmarks.bench_latent", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch-size", type=int_at_least(1, 4096), default=64, help="images per step (default: 64)")
    parser.add_argument("--warmup", type=int_at_least(0, 100), default=2, help="untimed runs first (default: 2)")
    parser.add_argument("--repeats", type=int_at_least(1, 1000), default=5, help="timed runs (default: 5)")
    add_common_flags(parser, "seed of the inputs and weights (default: 0)")
    args = parser.parse_args(argv)
    refuse_folder_outputs(parser, args, "bench_latent")
    return args


class Space:
    """One space's U-Net, optimiser and inputs, and the steps to time on them."""

    def __init__(self, name: str, channels: int, size: int, batch: int, autoencoder=None) -> None:
        self.name, self.autoencoder = name, autoencoder
        self.model = UNet(in_channels=channels)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.schedule = NoiseSchedule.from_name("cosine", 1000)
        self.images = torch.rand(batch, 1, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
        self.x = torch.randn(batch, channels, size, size)
        self.t = torch.randint(0, 1000, (batch,))
        self.times: dict[str, list[float]] = {"train": [], "train_with_encoding": [], "sample": []}

    def train(self, encode: bool) -> None:
        x0 = self.x
        if encode:
            x0 = encode_to_diffusion(self.autoencoder, self.images, torch.tensor(0.0), torch.tensor(1.0),
                                     torch.randn_like(self.x))
        self.optimizer.zero_grad(set_to_none=True)
        training_step(self.model, x0, self.schedule, prediction="v").backward()
        self.optimizer.step()

    def sample(self) -> None:
        with torch.no_grad():
            self.model(self.x, self.t)

    def timed(self, key: str, step) -> None:
        started = time.perf_counter()
        step()
        self.times[key].append(time.perf_counter() - started)

    def median(self, key: str) -> float:
        return statistics.median(self.times[key])


def decode_ms_per_image(autoencoder, batch: int, repeats: int) -> float:
    latents = torch.randn(batch, *autoencoder.latent_shape(IMAGE_SIZE, IMAGE_SIZE))
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            started = time.perf_counter()
            autoencoder.decode(latents)
            times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) / batch * 1e3


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load = load_average()
    autoencoder = freeze(Autoencoder(**DEFAULT_AUTOENCODER_CONFIG))
    latent_channels, latent_size, _ = autoencoder.latent_shape(IMAGE_SIZE, IMAGE_SIZE)
    pixel = Space("pixel", 1, IMAGE_SIZE, args.batch_size)
    latent = Space("latent", latent_channels, latent_size, args.batch_size, autoencoder)
    for run in range(args.warmup + args.repeats):
        for space in (pixel, latent):  # interleaved: both see the same load
            steps = {"train": lambda s=space: s.train(False), "sample": space.sample}
            if space is latent:
                steps["train_with_encoding"] = lambda s=space: s.train(True)
            for key, step in steps.items():
                if run < args.warmup:
                    step()
                else:
                    space.timed(key, step)
    decode_ms = decode_ms_per_image(autoencoder, args.batch_size, args.repeats)
    figures = {
        "batch_size": args.batch_size, "threads": args.threads, "load_average": load,
        "unet_parameters": count_parameters(pixel.model),
        "autoencoder_parameters": sum(p.numel() for p in autoencoder.parameters()),  # frozen: none trainable
        "pixel_shape": [1, IMAGE_SIZE, IMAGE_SIZE], "latent_shape": [latent_channels, latent_size, latent_size],
        "pixel_train_ms": pixel.median("train") * 1e3, "latent_train_ms": latent.median("train") * 1e3,
        "latent_train_with_encoding_ms": latent.median("train_with_encoding") * 1e3,
        "pixel_sample_ms": pixel.median("sample") * 1e3, "latent_sample_ms": latent.median("sample") * 1e3,
        "decode_ms_per_image": decode_ms, "target_speedup": TARGET_SPEEDUP,
    }
    figures["train_speedup"] = figures["pixel_train_ms"] / figures["latent_train_with_encoding_ms"]
    figures["train_speedup_unet_only"] = figures["pixel_train_ms"] / figures["latent_train_ms"]
    figures["sample_speedup"] = figures["pixel_sample_ms"] / figures["latent_sample_ms"]
    report = "\n".join([
        "# Latent against pixel space: the cost of a step",
        "",
        f"The default U-Net ({figures['unet_parameters'] / 1e6:.2f} M parameters) on a batch of {args.batch_size}: "
        f"1×{IMAGE_SIZE}×{IMAGE_SIZE} pixels against {latent_channels}×{latent_size}×{latent_size} latents of the "
        f"default autoencoder ({figures['autoencoder_parameters'] / 1e3:.0f} K parameters). Medians of "
        f"{args.repeats} timed runs after {args.warmup} warm-up runs, interleaved.",
        "",
        "| step | pixel space | latent space | speed-up |",
        "| --- | --- | --- | --- |",
        f"| training step (U-Net + AdamW) | {figures['pixel_train_ms']:.1f} ms | {figures['latent_train_ms']:.1f} ms "
        f"| {figures['train_speedup_unet_only']:.1f}× |",
        f"| training step with the autoencoder's encoding | {figures['pixel_train_ms']:.1f} ms | "
        f"{figures['latent_train_with_encoding_ms']:.1f} ms | {figures['train_speedup']:.1f}× |",
        f"| sampling step (one network call) | {figures['pixel_sample_ms']:.1f} ms | "
        f"{figures['latent_sample_ms']:.1f} ms | {figures['sample_speedup']:.1f}× |",
        "",
        f"Decoding the final latents, once per sample: {decode_ms:.2f} ms per image (about "
        f"{decode_ms * args.batch_size / max(figures['latent_sample_ms'], 1e-9):.1f} latent sampling steps' worth "
        f"for a batch).",
        "",
        machine_description(args.threads, load),
        "",
    ])
    print(report)
    write_outputs(args, report, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
