"""The machine description and the Markdown of docs/BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.harness import REPO


@dataclass
class Section:
    """One benchmark's part of the report."""

    title: str
    measures: str  # the short "what this measures"
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.measures.strip(), ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("| " + " | ".join("---" for _ in self.headers) + " |")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    value = seconds * 1000
    if value < 1:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git_commit() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" (with uncommitted changes)" if dirty else "")


def _version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(extra: dict[str, str] | None = None) -> dict[str, str]:
    import pyvips

    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_gib(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "pyvips": _version("pyvips"),
        "large-image": _version("large-image"),
        "gunicorn": _version("gunicorn"),
        "celery": _version("celery"),
        "tilecast commit": _git_commit(),
        "load average at the start (1/5/15 min)": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    info.update(extra or {})
    return info


def document(
    command: str,
    info: dict[str, str],
    sections: Sequence[Section],
    findings: Sequence[str] = (),
    quick: bool = False,
) -> str:
    lines = [
        "# tilecast benchmarks",
        "",
        "Written by the benchmark command itself; do not edit by hand, run it again:",
        "",
        "```",
        command,
        "```",
        "",
        "It needs `wrk` (it runs `apt-get install -y wrk` when it is missing and it may), "
        "generates its images once into a cache folder (`--image-dir`, default "
        "`~/.cache/tilecast-bench`), starts every process it measures itself (its own "
        "redis-server on a free port, Celery workers, gunicorn) and stops them all at the end. "
        "Side-by-side numbers come from the same run, so read the ratios first: on a shared "
        "or noisy machine absolute numbers move, ratios much less.",
        "",
    ]
    if quick:
        lines += [
            "**Quick run (`--quick`): fewer samples and shorter loads than the full run.**",
            "",
        ]
    lines += ["## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines.append("")
    for section in sections:
        lines += [section.markdown(), ""]
    if findings:
        lines += ["## What the numbers say", ""]
        lines += [f"- {f}" for f in findings]
        lines.append("")
    return "\n".join(lines)


def replace_sections(
    report: str, command: str, info: dict[str, str], sections: Sequence[Section]
) -> str:
    """``report`` with each of ``sections`` (matched by title) replaced by its new run,
    marked as re-run alone; sections not in the report are appended."""
    stamp = (
        f"*Re-run alone with `{command}` on {info.get('date', '?')} "
        f"(tilecast {info.get('tilecast commit', '?')}, load average at the start "
        f"{info.get('load average at the start (1/5/15 min)', '?')}); the machine table above "
        "is the full run's.*"
    )
    for section in sections:
        new = f"## {section.title}\n\n{stamp}\n\n" + section.markdown().split("\n", 2)[2]
        start = report.find(f"## {section.title}\n")
        if start < 0:
            report = report.rstrip("\n") + "\n\n" + new + "\n"
            continue
        end = report.find("\n## ", start + 1)
        end = len(report) if end < 0 else end + 1
        report = report[:start] + new + "\n\n" + report[end:]
    return report
