"""The README and docs/ link only to files in the repository: the design contract included."""

from __future__ import annotations

import re

from conftest import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_name_files_inside_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    wrong = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                wrong.append(f"{page.relative_to(ROOT)}: {target}")
    assert wrong == []
    assert "(docs/design.md" in (ROOT / "README.md").read_text(encoding="utf-8")
