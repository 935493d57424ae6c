"""Phase 1 at work: see the noise schedules and the forward process q(x_t | x_0).

Usage:
    python -m tools.forward_demo                     # your code (or $DIFFUSION_IMPL)
    python -m tools.forward_demo --impl solutions    # the reference
    python -m tools.forward_demo --out runs/demo --timesteps 1000 --seed 0 --digit 7

Writes three files into ``--out``:

* ``schedules.png``: ᾱ_t (the share of signal variance left after step t) and
  log10 SNR_t against t, for every schedule in ``SCHEDULES``.
* ``forward_process.png``: one digit noised with the same ε at a few timesteps
  under each schedule, x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε (rows: schedules,
  columns: timesteps).
* ``signal_left.csv``: per schedule, ᾱ at T/2, ᾱ_{T−1} and SNR_{T−1}: how much
  of the image is still there halfway and after the last step.

The schedules and q_sample come from your files (``--impl learner``) or from
``solutions/`` (``--impl solutions``), so the pictures show your own code.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from types import ModuleType

import matplotlib

matplotlib.use("Agg")  # draw into files only; must come before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from provided.cli import IMPL_HELP, run_command  # noqa: E402
from provided.files import atomic_write  # noqa: E402
from utils import (  # noqa: E402
    IMPLEMENTATIONS,
    import_impl,
    render_digit,
    resolve_impl,
    to_unit_range,
)

#: scaled_linear rescales beta_end = 0.02 by 1000 / T, which reaches 1 unless T > 20.
SCALED_LINEAR_MIN_T = 21
#: Line style per schedule, so that curves lying on top of each other stay visible.
LINE_STYLES = {"scaled_linear": (0, (4, 3))}


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read and check the command line; bad values exit with status 2 and a message."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.forward_demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--impl",
        choices=IMPLEMENTATIONS,
        default=None,
        help=IMPL_HELP,
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for the pictures")
    parser.add_argument("--timesteps", type=int, default=1000, help="T, the number of steps (≥ 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise ε")
    parser.add_argument("--digit", type=int, default=7, help="which digit to noise (0–9)")
    parser.add_argument("--image-size", type=int, default=28, help="digit size in pixels (≥ 8)")
    args = parser.parse_args(argv)

    try:
        args.impl = resolve_impl(args.impl)  # fills in $DIFFUSION_IMPL or "auto"
    except ValueError as error:
        parser.error(str(error))
    if args.timesteps < 2:
        parser.error(
            f"argument --timesteps: must be at least 2 (the karras schedule divides by T − 1); "
            f"got {args.timesteps}"
        )
    if not 0 <= args.digit <= 9:
        parser.error(f"argument --digit: must be a digit from 0 to 9; got {args.digit}")
    if args.image_size < 8:
        parser.error(f"argument --image-size: must be at least 8 pixels; got {args.image_size}")
    return args


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def schedule_names(num_timesteps: int, noise_schedule: ModuleType) -> list[str]:
    """The schedules to show: all of ``SCHEDULES``, minus scaled_linear when T is too small."""
    names = list(noise_schedule.SCHEDULES)
    if num_timesteps < SCALED_LINEAR_MIN_T and "scaled_linear" in names:
        print(
            f"note: skipping scaled_linear, which needs T > {SCALED_LINEAR_MIN_T - 1} "
            f"(got T = {num_timesteps})"
        )
        names.remove("scaled_linear")
    return names


def build_schedules(names: list[str], num_timesteps: int, noise_schedule: ModuleType) -> dict:
    """One ``NoiseSchedule`` per name, in float64 so that tiny ᾱ at the end stay exact.

    Returns:
        dict name → NoiseSchedule; each tensor attribute has shape (T,).
    """
    return {
        name: noise_schedule.NoiseSchedule.from_name(name, num_timesteps, dtype=torch.float64)
        for name in names
    }


def demo_timesteps(num_timesteps: int) -> list[int]:
    """The columns of the forward-process figure: 0, T/10, T/4, T/2, 3T/4 and T − 1.

    Rounded down to whole steps; repeats (possible for a tiny T) are dropped.
    """
    T = num_timesteps
    wanted = [0, T // 10, T // 4, T // 2, 3 * T // 4, T - 1]
    return sorted(set(wanted))


def noise_digit(
    x0: torch.Tensor,
    timesteps: list[int],
    noise: torch.Tensor,
    schedule,
    diffusion: ModuleType,
) -> torch.Tensor:
    """Noise one image at several timesteps with the same ε, using ``diffusion.q_sample``.

    Args:
        x0: the clean image, shape (1, H, W) in [-1, 1].
        timesteps: the K timesteps to show.
        noise: ε, shape (1, H, W).
        schedule: a NoiseSchedule.

    Returns:
        x_t for each timestep, shape (K, 1, H, W).
    """
    k = len(timesteps)
    batch = x0.unsqueeze(0).expand(k, -1, -1, -1)  # (K, 1, H, W): the same image K times
    eps = noise.unsqueeze(0).expand(k, -1, -1, -1)  # (K, 1, H, W): the same ε K times
    t = torch.tensor(timesteps, dtype=torch.int64)  # (K,)
    return diffusion.q_sample(batch, t, eps, schedule)


# ---------------------------------------------------------------------------
# Figures and the table
# ---------------------------------------------------------------------------


def schedule_labels(schedules: dict) -> dict[str, str]:
    """Legend labels; says so when scaled_linear coincides with linear (it does at T = 1000)."""
    labels = {name: name for name in schedules}
    if "linear" in schedules and "scaled_linear" in schedules:
        linear, scaled = schedules["linear"], schedules["scaled_linear"]
        if torch.allclose(linear.alphas_cumprod, scaled.alphas_cumprod):
            labels["scaled_linear"] = f"scaled_linear (= linear at T = {linear.num_timesteps}, dashed)"
    return labels


def plot_schedules(schedules: dict, path: Path) -> Path:
    """Two panels: ᾱ_t against t, and log10 SNR_t against t, one curve per schedule.

    Args:
        schedules: dict name → NoiseSchedule (tensors of shape (T,)).
        path: the PNG to write.
    """
    labels = schedule_labels(schedules)
    fig, (ax_alpha, ax_snr) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, schedule in schedules.items():
        t = torch.arange(schedule.num_timesteps).numpy()  # (T,)
        style = dict(label=labels[name], linestyle=LINE_STYLES.get(name, "-"), linewidth=1.8)
        ax_alpha.plot(t, schedule.alphas_cumprod.cpu().numpy(), **style)
        ax_snr.plot(t, torch.log10(schedule.snr).cpu().numpy(), **style)
    T = next(iter(schedules.values())).num_timesteps
    ax_alpha.set(
        title=f"Signal left: ᾱ_t (T = {T})",
        xlabel="timestep t",
        ylabel="ᾱ_t  (share of signal variance)",
        ylim=(-0.02, 1.02),
    )
    ax_snr.set(
        title="Signal-to-noise ratio: SNR_t = ᾱ_t / (1 − ᾱ_t)",
        xlabel="timestep t",
        ylabel="log10 SNR_t",
    )
    ax_snr.axhline(0, color="grey", linewidth=0.8, linestyle=":")  # SNR = 1: as much noise as signal
    for ax in (ax_alpha, ax_snr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120))
    plt.close(fig)
    return path


def plot_forward_process(
    rows: dict[str, torch.Tensor], timesteps: list[int], schedules: dict, path: Path
) -> Path:
    """A grid of noisy digits: one row per schedule, one column per timestep.

    Args:
        rows: dict name → x_t of shape (K, 1, H, W) in roughly [-1, 1].
        timesteps: the K timesteps, for the column titles.
        schedules: dict name → NoiseSchedule, to print ᾱ_t under each image.
        path: the PNG to write.
    """
    n_rows, n_cols = len(rows), len(timesteps)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.6 * n_cols + 1.4, 1.7 * n_rows + 0.6), squeeze=False
    )
    for r, (name, images) in enumerate(rows.items()):
        alphas_cumprod = schedules[name].alphas_cumprod
        for c, t in enumerate(timesteps):
            ax = axes[r, c]
            picture = to_unit_range(images[c, 0]).cpu().numpy()  # (H, W) in [0, 1]
            ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"ᾱ = {alphas_cumprod[t].item():.3g}", fontsize=8)
            if r == 0:
                ax.set_title(f"t = {t}", fontsize=11)
            if c == 0:
                ax.set_ylabel(name, fontsize=11)
    fig.suptitle("Forward process x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε  (same x_0 and ε everywhere)")
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120))
    plt.close(fig)
    return path


def signal_left(schedules: dict) -> list[dict]:
    """Per schedule: ᾱ at T/2, ᾱ_{T−1} and SNR_{T−1}, as plain floats."""
    table = []
    for name, schedule in schedules.items():
        half = schedule.num_timesteps // 2
        table.append(
            {
                "schedule": name,
                "alpha_bar_half": schedule.alphas_cumprod[half].item(),
                "alpha_bar_last": schedule.alphas_cumprod[-1].item(),
                "snr_last": schedule.snr[-1].item(),
            }
        )
    return table


def write_signal_left(table: list[dict], path: Path) -> Path:
    """Write the table of :func:`signal_left` as a CSV file with a header row."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(table[0]))
    writer.writeheader()
    for row in table:
        # Floats with 10 significant digits: enough to compare against the schedule.
        writer.writerow({key: f"{value:.10g}" if isinstance(value, float) else value for key, value in row.items()})
    atomic_write(path, lambda handle: handle.write(text.getvalue().encode("utf-8")))
    return path


