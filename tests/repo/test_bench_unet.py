"""Tests of ``python -m tools.benchmarks.bench_unet``: a tiny run's report, its flags, and the MAC counter."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch
from torch import nn

from tools.benchmarks import bench_unet
from tools.benchmarks.bench_unet import count_macs, main

#: A run small enough for a test: 4 images, 1 timed step, no warm-up, no diffusers needed.
TINY = ["--batch-size", "4", "--steps", "1", "--warmup", "0", "--baseline", "standin"]
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


def table_rows(report: str) -> dict[str, list[str]]:
    """The markdown table's body rows, keyed by their first word ("default", "baseline")."""
    rows = {}
    for line in report.splitlines():
        if line.startswith("| default") or line.startswith("| baseline"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0].split(":")[0]] = cells
    return rows


def first_number(cell: str) -> float:
    match = NUMBER.search(cell)
    assert match, f"no number in table cell {cell!r}"
    return float(match.group().replace(",", ""))


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """Run the tiny benchmark once, writing --out; return (stdout report, file text)."""
    out = tmp_path_factory.mktemp("bench") / "sub" / "bench.md"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main([*TINY, "--out", str(out)])
    assert status == 0
    return buffer.getvalue(), out.read_text(encoding="utf-8")


def test_table_has_both_rows_with_positive_numbers(tiny_report):
    report, _ = tiny_report
    header = next(line for line in report.splitlines() if line.startswith("| model"))
    assert header.count("|") == 8, "the table should have 7 columns"
    rows = table_rows(report)
    assert set(rows) == {"default", "baseline"}, f"rows found: {list(rows)}"
    for name, cells in rows.items():
        assert len(cells) == 7, f"{name} row has {len(cells)} cells: {cells}"
        for cell in cells[1:]:
            assert first_number(cell) > 0, f"{name} row: {cell!r} is not positive"


def test_default_row_matches_the_default_unet(tiny_report):
    from solutions.unet import UNet, count_parameters

    rows = table_rows(tiny_report[0])
    assert first_number(rows["default"][1]) == count_parameters(UNet())
    # The stand-in is bigger than the default in both parameters and MACs.
    assert first_number(rows["baseline"][1]) > first_number(rows["default"][1])
    assert first_number(rows["baseline"][2]) > first_number(rows["default"][2])


def test_ratio_target_and_machine_lines(tiny_report):
    report, _ = tiny_report
    pattern = (
        r"default vs baseline: training step \d+\.\d× faster, forward \d+\.\d× faster, "
        r"parameters \d+\.\d× fewer, MACs \d+\.\d× fewer"
    )
    assert re.search(pattern, report), report
    assert re.search(r"Target .*: (met|NOT met)", report)
    assert "Stand-in baseline used" in report
    assert f"torch {torch.__version__}" in report
    assert f"torch.get_num_threads() = {torch.get_num_threads()}" in report


def test_out_file_holds_the_printed_report(tiny_report):
    report, written = tiny_report
    assert written == report


def test_falls_back_to_the_standin_without_diffusers(monkeypatch):
    monkeypatch.setattr(bench_unet, "import_diffusers_unet", lambda: (None, "ImportError: no diffusers"))
    args = bench_unet.parse_args(["--steps", "1"])
    assert args.baseline == "standin"
    assert "no diffusers" in args.fallback_reason
    assert "Stand-in baseline used" in "\n".join(bench_unet.baseline_description(args))


def test_explicit_diffusers_without_diffusers_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(bench_unet, "import_diffusers_unet", lambda: (None, "ImportError: no diffusers"))
    with pytest.raises(SystemExit) as exit_info:
        bench_unet.parse_args(["--baseline", "diffusers"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "tools/benchmarks/requirements.txt" in message and "--baseline standin" in message


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--steps", "0"], "--steps"),
        (["--steps", "two"], "--steps"),
        (["--warmup", "-1"], "--warmup"),
        (["--baseline", "torchvision"], "--baseline"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_flags_exit_with_a_message(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("flag, suggested", [("--out", "bench_unet.md"), ("--json", "bench_unet.json")])
def test_an_output_that_is_a_folder_is_refused_with_a_file_name_inside_it(flag, suggested, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_unet.parse_args([flag, str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"{flag} {tmp_path} is a folder; give a file name such as {tmp_path / suggested}" in capsys.readouterr().err


def test_count_macs_is_exact_for_conv_and_linear():
    """One Conv2d and one Linear: the MACs follow from their shapes alone.

    A convolution computes, for each of its C_out × H_out × W_out outputs, a sum
    of (C_in / groups) × k_h × k_w products; a Linear computes, for each of its
    N_out outputs per row, N_in products. Biases add, they do not multiply, and
    are not counted.
    """
    c_in, c_out, kernel, stride, padding, side = 3, 5, 3, 2, 1, 9
    hidden, n_out = c_out * 5 * 5, 7
    model = nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding),
        nn.Flatten(),
        nn.Linear(hidden, n_out),
    )
    side_out = (side + 2 * padding - kernel) // stride + 1  # = 5
    assert side_out * side_out * c_out == hidden
    conv_macs = c_out * side_out * side_out * c_in * kernel * kernel
    linear_macs = hidden * n_out
    batch = 2
    x = torch.randn(batch, c_in, side, side)
    assert count_macs(model, x) == batch * (conv_macs + linear_macs)
