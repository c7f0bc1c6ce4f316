"""``python -m lctools.reproduce``: regenerate the paper-style figures (see ``--help``)."""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from tqdm.auto import tqdm

from . import FIGURES, check_device, check_output, figure_settings, parse_overrides, run


def _interrupted(exc: BaseException) -> int:
    """Ctrl-C: say where training stopped (``lctools.cache.TrainingInterrupted`` carries
    ``step`` and ``total`` after saving a checkpoint) and exit with 130."""
    step, total = getattr(exc, "step", None), getattr(exc, "total", None)
    if step is not None and total is not None:
        print(f"\ninterrupted at step {step} of {total}; run again to resume", file=sys.stderr)
    else:
        print("\ninterrupted", file=sys.stderr)
    return 130


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
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default on the CPU: 1, fastest for these small "
                             "networks, unless OMP_NUM_THREADS is set)")
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
    if args.checkpoint_every < 0:
        parser.error("--checkpoint-every must be >= 0 seconds")
    # everything that can be checked is checked before the first figure is computed
    try:
        overrides = parse_overrides(args.overrides)
        for name in names:
            figure_settings(FIGURES[name], args.mode, {k: v for k, v in overrides.items()
                                                       if k in FIGURES[name].quick or len(names) == 1})
        unused = [k for k in overrides if not any(k in FIGURES[n].quick for n in names)]
        if unused:
            raise ValueError(f"no figure among {', '.join(names)} has the setting(s) {', '.join(unused)}.")
        device = check_device(args.device)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}.")
        if device.type == "cpu" and (args.threads or not os.environ.get("OMP_NUM_THREADS")):
            torch.set_num_threads(args.threads or 1)
        out, cache = check_output(args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        for name in tqdm(names, desc="figures", disable=args.no_progress or len(names) == 1):
            start = time.perf_counter()
            mine = {k: v for k, v in overrides.items() if k in FIGURES[name].quick}
            try:
                paths = run(name, mode=args.mode, device=device, out=out, overrides=mine,
                            progress=not args.no_progress, checkpoint_interval=args.checkpoint_every, cache=cache)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            tqdm.write(f"{name}: {paths['png']} (+ .csv, .json) in {time.perf_counter() - start:.1f} s")
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
