"""Phase 5 checks: class conditioning and classifier-free guidance (guide §5.1–§5.3).

Each function is graded alone. The checks that run a whole U-Net or a whole sampling
loop use the reference for everything else and put only your function into it, so
a gap in Phases 2–4 never costs points here.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from grading.checker import check_close, classic_mistake, fail, naming_crash
from grading.modules import randomize_, reference_parts
from grading.wire import CHECK_SEED

pytestmark = pytest.mark.phase5

F64 = torch.float64
K = 4  # classes of the small test models
T_LOOP = 30


def yours(impl, module: str, name: str) -> SimpleNamespace:
    """Your function ``name`` (checked: a stub reads "not attempted yet"), to put into a reference module."""
    return SimpleNamespace(**{name: getattr(getattr(impl, module), name)})


def global_draws(draw, *args, **kwargs) -> torch.Tensor:
    """What ``draw`` gives from torch's global random state, as a check's worker starts it (a generator ignored)."""
    return draw(*args, generator=torch.Generator().manual_seed(CHECK_SEED), **kwargs)


# ---------------------------------------------------------------------------
# §5.1 add_class_embedding
# ---------------------------------------------------------------------------


def class_embedding_variants(time_emb: torch.Tensor, expected: torch.Tensor) -> dict:
    """The class row (expected − time_emb) ignored, replacing, concatenated to or multiplying the time embedding."""
    row = expected - time_emb
    return {"class_embedding_ignored": time_emb, "time_embedding_replaced": row,
            "class_embedding_concatenated": [torch.cat([time_emb, row], 1), torch.cat([row, time_emb], 1)],
            "class_embedding_multiplied": time_emb * row}


@pytest.fixture(scope="module")
def class_table():
    return randomize_(nn.Embedding(K + 1, 6).double(), seed=50)


@pytest.mark.points(2)
@pytest.mark.exercise("5.1", "add_class_embedding")
@pytest.mark.parametrize("labelled", [True, False], ids=["labels", "None (no class)"])
def test_add_class_embedding(impl, ref, class_table, labelled):
    """add_class_embedding adds row c of the table, or the null row K when labels are None"""
    time_emb = torch.randn((5, 6), generator=torch.Generator().manual_seed(51), dtype=F64)
    labels = torch.tensor([0, 3, K, 1, 2]) if labelled else None
    with torch.no_grad(), naming_crash("null_label_past_table", "index out of range"):
        got = impl.unet.add_class_embedding(time_emb, class_table, labels, K)
    with torch.no_grad():
        expected = ref.unet.add_class_embedding(time_emb, class_table, labels, K)
        rows = class_table.weight
        mistakes = class_embedding_variants(time_emb, expected)
        if not labelled:
            mistakes["null_class_collides"] = [time_emb + rows[0], time_emb + rows[K - 1]]
    check_close(got, expected, function="add_class_embedding", section="5.1",
                inputs={"time_emb": time_emb, "class_labels": labels, "num_classes": K}, mistakes=mistakes)


@pytest.mark.points(2)
@pytest.mark.exercise("5.1", "add_class_embedding")
def test_class_conditional_unet(impl, ref):
    """A class-conditional U-Net (the reference, with your add_class_embedding) gives the reference's output"""
    model = randomize_(ref.unet.UNet(base_channels=8, channel_mults=(1, 2), attention_levels=(1,), num_heads=2,
                                     groups=4, num_classes=K).double(), seed=52).eval()
    generator = torch.Generator().manual_seed(53)
    x = torch.randn((3, 1, 8, 8), generator=generator, dtype=F64)
    t = torch.tensor([0, 400, 999])
    labels = torch.tensor([2, K, 0])
    with torch.no_grad():
        expected = model(x, t, labels), model(x, t)
        with reference_parts(ref.unet, yours(impl, "unet", "add_class_embedding"), ("add_class_embedding",)):
            got = model(x, t, labels), model(x, t)
    for what, mine, theirs in zip(("with labels [2, K, 0]", "with class_labels=None"), got, expected):
        check_close(mine, theirs, function="UNet.forward", section="5.1", what=f"the output {what}",
                    inputs={"x": x, "t": t, "class_labels": labels, "num_classes": K})


