"""Tests of the classifier of ``provided/classifier.py`` and of ``python evaluate.py``.

A module fixture trains a small digits classifier (2,000 training images, 3 epochs in batches
of 64, a few seconds) into the data folder of two tiny train.py runs (64 digits, 2 steps, a U-Net of
base width 8, T = 100; one of them --class-conditional), where evaluate.py finds it as its
cache. Every evaluate.py run is in-process through ``main(argv)`` with the reference
(``--impl solutions``), 20 images and 2 DDIM steps.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

from provided.evaluation import METRICS_FORMAT, main, parse_args, to_unit
from provided.classifier import (
    ClassifierError,
    check_accuracy,
    classifier_for,
    classify,
    dataset_tensors,
    default_classifier_path,
    load_classifier,
    save_classifier,
    train_classifier,
    train_on_dataset,
)
from provided.inception import InceptionUnavailable, inception_extractor
from provided.metrics import frechet_distance, precision_recall
from provided.image_data import make_dataset
from provided.sampling import SAMPLES_FORMAT
from provided.training import main as train_main

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = [
    "--impl", "solutions", "--dataset", "digits", "--num-images", "64", "--batch-size", "8",
    "--base-channels", "8", "--sample-every", "0", "--sample-steps", "2", "--num-samples", "4",
    "--timesteps", "100", "--warmup-steps", "2", "--steps", "2",
]
#: 20 images in batches of 10, 2 DDIM steps, no Inception lookup unless a test asks for it.
TINY_EVAL = ["--impl", "solutions", "--device", "cpu", "--num-samples", "20", "--steps", "2", "--batch-size", "10"]
#: What the small classifier of these tests must reach on 1,000 test digits.
SMALL_CLASSIFIER_ACCURACY = 0.95
#: What the cached classifier of ``make``/evaluate.py (data/classifiers/digits.pt) states it reaches.
CACHED_CLASSIFIER_ACCURACY = 0.98
METRIC_KEYS = {
    "format", "version", "dataset", "image_size", "num_samples", "num_reference", "knn", "class_conditional",
    "guidance_scale", "accuracy", "frechet_distance", "frechet_distance_floor", "precision", "recall", "floor",
    "predicted_classes", "inception", "classifier", "sweep", "source", "seconds",
}


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/repo/conftest.py)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evaluate_data")


@pytest.fixture(scope="module")
def small_classifier(data_dir):
    """A digits classifier trained on 2,000 images, saved where evaluate.py looks for its cache."""
    lines = []
    model, record = train_on_dataset("digits", data_dir=data_dir, num_train=2000, num_test=1000, epochs=3,
                                     batch_size=64, log=lines.append)
    save_classifier(default_classifier_path("digits", data_dir), model, record)
    assert any("test accuracy" in line for line in lines)
    return model, record


def pure_noise(count: int, seed: int) -> torch.Tensor:
    """x_T ~ N(0, I) clamped to [-1, 1]: what a sampler that removes no noise would return."""
    return torch.randn(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)


def real_digits(data_dir: Path, split: str, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = make_dataset("digits", split=split, data_dir=data_dir, seed=seed, num_images=count, augment=False)
    return dataset_tensors(dataset)


# ---------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------


def test_the_classifier_reaches_its_stated_accuracy(small_classifier, data_dir):
    model, record = small_classifier
    assert record["test_images"] == 1000 and record["train_images"] == 2000
    assert record["test_accuracy"] >= SMALL_CLASSIFIER_ACCURACY
    images, labels = real_digits(data_dir, "test", 1000)
    assert check_accuracy(model, images, labels) == record["test_accuracy"]


def test_the_cached_classifier_reaches_its_stated_accuracy(tmp_path):
    """data/classifiers/digits.pt, when evaluate.py has trained it: ≥ 98% as stated, on fresh test digits."""
    path = default_classifier_path("digits", REPO_ROOT / "data")
    if not path.is_file():
        pytest.skip("no cached classifier in data/classifiers/ (python evaluate.py trains it)")
    model, record = load_classifier(path, "digits")
    assert record["test_images"] == 10_000 and record["train_images"] == 60_000
    assert record["test_accuracy"] >= CACHED_CLASSIFIER_ACCURACY
    images, labels = real_digits(tmp_path, "test", 1000)
    assert check_accuracy(model, images, labels) >= CACHED_CLASSIFIER_ACCURACY


def test_training_is_seeded(data_dir):
    images, labels = real_digits(data_dir, "train", 300)
    state = torch.get_rng_state()
    first = train_classifier(images, labels, 10, epochs=1, batch_size=64)
    second = train_classifier(images, labels, 10, epochs=1, batch_size=64)
    assert torch.equal(torch.get_rng_state(), state), "training must leave torch's global random state alone"
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_saved_classifier_reads_back_the_same(small_classifier, data_dir, tmp_path):
    model, record = small_classifier
    path = save_classifier(tmp_path / "digits.pt", model, record)
    loaded, loaded_record = load_classifier(path, "digits")
    assert loaded_record["test_accuracy"] == record["test_accuracy"]
    images, _ = real_digits(data_dir, "test", 50)
    features, predicted = classify(model, images)
    loaded_features, loaded_predicted = classify(loaded, images)
    assert features.shape == (50, model.config["feature_dim"])
    torch.testing.assert_close(loaded_features, features)
    assert torch.equal(loaded_predicted, predicted)
    with pytest.raises(ClassifierError, match="not of 'mnist'"):
        load_classifier(path, "mnist")


def test_a_damaged_cache_is_trained_again(data_dir, tmp_path, monkeypatch):
    path = tmp_path / "digits.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ClassifierError, match="cannot read"):
        load_classifier(path)
    trained = []

    def quick_training(name, **kwargs):
        trained.append(name)
        return train_on_dataset(name, **{**kwargs, "num_train": 200, "num_test": 100})

    monkeypatch.setattr("provided.classifier.train_on_dataset", quick_training)
    lines = []
    _, record, written = classifier_for("digits", data_dir=data_dir, path=path, log=lines.append)
    assert trained == ["digits"] and written == path and record["test_images"] == 100
    assert "cannot read" in lines[0]
    load_classifier(path, "digits")  # now usable
    classifier_for("digits", data_dir=data_dir, path=path, log=lines.append)
    assert trained == ["digits"], "a usable cache is not trained again"


def test_a_classifier_at_another_size_is_trained_on_resized_images_and_cached_apart(data_dir, tmp_path, monkeypatch):
    """Prompt adherence judges a latent model's 32×32 samples with a classifier trained at 32 (digits-32px.pt)."""
    assert default_classifier_path("digits", tmp_path) == tmp_path / "classifiers" / "digits.pt"
    assert default_classifier_path("digits", tmp_path, 28) == tmp_path / "classifiers" / "digits.pt"
    assert default_classifier_path("digits", tmp_path, 32) == tmp_path / "classifiers" / "digits-32px.pt"
    sizes = []

    def quick_training(name, **kwargs):
        model, record = train_on_dataset(name, **{**kwargs, "num_train": 200, "num_test": 100})
        sizes.append((kwargs["image_size"], model.image_size))
        return model, record

    monkeypatch.setattr("provided.classifier.train_on_dataset", quick_training)
    model, _, path = classifier_for("digits", data_dir=data_dir, image_size=32, log=lambda _: None)
    assert sizes == [(32, 32)] and model.image_size == 32 and path.name == "digits-32px.pt"
    load_classifier(path, "digits", 32)
    with pytest.raises(ClassifierError, match="of 32×32 images, not of 28×28"):
        load_classifier(path, "digits", 28)
    classifier_for("digits", data_dir=data_dir, path=path, image_size=28, log=lambda _: None)
    assert sizes == [(32, 32), (28, 28)], "a cache of the wrong size is trained again"


