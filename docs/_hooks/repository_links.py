"""mkdocs hook: links from docs/ to files elsewhere in the repository (``../datasets/README.md``).

On GitHub and in an editor such links work as they are; the site holds only docs/, so here each one
is checked (a link to a missing file fails the build) and rendered as the file's path in the
repository instead of a dead link.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError

LINK = re.compile(r"\[([^\]]+)\]\((\.\./[^)#\s]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown, page, config, files):
    docs_dir = Path(config["docs_dir"]).resolve()
    repo = docs_dir.parent
    page_dir = (docs_dir / page.file.src_path).parent

    def replace(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        path = (page_dir / target).resolve()
        if docs_dir in path.parents:
            return match.group(0)  # inside docs/: mkdocs checks it
        if not path.exists():
            raise PluginError(f"{page.file.src_path}: link to {target}, which does not exist")
        return f"{text} (`{path.relative_to(repo).as_posix()}` in the repository)"

    return LINK.sub(replace, markdown)