# ---------------------------------------------------------------------------
# §5.2 drop_labels
# ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.exercise("5.2", "drop_labels")
@pytest.mark.parametrize("p_uncond", [0.0, 0.1, 0.6, 1.0])  # not 0.5: u > 1 − p and u ≥ p coincide there
def test_drop_labels(impl, ref, p_uncond):
    """drop_labels gives the null label K to each image whose draw is below p_uncond"""
    labels = torch.arange(40) % 10
    got = impl.train.drop_labels(labels, p_uncond, 10, torch.Generator().manual_seed(54))
    expected = ref.train.drop_labels(labels, p_uncond, 10, torch.Generator().manual_seed(54))
    draws = torch.rand(40, generator=torch.Generator().manual_seed(54))
    mistakes = label_dropout_variants(labels, draws, p_uncond, 10)
    check_close(got, expected, function="drop_labels", section="5.2",
                inputs={"class_labels": labels, "p_uncond": p_uncond, "num_classes": 10,
                        "generator": "torch.Generator().manual_seed(54)"},
                mistakes={key: value for key, value in mistakes.items() if p_uncond > 0})


def label_dropout_variants(labels: torch.Tensor, draws: torch.Tensor, p_uncond: float, classes: int) -> dict:
    """drop_labels written wrong: with the same draws (or the global random state's), another rule or null label."""
    null = torch.full_like(labels, classes)
    return {"label_dropout_never_applied": labels,
            "null_class_collides": [torch.where(draws < p_uncond, torch.full_like(labels, wrong), labels)
                                    for wrong in (0, classes - 1, -1)],
            "label_dropout_inverted": torch.where(draws >= p_uncond, null, labels),
            "label_dropout_upper_tail": torch.where(draws > 1 - p_uncond, null, labels),
            "label_draws_shaped_b1": torch.where(draws.reshape(-1, 1) < p_uncond, null, labels),
            "generator_ignored": torch.where(global_draws(torch.rand, len(labels)) < p_uncond, null, labels)}


# ---------------------------------------------------------------------------
# §5.3 guided_model_output
# ---------------------------------------------------------------------------


class ToyConditional(nn.Module):
    """A tiny class-conditional stand-in for the U-Net: a convolution plus a per-class offset.

    It records the batch size and labels of every call, to check the single batched pass.
    """

    def __init__(self, channels: int = 2, num_classes: int = K) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.offsets = nn.Embedding(num_classes + 1, channels)
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = torch.full_like(t, self.num_classes) if class_labels is None else class_labels
        self.calls.append(labels.clone())
        if len(t) != len(x):
            raise ValueError(f"the model got {len(x)} images but {len(t)} timesteps.{classic_mistake('cfg_t_not_doubled')}")
        scale = 0.8 + t.to(x.dtype).reshape(-1, 1, 1, 1) / T_LOOP  # (B, 1, 1, 1)
        return self.conv(x) * scale + self.offsets(labels)[:, :, None, None]


@pytest.fixture()
def toy():
    return randomize_(ToyConditional().double(), seed=55).eval()


def guidance_inputs():
    generator = torch.Generator().manual_seed(56)
    x_t = torch.randn((5, 2, 4, 4), generator=generator, dtype=F64)
    # No label K − 1: a null label guessed from the labels (their maximum + 1) is then a real class.
    return x_t, torch.tensor([0, 3, 10, 20, 29]), torch.tensor([2, 0, 1, 1, 0])


def sampling_time_dropout(got: torch.Tensor, conditional: torch.Tensor, unconditional: torch.Tensor,
                          expected: torch.Tensor) -> list[torch.Tensor]:
    """If some (not all) images got the unconditional output instead of the guided one: that output, else nothing.

    Built from the learner's output on purpose: which images lose their label depends on the
    learner's own draws, so the pattern (each image either right or unconditional) is what is
    recognised. It names the mistake only; the check fails on the numbers either way.
    """
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return []
    close = lambda a, b: torch.isclose(a, b, rtol=1e-6, atol=1e-9).flatten(1).all(dim=1)  # noqa: E731
    dropped = close(got, unconditional) & ~close(expected, unconditional)
    if not dropped.any() or dropped.all():  # all of them: not a dropout (at w = 1, w − 1 or swapped halves)
        return []
    return [torch.where(dropped[:, None, None, None], unconditional, expected)]


def guidance_variants(got: torch.Tensor, conditional: torch.Tensor, unconditional: torch.Tensor,
                      guessed: torch.Tensor, expected: torch.Tensor, w: float) -> dict:
    """The guided output written wrong, from the model's two outputs (and one with a guessed null label)."""
    return {"cfg_paper_convention": unconditional + (1 + w) * (conditional - unconditional),
            "cfg_w_minus_one": unconditional + (w - 1) * (conditional - unconditional),
            "cfg_swapped": conditional + w * (unconditional - conditional),
            "cfg_null_label_ignored": guessed + w * (conditional - guessed),
            "label_dropout_at_sampling": sampling_time_dropout(got, conditional, unconditional, expected)}


