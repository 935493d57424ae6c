"""Deliberately wrong implementations, to prove that the checks catch the classic mistakes.

A mutant is the reference with one small edit: a text replacement in one
solution file. ``build_submission`` writes all learner files complete (the
reference code kept in every region) with that edit applied, and the mutation
test grades the folder like a student's submission. Each mutant must make at
least one check of its phase fail with a message that names its mistake (the
title from grading/mistakes.py).

Usage (prints which checks catch each mutant):
    python -m grading.mutants [--phase 1]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from tools.make_stubs import SOLUTIONS_DIR, learner_source, solution_files

from .mistakes import MISTAKES
from .runner import PhaseResult, run_phase


@dataclass(frozen=True)
class Mutant:
    """One deliberate mistake: replace ``old`` by ``new`` (each exactly once) in ``file``."""

    name: str
    file: str
    replacements: tuple[tuple[str, str], ...]
    mistake: str  # key of MISTAKES; the failure message must contain its title
    phase: int


def _m(name: str, file: str, mistake: str, *replacements: tuple[str, str], phase: int = 1) -> Mutant:
    return Mutant(name, file, tuple(replacements), mistake, phase)


NS, DF, UN, TR = "noise_schedule.py", "diffusion.py", "unet.py", "train.py"
DG = "degradations.py"

MUTANTS: tuple[Mutant, ...] = (
    _m("linear schedule in float32", NS, "schedule_float32",
       ("torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)",
        "torch.linspace(beta_start, beta_end, num_timesteps).double()")),
    _m("scaled_linear not rescaled", NS, "scaled_linear_not_scaled",
       ("scale = 1000 / num_timesteps", "scale = 1.0")),
    _m("quadratic not squared", NS, "quadratic_not_squared",
       ("return sqrt_betas**2", "return sqrt_betas")),
    _m("betas ratio inverted", NS, "beta_ratio_inverted",
       ("alphas = alphas_cumprod[1:] / alphas_cumprod[:-1]", "alphas = alphas_cumprod[:-1] / alphas_cumprod[1:]")),
    _m("no 0.999 cap on β", NS, "max_beta_missing",
       ("return torch.clamp(1 - alphas, max=max_beta)", "return 1 - alphas")),
    _m("cosine without offset s", NS, "cosine_no_offset",
       ("torch.cos((tau + offset) / (1 + offset) * math.pi / 2)", "torch.cos(tau * math.pi / 2)")),
    _m("sigmoid ᾱ rising", NS, "sigmoid_not_flipped",
       ("alphas_cumprod = (v_end - curve) / (v_end - v_start)",
        "alphas_cumprod = (curve - v_start) / (v_end - v_start)")),
    _m("Karras ᾱ = 1/(1 + σ)", NS, "karras_sigma_not_squared",
       ("alphas_cumprod = 1 / (1 + sigmas**2)", "alphas_cumprod = 1 / (1 + sigmas)")),
    _m("α_t instead of ᾱ_t (no cumprod)", NS, "alpha_not_cumprod",
       ("return torch.cumprod(alphas, dim=0)", "return alphas")),
    _m("ᾱ_prev wraps around at t = 0", NS, "alpha_bar_prev_wraps",
       ("return torch.cat([one, alphas_cumprod[:-1]])", "return torch.roll(alphas_cumprod, 1)")),
    _m("SNR inverted", NS, "snr_inverted",
       ("return alphas_cumprod / (1 - alphas_cumprod)", "return (1 - alphas_cumprod) / alphas_cumprod")),
    _m("posterior variance β_t instead of β̃_t", NS, "beta_not_beta_tilde",
       ("return betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)", "return betas")),
    _m("log β̃ not clipped", NS, "log_variance_not_clipped",
       ("return torch.log(torch.cat([first, posterior_variance[1:]]))", "return torch.log(posterior_variance)")),
    _m("posterior coefficients swapped", NS, "posterior_coefficients_swapped",
       ("return coef1, coef2", "return coef2, coef1")),
    _m("extract without reshape", DF, "no_broadcast_shape",
       ("return picked.reshape(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, 1, 1)", "return picked")),
    _m("q_sample with α_t instead of ᾱ_t", DF, "alpha_not_cumprod",
       ("signal_scale = extract(schedule.sqrt_alphas_cumprod, t, x0)  # (B, 1, 1, 1)",
        "signal_scale = extract(schedule.alphas, t, x0).sqrt()"),
       ("noise_scale = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0)  # (B, 1, 1, 1)",
        "noise_scale = extract(schedule.betas, t, x0).sqrt()")),
    _m("q_sample without square roots", DF, "missing_sqrt",
       ("signal_scale = extract(schedule.sqrt_alphas_cumprod, t, x0)  # (B, 1, 1, 1)",
        "signal_scale = extract(schedule.alphas_cumprod, t, x0)"),
       ("noise_scale = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0)  # (B, 1, 1, 1)",
        "noise_scale = 1 - extract(schedule.alphas_cumprod, t, x0)")),
    _m("q_sample with t off by one", DF, "t_off_by_one",
       ("signal_scale = extract(schedule.sqrt_alphas_cumprod, t, x0)  # (B, 1, 1, 1)",
        "signal_scale = extract(schedule.sqrt_alphas_cumprod, t - 1, x0)"),
       ("noise_scale = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0)  # (B, 1, 1, 1)",
        "noise_scale = extract(schedule.sqrt_one_minus_alphas_cumprod, t - 1, x0)")),
    _m("q_step jumps with ᾱ_t", DF, "q_step_uses_alpha_bar",
       ("signal_scale = extract(schedule.alphas, t, x_prev).sqrt()",
        "signal_scale = extract(schedule.alphas_cumprod, t, x_prev).sqrt()"),
       ("noise_scale = extract(schedule.betas, t, x_prev).sqrt()",
        "noise_scale = (1 - extract(schedule.alphas_cumprod, t, x_prev)).sqrt()")),
    _m("v with the wrong sign", DF, "v_wrong_sign",
       ("return signal_scale * noise - noise_scale * x0", "return noise_scale * x0 - signal_scale * noise")),
    _m("x̂_0 from ε multiplies instead of dividing", DF, "conversion_multiplied",
       ("return (x_t - noise_scale * eps) / signal_scale", "return (x_t - noise_scale * eps) * signal_scale")),
    # Phase 2: the U-Net
    _m("sines and cosines swapped", UN, "sin_cos_swapped",
       ("torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)",
        "torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)"), phase=2),
    _m("frequencies divided by h − 1", UN, "frequency_formula",
       ("exponents = torch.arange(half, dtype=dtype, device=t.device) / half",
        "exponents = torch.arange(half, dtype=dtype, device=t.device) / (half - 1)"), phase=2),
    _m("time embedding not injected", UN, "time_embedding_not_injected",
       ("h = h + self.embed_proj(F.silu(emb))[:, :, None, None]", "h = h + 0 * self.embed_proj(F.silu(emb))[:, :, None, None]"),
       phase=2),
    _m("GroupNorm missing before conv1", UN, "groupnorm_missing",
       ("h = self.conv1(F.silu(self.norm1(x)))", "h = self.conv1(F.silu(x))"), phase=2),
    _m("residual block without its skip path", UN, "residual_missing",
       ("        return h + self.skip(x)\n", "        return h\n"), phase=2),
    _m("attention without the residual", UN, "attention_no_residual",
       ("        return x + out\n", "        return out\n"), phase=2),
    _m("attention without the 1/√d scaling", UN, "attention_no_scaling",
       ("scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)", "scores = q @ k.transpose(-2, -1)"), phase=2),
    _m("softmax over the queries", UN, "softmax_wrong_axis",
       ("weights = scores.softmax(dim=-1)", "weights = scores.softmax(dim=-2)"), phase=2),
    _m("upsampling only the height", UN, "upsample_wrong_dims",
       ('F.interpolate(x, scale_factor=2, mode="nearest")', 'F.interpolate(x, scale_factor=(4, 1), mode="nearest")'),
       phase=2),
    _m("skip connections dropped", UN, "skip_not_concatenated",
       ("residual(channels + skip_channels.pop(), widths[index])", "residual(channels + 0 * skip_channels.pop(), widths[index])"),
       ("h = torch.cat([h, skips.pop()], dim=1)", "skips.pop()"), phase=2),
    _m("skip connections added instead of concatenated", UN, "skip_not_concatenated",
       ("residual(channels + skip_channels.pop(), widths[index])", "residual(channels + 0 * skip_channels.pop(), widths[index])"),
       ("h = torch.cat([h, skips.pop()], dim=1)", "h = h + skips.pop()"), phase=2),
    _m("skips kept before the attention", UN, "skip_before_attention",
       ("                h = attention(block(h, emb))\n                skips.append(h)\n",
        "                h = block(h, emb)\n                skips.append(h)\n                h = attention(h)\n"),
       phase=2),
    _m("head left at its default initialisation", UN, "head_not_zero",
       ("        nn.init.zeros_(self.head_conv.weight)\n", ""), ("        nn.init.zeros_(self.head_conv.bias)\n", ""),
       phase=2),
    # Phase 3: training
    _m("images left in [0, 1]", TR, "data_unit_range", ("    return images * 2 - 1\n", "    return images\n"), phase=3),
    _m("ε target with v-prediction", TR, "eps_target_for_v",
       ("    return v_target(x0, t, noise, schedule)\n", "    return noise\n"), phase=3),
    _m("v target with the wrong sign", TR, "v_wrong_sign",
       ("    return v_target(x0, t, noise, schedule)\n", "    return -v_target(x0, t, noise, schedule)\n"), phase=3),
    _m("loss summed over the pixels", TR, "loss_wrong_reduction",
       ("per_image = per_pixel.mean(dim=tuple(range(1, per_pixel.ndim)))",
        "per_image = per_pixel.sum(dim=tuple(range(1, per_pixel.ndim)))"), phase=3),
    _m("t drawn from {1, …, T}", TR, "t_from_one",
       ("t = torch.randint(0, num_timesteps, (x0.shape[0],), generator=generator, device=source)",
        "t = torch.randint(1, num_timesteps + 1, (x0.shape[0],), generator=generator, device=source)"), phase=3),
    _m("noise with one channel", TR, "noise_shape",
       ("noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=source)",
        "noise = torch.randn((x0.shape[0], 1, *x0.shape[2:]), generator=generator, dtype=x0.dtype, device=source)"),
       phase=3),
    _m("model given x_0", TR, "model_sees_x0",
       ("output = model(x_t, t, class_labels)", "output = model(x0, t, class_labels)"), phase=3),
    _m("EMA decay inverted", TR, "ema_inverted",
       ("averaged.mul_(decay).add_(current.detach(), alpha=1 - decay)",
        "averaged.mul_(1 - decay).add_(current.detach(), alpha=decay)"), phase=3),
    _m("EMA decay without warm-up", TR, "ema_no_warmup",
       ("return min(max_decay, (1 + step) / (10 + step))", "return max_decay"), phase=3),
    # Phase 4: sampling
    _m("x̂_0 not clipped", DF, "x0_not_clipped",
       ("        x0_hat = x0_hat.clamp(-1.0, 1.0)\n", "        x0_hat = x0_hat\n"), phase=4),
    _m("ε̂ not recomputed after clipping", DF, "eps_not_recomputed",
       ("        eps_hat = eps_from_x0(x_t, t, x0_hat, schedule)\n", "        eps_hat = eps_hat\n"), phase=4),
    _m("ᾱ_prev wraps around at t = −1", DF, "alpha_bar_at_wraps",
       ("return extract(with_one, t + 1, x)", "return extract(schedule.alphas_cumprod, t, x)"), phase=4),
    _m("β_t and β̃_t confused", DF, "variance_small_large_confused",
       ("return mean, (posterior_variance if variance == \"small\" else beta)",
        "return mean, (beta if variance == \"small\" else posterior_variance)"), phase=4),
    _m("one-step β for a strided pair", DF, "one_step_beta_for_strided",
       ("    beta = 1 - alpha\n", "    beta = extract(schedule.betas, t, x_t)\n"), phase=4),
    _m("posterior mean coefficients swapped", DF, "posterior_mean_swapped",
       ("mean = coef_x0 * x0_hat + coef_xt * x_t", "mean = coef_xt * x0_hat + coef_x0 * x_t"), phase=4),
    _m("noise added at the last step", DF, "noise_at_last_step",
       ("return mean + adds_noise * step_variance.sqrt() * noise", "return mean + step_variance.sqrt() * noise"),
       phase=4),
    _m("variance used as the standard deviation", DF, "variance_as_std",
       ("return mean + adds_noise * step_variance.sqrt() * noise", "return mean + adds_noise * step_variance * noise"),
       phase=4),
    _m("η ignored", DF, "ddim_eta_ignored",
       ("sigma = eta * ((1 - alpha_bar_prev)", "sigma = ((1 - alpha_bar_prev)"), phase=4),
    _m("DDIM direction without the σ² correction", DF, "ddim_no_sigma_correction",
       ("direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps_hat",
        "direction = (1 - alpha_bar_prev).clamp(min=0).sqrt() * eps_hat"), phase=4),
    _m("timesteps in ascending order", DF, "timesteps_ascending",
       ("return ascending.long().flip(0)", "return ascending.long()"), phase=4),
    _m("loop drops clip_x0", DF, "loop_clip_ignored",
       ("        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction, clip_x0)\n"
        "        if trajectory is not None:\n",
        "        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction)\n"
        "        if trajectory is not None:\n"), phase=4),
    # Phase 5: class conditioning and guidance
    _m("null label 0 when labels are None", UN, "null_class_collides",
       ("class_labels = torch.full((time_emb.shape[0],), num_classes, dtype=torch.int64",
        "class_labels = torch.full((time_emb.shape[0],), 0, dtype=torch.int64"), phase=5),
    _m("label dropout never applied", TR, "label_dropout_never_applied",
       ("return torch.where(draws < p_uncond, null, class_labels)", "return class_labels"), phase=5),
    _m("null label K − 1 in label dropout", TR, "null_class_collides",
       ("null = torch.full_like(class_labels, num_classes)", "null = torch.full_like(class_labels, num_classes - 1)"),
       phase=5),
    _m("CFG with the paper's (1 + w)", DF, "cfg_paper_convention",
       ("return unconditional + guidance_scale * (conditional - unconditional)",
        "return unconditional + (1 + guidance_scale) * (conditional - unconditional)"), phase=5),
    _m("conditional and unconditional swapped", DF, "cfg_swapped",
       ("conditional, unconditional = both.chunk(2)", "unconditional, conditional = both.chunk(2)"), phase=5),
    _m("labels dropped at sampling time", DF, "label_dropout_at_sampling",
       ("both = call_model(model, torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([class_labels, null]))",
        "kept = torch.where(torch.arange(len(class_labels)) % 3 == 1, null, class_labels)\n"
        "    both = call_model(model, torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([kept, null]))"), phase=5),
    _m("blur padded with zeros", DG, "blur_zero_padding",
       ("F.pad(images, (radius, radius, 0, 0), mode=\"reflect\")", "F.pad(images, (radius, radius, 0, 0))"),
       ("F.pad(blurred, (0, 0, radius, radius), mode=\"reflect\")", "F.pad(blurred, (0, 0, radius, radius))"),
       phase=5),
    _m("super-resolution upsampled with nearest", DG, "superres_nearest",
       ("mode=\"bilinear\", align_corners=False)\n    ### END", "mode=\"nearest\")\n    ### END"), phase=5),
    _m("JPEG step not frequency-dependent", DG, "jpeg_uniform_step",
       ("step = quality_step * (1 + frequency.reshape(-1, 1) + frequency.reshape(1, -1))",
        "step = quality_step + 0 * (frequency.reshape(-1, 1) + frequency.reshape(1, -1))"), phase=5),
    _m("mask inverted", DG, "mask_inverted",
       ("return mask * images + (1 - mask) * fill", "return (1 - mask) * images + mask * fill"), phase=5),
    _m("condition image not normalised", DG, "condition_not_normalised",
       ("return x0, degrade(x0, task, generator)", "return x0, degrade(images, task, generator)"), phase=5),
    _m("known region replaced with the clean image", DF, "known_region_clean",
       ("return mask * known + (1 - mask) * x_generated", "return mask * x0_known + (1 - mask) * x_generated"),
       phase=5),
    _m("renoise with one step's α", DF, "one_step_beta_for_strided",
       ("alpha = alpha_bar_at(t, schedule, x_prev) / alpha_bar_at(t_prev, schedule, x_prev)  # (B, 1, 1, 1)",
        "alpha = extract(schedule.alphas, t, x_prev)  # (B, 1, 1, 1)"), phase=5),
)


def mutated_source(mutant: Mutant, solutions_dir: Path = SOLUTIONS_DIR) -> str:
    """The solution file of ``mutant`` with its replacements applied (each must match once)."""
    text = (solutions_dir / mutant.file).read_text(encoding="utf-8")
    for old, new in mutant.replacements:
        count = text.count(old)
        if count != 1:
            raise ValueError(
                f"mutant {mutant.name!r}: {old!r} occurs {count} times in solutions/{mutant.file}; "
                "it must occur exactly once (update the mutant after editing the solution)"
            )
        text = text.replace(old, new)
    return text


def build_submission(mutant: Mutant, out_dir: Path, solutions_dir: Path = SOLUTIONS_DIR) -> None:
    """Write complete learner files into ``out_dir``, with ``mutant`` applied to its file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in solution_files(solutions_dir):
        text = mutated_source(mutant, solutions_dir) if path.name == mutant.file else path.read_text("utf-8")
        (out_dir / path.name).write_text(learner_source(text, path.name, keep_solutions=True), "utf-8")


