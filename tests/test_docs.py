"""The manual stays true and readable: generated reference pages match the code, `mkdocs build
--strict` passes (no broken link, no page outside the nav), the README stays short, no paragraph
runs over 120 words, and nothing points to a file the repository does not hold."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_PARAGRAPH_WORDS = 120
MAX_README_LINES = 150


def _pages() -> list[Path]:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "benchmarks").glob("*.md"))]
    return pages + sorted(p for p in (ROOT / "docs").rglob("*.md") if "benchmarks" not in p.relative_to(ROOT).parts)


def _paragraphs(text: str) -> list[str]:
    """Prose paragraphs: code blocks, tables, headings and list-free blank-line runs left out."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if not line.lstrip().startswith(("|", "#"))]
        # each list item is its own paragraph
        for item in re.split(r"\n(?=\s*(?:[-*+]|\d+\.)\s)", "\n".join(lines)):
            if item.strip():
                paragraphs.append(" ".join(item.split()))
    return paragraphs


def test_the_reference_pages_are_what_the_code_gives():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_reference.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines < MAX_README_LINES, f"README.md has {lines} lines"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_paragraph_runs_over_120_words(page):
    long = [p[:80] + "..." for p in _paragraphs(page.read_text()) if len(p.split()) > MAX_PARAGRAPH_WORDS]
    assert not long, long


def test_the_paragraph_counter_sees_prose_not_code_or_tables():
    text = "# Title\n\n" + "word " * 130 + "\n\n```\n" + "code " * 200 + "\n```\n\n| a |\n|---|\n| " + "x " * 200 + "|\n"
    text += "\n- " + "item " * 70 + "\n  " + "more " * 10 + "\n- " + "next " * 60 + "\n"
    counts = [len(p.split()) for p in _paragraphs(text)]
    assert counts == [130, 81, 61]


def _tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_nothing_points_to_the_design_notes_the_repository_does_not_hold():
    names = ("DESIGN" + ".md", "METHODS" + ".md")  # spelled apart so this file does not match itself
    hits = []
    for name in _tracked_files():
        path = ROOT / name
        if path.suffix in (".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg") or name == "Makefile":
            text = path.read_text(errors="replace")
            hits += [f"{name}: {n}" for n in names if n in text]
    assert not hits, hits


def test_every_relative_link_in_the_markdown_resolves():
    broken = []
    for page in _pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", page.read_text(), flags=re.S)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
