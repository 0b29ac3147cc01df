"""How long each course notebook takes to run, in quick mode, in the full lesson, or both.

    python benchmarks/course_times.py                     # quick mode, every notebook
    python benchmarks/course_times.py --mode full 06 07   # the full lesson, notebooks 06 and 07
    python benchmarks/course_times.py --mode both
    python benchmarks/course_times.py --write             # the full lesson, saved into every notebook
    python benchmarks/course_times.py --write 06 07       # the same for notebooks 06 and 07 (make lesson)

Each notebook runs top to bottom in a fresh Jupyter kernel (nbclient), exactly as saved: the exercise
stubs stay unfilled. Without ``--write`` nothing is written back to the notebooks. With ``--write``
each notebook runs in the full lesson (``TFA_QUICK=0``) and is saved with those outputs, which is what
readers see before they run anything (``tests/test_saved_outputs.py`` fails on a notebook saved in
quick mode). Prints one line per notebook and the total, and the machine it ran on; these are the run
times in the README's course table.
"""

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from machine import describe_machine

COURSE = Path(__file__).resolve().parents[1] / "course"


def run_notebook(path: Path, quick: bool, timeout: int, write: bool = False) -> float:
    """Execute the notebook at ``path`` in a new kernel and return the wall time in seconds; with
    ``write``, save the executed notebook back to ``path`` (only if every cell ran)."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["TFA_QUICK"] = "1" if quick else "0"  # the kernel inherits the environment
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(COURSE)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if write:  # execute() raised if a cell failed, so a broken run never overwrites the notebook
        nbformat.write(notebook, path)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook numbers (default: all)")
    parser.add_argument("--mode", choices=("quick", "full", "both"), default="quick")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    parser.add_argument("--write", action="store_true",
                        help="run the full lesson and save each executed notebook back (implies --mode full)")
    args = parser.parse_args()
    if args.write and args.mode == "both":
        parser.error("--write saves the full lesson's outputs: leave out --mode, or give --mode full")
    if args.write:
        args.mode = "full"  # quick-mode outputs are never saved

    paths = sorted(COURSE.glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        wanted = {n.zfill(2) for n in args.notebooks}
        unknown = wanted - {p.name[:2] for p in paths}
        if unknown:
            parser.error(f"no notebook numbered {sorted(unknown)}; "
                         f"the course has {[p.name[:2] for p in paths]}")
        paths = [p for p in paths if p.name[:2] in wanted]
    modes = {"quick": [True], "full": [False], "both": [True, False]}[args.mode]

    print(describe_machine())
    totals = dict.fromkeys(modes, 0.0)
    for path in paths:
        cells = []
        for quick in modes:
            seconds = run_notebook(path, quick, args.timeout, write=args.write)
            totals[quick] += seconds
            cells.append(f"{'quick' if quick else 'full'} {seconds:7.1f} s")
        print(f"{path.stem:<28} " + "   ".join(cells) + ("   saved" if args.write else ""), flush=True)
    print(f"{'total':<28} " + "   ".join(f"{'quick' if q else 'full'} {t:7.1f} s" for q, t in totals.items()))


if __name__ == "__main__":
    main()
