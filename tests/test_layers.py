"""The import graph points one way: leaves, then sources -> parsers -> aggregation -> sinks, never back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gangplank_sidecar"
LEAVES = ("errors", "environment", "directions", "curve", "delivery")
FORBIDDEN = {
    "settings": ("gangplank_sidecar.sinks", "gangplank_sidecar.app", "gangplank_sidecar.cli", "prometheus_client"),
    "sinks": (
        "gangplank_sidecar.settings",
        "gangplank_sidecar.app",
        "gangplank_sidecar.cli",
        "gangplank_sidecar.sources",
    ),
    "runs": (
        "gangplank_sidecar.aggregation",
        "gangplank_sidecar.sinks",
        "gangplank_sidecar.settings",
        "prometheus_client",
    ),
    "parsers": (
        "gangplank_sidecar.aggregation",
        "gangplank_sidecar.sinks",
        "gangplank_sidecar.sources",
        "gangplank_sidecar.settings",
    ),
    "aggregation": (
        "gangplank_sidecar.sinks",
        "gangplank_sidecar.sources",
        "gangplank_sidecar.settings",
        "gangplank_sidecar.app",
    ),
    "sources": (
        "gangplank_sidecar.sinks",
        "gangplank_sidecar.settings",
        "gangplank_sidecar.app",
        "gangplank_sidecar.cli",
    ),
}


def imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def test_no_module_imports_upward() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name.endswith("_pb2.py"):
            continue
        name = layer(path)
        banned = ("gangplank_sidecar.",) if name in LEAVES else FORBIDDEN.get(name, ())
        wrong += [f"{path.relative_to(PACKAGE)} imports {m}" for m in sorted(imports(path)) if m.startswith(banned)]
    assert wrong == []
    assert {layer(p) for p in PACKAGE.rglob("*.py")} >= set(LEAVES) | set(FORBIDDEN)


def test_gangplank_runs_loads_no_sink_and_no_prometheus_client() -> None:
    """``gangplank-runs`` is a SQLite reader: its start-up loads neither the push sink nor prometheus-client."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import gangplank_sidecar.runs.cli"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "gangplank_sidecar.runs.cli" in loaded and "gangplank_sidecar.runs.db" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] == "prometheus_client") == []
    assert (
        sorted(
            m
            for m in loaded
            if m.startswith(("gangplank_sidecar.sinks", "gangplank_sidecar.aggregation", "gangplank_sidecar.settings"))
        )
        == []
    )
