"""Command line at the edge of the library: ``vlm4vla {profile,run,index,repro,progress}``.

Parsing happens here only; every command calls one library function.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import time

from .pipeline.errors import ConfigError
from .pipeline.notebook import repo_root
from .pipeline.profiles import write_params
from .pipeline.report import write_index
from .pipeline.runner import NotebookRun, run_notebook


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vlm4vla`` command."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"vlm4vla: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"vlm4vla: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `vlm4vla progress | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _profile(args: argparse.Namespace) -> int:
    changed = write_params(args.name)
    print(f"params.yaml {'now holds' if changed else 'already holds'} profile {args.name!r}")
    return 0


def _run(args: argparse.Namespace) -> int:
    sections = tuple(args.section or [args.notebook.split("-", 1)[1]])
    run = NotebookRun(notebook=args.notebook, sections=sections, stem=args.stem or args.notebook)
    print(f"report: {run_notebook(run)}")
    return 0


def _index(args: argparse.Namespace) -> int:
    print(f"index: {write_index(repo_root())}")
    return 0


def _repro(args: argparse.Namespace) -> int:
    root = repo_root()
    for option, value in (("--first", args.first), ("--only", args.only), ("--again", args.again),
                          ("--until", args.until)):
        if value and args.dvc_args:
            raise SystemExit(f"{option} {value}: an option of the scheduler, so it takes no dvc arguments")
    deadline = None if args.until is None else parse_until(args.until)
    write_params(args.profile, root)
    if not args.dvc_args:  # the scheduler, also for --jobs 1: it restores absent upstream outputs (README)
        from .pipeline.schedule import parallel_repro

        return parallel_repro(root, args.jobs, args.first, deadline, only=args.only, again=args.again)
    cmd = ["dvc", "repro", *args.dvc_args]
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root, env=None)


def parse_until(text: str, now: float | None = None) -> float:
    """``--until``: a clock time today ("06:05", tomorrow if already past) or a span from now ("2h50m",
    "170m", "3h"); epoch seconds."""
    now = time.time() if now is None else now
    if clock := re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text):
        today = datetime.datetime.fromtimestamp(now).replace(hour=int(clock[1]), minute=int(clock[2]), second=0,
                                                             microsecond=0)
        at = today.timestamp()
        return at if at > now else (today + datetime.timedelta(days=1)).timestamp()
    if (span := re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", text)) and text:
        return now + 3600 * int(span[1] or 0) + 60 * int(span[2] or 0)
    raise SystemExit(f"--until {text!r}: allowed a clock time HH:MM (e.g. 06:05) or a span such as 2h50m, 170m or 3h")


def _progress(args: argparse.Namespace) -> int:
    from .pipeline.progress import progress_report, run_progress, running_lines
    from .pipeline.schedule import stages_running

    root = repo_root()
    print("\n".join(progress_report(run_progress(root), args.jobs) + running_lines(root, stages_running(root))))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlm4vla", description=__doc__)
    sub = p.add_subparsers(required=True)
    s = sub.add_parser("profile", help="write params.yaml for a profile (smoke, default, paper)")
    s.add_argument("name")
    s.set_defaults(func=_profile)
    s = sub.add_parser("run", help="execute one notebook with its params.yaml section(s) and render its report")
    s.add_argument("notebook", help="notebook name, e.g. 01-zoo")
    s.add_argument("--section", action="append", help="params.yaml section(s), dotted (default: the slug)")
    s.add_argument("--stem", help="output name under artifacts/ and reports/ (default: the notebook name)")
    s.set_defaults(func=_run)
    s = sub.add_parser("index", help="write reports/index.html")
    s.set_defaults(func=_index)
    s = sub.add_parser("repro", help="write params.yaml for a profile, then dvc repro")
    s.add_argument("--profile", default="default")
    s.add_argument("--jobs", type=int, default=1,
                   help="stages at once (independent stages in separate `dvc repro --single-item`)")
    s.add_argument("--first", nargs="+", default=[], metavar="PATTERN",
                   help="run stages matching these shell patterns first, in this order "
                        "(e.g. 'train@ax-*-s0' 'train@lb-*')")
    s.add_argument("--only", nargs="+", default=[], metavar="PATTERN",
                   help="run only the stages matching these shell patterns and the stages they need "
                        "(e.g. 'train@fz-*-s1'); the rest wait for the next repro")
    s.add_argument("--again", nargs="+", default=[], metavar="PATTERN",
                   help="run the stages matching these shell patterns from scratch even if unchanged: their "
                        "persisted outputs (checkpoints) are emptied first (e.g. after a fix to training)")
    s.add_argument("--until", metavar="TIME",
                   help="start only the runs expected to finish by then (HH:MM, or a span such as "
                        "2h50m); the rest wait for the next repro")
    s.add_argument("dvc_args", nargs="*", help="instead of the scheduler: a plain dvc repro with these arguments")
    s.set_defaults(func=_repro)
    s = sub.add_parser("progress", help="how many of params.yaml's policy runs have finished, and the time left")
    s.add_argument("--jobs", type=int, default=2, help="stages at once, for the time estimate")
    s.set_defaults(func=_progress)
    return p


if __name__ == "__main__":
    sys.exit(main())
