"""The shipped Prometheus configuration is valid and scrapes both metric paths with the sidecar's labels."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

PROMETHEUS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"


def _promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_shipped_config() -> None:
    result = _promtool_check(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {CONFIG} is valid prometheus config file syntax" in result.stdout
    rule_files = sorted((PROMETHEUS / "rules").glob("*.yml"))
    found = f"SUCCESS: {len(rule_files)} rule files found" if rule_files else "rule files found"
    assert (found in result.stdout) is bool(rule_files)
    for path in rule_files:
        groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        count = sum(len(group["rules"]) for group in groups)
        assert f"Checking {path}\n  SUCCESS: {count} rules found" in result.stdout


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    broken = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    broken["scrape_configs"][0]["honor_labels"] = "sometimes"
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert _promtool_check(path).returncode == 1


def test_scrapes_the_gateway_and_the_sidecar_keeping_their_labels() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert sorted(jobs) == ["gangplank-sidecar", "pushgateway"]
    assert jobs["pushgateway"]["static_configs"] == [{"targets": ["pushgateway:9091"]}]
    assert jobs["gangplank-sidecar"]["static_configs"] == [{"targets": ["sidecar:9100"]}]
    assert all(job["honor_labels"] is True for job in jobs.values())


def test_alerting_rules_are_picked_up_from_the_rules_folder(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["rules/*.yml"]
    shutil.copy(CONFIG, tmp_path / "prometheus.yml")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.yml").write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum by (\n", encoding="utf-8"
    )
    result = _promtool_check(tmp_path / "prometheus.yml")
    assert result.returncode == 1
    assert "bad.yml" in result.stdout + result.stderr
