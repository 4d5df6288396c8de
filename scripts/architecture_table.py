"""The module tables of docs/architecture.md, made from the source: one row per module and the
first line of its docstring (or of its leading comment, for C and sh). Sizes are left out: they
change with every edit, and tests/test_layout.py holds every module under its limit.

    python3 -m scripts.architecture_table          # print the tables
    python3 -m scripts.architecture_table --write  # put them into docs/architecture.md

tests/test_docs.py requires the page to hold exactly what this prints.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
SOURCES = (".py", ".c", ".h", ".sh")
START = "<!-- module tables: python3 -m scripts.architecture_table --write -->"
END = "<!-- end of module tables -->"
# Heading -> the top-level names under podcap/ it holds (see tests/test_layout.py).
GROUPS = {
    "The floor (both wings may use it)": (
        "__init__", "__main__", "errors", "pcapfile", "sidecar", "tshark", "version",
    ),
    "Acquire: locate -> reach -> capture (and netns)": ("locate", "reach", "capture", "netns"),
    "Analyze: decode -> filter -> flows -> analysis -> reports -> render": (
        "decode", "dfilter", "flows", "analysis", "reports", "snat", "path", "render", "dataset",
    ),
    "The edge: the command line and diagnose (both wings at once)": ("cli", "diagnosis"),
}  # fmt: skip


def first_line(path: Path) -> str:
    """What the module says it is for: its docstring's first line, or its leading comment's."""
    text = path.read_text()
    if path.suffix == ".py":
        return (ast.get_docstring(ast.parse(text)) or "").splitlines()[0].strip()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#!"):
            continue
        return line.removeprefix("/*").removeprefix("#").strip()
    return ""


def modules(top: str) -> list[Path]:
    base = ROOT / "podcap"
    single = [base / f"{top}.py"]
    if single[0].is_file():
        return single
    paths = (p for p in (base / top).rglob("*") if p.suffix in SOURCES)
    return sorted(p for p in paths if "__pycache__" not in p.parts)


def tables() -> str:
    parts = []
    for heading, tops in GROUPS.items():
        rows = [f"### {heading}", "", "| module | what it is for |", "|---|---|"]
        for top in tops:
            for path in modules(top):
                what = first_line(path).replace("|", "\\|")
                rows.append(f"| `{path.relative_to(ROOT)}` | {what} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def page_with_tables(page: str) -> str:
    before, _, rest = page.partition(START)
    _, _, after = rest.partition(END)
    return f"{before}{START}\n\n{tables()}\n\n{END}{after}"


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        PAGE.write_text(page_with_tables(PAGE.read_text()))
    else:
        print(tables())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
