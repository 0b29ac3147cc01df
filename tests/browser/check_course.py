"""The course in a real browser: JupyterLab from the project's environment, Debian's Chromium driven by
Playwright, the way a learner meets the widgets; then the built book, page by page.

    python tests/browser/check_course.py                 # every notebook with a widget, then the book
    python tests/browser/check_course.py --notebooks 03  # one notebook, no book
    python tests/browser/check_course.py --book-only

For each notebook that holds a widget (in a throwaway copy of course/, quick mode, a 1280x900 window
with JupyterLab's file browser open):
- before running: every widget output shows its saved figure or final text, never the widget's Python
  repr, "Loading widget..." or "Error displaying widget";
- Run > Run All Cells from the menu bar, then: no error output, every widget renders as controls;
- every slider's track is measured (at least MIN_TRACK px wide), dragged with the mouse and stepped
  with the arrow keys, and the lens prompt is retyped with the keyboard: after each action the figure
  and the numbers must change (the position slider must follow the new prompt's length);
- the progress bar of a training run ends at 100 %.
Any console error, page error or request that leaves 127.0.0.1 fails the run.

For the book (book/_build/html, from ``make book``): served on 127.0.0.1, every page loads with a clean
console, every image loads, every internal link and its #anchor resolve, nothing is fetched from
elsewhere. Prints what it measured and a closing "N passed, N failed" line; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # nothing but this machine answers
WINDOW = {"width": 1280, "height": 900}
MIN_TRACK = 100  # px: the narrowest slider track a learner can still aim at
BAD_TEXTS = ("Loading widget", "Error displaying widget", "model not found", "Box(children=")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class Report:
    """Passed and failed checks, printed as they happen."""

    def __init__(self):
        self.passed, self.failed, self.facts = 0, [], []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
            print(f"  ok   {what}", flush=True)
        else:
            self.failed.append(what)
            print(f"  FAIL {what}", flush=True)
        return ok

    def fact(self, text: str) -> None:
        self.facts.append(text)
        print(f"  --   {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notebooks_with_widgets() -> list[str]:
    """The course notebooks whose saved outputs hold a widget view (the widgets and tqdm's bar)."""
    names = []
    for path in sorted((ROOT / "course").glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(path.read_text())
        if any(WIDGET_VIEW in output.get("data", {}) for cell in notebook["cells"]
               for output in cell.get("outputs", [])):
            names.append(path.name)
    return names


# -- JupyterLab ----------------------------------------------------------------------------------------

class Lab:
    """JupyterLab from this Python environment on a throwaway copy of course/, quick mode, on 127.0.0.1."""

    def __init__(self, workdir: Path):
        self.course = workdir / "course"
        shutil.copytree(ROOT / "course", self.course,
                        ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints"))
        (workdir / "benchmarks").symlink_to(ROOT / "benchmarks")  # 07 reads ../benchmarks/results
        settings = workdir / "settings" / "@jupyterlab"
        for extension, name, values in (
                # every cell in the page, so that every output can be found without scrolling
                ("notebook-extension", "tracker", {"windowingMode": "none"}),
                ("apputils-extension", "notification", {"fetchNews": "false"})):  # no news pop-up
            (settings / extension).mkdir(parents=True)
            (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
        self.port, self.token = free_port(), secrets.token_hex(16)
        pythonpath = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)
        env = dict(os.environ, PYTHONPATH=pythonpath,
                   TFA_QUICK="1", JUPYTERLAB_SETTINGS_DIR=str(workdir / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces"),
                   JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
                   MPLBACKEND="module://matplotlib_inline.backend_inline")
        self.log = open(workdir / "jupyterlab.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.course}",
             "--NotebookNotary.db_file=:memory:", "--LabApp.news_url=",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--LabApp.extension_manager=readonly",
             "--allow-root"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.course)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while True:
            try:
                self.api("GET", "/api/status")
                break
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {self.log.name}") from None
                time.sleep(0.5)

    def api(self, method: str, path: str):
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def watch(page, errors: list[str], origin: str) -> None:
    """Record console errors, page errors and any request that leaves ``origin`` (FLAGS make such a
    request fail: no host name resolves). Listeners only, no request routing: with Playwright's sync
    API a routed request waits until Python next calls Playwright, which stalls JupyterLab."""
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith((origin, "data:", "blob:"))
            else errors.append(f"request outside {origin}: {r.url}"))


def open_notebook(page, lab: Lab, name: str) -> None:
    """Open ``name`` from its URL and wait until its kernel is connected and idle."""
    # a workspace of its own: only this notebook open, the default layout (file browser open)
    page.goto(f"{lab.url}/lab/workspaces/{name[:2]}/tree/{urllib.parse.quote(name)}?token={lab.token}")
    page.locator(".jp-NotebookPanel:visible .jp-Cell").first.wait_for(timeout=90_000)
    deadline = time.time() + 120
    while not any(s["path"] == name and s["kernel"]["execution_state"] == "idle"
                  and s["kernel"]["connections"] for s in lab.api("GET", "/api/sessions")):
        if time.time() > deadline:
            raise TimeoutError(f"the kernel of {name} did not start")
        page.wait_for_timeout(500)  # not time.sleep: the page's events are handled while Playwright waits
    idle = ".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status='idle']"
    page.locator(idle).wait_for(timeout=90_000)
    if not page.locator("#filebrowser").is_visible():  # the default layout: the file browser open
        page.locator(".jp-SideBar [data-id='filebrowser']").click()
    page.locator("#filebrowser").wait_for(state="visible")


def output_texts(page) -> str:
    return page.locator(".jp-NotebookPanel:visible .jp-OutputArea").evaluate_all(
        "nodes => nodes.map(n => n.innerText).join('\\n')")


def run_all(page, timeout: float) -> float:
    """Run > Run All Cells from the menu bar; wait until no cell is queued or running."""
    start = time.perf_counter()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    prompts = page.locator(".jp-NotebookPanel:visible .jp-CodeCell .jp-InputArea-prompt")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-InputArea-prompt')]"
                           ".some(p => p.innerText.includes('*'))", timeout=30_000)
    deadline = time.time() + timeout
    while time.time() < deadline:
        texts = prompts.evaluate_all("nodes => nodes.map(n => n.innerText)")
        idle = ".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status='idle']"
        busy = page.locator(idle).count() == 0
        if not busy and not any("*" in t for t in texts):
            return time.perf_counter() - start
        page.wait_for_timeout(1000)
    raise TimeoutError(f"Run All Cells still running after {timeout:.0f} s")


# -- one widget: measure, drag, step, type -------------------------------------------------------------

def shown(widget) -> tuple[str, str]:
    """What a course widget shows now: its figure's src (a new blob per figure) and its table's HTML."""
    return (widget.locator("img").first.get_attribute("src") or "",
            widget.locator(".widget-html-content").last.inner_html())


def wait_for_change(page, widget, before, timeout=60.0, quiet=1.0) -> tuple[str, str] | None:
    """What the widget shows once both its figure and its table differ from ``before`` and then stay
    the same for ``quiet`` seconds (a drag sends many values; the kernel draws each in turn)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = shown(widget)
        if now[0] != before[0] and now[1] != before[1]:
            settled = time.time()
            while time.time() - settled < quiet and time.time() < deadline:
                page.wait_for_timeout(200)
                latest = shown(widget)
                if latest != now:
                    now, settled = latest, time.time()
            return now
        page.wait_for_timeout(100)
    return None


def handle_state(slider) -> tuple[float, float, float]:
    handle = slider.locator(".noUi-handle")
    return tuple(float(handle.get_attribute(a)) for a in ("aria-valuemin", "aria-valuemax", "aria-valuenow"))


def drag(page, slider) -> None:
    """Press the mouse on the slider's knob and drag it along the track to the far side."""
    low, high, now = handle_state(slider)
    track = slider.locator(".noUi-target").bounding_box()
    knob = slider.locator(".noUi-handle").bounding_box()
    x, y = knob["x"] + knob["width"] / 2, knob["y"] + knob["height"] / 2
    fraction = 0.2 if high > low and (now - low) / (high - low) > 0.5 else 0.8
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], y, steps=12)
    page.mouse.up()


