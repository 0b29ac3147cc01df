"""How long each course notebook takes to run, in quick mode, in the full lesson, or both.

    python benchmarks/course_times.py                     # quick mode, every notebook
    python benchmarks/course_times.py --mode full 06 07   # the full lesson, notebooks 06 and 07
    python benchmarks/course_times.py --mode both

Each notebook runs top to bottom in a fresh Jupyter kernel (nbclient), exactly as saved: the exercise
stubs stay unfilled. Nothing is written back to the notebooks. Prints one line per notebook and the
total, and the machine it ran on; these are the run times in the README's course table.
"""

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from machine import describe_machine

COURSE = Path(__file__).resolve().parents[1] / "course"


def run_notebook(path: Path, quick: bool, timeout: int) -> float:
    """Execute the notebook at ``path`` in a new kernel and return the wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["TFA_QUICK"] = "1" if quick else "0"  # the kernel inherits the environment
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(COURSE)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook numbers (default: all)")
    parser.add_argument("--mode", choices=("quick", "full", "both"), default="quick")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    args = parser.parse_args()

    paths = sorted(COURSE.glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        wanted = {n.zfill(2) for n in args.notebooks}
        unknown = wanted - {p.name[:2] for p in paths}
        if unknown:
            parser.error(f"no notebook numbered {sorted(unknown)}; the course has {[p.name[:2] for p in paths]}")
        paths = [p for p in paths if p.name[:2] in wanted]
    modes = {"quick": [True], "full": [False], "both": [True, False]}[args.mode]

    print(describe_machine())
    totals = dict.fromkeys(modes, 0.0)
    for path in paths:
        cells = []
        for quick in modes:
            seconds = run_notebook(path, quick, args.timeout)
            totals[quick] += seconds
            cells.append(f"{'quick' if quick else 'full'} {seconds:7.1f} s")
        print(f"{path.stem:<28} " + "   ".join(cells), flush=True)
    print(f"{'total':<28} " + "   ".join(f"{'quick' if q else 'full'} {t:7.1f} s" for q, t in totals.items()))


if __name__ == "__main__":
    main()
