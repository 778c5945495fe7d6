"""Every file or image the README (and the docs it links) points to is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def local_targets(markdown: Path) -> list[str]:
    """The relative link targets of a markdown file (no URLs, no in-page anchors), without their anchors."""
    targets = [match.group(1) for match in LINK.finditer(markdown.read_text(encoding="utf-8"))]
    return [target.split("#", 1)[0] for target in targets if not re.match(r"^(https?:|mailto:|#)", target)]


def test_every_file_the_readme_links_exists():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = [f"{document.name}: {target}" for document in documents for target in local_targets(document)
               if not (document.parent / target).exists()]  # fmt: skip
    assert not missing, f"linked but not in the repository: {missing}"


def test_the_link_reader_finds_images_and_files(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("![plot](results/a.png) see [cells](results/cells/) and [web](https://x.org) [top](#top)")
    assert local_targets(page) == ["results/a.png", "results/cells/"]
