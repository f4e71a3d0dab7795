"""The README's layout map is what the packages' docstrings say (tests/layout.py), and
every package and module says what it is for."""

from __future__ import annotations

from layout import ROOT, layout, readme_block


def test_the_readme_layout_is_made_from_the_docstrings():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_block(readme) == layout(), "README layout is stale: run `make layout`"


def test_every_source_path_the_readme_names_exists():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:index|pipeline|tests|bench)/[\w/.-]*(?:\.\w+|/))`", readme))
    missing = sorted(p for p in named if not (ROOT / p.split("::")[0]).exists())
    assert not missing, f"README names paths that do not exist: {missing}"
