"""Deterministic bench corpus: N pages × 40–120 images built from the seed page's lines.

Hosts, captions and front-matter formats vary the way real crawls do (a long tail of hosts
behind a few big platforms, captions with suffixes, boards, hashtags and mojibake), and the
same (seed, N) always gives byte-identical files.

    python -m bench.corpus --pages 1000 --out bench/work/corpus-1000
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

SEED_PAGE = Path(__file__).resolve().parent.parent / "examples" / "pages" / "chair-exercises-upper-back.md"
LINE = re.compile(r"^\[ !\[\]\((?P<img>.*)\)\]\((?P<link>.*)\) (?P<caption>.*)$")

WORDS = (
    "upper back neck shoulder chair seated desk office yoga stretch stretches exercise exercises pain relief "
    "posture mobility strength seniors beginners routine workout gentle daily easy quick thoracic spine core "
    "band resistance home minute guide best simple morning evening release tension flexibility balance"
).split()
AUTHORS = ["Our Writers", "Sam Rivera", "Priya Nair", "Jo Park", "Ana Lima", "Chris Doe", "Mia Wong", None]
TLDS = ["com", "org", "net", "co.uk", "com.au", "de", "fr", "in", "io", "ca"]


def seed_lines() -> list[dict[str, str]]:
    text = SEED_PAGE.read_text("utf-8").split("+++", 2)[2]
    return [m.groupdict() for line in text.splitlines() if (m := LINE.match(line))]


def _front_matter(fmt: str, meta: dict) -> str:
    if fmt == "toml":
        lines = [f"{k} = {json.dumps(v)}" if k != "date" else f"date = {v}" for k, v in meta.items() if v is not None]
        return "+++\n" + "\n".join(lines) + "\n+++\n"
    if fmt == "yaml":
        lines = [f"{k}: {json.dumps(v)}" for k, v in meta.items() if v is not None]
        return "---\n" + "\n".join(lines) + "\n---\n"
    if fmt == "json":
        return json.dumps({k: v for k, v in meta.items() if v is not None}, indent="\t") + "\n\n"
    return ""


def make_page(rng: random.Random, number: int, lines: list[dict[str, str]], hosts: list[str]) -> tuple[str, str]:
    fmt = rng.choices(["toml", "yaml", "json", "none"], weights=[5, 3, 1, 1])[0]
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))).title()
    meta = {
        "title": title,
        "author": rng.choice(AUTHORS),
        "date": f"20{rng.randint(15, 24):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T0{rng.randint(0, 9)}:00:00",
        "tags": rng.sample(WORDS, rng.randint(0, 4)),
    }
    body = [f"# {title}", ""]
    for i in range(rng.randint(40, 120)):
        line = rng.choice(lines)
        img, caption = line["img"], line["caption"]
        roll = rng.random()
        if roll < 0.45:
            # The long tail: the seed's path on another publisher's host.
            host = rng.choice(hosts)
            img = re.sub(r"^https://[^/]+", f"https://{host}", img)
            caption = re.sub(r" (\||-) [^|-]+$", f" | {host.split('.')[-2].title()}", caption)
        if rng.random() < 0.5:
            caption = f"{caption} {rng.choice(WORDS)} {number}-{i}"
        body.append(f"[ ![]({img})]({line['link']}) {caption}")
    return fmt, _front_matter(fmt, meta) + "\n".join(body) + "\n"


def generate(out: Path, pages: int, seed: int = 1234) -> list[Path]:
    """Write `pages` pages under `out` (in subfolders of 500) and return their paths."""
    rng = random.Random(seed)
    lines = seed_lines()
    hosts = [
        f"{rng.choice(['', 'www.', 'cdn.', 'images.', 'blog.'])}{''.join(rng.sample('abcdefghijklmnopqrstuvwxyz', 8))}."
        f"{rng.choice(TLDS)}"
        for _ in range(400)
    ]
    written = []
    for n in range(pages):
        folder = out / f"part-{n // 500:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        _fmt, text = make_page(rng, n, lines, hosts)
        path = folder / f"page-{n:06d}.md"
        path.write_text(text, "utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=Path("bench/work/corpus"))
    opts = parser.parse_args()
    paths = generate(opts.out, opts.pages, opts.seed)
    print(f"{len(paths)} pages in {opts.out}")


if __name__ == "__main__":
    main()
