"""``gangplank-sidecar prune`` against the real Pushgateway: only the stale groups go, and only with --yes."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request

import pytest

from conftest import SIDECAR, Pushgateway, free_port
from gangplank_sidecar import cli
from gangplank_sidecar.delivery import Retry, TransportConfig
from gangplank_sidecar.prune import age, duration, prune
from gangplank_sidecar.sinks.transport import Transport

SLASH = "/metrics/job/cifar/path@base64/" + base64.urlsafe_b64encode(b"runs/a b").decode()
EMPTY = "/metrics/job/mnist/phase/train/team@base64/="


def push(gateway: Pushgateway, path: str) -> None:
    request = urllib.request.Request(gateway.url + path, data=b"gangplank_train_loss 0.5\n", method="PUT")
    with urllib.request.urlopen(request, timeout=5):
        pass


def groups(gateway: Pushgateway) -> dict[frozenset, float]:
    """Each group's labels and its push_time_seconds, as the gateway lists them."""
    with urllib.request.urlopen(gateway.url + "/api/v1/metrics", timeout=5) as response:
        data = json.load(response)["data"]
    return {frozenset(g["labels"].items()): float(g["push_time_seconds"]["metrics"][0]["value"]) for g in data}


def prune_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["prune", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


OLD = frozenset({("job", "mnist"), ("phase", "train")})
NEW = frozenset({("job", "mnist"), ("phase", "test")})


def test_only_the_older_of_two_groups_is_pruned_and_the_dry_run_deletes_nothing(
    pushgateway: Pushgateway, capsys
) -> None:
    push(pushgateway, "/metrics/job/mnist/phase/train")
    time.sleep(3.0)
    push(pushgateway, "/metrics/job/mnist/phase/test")
    pushed = groups(pushgateway)
    assert set(pushed) == {OLD, NEW}

    def halfway() -> str:
        """A cutoff halfway between the two pushes (the gateway's own times), as a duration from now."""
        return f"{round((time.time() - (pushed[OLD] + pushed[NEW]) / 2) * 1000)}ms"

    code, out, err = prune_cli(capsys, "--pushgateway", pushgateway.url, "--older-than", halfway())
    assert code == 0
    assert out.splitlines()[0].endswith(
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(pushed[OLD])) + "  job=mnist phase=train"
    )
    assert len(out.splitlines()) == 1
    assert "1 of 2 groups" in err and "dry run, nothing deleted (add --yes to delete them)" in err
    assert groups(pushgateway) == pushed

    code, out, err = prune_cli(capsys, "--pushgateway", pushgateway.url, "--older-than", halfway(), "--yes")
    assert (code, len(out.splitlines())) == (0, 1)
    assert "1 of 2 groups" in err and "deleted 1" in err
    assert groups(pushgateway) == {NEW: pushed[NEW]}


def test_grouping_keys_with_a_slash_or_an_empty_value_are_deleted(pushgateway: Pushgateway, capsys) -> None:
    push(pushgateway, SLASH)
    push(pushgateway, EMPTY)
    push(pushgateway, "/metrics/job/keep/phase/train")
    assert set(groups(pushgateway)) == {
        frozenset({("job", "cifar"), ("path", "runs/a b")}),
        frozenset({("job", "mnist"), ("phase", "train"), ("team", "")}),
        frozenset({("job", "keep"), ("phase", "train")}),
    }
    time.sleep(0.05)
    code, out, err = prune_cli(
        capsys, "--pushgateway", pushgateway.url, "--older-than", "1ms", "--job", "cifar|mnist", "--yes"
    )
    assert code == 0, err
    assert sorted(line.split("  ")[-1] for line in out.splitlines()) == [
        "job=cifar path='runs/a b'",
        "job=mnist phase=train team=''",
    ]
    assert "2 of 3 groups" in err and "deleted 2" in err
    assert set(groups(pushgateway)) == {frozenset({("job", "keep"), ("phase", "train")})}


def test_nothing_older_than_the_cutoff(pushgateway: Pushgateway, capsys) -> None:
    push(pushgateway, "/metrics/job/mnist/phase/train")
    code, out, err = prune_cli(capsys, "--pushgateway", pushgateway.url, "--older-than", "7d", "--yes")
    assert (code, out) == (0, "")
    assert "0 of 1 group last pushed more than 7d ago; deleted 0" in err
    assert len(groups(pushgateway)) == 1


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SIDECAR, "prune", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "7d"], "--pushgateway (or GANGPLANK_PUSHGATEWAY) is needed"),
        (["--pushgateway", "127.0.0.1:9", "--older-than", "7"], "--older-than: bad duration '7'"),
        (["--pushgateway", "127.0.0.1:9", "--older-than", "0s"], "--older-than must be more than zero"),
        (["--pushgateway", "127.0.0.1:9", "--older-than", "1d", "--job", "("], "--job: bad regular expression '('"),
        (
            ["--pushgateway", "127.0.0.1:9", "--older-than", "1d", "--tls-ca-file", "/ca.pem"],
            "--tls-* options need an https:// Pushgateway URL",
        ),
        (["--pushgateway", "127.0.0.1:9"], "the following arguments are required: --older-than"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_an_unreachable_gateway_exits_1() -> None:
    port = free_port()
    done = run(
        "--pushgateway",
        f"127.0.0.1:{port}",
        "--older-than",
        "1d",
        "--yes",
        "--push-retries",
        "2",
        "--retry-backoff",
        "0.05",
    )
    assert done.returncode == 1
    assert (
        done.stderr
        == f"gangplank-sidecar prune: cannot list the groups of the Pushgateway at http://127.0.0.1:{port}: connection "
        "refused\n"
    )


def test_durations() -> None:
    assert [duration(t) for t in ("90s", "12h", "7d", "1h30m", "2w", "500ms")] == [
        90,
        43200,
        604800,
        5400,
        1209600,
        0.5,
    ]
    assert [age(s) for s in (0, 40, 3725, 273600, 90061)] == ["0s", "40s", "1h 2m", "3d 4h", "1d 1h"]


def test_it_stops_at_the_first_group_that_cannot_be_deleted(pushgateway: Pushgateway, proxy) -> None:
    """The gateway (behind the fault proxy) lists three stale groups, then answers 503 from the first DELETE on."""
    for phase in ("train", "test", "sidecar"):
        push(pushgateway, f"/metrics/job/mnist/phase/{phase}")
    listed: list[str] = []
    reports: list[str] = []

    def out(line: str) -> None:
        listed.append(line)
        proxy.set("503")

    transport = Transport(TransportConfig())
    code = prune(
        proxy.url, transport, 0.001, None, True, out, reports.append, Retry(push_retries=0), now=time.time() + 1
    )
    assert code == 1
    assert len(listed) == 3
    first = listed[0].split("  ")[-1]
    assert reports == [
        f"3 of 3 groups last pushed more than 0s ago; deleted 0, then cannot delete {first}: HTTP 503 Service "
        "Unavailable: injected 503; stopped"
    ]
    assert [(r.method, r.outcome) for r in proxy.requests] == [("GET", "forwarded"), ("DELETE", "503")]
    assert len(groups(pushgateway)) == 3
