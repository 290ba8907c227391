"""Sphinx configuration of the skdiffusion documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` from the repository root.
"""

import skdiffusion

project = "skdiffusion"
author = "skdiffusion developers"
copyright = "skdiffusion developers"
version = release = skdiffusion.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = ["_build"]

autosummary_generate = True
# The class template lists the members itself; numpydoc's own member tables would repeat them.
numpydoc_show_class_members = False
# No intersphinx: the build must not need the network.

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    # Timings would be written into the source tree as docs/sg_execution_times.rst.
    "write_computation_times": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skdiffusion {release}"
html_theme_options = {"navigation_with_keys": False}


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """Leave out the ``set_*_request`` methods scikit-learn generates for metadata routing."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
