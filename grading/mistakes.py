"""The catalogue of classic mistakes the checks recognise.

A check that fails compares the learner's output with the output of each
wrong variant it knows for that function (see ``check_close(mistakes=…)``).
When one matches, the failure message names the mistake with its title and
advice from this table. The mutation test (tests/repo/test_mutants.py) uses the
same titles to prove that each deliberate mistake is recognised by name.

Keys are stable identifiers for maintainers; titles and advice are for students.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What a check says of a function that is still a stub (the report shows it as one short line).
NOT_ATTEMPTED = "not attempted yet"


@dataclass(frozen=True)
class Mistake:
    """A classic mistake: a short title and one or two sentences on how to fix it."""

    title: str
    advice: str


MISTAKES: dict[str, Mistake] = {
    # Any function
    "input_modified_in_place": Mistake(
        "input modified in place",
        "An in-place operation on an argument (`x += …`, `x.mul_(…)`, `x.clamp_(…)`, `x[…] = …`) changes the "
        "caller's tensor, which it still needs (a schedule's table, a batch used again). Compute a new tensor "
        "instead (`x = x * …`), or work on `x.clone()`.",
    ),
    # §1.1–§1.2 schedules
    "float32_rounding": Mistake(
        "float32 rounding somewhere in a float64 computation",
        "Your values agree with the reference to about 7 digits, as float32 arithmetic does: some step ran in "
        "float32 (torch.linspace, torch.arange and torch.tensor make float32 unless given dtype=torch.float64; "
        ".float() or a float32 constant tensor does too). Keep every step in float64.",
    ),
    "schedule_float32": Mistake(
        "schedule computed in float32",
        "torch.linspace and torch.arange make float32 unless you pass dtype=torch.float64; "
        "casting to float64 afterwards keeps the float32 rounding.",
    ),
    "scaled_linear_not_scaled": Mistake(
        "scaled_linear without the 1000 / T scaling",
        "Both ends, beta_start and beta_end, are multiplied by 1000 / T before spacing.",
    ),
    "scaled_linear_inverse_scale": Mistake(
        "scaled_linear scaled by T / 1000 instead of 1000 / T",
        "Fewer steps need larger betas: multiply by 1000 / T.",
    ),
    "quadratic_not_squared": Mistake(
        "quadratic schedule not squared",
        "Space √β_start … √β_end linearly, then square every value.",
    ),
    "quadratic_squares_linear": Mistake(
        "quadratic schedule squares the linear betas",
        "Take square roots of the two ends first; squaring β_start … β_end gives tiny betas.",
    ),
    "beta_ratio_inverted": Mistake(
        "ratio of ᾱ values inverted",
        "α_t = ᾱ(t+1) / ᾱ(t): the later value over the earlier one.",
    ),
    "max_beta_missing": Mistake(
        "β not capped at max_beta",
        "Clamp each β_t to at most max_beta (0.999); without it the last step can have β = 1.",
    ),
    "cosine_no_offset": Mistake(
        "cosine schedule without its offset s",
        "f(τ) = cos²((τ + s) / (1 + s) · π/2) with s = 0.008; s keeps β_0 from being tiny.",
    ),
    "cosine_not_squared": Mistake(
        "cosine schedule with cos instead of cos²",
        "Nichol & Dhariwal's f(τ) is the cosine squared.",
    ),
    "sigmoid_not_flipped": Mistake(
        "sigmoid schedule rising instead of falling",
        "ᾱ must fall from 1 to 0: use (v_end − sigmoid(…)) / (v_end − v_start).",
    ),
    "karras_sigma_not_squared": Mistake(
        "ᾱ = 1 / (1 + σ) instead of 1 / (1 + σ²)",
        "σ is a standard deviation ratio; the variance ratio is σ².",
    ),
    "karras_descending": Mistake(
        "Karras σ levels in the paper's descending order",
        "Here t = 0 is the least noisy step: σ_0 = σ_min, σ_{T−1} = σ_max.",
    ),
    # §1.3 cumulative products and SNR
    "alpha_not_cumprod": Mistake(
        "α_t used where ᾱ_t belongs",
        "ᾱ_t is the running product ∏_{s≤t} α_s (torch.cumprod); α_t = 1 − β_t is one step's worth.",
    ),
    "cumprod_of_betas": Mistake(
        "cumulative product of β instead of α = 1 − β",
        "ᾱ_t multiplies the α_s = 1 − β_s, not the betas.",
    ),
    "alpha_bar_prev_wraps": Mistake(
        "ᾱ_{t−1} wraps around at t = 0",
        "torch.roll puts ᾱ_{T−1} in front; ᾱ_{−1} must be 1 (clean data before the first step).",
    ),
    "alpha_bar_prev_zero": Mistake(
        "ᾱ_{t−1} is 0 at t = 0",
        "Before the first step the data is clean: ᾱ_{−1} = 1.",
    ),
    "alpha_bar_prev_not_shifted": Mistake(
        "ᾱ_{t−1} not shifted (it equals ᾱ_t)",
        "Shift right by one and put a 1 in front.",
    ),
    "snr_inverted": Mistake(
        "SNR inverted (noise over signal)",
        "SNR_t = ᾱ_t / (1 − ᾱ_t): signal variance over noise variance.",
    ),
    "snr_sqrt": Mistake(
        "SNR as a ratio of standard deviations",
        "SNR is a ratio of variances: no square roots.",
    ),
    # §1.4 the posterior
    "beta_not_beta_tilde": Mistake(
        "β_t used where β̃_t belongs",
        "The posterior variance is β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), smaller than β_t.",
    ),
    "log_variance_not_clipped": Mistake(
        "log β̃ not clipped at t = 0",
        "β̃_0 = 0, so log β̃_0 = −∞; replace the first entry by β̃_1 before taking the log.",
    ),
    "posterior_coefficients_swapped": Mistake(
        "posterior mean coefficients swapped",
        "coef1 multiplies x_0 (it has β_t √ᾱ_{t−1}); coef2 multiplies x_t (it has √α_t (1 − ᾱ_{t−1})).",
    ),
    "posterior_alpha_bar_for_prev": Mistake(
        "ᾱ_t used where ᾱ_{t−1} belongs",
        "The posterior mixes the step before: coef1 has √ᾱ_{t−1}, coef2 has (1 − ᾱ_{t−1}).",
    ),
    "missing_sqrt": Mistake(
        "a square root is missing",
        "Coefficients multiply standard deviations: √ᾱ_t and √(1 − ᾱ_t), √α_t and √β_t.",
    ),
    # §1.5–§1.9 the forward process
    "no_broadcast_shape": Mistake(
        "coefficients not reshaped to (B, 1, 1, 1)",
        "A (B,) tensor broadcasts against the last dimension, not the batch: reshape it.",
    ),
    "t_off_by_one": Mistake(
        "t off by one",
        "Timesteps are 0-indexed: index the schedule with t itself (t = 0 is the first noising step).",
    ),
    "coefficients_swapped": Mistake(
        "signal and noise coefficients swapped",
        "x_0 (or x_{t−1}) takes the signal coefficient, ε the noise coefficient.",
    ),
    "q_step_uses_alpha_bar": Mistake(
        "one step uses ᾱ_t (a jump from x_0) instead of α_t",
        "q(x_t | x_{t−1}) scales by √α_t and adds variance β_t; ᾱ_t is for q(x_t | x_0).",
    ),
    "v_wrong_sign": Mistake(
        "v with the wrong sign",
        "v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho 2022): the x_0 term is subtracted.",
    ),
    "v_roles_swapped": Mistake(
        "v with x_0 and ε in each other's places",
        "v = √ᾱ_t ε − √(1 − ᾱ_t) x_0: √ᾱ_t multiplies ε here, unlike in q_sample.",
    ),
    "conversion_sign": Mistake(
        "a sign flipped in the conversion",
        "Solve x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (or the v rotation) for the unknown once more.",
    ),
    "conversion_multiplied": Mistake(
        "multiplied where you should divide",
        "Undoing a scaling divides by it: x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t.",
    ),
    "linear_end_excluded": Mistake(
        'β_end never reached (T + 1 points, the last one dropped)',
        'torch.linspace(β_start, β_end, T) already includes both ends: the last β is β_end.',
    ),
    "scaled_linear_one_end": Mistake(
        'only one end rescaled by 1000 / T',
        'Multiply both β_start and β_end by 1000 / T, then space them linearly.',
    ),
    "beta_is_one_minus_alpha_bar": Mistake(
        'ᾱ used as α_t (β = 1 − ᾱ, without the ratio)',
        'α_t is the ratio of consecutive ᾱ values: β_t = 1 − ᾱ(t+1) / ᾱ(t).',
    ),
    "max_beta_ignored": Mistake(
        'the max_beta argument ignored (0.999 hard-coded)',
        'Clamp at the max_beta you were given: callers pass other caps (Karras passes 1.0).',
    ),
    "alpha_bar_curve_short": Mistake(
        'ᾱ curve with T points instead of T + 1',
        'T betas need T + 1 values of ᾱ: τ = t / T for t = 0 … T.',
    ),
    "sigmoid_not_rescaled": Mistake(
        'sigmoid ᾱ not rescaled to run from 1 to 0',
        'Subtract from S(end/κ) and divide by S(end/κ) − S(start/κ), so that ᾱ(0) = 1 and ᾱ(1) = 0.',
    ),
    "sigmoid_ends_not_tempered": Mistake(
        'sigmoid end points not divided by the temperature κ',
        'The ends are S(start/κ) and S(end/κ), with the same κ as the middle term.',
    ),
    "karras_rho_ignored": Mistake(
        'Karras σ spaced linearly (ρ ignored)',
        'Space σ^(1/ρ) linearly between σ_min^(1/ρ) and σ_max^(1/ρ), then raise to the power ρ.',
    ),
    "karras_capped": Mistake(
        'Karras betas capped at 0.999',
        'Call betas_from_alphas_cumprod(…, max_beta=1.0): the cap would change σ_max when T is small.',
    ),
    "alpha_bar_prev_wrong_way": Mistake(
        'ᾱ_{t−1} shifted the wrong way',
        'ᾱ_prev[t] is ᾱ[t − 1]: a 1 in front, then ᾱ_0 … ᾱ_{T−2} (drop the last, not the first).',
    ),
    "snr_log": Mistake(
        'log-SNR instead of SNR',
        'SNR_t = ᾱ_t / (1 − ᾱ_t), without a logarithm.',
    ),
    "posterior_variance_inverted": Mistake(
        'β̃ ratio upside down',
        'β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t): ᾱ_{t−1} on top, ᾱ_t below.',
    ),
    "log_variance_floored": Mistake(
        'log β̃ floored instead of borrowing β̃_1 at t = 0',
        'Replace β̃_0 = 0 by β̃_1 before the logarithm, as DDPM does; a tiny floor gives a huge negative log.',
    ),
    "posterior_alpha_bar_for_alpha": Mistake(
        '√ᾱ_t where √α_t belongs in the weight of x_t',
        'coef2 = √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), with the one-step α_t = 1 − β_t.',
    ),
    "extract_assumes_4d": Mistake(
        'extract assumes 4-D x',
        'Reshape to (B,) followed by x.ndim − 1 ones: x may be (B, D) or (B, C, H, W).',
    ),
    "noise_coefficient_one_minus_sqrt": Mistake(
        '1 − √ᾱ_t instead of √(1 − ᾱ_t)',
        "The noise's weight is the square root of (1 − ᾱ_t); the variances, not the scales, add to 1.",
    ),
    "conversion_parentheses": Mistake(
        'only the second term divided (parentheses missing)',
        'Divide the whole difference: (x_t − …) / coefficient.',
    ),
    "conversion_coefficients_swapped": Mistake(
        'the two coefficients of the v conversion swapped',
        'x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v and ε̂ = √(1 − ᾱ_t) x_t + √ᾱ_t v.',
    ),
    # §2.1–§2.2 the timestep embedding
    "sin_cos_swapped": Mistake(
        "sines and cosines swapped",
        "The first half of the embedding holds the sines, the second half the cosines (§2.1).",
    ),
    "sin_cos_interleaved": Mistake(
        "sines and cosines interleaved",
        "Concatenate the two halves ([sin … sin, cos … cos]) instead of alternating sin, cos, sin, cos.",
    ),
    "frequency_formula": Mistake(
        "the frequency formula is off",
        "ω_i = max_period^(−i/h) for i = 0 … h − 1 with h = dim / 2: the exponent is negative and "
        "divided by h (not h − 1, not dim), so ω_0 = 1 and the frequencies fall towards 1 / max_period.",
    ),
    "mlp_activation": Mistake(
        "the time MLP's activation is misplaced",
        "TimeEmbedding is linear_1 → SiLU → linear_2, with nothing after linear_2 (each residual "
        "block applies its own SiLU before embed_proj).",
    ),
    # §2.3 the residual block
    "time_embedding_not_injected": Mistake(
        "time embedding not injected",
        "Add embed_proj(SiLU(emb)), shaped (B, C_out, 1, 1), to h after conv1: without it the "
        "network cannot tell how noisy its input is.",
    ),
    "embedding_without_silu": Mistake(
        "no SiLU on the embedding before embed_proj",
        "The block projects SiLU(emb), not emb (§2.3).",
    ),
    "embedding_wrong_place": Mistake(
        "time embedding added in the wrong place",
        "Add it between conv1 and norm2 (§2.3), not before conv1 or after conv2.",
    ),
    "groupnorm_missing": Mistake(
        "GroupNorm missing",
        "Each convolution of the block is preceded by GroupNorm then SiLU: norm1 before conv1, norm2 before conv2.",
    ),
    "residual_missing": Mistake(
        "the residual connection is missing",
        "Return h + skip(x): the block learns a correction to its input (skip is a 1×1 conv only when "
        "the channels change).",
    ),
    # §2.4 attention
    "attention_no_residual": Mistake(
        "attention without the residual",
        "Return x + to_out(…): the attention output is added to the block's input.",
    ),
    "attention_no_scaling": Mistake(
        "attention without the 1/√d scaling",
        "Divide the scores q kᵀ by √d before the softmax (Vaswani et al. 2017, eq. 1).",
    ),
    "attention_scaled_by_d": Mistake(
        "attention scaled by 1/d instead of 1/√d",
        "Divide the scores by the square root of the head width d: q·k sums d products, so its spread grows like √d.",
    ),
    "attention_scaled_by_channels": Mistake(
        "attention scaled by 1/√C instead of 1/√d",
        "d is the width of one head, C / num_heads, not the full channel count.",
    ),
    "softmax_wrong_axis": Mistake(
        "softmax over the wrong axis",
        "Each query's weights over the keys must sum to 1: softmax over the last axis of the "
        "(B, heads, N_queries, N_keys) scores.",
    ),
    # §2.5 resampling
    "upsample_wrong_dims": Mistake(
        "upsampling changes the wrong dimension",
        "Double both H and W, and only them: F.interpolate(x, scale_factor=2, mode=\"nearest\") on (B, C, H, W).",
    ),
    "upsample_not_nearest": Mistake(
        "upsampling is not nearest-neighbour",
        "Use mode=\"nearest\" (each pixel becomes a 2×2 block), then the 3×3 convolution.",
    ),
    # §2.6–§2.7 the U-Net
    "skip_not_concatenated": Mistake(
        "skip connections dropped or added instead of concatenated",
        "Each decoder block takes torch.cat([h, skips.pop()], dim=1), so its input has the running "
        "channels plus the skip's (§2.6 counts them).",
    ),
    "skip_before_attention": Mistake(
        "skips kept before the attention",
        "Keep each encoder output after its attention block: h = attention(block(h, emb)), then append h.",
    ),
    "head_not_zero": Mistake(
        "the output head is not zero-initialised",
        "Set head_conv's weight and bias to zero (nn.init.zeros_): a fresh network predicts 0 (§2.6).",
    ),
    # §2.1–§2.7, more: the fresh-eyes study's slips
    "frequency_index_from_one": Mistake(
        "frequency index starts at 1",
        "i runs over 0, 1, …, h − 1 (torch.arange(h)), so the first frequency is ω_0 = max_period^0 = 1; "
        "starting at 1 shifts every frequency one step down.",
    ),
    "max_period_ignored": Mistake(
        "max_period ignored (10000 hard-coded)",
        "Use the max_period argument in ω_i = max_period^(−i/h); 10000 is only its default.",
    ),
    "embedding_float32": Mistake(
        "sinusoids computed in float32, then cast",
        "Compute the angles, sines and cosines in the dtype you are given (t.to(dtype), torch.arange(…, dtype=dtype)): "
        "float32 angles of up to ~1000 radians lose about 1e-4, which no later cast brings back.",
    ),
    "sinusoids_wrong_dtype": Mistake(
        "sinusoids not made in the weights' dtype",
        "Call timestep_embedding(t, base_dim, dtype=self.linear_1.weight.dtype): a float64 (or half-precision) "
        "model cannot multiply float32 sinusoids.",
    ),
    "silu_before_norm": Mistake(
        "SiLU and GroupNorm in the wrong order",
        "Each convolution's input is SiLU(GroupNorm(·)): normalise first, then the activation (norm1 → SiLU → conv1, "
        "norm2 → SiLU → dropout → conv2).",
    ),
    "groupnorm_arguments_swapped": Mistake(
        "GroupNorm's arguments swapped",
        "nn.GroupNorm takes the number of groups first, then the channels: nn.GroupNorm(groups, channels).",
    ),
    "embedding_not_reshaped": Mistake(
        "embedding added without reshaping to (B, C_out, 1, 1)",
        "embed_proj gives (B, C_out); index it [:, :, None, None] before adding it to h (B, C_out, H, W), or "
        "broadcasting lines it up with H and W instead of B and C.",
    ),
    "heads_split_by_reshape": Mistake(
        "heads split by a plain reshape",
        "Reshape (B, N, C) to (B, N, heads, d), then transpose to (B, heads, N, d) (and back the same way): "
        "reshaping straight to (B, heads, N, d) mixes positions and channels across heads.",
    ),
    "attention_output_not_transposed": Mistake(
        "attention output reshaped without the transpose",
        "to_out gives (B, N, C): transpose it to (B, C, N) before reshaping to (B, C, H, W), as the tokens were made.",
    ),
    "queries_keys_swapped": Mistake(
        "queries and keys swapped",
        "to_qkv's output is the queries, then the keys, then the values: q, k, v = to_qkv(tokens).chunk(3, dim=-1).",
    ),
    "upsample_conv_first": Mistake(
        "Upsample convolves before interpolating",
        "Interpolate first, then the 3×3 convolution: conv(F.interpolate(x, scale_factor=2, mode=\"nearest\")).",
    ),
    "upsample_tiled": Mistake(
        "the image tiled instead of each pixel repeated",
        "x.repeat(1, 1, 2, 2) puts four copies of the whole image side by side; nearest-neighbour "
        "F.interpolate (or repeat_interleave on H and W) turns each pixel into a 2×2 block.",
    ),
    "downsample_pooled": Mistake(
        "pooling instead of a strided convolution",
        "Downsample is one 3×3 convolution with stride=2 and padding=1: no pooling, and no stride-1 convolution.",
    ),
    "decoder_blocks_count": Mistake(
        "n decoder blocks per level instead of n + 1",
        "Each decoder level has num_res_blocks + 1 residual blocks: the extra one takes the skip of the level's "
        "Downsample (or of the stem), so every kept skip is popped once (§2.6).",
    ),
    "dropout_not_passed": Mistake(
        "dropout not passed to the residual blocks",
        "Build every ResidualBlock, encoder, middle and decoder, with UNet's dropout argument.",
    ),
    "num_heads_not_passed": Mistake(
        "num_heads not passed to an attention block",
        "Build every AttentionBlock, the middle one included, with AttentionBlock(c, num_heads, groups).",
    ),
    "groups_not_passed": Mistake(
        "the groups argument not used everywhere",
        "Every GroupNorm of the network, head_norm and the blocks' included, uses UNet's groups argument "
        "(nn.GroupNorm(groups, C)); do not hard-code 8.",
    ),
    "stem_ignores_cond": Mistake(
        "the stem ignores cond_channels",
        "The condition image is concatenated to x before the stem: stem = Conv2d(in_channels + cond_channels, C, 3, "
        "padding=1) (0 extra channels unless Phase 5 asks for them).",
    ),
    "skip_concat_order": Mistake(
        "skip concatenated before h",
        "Concatenate in the order torch.cat([h, skips.pop()], dim=1): h's channels first, then the skip's.",
    ),
    "head_silu_missing": Mistake(
        "the head's SiLU is missing",
        "The head is head_conv(SiLU(head_norm(h))), like the inside of every residual block.",
    ),
    "skips_popped_wrong_order": Mistake(
        "skips popped in the wrong order",
        "The decoder takes the skips last in, first out: skips.pop() returns the newest, which has the "
        "decoder's current resolution; skips.pop(0) returns the stem's, full-size one.",
    ),
    # §3.1–§3.4 training
    "data_unit_range": Mistake(
        "images left in [0, 1] instead of [-1, 1]",
        "The forward process assumes data in [-1, 1] (so that x_T is pure noise of the same scale): map x ↦ 2x − 1.",
    ),
    "data_scaled_255": Mistake(
        "images scaled as if they were 0–255",
        "The datasets give floats in [0, 1] already (like torchvision's ToTensor): map x ↦ 2x − 1, no 255.",
    ),
    "eps_target_for_v": Mistake(
        "the ε target used with v-prediction",
        "Each prediction type has its own target: ε for \"eps\", x_0 for \"x0\", v_target(x0, t, noise) for \"v\".",
    ),
    "targets_swapped": Mistake(
        "the ε and x_0 targets swapped",
        "\"eps\" trains the network to output the noise, \"x0\" the clean images.",
    ),
    "snr_not_clipped": Mistake(
        "min-SNR weights without the clip at γ",
        "Use min(SNR_t, γ) (Hang et al. 2023): without the clip the weights are all 1 for ε-prediction.",
    ),
    "min_snr_formula": Mistake(
        "the min-SNR weight of another prediction type",
        "ε: min(SNR, γ) / SNR; x_0: min(SNR, γ); v: min(SNR, γ) / (SNR + 1) (§3.2).",
    ),
    "loss_wrong_reduction": Mistake(
        "the loss averaged over the wrong axes",
        "Average each image's error over its pixels and channels (mean over every dimension but the "
        "batch), weight it, then average over the batch: sums make the loss (and the learning rate) depend on the image size.",
    ),
    "loss_weights_ignored": Mistake(
        "the per-image weights are ignored",
        "Multiply each image's mean error by its weight before averaging over the batch.",
    ),
    "t_from_one": Mistake(
        "t drawn from {1, …, T} instead of {0, …, T−1}",
        "Timesteps are 0-indexed here: torch.randint(0, T, (B,)) (the upper bound is exclusive).",
    ),
    "draw_order": Mistake(
        "t and the noise drawn in the other order",
        "Draw t first, then the noise, from the same generator: the order is part of the contract that "
        "makes runs reproducible and comparable with the reference.",
    ),
    "noise_shape": Mistake(
        "noise not matched to x0's shape",
        "ε must have x0's full shape (B, C, H, W), with x0's dtype: torch.randn(x0.shape, …).",
    ),
    "model_sees_x0": Mistake(
        "the model is given x_0 instead of x_t",
        "Noise the images first (x_t = q_sample(x0, t, noise)) and give the network x_t and t.",
    ),
    "step_given_discarded": Mistake(
        "the given t or noise replaced by its draw",
        "Draw both with sample_training_inputs when either is missing, then keep the one the caller gave: "
        "t = drawn_t if t is None else t, and the same for the noise.",
    ),
    "training_labels_ignored": Mistake(
        "class_labels not passed to the model",
        "Call model(x_t, t, class_labels): without them a class-conditional model learns only the "
        "unconditional answer.",
    ),
    "ema_no_warmup": Mistake(
        "EMA decay without its warm-up",
        "Use min(max_decay, (1 + step) / (10 + step)): early averages must forget fast.",
    ),
    "ema_inverted": Mistake(
        "EMA decay inverted",
        "θ_ema ← decay · θ_ema + (1 − decay) · θ: the decay (close to 1) multiplies the average, not the new weights.",
    ),
    "data_not_stretched": Mistake(
        "images shifted but not stretched",
        "x − 0.5 gives [−0.5, 0.5], a range half as wide as the model expects: stretch as well as shift, x ↦ 2x − 1.",
    ),
    "v_args_swapped": Mistake(
        "v with x_0 and ε swapped",
        "v_target takes (x0, t, noise, schedule) in that order; swapped, it gives √ᾱ_t x_0 − √(1 − ᾱ_t) ε.",
    ),
    "snr_clip_wrong_way": Mistake(
        "min-SNR clip in the wrong direction (max instead of min)",
        "The weight uses min(SNR_t, γ): snr.clamp(max=gamma) caps the large SNRs at γ, clamp(min=gamma) "
        "raises the small ones instead.",
    ),
    "alpha_bar_as_snr": Mistake(
        "ᾱ_t used in place of SNR_t",
        "SNR_t = ᾱ_t / (1 − ᾱ_t) (schedule.snr), not ᾱ_t itself: ᾱ_t ≤ 1 is never clipped by γ.",
    ),
    "min_snr_gamma_ignored": Mistake(
        "the gamma argument ignored (γ = 5 hard-coded)",
        "Clip at the gamma you were given: 5 is only the paper's default, and callers pass others.",
    ),
    "loss_weights_after_mean": Mistake(
        "weights applied after averaging over the batch",
        "mean(w) · mean(ℓ) forgets which image had which weight: weight each image's own mean error, then average.",
    ),
    "huber_without_half": Mistake(
        "Huber loss without the ½",
        "Huber's quadratic zone is d²/2, which meets the linear zone δ(|d| − δ/2) smoothly at |d| = δ: "
        "F.huber_loss has it.",
    ),
    "loss_type_ignored": Mistake(
        "loss_type ignored (always the squared error)",
        "Pick the per-pixel error from loss_type: d² for \"l2\", |d| for \"l1\", Huber's for \"huber\".",
    ),
    "loss_weights_normalised": Mistake(
        "weighted loss divided by the sum of the weights",
        "The loss is (1/B) Σ_b w_b ℓ_b: divide by the batch size, not by Σ_b w_b, which would undo the "
        "scale of the min-SNR weights.",
    ),
    "t_upper_bound_off_by_one": Mistake(
        "t drawn from {0, …, T−2}",
        "torch.randint's upper bound is already exclusive: torch.randint(0, T, …) reaches T − 1.",
    ),
    "step_draws_only_missing": Mistake(
        "only the missing one of t and the noise drawn",
        "When either is None, draw both with sample_training_inputs and keep the one you were given: the "
        "generator then moves on the same way whatever the caller passes.",
    ),
    "step_snr_gamma_ignored": Mistake(
        "min-SNR weights not applied",
        "When snr_gamma is set, give diffusion_loss the weights min_snr_weights(t, schedule, prediction, snr_gamma).",
    ),
    "step_gamma_not_passed": Mistake(
        "snr_gamma not passed on (γ = 5 always)",
        "Call min_snr_weights(t, schedule, prediction, snr_gamma): without the last argument, its default γ = 5 is used.",
    ),
    "step_loss_type_not_passed": Mistake(
        "loss_type not passed on to diffusion_loss",
        "Call diffusion_loss(output, target, loss_type, weights): without loss_type, its default \"l2\" is used.",
    ),
    "target_from_xt": Mistake(
        "target computed from x_t instead of x_0",
        "training_target takes the clean x0 and the noise: x_t is only the model's input.",
    ),
    "ema_warmup_off_by_one": Mistake(
        "EMA warm-up off by one step",
        "The warm-up is (1 + step) / (10 + step): 0.1 at step 0, not 0 (which would copy the model outright).",
    ),
    "ema_max_not_min": Mistake(
        "max instead of min in the EMA decay",
        "min(max_decay, (1 + step) / (10 + step)): max_decay is a cap, which the warm-up ratio must never exceed.",
    ),
    "ema_buffers_not_copied": Mistake(
        "buffers not copied into the EMA model",
        "After the parameters, copy each buffer (e.g. BatchNorm statistics) across: "
        "for b_ema, b in zip(ema_model.buffers(), model.buffers()): b_ema.copy_(b).",
    ),
    "ema_not_in_place": Mistake(
        "EMA parameters rebound, not updated in place",
        "`averaged = decay * averaged + …` only gives the loop variable a new tensor: change the parameter itself, "
        "averaged.mul_(decay).add_(current, alpha=1 − decay) (or averaged.lerp_(current, 1 − decay)).",
    ),
    # §4.1–§4.7 sampling
    "x0_not_clipped": Mistake(
        "x̂_0 not clipped",
        "With clip_x0=True, clamp x̂_0 to [-1, 1] (the data range) before it is used.",
    ),
    "clipped_to_unit_range": Mistake(
        "x̂_0 clipped to [0, 1]",
        "The model's images live in [-1, 1]: clamp x̂_0 to [-1, 1].",
    ),
    "eps_not_recomputed": Mistake(
        "ε̂ not recomputed after clipping",
        "Once x̂_0 is clamped, recompute ε̂ = eps_from_x0(x_t, t, x̂_0) so that x_t, x̂_0 and ε̂ agree.",
    ),
    "alpha_bar_at_wraps": Mistake(
        "ᾱ at t = −1 wraps around to ᾱ_{T−1}",
        "values[-1] is Python's last element, pure noise; t = −1 is the clean image, whose ᾱ is 1. "
        "Prepend a 1 and index with t + 1.",
    ),
    "alpha_bar_at_shifted": Mistake(
        "ᾱ off by one step",
        "alpha_bar_at(t) is ᾱ_t itself; only t = −1 is special (ᾱ = 1).",
    ),
    "variance_small_large_confused": Mistake(
        "β and β̃ confused",
        "variance=\"small\" is the posterior's β̃ = β (1 − ᾱ_prev) / (1 − ᾱ_t); \"large\" is β itself.",
    ),
    "one_step_beta_for_strided": Mistake(
        "the one-step β_t used for a strided pair",
        "For a jump t → t_prev, α = ᾱ_t / ᾱ_prev and β = 1 − α; schedule.betas[t] is only the β of t → t − 1.",
    ),
    "posterior_mean_swapped": Mistake(
        "posterior mean coefficients swapped",
        "The weight with β (√ᾱ_prev β / (1 − ᾱ_t)) multiplies x̂_0; the one with √α (1 − ᾱ_prev) multiplies x_t.",
    ),
    "noise_at_last_step": Mistake(
        "noise added at the last step",
        "Where t_prev = −1 the step's output is the sample: add no noise there (DDPM Algorithm 2, z = 0).",
    ),
    "variance_as_std": Mistake(
        "the variance used as a standard deviation",
        "Noise is scaled by the standard deviation: √variance · z.",
    ),
    "ddim_eta_ignored": Mistake(
        "η ignored",
        "σ = η · √((1 − ᾱ_prev) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_prev): η = 0 means no noise, η = 1 DDPM-like noise.",
    ),
    "ddim_not_clamped": Mistake(
        "1 − ᾱ_prev − σ² not clamped at 0 before the square root",
        "At η = 1 it is mathematically ≥ 0 but rounds to about −1e-8 in float32 on long jumps: "
        ".clamp(min=0) before .sqrt(), or those steps return NaN.",
    ),
    "ddim_no_sigma_correction": Mistake(
        "the DDIM direction term without its σ² correction",
        "The direction pointing to x_t is √(1 − ᾱ_prev − σ²) · ε̂: the noise σ z takes its share of the variance.",
    ),
    "ddim_noise_not_added": Mistake(
        "DDIM's σ · z not added",
        "With η > 0, add the fresh noise σ · z (DDIM eq. 12, last term).",
    ),
    "timesteps_ascending": Mistake(
        "timesteps in ascending order",
        "A sampler walks from noise to data: return the timesteps from the largest down to the smallest.",
    ),
    "spacing_confused": Mistake(
        "another spacing's timesteps",
        "leading: multiples of T // N from 0; trailing: T − i·T/N rounded, minus 1; linspace: N values from 0 to T − 1.",
    ),
    "trailing_not_shifted": Mistake(
        "trailing timesteps not shifted down by one",
        "round(T − i·T/N) starts at T, which is not a timestep: subtract 1 so the first is T − 1.",
    ),
    "loop_clip_ignored": Mistake(
        "clip_x0 not passed on",
        "Call model_predictions(…, prediction, clip_x0) with the loop's own clip_x0.",
    ),
    "loop_sampler_ignored": Mistake(
        "the other sampler's step used",
        "sampler=\"ddpm\" takes ddpm_step with the variance; sampler=\"ddim\" takes ddim_step with η.",
    ),
    "loop_eta_ignored": Mistake(
        "the loop's η not passed on",
        "Give ddim_step the loop's eta, and draw z for each step when η > 0.",
    ),
    "loop_guidance_ignored": Mistake(
        "guidance_scale not passed on",
        "Call call_model(model, x, t, class_labels, guidance_scale): without it the loop samples "
        "unguided and sample.py --guidance-scale changes nothing.",
    ),
    "loop_labels_ignored": Mistake(
        "class_labels not passed on",
        "Call call_model(model, x, t, class_labels, guidance_scale): without the labels the model "
        "draws any class.",
    ),
    "clipped_when_not_asked": Mistake(
        "x̂_0 clipped although clip_x0=False",
        "Clamp x̂_0 (and recompute ε̂) only inside `if clip_x0:`; with clip_x0=False both come straight from "
        "the conversions.",
    ),
    "v_conversions_swapped": Mistake(
        "the two v conversions swapped",
        "For v-prediction, x̂_0 = x0_from_v(x_t, t, v) and ε̂ = eps_from_v(x_t, t, v): each function is named "
        "after what it returns.",
    ),
    "prediction_types_confused": Mistake(
        "another prediction type's conversion",
        "The output is ε̂ itself for \"eps\" (x̂_0 = x0_from_eps), x̂_0 itself for \"x0\" (ε̂ = eps_from_x0), "
        "and neither for \"v\" (both from the v conversions): check which branch handles which type.",
    ),
    "alpha_bar_at_past_table": Mistake(
        "t + 1 used on a table of only T values",
        "alphas_cumprod and alphas_cumprod_prev hold T values, so index t + 1 runs past the end at t = T − 1. "
        "Index t + 1 only into the padded table [1, ᾱ_0, …, ᾱ_{T−1}] of T + 1 values.",
    ),
    "alpha_bar_at_dtype": Mistake(
        "ᾱ left in the schedule's dtype",
        "Return the values in x's dtype (and on x's device): `.to(x.dtype)`, as extract (§1.5) does; a float64 "
        "schedule must not turn a float32 batch into float64.",
    ),
    "alpha_bar_at_sqrt": Mistake(
        "√ᾱ instead of ᾱ",
        "Build the table from schedule.alphas_cumprod, not sqrt_alphas_cumprod: the callers take the square roots "
        "they need themselves.",
    ),
    "x0_weight_no_sqrt": Mistake(
        "ᾱ_prev where √ᾱ_prev weights x̂_0",
        "x̂_0 is scaled like a signal, by a square root: √ᾱ_prev (in the posterior mean, √ᾱ_prev · β / (1 − ᾱ_t)).",
    ),
    "posterior_alpha_no_sqrt": Mistake(
        "α where √α weights x_t",
        "The weight of x_t in the posterior mean is √α (1 − ᾱ_prev) / (1 − ᾱ_t), with α = ᾱ_t / ᾱ_prev.",
    ),
    "step_alpha_bar_for_prev": Mistake(
        "ᾱ_t used where ᾱ_prev belongs",
        "Where the step lands is t_prev: √ᾱ_prev weights x̂_0 and (1 − ᾱ_prev) goes into the weight of x_t; "
        "ᾱ_t only appears in α = ᾱ_t / ᾱ_prev and in the denominator (1 − ᾱ_t).",
    ),
    "posterior_arguments_swapped": Mistake(
        "x̂_0 and x_t passed to posterior_mean_variance in the wrong order",
        "Its signature is posterior_mean_variance(x0_hat, x_t, t, t_prev, schedule, variance): x̂_0 comes "
        "first, unlike in ddpm_step's own arguments.",
    ),
    "ddim_sigma_ratio_inverted": Mistake(
        "the ratio in σ upside down (NaN)",
        "σ = η · √((1 − ᾱ_prev) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_prev): ᾱ_t / ᾱ_prev is below 1; "
        "its inverse makes 1 − … negative and the square root NaN.",
    ),
    "ddim_sigma_squared": Mistake(
        "σ² used as σ",
        "Eq. 16 gives σ with two square roots: σ = η · √((1 − ᾱ_prev) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_prev).",
    ),
    "timesteps_truncated": Mistake(
        "timesteps truncated instead of rounded",
        ".long() cuts off the fraction (332.9999 becomes 332): call .round() first, then .long().",
    ),
    "leading_stride_not_integer": Mistake(
        "leading stride not an integer",
        "leading uses the integer stride T // N: 0, k, 2k, … with k = T // N (the real T / N is trailing's).",
    ),
    "linspace_to_T": Mistake(
        "linspace spread up to T",
        "T is not a timestep: spread the N values over 0 … T − 1, torch.linspace(0, T − 1, N).",
    ),
    "loop_variance_ignored": Mistake(
        "variance not passed on",
        "Give ddpm_step the loop's variance: without it \"large\" runs as the default \"small\".",
    ),
    "loop_prediction_ignored": Mistake(
        "prediction type not passed on",
        "Call model_predictions(output, x, t, schedule, prediction, clip_x0): without it every model is read "
        "as an ε-prediction.",
    ),
    "loop_spacing_ignored": Mistake(
        "spacing not passed on",
        "Call inference_timesteps(T, num_steps, spacing) with the loop's spacing, not the default.",
    ),
    "loop_pairs_ignored": Mistake(
        "every step taken as t → t − 1",
        "With N < T steps the pairs jump: take t_prev from timestep_pairs(…) (the next listed timestep, −1 "
        "at the end), not t − 1.",
    ),
    "trajectory_after_step": Mistake(
        "trajectory recorded after the step",
        "Call trajectory.record(t, x, x0_hat) before x is replaced by the step's output, so each frame pairs "
        "x_t with the x̂_0 predicted from it.",
    ),
    # §5.1–§5.3 class conditioning and guidance
    "class_embedding_ignored": Mistake(
        "class embedding not added",
        "Return time_emb + class_embedding(class_labels): the blocks must see the class.",
    ),
    "time_embedding_replaced": Mistake(
        "the class embedding replaces the time embedding",
        "Add the two: time_emb + class_embedding(class_labels); the network still needs t.",
    ),
    "null_class_collides": Mistake(
        "the null label collides with a real class",
        "\"No class\" is the extra row K (num_classes itself); labels 0 … K − 1 are real classes.",
    ),
    "label_dropout_never_applied": Mistake(
        "label dropout never applied",
        "Replace the label by the null label K where the image's uniform draw is below p_uncond.",
    ),
    "label_dropout_inverted": Mistake(
        "label dropout inverted",
        "A label is dropped when its draw is below p_uncond (probability p_uncond), kept otherwise.",
    ),
    "cfg_paper_convention": Mistake(
        "the (1 + w) convention of the CFG paper used where w is expected",
        "Here out = out_∅ + w · (out_c − out_∅), so w = 1 is plain conditional; Ho & Salimans' w is ours minus one.",
    ),
    "cfg_swapped": Mistake(
        "conditional and unconditional predictions swapped",
        "The first half of the doubled batch has the labels (out_c), the second the null label (out_∅); "
        "guidance moves from out_∅ towards out_c.",
    ),
    "label_dropout_at_sampling": Mistake(
        "labels dropped at sampling time",
        "Label dropout belongs to training only: every image of the conditional half keeps its label.",
    ),
    "class_embedding_concatenated": Mistake(
        "class embedding concatenated instead of added",
        "The blocks expect a (B, D) embedding: add the two, time_emb + class_embedding(class_labels); "
        "torch.cat makes it (B, 2D).",
    ),
    "class_embedding_multiplied": Mistake(
        "class embedding multiplied instead of added",
        "Add the class row to the time embedding: in a product, a small entry of either one erases the other.",
    ),
    "null_label_past_table": Mistake(
        "the null label past the end of the table (K + 1)",
        "The table has K + 1 rows, 0 … K: the null label is K itself (num_classes), its last row.",
    ),
    "generator_ignored": Mistake(
        "the generator argument not used",
        "Draw with generator=generator, and pass it on to the functions that draw: without it the draws come "
        "from torch's global random state, and a seed no longer fixes them.",
    ),
    "label_draws_shaped_b1": Mistake(
        "label draws shaped (B, 1) instead of (B,)",
        "Draw one number per label, torch.rand(class_labels.shape): a (B, 1) column broadcasts against the "
        "(B,) labels into a (B, B) table.",
    ),
    "label_dropout_upper_tail": Mistake(
        "labels dropped where the draw is above 1 − p_uncond",
        "The rate is the same, but the contract drops the images whose draw is below p_uncond: "
        "torch.where(draws < p_uncond, null, class_labels).",
    ),
    "cfg_t_not_doubled": Mistake(
        "timesteps not doubled with the batch",
        "The doubled batch needs its timesteps doubled too, torch.cat([t, t]): image i and its copy i + B share t_i.",
    ),
    "cfg_null_label_ignored": Mistake(
        "the null_label argument not used",
        "The unconditional half takes the label null_label (the model's K), not one guessed from the labels: "
        "on a batch without the last class a guess is a real class.",
    ),
    "cfg_w_minus_one": Mistake(
        "guidance scale shifted by one (w − 1)",
        "out = out_∅ + w · (out_c − out_∅) with w as given: w = 1 is the plain conditional prediction. "
        "Only the paper's w is ours minus one.",
    ),
    # §5.4–§5.6 degradations, the enhancement pair, inpainting
    "degradation_clamped": Mistake(
        "the degraded images clamped",
        "Leave the noisy images as they are: clamping to [-1, 1] changes the noise's distribution.",
    ),
    "blur_zero_padding": Mistake(
        "blur padded with zeros",
        "Pad by reflection (F.pad(…, mode=\"reflect\")): zero padding darkens the borders towards grey.",
    ),
    "blur_one_direction": Mistake(
        "blurred in one direction only",
        "A 2-D Gaussian is separable: blur along the width, then along the height.",
    ),
    "superres_nearest": Mistake(
        "upsampled with nearest instead of bilinear",
        "Bring the low-resolution image back with F.interpolate(…, mode=\"bilinear\", align_corners=False).",
    ),
    "superres_max_pool": Mistake(
        "max pooling instead of averaging",
        "A low-resolution camera averages each k×k block: F.avg_pool2d.",
    ),
    "superres_align_corners": Mistake(
        "bilinear with align_corners=True",
        "Use align_corners=False: the pixel centres of the two resolutions then line up as areas.",
    ),
    "jpeg_uniform_step": Mistake(
        "one quantisation step for every frequency",
        "The step grows with the frequency: quality_step · (1 + u + v) for coefficient (u, v).",
    ),
    "mask_inverted": Mistake(
        "mask inverted",
        "1 in the mask means known (kept from the original); 0 means hidden (filled or generated).",
    ),
    "condition_not_normalised": Mistake(
        "the condition image not normalised like the data",
        "Map the images to [-1, 1] first and degrade that x0: the condition must be in the data's range.",
    ),
    "known_region_clean": Mistake(
        "the known region replaced with the clean image instead of the noised one",
        "At t_prev the known pixels must carry the noise of t_prev: √ᾱ' x_0 + √(1 − ᾱ') z (x_0 itself only at t_prev = −1).",
    ),
    "blur_replicate_padding": Mistake(
        "blur padded by replicating the border",
        "Pad by reflection, mode=\"reflect\", in both passes: replicate repeats the border pixel and weighs it "
        "too much.",
    ),
    "blur_pad_axes_swapped": Mistake(
        "F.pad's (left, right, top, bottom) order confused",
        "The tuple starts with the last dimension: (r, r, 0, 0) pads the width, before the pass along the width; "
        "(0, 0, r, r) pads the height, before the pass along the height.",
    ),
    "blur_kernel_dtype": Mistake(
        "kernel not in the images' dtype",
        "Build the kernel with gaussian_kernel(sigma, images.dtype), on images.device: conv2d refuses a float32 "
        "kernel on float64 images.",
    ),
    "superres_bicubic": Mistake(
        "upsampled bicubically instead of bilinearly",
        "Bring the low-resolution image back with mode=\"bilinear\", align_corners=False: the degradation is "
        "defined with it (bicubic overshoots at edges).",
    ),
    "superres_interpolated_down": Mistake(
        "low-resolution image interpolated instead of block-averaged",
        "Make it with F.avg_pool2d(images, factor), each pixel the mean of its k×k block: interpolating down "
        "reads only a few pixels of each block (it agrees at factor 2 only).",
    ),
    "jpeg_tiles_not_transposed": Mistake(
        "tiles cut without the transpose",
        "reshape(B, C, H/b, b, W/b, b).transpose(3, 4) puts each tile's b×b pixels last; a plain reshape to "
        "(…, H/b, W/b, b, b) mixes rows of different tiles. Reassemble the same way back.",
    ),
    "jpeg_forward_as_inverse": Mistake(
        "forward DCT used as the inverse",
        "The inverse of C = D X Dᵀ is X = Dᵀ C D (D is orthonormal): the transposes change sides.",
    ),
    "jpeg_floor": Mistake(
        "coefficients floored instead of rounded",
        "Quantise with step · torch.round(C / step): floor moves every coefficient down, half a step on average.",
    ),
    "jpeg_step_one_frequency": Mistake(
        "quantisation step depends on one frequency only",
        "step(u, v) = quality_step · (1 + u + v) is a b×b table: a column of u plus a row of v. A 1-D (1 + u) "
        "broadcasts along one axis only.",
    ),
    "mask_fill_ignored": Mistake(
        "the fill argument ignored",
        "Hidden pixels take the value fill: mask · images + (1 − mask) · fill (mask · images alone fills with 0).",
    ),
    "pair_swapped": Mistake(
        "(x0, cond) returned in the wrong order",
        "condition_pair returns the target first and its degraded copy second: return x0, cond.",
    ),
    "inpaint_noise_everywhere": Mistake(
        "noise added to the whole image, not only the known region",
        "Only the original needs noising: known = √ᾱ' x_0 + √(1 − ᾱ') z, then mask · known + (1 − mask) · "
        "x_generated; the generated pixels carry their noise already.",
    ),
    "pair_alpha_inverted": Mistake(
        "the pair's α inverted (ᾱ_prev / ᾱ_t)",
        "Over the jump, α = ᾱ_t / ᾱ_{t_prev}: the noisier over the cleaner, at most 1. Its inverse exceeds 1, "
        "and √(1 − α) is NaN.",
    ),
    "renoise_alpha_bar_t": Mistake(
        "ᾱ_t used instead of the pair's α",
        "x_{t_prev} is not the clean image: the jump t_prev → t has α = ᾱ_t / ᾱ_{t_prev}; √ᾱ_t and √(1 − ᾱ_t) "
        "noise x_0 all the way to t.",
    ),
    # §6.1 the posterior
    "posterior_halves_swapped": Mistake(
        "mean and log-variance swapped",
        "The encoder's first C channels are the mean, the last C the log-variance: `mean, logvar = "
        "moments.chunk(2, dim=1)`, in that order.",
    ),
    "posterior_interleaved": Mistake(
        "mean and log-variance taken from alternate channels",
        "The channels are not interleaved (mean, logvar, mean, …): the mean is the first half, the log-variance "
        "the second half (`moments.chunk(2, dim=1)`).",
    ),
    "posterior_mean_clamped": Mistake(
        "the mean clamped too",
        "Only the log-variance is clamped (to keep exp() finite); the mean is whatever the encoder says.",
    ),
    "posterior_split_wrong_axis": Mistake(
        "moments split along the wrong axis",
        "The mean and log-variance are stacked along the channels, dim 1 of (B, 2C, h, w): `chunk(2, dim=1)`.",
    ),
    "logvar_not_clamped": Mistake(
        "log-variance not clamped",
        "Clamp logvar to [LOGVAR_MIN, LOGVAR_MAX] = [−30, 20], as Rombach et al. do: an untrained encoder can "
        "output values whose exp() overflows to inf or underflows to 0.",
    ),
    "logvar_clamp_bounds_swapped": Mistake(
        "log-variance clamped to the wrong bounds",
        "The bounds are LOGVAR_MIN = −30 below and LOGVAR_MAX = 20 above: `logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)`.",
    ),
    "logvar_as_log_std": Mistake(
        "logvar treated as log σ",
        "logvar is log σ², the log of the variance: σ = exp(logvar / 2) and σ² = exp(logvar). exp(logvar) is "
        "the variance, not the standard deviation.",
    ),
    "posterior_noise_ignored": Mistake(
        "the noise not used (the mode returned)",
        "A posterior sample is mean + σ·noise; the mean alone is the mode, which encode_to_diffusion uses only "
        "when it gets no noise.",
    ),
    "logvar_as_std": Mistake(
        "logvar used as σ",
        "logvar is a logarithm: σ = exp(logvar / 2), never logvar itself (which can be negative).",
    ),
    "posterior_std_sqrt_twice": Mistake(
        "σ square-rooted twice",
        "σ = exp(logvar / 2) = √(exp(logvar)); exp(logvar / 4) takes one square root too many.",
    ),
    "posterior_noise_added_to_std": Mistake(
        "noise added to σ instead of multiplied",
        "The reparameterisation is z = mean + σ · ε: the noise is scaled by σ, not added to it.",
    ),
    "posterior_sample_detached": Mistake(
        "the sample cut from the graph",
        "No .detach(), torch.no_grad() or .item() in posterior_sample: the reparameterisation trick exists so "
        "that gradients reach the mean and the log-variance, and through them the encoder.",
    ),
    "kl_mean_not_sum": Mistake(
        "KL averaged over the latent elements instead of summed",
        "kl_divergence returns the KL of each image: the sum over its C·h·w elements. The averaging belongs to "
        "autoencoder_loss (§6.3), which divides by the element count once.",
    ),
    "kl_sign": Mistake(
        "KL with the wrong sign",
        "KL(q ‖ N(0, I)) = ½ Σ (μ² + σ² − 1 − log σ²) is never negative; you have its negative.",
    ),
    "kl_missing_minus_one": Mistake(
        "KL without the −1",
        "Each element contributes ½ (μ² + σ² − 1 − log σ²); without the −1 a perfect posterior N(0, 1) would "
        "still cost ½ per element.",
    ),
    "kl_missing_half": Mistake(
        "KL without the ½",
        "KL = ½ Σ (μ² + σ² − 1 − log σ²): the ½ comes from the Gaussian's exponent.",
    ),
    "kl_var_for_logvar": Mistake(
        "σ² and log σ² swapped in the KL",
        "The term is exp(logvar) (σ²) minus logvar (log σ²): `mean² + logvar.exp() − 1 − logvar`.",
    ),
    "kl_batch_reduced": Mistake(
        "KL reduced over the batch too",
        "kl_divergence returns one value per image, shape (B,): sum over dims (1, 2, 3), not over the batch.",
    ),
    "kl_not_reduced": Mistake(
        "KL not summed over the latent elements",
        "Sum the element-wise KL over the channels and both spatial axes, dims (1, 2, 3): one value per image.",
    ),
    # §6.2 the autoencoder
    "ae_head_silu_missing": Mistake(
        "no SiLU before the head",
        "The end of the encoder and of the decoder is norm → SiLU → 3×3 conv, as the U-Net's head.",
    ),
    "ae_norm_missing": Mistake(
        "no GroupNorm before the head",
        "Normalise (encoder_norm / decoder_norm), then SiLU, then the head convolution.",
    ),
    "ae_downsample_every_level": Mistake(
        "a downsample after every level",
        "The last level has no downsample: L levels halve the size L − 1 times (32 → 16 → 8 for three).",
    ),
    "ae_decoder_tanh": Mistake(
        "decoder output squashed with tanh",
        "The decoder's head is a plain convolution: the loss pulls its output into [-1, 1], and "
        "decode_from_diffusion clamps the images afterwards. A tanh changes every value.",
    ),
    "ae_upsample_before_block": Mistake(
        "upsampled before the level's block",
        "Each decoder level runs its ResidualBlock at the level's resolution, then upsamples (the mirror of "
        "the encoder, which downsamples after the block).",
    ),
    # §6.3 the autoencoder's loss
    "kl_summed_not_averaged": Mistake(
        "KL summed over the latent elements where it should be averaged",
        "The loss uses the KL per latent element: kl_divergence(mean, logvar) / (C·h·w), then the mean over "
        "the batch. Summed, β weighs 256 times more for a 4×8×8 latent and the reconstructions blur.",
    ),
    "kl_batch_divided_twice": Mistake(
        "the batch divided out twice",
        "Divide the per-image KL by the latent element count and take .mean() over the batch, once; dividing "
        "by B as well makes β B times weaker (a known bug of public latent-diffusion code).",
    ),
    "kl_per_pixel": Mistake(
        "KL divided by the image's pixel count",
        "The KL is per *latent* element: divide by mean[0].numel() (C·h·w of the latent), not by the image's "
        "C·H·W.",
    ),
    "reconstruction_summed": Mistake(
        "reconstruction error summed instead of averaged",
        "Take the mean over every pixel (F.l1_loss / F.mse_loss default to it): both terms are per element, "
        "so that β keeps its meaning.",
    ),
    "reconstruction_loss_swapped": Mistake(
        "L1 and L2 swapped",
        "reconstruction=\"l1\" is the mean |x − x̂| (F.l1_loss); \"l2\" the mean (x − x̂)² (F.mse_loss).",
    ),
    "kl_weight_misplaced": Mistake(
        "β multiplies the reconstruction instead of the KL",
        "loss = reconstruction + β · KL: the KL weight scales only the KL term.",
    ),
    "kl_weight_ignored": Mistake(
        "the KL weight ignored",
        "Multiply the KL term by kl_weight (β); with β = 1 the KL dominates and every image encodes to noise.",
    ),
    # §6.4 the latent scale
    "scale_is_std": Mistake(
        "std used where 1/std belongs",
        "The scale multiplies the latents to give them unit variance, so it is 1 / std (Stable Diffusion's "
        "0.18215 ≈ 1 / 5.49). Some documentation calls it the latents' standard deviation: the value is its "
        "reciprocal.",
    ),
    "latent_std_biased": Mistake(
        "the biased standard deviation",
        "Use torch's default std (unbiased, dividing by n − 1), as the docstring says.",
    ),
    "scale_is_inverse_variance": Mistake(
        "1 / variance instead of 1 / std",
        "The scale is 1 / std: dividing by the variance over-shrinks latents whose std is above 1.",
    ),
    "latent_stats_shape": Mistake(
        "statistics of the wrong shape",
        "Overall statistics are 0-d tensors (shape ()); per-channel ones have shape (C, 1, 1), so that they "
        "broadcast against (B, C, h, w).",
    ),
    "latent_center_ignored": Mistake(
        "center ignored",
        "With center=True the shift is the latents' mean; with center=False it is 0 (a tensor of zeros of the "
        "same shape), as Stable Diffusion only scales.",
    ),
    "latent_stats_per_channel_ignored": Mistake(
        "one statistic for all channels when per_channel is set",
        "per_channel=True reduces over the batch and both spatial axes only, dims (0, 2, 3): one mean and one "
        "std per channel.",
    ),
    "scale_forgotten": Mistake(
        "the scale factor forgotten",
        "u = (z − shift) · scale: without the scale the diffusion model sees latents whose variance is not 1, "
        "and its noise schedule's signal-to-noise ratios are all wrong.",
    ),
    "scale_divides": Mistake(
        "divided by the scale instead of multiplied",
        "The scale is already 1 / std: multiply by it in to_diffusion, divide by it in from_diffusion.",
    ),
    "shift_scale_order": Mistake(
        "shift and scale in the wrong order",
        "Centre first, then scale: (z − shift) · scale. z · scale − shift subtracts the shift of the unscaled "
        "latents from scaled ones.",
    ),
    "shift_forgotten": Mistake(
        "the shift forgotten",
        "to_diffusion subtracts the shift before scaling, and from_diffusion adds it back after unscaling.",
    ),
    "shift_added": Mistake(
        "the shift with the wrong sign",
        "to_diffusion subtracts the shift (z − shift); from_diffusion adds it back (u / scale + shift).",
    ),
    "unscale_forgotten": Mistake(
        "from_diffusion without dividing by the scale",
        "from_diffusion divides by the scale before adding the shift: z = u / scale + shift. Without it the "
        "decoder gets latents `scale` times too small (or large) and draws grey blurs.",
    ),
    "unscale_multiplies": Mistake(
        "multiplied by the scale again when unscaling",
        "from_diffusion undoes to_diffusion: divide by the scale (u / scale), do not multiply a second time.",
    ),
    "unscale_wrong_order": Mistake(
        "the inverse applied in the wrong order",
        "Undo the steps in the opposite order: to_diffusion shifts then scales, so from_diffusion unscales "
        "first, then shifts: u / scale + shift, not (u + shift) / scale.",
    ),
    "from_diffusion_applies_to_diffusion": Mistake(
        "from_diffusion does what to_diffusion does",
        "from_diffusion is the inverse: z = u / scale + shift, not (u − shift) · scale.",
    ),
    # §6.5 diffusion in the latent space
    "autoencoder_trainable": Mistake(
        "the autoencoder left trainable",
        "freeze must call .requires_grad_(False): otherwise the U-Net's optimiser (or a stray backward) can "
        "change the autoencoder, and the latents drift from the ones the scale was computed on.",
    ),
    "autoencoder_train_mode": Mistake(
        "the autoencoder left in training mode",
        "freeze must call .eval(): dropout (or batch statistics) would otherwise change its latents from one "
        "call to the next.",
    ),
    "latents_not_scaled": Mistake(
        "latents not passed through to_diffusion",
        "The diffusion model trains on u = to_diffusion(z, shift, scale), not on the raw latents z.",
    ),
    "encode_mean_not_sample": Mistake(
        "the mean encoded when noise was given",
        "With noise, the training latent is a posterior sample, mean + σ·noise (posterior_sample); the mean is "
        "for noise=None only.",
    ),
    "decode_without_unscaling": Mistake(
        "decoding without unscaling",
        "The decoder expects raw latents z: decode(from_diffusion(u, shift, scale)), never decode(u).",
    ),
    "decoded_not_clamped": Mistake(
        "images not clamped after decoding",
        "Clamp the decoded images to [-1, 1] (the data range): the decoder's output is not squashed.",
    ),
    "latents_clamped_before_decoding": Mistake(
        "latents clamped to [-1, 1]",
        "Clamp the decoded *images*, never the latents: unit-variance latents have about a third of their "
        "values outside [-1, 1].",
    ),
    "decode_applies_to_diffusion": Mistake(
        "to_diffusion applied before decoding",
        "Decoding needs the inverse: from_diffusion(u, shift, scale), then decode.",
    ),
    "latents_clipped": Mistake(
        "latents clipped to [-1, 1] during sampling",
        "sample_loop clamps x̂_0 to [-1, 1] by default, which suits images, not latents: pass clip_x0=False "
        "(about a third of a unit-variance latent lies outside [-1, 1]).",
    ),
    "latent_sample_not_decoded": Mistake(
        "latents returned instead of images",
        "latent_sample ends with decode_from_diffusion: it returns images (B, image_channels, H, W), not the "
        "sampled latents.",
    ),
    # §7.1 the padding mask and the masked mean
    "keep_mask_inverted": Mistake(
        "keep mask inverted",
        "The keep mask is True where a token takes part and False at <pad>: tokens != pad_id, not tokens == pad_id.",
    ),
    "keep_mask_pad_id_ignored": Mistake(
        "pad_id ignored (0 hard-coded)",
        "Compare with the pad_id argument (tokens != pad_id): 0 is only this tokenizer's padding id.",
    ),
    "mean_over_padding": Mistake(
        "mean taken over the padding too",
        "Pool over the real tokens only: sum embeddings · keep over the sequence, divided by keep's count per "
        "row. A plain .mean(dim=1) lets the padding (and how much of it there is) change the caption's vector.",
    ),
    "masked_sum_not_mean": Mistake(
        "masked sum, not mean",
        "After summing the kept embeddings, divide by the number of kept tokens in each row "
        "(keep.sum(dim=1, keepdim=True)).",
    ),
    "masked_mean_over_length": Mistake(
        "masked sum divided by the padded length",
        "Divide by the number of kept tokens in each row, not by L: appending padding must not shrink the mean.",
    ),
    "masked_mean_wrong_axis": Mistake(
        "mean over the wrong axis",
        "Embeddings are (B, L, D): pool over the sequence axis L (dim=1), leaving one D-vector per caption.",
    ),
    # §7.2 attention with a keep mask
    "attention_mask_ignored": Mistake(
        "padding mask ignored",
        "Before the softmax, set the scores of masked keys to −inf: "
        "scores.masked_fill(~keep[:, None, None, :], float(\"-inf\")), so padding gets weight 0.",
    ),
    "attention_mask_inverted": Mistake(
        "padding mask inverted",
        "keep is True for the keys that take part: fill the scores where keep is *False* (~keep) with −inf.",
    ),
    "attention_mask_zero_score": Mistake(
        "masked scores set to 0, not −inf",
        "A score of 0 still gets weight e⁰ / Σ after the softmax; only −inf gives a masked key weight exactly 0.",
    ),
    "attention_mask_after_softmax": Mistake(
        "mask applied after the softmax",
        "Zeroing weights after the softmax leaves each row summing to less than 1; mask the scores (with −inf) "
        "before the softmax instead, so the kept keys share all the weight.",
    ),
    # §7.3 multi-head attention
    "heads_merged_by_reshape": Mistake(
        "heads merged by a plain reshape",
        "The attention output is (B, heads, N, d): transpose it to (B, N, heads, d) before reshaping to "
        "(B, N, heads·d), the inverse of the split.",
    ),
    "kv_from_queries": Mistake(
        "keys and values taken from the image",
        "In cross-attention the queries come from x (the image), the keys and values from the context (the caption "
        "tokens): to_k(context), to_v(context); only self-attention (context=None) uses x for all three.",
    ),
    # §7.4 the text encoder
    "post_norm": Mistake(
        "layer norm after the residual (post-norm)",
        "The layers are pre-norm: x = x + attention(norm1(x)), then x = x + feed_forward(norm2(x)); the residual "
        "path itself is never normalised.",
    ),
    "transformer_residual_missing": Mistake(
        "residual connection missing",
        "Each sub-layer is added to its input: x = x + sublayer(norm(x)), not x = sublayer(norm(x)).",
    ),
    "position_embedding_missing": Mistake(
        "position embedding missing",
        "Add position_embedding(torch.arange(L)) to the token embeddings: attention treats the tokens as a set, so "
        "without positions \"a thin seven\" and \"seven a thin\" are the same caption.",
    ),
    "final_norm_missing": Mistake(
        "final layer norm missing",
        "Pre-norm layers leave the residual stream unnormalised: apply final_norm after the last layer.",
    ),
    # §7.5 the spatial transformer
    "cross_attention_order": Mistake(
        "self- and cross-attention in the wrong order",
        "Stable Diffusion's block is norm1 → self-attention, then norm2 → cross-attention to the caption, then "
        "norm3 → feed-forward, each added to x.",
    ),
    "proj_out_not_zero": Mistake(
        "proj_out not zero-initialised",
        "Set proj_out's weight and bias to zero (nn.init.zeros_), so that a new SpatialTransformer returns its "
        "input unchanged and the U-Net starts as it was without text.",
    ),
    "spatial_reshape_not_permute": Mistake(
        "feature map reshaped to tokens without a permute",
        "(B, C, H, W) → (B, H·W, C) needs the channels moved last: x.flatten(2).transpose(1, 2) (or permute(0, 2, 3, "
        "1).reshape(B, H·W, C)); a plain reshape to (B, H·W, C) mixes pixels and channels.",
    ),
    "spatial_unflatten_reshape": Mistake(
        "tokens reshaped back without a permute",
        "Undo the flattening exactly: tokens (B, H·W, C) → transpose(1, 2) → reshape(B, C, H, W).",
    ),
    "spatial_norm_missing": Mistake(
        "GroupNorm missing before proj_in",
        "Normalise the feature map first: proj_in(tokens of norm(x)), with the residual added to the un-normalised x.",
    ),
    "spatial_residual_missing": Mistake(
        "spatial transformer without the residual",
        "Return x + (the block's output, back in (B, C, H, W)): with proj_out at zero the module starts as the "
        "identity.",
    ),
    # §7.6 caption dropout and guidance
    "captions_dropped_to_padding": Mistake(
        "dropped captions replaced by padding",
        "Replace a dropped caption by the empty caption's tokens (empty_tokens: <bos> <eos> <pad>…), the same "
        "\"null\" that guidance uses at sampling; all-padding rows also leave attention no key to attend to.",
    ),
    "caption_dropout_inverted": Mistake(
        "caption dropout inverted",
        "Drop the captions whose draw is *below* p_uncond (draws < p_uncond), so a fraction p_uncond of them "
        "becomes empty.",
    ),
    "caption_dropout_per_token": Mistake(
        "captions dropped token by token",
        "Draw one number per caption, torch.rand(B, generator=generator), and replace whole rows: a caption is "
        "either kept or empty, never half of each.",
    ),
    "uncond_all_padding": Mistake(
        "unconditional input is all padding (or zeros), not the empty caption",
        "The unconditional prediction must use the same null input the model was trained on with caption dropout: "
        "the empty caption's tokens, empty_tokens expanded to the batch.",
    ),
    # §7.7 the text-conditioned U-Net
    "text_mask_ignored": Mistake(
        "padding mask not passed on",
        "Compute keep = keep_mask(tokens, pad_id) once and pass it to the text encoder, the masked mean and the "
        "U-Net's cross-attention; an all-True mask lets the padding change the image.",
    ),
}
