"""The README's layout section, made from the packages' and modules' docstrings.

``python tests/layout.py`` prints it, ``python tests/layout.py --write`` puts it into
README.md between its markers (``make layout``); ``tests/test_layout.py`` fails when the
README's copy differs, so the map cannot go stale: edit the docstrings, then regenerate.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "index", "bench")
START = "<!-- layout: made by `make layout` from the docstrings; edit those, not this -->"
END = "<!-- /layout -->"


def first_sentence(path: Path) -> str | None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not doc:
        return None
    text = " ".join(doc.split("\n\n", 1)[0].split())
    text = re.sub(r":\w+:`~?\.?([^`]+)`", r"``\1``", text).replace("``", "`")
    match = re.match(r"(.+?[.!?])(?:\s|$)", text)
    return match.group(1) if match else text


def _entries(folder: Path, depth: int) -> list[str]:
    lines = []
    for child in sorted(folder.iterdir(), key=lambda p: (p.is_dir(), p.name)):
        if child.name.startswith("__") and child.name != "__main__.py":
            continue
        if child.is_dir() and (child / "__init__.py").exists():
            lines.append(_line(child, child / "__init__.py", depth, f"{child.name}/"))
            lines.extend(_entries(child, depth + 1))
        elif child.suffix == ".py":
            lines.append(_line(child, child, depth, child.name))
    return lines


def _line(path: Path, source: Path, depth: int, name: str) -> str:
    sentence = first_sentence(source)
    if sentence is None:
        raise SystemExit(f"{source.relative_to(ROOT)} has no docstring: say in one sentence what it is for")
    return f"{'  ' * depth}- `{name}` {sentence}"


def layout() -> str:
    lines = []
    for package in PACKAGES:
        lines.append(_line(ROOT / package, ROOT / package / "__init__.py", 0, f"{package}/"))
        lines.extend(_entries(ROOT / package, 1))
    return "\n".join(lines) + "\n"


def readme_block(readme: str) -> str:
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write(readme_path: Path = ROOT / "README.md") -> None:
    readme = readme_path.read_text(encoding="utf-8")
    head, rest = readme.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme_path.write_text(f"{head}{START}\n{layout()}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.stdout.write(layout())