def step(page, slider) -> str:
    """Click the knob, then press an arrow key (towards the middle of the range)."""
    low, high, now = handle_state(slider)
    slider.locator(".noUi-handle").click()
    key = "ArrowLeft" if now >= high else "ArrowRight"
    page.keyboard.press(key)
    return key


def use_widget(page, widget, label: str, report: Report, widths: dict) -> None:
    """Measure every slider of one course widget, then drag it, step it and (the lens) type a prompt."""
    sliders = widget.locator(".widget-hslider")
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        name = slider.locator(".widget-label").first.inner_text().strip()
        width = slider.locator(".noUi-target").bounding_box()["width"]
        widths[f"{label} {name}"] = width
        report.check(width >= MIN_TRACK, f"{label}: slider '{name}' track {width:.0f} px >= {MIN_TRACK} px")
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        name = slider.locator(".widget-label").first.inner_text().strip()
        for action in ("drag", "arrow key"):
            before, value = shown(widget), handle_state(slider)[2]
            if action == "drag":
                drag(page, slider)
                what = "mouse drag"
            else:
                what = step(page, slider)
            after = wait_for_change(page, widget, before)
            report.check(after is not None and handle_state(slider)[2] != value,
                         f"{label}: '{name}' {value:g} -> {handle_state(slider)[2]:g} by {what}: "
                         "figure and numbers changed")
    prompt = widget.locator("textarea")
    if prompt.count():
        text = "JULIET:\nO Romeo, Romeo!"
        before = shown(widget)
        prompt.click()
        page.keyboard.press("Control+A")
        for line_number, line in enumerate(text.split("\n")):
            if line_number:
                page.keyboard.press("Enter")
            page.keyboard.type(line, delay=15)
        page.keyboard.press("Tab")  # the box applies its text when it loses focus
        after = wait_for_change(page, widget, before)
        position = widget.locator(".widget-hslider").filter(has_text="position")
        high = handle_state(position)[1]
        report.check(after is not None and prompt.input_value() == text and high == len(text) - 1,
                     f"{label}: typed a two-line prompt: figure and numbers changed, the position slider "
                     f"ends at {high:g} = its {len(text)} characters, newline included")
        report.check("'!'" in after[1] if after else False,
                     f"{label}: the table reads the new prompt's last character")


