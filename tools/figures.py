"""Draw the figures of the book's front matter with the toolkit's own code.

    python tools/figures.py [--out book/images]

writes ``contrastive_idea.png`` (the landing page's picture, see
``cl_toolkit.figures.draw_idea``) into the output folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "images", help="output folder")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    from cl_toolkit.figures import draw_idea

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "contrastive_idea.png"
    fig = draw_idea()
    fig.savefig(path, dpi=150, metadata={"Software": None})
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
