"""Sphinx configuration of the course website (`make site`, tools/make_site.py).

tools/make_site.py stages the executed notebooks, README and the docs pages into a source
folder and runs Sphinx on it with this folder as the configuration folder (``-c``). The
notebooks are rendered as they were executed: myst-nb never runs them again.
"""

from agkit.course import stamp

project = "agkit"
author = "the agkit authors"
html_title = "agkit · attention guidance, a course"

extensions = [
    "myst_nb",  # notebooks and MyST markdown
    "sphinx-mathjax-offline",  # MathJax served with the site: formulas render without network
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # README's and the docs' "#section" links resolve
nb_execution_mode = "off"  # outputs come from `make course`
nb_merge_streams = True  # one block per cell, not one per print
nb_ipywidgets_js = {}  # no widget scripts from a CDN (the site shows a screenshot instead)

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["agkit.css"]
html_last_updated_fmt = "%Y-%m-%d"
html_theme_options = {
    "repository_url": f"https://github.com/{stamp.REPOSITORY}",
    "repository_branch": stamp.REF,
    "use_repository_button": True,
    "use_download_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navbar_persistent": [],  # the sidebar has the search box; no second one in a top bar
}
