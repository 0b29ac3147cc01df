"""Make the saved course notebooks readable where no widget front end runs (before a notebook runs,
on GitHub, in nbconvert's HTML, in the book): every widget output shows a picture or its final text,
never ``VBox(children=(...`` and never a progress bar stuck at its start.

    python book/static_outputs.py course/*.ipynb          # fix the notebooks in place
    python book/static_outputs.py --check course/*.ipynb  # exit 1 and name what is missing

For every output that holds a widget view it reads the widget's saved state (what nbclient stores in
the notebook's metadata when it runs it) and adds:
- the course widgets (a box with an ``Image``): the figure as ``image/png``, and a one-line
  ``text/plain``, as ``tfa_core.teaching.widgets.WidgetBox`` does itself when it is displayed;
- tqdm's progress bar (a box of ``HTML``, ``FloatProgress``, ``HTML``): its final line as
  ``text/plain``, e.g. ``training: 100%|██████████| 12/12 [00:09<00:00, ...]``.
Then it drops the saved widget state, which only a script fetched from a content-delivery network could
render. Only the affected outputs change; nothing is executed.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from pathlib import Path

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


def _children(state: dict, model_id: str) -> list[str]:
    return [child.removeprefix("IPY_MODEL_") for child in state[model_id]["state"].get("children", [])]


def _text(value: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", value)).replace("\u2007", " ")


def _progress_line(state: dict, model_id: str) -> str | None:
    """tqdm's ``HBox(HTML, FloatProgress, HTML)`` as the line tqdm prints in a terminal."""
    parts = [state[c] for c in _children(state, model_id) if c in state]
    if [p["model_name"] for p in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    bar = parts[1]["state"]
    total, done = bar.get("max", 0) or 0, bar.get("value", 0) or 0
    filled = int(10 * done / total) if total else 0
    return (f"{_text(parts[0]['state'].get('value', ''))}|{'█' * filled}{' ' * (10 - filled)}|"
            f"{_text(parts[2]['state'].get('value', ''))}")


def _figure(state: dict, model_id: str) -> str | None:
    """The base64 PNG of the first ``Image`` inside the box ``model_id``, searched depth first."""
    entry = state.get(model_id)
    if entry is None:
        return None
    if entry["model_name"] == "ImageModel":
        for buffer in entry.get("buffers", []):
            if buffer.get("path") == ["value"] and buffer.get("encoding") == "base64":
                return buffer["data"]
        return None
    for child in _children(state, model_id):
        found = _figure(state, child)
        if found:
            return found
    return None


def fix(notebook: dict) -> list[str]:
    """Add the static fallbacks to ``notebook`` in place and drop its widget state; what changed."""
    state = notebook.get("metadata", {}).get("widgets", {}).get(STATE, {}).get("state", {})
    changes = []
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if VIEW not in data:
                continue
            model_id = data[VIEW]["model_id"]
            line = _progress_line(state, model_id) if model_id in state else None
            if line is not None:
                if "".join(data.get("text/plain", "")) != line:
                    data["text/plain"] = line
                    changes.append(f"cell {index}: progress bar -> {line!r}")
                continue
            if "image/png" not in data:
                figure = _figure(state, model_id)
                if figure is None:
                    changes.append(f"cell {index}: widget {model_id} has no saved figure; run the notebook")
                    continue
                data["image/png"] = figure
                data["text/plain"] = "course widget (run the notebook to use its controls)"
                changes.append(f"cell {index}: widget figure added as image/png")
    if "widgets" in notebook.get("metadata", {}):
        del notebook["metadata"]["widgets"]
        changes.append("saved widget state dropped")
    return changes


def problems(notebook: dict) -> list[str]:
    """What a page without the widget front end would show wrong in ``notebook``; empty when fine."""
    found = []
    if "widgets" in notebook.get("metadata", {}):
        found.append("the notebook carries saved widget state (rendered only by a script from a CDN)")
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if VIEW not in data:
                continue
            text = "".join(data.get("text/plain", ""))
            if "image/png" not in data and not re.search(r"100%\|█+\|", text):
                found.append(f"cell {index}: a widget with neither a figure nor a finished progress bar: "
                             f"{text[:60]!r}")
            if re.match(r"\w*Box\(children=", text):
                found.append(f"cell {index}: the widget's Python repr as its text: {text[:60]!r}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a notebook needs fixing")
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        notebook = json.loads(path.read_text())
        if args.check:
            for problem in problems(notebook):
                print(f"{path}: {problem}")
                failed = True
            continue
        changes = fix(notebook)
        for change in changes:
            print(f"{path}: {change}")
        if changes:
            path.write_text(json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        failed |= bool(problems(notebook))
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