@dataclass
class MutantVerdict:
    mutant: Mutant
    failing: list[str]  # numbers of the checks that failed
    naming: list[str]  # numbers of the failing checks whose message names the mistake

    @property
    def caught(self) -> bool:
        return bool(self.naming)


def judge(mutant: Mutant, result: PhaseResult) -> MutantVerdict:
    title = MISTAKES[mutant.mistake].title
    failing = [check for check in result.checks if not check.passed]
    return MutantVerdict(
        mutant,
        [check.number for check in failing],
        [check.number for check in failing if title in check.output],
    )


def run_mutant(mutant: Mutant, replay: Path | None = None, record: Path | None = None) -> MutantVerdict:
    """Grade ``mutant`` as a submission and judge whether its mistake was named (with ``replay``:
    from the reference's recorded answers, as in a student release; with ``record``: writing the
    reference's answers to the mutant's calls there, for a student release)."""
    with TemporaryDirectory(prefix="mutant-") as folder:
        build_submission(mutant, Path(folder))
        # One torch thread per process: two mutants run at once, and oversubscribed cores slow torch
        # down far more than they should.
        return judge(mutant, run_phase(mutant.phase, submission=Path(folder), check_timeout=60, threads=1,
                                       replay=replay, record=record))


def run_all(mutants: tuple[Mutant, ...] = MUTANTS, workers: int = 2, replay: Path | None = None) \
        -> list[MutantVerdict]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda mutant: run_mutant(mutant, replay), mutants))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Show which checks catch each mutant.")
    parser.add_argument("--phase", type=int, default=None, help="only the mutants of this phase")
    parser.add_argument("--replay-reference", type=Path, default=None, metavar="FILE",
                        help="grade with the reference's recorded answers (as a student release does)")
    args = parser.parse_args(argv)
    mutants = tuple(m for m in MUTANTS if args.phase in (None, m.phase))
    verdicts = run_all(mutants, replay=args.replay_reference)
    print("| mutant | mistake named | caught by (naming it) | failing checks |")
    print("| --- | --- | --- | --- |")
    for verdict in verdicts:
        print(
            f"| {verdict.mutant.name} | {MISTAKES[verdict.mutant.mistake].title} | "
            f"{', '.join(verdict.naming) or 'NOT CAUGHT'} | {', '.join(verdict.failing) or '—'} |"
        )
    missed = [v.mutant.name for v in verdicts if not v.caught]
    print(f"\n{len(verdicts) - len(missed)} of {len(verdicts)} mutants caught with their mistake named.")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
