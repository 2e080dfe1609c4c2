"""Sphinx configuration of the napari-hrtem documentation.

Build (what ``bash scripts/docs.sh`` runs)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Nothing here reaches the network: no intersphinx mappings, and the example gallery is not executed.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the working tree, not whatever copy of the package happens to be installed.
sys.path.insert(0, str(ROOT / "src"))

import napari_hrtem  # noqa: E402

# -- Project -----------------------------------------------------------------------------------------

project = "napari-hrtem"
author = "the napari-hrtem developers"
copyright = "the napari-hrtem developers, BSD-3-Clause"
release = napari_hrtem.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py"]
language = "en"

# -- autodoc / autosummary / numpydoc ------------------------------------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Docstrings are checked by the project's own tests and review, not by the docs build: no numpydoc
# validation here, so that a style detail of a docstring does not fail ``-W``.
numpydoc_validation_checks = set()

# -- MyST (Markdown pages) ---------------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- sphinx-gallery: the examples are shown, never run -------------------------------------------------
# They simulate focal series and run the networks, which takes minutes; the gallery renders their
# code and text only.

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"(?!)",  # matches no file: nothing is executed
    "plot_gallery": "False",
    "image_scrapers": (),
    "download_all_examples": False,
    "remove_config_comments": True,
    "line_numbers": False,
    "default_thumb_file": str(DOCS / "demo.png"),
}

# -- HTML --------------------------------------------------------------------------------------------------

try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_toc_level": 2,
        "secondary_sidebar_items": ["page-toc"],
    }
except ImportError:  # fall back to furo, then to Sphinx's default theme
    try:
        import furo  # noqa: F401

        html_theme = "furo"
    except ImportError:
        html_theme = "alabaster"

html_title = f"napari-hrtem {release}"
html_logo = None
html_last_updated_fmt = None
html_show_sourcelink = False


# -- The changelog: ../CHANGELOG.md when there is one, otherwise a stub ----------------------------------

CHANGELOG = ROOT / "CHANGELOG.md"


def _changelog_stub(app, docname, source):
    if docname == "changelog" and not CHANGELOG.exists():
        source[0] = "# Changelog\n\nNo `CHANGELOG.md` in this checkout yet.\n"


def setup(app):
    app.connect("source-read", _changelog_stub)
