"""The documentation holds together: every figure of the findings table in docs/RESULTS.md, and every interval of its
Verdicts table, appears verbatim in the page it links to, and every relative link in README.md, docs/*.md and
docs/results/*.md reaches an existing file (and, for a Markdown file, an existing heading)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "results").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# a number, optionally followed by its bracketed interval: "0.9932", "7.5e-06", "14.6 [14.1, 14.7]"
FIGURE = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?: \[[^\]]*\])?")


def _squash(text: str) -> str:
    """Whitespace runs as one space, so that a figure wrapped across lines still matches."""
    return " ".join(text.split())


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^(    |\t).*$", "", page.read_text(), flags=re.M)  # indented code is not a heading
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def _links(page: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", page.read_text())  # links inside code spans are not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]  # http:, https:, mailto:


def findings() -> list[tuple[str, str, str]]:
    """(claim, figure cell, link target) of each row of the findings table in docs/RESULTS.md."""
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    table = text.split("\n| claim | figure [95% CI] | where | section |\n", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[1:]:  # after the |---| row
        claim, figure, _, section = (c.strip() for c in line.strip().strip("|").split(" | "))
        target = LINK.search(section)
        assert target, f"no link in the section cell of the finding '{claim}'"
        rows.append((claim, figure, target.group(1)))
    return rows


def verdicts() -> list[tuple[str, str, str]]:
    """(environment and algorithm, the row's figure cells joined, link target) of each row of the Verdicts table."""
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    table = text.split("\n| environment | algorithm, budget |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:  # after the rest of the header and the |---| row
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        target = LINK.search(cells[-1])
        assert target, f"no link in the section cell of the verdict '{cells[0]}'"
        rows.append((f"{cells[0]}, {cells[1]}", " ".join(cells[4:8]), target.group(1)))
    return rows


@pytest.mark.parametrize("row,figures,target", verdicts(), ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_verdict_figures_appear_in_linked_section(row: str, figures: str, target: str):
    """Issue 18: the Verdicts table's intervals and probabilities are those of the section's tables."""
    path, _, anchor = target.partition("#")
    page = ROOT / "docs" / path
    assert anchor in _anchors(page), f"{row}: {page.name} has no heading #{anchor}"
    text = _squash(page.read_text())
    found = [f for f in FIGURE.findall(figures) if "[" in f]
    assert found, f"{row}: no interval in the verdict"
    missing = [f for f in found if _squash(f) not in text]
    assert not missing, f"{row}: {missing} not in {page.relative_to(ROOT)}"


def test_findings_table_has_rows():
    rows = findings()
    assert len(rows) >= 10
    assert all(FIGURE.findall(figure) for _, figure, _ in rows), "a finding without a figure"


@pytest.mark.parametrize("claim,figure,target", findings(), ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_finding_figures_appear_in_linked_section(claim: str, figure: str, target: str):
    path, _, anchor = target.partition("#")
    page = ROOT / "docs" / path
    assert page.is_file(), f"{claim}: {target} is not a file"
    assert anchor in _anchors(page), f"{claim}: {page.name} has no heading #{anchor}"
    text = _squash(page.read_text())
    missing = [f for f in FIGURE.findall(figure) if _squash(f) not in text]
    assert not missing, f"{claim}: {missing} not in {page.relative_to(ROOT)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def _scanned() -> list[Path]:
    skip = {".git", ".venv", "runs", "data", "node_modules", "__pycache__"}
    return [
        p
        for p in sorted(ROOT.rglob("*"))
        if p.suffix in (".py", ".md", ".yaml", ".sh", ".toml") and not skip & set(p.relative_to(ROOT).parts)
    ]


def test_no_design_document_outside_the_repository():
    """Code, configs, tests and docs cite docs/DESIGN.md (inside docs/: DESIGN.md), never a file beside the checkout."""
    assert (ROOT / "docs" / "DESIGN.md").is_file()
    bad: dict[str, list[str]] = {}
    for path in _scanned():
        rel = path.relative_to(ROOT).as_posix()
        if rel == "tests/test_docs.py":
            continue
        allowed = {"docs/DESIGN.md"} | ({"DESIGN.md", "../DESIGN.md"} if rel.startswith("docs/") else set())
        text = path.read_text(errors="replace")
        refs = re.findall(r"(?<![\w/.-])[\w./-]*DESIGN\.md", text) + re.findall(r"\.\./shared/", text)
        wrong = [r for r in refs if r not in allowed]
        if wrong:
            bad[rel] = wrong
    assert not bad, bad


def test_cited_design_sections_exist():
    """Every "DESIGN.md section N" or "section N.M" cited in code, configs, tests and docs is a heading of the file."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    sections = set(re.findall(r"^## Section (\d+):", text, flags=re.M))
    sections |= set(re.findall(r"^### (\d+\.\d+) ", text, flags=re.M))
    cited = {}
    for path in _scanned():
        for n in re.findall(r"DESIGN\.md`{0,2},? section (\d+(?:\.\d+)?)", path.read_text(errors="replace")):
            cited.setdefault(n, path.relative_to(ROOT).as_posix())
    assert cited, "nothing cites docs/DESIGN.md by section"
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert not missing, f"cited sections that docs/DESIGN.md does not have: {missing}"
