"""Assemble benchmarks/RESULTS.md from the per-topic files in benchmarks/results/.

Usage: ``python benchmarks/merge_results.py``. The summary (``00-summary.md``) comes first;
every other file follows with its headings moved down one level.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["00-summary", "glcm", "synth", "cube", "loader", "models", "infer", "scaling", "demo"]


def main() -> None:
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
    (HERE / "RESULTS.md").write_text("\n\n".join(parts) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'} from {len(files)} files")


if __name__ == "__main__":
    main()
