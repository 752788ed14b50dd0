"""Sphinx configuration of dask-hpc's documentation: `make docs` (warnings are errors).

The tools are dask's own: the PyData theme (dask's docs use it, through
dask-sphinx-theme), sphinx-click for the CLI reference generated from the
commands, autodoc with napoleon for the API from the docstrings, and MyST to write
the pages in Markdown.
"""

from importlib.metadata import version as _version

project = "dask-hpc"
author = "dask-hpc developers"
copyright = "2026, dask-hpc developers"
release = _version("dask-hpc")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx_click",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
# No network in CI: the links to other projects' docs stay plain text.
intersphinx_mapping: dict[str, tuple[str, None]] = {}

html_theme = "pydata_sphinx_theme"
html_title = "dask-hpc"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
