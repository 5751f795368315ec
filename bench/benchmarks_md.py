"""Shared by the bench scripts: write one "## ..." section of BENCHMARKS.md, leaving the others alone."""

from __future__ import annotations

from pathlib import Path

from segmentation.config import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "BENCHMARKS.md"


def write_section(section: str, text: str, path: Path = BENCHMARKS) -> None:
    """Replace the section starting with the heading ``section`` by ``text`` (appended when absent)."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = old.find(section + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        following = old.find("\n## ", start + len(section))
        new = old[:start] + text + ("" if following < 0 else "\n" + old[following + 1 :])
    path.write_text(new, encoding="utf-8")


def publish(section: str, text: str, *, write: bool) -> None:
    """Print a bench's section, and with ``write`` put it into BENCHMARKS.md."""
    print(text)
    if write:
        write_section(section, text)
