"""The README's links lead somewhere: every relative link names a file, and every anchor a heading.

The pages in docs/ are checked by `nox -s docs` (`mkdocs build --strict`); the README is not part of
that site, and GitHub renders its links as they are, so they are checked here, with GitHub's way of
making anchors (the site makes them the same way: mkdocs.yml, pymdownx.slugs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")
MAX_LINES = 200


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, each space a hyphen."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found, fence = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (match := re.match(r"#{1,6} (.+)", line)):
            found.add(github_anchor(match.group(1)))
    return found


def relative_links(markdown: str) -> list[str]:
    return [t for t in LINK.findall(markdown) if not re.match(r"[a-z]+:", t)]


def test_github_anchor_matches_githubs_own() -> None:
    assert github_anchor("Local mode: `nox -s dev`") == "local-mode-nox--s-dev"
    assert (
        github_anchor("Who may do what: users, roles, tokens, TLS")
        == "who-may-do-what-users-roles-tokens-tls"
    )


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("target", sorted(set(relative_links(README.read_text()))))
def test_each_readme_link_leads_to_a_file_and_heading(target: str) -> None:
    path, _, anchor = target.partition("#")
    file = (README.parent / path) if path else README
    assert file.is_file(), f"README links to {target}, but {file.relative_to(ROOT)} does not exist"
    if anchor:
        assert anchor in anchors(file.read_text()), f"README links to {target}: no such heading there"


def test_a_broken_link_is_found() -> None:
    # The checks above are only worth something if they catch what they look for.
    markdown = "# Title\n[a](docs/auth.md#tls) [b](docs/nope.md) [c](https://example.org)\n"
    links = relative_links(markdown)
    assert links == ["docs/auth.md#tls", "docs/nope.md"]
    assert not (ROOT / "docs/nope.md").is_file()
    assert "tls" in anchors((ROOT / "docs/auth.md").read_text())
    assert "no-such-heading" not in anchors((ROOT / "docs/auth.md").read_text())
