"""The provisioned Grafana dashboard only asks for metrics the project exports, in valid PromQL."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "gangplank.json"

# Every metric name the project exports (design.md sections 3 and 6, issues 6 and 8), in one place.
_TRAIN_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
_TEST_KEYS = ("loss", "accuracy")
_PER_PHASE = (
    "elapsed_time_seconds",
    "model_parameters_count",
    "model_weights_bucket",
    "model_weights_count",
    "model_weights_sum",
)
EXPORTED = frozenset(
    {
        *(f"gangplank_train_{name}" for name in (*_TRAIN_KEYS, *_PER_PHASE)),
        "gangplank_train_epochs_count",
        "gangplank_train_best_epoch",
        *(f"gangplank_test_{name}" for name in (*_TEST_KEYS, *_PER_PHASE)),
        "gangplank_check_failed",
        "gangplank_system_cpu_utilization_ratio",
        "gangplank_system_memory_used_bytes",
        "gangplank_system_memory_utilization_ratio",
        "gangplank_system_disk_used_bytes",
        "gangplank_system_disk_utilization_ratio",
        "gangplank_system_gpu_utilization_ratio",
        "gangplank_system_gpu_memory_used_bytes",
        "gangplank_system_gpu_memory_utilization_ratio",
        "gangplank_sidecar_lines_total",
        "gangplank_sidecar_parse_errors_total",
        "gangplank_sidecar_pushes_total",
        "gangplank_sidecar_push_duration_seconds_bucket",
        "gangplank_sidecar_push_duration_seconds_count",
        "gangplank_sidecar_push_duration_seconds_sum",
        "gangplank_sidecar_last_push_success_timestamp_seconds",
        "gangplank_sidecar_pending_snapshots",
        "push_time_seconds",
    }
)
# Exported but deliberately not graphed: the histograms' _count and _sum add nothing to the buckets.
NOT_GRAPHED = frozenset(
    {
        "gangplank_train_model_weights_count",
        "gangplank_train_model_weights_sum",
        "gangplank_test_model_weights_count",
        "gangplank_test_model_weights_sum",
        "gangplank_sidecar_push_duration_seconds_count",
        "gangplank_sidecar_push_duration_seconds_sum",
    }
)

# Grafana's variables, replaced by plausible values so that promtool can parse the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": "mnist"}

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "group_left", "group_right", "inf", "nan", "Inf", "NaN"})
_LABEL_VALUES = re.compile(r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, labels or keywords."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def _panels(panels: list[dict]) -> list[dict]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def queries(dashboard: dict) -> list[str]:
    return [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]


def test_metric_names_extractor() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job=~"$job", x="b c{d}"}[$__rate_interval])))'
        " / on(job) group_left b offset 5m + 1e3 * c_total and bool time() - Inf"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c_total"}


def test_every_query_uses_only_exported_metric_names(queries: list[str]) -> None:
    used = set().union(*(metric_names(q) for q in queries))
    assert len(queries) == 32
    assert used - EXPORTED == set()
    assert EXPORTED - used == NOT_GRAPHED


def test_a_misspelt_metric_name_is_caught() -> None:
    assert metric_names('gangplank_train_val_los{job=~"$job"}') - EXPORTED == {"gangplank_train_val_los"}


def test_variable_query_uses_an_exported_metric(dashboard: dict) -> None:
    (variable,) = dashboard["templating"]["list"]
    match = _LABEL_VALUES.match(variable["query"]["query"])
    assert match is not None
    assert (match.group(1), match.group(2)) == ("gangplank_train_epochs_count", "job")
    assert variable["name"] == "job"


def _check_rules(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def _substituted(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_every_query_is_valid_promql(queries: list[str], tmp_path: Path) -> None:
    result = _check_rules([_substituted(q) for q in queries], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
    assert "$" not in "".join(_substituted(q) for q in queries)


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    result = _check_rules(["sum by (job (gangplank_train_loss)"], tmp_path)
    assert result.returncode == 1


def test_panels_use_the_provisioned_datasource(dashboard: dict) -> None:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    (source,) = provisioned["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", "gangplank-prometheus")
    expected = {"type": source["type"], "uid": source["uid"]}
    panels = [p for p in _panels(dashboard["panels"]) if p["type"] != "row"]
    assert len(panels) == 27
    for panel in panels:
        assert panel["datasource"] == expected, panel["title"]
        assert all(t["datasource"] == expected for t in panel["targets"]), panel["title"]
    assert dashboard["templating"]["list"][0]["datasource"] == expected


def test_panels_fit_the_grid_without_overlap(dashboard: dict) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels(dashboard["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for row in range(pos["y"], pos["y"] + pos["h"]):
            for column in range(pos["x"], pos["x"] + pos["w"]):
                assert (row, column) not in cells, (panel["title"], cells.get((row, column)))
                cells[(row, column)] = panel["title"]


def test_weight_histograms_are_bucket_heatmaps_per_job(dashboard: dict) -> None:
    histograms = [p for p in _panels(dashboard["panels"]) if p["type"] == "bargauge"]
    assert [p["targets"][0]["expr"] for p in histograms] == [
        'gangplank_train_model_weights_bucket{job=~"$job"}',
        'gangplank_test_model_weights_bucket{job=~"$job"}',
    ]
    for panel in histograms:
        assert (panel["targets"][0]["format"], panel["targets"][0]["legendFormat"], panel["repeat"]) == (
            "heatmap",
            "{{le}}",
            "job",
        )


def test_dashboard_provider_loads_the_folder_compose_mounts() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "gangplank.yml").read_text(encoding="utf-8"))
    (entry,) = provider["providers"]
    assert (entry["type"], entry["options"]["path"]) == ("file", "/var/lib/grafana/dashboards")
    compose = yaml.safe_load((GRAFANA.parent / "docker-compose.yml").read_text(encoding="utf-8"))
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in compose["services"]["grafana"]["volumes"]