def check_notebook(page, lab: Lab, name: str, report: Report, widths: dict, timeout: float) -> None:
    print(f"{name}", flush=True)
    open_notebook(page, lab, name)
    # a widget view's output node holds the view (class jupyter-widgets) or the renderer's message
    outputs = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").filter(
        has=page.locator(":scope > .jupyter-widgets")).or_(
        page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").filter(
            has_text=re.compile("Loading widget|Error displaying widget")))
    texts = output_texts(page)
    report.check(not any(bad in texts for bad in BAD_TEXTS),
                 f"before running: no widget shows as {BAD_TEXTS[0]!r}, an error or its Python repr")
    notebook = json.loads((lab.course / name).read_text())
    widget_cells = [(i, k) for i, cell in enumerate(notebook["cells"])
                    for k, o in enumerate(cell.get("outputs", [])) if WIDGET_VIEW in o.get("data", {})]
    cells = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
    for i, k in widget_cells:
        output = cells.nth(i).locator(".jp-OutputArea-child").nth(k).locator(".jp-OutputArea-output")
        output.scroll_into_view_if_needed()
        text, pictures = output.inner_text(), output.locator("img").count()
        report.check(pictures == 1 or re.search(r"100%\|█+\|", text) is not None,
                     f"before running, cell {i}'s widget shows its saved figure or final text"
                     f" ({pictures} image, {output.get_attribute('data-mime-type')})")
    seconds = run_all(page, timeout)
    report.fact(f"{name}: Run All Cells took {seconds:.0f} s")
    page.wait_for_timeout(1000)
    errors = page.locator(".jp-NotebookPanel:visible [data-mime-type='application/vnd.jupyter.error']")
    report.check(errors.count() == 0,
                 "no error output" + (f": {errors.first.inner_text()[:500]}" if errors.count() else ""))
    stderr = page.locator(".jp-NotebookPanel:visible [data-mime-type='application/vnd.jupyter.stderr']")
    for i in range(stderr.count()):
        report.fact(f"stderr output (not an error): {stderr.nth(i).inner_text()[:200]!r}")
    # the course's own widgets carry their figure (image/png); progress bars of the full lesson's training
    # runs are saved too, but quick mode (this test) trains some models without a bar
    course_widgets = [(i, k) for i, k in widget_cells
                      if "image/png" in notebook["cells"][i]["outputs"][k]["data"]]
    report.check(len(course_widgets) <= outputs.count() <= len(widget_cells),
                 f"{outputs.count()} widget views after Run All: every one of the {len(course_widgets)} "
                 f"saved course widgets, and at most the {len(widget_cells)} saved widget outputs")
    for i in range(outputs.count()):
        widget = outputs.nth(i)
        widget.scroll_into_view_if_needed()
        page.wait_for_function("w => !w.innerText.includes('Loading widget')", arg=widget.element_handle(),
                               timeout=30_000)
        text = widget.inner_text()
        rendered = widget.locator(".widget-hslider, .widget-hprogress, textarea").count() > 0
        report.check(rendered and not any(bad in text for bad in BAD_TEXTS),
                     f"widget {i + 1} renders as controls "
                     f"({text.strip().splitlines()[0][:40] if text.strip() else ''!r})")
        if widget.locator(".widget-hprogress").count():
            report.check("100%" in text, f"the progress bar ends at 100%: {text.strip()[:80]!r}")
            continue
        descriptions = widget.locator(".widget-label").all_inner_texts()
        label = f"{name[:2]} {'/'.join([d.strip() for d in descriptions if d.strip()][:3])}"
        use_widget(page, widget, label, report, widths)
    lab.shut_down_kernels()


