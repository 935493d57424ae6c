"""Tests of ``python -m tools.forward_demo``: the files it writes, its argument checks, and stubs."""

from __future__ import annotations

import csv
import sys

import pytest
from PIL import Image

from solutions.noise_schedule import SCHEDULES, NoiseSchedule
from tools.forward_demo import main

T = 100
#: The top-level learner modules a stub run imports; they must not leak into other tests.
LEARNER_MODULES = ("noise_schedule", "diffusion")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    """Run the demo once with the reference and T = 100; return its output folder."""
    out = tmp_path_factory.mktemp("forward_demo")
    status = main(["--impl", "solutions", "--out", str(out), "--timesteps", str(T)])
    assert status == 0
    return out


def test_writes_the_three_files(demo_out):
    for name in ("schedules.png", "forward_process.png", "signal_left.csv"):
        path = demo_out / name
        assert path.is_file(), f"{name} was not written"
        assert path.stat().st_size > 0, f"{name} is empty"


@pytest.mark.parametrize("name", ["schedules.png", "forward_process.png"])
def test_pngs_are_valid_images(demo_out, name):
    with Image.open(demo_out / name) as image:
        assert image.format == "PNG"
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(demo_out / name) as image:
        width, height = image.size
    assert 300 <= width <= 4000 and 300 <= height <= 4000, f"{name} is {width}×{height}"


def test_csv_matches_the_reference_schedules(demo_out):
    with open(demo_out / "signal_left.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["schedule"] for row in rows] == list(SCHEDULES)
    assert len(rows) == 6
    for row in rows:
        schedule = NoiseSchedule.from_name(row["schedule"], T)
        expected_last = schedule.alphas_cumprod[-1].item()
        expected_half = schedule.alphas_cumprod[T // 2].item()
        assert float(row["alpha_bar_last"]) == pytest.approx(expected_last, rel=1e-5, abs=1e-12)
        assert float(row["alpha_bar_half"]) == pytest.approx(expected_half, rel=1e-5, abs=1e-12)
        assert float(row["snr_last"]) > 0


def test_prints_paths_and_table(tmp_path, capsys):
    assert main(["--impl", "solutions", "--out", str(tmp_path), "--timesteps", str(T)]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "schedules.png") in printed
    assert str(tmp_path / "signal_left.csv") in printed
    for name in SCHEDULES:
        assert name in printed


def test_small_t_skips_scaled_linear(tmp_path, capsys):
    assert main(["--impl", "solutions", "--out", str(tmp_path), "--timesteps", "10"]) == 0
    assert "skipping scaled_linear" in capsys.readouterr().out
    with open(tmp_path / "signal_left.csv", newline="", encoding="utf-8") as handle:
        names = [row["schedule"] for row in csv.DictReader(handle)]
    assert names == [name for name in SCHEDULES if name != "scaled_linear"]


@pytest.mark.parametrize(
    "bad, argument",
    [
        (["--digit", "12"], "--digit"),
        (["--timesteps", "1"], "--timesteps"),
        (["--image-size", "4"], "--image-size"),
    ],
)
def test_bad_arguments_exit_with_status_2(tmp_path, capsys, bad, argument):
    with pytest.raises(SystemExit) as exit_info:
        main(["--impl", "solutions", "--out", str(tmp_path), *bad])
    assert exit_info.value.code == 2
    assert argument in capsys.readouterr().err


@pytest.fixture
def stub_learner(tmp_path, monkeypatch):
    """Fresh, untouched learner stubs first on sys.path, without touching the working tree.

    Cached learner modules are taken out of sys.modules for the test; afterwards
    the stub modules it imported are dropped and monkeypatch puts the old ones back.
    """
    from tools.make_stubs import write

    stubs = tmp_path / "stubs"
    write(stubs)
    for name in LEARNER_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(stubs))
    yield stubs
    for name in LEARNER_MODULES:  # runs before monkeypatch's undo restores the originals
        sys.modules.pop(name, None)


def test_learner_stub_returns_1_with_a_clear_message(stub_learner, tmp_path, capsys):
    status = main(["--impl", "learner", "--out", str(tmp_path / "out"), "--timesteps", str(T)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.startswith("forward_demo: error: not attempted yet: Phase 1.")
    assert "--impl solutions" in captured.err
    assert "Traceback" not in captured.out + captured.err
    assert sys.modules["noise_schedule"].__file__.startswith(str(stub_learner))
