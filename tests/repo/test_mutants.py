"""The mutation test: every deliberate classic mistake is caught, and named, by a phase check."""

from __future__ import annotations

import pytest

from grading.mistakes import MISTAKES
from grading.mutants import MUTANTS, mutated_source, run_all
from tools.make_stubs import SOLUTIONS_DIR


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_still_applies_to_the_reference(mutant):
    """Each replacement matches the reference exactly once (a stale mutant would test nothing)."""
    assert mutant.mistake in MISTAKES
    assert mutated_source(mutant) != (SOLUTIONS_DIR / mutant.file).read_text(encoding="utf-8")


def test_phase1_has_at_least_eight_mutants():
    assert len({m.mistake for m in MUTANTS if m.phase == 1}) >= 8


def test_phase2_has_the_issue_mutants():
    """The U-Net mutants the phase promises: embedding, injection, skips, attention, GroupNorm, upsampling."""
    required = {"sin_cos_swapped", "frequency_formula", "time_embedding_not_injected", "skip_not_concatenated",
                "attention_no_residual", "attention_no_scaling", "softmax_wrong_axis", "groupnorm_missing",
                "upsample_wrong_dims"}
    assert required <= {m.mistake for m in MUTANTS if m.phase == 2}


def test_phase3_has_the_issue_mutants():
    """The training mutants the phase promises."""
    required = {"t_from_one", "eps_target_for_v", "v_wrong_sign", "loss_wrong_reduction", "ema_inverted",
                "data_unit_range", "noise_shape"}
    assert required <= {m.mistake for m in MUTANTS if m.phase == 3}


def test_phase4_has_the_issue_mutants():
    """The sampling mutants the phase promises: last-step noise, ᾱ_prev wrap-around, β vs β̃, clipping,
    η, the σ² correction, the one-step β of a strided pair, ascending timesteps."""
    required = {"noise_at_last_step", "alpha_bar_at_wraps", "variance_small_large_confused", "x0_not_clipped",
                "ddim_eta_ignored", "ddim_no_sigma_correction", "one_step_beta_for_strided", "timesteps_ascending"}
    assert required <= {m.mistake for m in MUTANTS if m.phase == 4}


def test_phase5_has_the_issue_mutants():
    """The conditioning mutants the phase promises: the CFG convention, swapped halves, label dropout never or
    always applied, the null class colliding, the clean known region, the condition not normalised."""
    required = {"cfg_paper_convention", "cfg_swapped", "label_dropout_never_applied", "label_dropout_at_sampling",
                "null_class_collides", "known_region_clean", "condition_not_normalised"}
    assert required <= {m.mistake for m in MUTANTS if m.phase == 5}


def test_phase6_has_the_issue_mutants():
    """The latent diffusion mutants issue 17 names: the scale forgotten, decoding without unscaling, std for 1/std,
    shift and scale in the wrong order, logvar as log σ, the KL summed or the batch divided out twice, latents
    clipped during sampling, the autoencoder left trainable."""
    required = {"scale_forgotten", "decode_without_unscaling", "scale_is_std", "shift_scale_order",
                "logvar_as_log_std", "kl_summed_not_averaged", "kl_batch_divided_twice", "latents_clipped",
                "autoencoder_trainable"}
    assert required <= {m.mistake for m in MUTANTS if m.phase == 6}


def test_phase7_has_the_issue_mutants():
    """The text-to-image mutants issue 18 names: attention over the wrong axis, a reshape where a permute belongs,
    the padding mask inverted or ignored, mean-pooling over padding, the wrong scale, zeros instead of the empty
    caption at sampling, keys and values taken from the image."""
    required = {"softmax_wrong_axis", "spatial_reshape_not_permute", "heads_split_by_reshape", "attention_mask_inverted",
                "attention_mask_ignored", "keep_mask_inverted", "mean_over_padding", "attention_no_scaling",
                "attention_scaled_by_d", "uncond_all_padding", "captions_dropped_to_padding", "kv_from_queries"}
    assert required <= {m.mistake for m in MUTANTS if m.phase == 7}


@pytest.fixture(scope="module")
def verdicts():
    return run_all(MUTANTS)


@pytest.mark.slow
@pytest.mark.timeout(2700)  # one grading process per mutant: about 10 minutes on two cores
def test_every_mutant_is_caught_with_its_mistake_named(verdicts):
    missed = [
        f"{v.mutant.name}: failing checks {v.failing or 'none'}; none says "
        f"{MISTAKES[v.mutant.mistake].title!r}"
        for v in verdicts
        if not v.caught
    ]
    assert not missed, "\n".join(missed)


@pytest.mark.slow
def test_a_mistake_costs_only_its_own_functions_points(verdicts):
    """The cascade bound: no mutant fails a check of another function (integration checks that declare
    they run the mutated function with @pytest.mark.uses excepted: their title says so)."""
    cascades = [f"{v.mutant.name} (in {v.mutant.function}) also fails {v.elsewhere}" for v in verdicts if v.elsewhere]
    assert not cascades, "\n".join(cascades)


def test_each_mutant_edits_one_exercise():
    """The cascade bound needs to know whose points a mutant may cost: its edit lies in one exercise region."""
    assert all(mutant.function for mutant in MUTANTS)
