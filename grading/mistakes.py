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
    # §1.1–§1.2 schedules
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
    "ema_no_warmup": Mistake(
        "EMA decay without its warm-up",
        "Use min(max_decay, (1 + step) / (10 + step)): early averages must forget fast.",
    ),
    "ema_inverted": Mistake(
        "EMA decay inverted",
        "θ_ema ← decay · θ_ema + (1 − decay) · θ: the decay (close to 1) multiplies the average, not the new weights.",
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
}
