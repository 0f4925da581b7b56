"""Release-ready (issue 20): one version, a changelog, and three distributions that build and pass `twine check`.

Each distribution (the tap, the sandbox, the guard) is built as a release would build it (`python -m
build`, sdist and wheel, from the tracked files, into a temporary folder) and checked with `twine check
--strict`; their metadata is complete (license, URLs, classifiers, Python versions, a README), and the
tap's wheel holds the tap alone: no sandbox module, every schema file.
"""

from __future__ import annotations

import email
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.packaging import DISTRIBUTIONS, ROOT, build

TAP = ROOT / ".venv" / "bin" / "tap-meta-ads"
REPOSITORY = "https://git.example.com/your-org/tap-meta-ads"  # the placeholder every URL must share


def pyproject_version(folder: Path) -> str:
    match = re.search(r'^version = "([^"]+)"$', (folder / "pyproject.toml").read_text(), re.MULTILINE)
    assert match, folder
    return match[1]


def about() -> dict:
    out = subprocess.run([str(TAP), "--about", "--format=json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_version_has_one_home_and_every_place_reports_it() -> None:
    version = pyproject_version(ROOT)
    printed = subprocess.run([str(TAP), "--version"], capture_output=True, text=True, check=True).stdout
    assert printed.startswith(f"tap-meta-ads v{version},")
    assert about()["version"] == version
    assert metadata.version("tap-meta-ads") == version  # the installed metadata, which the SDK reads
    assert not re.search(r"__version__\s*=", "".join(p.read_text() for p in (ROOT / "tap_meta_ads").glob("*.py")))


def test_the_changelog_keeps_a_changelog_and_its_newest_release_is_the_taps_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/en/1.1.0/" in text
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    releases = headings[1:]
    assert releases, "no released version"
    assert all(date for _, date in releases), "each release has its date"
    assert releases[0][0] == pyproject_version(ROOT)
    versions = [tuple(int(n) for n in v.split(".")) for v, _ in releases]
    assert versions == sorted(versions, reverse=True)
    for name, _ in headings:  # each heading links to its comparison or tag
        assert re.search(rf"^\[{re.escape(name)}\]: {re.escape(REPOSITORY)}/", text, re.MULTILINE), name
    for section in re.findall(r"^### (.+)$", text, re.MULTILINE):
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, section


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """sdist and wheel of each distribution, built once for this module."""
    out = tmp_path_factory.mktemp("dist")
    made = {}
    for name, folder in DISTRIBUTIONS.items():
        target = out / name
        target.mkdir()
        made[name] = build(folder, target)
    return made


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_each_distribution_builds_and_passes_twine_check(built: dict[str, list[Path]], name: str) -> None:
    files = built[name]
    assert sorted(p.suffix for p in files) == [".gz", ".whl"], files
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("PASSED") == 2

    wheel = next(p for p in files if p.suffix == ".whl")
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(meta_name))
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in zf.namelist())
    assert meta["Name"] == name
    assert meta["Version"] == pyproject_version(DISTRIBUTIONS[name])
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert len(meta.get_payload()) > 200, "the README is the long description"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert set(urls) >= {"Homepage", "Documentation", "Repository", "Changelog", "Issues"}
    assert all(u.startswith(REPOSITORY) for u in urls.values()), urls
    classifiers = meta.get_all("Classifier")
    versions = [
        c.rsplit(" :: ", 1)[1] for c in classifiers if re.match(r"Programming Language :: Python :: 3\.\d+$", c)
    ]
    assert versions == about()["supported_python_versions"]  # the SDK's reading of requires-python
    assert "Development Status :: 4 - Beta" in classifiers

    sdist = next(p for p in files if p.suffix == ".gz")
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
    assert any(n.endswith("/LICENSE") for n in names)
    assert any(n.endswith("/pyproject.toml") for n in names)


def test_the_taps_wheel_holds_the_tap_and_no_sandbox(built: dict[str, list[Path]]) -> None:
    wheel = next(p for p in built["tap-meta-ads"] if p.suffix == ".whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"tap_meta_ads"}
    assert not [n for n in names if "sandbox" in n.lower()]
    schemas = {Path(n).name for n in names if n.startswith("tap_meta_ads/schemas/") and n.endswith(".json")}
    assert schemas == {p.name for p in (ROOT / "tap_meta_ads" / "schemas").glob("*.json")}
    assert "tap_meta_ads/py.typed" in names
    assert "tap-meta-ads = tap_meta_ads.tap:main" in entry_points
    sandbox = next(p for p in built["tap-meta-ads-sandbox"] if p.suffix == ".whl")
    with zipfile.ZipFile(sandbox) as zf:
        assert {n.split("/")[0] for n in zf.namelist() if ".dist-info" not in n} == {"tap_meta_ads_sandbox"}


def test_every_place_names_the_same_repository() -> None:
    places = {
        "README.md": (ROOT / "README.md").read_text(),
        "CHANGELOG.md": (ROOT / "CHANGELOG.md").read_text(),
        "mkdocs.yml": (ROOT / "mkdocs.yml").read_text(),
        "hub/extractors/tap-meta-ads.yml": (ROOT / "hub" / "extractors" / "tap-meta-ads.yml").read_text(),
        **{f"{n} pyproject.toml": (f / "pyproject.toml").read_text() for n, f in DISTRIBUTIONS.items()},
    }
    for place, text in places.items():
        hosts = set(re.findall(r"https://git\.[\w.-]+/[\w.-]+/[\w.-]+?(?=\.git|/|\s|\"|$|#|@)", text))
        assert hosts == {REPOSITORY}, place
