"""Every pitfall the guide prints in italics is a mistake the checks recognise, and a mutant proves it.

In the guide's "**Pitfalls:**" lists, an italic phrase is a promise to the learner: "if you
make this mistake, the grader will say so by this name". This test reads the guide and
holds it to that promise: each italic phrase must be the title of an entry of the mistake
catalogue (grading/mistakes.py), and some mutant (grading/mutants.py) must commit that
mistake, so that the mutation test proves that a check names it.
"""

from __future__ import annotations

import re
from pathlib import Path

from grading.mistakes import MISTAKES
from grading.mutants import MUTANTS

GUIDE = Path(__file__).resolve().parents[2] / "IMPLEMENTATION_GUIDE.md"
CODE_SPAN = re.compile(r"`[^`\n]*`")
ITALIC = re.compile(r"(?<![*\w])\*(?![*\s])([^*\n]+?)(?<!\s)\*(?![*\w])")


def italic_pitfalls(text: str) -> list[tuple[int, str]]:
    """(line number, phrase) of each italic phrase in a bullet of a "**Pitfalls:**" list."""
    found, inside = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() == "**Pitfalls:**":
            inside = True
        elif inside and (line.startswith("- ") or line.startswith("  ") and line.strip()):
            found += [(number, match[1]) for match in ITALIC.finditer(CODE_SPAN.sub("", line))]
        elif inside and line.strip():
            inside = False  # the first line after the list that is not part of a bullet
    return found


def normalised(phrase: str) -> str:
    """Case, spaces, the minus sign's spelling and a leading article do not matter."""
    phrase = phrase.lower().replace("−", "-").replace(" ", "")
    return re.sub(r"^(the|a|an)(?=[^a-z])", "", phrase)


TITLES = {normalised(mistake.title): key for key, mistake in MISTAKES.items()}


def test_the_guide_has_italic_pitfalls():
    """The parser finds the lists (a guide reformatted beyond recognition would pass the tests below)."""
    assert len(italic_pitfalls(GUIDE.read_text(encoding="utf-8"))) >= 100


def test_each_italic_pitfall_is_a_catalogue_entry():
    unmapped = [f"line {number}: *{phrase}*" for number, phrase in italic_pitfalls(GUIDE.read_text(encoding="utf-8"))
                if normalised(phrase) not in TITLES and normalised(re.sub(r"^(the|a|an) ", "", phrase, flags=re.I))
                not in TITLES]
    assert not unmapped, ("italic pitfalls of the guide that name no mistake of grading/mistakes.py (write the "
                          "catalogue title in italics, or no italics):\n" + "\n".join(unmapped))


def test_each_italic_pitfall_is_proved_by_a_mutant():
    mutated = {mutant.mistake for mutant in MUTANTS}
    unproved = sorted({f"*{phrase}* ({TITLES[normalised(phrase)]})"
                       for _, phrase in italic_pitfalls(GUIDE.read_text(encoding="utf-8"))
                       if TITLES.get(normalised(phrase)) and TITLES[normalised(phrase)] not in mutated})
    assert not unproved, "italic pitfalls that no mutant of grading/mutants.py commits:\n" + "\n".join(unproved)


def test_the_parser_reads_a_pitfall_list():
    text = "**Pitfalls:**\n\n- *One thing*: `x *= 2*y` is code.\n  and *another thing* on a continuation.\n\nAfter *that*."
    assert [phrase for _, phrase in italic_pitfalls(text)] == ["One thing", "another thing"]
