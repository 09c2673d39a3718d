"""The documentation: a README of at most 200 lines that links to the reference in docs/, and every relative link
of them all (to a file, and to a heading within it) leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchor(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces become hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def test_the_readme_is_at_most_200_lines_and_links_every_reference_page() -> None:
    readme = REPO / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= 200
    linked = {target.split("#")[0] for target in links(readme)}
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= linked
    assert {page.name for page in PAGES[1:]} >= {
        "operations.md",
        "configuration.md",
        "local-cloud.md",
        "aws.md",
        "architecture.md",
    }


def test_every_relative_link_leads_to_a_file_and_heading() -> None:
    broken = []
    for page in PAGES:
        for target in links(page):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:: not checked offline
            path, _, fragment = target.partition("#")
            goal = (page.parent / path).resolve() if path else page
            if not goal.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif fragment and goal.suffix == ".md" and fragment not in anchors(goal):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_the_anchor_of_a_heading() -> None:
    assert anchor(" `inv status --json`") == "inv-status---json"
    assert anchor(" Files the tool writes (all git-ignored)") == "files-the-tool-writes-all-git-ignored"
