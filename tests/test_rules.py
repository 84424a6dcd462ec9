"""The shipped alerting rules pass their `promtool test rules` unit tests, and cover the sidecar's checks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import ROOT
from gangplank_sidecar.aggregation.checks import CHECKS

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "gangplank.yml"
UNIT_TESTS = PROMETHEUS / "tests" / "gangplank_test.yml"


def promtool_test(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/promtool", "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, timeout=60
    )


def test_promtool_unit_tests_pass() -> None:
    result = promtool_test(UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "Unit Testing:  gangplank_test.yml\n  SUCCESS\n\n"


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: the same file expecting the divergence alert one minute early."""
    (tmp_path / "rules").mkdir()
    shutil.copy(RULES, tmp_path / "rules" / "gangplank.yml")
    (tmp_path / "tests").mkdir()
    text = UNIT_TESTS.read_text(encoding="utf-8")
    broken = text.replace(
        "      - eval_time: 1m\n        alertname: GangplankTrainingBroken\n        exp_alerts: []\n",
        "      - eval_time: 1m\n        alertname: GangplankTrainingBroken\n        exp_alerts: [{exp_labels: "
        "{severity: critical}}]\n",
    )
    assert broken != text
    (tmp_path / "tests" / "gangplank_test.yml").write_text(broken, encoding="utf-8")
    result = promtool_test(tmp_path / "tests" / "gangplank_test.yml")
    assert result.returncode == 1
    assert "alertname: GangplankTrainingBroken, time: 1m" in result.stdout + result.stderr


def test_critical_alert_covers_exactly_the_checks_of_severity_error() -> None:
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]}
    (critical,) = re.findall(r'check=~"([^"]+)"', rules["GangplankTrainingBroken"]["expr"])
    (warning,) = re.findall(r'check!~"([^"]+)"', rules["GangplankCheckFailed"]["expr"])
    assert critical == warning
    assert sorted(critical.split("|")) == sorted(
        name for name, (_, _, severity) in CHECKS.items() if severity == "error"
    )
    assert sorted(rules) == [
        "GangplankCheckFailed",
        "GangplankPushesFailing",
        "GangplankPushgatewayDown",
        "GangplankRunStale",
        "GangplankTrainingBroken",
    ]
