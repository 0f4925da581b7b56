"""The documentation site builds strictly: every page of the navigation exists, every link and anchor resolves.

`mkdocs build --strict` (MkDocs with the Material theme, `mkdocs.yml`) into a temporary folder; and the
same build of a copy with one broken link must fail, so "strict" is shown to mean something.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = ROOT / ".venv" / "bin" / "mkdocs"
DIAGRAMS = {"insights.md", "state-and-resume.md", "scale-out.md"}  # report runs, where state lives, shards


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    for page in DIAGRAMS:
        html = (tmp_path / "site" / page.removesuffix(".md") / "index.html").read_text()
        assert '<pre class="mermaid">' in html, page


def test_every_page_starts_with_a_title_and_the_nav_names_every_page_of_this_issue() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.Loader)  # our own file; it has !!python tags
    named = set(re.findall(r"[\w-]+\.md", str(config["nav"])))
    assert {*DIAGRAMS, "index.md", "streams.md", "settings.md", "errors-and-retries.md", "troubleshooting.md"} <= named
    assert {"gcs-backup.md", "sandbox.md", "performance.md", "development.md"} <= named
    for page in named:
        assert (ROOT / "docs" / page).read_text().startswith("# "), page


def streams_table(page: Path) -> dict[str, list[str]]:
    """The streams table of a page by stream name: [edge, key, replication] (the notes may differ)."""
    lines = page.read_text().splitlines()
    start = lines.index("| stream | Graph API edge | key | replication | notes |") + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0]] = cells[1:4]
    return rows


def test_the_docs_streams_table_says_what_the_readmes_says() -> None:
    """The README's table is checked against the catalog (tests/test_readme_coverage.py); the docs' must match it."""
    readme, docs = streams_table(ROOT / "README.md"), streams_table(ROOT / "docs" / "streams.md")
    assert list(docs) == list(readme)
    for stream, cells in readme.items():
        edge, key, replication = docs[stream]
        assert (edge.startswith(cells[0]), key, replication.startswith(cells[2])) == (True, cells[1], True), stream


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy2(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr
