"""book/references.bib: every entry links to its paper and is cited; every citation has an entry."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIB = ROOT / "book" / "references.bib"
# Entries that cannot link anywhere, and why.
NO_LINK = {"zen_survey": "the survey the book accompanies has no title, date, venue or address"}


def _entries() -> dict[str, str]:
    text = BIB.read_text(encoding="utf-8")
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"@\w+\s*\{\s*([^,\s]+)\s*,", text)]
    return {key: text[s : (starts[i + 1][0] if i + 1 < len(starts) else len(text))] for i, (s, key) in enumerate(starts)}


def _citations() -> dict[str, set[str]]:
    """key -> files citing it, from {cite}`...`, {cite:p}`...`, {cite:t}`...` in book/*.md and the notebooks."""
    sources = {p: p.read_text(encoding="utf-8") for p in (ROOT / "book").glob("*.md")}
    for nb in (ROOT / "chapters").glob("*.ipynb"):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        sources[nb] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    cited: dict[str, set[str]] = {}
    for path, text in sources.items():
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            for key in group.split(","):
                cited.setdefault(key.strip(), set()).add(path.name)
    return cited


def test_every_entry_links_to_the_paper():
    missing = []
    for key, entry in _entries().items():
        if key in NO_LINK:
            continue
        doi = re.search(r"\bdoi\s*=\s*\{10\.\d{4,9}/[^}\s]+\}", entry)
        url = re.search(r"\burl\s*=\s*\{https?://[^}\s]+\}", entry)
        if not (doi or url):
            missing.append(key)
    assert not missing, f"references.bib entries without a doi = {{10....}} or url = {{https://...}}: {missing}"


def test_every_entry_is_cited_and_every_citation_exists():
    entries, cited = _entries(), _citations()
    uncited = sorted(set(entries) - set(cited))
    assert not uncited, f"references.bib entries cited nowhere (cite them or drop them): {uncited}"
    unknown = {k: sorted(v) for k, v in cited.items() if k not in entries}
    assert not unknown, f"citations without an entry in references.bib: {unknown}"
