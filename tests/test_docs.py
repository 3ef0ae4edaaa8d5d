"""The user documents hold together: every link resolves, every cited result file exists.

Covers README.md, CHANGELOG.md and every Markdown file under docs/ (docs/dev/ included):

* every relative Markdown link ``[text](path#anchor)`` points at a file or directory that exists,
  and its ``#anchor``, if any, at a heading of the target Markdown file;
* every cited result path (``docs/results/...`` or ``docs/dev/results/...``, a glob allowed)
  names at least one existing file;
* the README names no commit: a user's document must not depend on the project's history.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?")
RESULT_PATH = re.compile(r"docs/(?:dev/)?results/[A-Za-z0-9_.*?/\-]*[A-Za-z0-9_*/]")
INLINE_CODE = re.compile(r"`[^`]*`")
# A commit-like hash: 7 to 40 hexadecimal characters with at least one digit and one letter.
COMMIT = re.compile(
    r"(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![0-9A-Za-z])"
)


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).lower()
    kept = "".join(
        ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N", "M")
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file's headings define (duplicates numbered as GitHub does)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _prose_lines(path.read_text("utf-8")):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of the Markdown links and images outside code (inline or fenced)."""
    targets: list[str] = []
    for line in _prose_lines(path.read_text("utf-8")):
        line = INLINE_CODE.sub("", line)
        targets += LINK.findall(line) + IMAGE.findall(line)
    return targets


def broken_links(path: Path) -> list[str]:
    """Relative links of one document whose file, directory or anchor does not exist."""
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.\-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto: ...
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file or directory")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.name}")
    return broken


def missing_results(path: Path) -> list[str]:
    """Cited result paths (relative to the repository root) that name no existing file."""
    missing = []
    for cited in sorted(set(RESULT_PATH.findall(path.read_text("utf-8")))):
        cited = cited.rstrip(".")
        if not any(ROOT.glob(cited.rstrip("/"))):
            missing.append(cited)
    return missing


def commit_hashes(text: str) -> list[str]:
    """Commit-like hexadecimal strings in a text."""
    return COMMIT.findall(text)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_relative_links_resolve(doc: Path) -> None:
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_cited_results_exist(doc: Path) -> None:
    assert missing_results(doc) == []


def test_readme_names_no_commit() -> None:
    assert commit_hashes((ROOT / "README.md").read_text("utf-8")) == []


def test_every_result_file_is_cited() -> None:
    """docs/results/ holds only what a user document (README, docs/*.md) cites."""
    user_docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    cited = "\n".join(d.read_text("utf-8") for d in user_docs)
    # A cited file or glob covers what it matches; a cited subdirectory (docs/results/rl/) covers
    # what is in it; "docs/results/" itself covers nothing.
    patterns = {c.rstrip("./") for c in RESULT_PATH.findall(cited)} - {"docs/results"}
    uncited = []
    for result in sorted((ROOT / "docs" / "results").rglob("*.json")):
        rel = result.relative_to(ROOT)
        folders = {str(parent) for parent in rel.parents}
        if not any(rel.match(p) or p in folders for p in patterns):
            uncited.append(str(rel))
    assert uncited == []


def test_the_checks_bite(tmp_path: Path) -> None:
    """Each check finds what it is for, so a green run means something."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\n[ok](doc.md#title) [gone](missing.md) [bad](doc.md#nope)\n"
        "```\n[in code](missing-too.md)\n```\n"
        "See `docs/results/no_such_file.json` and docs/results/reproduce_paper.json.\n",
        "utf-8",
    )
    assert [b.split(":")[0] for b in broken_links(doc)] == ["missing.md", "doc.md#nope"]
    assert missing_results(doc) == ["docs/results/no_such_file.json"]
    assert commit_hashes("against 48371cd (commit da4246d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6)") == [
        "48371cd",
        "da4246d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6",
    ]
    assert commit_hashes("seeds 2147483648, 1600 E cells, 274 520 mV·ms, a deadbeef") == []
    assert _slug("Speed: how fast, and why") == "speed-how-fast-and-why"
    assert _slug("`neuroloop-fit` options") == "neuroloop-fit-options"
