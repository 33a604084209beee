"""Assemble benchmarks/RESULTS.md from the per-topic files in benchmarks/results/.

Usage: ``python benchmarks/merge_results.py [--check]``. The summary (``00-summary.md``) comes
first; every other file follows with its headings moved down one level. Edit the per-topic
files, not RESULTS.md: ``--check`` (run by the tests) fails when RESULTS.md is not their merge.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["00-summary", "glcm", "synth", "cube", "loader", "models", "infer", "scaling", "demo"]


def merged() -> str:
    """RESULTS.md's text: the per-topic files in order, headings below the summary moved down."""
    files = sorted(
        (HERE / "results").glob("*.md"),
        key=lambda p: (p.stem not in ORDER, ORDER.index(p.stem) if p.stem in ORDER else 0, p.stem),
    )
    parts = []
    for i, path in enumerate(files):
        text = path.read_text().strip()
        if i > 0:
            text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)
        parts.append(text)
    return "\n\n".join(parts) + "\n"


def main() -> None:  # noqa: D103
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only check that RESULTS.md is current")
    target = HERE / "RESULTS.md"
    if p.parse_args().check:
        if target.read_text() != merged():
            sys.exit(f"error: {target} is not the merge of benchmarks/results/*.md; edit those, "
                     "then run python benchmarks/merge_results.py")  # fmt: skip
        return
    target.write_text(merged())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
