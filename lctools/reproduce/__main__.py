"""``python -m lctools.reproduce``: regenerate the paper-style figures (see ``--help``)."""
from __future__ import annotations

import argparse
import sys
import time

from tqdm.auto import tqdm

from . import FIGURES, parse_overrides, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lctools.reproduce",
        description="Regenerate the paper-style figures of chapters 2-6 (PNG + CSV + JSON) through the results "
                    "cache ($LCTOOLS_CACHE). A run that is killed resumes from its last checkpoint.")
    parser.add_argument("figures", nargs="*", metavar="FIGURE", help="figure names (see --list), or 'all'")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--mode", choices=("quick", "full"), default="quick",
                        help="quick: laptop CPU settings (default); full: the paper's scale (a GPU)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--out", default="figures", help="output folder (default: ./figures)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set steps=500 --set seeds=2 (repeatable)")
    parser.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                        help="save training checkpoints at least this often (default 60)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    by_chapter = sorted(FIGURES, key=lambda name: (FIGURES[name].chapter, name))
    if args.list:
        width = max(len(n) for n in FIGURES)
        for name in by_chapter:
            print(f"{name:<{width}}  chapter {FIGURES[name].chapter}  {FIGURES[name].title}")
        return 0
    names = by_chapter if args.figures == ["all"] else args.figures
    if not names:
        parser.error("name at least one figure (or 'all'); --list shows them")
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    try:
        overrides = parse_overrides(args.overrides)
    except ValueError as exc:
        parser.error(str(exc))
    for name in tqdm(names, desc="figures", disable=args.no_progress or len(names) == 1):
        start = time.perf_counter()
        try:
            paths = run(name, mode=args.mode, device=args.device, out=args.out, overrides=overrides,
                        progress=not args.no_progress, checkpoint_interval=args.checkpoint_every)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        tqdm.write(f"{name}: {paths['png']} (+ .csv, .json) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
