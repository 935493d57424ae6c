"""Grade the exercises: points per phase, one reason per failing check, and Gradescope JSON.

Students:
    python grade.py --phase 1            # your top-level files, Phase 1 only (or: make grade PHASE=1)
    python grade.py                      # every phase
    python grade.py --impl solutions     # the reference: full marks

Instructors:
    python grade.py --submission path/to/student --json results.json
    python grade.py --extra-checks path/to/hidden_checks --json results.json
    python grade.py --submissions path/to/class --out path/to/grades   # one folder per student

Learner code runs in a confined worker, a fresh process per check killed after
--check-timeout (README, "For instructors"); the whole run stops after
--time-budget, and the checks that finished count. A file that fails to
import, crashes or hangs still gets a report. With --json, a results.json
saying "grading did not finish" is written before any learner code runs, and
replaced at the end. The exit code is 0 when every check passes (with
--submissions: when every submission was graded), 1 when some fail, 2 for bad
arguments, 3 when the grading files changed during a batch.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # grading writes nothing into the grading checkout

from grading.report import gradescope_results, terminal_report  # noqa: E402
from grading.runner import DEFAULT_TIME_BUDGET, PHASES, REPO_ROOT, PhaseResult, run_checks  # noqa: E402
from provided.files import atomic_write, write_json  # noqa: E402
from provided.phases import GRADED_IMPLEMENTATIONS, IMPL_ENV_VAR, has_reference, resolve_impl  # noqa: E402

# What grading trusts: a change to any of these during a batch aborts it.
TRUSTED_PATHS = ("grade.py", "conftest.py", "pyproject.toml", "utils.py", "grading", "provided", "solutions",
                 "tests/checks", "tests/hidden")


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Grade the diffusion exercises phase by phase.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--phase", type=int, nargs="+", choices=PHASES, metavar="N",
        help=f"phases to grade, among {', '.join(map(str, PHASES))} (default: all)",
    )
    parser.add_argument(
        "--impl", choices=GRADED_IMPLEMENTATIONS, default=None,
        help="grade your top-level files (learner) or the reference (solutions); "
        "default $DIFFUSION_IMPL, else learner",
    )
    parser.add_argument(
        "--submission", type=Path, default=None, metavar="DIR",
        help="a folder with a student's copy of the learner files (noise_schedule.py, diffusion.py, …)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write Gradescope's results.json here")
    parser.add_argument("--extra-checks", type=Path, nargs="+", default=(), metavar="PATH",
                        help="more check files or folders (e.g. hidden instructor checks)")
    parser.add_argument("--check-timeout", type=positive_seconds, default=30.0, metavar="S",
                        help="seconds one check may take (default 30)")
    parser.add_argument("--time-budget", type=positive_seconds, default=DEFAULT_TIME_BUDGET, metavar="S",
                        help=f"seconds the whole grading run may take (default {DEFAULT_TIME_BUDGET:g}, under "
                        "Gradescope's default limit of 10 minutes)")
    parser.add_argument("--submissions", type=Path, default=None, metavar="DIR",
                        help="grade every folder in DIR as one student's submission, each on its own")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="with --submissions: where each submission's results.json and report go, "
                        "and scores.csv (default: DIR-grades beside DIR)")
    parser.add_argument("-k", dest="keyword", default=None, metavar="EXPR",
                        help="only the checks whose test names match EXPR, as pytest -k (e.g. q_sample)")
    parser.add_argument("--verbose", action="store_true", help="list passing checks too")
    return parser


def tree_fingerprint(extra_paths: tuple[Path, ...] = ()) -> str:
    """A SHA-256 over every file grading trusts (names and contents)."""
    digest = hashlib.sha256()
    roots = [REPO_ROOT / path for path in TRUSTED_PATHS] + list(extra_paths)
    for root in roots:
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def grade(args: argparse.Namespace, impl: str, submission: Path | None,
          json_path: Path | None) -> tuple[list[PhaseResult], float]:
    """Grade one implementation; with ``json_path``, a partial results.json first, the full one at the end."""
    start = time.monotonic()

    def write_partial(results: list[PhaseResult]) -> None:
        note = "Grading did not finish: these are the checks it was about to run (no points yet)."
        write_json(json_path, gradescope_results(results, 0.0, note=note))

    results = run_checks(
        tuple(args.phase or PHASES),
        impl=impl,
        submission=submission,
        check_timeout=args.check_timeout,
        time_budget=args.time_budget,
        extra_paths=tuple(path.resolve() for path in args.extra_checks),
        keyword=args.keyword,
        on_collected=write_partial if json_path is not None else None,
    )
    elapsed = time.monotonic() - start
    if json_path is not None:
        write_json(json_path, gradescope_results(results, elapsed))
    return results, elapsed


def warn_isolation(results: list[PhaseResult], instructor: bool) -> None:
    """Tell an instructor when student code ran less confined than it could (README, "For instructors")."""
    isolation = next((result.isolation for result in results if result.isolation), "")
    if instructor and isolation:
        print(f"\nNote for instructors: {isolation}.", file=sys.stderr)


def grade_batch(args: argparse.Namespace, out: Path) -> int:
    """Grade each folder of ``args.submissions`` alone; a results.json and a report each, and scores.csv."""
    submissions = sorted(path for path in args.submissions.iterdir()
                         if path.is_dir() and not path.name.startswith("."))
    # The worker must see no submission, nor the grades (README, "For instructors").
    hidden = [str(args.submissions), str(out), os.environ.get("GRADING_HIDE", "")]
    os.environ["GRADING_HIDE"] = os.pathsep.join(path for path in hidden if path)
    extra_paths = tuple(path.resolve() for path in args.extra_checks)
    fingerprint = tree_fingerprint(extra_paths)
    rows = []
    for number, submission in enumerate(submissions, 1):
        print(f"[{number}/{len(submissions)}] {submission.name} …", flush=True)
        results, elapsed = grade(args, "learner", submission, out / f"{submission.name}.json")
        report = terminal_report(results, verbose=args.verbose)
        atomic_write(out / f"{submission.name}.txt", lambda handle: handle.write(report.encode("utf-8")))
        if number == 1:
            warn_isolation(results, True)
        rows.append([submission.name, *(f"{r.score:g}" for r in results),
                     f"{sum(r.score for r in results):g}", f"{sum(r.max_score for r in results):g}",
                     f"{elapsed:.1f}"])
        print(f"    {rows[-1][-3]} / {rows[-1][-2]} points in {elapsed:.0f} s", flush=True)
        if tree_fingerprint(extra_paths) != fingerprint:
            print(f"error: the grading files changed while {submission.name} was graded; restore them "
                  "(git status shows what changed) and grade again", file=sys.stderr)
            return 3
    table = io.StringIO()
    phases = args.phase or PHASES
    csv.writer(table).writerows([["submission", *(f"phase{p}" for p in phases), "total", "max", "seconds"],
                                 *rows])
    atomic_write(out / "scores.csv", lambda handle: handle.write(table.getvalue().encode("utf-8")))
    print(f"\nGraded {len(rows)} submissions: {out / 'scores.csv'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        impl = resolve_impl(args.impl, default="learner", choices=GRADED_IMPLEMENTATIONS)
    except ValueError as error:
        parser.error(str(error))
    if impl == "solutions" and not has_reference():
        parser.error(f"{'--impl' if args.impl else IMPL_ENV_VAR} solutions grades the reference in solutions/, which "
                     "this copy (a student release) does not have; grade your files with --impl learner")
    for path in args.extra_checks:
        if not path.exists():
            parser.error(f"--extra-checks: {path} does not exist")
    if args.submissions is not None:
        if args.submission is not None or impl != "learner" or args.json is not None:
            parser.error("--submissions grades a folder of submissions; drop --submission, --impl and --json")
        if not args.submissions.is_dir():
            parser.error(f"--submissions must be a folder of submission folders; {args.submissions} is not one")
        args.submissions = args.submissions.resolve()
        out = (args.out or args.submissions.parent / f"{args.submissions.name}-grades").resolve()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            parser.error(f"--out: cannot create {out} ({error.strerror})")
        return grade_batch(args, out)
    if args.out is not None:
        parser.error("--out goes with --submissions; for one submission use --json PATH")
    if args.submission is not None:
        if impl != "learner":
            parser.error("--submission grades a student's learner files; drop --impl solutions")
        if not args.submission.is_dir():
            parser.error(f"--submission must be a folder; {args.submission} is not one")
        args.submission = args.submission.resolve()

    source = {
        "solutions": "the reference (solutions/)",
        "learner": f"the learner files in {args.submission}" if args.submission else "your top-level files",
    }[impl]
    print(f"Grading {source} …\n", flush=True)
    results, _ = grade(args, impl, args.submission, args.json)
    print(terminal_report(results, verbose=args.verbose))
    warn_isolation(results, args.submission is not None)
    if args.json is not None:
        print(f"\nWrote {args.json}")
    all_passed = all(not r.problem and all(c.passed for c in r.checks) for r in results)
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
