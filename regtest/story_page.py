"""I/O: write a demo's story as one static HTML page, its SVG pictures inline.

:func:`render_story_page` is pure (steps in, HTML text out, deterministic);
:func:`write_story_page` writes it to a file, and each picture beside it as an ``.svg``. The
page needs nothing else: no scripts, no fonts, no network, so a learner can open it from disk
in any browser. Narration is escaped text; blank lines separate paragraphs. An SVG is inlined
as-is after dropping any XML declaration (which is not allowed inside HTML), so it must come
from a trusted renderer such as :func:`regtest.txgraph_render.render_svg`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

__all__ = ["StoryFiles", "StoryStep", "render_story_page", "write_story_page"]

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>\s*")

_CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#212121;line-height:1.5}
h1{border-bottom:2px solid #1565c0}
section{margin:2.5rem 0}
h2{font-size:1.2rem}
.n{color:#757575;margin-right:.5rem}
figure{margin:1rem 0;overflow-x:auto;border:1px solid #e0e0e0;padding:.5rem}
nav ol{columns:2}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoryStep:
    """One step of the story: a title, narration text, and optionally a picture (SVG text)."""

    title: str
    narration: str = ""
    svg: str | None = None
    caption: str = ""


def _paragraphs(text: str) -> str:
    parts = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join(f"<p>{escape(p)}</p>\n" for p in parts)


def render_story_page(title: str, steps: Sequence[StoryStep], intro: str = "") -> str:
    """The whole page: a title, an optional intro, a table of contents, then each step."""
    toc = "".join(f'<li><a href="#step-{i}">{escape(s.title)}</a></li>'
                  for i, s in enumerate(steps, start=1))
    body: list[str] = []
    for i, step in enumerate(steps, start=1):
        body.append(f'<section id="step-{i}">\n<h2><span class="n">{i}.</span>'
                    f"{escape(step.title)}</h2>\n{_paragraphs(step.narration)}")
        if step.svg is not None:
            caption = (f"<figcaption>{escape(step.caption)}</figcaption>" if step.caption
                       else "")
            body.append(f"<figure>\n{_XML_DECLARATION.sub('', step.svg).strip()}\n"
                        f"{caption}</figure>\n")
        body.append("</section>\n")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{_paragraphs(intro)}"
        f"<nav><ol>{toc}</ol></nav>\n{''.join(body)}</body>\n</html>\n"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoryFiles:
    """What :func:`write_story_page` wrote: the page and each picture beside it."""

    page: Path
    pictures: tuple[Path, ...]


def write_story_page(path: Path, title: str, steps: Sequence[StoryStep],
                     intro: str = "") -> StoryFiles:
    """Write :func:`render_story_page` to ``path`` (UTF-8), creating its folder, and each
    step's SVG beside it as ``<page stem>-<step number>.svg`` (for slides and worksheets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_story_page(title, steps, intro), encoding="utf-8")
    pictures: list[Path] = []
    for number, step in enumerate(steps, start=1):
        if step.svg is not None:
            picture = path.with_name(f"{path.stem}-{number:02d}.svg")
            picture.write_text(step.svg, encoding="utf-8")
            pictures.append(picture)
    return StoryFiles(page=path, pictures=tuple(pictures))
