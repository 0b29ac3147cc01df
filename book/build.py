"""Build the course as a static website: ``python book/build.py`` (or ``make book``), then open
``book/_build/html/index.html`` in a browser. Nothing is executed and nothing is downloaded.

The landing page is the README's introduction (up to "Using tfa_core") followed by the course's
table of notebooks; then a page per notebook in reading order, with its saved outputs, figures and
the widgets' figures. Sphinx with MyST-NB and the book theme builds it offline (Jupyter Book 2's
builder fetches its site theme from the network when it builds).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
sys.path.insert(0, str(BOOK))

from static_outputs import fix  # noqa: E402 -- beside this file


def landing_page(notebooks: list[Path]) -> str:
    """The README's introduction, then the course table with a link to each notebook's page."""
    readme = (ROOT / "README.md").read_text()
    introduction = readme.split("\n## Using `tfa_core`", 1)[0].rstrip()
    # links to the README's later sections: the book's landing page ends before them (plain text instead)
    introduction = re.sub(r"\[([^\]]+)\]\(#(?!the-course\))[^)]*\)", r"\1", introduction)
    course = (ROOT / "course" / "README.md").read_text()
    table = "\n".join(line for line in course.splitlines() if line.startswith("|"))
    for path in notebooks:
        table = table.replace(f"| `{path.stem}` |", f"| [{path.stem}]({path.stem}.ipynb) |")
    toctree = "\n".join(path.name for path in notebooks)
    return (f"{introduction}\n\n## The course\n\nThe pages that follow are the course's notebooks as saved, "
            f"with their outputs; to run them and move the widgets' controls, clone the repository and "
            f"run `make course`.\n\n{table}\n\n"
            f"```{{toctree}}\n:hidden:\n:caption: The course\n\n{toctree}\n```\n")


def main() -> int:
    source, html = BOOK / "_build" / "src", BOOK / "_build" / "html"
    shutil.rmtree(BOOK / "_build", ignore_errors=True)
    source.mkdir(parents=True)
    notebooks = sorted((ROOT / "course").glob("[0-9][0-9]_*.ipynb"))
    (source / "solutions").mkdir()
    for answers in (ROOT / "solutions").glob("*.py"):
        shutil.copy(answers, source / "solutions" / answers.name)
    for path in notebooks:
        notebook = json.loads(path.read_text())
        fix(notebook)  # already done in the committed notebooks; a safety net for a freshly saved one
        for cell in notebook["cells"]:  # the reference answers sit beside the pages (download links)
            if cell["cell_type"] == "markdown":
                # a link to the folder itself becomes its text; links to its files, download links
                text = re.sub(r"\[([^\]]+)\]\(\.\./solutions/\)", r"\1", "".join(cell["source"]))
                cell["source"] = text.replace("](../solutions/", "](solutions/")
        (source / path.name).write_text(json.dumps(notebook, ensure_ascii=False))
    (source / "index.md").write_text(landing_page(notebooks))
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-c", str(BOOK),
               str(source), str(html)]
    result = subprocess.run(command)
    if result.returncode == 0:
        pages = len(list(html.glob("*.html"))) - len([p for p in ("genindex.html", "search.html")
                                                      if (html / p).exists()])
        print(f"book: {html / 'index.html'} ({pages} pages)")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
