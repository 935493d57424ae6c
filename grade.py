"""Grade the exercises: points per phase, one reason per failing check, and Gradescope JSON.

Students:
    python grade.py --phase 1            # your top-level files, Phase 1 only (or: make grade PHASE=1)
    python grade.py                      # every phase
    python grade.py --impl solutions     # the reference: full marks

Instructors:
    python grade.py --submission path/to/student --json results.json
    python grade.py --extra-checks path/to/hidden_checks --json results.json

Each phase runs in its own pytest process with a per-check timeout and an
outer bound, so a learner file that fails to import, crashes or hangs still
gets a report, and the other phases are graded. The exit code is 0 when every
check passes, 1 when some fail, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from grading.report import gradescope_results, terminal_report
from provided.files import write_json
from grading.runner import PHASES, PhaseResult, phases_with_checks, run_phase
from provided.phases import GRADED_IMPLEMENTATIONS, resolve_impl


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
    parser.add_argument("--phase-timeout", type=positive_seconds, default=600.0, metavar="S",
                        help="seconds all checks of one phase may take (default 600)")
    parser.add_argument("--verbose", action="store_true", help="list passing checks too")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        impl = resolve_impl(args.impl, default="learner", choices=GRADED_IMPLEMENTATIONS)
    except ValueError as error:
        parser.error(str(error))
    if args.submission is not None:
        if impl != "learner":
            parser.error("--submission grades a student's learner files; drop --impl solutions")
        if not args.submission.is_dir():
            parser.error(f"--submission must be a folder; {args.submission} is not one")
        args.submission = args.submission.resolve()
    for path in args.extra_checks:
        if not path.exists():
            parser.error(f"--extra-checks: {path} does not exist")

    source = {
        "solutions": "the reference (solutions/)",
        "learner": f"the learner files in {args.submission}" if args.submission else "your top-level files",
    }[impl]
    print(f"Grading {source} …\n", flush=True)
    start = time.monotonic()
    extra_paths = tuple(path.resolve() for path in args.extra_checks)
    phases = args.phase or PHASES
    # Skip the start-up cost of phases that have no checks yet (one collect-only run).
    to_run = phases_with_checks(extra_paths) if len(phases) > 1 else set(phases)
    results = [
        run_phase(
            phase,
            impl=impl,
            submission=args.submission,
            check_timeout=args.check_timeout,
            phase_timeout=args.phase_timeout,
            extra_paths=extra_paths,
        )
        if phase in to_run
        else PhaseResult(phase)
        for phase in phases
    ]
    elapsed = time.monotonic() - start
    print(terminal_report(results, verbose=args.verbose))
    if args.json is not None:
        write_json(args.json, gradescope_results(results, elapsed))
        print(f"\nWrote {args.json}")
    all_passed = all(not r.problem and all(c.passed for c in r.checks) for r in results)
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
