"""Grade a folder of submitted notebooks locally (no Docker) into a CSV of scores.

    python exercises/grade.py SUBMISSIONS_DIR --assignment ch1_linear_regions [--out scores.csv]
                              [--autograder PATH.zip] [--build-dir exercises/dist]

Every ``*.ipynb`` in SUBMISSIONS_DIR (not recursive) is run by ``otter.api.grade_submission``
(what ``otter run`` does) in the current Python environment, which must have lctools
installed.  The autograder zip defaults to ``<build-dir>/<assignment>/autograder/
<assignment>-autograder.zip`` from ``exercises/build.py``.  The CSV has one row per
notebook: ``file``, one column per autograded question, ``total``, ``possible``,
``percent`` and ``error`` (set when a notebook could not be graded; its scores are then 0).
Free-response (manual) questions are not in the CSV: grade them by reading the notebooks.
A notebook that lost its otter metadata (e.g. re-created by hand) is graded as this
assignment, with a warning.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from build import DEFAULT_OUT, autograder_zip  # noqa: E402


def _with_assignment_name(nb_path: Path, name: str, tmp: Path) -> Path:
    """The notebook itself, or a copy carrying ``metadata.otter.assignment_name = name`` if it has none."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    otter_md = nb.setdefault("metadata", {}).setdefault("otter", {})
    if otter_md.get("assignment_name"):
        return nb_path
    print(f"warning: {nb_path.name} has no otter assignment name; grading it as {name}", file=sys.stderr)
    otter_md["assignment_name"] = name
    copy = tmp / nb_path.name
    copy.write_text(json.dumps(nb), encoding="utf-8")
    return copy


def grade_notebook(nb_path, ag_zip, assignment: str) -> dict:
    """Grade one notebook: ``{"scores": {question: points}, "total", "possible", "error"}``."""
    import otter.api

    nb_path = Path(nb_path).resolve()
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        try:
            path = _with_assignment_name(nb_path, assignment, Path(tmp))
            with contextlib.redirect_stdout(io.StringIO()):
                res = otter.api.grade_submission(str(path), str(Path(ag_zip).resolve()), quiet=True)
            scores = {q: float(res.get_score(q)) for q in res.to_dict()}
            return dict(scores=scores, total=float(res.total), possible=float(res.possible), error="")
        except Exception as e:  # one broken submission must not stop the class's grading
            return dict(scores={}, total=0.0, possible=float("nan"), error=f"{type(e).__name__}: {e}")


def grade_folder(submissions, assignment: str, out, ag_zip=None, build_dir=DEFAULT_OUT) -> list[dict]:
    """Grade every ``*.ipynb`` in ``submissions``; write the CSV ``out``; return its rows."""
    ag_zip = Path(ag_zip) if ag_zip else autograder_zip(build_dir, assignment)
    if not ag_zip.is_file():
        raise SystemExit(f"autograder zip {ag_zip} not found: run `python exercises/build.py {assignment}` first")
    notebooks = sorted(Path(submissions).glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no .ipynb files in {submissions}")
    results = []
    for nb in notebooks:
        r = grade_notebook(nb, ag_zip, assignment)
        print(f"{nb.name}: {r['total']:g} / {r['possible']:g}" + (f"  ERROR {r['error']}" if r["error"] else ""))
        results.append((nb.name, r))
    questions = sorted({q for _, r in results for q in r["scores"]}, key=lambda q: (len(q), q))
    possible = max((r["possible"] for _, r in results if not r["error"]), default=float("nan"))
    rows = []
    for name, r in results:
        row = {"file": name, **{q: r["scores"].get(q, 0.0) for q in questions}, "total": r["total"],
               "possible": possible, "percent": round(100 * r["total"] / possible, 2) if possible == possible and possible else 0.0,
               "error": r["error"]}
        rows.append(row)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file", *questions, "total", "possible", "percent", "error"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out} ({len(rows)} submissions)")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("submissions", type=Path, help="folder of submitted .ipynb files")
    ap.add_argument("--assignment", required=True, help="assignment name, e.g. ch1_linear_regions")
    ap.add_argument("--out", type=Path, default=Path("scores.csv"), help="CSV to write (default: scores.csv)")
    ap.add_argument("--autograder", type=Path, default=None, help="autograder zip (default: from the build folder)")
    ap.add_argument("--build-dir", type=Path, default=DEFAULT_OUT, help="build folder of exercises/build.py")
    args = ap.parse_args(argv)
    grade_folder(args.submissions, args.assignment, args.out, args.autograder, args.build_dir)


if __name__ == "__main__":
    main()
