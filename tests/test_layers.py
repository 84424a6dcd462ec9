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


# The allowed graph, from the data flow. A stage may import the leaves, itself and the stages
# before it; a leaf only leaves; the wiring (which builds and connects the stages) anything.
# A source sees neither the parsers, the run state nor the pipeline: it is handed callables.
CONTRACT = ("", "errors", "environment", "directions", "curve", "delivery", "sparkline", "parsers.protocol")
STAGES = (
    ("sources", "system"),  # bytes in (stdin, a command, files, container logs), and the system readings
    ("parsers",),
    ("aggregation",),  # the run state and the checks it runs
    ("sinks", "selfmetrics", "runs.db"),  # runs.db is the database the history sink writes
)
WIRING = ("__main__", "app", "cli", "options", "settings", "pipeline", "prune", "runs")


def _module(path: Path) -> str:
    """``sources.files`` for gangplank_sidecar/sources/files.py; a package is its __init__; the root is ''."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py") if not p.name.endswith("_pb2.py")}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") or (p == "" and name == "") for p in prefixes)


def _group(name: str) -> int | str:
    """The stage's index, or "contract" or "wiring"."""
    if name in CONTRACT:
        return "contract"
    for index, prefixes in enumerate(STAGES):
        if _within(name, prefixes):
            return index
    assert _within(name, WIRING), f"{name}: place it in CONTRACT, STAGES or WIRING"
    return "wiring"


def _label(group: int | str) -> str:
    return STAGES[group][0] if isinstance(group, int) else group


def _internal_imports(path: Path) -> set[str]:
    """The package's modules a file imports (``from pkg import module`` names the module, else the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: a relative import"
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if n.removeprefix("gangplank_sidecar.") in MODULES else node.module for n in names]
        else:
            continue
        found.update(
            n.removeprefix("gangplank_sidecar").lstrip(".") for n in names if n.split(".")[0] == "gangplank_sidecar"
        )
    return found


def test_imports_follow_the_allowed_graph() -> None:
    wrong = []
    for name, path in sorted(MODULES.items()):
        group = _group(name)
        if group == "wiring":
            continue
        for target in sorted(_internal_imports(path)):
            to = _group(target)
            allowed = to == "contract" or (isinstance(group, int) and isinstance(to, int) and to <= group)
            if not allowed:
                wrong.append(f"{name} ({_label(group)}) imports {target} ({_label(to)})")
    assert wrong == []
    assert {"sources.files", "sources.kubernetes", "parsers.protocol", "aggregation.state", "sinks.pushgateway"} <= set(
        MODULES
    )
