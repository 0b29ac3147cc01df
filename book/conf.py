"""Sphinx configuration of the course's book: the committed notebooks with their saved outputs, as a
static website that builds and reads without a network (see book/build.py and the README)."""

project = "Token-Factored Transformer with ALiBi"
author = "the tfa_core authors"
extensions = ["myst_nb"]

# The notebooks are shown as saved, never executed: they carry the lesson's outputs.
nb_execution_mode = "off"
# No widget manager from a content-delivery network: a widget shows the figure saved in its display
# data (tfa_core.teaching.widgets.WidgetBox and book/static_outputs.py put it there).
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_merge_streams = True
myst_heading_anchors = 3  # "#the-course" and friends resolve on the landing page

html_theme = "sphinx_book_theme"
html_title = "Token-Factored Transformer with ALiBi"
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,  # the notebooks are in the repository
    "show_navbar_depth": 1,
}
html_context = {"default_mode": "light"}  # no stored mode on a first visit: no console error
html_favicon = "favicon.svg"  # else the browser asks for /favicon.ico and logs a 404
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
# Sphinx loads MathJax from a CDN on pages with maths; the course writes its maths as code, and the
# browser test fails on any request that leaves the machine.
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
