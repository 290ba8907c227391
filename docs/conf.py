"""Sphinx configuration of the skdiffusion documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` from the repository root;
``-D plot_gallery=0`` skips running the gallery's examples. The build needs no network:
the intersphinx inventories are files in ``_inventories/`` and MathJax is copied into the
site by ``sphinx-mathjax-offline``.
"""

import skdiffusion

project = "skdiffusion"
author = "skdiffusion developers"
copyright = "skdiffusion developers"
version = release = skdiffusion.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # MathJax from the package, copied into _static/mathjax: no CDN.
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    # The user guide's figures (``.. plot::`` of the scripts in guide/figures/).
    "matplotlib.sphinxext.plot_directive",
    # figure-mpl: the figures' 2x images (plot_srcset).
    "matplotlib.sphinxext.figmpl_directive",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "_inventories"]

# Where the site is published. DiffusionClassifier's HTML repr (Jupyter, the gallery)
# links to html_baseurl + "gen_modules/skdiffusion.DiffusionClassifier.html", the page
# api.rst generates (``_doc_link_template`` in skdiffusion/_classifier.py; the test
# tests/test_docs_link.py checks that the two agree).
html_baseurl = "https://skdiffusion.readthedocs.io/en/latest/"

autosummary_generate = True
# The class template lists the members itself; numpydoc's own member tables would repeat them.
numpydoc_show_class_members = False
# Link the types in the Parameters and Returns sections; words not listed here or in
# numpydoc's defaults (int, str, None, array-like, ...) stay plain text.
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
# (A name that stands for itself is given as a role: with "all", numpydoc links an alias
# only where its target differs from the word.)
numpydoc_xref_aliases = {
    "ndarray": "numpy.ndarray",
    # Shown as written (numpydoc's default shows "array_like"), so that the links of the
    # HTML repr, which find a parameter by its text, still match.
    "array-like": ":term:`array-like <numpy:array_like>`",
    "nn.Module": "torch.nn.Module",
    "torch.device": ":class:`torch.device`",
    "torch.nn.Module": ":class:`torch.nn.Module`",
    "path-like": ":term:`python:path-like object`",
    "object": ":class:`object`",
    "ValueError": ":exc:`ValueError`",
    "StandardScaler": "sklearn.preprocessing.StandardScaler",
    "DiffusionClassifier": "skdiffusion.DiffusionClassifier",
    "VAEEncoder": "skdiffusion.diffusers.VAEEncoder",
}
# The right sidebar lists a class page's methods as "fit()", not "DiffusionClassifier.fit()".
toc_object_entries_show_parents = "hide"

# Links to other projects' documentation. The inventories are small files kept in the
# repository (docs/_inventories/build.py writes them), so the build never downloads one.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", "_inventories/python.inv"),
    "numpy": ("https://numpy.org/doc/stable/", "_inventories/numpy.inv"),
    "sklearn": ("https://scikit-learn.org/stable/", "_inventories/sklearn.inv"),
    "torch": ("https://docs.pytorch.org/docs/stable/", "_inventories/torch.inv"),
    "joblib": ("https://joblib.readthedocs.io/en/stable/", "_inventories/joblib.inv"),
}

# The guide's figures as PNG, sharp at the column's width; no links to their sources.
plot_formats = [("png", 100)]
plot_srcset = ["2x"]
plot_html_show_formats = False
plot_html_show_source_link = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    # Timings would be written into the source tree as docs/sg_execution_times.rst, a page
    # that loads its table's scripts from CDNs; a build without -q prints them instead.
    "write_computation_times": False,
    # Figures also at twice the resolution, so that they stay sharp at the column's width.
    "image_srcset": ["2x"],
}

html_theme = "pydata_sphinx_theme"
# Short, with the search as an icon: the navbar's eight sections then fit on one line
# down to the width where the theme folds them into a menu.
html_title = "skdiffusion"
html_static_path = ["_static"]
html_css_files = ["skdiffusion.css"]
html_theme_options = {
    "navigation_with_keys": False,
    # Every top-level section in the navbar, none under a "More" dropdown.
    "header_links_before_dropdown": 10,
    "navbar_persistent": ["search-button"],
    "navbar_align": "left",
    # The page's own contents (and a class page's methods) in the right sidebar.
    "show_toc_level": 2,
}


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """Leave out the ``set_*_request`` methods scikit-learn generates for metadata routing."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _describe_denoiser_forward(app, what, name, obj, options, lines):
    """Replace the docstring a denoiser's ``forward`` would inherit from ``torch.nn.Module``.

    torch's says "Should be overridden by all subclasses"; a reader of a denoiser wants the
    contract it implements.
    """
    if what == "method" and name.endswith(".forward") and getattr(obj, "__doc__", None) is None:
        lines[:] = [
            "Predict the noise added to ``x_t``, under the classes ``y``.",
            "",
            "The denoiser contract: ``x_t`` of shape ``(n, *sample_shape)``, integer timesteps",
            "``t`` of shape ``(n,)`` and class indices ``y`` of shape ``(n,)``; returns the",
            "predicted noise, of the shape of ``x_t``. Call the module, ``denoiser(x_t, t, y)``,",
            "rather than this method, so that torch's hooks run.",
        ]


def _drop_empty_section_navigation(app, pagename, templatename, context, doctree):
    """Remove the left sidebar of a top-level page that has no pages under it.

    The theme shows a "Section Navigation" heading on every page of a section; for a
    single-page section (Install, Quickstart, ...) it would be an empty sidebar.
    """
    includes = app.env.toctree_includes
    parents = {child: parent for parent, children in includes.items() for child in children}
    section, seen = pagename, {pagename}
    while parents.get(section) not in (None, app.config.root_doc) and parents[section] not in seen:
        section = parents[section]
        seen.add(section)
    if parents.get(section) is None or not includes.get(section):
        context["sidebars"] = []


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
    app.connect("autodoc-process-docstring", _describe_denoiser_forward)
    # After the theme's own handlers (priority 500), which fill in the sidebars.
    app.connect("html-page-context", _drop_empty_section_navigation, priority=900)
