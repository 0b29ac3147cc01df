"""The notebooks are saved with the full lesson's outputs: what a reader sees on the web, or on opening
a notebook before running it, must be the real lesson, not quick mode's handful of steps (issue #14).
Quick mode is for CI and nbval only; ``make lesson`` (``benchmarks/course_times.py --write``) runs the
full lesson and saves it.

The environment report each notebook prints first says ``quick     off: the full lesson`` or
``quick     on (TFA_QUICK=1): ...``; this reads it from the saved outputs."""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "course").glob("[0-9][0-9]_*.ipynb"))

FULL = "quick     off: the full lesson"
QUICK = "quick     on"



def saved_mode(path: Path) -> str:
    """'full', 'quick' or 'unknown', from the environment report in the saved outputs of the setup cell."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "setup" in cell.get("metadata", {}).get("tags", []):
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
            if FULL in text:
                return "full"
            if QUICK in text:
                return "quick"
    return "unknown"


def test_the_report_names_every_notebook_saved_in_quick_mode():
    """One line per notebook, so a failing run says at once which notebooks to re-run."""
    modes = {path.name: saved_mode(path) for path in NOTEBOOKS}
    assert len(modes) == 10 and "unknown" not in modes.values(), modes
    quick = sorted(name for name, mode in modes.items() if mode == "quick")
    assert not quick, ("saved with quick-mode outputs: " + ", ".join(quick)
                       + '; run `make lesson NOTEBOOKS="' + " ".join(n[:2] for n in quick) + '"`')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_is_saved_with_the_full_lessons_outputs(path):
    mode = saved_mode(path)
    assert mode == "full", (f"{path.name} is saved with {mode}-mode outputs; run "
                            f"`make lesson NOTEBOOKS={path.name[:2]}` (benchmarks/course_times.py --write)")


def test_saved_mode_reads_the_report(tmp_path):
    for report, expected in ((FULL, "full"), ("quick     on (TFA_QUICK=1): small sizes, few steps", "quick")):
        notebook = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("print(tfa_core.environment_report(device))",
                                         metadata={"tags": ["setup"]})
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"python    3.11\n{report}\n")]
        notebook.cells = [cell]
        nbformat.write(notebook, tmp_path / "x.ipynb")
        assert saved_mode(tmp_path / "x.ipynb") == expected
