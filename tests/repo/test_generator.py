"""The stub generator: committed learner files match it, and its output is what students need."""

from __future__ import annotations

import ast
import importlib
import sys

import pytest

from tools import make_stubs
from tools.make_stubs import StubError, find_regions, learner_source, stub_out, to_top_level_imports


def test_committed_learner_files_match_the_generator():
    diffs = make_stubs.drift()
    assert not diffs, (
        "The top-level learner files differ from what `make stubs` writes. Maintainers: run "
        "`make stubs` and commit. (Students who filled in their stubs: expected; use `make grade`.)\n"
        + "".join(diffs)[:3000]
    )


def test_every_region_becomes_a_todo_and_a_named_not_implemented_error():
    for path in make_stubs.solution_files():
        text = path.read_text(encoding="utf-8")
        stub = stub_out(text, path.name)
        for region in find_regions(text, path.name):
            assert f'raise NotImplementedError("Phase {region.section} · {region.function} — see ' \
                   f'IMPLEMENTATION_GUIDE.md §{region.section}")' in stub
            assert f"# TODO §{region.section}: {region.task[0]}" in stub
        assert "### BEGIN SOLUTION" not in stub and "### END SOLUTION" not in stub


def test_stubs_keep_no_reference_code():
    """The code of each region is gone: the stub's function bodies hold only provided lines."""
    text = (make_stubs.SOLUTIONS_DIR / "diffusion.py").read_text(encoding="utf-8")
    stub = stub_out(text)
    assert "signal_scale * x0 + noise_scale * noise" in text
    assert "signal_scale * x0 + noise_scale * noise" not in stub
    ast.parse(stub)  # still valid Python


def test_generated_stubs_import_and_raise_the_stub_message(tmp_path, monkeypatch):
    make_stubs.write(tmp_path)
    for name in ("noise_schedule", "diffusion", "unet", "train", "degradations"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("noise_schedule")
        assert module.__file__.startswith(str(tmp_path))
        with pytest.raises(NotImplementedError, match=r"^Phase 1\.1 · linear_betas — see IMPLEMENTATION_GUIDE\.md §1\.1$"):
            module.linear_betas(10)
        diffusion = importlib.import_module("diffusion")
        assert diffusion.NoiseSchedule is module.NoiseSchedule  # sibling import, not solutions
        unet = importlib.import_module("unet")
        with pytest.raises(NotImplementedError, match=r"^Phase 2\.3 · ResidualBlock\.__init__ — see"):
            unet.ResidualBlock(8, 8, 16)
    finally:
        for name in ("noise_schedule", "diffusion", "unet", "train", "degradations"):
            sys.modules.pop(name, None)


SOURCE = '''\
from .noise_schedule import NoiseSchedule
from . import utils


def f(x):
    """Doc."""
    y = 1
    ### BEGIN SOLUTION §2.3
    # Double it.
    # Then add y.
    return 2 * x + y
    ### END SOLUTION
'''


def test_stub_of_a_small_source():
    stub = learner_source(SOURCE, "demo.py")
    assert "from noise_schedule import NoiseSchedule" in stub
    assert "import utils" in stub and "from . import" not in stub
    assert "    # TODO §2.3: Double it.\n    #   Then add y.\n" in stub
    assert 'raise NotImplementedError("Phase 2.3 · f — see IMPLEMENTATION_GUIDE.md §2.3")' in stub
    assert "return 2 * x + y" not in stub
    assert "make grade PHASE=2" in stub
    kept = learner_source(SOURCE, "demo.py", keep_solutions=True)
    assert "return 2 * x + y" in kept and "from noise_schedule import" in kept


@pytest.mark.parametrize(
    "source, problem",
    [
        ("def f():\n    ### BEGIN SOLUTION §1.1\n    # Task.\n    return 1\n", "without its END"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", "without a BEGIN"),
        ("def f():\n    ### BEGIN SOLUTION §1.1\n    return 1\n    ### END SOLUTION\n", "needs a comment"),
        ("### BEGIN SOLUTION §1.1\n# Task.\nx = 1\n### END SOLUTION\n", "inside a function"),
        (
            "def f():\n    ### BEGIN SOLUTION §1.1\n    # A.\n    ### BEGIN SOLUTION §1.2\n"
            "    # B.\n    ### END SOLUTION\n    ### END SOLUTION\n",
            "without its END",
        ),
    ],
    ids=["no end", "no begin", "no task", "outside a function", "nested"],
)
def test_malformed_regions_are_rejected(source, problem):
    with pytest.raises(StubError, match=problem):
        find_regions(source, "bad.py")


def test_unsupported_relative_imports_are_rejected():
    with pytest.raises(StubError, match="relative imports"):
        to_top_level_imports("from ..parent import x\n")


def test_check_mode_reports_drift(tmp_path, capsys):
    make_stubs.write(tmp_path)
    assert make_stubs.main(["--check", "--out", str(tmp_path)]) == 0
    target = tmp_path / "diffusion.py"
    target.write_text(target.read_text() + "\n# edited by hand\n")
    assert make_stubs.main(["--check", "--out", str(tmp_path)]) == 1
    assert "edited by hand" in capsys.readouterr().out


CLASS_SOURCE = '''\
import torch


class Block(torch.nn.Module):
    """Doc."""

    def __init__(self):
        super().__init__()
        ### BEGIN SOLUTION §2.5
        # Make a layer.
        self.layer = torch.nn.Identity()
        ### END SOLUTION

    # a comment between methods
    def forward(self, x):
        def helper(y):
            ### BEGIN SOLUTION §2.5
            # Inside a nested function.
            return y
            ### END SOLUTION

        return helper(x)


def plain(x):
    ### BEGIN SOLUTION §2.6
    # Plain function.
    return x
    ### END SOLUTION
'''


def test_methods_are_named_with_their_class():
    names = [region.function for region in find_regions(CLASS_SOURCE, "block.py")]
    assert names == ["Block.__init__", "helper", "plain"]
    stub = stub_out(CLASS_SOURCE)
    assert 'raise NotImplementedError("Phase 2.5 · Block.__init__ — see IMPLEMENTATION_GUIDE.md §2.5")' in stub
    ast.parse(stub)