# -- the book ------------------------------------------------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def check_book(browser, site: Path, report: Report) -> None:
    print(f"book: {site}", flush=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    context = browser.new_context(viewport=WINDOW)
    page = context.new_page()
    errors: list[str] = []
    watch(page, errors, origin)
    bad_responses: list[str] = []
    page.on("response", lambda r: bad_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    queue, seen, anchors_wanted = [f"{origin}/index.html", f"{origin}/search.html?q=ALiBi"], set(), []
    pages = images = links = 0
    try:
        while queue:
            url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            errors.clear()
            response = page.goto(url, wait_until="load")
            pages += 1
            ok = response is not None and response.ok
            # every image, lazy or not, must arrive and decode
            page.evaluate("() => document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=30_000)
            broken = page.evaluate("() => [...document.images].filter(i => !i.naturalWidth).map(i => i.src)")
            count = page.evaluate("() => document.images.length")
            images += count
            hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
            ids = set(page.evaluate("() => [...document.querySelectorAll('[id]')].map(e => e.id)"))
            for href in hrefs:
                if not href.startswith(origin):
                    continue  # external links are allowed on a page, never fetched
                links += 1
                target, _, anchor = href.partition("#")
                if target == url and anchor:
                    anchors_wanted.append((url, anchor, url))
                elif anchor:
                    anchors_wanted.append((target, anchor, url))
                if target.endswith(".html") or target.endswith("/"):
                    queue.append(target if target.endswith(".html") else target + "index.html")
            name = url.removeprefix(origin)
            text = page.locator("body").inner_text()
            shown_badly = [bad for bad in BAD_TEXTS if bad in text]
            report.check(not shown_badly,
                         f"book {name}: no widget shown as {shown_badly or 'its repr or a message'}")
            report.check(ok and not broken and not errors,
                         f"book {name}: loads, {count} images load, console clean"
                         + (f" -- broken {broken}" if broken else "") + (f" -- {errors}" if errors else ""))
            seen_ids = getattr(check_book, "ids", {})
            seen_ids[url] = ids
            check_book.ids = seen_ids
        # every link target was crawled; each #anchor exists on its page
        missing = [f"{source} -> {target}#{anchor}" for target, anchor, source in anchors_wanted
                   if anchor and anchor not in check_book.ids.get(target, set())]
        report.check(not missing, f"book: all {links} internal links resolve, with their anchors"
                     + (f" -- missing: {missing[:10]}" if missing else ""))
        report.check(not bad_responses, "book: no request answered 4xx/5xx"
                     + (f" -- {bad_responses[:10]}" if bad_responses else ""))
        report.fact(f"book: {pages} pages, {images} images, {links} internal links")
    finally:
        context.close()
        server.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="*",
                        help="notebook numbers (default: every notebook with a widget)")
    parser.add_argument("--book", type=Path, default=ROOT / "book" / "_build" / "html",
                        help="the built book")
    parser.add_argument("--book-only", action="store_true")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds allowed for one notebook's Run All")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway folder (JupyterLab's log)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    names = [] if args.book_only else notebooks_with_widgets()
    if args.notebooks:
        names = [n for n in names if n[:2] in {x.zfill(2) for x in args.notebooks}]
    report, widths = Report(), {}
    start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="tfa-browser-"))
    lab = None
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            if names:
                lab = Lab(workdir)
                context = browser.new_context(viewport=WINDOW)
                page = context.new_page()
                errors: list[str] = []
                watch(page, errors, lab.url)
                for name in names:
                    errors.clear()
                    try:
                        check_notebook(page, lab, name, report, widths, args.timeout)
                    except Exception as error:  # one notebook's failure must not hide the others'
                        report.check(False, f"{name}: {type(error).__name__}: {str(error)[:600]}")
                        page.screenshot(path=str(workdir / f"{name}.png"), full_page=True)
                        args.keep = True
                    report.check(not errors,
                                 f"{name}: browser console clean" + (f" -- {errors[:5]}" if errors else ""))
                context.close()
            if not args.notebooks:
                if args.book.is_dir():
                    check_book(browser, args.book, report)
                else:
                    report.check(False, f"no built book at {args.book}: run make book first")
            browser.close()
    finally:
        if lab is not None:
            lab.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if widths:
        narrowest = min(widths, key=widths.get)
        print("slider tracks (px) at 1280x900 with the file browser open: "
              + ", ".join(f"{k} {v:.0f}" for k, v in widths.items()))
        print(f"narrowest: {narrowest} {widths[narrowest]:.0f} px")
    print(f"browser test took {time.perf_counter() - start:.0f} s")
    for failure in report.failed:
        print(f"FAILED: {failure}")
    print(f"{report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
