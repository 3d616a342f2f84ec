"""The documentation site: every object in the API reference has a docstring, every page is in the
navigation, and every README link to docs/ names a page that exists. (The build itself, with its
link checks, is ``mkdocs build --strict`` in .ci/run.)"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^::: (\S+)((?:\n    .*)*)", re.MULTILINE)


def _resolve(path: str):
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def _documented_objects():
    """(name, object) for each `::: name` of docs/reference and the public members it shows."""
    for page in sorted((DOCS / "reference").glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text()):
            name, options = match.group(1), match.group(2)
            obj = _resolve(name)
            yield name, obj
            listed = re.findall(r"^\s+- (\w+)$", options, re.MULTILINE)
            if inspect.ismodule(obj):
                members = getattr(obj, "__all__", [])
            elif inspect.isclass(obj):
                members = listed or [m for m in vars(obj) if not m.startswith("_")]
            else:
                members = []
            for member in members:
                if member.startswith("_"):
                    continue
                value = getattr(obj, member)
                if inspect.isfunction(value) or inspect.isclass(value) or isinstance(value, property):
                    yield f"{name}.{member}", value


def test_every_object_in_the_api_reference_has_a_docstring():
    objects = list(_documented_objects())
    assert len(objects) > 40
    missing = sorted(name for name, obj in objects if not (inspect.getdoc(obj) or "").strip())
    assert not missing, f"add docstrings (they are the API reference): {missing}"


def test_every_page_is_in_the_site_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)
        elif isinstance(node, list):
            for value in node:
                yield from pages(value)
    listed = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_hooks" not in p.parts}
    assert on_disk == listed


@pytest.mark.parametrize("target", sorted(set(re.findall(r"\]\((docs/[^)#]+)",
                                                          (ROOT / "README.md").read_text()))))
def test_readme_links_to_existing_pages(target):
    assert (ROOT / target).is_file(), target


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_cpu_only_torch_step_keeps_within_the_projects_bounds(page):
    """The CPU-only install names the upper bounds of pyproject.toml, so that the project's own
    install keeps that torch / torchvision pair instead of replacing one of them."""
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python >= 3.11)
    bounds = dict(re.findall(r'^\s*"(torch|torchvision)[<>=][^"]*<=([\w.]+)', pyproject, re.MULTILINE))
    assert set(bounds) == {"torch", "torchvision"}
    text = " ".join((ROOT / page).read_text().split())  # the README wraps the command
    assert (f'pip install "torch<={bounds["torch"]}" "torchvision<={bounds["torchvision"]}" '
            f"--index-url https://download.pytorch.org/whl/cpu") in text
