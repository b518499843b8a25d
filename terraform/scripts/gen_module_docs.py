"""Regenerate the Inputs/Outputs tables of every module README (terraform-docs style).

The text above ``<!-- BEGIN_TF_DOCS -->`` is kept; the tables between the markers are
rebuilt from variables.tf and outputs.tf. Usage: ``python terraform/scripts/gen_module_docs.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

MODULES = Path(__file__).resolve().parents[1] / "modules"
BLOCK_RE = re.compile(r'^(variable|output)\s+"([^"]+)"\s*\{(.*?)^\}', re.M | re.S)
BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"


def _attr(body: str, name: str) -> str | None:
    m = re.search(rf'^\s*{name}\s*=\s*(.+?)\s*$', body, re.M)
    if not m:
        return None
    value = m.group(1)
    if name == "type" and value.count("(") != value.count(")"):
        return value.split("(")[0] + "(...)"
    return value


def _desc(body: str) -> str:
    m = re.search(r'^\s*description\s*=\s*"((?:[^"\\]|\\.)*)"', body, re.M)
    return (m.group(1).replace('\\"', '"') if m else "").replace("|", "\\|")


def tables(module: Path) -> str:
    """Markdown tables of a module's inputs and outputs."""
    rows = ["## Inputs", "", "| Name | Description | Type | Default | Required |", "|---|---|---|---|:---:|"]
    for _kind, name, body in BLOCK_RE.findall((module / "variables.tf").read_text()):
        default = _attr(body, "default")
        rows.append(
            f"| `{name}` | {_desc(body)} | `{_attr(body, 'type')}` | {f'`{default}`' if default else 'n/a'} | {'no' if default else 'yes'} |"
        )
    rows += ["", "## Outputs", "", "| Name | Description |", "|---|---|"]
    for _kind, name, body in BLOCK_RE.findall((module / "outputs.tf").read_text()):
        rows.append(f"| `{name}` | {_desc(body)} |")
    return "\n".join(rows)


def main() -> None:
    """Rewrite every module README's generated section."""
    for module in sorted(p for p in MODULES.iterdir() if p.is_dir()):
        readme = module / "README.md"
        head = readme.read_text().split(BEGIN)[0].rstrip() if readme.exists() else f"# {module.name}"
        readme.write_text(f"{head}\n\n{BEGIN}\n{tables(module)}\n{END}\n")
        print(f"wrote {readme}")


if __name__ == "__main__":
    main()
