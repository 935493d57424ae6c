"""Every "Try it" snippet of IMPLEMENTATION_GUIDE.md runs, phase by phase, on the committed worksheets.

The committed worksheets are untouched stubs, so each snippet runs under ``auto`` with the
reference standing in for every phase, exactly as a learner who has not started sees it;
it must neither crash with a bare NotImplementedError nor need an earlier phase done.
Snippets that read a trained model (``runs/…``, after ``make demo``) are left out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "IMPLEMENTATION_GUIDE.md"
HEADING = re.compile(r"^#{2,4} (§\d+\.\d+|Chapter \d+|Appendix)[^\n]*$", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets() -> list:
    """(section, snippet) for each python block that uses the implementation chooser."""
    text = GUIDE.read_text(encoding="utf-8")
    found = []
    for block in PYTHON_BLOCK.finditer(text):
        code = block.group(1)
        if "import_impl" not in code or "runs/" in code:
            continue
        headings = [match.group(1) for match in HEADING.finditer(text, 0, block.start())]
        section = headings[-1] if headings else "top"
        found.append(pytest.param(code, id=f"{section} #{sum(1 for p in found if p.id.startswith(section + ' #')) + 1}"))
    return found


SNIPPETS = snippets()


def test_the_guide_has_snippets_to_run():
    assert len(SNIPPETS) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("code", SNIPPETS)
def test_a_try_it_snippet_runs_phase_by_phase(code):
    environment = {key: value for key, value in os.environ.items() if key != "DIFFUSION_IMPL"}
    environment["OMP_NUM_THREADS"] = "1"
    result = subprocess.run([sys.executable, "-"], input=code, cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert re.search(r"^Phase 1: (yours|the reference)", result.stderr, re.MULTILINE), "auto did not say whose code ran"
