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

from tools.make_stubs import SOLUTIONS_DIR, find_regions, learner_source, solution_files

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

    @property
    def function(self) -> str:
        """The exercise the edit lands in, as the checks name it ("q_sample", "ResidualBlock")."""
        text = (SOLUTIONS_DIR / self.file).read_text(encoding="utf-8")
        line = text[: text.index(self.replacements[0][0])].count("\n")
        for region in find_regions(text, self.file):
            if region.begin <= line <= region.end:
                return region.function.split(".")[0]  # a method is graded under its class
        raise ValueError(f"mutant {self.name!r}: its edit is outside every exercise region")


def _m(name: str, file: str, mistake: str, *replacements: tuple[str, str], phase: int = 1) -> Mutant:
    return Mutant(name, file, tuple(replacements), mistake, phase)


NS, DF, UN, TR = "noise_schedule.py", "diffusion.py", "unet.py", "train.py"
DG = "degradations.py"
LT = "latent.py"
TX = "text.py"

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
    _m("Karras σ from σ_max down", NS, "karras_descending",
       ("sigmas = (inv_rho_min + ramp * (inv_rho_max - inv_rho_min)) ** rho",
        "sigmas = (inv_rho_max + ramp * (inv_rho_min - inv_rho_max)) ** rho")),
    _m("α_t instead of ᾱ_t (no cumprod)", NS, "alpha_not_cumprod",
       ("return torch.cumprod(alphas, dim=0)", "return alphas")),
    _m("ᾱ_prev wraps around at t = 0", NS, "alpha_bar_prev_wraps",
       ("return torch.cat([one, alphas_cumprod[:-1]])", "return torch.roll(alphas_cumprod, 1)")),
    _m("ᾱ_prev padded with 0", NS, "alpha_bar_prev_zero",
       ("return torch.cat([one, alphas_cumprod[:-1]])",
        "return torch.nn.functional.pad(alphas_cumprod[:-1], (1, 0))")),
    _m("SNR inverted", NS, "snr_inverted",
       ("return alphas_cumprod / (1 - alphas_cumprod)", "return (1 - alphas_cumprod) / alphas_cumprod")),
    _m("SNR of standard deviations", NS, "snr_sqrt",
       ("return alphas_cumprod / (1 - alphas_cumprod)",
        "return torch.sqrt(alphas_cumprod) / torch.sqrt(1 - alphas_cumprod)")),
    _m("posterior variance β_t instead of β̃_t", NS, "beta_not_beta_tilde",
       ("return betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)", "return betas")),
    _m("log β̃ not clipped", NS, "log_variance_not_clipped",
       ("return torch.log(torch.cat([first, posterior_variance[1:]]))", "return torch.log(posterior_variance)")),
    _m("posterior coefficients swapped", NS, "posterior_coefficients_swapped",
       ("return coef1, coef2", "return coef2, coef1")),
    _m("posterior coefficients with ᾱ_t for ᾱ_{t−1}", NS, "posterior_alpha_bar_for_prev",
       ("coef1 = torch.sqrt(alphas_cumprod_prev) * betas / (1 - alphas_cumprod)",
        "coef1 = torch.sqrt(alphas_cumprod) * betas / (1 - alphas_cumprod)"),
       ("coef2 = torch.sqrt(alphas) * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)",
        "coef2 = torch.sqrt(alphas) * (1 - alphas_cumprod) / (1 - alphas_cumprod)")),
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
    _m("q_sample coefficients swapped", DF, "coefficients_swapped",
       ("return signal_scale * x0 + noise_scale * noise", "return noise_scale * x0 + signal_scale * noise")),
    _m("q_step jumps with ᾱ_t", DF, "q_step_uses_alpha_bar",
       ("signal_scale = extract(schedule.alphas, t, x_prev).sqrt()",
        "signal_scale = extract(schedule.alphas_cumprod, t, x_prev).sqrt()"),
       ("noise_scale = extract(schedule.betas, t, x_prev).sqrt()",
        "noise_scale = (1 - extract(schedule.alphas_cumprod, t, x_prev)).sqrt()")),
    _m("v with the wrong sign", DF, "v_wrong_sign",
       ("return signal_scale * noise - noise_scale * x0", "return noise_scale * x0 - signal_scale * noise")),
    _m("v with x_0 and ε exchanged", DF, "v_roles_swapped",
       ("return signal_scale * noise - noise_scale * x0", "return signal_scale * x0 - noise_scale * noise")),
    _m("x̂_0 from ε multiplies instead of dividing", DF, "conversion_multiplied",
       ("return (x_t - noise_scale * eps) / signal_scale", "return (x_t - noise_scale * eps) * signal_scale")),
    _m("ε̂ from v with the wrong sign", DF, "conversion_sign",
       ("return noise_scale * x_t + signal_scale * v", "return noise_scale * x_t - signal_scale * v")),
    # Phase 1, more: the guide's italic pitfalls and the fresh-eyes study's common slips
    _m("linear betas over T + 1 points", NS, "linear_end_excluded",
       ("return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)",
        "return torch.linspace(beta_start, beta_end, num_timesteps + 1, dtype=torch.float64)[:-1]")),
    _m("scaled_linear scaled by T / 1000", NS, "scaled_linear_inverse_scale",
       ("scale = 1000 / num_timesteps", "scale = num_timesteps / 1000")),
    _m("quadratic squares the linear betas", NS, "quadratic_squares_linear",
       ("        math.sqrt(beta_start), math.sqrt(beta_end), num_timesteps, dtype=torch.float64\n",
        "        beta_start, beta_end, num_timesteps, dtype=torch.float64\n")),
    _m("β = 1 − ᾱ without the ratio", NS, "beta_is_one_minus_alpha_bar",
       ("return torch.clamp(1 - alphas, max=max_beta)", "return torch.clamp(1 - alphas_cumprod[1:], max=max_beta)")),
    _m("cosine with cos, not cos²", NS, "cosine_not_squared",
       ("f = torch.cos((tau + offset) / (1 + offset) * math.pi / 2) ** 2",
        "f = torch.cos((tau + offset) / (1 + offset) * math.pi / 2)")),
    _m("Karras betas with the default cap", NS, "karras_capped",
       ("return betas_from_alphas_cumprod(torch.cat([one, alphas_cumprod]), max_beta=1.0)",
        "return betas_from_alphas_cumprod(torch.cat([one, alphas_cumprod]))")),
    _m("Karras σ spaced linearly", NS, "karras_rho_ignored",
       ("sigmas = (inv_rho_min + ramp * (inv_rho_max - inv_rho_min)) ** rho",
        "sigmas = sigma_min + ramp * (sigma_max - sigma_min)")),
    _m("ᾱ_prev not shifted", NS, "alpha_bar_prev_not_shifted",
       ("return torch.cat([one, alphas_cumprod[:-1]])", "return alphas_cumprod.clone()")),
    _m("ᾱ_prev drops the first value", NS, "alpha_bar_prev_wrong_way",
       ("return torch.cat([one, alphas_cumprod[:-1]])", "return torch.cat([one, alphas_cumprod[1:]])")),
    _m("log-SNR", NS, "snr_log",
       ("return alphas_cumprod / (1 - alphas_cumprod)", "return torch.log(alphas_cumprod / (1 - alphas_cumprod))")),
    _m("β̃ ratio upside down", NS, "posterior_variance_inverted",
       ("return betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)",
        "return betas * (1 - alphas_cumprod) / (1 - alphas_cumprod_prev)")),
    _m("q_sample noise weight 1 − √ᾱ", DF, "noise_coefficient_one_minus_sqrt",
       ("    return signal_scale * x0 + noise_scale * noise\n",
        "    return signal_scale * x0 + (1 - signal_scale) * noise\n")),
    _m("q_sample written into x0", DF, "input_modified_in_place",
       ("    return signal_scale * x0 + noise_scale * noise\n",
        "    return x0.mul_(signal_scale).add_(noise_scale * noise)\n")),
    # Phase 2: the U-Net
    _m("sines and cosines swapped", UN, "sin_cos_swapped",
       ("torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)",
        "torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)"), phase=2),
    _m("sines and cosines interleaved", UN, "sin_cos_interleaved",
       ("torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)",
        "torch.stack([torch.sin(angles), torch.cos(angles)], dim=2).flatten(1)"), phase=2),
    _m("frequencies divided by h − 1", UN, "frequency_formula",
       ("exponents = torch.arange(half, dtype=dtype, device=t.device) / half",
        "exponents = torch.arange(half, dtype=dtype, device=t.device) / (half - 1)"), phase=2),
    _m("extra SiLU after linear_2", UN, "mlp_activation",
       ("return self.linear_2(F.silu(self.linear_1(sinusoids)))",
        "return F.silu(self.linear_2(F.silu(self.linear_1(sinusoids))))"), phase=2),
    _m("time embedding not injected", UN, "time_embedding_not_injected",
       ("h = h + self.embed_proj(F.silu(emb))[:, :, None, None]", "h = h + 0 * self.embed_proj(F.silu(emb))[:, :, None, None]"),
       phase=2),
    _m("embedding projected without SiLU", UN, "embedding_without_silu",
       ("h = h + self.embed_proj(F.silu(emb))[:, :, None, None]", "h = h + self.embed_proj(emb)[:, :, None, None]"),
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
    _m("bilinear upsampling", UN, "upsample_not_nearest",
       ('F.interpolate(x, scale_factor=2, mode="nearest")', 'F.interpolate(x, scale_factor=2, mode="bilinear")'),
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
    _m("attention scaled by 1/√C", UN, "attention_scaled_by_channels",
       ("scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)", "scores = q @ k.transpose(-2, -1) / math.sqrt(channels)"),
       phase=2),
    _m("attention scaled by 1/d", UN, "attention_scaled_by_d",
       ("scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)", "scores = q @ k.transpose(-2, -1) / head_dim"),
       phase=2),
    _m("time embedding added after conv2", UN, "embedding_wrong_place",
       ("        h = h + self.embed_proj(F.silu(emb))[:, :, None, None]  # (B, C_out) -> (B, C_out, 1, 1)\n"
        "        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, C_out, H, W)\n",
        "        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, C_out, H, W)\n"
        "        h = h + self.embed_proj(F.silu(emb))[:, :, None, None]  # (B, C_out) -> (B, C_out, 1, 1)\n"),
       phase=2),
    # Phase 2, more: the fresh-eyes study's slips
    _m("frequency index from 1", UN, "frequency_index_from_one",
       ("exponents = torch.arange(half, dtype=dtype, device=t.device) / half",
        "exponents = torch.arange(1, half + 1, dtype=dtype, device=t.device) / half"), phase=2),
    _m("max_period ignored", UN, "max_period_ignored",
       ("frequencies = torch.exp(-math.log(max_period) * exponents)", "frequencies = torch.exp(-math.log(10_000.0) * exponents)"),
       phase=2),
    _m("SiLU before GroupNorm", UN, "silu_before_norm",
       ("h = self.conv1(F.silu(self.norm1(x)))", "h = self.conv1(self.norm1(F.silu(x)))"), phase=2),
    _m("queries and keys swapped", UN, "queries_keys_swapped",
       ("q, k, v = self.to_qkv(tokens).chunk(3, dim=-1)", "k, q, v = self.to_qkv(tokens).chunk(3, dim=-1)"), phase=2),
    _m("attention output not transposed", UN, "attention_output_not_transposed",
       ("out = self.to_out(out).transpose(1, 2).reshape(batch, channels, height, width)",
        "out = self.to_out(out).reshape(batch, channels, height, width)"), phase=2),
    _m("Upsample convolves first", UN, "upsample_conv_first",
       ('return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))',
        'return F.interpolate(self.conv(x), scale_factor=2, mode="nearest")'), phase=2),
    _m("n decoder blocks per level", UN, "decoder_blocks_count",
       ("for _ in range(num_res_blocks + 1):", "for _ in range(num_res_blocks):"), phase=2),
    _m("dropout not passed to the blocks", UN, "dropout_not_passed",
       ("return ResidualBlock(c_in, c_out, embed_dim, groups, dropout)", "return ResidualBlock(c_in, c_out, embed_dim, groups)"),
       phase=2),
    _m("skip concatenated first", UN, "skip_concat_order",
       ("h = torch.cat([h, skips.pop()], dim=1)", "h = torch.cat([skips.pop(), h], dim=1)"), phase=2),
    _m("head without SiLU", UN, "head_silu_missing",
       ("return self.head_conv(F.silu(self.head_norm(h)))", "return self.head_conv(self.head_norm(h))"), phase=2),
    # Phase 3: training
    _m("images left in [0, 1]", TR, "data_unit_range", ("    return images * 2 - 1\n", "    return images\n"), phase=3),
    _m("images divided by 127.5", TR, "data_scaled_255",
       ("    return images * 2 - 1\n", "    return images / 127.5 - 1\n"), phase=3),
    _m("ε and x_0 targets swapped", TR, "targets_swapped",
       ("        return noise\n    if prediction == \"x0\":\n        return x0\n",
        "        return x0\n    if prediction == \"x0\":\n        return noise\n"), phase=3),
    _m("ε target with v-prediction", TR, "eps_target_for_v",
       ("    return v_target(x0, t, noise, schedule)\n", "    return noise\n"), phase=3),
    _m("v target with the wrong sign", TR, "v_wrong_sign",
       ("    return v_target(x0, t, noise, schedule)\n", "    return -v_target(x0, t, noise, schedule)\n"), phase=3),
    _m("min-SNR without the clip", TR, "snr_not_clipped",
       ("clipped = snr.clamp(max=gamma)", "clipped = snr"), phase=3),
    _m("min-SNR v weight divided by SNR", TR, "min_snr_formula",
       ("return clipped / (snr + 1)", "return clipped / snr"), phase=3),
    _m("loss weights multiplied out of place", TR, "loss_weights_ignored",
       ("per_image = per_image * weights.to(per_image.dtype)", "per_image.mul(weights.to(per_image.dtype))"),
       phase=3),
    _m("loss summed over the pixels", TR, "loss_wrong_reduction",
       ("per_image = per_pixel.mean(dim=tuple(range(1, per_pixel.ndim)))",
        "per_image = per_pixel.sum(dim=tuple(range(1, per_pixel.ndim)))"), phase=3),
    _m("t drawn from {1, …, T}", TR, "t_from_one",
       ("t = torch.randint(0, num_timesteps, (x0.shape[0],), generator=generator, device=source)",
        "t = torch.randint(1, num_timesteps + 1, (x0.shape[0],), generator=generator, device=source)"), phase=3),
    _m("noise drawn before t", TR, "draw_order",
       ("    t = torch.randint(0, num_timesteps, (x0.shape[0],), generator=generator, device=source)\n"
        "    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=source)\n",
        "    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=source)\n"
        "    t = torch.randint(0, num_timesteps, (x0.shape[0],), generator=generator, device=source)\n"),
       phase=3),
    _m("noise with one channel", TR, "noise_shape",
       ("noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=source)",
        "noise = torch.randn((x0.shape[0], 1, *x0.shape[2:]), generator=generator, dtype=x0.dtype, device=source)"),
       phase=3),
    _m("model given x_0", TR, "model_sees_x0",
       ("output = model(x_t, t, class_labels)", "output = model(x0, t, class_labels)"), phase=3),
    _m("training_step discards the given noise", TR, "step_given_discarded",
       ("        noise = drawn_noise if noise is None else noise\n", "        noise = drawn_noise\n"), phase=3),
    _m("class labels not given to the model", TR, "training_labels_ignored",
       ("output = model(x_t, t, class_labels)", "output = model(x_t, t)"), phase=3),
    _m("EMA decay inverted", TR, "ema_inverted",
       ("averaged.mul_(decay).add_(current.detach(), alpha=1 - decay)",
        "averaged.mul_(1 - decay).add_(current.detach(), alpha=decay)"), phase=3),
    _m("EMA decay without warm-up", TR, "ema_no_warmup",
       ("return min(max_decay, (1 + step) / (10 + step))", "return max_decay"), phase=3),
    _m("images shifted by 0.5, not stretched", TR, "data_not_stretched",
       ("    return images * 2 - 1\n", "    return images - 0.5\n"), phase=3),
    _m("min-SNR clipped from below", TR, "snr_clip_wrong_way",
       ("clipped = snr.clamp(max=gamma)", "clipped = snr.clamp(min=gamma)"), phase=3),
    _m("min-SNR with ᾱ_t for SNR_t", TR, "alpha_bar_as_snr",
       ("snr = schedule.snr.to(t.device)[t]", "snr = schedule.alphas_cumprod.to(t.device)[t]"), phase=3),
    _m("weighted loss divided by Σ w", TR, "loss_weights_normalised",
       ("        per_image = per_image * weights.to(per_image.dtype)\n",
        "        return (per_image * weights.to(per_image.dtype)).sum() / weights.sum()\n"), phase=3),
    _m("t drawn below T − 1", TR, "t_upper_bound_off_by_one",
       ("t = torch.randint(0, num_timesteps, (x0.shape[0],)", "t = torch.randint(0, num_timesteps - 1, (x0.shape[0],)"),
       phase=3),
    _m("training_step draws only what is missing", TR, "step_draws_only_missing",
       ("    if t is None or noise is None:\n"
        "        drawn_t, drawn_noise = sample_training_inputs(x0, schedule.num_timesteps, generator)\n"
        "        t = drawn_t if t is None else t\n"
        "        noise = drawn_noise if noise is None else noise\n",
        "    if t is None:\n"
        "        t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), generator=generator)\n"
        "    if noise is None:\n"
        "        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)\n"), phase=3),
    _m("training_step without min-SNR weights", TR, "step_snr_gamma_ignored",
       ("weights = None if snr_gamma is None else min_snr_weights(t, schedule, prediction, snr_gamma)",
        "weights = None"), phase=3),
    _m("training target from x_t", TR, "target_from_xt",
       ("target = training_target(prediction, x0, noise, t, schedule)",
        "target = training_target(prediction, x_t, noise, t, schedule)"), phase=3),
    _m("EMA warm-up from 0", TR, "ema_warmup_off_by_one",
       ("return min(max_decay, (1 + step) / (10 + step))", "return min(max_decay, step / (10 + step))"), phase=3),
    _m("EMA buffers not copied", TR, "ema_buffers_not_copied",
       ("    for averaged, current in zip(ema_model.buffers(), model.buffers()):\n        averaged.copy_(current)\n",
        ""), phase=3),
    # Phase 4: sampling
    _m("x̂_0 not clipped", DF, "x0_not_clipped",
       ("        x0_hat = x0_hat.clamp(-1.0, 1.0)\n", "        x0_hat = x0_hat\n"), phase=4),
    _m("x̂_0 clipped to [0, 1]", DF, "clipped_to_unit_range",
       ("x0_hat = x0_hat.clamp(-1.0, 1.0)", "x0_hat = x0_hat.clamp(0.0, 1.0)"), phase=4),
    _m("ε̂ not recomputed after clipping", DF, "eps_not_recomputed",
       ("        eps_hat = eps_from_x0(x_t, t, x0_hat, schedule)\n", "        eps_hat = eps_hat\n"), phase=4),
    _m("ᾱ_prev wraps around at t = −1", DF, "alpha_bar_at_wraps",
       ("return extract(with_one, t + 1, x)", "return extract(schedule.alphas_cumprod, t, x)"), phase=4),
    _m("padded ᾱ indexed with t", DF, "alpha_bar_at_shifted",
       ("return extract(with_one, t + 1, x)", "return extract(with_one, t, x)"), phase=4),
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
    _m("DDIM direction not clamped", DF, "ddim_not_clamped",
       ("direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps_hat",
        "direction = (1 - alpha_bar_prev - sigma**2).sqrt() * eps_hat"), phase=4),
    _m("DDIM direction without the σ² correction", DF, "ddim_no_sigma_correction",
       ("direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps_hat",
        "direction = (1 - alpha_bar_prev).clamp(min=0).sqrt() * eps_hat"), phase=4),
    _m("DDIM without σ · z", DF, "ddim_noise_not_added",
       ("return alpha_bar_prev.sqrt() * x0_hat + direction + sigma * noise",
        "return alpha_bar_prev.sqrt() * x0_hat + direction"), phase=4),
    _m("timesteps in ascending order", DF, "timesteps_ascending",
       ("return ascending.long().flip(0)", "return ascending.long()"), phase=4),
    _m("leading and trailing exchanged", DF, "spacing_confused",
       ("    if spacing == \"leading\":\n", "    if spacing == \"trailing\":\n"),
       ("    elif spacing == \"trailing\":\n", "    elif spacing == \"leading\":\n"), phase=4),
    _m("trailing not shifted by one", DF, "trailing_not_shifted",
       ("ascending = ((num_timesteps - index * num_timesteps / num_steps).round() - 1).flip(0)",
        "ascending = (num_timesteps - index * num_timesteps / num_steps).round().flip(0)"), phase=4),
    _m("loop drops clip_x0", DF, "loop_clip_ignored",
       ("        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction, clip_x0)\n"
        "        if trajectory is not None:\n",
        "        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction)\n"
        "        if trajectory is not None:\n"), phase=4),
    _m("loop drops eta", DF, "loop_eta_ignored",
       ("x = ddim_step(x, t, t_prev, x0_hat, eps_hat, schedule, eta, noise)",
        "x = ddim_step(x, t, t_prev, x0_hat, eps_hat, schedule, noise=noise)"), phase=4),
    _m("loop always takes the DDIM step", DF, "loop_sampler_ignored",
       ("        if sampler == \"ddpm\":\n"
        "            x = ddpm_step(x, t, t_prev, x0_hat, schedule, noise, variance)\n"
        "        else:\n"
        "            x = ddim_step(x, t, t_prev, x0_hat, eps_hat, schedule, eta, noise)\n",
        "        x = ddim_step(x, t, t_prev, x0_hat, eps_hat, schedule, eta, noise)\n"), phase=4),
    _m("loop drops guidance_scale", DF, "loop_guidance_ignored",
       ("        output = call_model(model, x, t, class_labels, guidance_scale)\n        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction, clip_x0)\n        if trajectory",
        "        output = call_model(model, x, t, class_labels)\n        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction, clip_x0)\n        if trajectory"),
       phase=4),
    _m("loop drops class_labels", DF, "loop_labels_ignored",
       ("        output = call_model(model, x, t, class_labels, guidance_scale)\n        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction, clip_x0)\n        if trajectory",
        "        output = call_model(model, x, t)\n        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction, clip_x0)\n        if trajectory"),
       phase=4),
    _m("x̂_0 clipped although clip_x0=False", DF, "clipped_when_not_asked",
       ("    if clip_x0:\n        x0_hat = x0_hat.clamp(-1.0, 1.0)\n",
        "    if True:\n        x0_hat = x0_hat.clamp(-1.0, 1.0)\n"), phase=4),
    _m("v conversions swapped", DF, "v_conversions_swapped",
       ("x0_hat, eps_hat = x0_from_v(x_t, t, model_output, schedule), eps_from_v(x_t, t, model_output, schedule)",
        "x0_hat, eps_hat = eps_from_v(x_t, t, model_output, schedule), x0_from_v(x_t, t, model_output, schedule)"),
       phase=4),
    _m("ᾱ table of √ᾱ", DF, "alpha_bar_at_sqrt",
       ("with_one = torch.cat([schedule.alphas_cumprod.new_ones(1), schedule.alphas_cumprod])",
        "with_one = torch.cat([schedule.alphas_cumprod.new_ones(1), schedule.sqrt_alphas_cumprod])"), phase=4),
    _m("posterior x̂_0 weight without √", DF, "x0_weight_no_sqrt",
       ("coef_x0 = alpha_bar_prev.sqrt() * beta / (1 - alpha_bar)", "coef_x0 = alpha_bar_prev * beta / (1 - alpha_bar)"),
       phase=4),
    _m("ddpm_step passes x_t and x̂_0 swapped", DF, "posterior_arguments_swapped",
       ("mean, step_variance = posterior_mean_variance(x0_hat, x_t, t, t_prev, schedule, variance)",
        "mean, step_variance = posterior_mean_variance(x_t, x0_hat, t, t_prev, schedule, variance)"), phase=4),
    _m("DDIM σ without its square roots", DF, "ddim_sigma_squared",
       ("sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()",
        "sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))"), phase=4),
    _m("DDIM x̂_0 weighted by √ᾱ_t", DF, "step_alpha_bar_for_prev",
       ("return alpha_bar_prev.sqrt() * x0_hat + direction + sigma * noise",
        "return alpha_bar.sqrt() * x0_hat + direction + sigma * noise"), phase=4),
    _m("loop drops prediction", DF, "loop_prediction_ignored",
       ("        x0_hat, eps_hat = model_predictions(output, x, t, schedule, prediction, clip_x0)\n"
        "        if trajectory is not None:\n            trajectory.record(step, x, x0_hat)\n        # Draw z",
        "        x0_hat, eps_hat = model_predictions(output, x, t, schedule, clip_x0=clip_x0)\n"
        "        if trajectory is not None:\n            trajectory.record(step, x, x0_hat)\n        # Draw z"), phase=4),
    _m("loop drops spacing", DF, "loop_spacing_ignored",
       ("pairs = timestep_pairs(inference_timesteps(schedule.num_timesteps, num_steps, spacing))\n"
        "    for step, previous in progress_bar(pairs, progress, f\"{sampler} sampling\")",
        "pairs = timestep_pairs(inference_timesteps(schedule.num_timesteps, num_steps))\n"
        "    for step, previous in progress_bar(pairs, progress, f\"{sampler} sampling\")"), phase=4),
    _m("loop steps t → t − 1", DF, "loop_pairs_ignored",
       ("        t_prev = torch.full((batch,), previous, dtype=torch.int64, device=device)\n        # One network call",
        "        t_prev = t - 1\n        # One network call"), phase=4),
    # Phase 5: class conditioning and guidance
    _m("class embedding not added", UN, "class_embedding_ignored",
       ("return time_emb + class_embedding(class_labels)  # (B, D) + (B, D)", "return time_emb"), phase=5),
    _m("class embedding instead of the time embedding", UN, "time_embedding_replaced",
       ("return time_emb + class_embedding(class_labels)  # (B, D) + (B, D)", "return class_embedding(class_labels)"),
       phase=5),
    _m("null label 0 when labels are None", UN, "null_class_collides",
       ("class_labels = torch.full((time_emb.shape[0],), num_classes, dtype=torch.int64",
        "class_labels = torch.full((time_emb.shape[0],), 0, dtype=torch.int64"), phase=5),
    _m("label dropout never applied", TR, "label_dropout_never_applied",
       ("return torch.where(draws < p_uncond, null, class_labels)", "return class_labels"), phase=5),
    _m("label dropout inverted", TR, "label_dropout_inverted",
       ("return torch.where(draws < p_uncond, null, class_labels)",
        "return torch.where(draws < p_uncond, class_labels, null)"), phase=5),
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
    _m("noisy images clamped", DG, "degradation_clamped",
       ("return images + sigma * noise", "return (images + sigma * noise).clamp(-1, 1)"), phase=5),
    _m("blur padded with zeros", DG, "blur_zero_padding",
       ("F.pad(images, (radius, radius, 0, 0), mode=\"reflect\")", "F.pad(images, (radius, radius, 0, 0))"),
       ("F.pad(blurred, (0, 0, radius, radius), mode=\"reflect\")", "F.pad(blurred, (0, 0, radius, radius))"),
       phase=5),
    _m("blur along the width only", DG, "blur_one_direction",
       ("    return F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode=\"reflect\"), along_height, groups=channels)\n",
        "    return blurred\n"), phase=5),
    _m("super-resolution with max pooling", DG, "superres_max_pool",
       ("low = F.avg_pool2d(images, kernel_size=factor)", "low = F.max_pool2d(images, kernel_size=factor)"), phase=5),
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
    _m("class embedding concatenated", UN, "class_embedding_concatenated",
       ("return time_emb + class_embedding(class_labels)  # (B, D) + (B, D)",
        "return torch.cat([time_emb, class_embedding(class_labels)], dim=1)"), phase=5),
    _m("label dropout ignores the generator", TR, "generator_ignored",
       ("torch.rand(class_labels.shape, generator=generator, device=source)",
        "torch.rand(class_labels.shape, device=source)"), phase=5),
    _m("label draws shaped (B, 1)", TR, "label_draws_shaped_b1",
       ("torch.rand(class_labels.shape, generator=generator, device=source)",
        "torch.rand((len(class_labels), 1), generator=generator, device=source)"), phase=5),
    _m("CFG timesteps not doubled", DF, "cfg_t_not_doubled", ("torch.cat([t, t])", "t"), phase=5),
    _m("CFG with w − 1", DF, "cfg_w_minus_one",
       ("return unconditional + guidance_scale * (conditional - unconditional)",
        "return unconditional + (guidance_scale - 1) * (conditional - unconditional)"), phase=5),
    _m("CFG null label guessed as max + 1", DF, "cfg_null_label_ignored",
       ("null = torch.full_like(class_labels, null_label)",
        "null = torch.full_like(class_labels, int(class_labels.max()) + 1)"), phase=5),
    _m("blur kernel in float32", DG, "blur_kernel_dtype",
       ("kernel = gaussian_kernel(sigma, images.dtype).to(images.device)",
        "kernel = gaussian_kernel(sigma).to(images.device)"), phase=5),
    _m("JPEG inverse with the forward DCT", DG, "jpeg_forward_as_inverse",
       ("restored = dct.T @ quantised @ dct", "restored = dct @ quantised @ dct.T"), phase=5),
    _m("apply_mask ignores fill", DG, "mask_fill_ignored",
       ("return mask * images + (1 - mask) * fill", "return mask * images"), phase=5),
    _m("known region noised with 1 − ᾱ'", DF, "variance_as_std",
       ("known = alpha_bar_prev.sqrt() * x0_known + (1 - alpha_bar_prev).sqrt() * noise",
        "known = alpha_bar_prev.sqrt() * x0_known + (1 - alpha_bar_prev) * noise"), phase=5),
    # Phase 6: latent diffusion
    _m("mean and log-variance swapped", LT, "posterior_halves_swapped",
       ("mean, logvar = moments.chunk(2, dim=1)  # 2 × (B, C, h, w)", "logvar, mean = moments.chunk(2, dim=1)"),
       phase=6),
    _m("log-variance not clamped", LT, "logvar_not_clamped",
       ("return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)", "return mean, logvar"), phase=6),
    _m("moments split along the last axis", LT, "posterior_split_wrong_axis",
       ("mean, logvar = moments.chunk(2, dim=1)  # 2 × (B, C, h, w)", "mean, logvar = moments.chunk(2, dim=-1)"),
       phase=6),
    _m("σ = exp(logvar)", LT, "logvar_as_log_std",
       ("std = torch.exp(0.5 * logvar)", "std = torch.exp(logvar)"), phase=6),
    _m("posterior sample ignores the noise", LT, "posterior_noise_ignored",
       ("return mean + std * noise", "return mean + 0 * std"), phase=6),
    _m("posterior sample detached", LT, "posterior_sample_detached",
       ("return mean + std * noise", "return (mean + std * noise).detach()"), phase=6),
    _m("KL averaged over the elements", LT, "kl_mean_not_sum",
       ("return 0.5 * per_element.sum(dim=(1, 2, 3))", "return 0.5 * per_element.mean(dim=(1, 2, 3))"), phase=6),
    _m("KL without the −1", LT, "kl_missing_minus_one",
       ("per_element = mean.pow(2) + logvar.exp() - 1.0 - logvar", "per_element = mean.pow(2) + logvar.exp() - logvar"),
       phase=6),
    _m("KL summed over the batch", LT, "kl_batch_reduced",
       ("return 0.5 * per_element.sum(dim=(1, 2, 3))", "return 0.5 * per_element.sum()"), phase=6),
    _m("KL with σ² = exp(2·logvar)", LT, "logvar_as_log_std",
       ("per_element = mean.pow(2) + logvar.exp() - 1.0 - logvar",
        "per_element = mean.pow(2) + (2 * logvar).exp() - 1.0 - 2 * logvar"), phase=6),
    _m("encoder downsamples after the last level", LT, "ae_downsample_every_level",
       ("self.downsamples = nn.ModuleList(Downsample(c) for c in channels[:-1])",
        "self.downsamples = nn.ModuleList(Downsample(c) for c in channels)"), phase=6),
    _m("encoder head without SiLU", LT, "ae_head_silu_missing",
       ("moments = self.encoder_head(F.silu(self.encoder_norm(h)))", "moments = self.encoder_head(self.encoder_norm(h))"),
       phase=6),
    _m("decoder output through tanh", LT, "ae_decoder_tanh",
       ("return self.decoder_head(F.silu(self.decoder_norm(h)))",
        "return torch.tanh(self.decoder_head(F.silu(self.decoder_norm(h))))"), phase=6),
    _m("decoder upsamples before its block", LT, "ae_upsample_before_block",
       ("            h = block(h, emb)\n            if level < len(self.upsamples):\n"
        "                h = self.upsamples[level](h)  # doubles H and W",
        "            if level < len(self.upsamples):\n                h = self.upsamples[level](h)\n"
        "            h = block(h, emb)"), phase=6),
    _m("KL summed where it should be averaged", LT, "kl_summed_not_averaged",
       ("kl_per_element = kl_divergence(mean, logvar) / mean[0].numel()  # (B,)",
        "kl_per_element = kl_divergence(mean, logvar)"), phase=6),
    _m("the batch divided out twice", LT, "kl_batch_divided_twice",
       ("kl_per_element = kl_divergence(mean, logvar) / mean[0].numel()  # (B,)",
        "kl_per_element = kl_divergence(mean, logvar) / (mean[0].numel() * mean.shape[0])"), phase=6),
    _m("KL per image pixel", LT, "kl_per_pixel",
       ("kl_per_element = kl_divergence(mean, logvar) / mean[0].numel()  # (B,)",
        "kl_per_element = kl_divergence(mean, logvar) / images[0].numel()"), phase=6),
    _m("L1 and L2 swapped", LT, "reconstruction_loss_swapped",
       ('if reconstruction == "l1":', 'if reconstruction == "l2":'), phase=6),
    _m("β on the reconstruction", LT, "kl_weight_misplaced",
       ("return reconstruction_error + kl_weight * kl_per_element.mean()",
        "return kl_weight * reconstruction_error + kl_per_element.mean()"), phase=6),
    _m("scale = std", LT, "scale_is_std",
       ("scale = 1.0 / latents.std(**keep).reshape(shape)", "scale = latents.std(**keep).reshape(shape)"), phase=6),
    _m("biased std", LT, "latent_std_biased",
       ("scale = 1.0 / latents.std(**keep).reshape(shape)",
        "scale = 1.0 / latents.std(**keep, unbiased=False).reshape(shape)"), phase=6),
    _m("per_channel ignored", LT, "latent_stats_per_channel_ignored",
       ("dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)", "dims = (0, 1, 2, 3)"),
       ("shape = (-1, 1, 1) if per_channel else ()", "shape = ()"), phase=6),
    _m("center ignored", LT, "latent_center_ignored",
       ("    if not center:\n        shift = torch.zeros_like(shift)\n", ""), phase=6),
    _m("the scale factor forgotten", LT, "scale_forgotten",
       ("return (latents - shift) * scale", "return latents - shift"), phase=6),
    _m("shift and scale in the wrong order", LT, "shift_scale_order",
       ("return (latents - shift) * scale", "return latents * scale - shift"), phase=6),
    _m("to_diffusion divides by the scale", LT, "scale_divides",
       ("return (latents - shift) * scale", "return (latents - shift) / scale"), phase=6),
    _m("from_diffusion without unscaling", LT, "unscale_forgotten",
       ("return u / scale + shift", "return u + shift"), phase=6),
    _m("the inverse in the wrong order", LT, "unscale_wrong_order",
       ("return u / scale + shift", "return (u + shift) / scale"), phase=6),
    _m("from_diffusion multiplies by the scale", LT, "unscale_multiplies",
       ("return u / scale + shift", "return u * scale + shift"), phase=6),
    _m("the autoencoder left trainable", LT, "autoencoder_trainable",
       ("return autoencoder.eval().requires_grad_(False)", "return autoencoder.eval()"), phase=6),
    _m("the autoencoder left in training mode", LT, "autoencoder_train_mode",
       ("return autoencoder.eval().requires_grad_(False)", "return autoencoder.requires_grad_(False)"), phase=6),
    _m("the mean encoded instead of a sample", LT, "encode_mean_not_sample",
       ("latents = mean if noise is None else posterior_sample(mean, logvar, noise)", "latents = mean"), phase=6),
    _m("raw latents for the diffusion", LT, "latents_not_scaled",
       ("        return to_diffusion(latents, shift, scale)", "        return latents"), phase=6),
    _m("decoding without unscaling", LT, "decode_without_unscaling",
       ("return autoencoder.decode(from_diffusion(u, shift, scale)).clamp(-1.0, 1.0)",
        "return autoencoder.decode(u).clamp(-1.0, 1.0)"), phase=6),
    _m("latents clamped before decoding", LT, "latents_clamped_before_decoding",
       ("return autoencoder.decode(from_diffusion(u, shift, scale)).clamp(-1.0, 1.0)",
        "return autoencoder.decode(from_diffusion(u, shift, scale).clamp(-1.0, 1.0))"), phase=6),
    _m("decoded images not clamped", LT, "decoded_not_clamped",
       ("return autoencoder.decode(from_diffusion(u, shift, scale)).clamp(-1.0, 1.0)",
        "return autoencoder.decode(from_diffusion(u, shift, scale))"), phase=6),
    _m("latents clipped to [-1, 1] during sampling", LT, "latents_clipped",
       ("u = sample_loop(model, schedule, latent_shape, clip_x0=False, **sampler_options)",
        "u = sample_loop(model, schedule, latent_shape, clip_x0=True, **sampler_options)"), phase=6),
    _m("mean and log-variance from alternate channels", LT, "posterior_interleaved",
       ("mean, logvar = moments.chunk(2, dim=1)  # 2 × (B, C, h, w)", "mean, logvar = moments[:, 0::2], moments[:, 1::2]"),
       phase=6),
    _m("the mean clamped too", LT, "posterior_mean_clamped",
       ("return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)",
        "return mean.clamp(LOGVAR_MIN, LOGVAR_MAX), logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)"), phase=6),
    _m("σ = logvar", LT, "logvar_as_std", ("std = torch.exp(0.5 * logvar)", "std = logvar"), phase=6),
    _m("noise added to σ", LT, "posterior_noise_added_to_std",
       ("return mean + std * noise", "return mean + std + noise"), phase=6),
    _m("KL with the wrong sign", LT, "kl_sign",
       ("return 0.5 * per_element.sum(dim=(1, 2, 3))", "return -0.5 * per_element.sum(dim=(1, 2, 3))"), phase=6),
    _m("KL without the ½", LT, "kl_missing_half",
       ("return 0.5 * per_element.sum(dim=(1, 2, 3))", "return per_element.sum(dim=(1, 2, 3))"), phase=6),
    _m("σ² and log σ² swapped in the KL", LT, "kl_var_for_logvar",
       ("per_element = mean.pow(2) + logvar.exp() - 1.0 - logvar",
        "per_element = mean.pow(2) + logvar - 1.0 - logvar.exp()"), phase=6),
    _m("encoder without its GroupNorm", LT, "ae_norm_missing",
       ("moments = self.encoder_head(F.silu(self.encoder_norm(h)))", "moments = self.encoder_head(F.silu(h))"),
       phase=6),
    _m("reconstruction error summed", LT, "reconstruction_summed",
       ("reconstruction_error = F.l1_loss(reconstructions, images)",
        "reconstruction_error = F.l1_loss(reconstructions, images, reduction=\"sum\")"), phase=6),
    _m("the KL weight ignored", LT, "kl_weight_ignored",
       ("return reconstruction_error + kl_weight * kl_per_element.mean()",
        "return reconstruction_error + kl_per_element.mean()"), phase=6),
    _m("scale = 1 / variance", LT, "scale_is_inverse_variance",
       ("scale = 1.0 / latents.std(**keep).reshape(shape)", "scale = 1.0 / latents.var(**keep).reshape(shape)"),
       phase=6),
    _m("to_diffusion without the shift", LT, "shift_forgotten",
       ("return (latents - shift) * scale", "return latents * scale"), phase=6),
    _m("from_diffusion subtracts the shift", LT, "shift_added",
       ("return u / scale + shift", "return u / scale - shift"), phase=6),
    _m("from_diffusion does to_diffusion", LT, "from_diffusion_applies_to_diffusion",
       ("return u / scale + shift", "return (u - shift) * scale"), phase=6),
    _m("to_diffusion before decoding", LT, "decode_applies_to_diffusion",
       ("return autoencoder.decode(from_diffusion(u, shift, scale)).clamp(-1.0, 1.0)",
        "return autoencoder.decode(to_diffusion(u, shift, scale)).clamp(-1.0, 1.0)"), phase=6),
    _m("latents returned undecoded", LT, "latent_sample_not_decoded",
       ("    return decode_from_diffusion(autoencoder, u, shift, scale)\n    ### END SOLUTION",
        "    return u\n    ### END SOLUTION"), phase=6),
    # Phase 7: text-to-image
    _m("keep mask inverted", TX, "keep_mask_inverted",
       ("return tokens != pad_id  # (B, L) bool", "return tokens == pad_id  # (B, L) bool"), phase=7),
    _m("pad id 0 hard-coded", TX, "keep_mask_pad_id_ignored",
       ("return tokens != pad_id  # (B, L) bool", "return tokens != 0  # (B, L) bool"), phase=7),
    _m("mean over the padding too", TX, "mean_over_padding",
       ("return (embeddings * weights).sum(dim=1) / weights.sum(dim=1)  # (B, D) / (B, 1)",
        "return embeddings.mean(dim=1)"), phase=7),
    _m("masked sum over the padded length", TX, "masked_mean_over_length",
       ("return (embeddings * weights).sum(dim=1) / weights.sum(dim=1)  # (B, D) / (B, 1)",
        "return (embeddings * weights).sum(dim=1) / embeddings.shape[1]"), phase=7),
    _m("softmax over the queries", TX, "softmax_wrong_axis",
       ("weights = scores.softmax(dim=-1)  # each query's weights over the keys sum to 1",
        "weights = scores.softmax(dim=-2)"), phase=7),
    _m("attention without the scale", TX, "attention_no_scaling",
       ("scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, heads, N, L)",
        "scores = q @ k.transpose(-2, -1)"), phase=7),
    _m("attention scaled by 1/d", TX, "attention_scaled_by_d",
       ("scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, heads, N, L)",
        "scores = q @ k.transpose(-2, -1) / q.shape[-1]"), phase=7),
    _m("padding mask ignored", TX, "attention_mask_ignored",
       ("    if keep is not None:\n        scores = scores.masked_fill(~keep[:, None, None, :], float(\"-inf\"))", ""),
       phase=7),
    _m("padding mask inverted", TX, "attention_mask_inverted",
       ("scores = scores.masked_fill(~keep[:, None, None, :], float(\"-inf\"))",
        "scores = scores.masked_fill(keep[:, None, None, :], float(\"-inf\"))"), phase=7),
    _m("masked scores set to zero", TX, "attention_mask_zero_score",
       ("scores = scores.masked_fill(~keep[:, None, None, :], float(\"-inf\"))",
        "scores = scores.masked_fill(~keep[:, None, None, :], 0.0)"), phase=7),
    _m("heads split by reshape", TX, "heads_split_by_reshape",
       ("return z.reshape(batch, z.shape[1], self.heads, self.head_dim).transpose(1, 2)  # (B, heads, n, d)",
        "return z.reshape(batch, self.heads, z.shape[1], self.head_dim)"), phase=7),
    _m("heads merged by reshape", TX, "heads_merged_by_reshape",
       ("out = out.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)  # (B, N, heads·d)",
        "out = out.reshape(batch, length, self.heads * self.head_dim)"), phase=7),
    _m("keys and values from the image", TX, "kv_from_queries",
       ("k = split_heads(self.to_k(context))  # (B, heads, L, d)\n        v = split_heads(self.to_v(context))",
        "k = split_heads(self.to_k(x))  # (B, heads, L, d)\n        v = split_heads(self.to_v(x))"), phase=7),
    _m("post-norm text encoder layer", TX, "post_norm",
       ("x = x + self.attention(self.norm1(x), keep=keep)  # (B, L, dim)\n        return x + self.feed_forward(self.norm2(x))",
        "x = self.norm1(x + self.attention(x, keep=keep))  # (B, L, dim)\n        return self.norm2(x + self.feed_forward(x))"),
       phase=7),
    _m("no position embedding", TX, "position_embedding_missing",
       ("h = self.token_embedding(tokens) + self.position_embedding(positions)[None]", "h = self.token_embedding(tokens)"),
       phase=7),
    _m("no final norm", TX, "final_norm_missing",
       ("        return self.final_norm(h)\n", "        return h\n"), phase=7),
    _m("cross-attention before self-attention", TX, "cross_attention_order",
       ("x = x + self.self_attention(self.norm1(x))\n        x = x + self.cross_attention(self.norm2(x), context, keep)",
        "x = x + self.cross_attention(self.norm2(x), context, keep)\n        x = x + self.self_attention(self.norm1(x))"),
       phase=7),
    _m("proj_out not zeroed", TX, "proj_out_not_zero",
       ("        nn.init.zeros_(self.proj_out.weight)\n        nn.init.zeros_(self.proj_out.bias)\n", ""), phase=7),
    _m("feature map reshaped to tokens", TX, "spatial_reshape_not_permute",
       ("tokens = self.norm(x).permute(0, 2, 3, 1).reshape(batch, height * width, channels)",
        "tokens = self.norm(x).reshape(batch, height * width, channels)"), phase=7),
    _m("tokens reshaped back to a map", TX, "spatial_unflatten_reshape",
       ("out = self.proj_out(tokens).reshape(batch, height, width, channels).permute(0, 3, 1, 2)",
        "out = self.proj_out(tokens).reshape(batch, channels, height, width)"), phase=7),
    _m("spatial transformer without the residual", TX, "spatial_residual_missing",
       ("        return x + out\n", "        return out\n"), phase=7),
    _m("dropped captions become padding", TX, "captions_dropped_to_padding",
       ("return torch.where((draws < p_uncond)[:, None], empty, tokens)",
        "return torch.where((draws < p_uncond)[:, None], 0, tokens)"), phase=7),
    _m("caption dropout inverted", TX, "caption_dropout_inverted",
       ("return torch.where((draws < p_uncond)[:, None], empty, tokens)",
        "return torch.where((draws >= p_uncond)[:, None], empty, tokens)"), phase=7),
    _m("zeros as the unconditional caption", TX, "uncond_all_padding",
       ("empty = empty_tokens.to(tokens.device).expand_as(tokens)  # (B, L)\n    both",
        "empty = torch.zeros_like(tokens)  # (B, L)\n    both"), phase=7),
    _m("guidance with w + 1", TX, "cfg_paper_convention",
       ("return unconditional + guidance_scale * (conditional - unconditional)",
        "return unconditional + (1 + guidance_scale) * (conditional - unconditional)"), phase=7),
    _m("padding mask not passed on", TX, "text_mask_ignored",
       ("keep = keep_mask(tokens, self.pad_id)  # (B, L)", "keep = torch.ones_like(tokens, dtype=torch.bool)"),
       phase=7),
    _m("text pooled over the padding", TX, "mean_over_padding",
       ("pooled = masked_mean(context, keep)  # (B, text_dim)", "pooled = context.mean(dim=1)"), phase=7),
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
    elsewhere: dict[str, float]  # failing checks of other functions (and not integration checks using it) → points

    @property
    def caught(self) -> bool:
        return bool(self.naming)

    @property
    def points_lost_elsewhere(self) -> float:
        """The cascade: points a mistake in one function costs in the checks of others (should be 0)."""
        return sum(self.elsewhere.values())


def judge(mutant: Mutant, result: PhaseResult) -> MutantVerdict:
    title = MISTAKES[mutant.mistake].title
    failing = [check for check in result.checks if not check.passed]
    own = mutant.function
    return MutantVerdict(
        mutant,
        [check.number for check in failing],
        [check.number for check in failing if title in check.output],
        {check.number: check.points for check in failing
         if check.function.split(".")[0] != own and own not in {used.split(".")[0] for used in check.uses}},
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
    print("| mutant | function | mistake named | caught by (naming it) | failing checks | points lost elsewhere |")
    print("| --- | --- | --- | --- | --- | --- |")
    for verdict in verdicts:
        print(
            f"| {verdict.mutant.name} | {verdict.mutant.function} | {MISTAKES[verdict.mutant.mistake].title} | "
            f"{', '.join(verdict.naming) or 'NOT CAUGHT'} | {', '.join(verdict.failing) or '—'} | "
            f"{verdict.points_lost_elsewhere:g} {', '.join(verdict.elsewhere)} |"
        )
    missed = [v.mutant.name for v in verdicts if not v.caught]
    cascades = [v for v in verdicts if v.elsewhere]
    print(f"\n{len(verdicts) - len(missed)} of {len(verdicts)} mutants caught with their mistake named; "
          f"{len(cascades)} cost points in the checks of another function (largest: "
          f"{max((v.points_lost_elsewhere for v in verdicts), default=0):g} points).")
    return 1 if missed or cascades else 0


if __name__ == "__main__":
    sys.exit(main())