def test_unlabelled_and_unknown_datasets_are_refused(tmp_path):
    with pytest.raises(ClassifierError, match="no class labels"):
        train_on_dataset("folder", data_dir=tmp_path)
    with pytest.raises(ClassifierError, match="unknown dataset"):
        train_on_dataset("nope", data_dir=tmp_path)


# ---------------------------------------------------------------------------
# The metrics on real images and on noise
# ---------------------------------------------------------------------------


def test_held_out_images_score_near_the_floor_and_noise_far_from_it(small_classifier, data_dir):
    model, _ = small_classifier
    count = 200
    test, _ = real_digits(data_dir, "test", count)
    train, _ = real_digits(data_dir, "train", count)
    other_test, _ = real_digits(data_dir, "test", count, seed=1)  # other digits, the same distribution
    noise = to_unit(pure_noise(count, seed=0))
    features = {name: classify(model, images)[0] for name, images in
                (("test", test), ("train", train), ("other", other_test), ("noise", noise))}
    floor = frechet_distance(features["train"], features["test"])
    held_out = frechet_distance(features["other"], features["test"])
    far = frechet_distance(features["noise"], features["test"])
    assert held_out < 1.5 * floor
    assert far > 10 * floor
    held_out_precision, held_out_recall = precision_recall(features["test"], features["other"])
    noise_precision, noise_recall = precision_recall(features["test"], features["noise"])
    assert held_out_precision > 0.7 and held_out_recall > 0.7
    assert noise_precision < 0.1 and noise_recall < 0.1


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(data_dir, small_classifier, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluate_run") / "run"
    assert train_main([*TINY_TRAIN, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return out / "last.pt"


@pytest.fixture(scope="module")
def class_checkpoint(data_dir, small_classifier, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluate_run_classes") / "run"
    assert train_main([*TINY_TRAIN, "--class-conditional", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return out / "last.pt"


def evaluate(*argv: str) -> int:
    return main([*TINY_EVAL, *argv])


def read_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_a_checkpoint_run_writes_its_metrics(checkpoint, data_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", str(checkpoint), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    metrics = read_metrics(out)
    assert METRIC_KEYS <= set(metrics)
    assert metrics["format"] == METRICS_FORMAT
    assert metrics["num_samples"] == metrics["num_reference"] == 20 and metrics["knn"] == 3
    assert metrics["dataset"] == "digits" and metrics["class_conditional"] is False
    assert metrics["accuracy"] is None and metrics["guidance_scale"] is None  # unconditional
    assert sum(metrics["predicted_classes"]) == 20 and len(metrics["predicted_classes"]) == 10
    assert metrics["frechet_distance"] > metrics["frechet_distance_floor"] > 0
    floor = metrics["floor"]
    assert floor["frechet_distance"] == metrics["frechet_distance_floor"]
    for value in (metrics["precision"], metrics["recall"], floor["precision"], floor["recall"], floor["accuracy"]):
        assert 0 <= value <= 1
    assert metrics["classifier"]["path"] == str(default_classifier_path("digits", data_dir))
    assert metrics["source"]["sampling"]["num_steps"] == 2 and metrics["source"]["seed"] == 0
    assert metrics["sweep"] is None
    # No Inception here: one clear line, and the reason in metrics.json.
    assert metrics["inception"]["fid"] is None and "not installed" in metrics["inception"]["reason"]
    assert printed.count("Inception FID: not computed") == 1
    for row in ("accuracy", "Fréchet distance", "precision (k = 3)", "recall (k = 3)"):
        assert row in printed
    with Image.open(out / "samples.png") as grid:
        grid.verify()


def test_the_same_flags_give_the_same_numbers(checkpoint, tmp_path):
    for name in ("first", "second"):
        assert evaluate("--checkpoint", str(checkpoint), "--out", str(tmp_path / name), "--no-inception") == 0
    first, second = read_metrics(tmp_path / "first"), read_metrics(tmp_path / "second")
    for key in ("frechet_distance", "frechet_distance_floor", "precision", "recall", "predicted_classes", "floor"):
        assert first[key] == second[key], key
    assert first["inception"] is None


def test_a_class_conditional_sweep_writes_a_table_and_a_plot(class_checkpoint, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert evaluate("--checkpoint", str(class_checkpoint), "--sweep", "0,1,3", "--out", str(out), "--knn", "2") == 0
    printed = capsys.readouterr().out
    metrics = read_metrics(out)
    assert metrics["class_conditional"] is True and metrics["guidance_scale"] == 3.0 and metrics["knn"] == 2
    assert 0 <= metrics["accuracy"] <= 1
    assert [row["guidance_scale"] for row in metrics["sweep"]] == [0.0, 1.0, 3.0]
    at_three = metrics["sweep"][2]
    assert at_three["frechet_distance"] == metrics["frechet_distance"]  # w = 3 is sampled once, for both
    for row in metrics["sweep"]:
        assert {"accuracy", "frechet_distance", "precision", "recall"} <= set(row)
    assert printed.count("sampling 20 images") == 3
    table = (out / "sweep.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split("|")[1].strip() for line in body] == ["0", "1", "3"]
    with Image.open(out / "sweep.png") as plot:
        plot.verify()


def write_samples(path: Path, images: torch.Tensor, labels: torch.Tensor | None, data_dir: Path, **extra) -> Path:
    payload = {"format": SAMPLES_FORMAT, "version": 1, "images": images, "labels": labels, "guidance_scale": 3.0,
               "dataset": "digits", "train_config": {"dataset": "digits", "data_dir": str(data_dir), "seed": 0},
               **extra}
    torch.save(payload, path)
    return path


def test_real_images_as_samples_score_like_the_floor(small_classifier, data_dir, tmp_path):
    images, labels = real_digits(data_dir, "test", 100, seed=1)  # held-out digits the reference set does not hold
    samples = write_samples(tmp_path / "real.pt", images * 2 - 1, labels, data_dir)
    assert main(["--samples", str(samples), "--num-samples", "100", "--no-inception"]) == 0
    metrics = read_metrics(tmp_path / "real_eval")
    assert metrics["num_samples"] == 100 and metrics["guidance_scale"] == 3.0
    assert metrics["accuracy"] >= SMALL_CLASSIFIER_ACCURACY - 0.05
    assert metrics["frechet_distance"] < 1.5 * metrics["frechet_distance_floor"]
    assert metrics["source"]["kind"] == "samples"


def test_noise_as_samples_scores_far_from_the_floor(small_classifier, data_dir, tmp_path):
    noise = pure_noise(100, seed=1)
    samples = write_samples(tmp_path / "noise.pt", noise, None, data_dir)
    assert main(["--samples", str(samples), "--no-inception", "--out", str(tmp_path / "out")]) == 0
    metrics = read_metrics(tmp_path / "out")
    assert metrics["num_samples"] == 100 and metrics["accuracy"] is None
    assert metrics["frechet_distance"] > 10 * metrics["frechet_distance_floor"]
    assert metrics["precision"] < 0.1


# ---------------------------------------------------------------------------
# Inception, when a package and its weights are there
# ---------------------------------------------------------------------------


class FakeInception(torch.nn.Module):
    """Stands in for pytorch_fid.inception.InceptionV3: pooled pixels as 48 "features"."""

    BLOCK_INDEX_BY_DIM = {2048: 3}

    def __init__(self, output_blocks):
        super().__init__()
        assert output_blocks == [3]

    def forward(self, images):
        assert images.shape[1] == 3, "grey images are made RGB first"
        return [torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)[:, :, None, None]]


@pytest.fixture
def fake_pytorch_fid(monkeypatch, tmp_path):
    module = types.ModuleType("pytorch_fid.inception")
    module.FID_WEIGHTS_URL = "https://example.invalid/releases/pt_inception-2015-12-05-6726825d.pth"
    module.InceptionV3 = FakeInception
    monkeypatch.setitem(sys.modules, "pytorch_fid", types.ModuleType("pytorch_fid"))
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", module)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"


def test_inception_needs_its_weights_on_this_machine(fake_pytorch_fid):
    with pytest.raises(InceptionUnavailable, match="pytorch-fid is installed but its Inception weights are not in"):
        inception_extractor()


def test_inception_fid_is_added_when_available(fake_pytorch_fid, small_classifier, data_dir, tmp_path, capsys):
    fake_pytorch_fid.parent.mkdir(parents=True)
    fake_pytorch_fid.write_bytes(b"weights")
    images, labels = real_digits(data_dir, "test", 30, seed=1)
    samples = write_samples(tmp_path / "s.pt", images * 2 - 1, labels, data_dir)
    assert main(["--samples", str(samples), "--out", str(tmp_path / "out")]) == 0
    inception = read_metrics(tmp_path / "out")["inception"]
    assert inception["package"] == "pytorch-fid" and inception["reason"] is None
    assert inception["fid"] >= 0 and inception["fid_floor"] >= 0
    assert "Inception FID (pytorch-fid)" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Errors name what is wrong
# ---------------------------------------------------------------------------


def flag_error(capsys, *argv: str) -> str:
    """argparse's message (exit status 2) for ``evaluate.py ARGV``."""
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    assert stopped.value.code == 2
    return capsys.readouterr().err


def run_error(capsys, *argv: str) -> str:
    """The one-line message (exit status 1) of a run that fails."""
    assert main(list(argv)) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("evaluate.py: error: ") and "\n" not in error
    return error


@pytest.mark.parametrize("flag, value", [
    ("--num-samples", "1"), ("--num-samples", "ten"), ("--knn", "0"), ("--steps", "0"), ("--batch-size", "-1"),
    ("--guidance-scale", "-1"), ("--guidance-scale", "nan"), ("--sweep", "1,-2"), ("--sweep", "a,b"),
    ("--seed", "-3"), ("--device", "tpu"), ("--impl", "mine"), ("--threads", "0"),
])
def test_bad_numbers_and_choices_name_their_flag(capsys, flag, value):
    assert f"argument {flag}" in flag_error(capsys, "--checkpoint", "x.pt", flag, value)


def test_threads_sets_torchs_threads():
    torch.set_num_threads(2)
    try:
        args, _ = parse_args(["--checkpoint", "x.pt", "--impl", "solutions", "--threads", "1"])
        assert args.threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)  # this module's setting


def test_a_source_is_required_and_only_one(capsys):
    assert "one of the arguments --checkpoint --samples is required" in flag_error(capsys)
    assert "not allowed with argument" in flag_error(capsys, "--checkpoint", "a.pt", "--samples", "b.pt")


def test_checks_against_the_checkpoint_name_their_flag(checkpoint, class_checkpoint, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    assert "argument --guidance-scale" in flag_error(capsys, "--checkpoint", str(checkpoint), "--guidance-scale", "2")
    assert "argument --sweep" in flag_error(capsys, "--checkpoint", str(checkpoint), "--sweep", "0,1")
    error = flag_error(capsys, "--checkpoint", str(checkpoint), "--steps", "101", *out)
    assert "argument --steps" in error and "T = 100" in error
    error = flag_error(capsys, *TINY_EVAL, "--checkpoint", str(class_checkpoint), "--knn", "20", *out)
    assert "argument --knn" in error and "N = 20" in error
    (tmp_path / "file").write_text("")
    assert "argument --out" in flag_error(capsys, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "file"))


def test_missing_and_damaged_checkpoints_name_the_flag(checkpoint, tmp_path, capsys):
    error = run_error(capsys, "--checkpoint", str(tmp_path / "none.pt"))
    assert "argument --checkpoint" in error and "none.pt" in error
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(checkpoint.read_bytes()[:5000])
    error = run_error(capsys, "--checkpoint", str(damaged))
    assert "argument --checkpoint" in error and "damaged" in error


def modified_checkpoint(checkpoint: Path, path: Path, **config) -> Path:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["config"].update(config)
    torch.save(state, path)
    return path


def test_unknown_unlabelled_and_task_checkpoints_are_refused(checkpoint, tmp_path, capsys):
    error = run_error(capsys, "--checkpoint", str(modified_checkpoint(checkpoint, tmp_path / "a.pt", dataset="nope")))
    # Checked with train.py's own --dataset rule when the checkpoint is read (the file is blamed).
    assert "argument --checkpoint" in error and "its config's dataset is 'nope', expected one of digits" in error
    error = run_error(capsys, "--checkpoint", str(modified_checkpoint(checkpoint, tmp_path / "b.pt", dataset="folder")))
    assert "argument --checkpoint" in error and "no class labels" in error
    error = run_error(capsys, "--checkpoint", str(modified_checkpoint(checkpoint, tmp_path / "c.pt", task="deblur")))
    assert "argument --checkpoint" in error and "--task deblur" in error


def test_samples_files_are_checked(data_dir, tmp_path, capsys):
    error = run_error(capsys, "--samples", str(tmp_path / "none.pt"))
    assert "argument --samples" in error and "sample.py" in error
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert "argument --samples" in run_error(capsys, "--samples", str(tmp_path / "junk.pt"))
    torch.save({"pictures": torch.zeros(2)}, tmp_path / "other.pt")
    assert "is not a file of sample.py --save-tensor" in run_error(capsys, "--samples", str(tmp_path / "other.pt"))
    images = torch.zeros(8, 1, 28, 28)
    unknown = write_samples(tmp_path / "unknown.pt", images, None, data_dir, dataset="nope",
                            train_config={"dataset": "nope"})
    error = run_error(capsys, "--samples", str(unknown))
    assert "argument --samples" in error and "its train_config's dataset is 'nope', expected one of digits" in error
    grid = write_samples(tmp_path / "grid.pt", images, torch.zeros(8, dtype=torch.int64), data_dir,
                         guidance_scale=[0.0, 3.0])
    assert "--guidance-grid" in run_error(capsys, "--samples", str(grid))
    few = write_samples(tmp_path / "few.pt", images, None, data_dir)
    error = flag_error(capsys, "--samples", str(few), "--num-samples", "9")
    assert "argument --num-samples" in error and "holds 8 images" in error
    assert "argument --steps" in flag_error(capsys, "--samples", str(few), "--steps", "3")
    assert "argument --sweep" in flag_error(capsys, "--samples", str(few), "--sweep", "0,1")


def test_a_damaged_classifier_file_names_the_flag(checkpoint, tmp_path, capsys):
    (tmp_path / "classifier.pt").write_bytes(b"junk")
    error = run_error(capsys, *TINY_EVAL, "--checkpoint", str(checkpoint), "--classifier",
                      str(tmp_path / "classifier.pt"), "--out", str(tmp_path / "out"))
    assert "argument --classifier" in error and "--retrain-classifier" in error


def test_a_learner_stub_is_not_attempted_yet(checkpoint, tmp_path, monkeypatch, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError("Phase 1.2 · cosine_betas — see IMPLEMENTATION_GUIDE.md §1.2")

    monkeypatch.setattr("provided.evaluation.load_model", stub)
    argv = ["--checkpoint", str(checkpoint), "--impl", "learner", "--num-samples", "20", "--out", str(tmp_path / "out")]
    error = run_error(capsys, *argv)
    assert "not attempted yet: Phase 1.2 · cosine_betas" in error and "--impl solutions" in error
    assert not (tmp_path / "out").exists()
