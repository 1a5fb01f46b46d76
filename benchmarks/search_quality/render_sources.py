"""Render the labelled set's man pages to paged plain text (run once; its output is committed).

    .venv/bin/python benchmarks/search_quality/render_sources.py

Each man page is formatted by man-db and groff exactly as ``man`` shows it on
an 80-column terminal (hyphenation and justification off, so words stay
whole), overstrikes removed with ``col -bx``, and cut into pages of at most
``LINES_PER_PAGE`` lines, preferably at a blank line near the page's end. The
pages are written to ``texts/<material>.txt``, separated by form feeds: the
benchmark draws each of them on one PDF page, so a question's page label is
the same on every machine. Needs man-db and groff (Debian: ``man-db``), and
the packages named in SOURCES.md installed with their manuals.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINES_PER_PAGE = 60
# A page may end up to this many lines early, at a blank line, so a paragraph
# is cut between pages less often (as a typesetter would).
SLACK = 12
WIDTH = 78

MAN_PAGES = {
    "apt-get.de": "/usr/share/man/de/man8/apt-get.8.gz",
    "apt_preferences.de": "/usr/share/man/de/man5/apt_preferences.5.gz",
    "useradd.de": "/usr/share/man/de/man8/useradd.8.gz",
    "man.de": "/usr/share/man/de/man1/man.1.gz",
    "xz.de": "/usr/share/man/de/man1/xz.1.gz",
    "gitcore-tutorial.en": "/usr/share/man/man7/gitcore-tutorial.7.gz",
    "select.en": "/usr/share/man/man7/SELECT.7.gz",
    "signal.en": "/usr/share/man/man7/signal.7.gz",
    "credentials.en": "/usr/share/man/man7/credentials.7.gz",
}


def formatted(source: str) -> list[str]:
    environment = {**os.environ, "MANWIDTH": str(WIDTH), "LC_ALL": "C.UTF-8", "MANPAGER": "cat"}
    shown = subprocess.run(
        ["man", "--no-hyphenation", "--no-justification", "-E", "UTF-8", "-l", source],
        env=environment,
        capture_output=True,
        check=True,
    ).stdout
    plain = subprocess.run(["col", "-bx"], input=shown, capture_output=True, check=True).stdout
    lines = [line.rstrip() for line in plain.decode("utf-8").splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def paged(lines: list[str]) -> list[list[str]]:
    pages: list[list[str]] = []
    while lines:
        if len(lines) <= LINES_PER_PAGE:
            cut = len(lines)
        else:
            blanks = [
                index
                for index in range(LINES_PER_PAGE - SLACK, LINES_PER_PAGE)
                if not lines[index].strip()
            ]
            cut = blanks[-1] if blanks else LINES_PER_PAGE
        page, lines = lines[:cut], lines[cut:]
        while lines and not lines[0].strip():
            lines.pop(0)
        pages.append(page)
    return pages


def main() -> None:
    for name, source in MAN_PAGES.items():
        pages = paged(formatted(source))
        text = "\f".join("\n".join(page) + "\n" for page in pages)
        (HERE / "texts" / f"{name}.txt").write_text(text, encoding="utf-8")
        print(f"{name}: {len(pages)} pages")


if __name__ == "__main__":
    main()
