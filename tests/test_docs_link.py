"""The HTML repr of DiffusionClassifier (Jupyter, the docs' gallery) links to its API page."""

import ast
import re
from pathlib import Path

from skdiffusion import DiffusionClassifier

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _conf_value(name):
    """A literal assigned at the top level of docs/conf.py, read without running Sphinx."""
    for node in ast.parse((DOCS / "conf.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == name for target in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"docs/conf.py sets no {name}")


def _api_page():
    """Where docs/api.rst generates DiffusionClassifier's page, relative to the site's root."""
    api = (DOCS / "api.rst").read_text()
    match = re.search(r":toctree: (\S+?)/?\n(?:\s+:\S+:.*\n)*\s*\n\s+DiffusionClassifier\n", api)
    assert match, "docs/api.rst does not generate a page for DiffusionClassifier"
    return f"{match.group(1)}/skdiffusion.DiffusionClassifier.html"


def test_doc_link_is_the_api_page():
    expected = _conf_value("html_baseurl").rstrip("/") + "/" + _api_page()
    assert expected == "https://skdiffusion.readthedocs.io/en/latest/gen_modules/skdiffusion.DiffusionClassifier.html"
    assert DiffusionClassifier()._get_doc_link() == expected


def test_repr_html_contains_the_link():
    expected = DiffusionClassifier()._get_doc_link()
    html = DiffusionClassifier(n_trials=8)._repr_html_()
    # The "?" button of the estimator's box links to the page itself...
    assert f'href="{expected}"' in html
    # ...and each changed parameter's name to its entry on the page.
    assert f'href="{expected}#:~:text=n_trials' in html