# ---------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[Path]:
    """Build the schedules, noise the digit, write the three files; return their paths."""
    noise_schedule = import_impl("noise_schedule", args.impl)
    diffusion = import_impl("diffusion", args.impl)

    names = schedule_names(args.timesteps, noise_schedule)
    schedules = build_schedules(names, args.timesteps, noise_schedule)

    generator = torch.Generator().manual_seed(args.seed)
    x0 = render_digit(args.digit, args.image_size)  # (1, H, W) in [-1, 1]
    noise = torch.randn(x0.shape, generator=generator)  # (1, H, W): one ε for every picture
    timesteps = demo_timesteps(args.timesteps)
    rows = {
        name: noise_digit(x0, timesteps, noise, schedule, diffusion)
        for name, schedule in schedules.items()
    }

    table = signal_left(schedules)
    written = [
        plot_schedules(schedules, args.out / "schedules.png"),
        plot_forward_process(rows, timesteps, schedules, args.out / "forward_process.png"),
        write_signal_left(table, args.out / "signal_left.csv"),
    ]
    for path in written:
        print(f"wrote {path}")
    print("Signal left after the last step, ᾱ_{T−1}:")
    for row in table:
        print(f"  {row['schedule']:<14} {row['alpha_bar_last']:.3e}")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 done, 1 your code is still a stub)."""
    args = parse_args(argv)

    def body() -> int:
        run(args)
        return 0

    return run_command("forward_demo", body, needs="The Phase 1 demo runs noise_schedule.py and diffusion.py",
                       interrupted="stopped by Ctrl-C")


if __name__ == "__main__":
    sys.exit(main())
