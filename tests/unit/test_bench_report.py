"""The benchmark report: a subset re-run replaces only its own sections."""

from __future__ import annotations

from tests.bench.report import Section, replace_sections

REPORT = "# t\n\n## Machine\n\nx\n\n## 1. A\n\nold a\n\n## 2. B\n\nold b\n"


def test_a_rerun_replaces_its_section_and_keeps_the_others() -> None:
    section = Section(title="1. A", measures="new a", headers=["h"], rows=[["1"]])
    out = replace_sections(REPORT, "cmd --only a", {"date": "D"}, [section])
    assert "old a" not in out and "new a" in out
    assert "Re-run alone with `cmd --only a` on D" in out
    assert out.endswith("## 2. B\n\nold b\n")
    assert out.index("## 1. A") < out.index("new a") < out.index("## 2. B")


def test_a_section_the_report_lacks_is_appended() -> None:
    section = Section(title="3. C", measures="new c", headers=["h"], rows=[["3"]])
    out = replace_sections(REPORT, "cmd", {}, [section])
    assert out.startswith(REPORT.rstrip("\n"))
    assert out.rstrip().endswith("| 3 |")