def guessed_null(seen: list, labels: torch.Tensor, null_label: int) -> str:
    """Names the null_label argument ignored when one call had the labels, then one other label."""
    batch = len(labels)
    if len(seen) == 1 and seen[0][:batch] == labels.tolist() and len(set(seen[0][batch:])) == 1 \
            and seen[0][-1] != null_label:
        return classic_mistake("cfg_null_label_ignored")
    return ""


@pytest.mark.points(1)
@pytest.mark.exercise("5.3", "guided_model_output")
@pytest.mark.parametrize("w", [0.0, 1.0, 3.0, 7.5])
def test_guided_model_output(impl, ref, toy, w):
    """guided_model_output is out_∅ + w · (out_c − out_∅)"""
    x_t, t, labels = guidance_inputs()
    with torch.no_grad(), reference_parts(impl.diffusion.module, ref.diffusion, ("call_model",)):
        got = impl.diffusion.guided_model_output(toy, x_t, t, labels, w, K)
    with torch.no_grad():
        expected = ref.diffusion.guided_model_output(toy, x_t, t, labels, w, K)
        conditional, unconditional = toy(x_t, t, labels), toy(x_t, t, torch.full_like(labels, K))
        guessed = toy(x_t, t, torch.full_like(labels, int(labels.max()) + 1))  # null label = max + 1
    mistakes = guidance_variants(got, conditional, unconditional, guessed, expected, w)
    check_close(got, expected, function="guided_model_output", section="5.3",
                inputs={"x_t": x_t, "t": t, "class_labels": labels, "guidance_scale": w, "null_label": K},
                mistakes=mistakes)


@pytest.mark.points(2)
@pytest.mark.exercise("5.3", "guided_model_output")
def test_guidance_is_one_batched_pass(impl, ref, toy):
    """guided_model_output calls the model once, on the doubled batch: labels first, then the null label"""
    x_t, t, labels = guidance_inputs()
    with torch.no_grad(), reference_parts(impl.diffusion.module, ref.diffusion, ("call_model",)):
        impl.diffusion.guided_model_output(toy, x_t, t, labels, 3.0, K)
    seen = [call.tolist() for call in toy.calls]
    wanted = torch.cat([labels, torch.full_like(labels, K)]).tolist()
    if seen != [wanted]:
        fail(f"guided_model_output(x_t of batch 5, class_labels={labels.tolist()}, guidance_scale=3.0, "
             f"null_label={K}) called the model {len(seen)} time(s) with the labels {seen}; expected one call "
             f"on the doubled batch with the labels {wanted} (the images with their labels, then the same "
             "images with the null label). One pass of 2B images costs less than two of B. "
             f"See IMPLEMENTATION_GUIDE.md §5.3.{guessed_null(seen, labels, K)}")


LOOP_CASES = {
    "ddim 6 steps, w 3, v": dict(sampler="ddim", num_steps=6, guidance_scale=3.0, prediction="v"),
    "ddpm 8 steps, w 2, eps": dict(sampler="ddpm", num_steps=8, guidance_scale=2.0, prediction="eps"),
}


@pytest.mark.points(2)
@pytest.mark.exercise("5.3", "guided_model_output")
@pytest.mark.parametrize("case", list(LOOP_CASES))
def test_guided_sampling(impl, ref, toy, case):
    """The reference sampling loop with your guided_model_output draws the reference's guided samples"""
    schedule = ref.noise_schedule.NoiseSchedule.from_name("cosine", T_LOOP, dtype=F64)
    options = LOOP_CASES[case]
    labels = torch.tensor([0, 1, 2, 3])

    def draw(**changes) -> torch.Tensor:
        return ref.diffusion.sample_loop(toy, schedule, (4, 2, 4, 4), class_labels=labels,
                                         generator=torch.Generator().manual_seed(57), **dict(options, **changes))

    expected = draw()
    with reference_parts(ref.diffusion, yours(impl, "diffusion", "guided_model_output"), ("guided_model_output",)):
        got = draw()
    w = options["guidance_scale"]
    with torch.no_grad():  # what (1 + w) and (w − 1) do to the whole loop
        shifted = {"cfg_paper_convention": draw(guidance_scale=w + 1), "cfg_w_minus_one": draw(guidance_scale=w - 1)}
    check_close(got, expected, function="guided_model_output", section="5.3", what="the samples of a guided loop",
                inputs={"T": T_LOOP, **options, "class_labels": labels}, mistakes=shifted)
