"""README and docs point only inside the repository (a fresh clone has nothing beside it):
every relative link and every path named in backquotes that looks like a repo file exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
#: `docs/x.md`, `tests/data/...`: a path the reader is told to open
#: a path that climbs out of the repository, linked or not ("../<folder>/…")
OUTSIDE = re.compile(r"(?<![\w.])\.\./[\w-]+")
NAMED_PATH = re.compile(r"`((?:docs|tests|kiosk|devices|backoffice|kiosk_demo|bench)/[\w./-]+\.(?:md|py|txt|json))`")


def test_no_page_points_outside_the_repository() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert not OUTSIDE.findall(text), (page.name, OUTSIDE.findall(text))
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http(s):, mailto:
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), (page.name, target)
            assert resolved.exists(), (page.name, target)


def test_paths_the_readme_and_docs_name_exist() -> None:
    for page in PAGES:
        for named in NAMED_PATH.findall(page.read_text(encoding="utf-8")):
            assert (ROOT / named).exists(), (page.name, named)


def test_the_readme_leads_to_the_architecture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/architecture.md)" in readme
    assert ". .venv/bin/activate" in readme  # how to put `kiosk` on the PATH
