"""docs/ARCHITECTURE.md names only things that exist: every file or folder path it
quotes, every module it names under ``tilecast.``, and the import-linter contracts it
counts. A file moved or renamed fails here, so the newcomer's map stays true."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DOCUMENT = REPO / "docs" / "ARCHITECTURE.md"
# `api/miss/dispatch.py`, `api/routes/`, `tilecast/up.py`, `pyproject.toml`, `deploy/`...
PATH = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|md|toml|txt|yml|yaml)|(?:[\w.-]+/)+)`")
# `tilecast.api`, `tilecast.common`... (not task names such as `tilecast.render_tile`)
MODULE = re.compile(r"`(tilecast\.(?:api|common|workers)(?:\.\w+)*)`")


def quoted(pattern: re.Pattern[str]) -> list[str]:
    return sorted(set(pattern.findall(DOCUMENT.read_text(encoding="utf-8"))))


def test_the_document_is_linked_from_the_readme() -> None:
    assert "(docs/ARCHITECTURE.md)" in (REPO / "README.md").read_text(encoding="utf-8")


def test_every_path_it_names_exists() -> None:
    paths = quoted(PATH)
    assert len(paths) > 30  # the pattern still finds what the document names
    missing = [path for path in paths if not (REPO / path).exists()]
    assert missing == []


def test_every_module_it_names_imports() -> None:
    modules = quoted(MODULE)
    assert {"tilecast.api", "tilecast.common", "tilecast.workers"} <= set(modules)
    assert [name for name in modules if importlib.util.find_spec(name) is None] == []


def test_it_counts_the_import_contracts_there_are() -> None:
    with (REPO / "pyproject.toml").open("rb") as stream:
        contracts = tomllib.load(stream)["tool"]["importlinter"]["contracts"]
    text = DOCUMENT.read_text(encoding="utf-8")
    words = {3: "three", 4: "four", 5: "five", 6: "six"}
    assert f"holds these as {words[len(contracts)]} contracts" in text
    section = text.split("holds these as", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\d\. ", section, flags=re.MULTILINE)
    assert len(listed) == len(contracts)
