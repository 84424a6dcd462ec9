"""Issue 15, the edges: reserved labels, start-time checks (URLs, FILEs, options without effect),
FIFOs, a wrapped command's grandchild, ``--listen 0``, ``--retry-backoff``, ``gangplank-runs list``.

Every misuse is one line on stderr and exit code 2 before anything is read.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SIDECAR, free_port, scrape, wait_http
from gangplank_sidecar.delivery import PushError, TransportConfig
from gangplank_sidecar.settings import RESERVED_LABELS
from gangplank_sidecar.sinks.transport import Transport

PREFIX = "gangplank-sidecar: "
RESERVED = ", ".join(RESERVED_LABELS)
EPOCH = {
    "gangplank": 1,
    "event": "epoch",
    "run": "r1",
    "phase": "train",
    "time": 1.0,
    "epoch": 2,
    "elapsed_seconds": 4.25,
    "metrics": {"loss": 0.125, "val_loss": 0.5},
    "params": {"total": 1234},
    "weights": {"le": [-0.5, 0.0, 0.5], "counts": [1, 5, 9, 10], "count": 10, "sum": -0.75},
    "checks": [{"code": "K501", "name": "nan_loss", "message": "x", "fired": False}],
}


def sidecar(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SIDECAR, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "GANGPLANK_SYSTEM_INTERVAL": "0", **(env or {})},
    )


def usage_error(done: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2, exactly one line on stderr, nothing echoed (nothing was read)."""
    assert (done.returncode, done.stderr.decode(), done.stdout) == (2, PREFIX + message + "\n", b"")


# Item 4 and the build point: every label name the sidecar writes is reserved, from one list.


@pytest.mark.parametrize(
    "name",
    [
        "le",
        "quantile",
        "metric",
        "check",
        "code",
        "result",
        "format",
        "reason",
        "gpu",
        "run",
        "phase",
        "namespace",
        "pod",
        "container",
    ],
)
def test_a_label_the_sidecar_writes_is_refused(name: str) -> None:
    done = sidecar("--no-history", "--label", f"{name}=x", stdin=b'{"gangplank": 1}\n')
    usage_error(done, f"label {name!r} is reserved: the sidecar writes it (reserved: {RESERVED})")


def test_reserved_labels_are_refused_from_the_environment_too() -> None:
    done = sidecar("--no-history", env={"GANGPLANK_LABELS": "team=a,le=0.5"})
    usage_error(done, f"label 'le' is reserved: the sidecar writes it (reserved: {RESERVED})")
    usage_error(sidecar("--no-history", "--label", "job=x"), "label 'job' is reserved (use --job for the job)")


def test_every_label_name_in_the_output_is_in_the_reserved_list() -> None:
    """The class, not the instance: whatever the sidecar serves carries only reserved names and ours."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *SIDECAR,
            "--listen",
            f"127.0.0.1:{port}",
            "--quiet",
            "--no-history",
            "--system-interval",
            "0.2",
            "--label",
            "team=ml",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/-/ready", timeout=30)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(EPOCH).encode() + b"\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        names: set[str] = set()
        wanted = {"gangplank_train_model_weights_bucket", "gangplank_check_failed", "gangplank_sidecar_lines_total"}
        while not wanted <= names or not any(n.startswith("gangplank_system_") for n in names):
            assert time.monotonic() < deadline, names
            samples = scrape(url + "/metrics")
            names = {name for name, _ in samples}
            time.sleep(0.1)
        written = {label for _, labels in samples for label, _ in labels}
        assert {"job", "phase", "le", "check", "code", "metric", "format", "result", "team"} <= written
        assert written - {"team"} <= set(RESERVED_LABELS)
    finally:
        proc.communicate(timeout=30)


# Item 12: gateway and remote-write URLs, strictly.


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("localhost:notaport", "the port must be a number from 1 to 65535"),
        ("localhost:99999", "the port must be a number from 1 to 65535"),
        ("localhost:0", "the port must be a number from 1 to 65535"),
        (":9091", "no host"),
        ("http://", "no host"),
        ("ftp://localhost:9091", "the scheme must be http or https"),
        ("http://localhost:9091?tenant=a", "no ?query (the Pushgateway URL is the server's, e.g. http://host:9091)"),
        ("http://localhost:9091#top", "no #fragment"),
        ("http://localhost:9091/metrics", "no path (the Pushgateway URL is the server's, e.g. http://host:9091)"),
    ],
)
def test_a_bad_pushgateway_url_is_refused_before_reading(url: str, why: str) -> None:
    started = time.monotonic()
    done = sidecar("--no-history", "--pushgateway", url, stdin=b"line\n")
    usage_error(done, f"--pushgateway: bad URL {url!r}: {why}")
    assert time.monotonic() - started < 30  # not after a flush timeout


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("localhost:99999/api/v1/write", "the port must be a number from 1 to 65535"),
        ("http:///api/v1/write", "no host"),
        ("http://h:9090/api/v1/write#x", "no #fragment"),
    ],
)
def test_a_bad_remote_write_url_is_refused(url: str, why: str) -> None:
    usage_error(sidecar("--no-history", "--remote-write", url), f"--remote-write: bad URL {url!r}: {why}")


def test_good_urls_still_pass() -> None:
    from gangplank_sidecar.cli import settings_from

    s = settings_from(["--pushgateway", "gw:9091", "--remote-write", "http://[::1]:9090/api/v1/write?tenant=a"])
    assert (s.pushgateway, s.remote_write) == ("http://gw:9091", ["http://[::1]:9090/api/v1/write?tenant=a"])
    assert settings_from(["--pushgateway", "https://gw.example/"]).pushgateway == "https://gw.example"


# Item 13: a FILE that can never be followed.


def test_files_that_can_never_be_followed_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    usage_error(
        sidecar("--no-history", str(tmp_path)),
        f"{tmp_path} is a directory (name the files in it, or a glob such as '{tmp_path}/*.log')",
    )
    usage_error(sidecar("--no-history", ""), "FILE '': an empty path")
    not_regular = "is not a regular file: only files can be followed (pipe a stream to the sidecar's stdin instead)"
    usage_error(sidecar("--no-history", "/dev/null"), f"/dev/null {not_regular}")
    usage_error(sidecar("--no-history", str(fifo)), f"{fifo} {not_regular}")
    usage_error(
        sidecar("--no-history", "--state-file", str(fifo), str(tmp_path / "a.log")),
        f"--state-file {fifo}: not a regular file",
    )
    usage_error(sidecar("--db", str(fifo)), f"--db {fifo}: not a regular file")


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    """Root reads any file: as root the check runs in a forked child that has become nobody
    (no exec: the venv's interpreter may not be nobody's to run); it is the check the command runs."""
    from gangplank_sidecar.sources.files import unusable

    log = tmp_path / "train.log"
    log.write_text("x\n")
    log.chmod(0)
    tmp_path.chmod(0o755)
    if os.geteuid() != 0:
        usage_error(sidecar("--no-history", str(log)), f"cannot read {log}: Permission denied")
        return
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", RuntimeWarning
        )  # JAX, if a test imported it, warns of fork: the child runs no JAX
        pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.setuid(65534)
            os.write(write, (unusable(str(log)) or "usable").encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as said:
        assert said.read().decode() == f"cannot read {log}: Permission denied"
    os.waitpid(pid, 0)
    assert unusable(str(log)) is None  # root may


def test_a_missing_file_is_still_waited_for(tmp_path: Path) -> None:
    log = tmp_path / "later.jsonl"
    proc = subprocess.Popen([*SIDECAR, "--no-history", "--system-interval", "0", str(log)], stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().decode() == f"{PREFIX}waiting for {log}\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_fifo_that_appears_later_does_not_block_a_stop(tmp_path: Path, signum: int) -> None:
    """Item 7: the follower's open() of a FIFO used to block for good, and SIGTERM with it."""
    path = tmp_path / "metrics.jsonl"
    proc = subprocess.Popen([*SIDECAR, "--no-history", "--system-interval", "0", str(path)], stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().decode() == f"{PREFIX}waiting for {path}\n"
        os.mkfifo(path)
        assert proc.stderr.readline().decode() == f"{PREFIX}not following {path}: not a regular file\n"
        proc.send_signal(signum)
        assert proc.communicate(timeout=30)[1].decode().startswith(f"{PREFIX}stopping: delivering the final state\n")
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert stat.S_ISFIFO(path.stat().st_mode)


# Options that would do nothing in the chosen mode.


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--linger", "5"], "--linger needs --listen: it keeps serving /metrics after the end"),
        (["--exit-on-end"], "--exit-on-end only applies when following FILEs"),
        (["--state-file", "s.json"], "--state-file only applies when following FILEs or --kubernetes-logs"),
        (["--exit-on-end", "--", "true"], "--exit-on-end only applies when following FILEs"),
        (["--quiet", "train.log"], "--quiet has no effect on FILEs: they are never echoed"),
        (
            ["--strict", "--no-history"],
            "--strict needs --pushgateway, --remote-write or the run history: nothing else can fail to deliver",
        ),
        (["--system-interval", "0", "--pid", "1"], "--pid has no effect with --system-interval 0"),
        (["--system-interval", "0", "--disk-path", "/"], "--disk-path has no effect with --system-interval 0"),
        (["train.log", "--", "true"], "FILEs and '-- COMMAND' do not go together: the sidecar reads one or the other"),
    ],
)
def test_an_option_without_effect_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    env = {"GANGPLANK_PUSHGATEWAY": "", "GANGPLANK_REMOTE_WRITE": "", "GANGPLANK_LISTEN": ""}
    usage_error(sidecar(*args, stdin=b"line\n", env=env), message)


def test_options_with_effect_still_pass() -> None:
    from gangplank_sidecar.cli import settings_from

    settings_from(["--listen", "0", "--linger", "5", "--", "true"])
    settings_from(["--exit-on-end", "--state-file", "s.json", "a.log"])
    settings_from(["--quiet", "--pid", "1", "--", "true"])  # --pid picks the process tree to measure, also here
    settings_from(["--strict", "--remote-write", "http://h:9090/api/v1/write"])


# Item 15, the smaller ones.


def test_retry_backoff_has_a_floor() -> None:
    done = sidecar("--no-history", "--pushgateway", "127.0.0.1:1", "--retry-backoff", "1e-9")
    usage_error(done, "--retry-backoff: Input should be greater than or equal to 0.01")
    done = sidecar("--no-history", "--pushgateway", "127.0.0.1:1", "--retry-backoff-max", "inf")
    usage_error(done, "--retry-backoff-max: Input should be a finite number")


def test_a_timeout_is_said_rounded(tmp_path: Path) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        transport = Transport(TransportConfig(push_timeout=5.0))
        with pytest.raises(PushError) as error:
            transport.send(f"http://127.0.0.1:{server.getsockname()[1]}/metrics", "PUT", b"", [], timeout=0.1234567)
    assert str(error.value) == "no answer within 0.123 s"


def test_listen_on_port_0_says_the_port() -> None:
    proc = subprocess.Popen(
        [*SIDECAR, "--listen", "127.0.0.1:0", "--quiet", "--no-history", "--system-interval", "0"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        found = re.fullmatch(r"gangplank-sidecar: serving /metrics at http://127\.0\.0\.1:(\d+)/metrics\n", line)
        assert found, line
        port = int(found.group(1))
        assert port > 0
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=30)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_grandchild_holding_the_pipe_does_not_hold_the_exit(tmp_path: Path) -> None:
    """``-- sh -c 'sleep 30 & exit 3'``: exit 3 soon after sh, not when the sleep ends."""
    started = time.monotonic()
    done = sidecar("--no-history", "--", "sh", "-c", "echo before; sleep 30 & exit 3", timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 3
    assert done.stdout == b"before\n"
    assert done.stderr.decode() == (
        f"{PREFIX}the command has exited, but a process it started still holds its output open: not reading it any "
        "more\n"
        f"{PREFIX}no training or evaluation records seen\n"
    )
    assert took < 8, took  # the drain is bounded at 2 s after the command exits (10 s before)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "runs.db"
    lines = [
        {
            "gangplank": 1,
            "event": "epoch",
            "run": run,
            "phase": "train",
            "time": 1764065730.0 + i,
            "epoch": 1,
            "elapsed_seconds": 1.0,
            "metrics": {"loss": loss},
            "params": {"total": 1},
        }
        for i, (run, loss) in enumerate([("run-a", 0.5), ("run-b", 0.25)])
    ]
    done = sidecar("--quiet", "--db", str(path), stdin="".join(json.dumps(line) + "\n" for line in lines).encode())
    assert done.returncode == 0, done.stderr
    return path


def runs_cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gangplank_sidecar.runs", *args, "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "-1"], "argument --limit: expected 1 or more, got -1"),
        (["--limit", "0"], "argument --limit: expected 1 or more, got 0"),
        (["--limit", "x"], "argument --limit: expected a whole number of runs, got 'x'"),
        (["--sort", "nosuch"], "--sort nosuch: no run has this metric (they have: loss)"),
    ],
)
def test_runs_list_refuses_a_bad_limit_or_sort(two_runs: Path, args: list[str], message: str) -> None:
    done = runs_cli(two_runs, "list", *args)
    assert (done.returncode, done.stderr, done.stdout) == (2, f"gangplank-runs: {message}\n", "")


def test_runs_list_limit_and_sort_still_work(two_runs: Path) -> None:
    assert [r["run"] for r in json.loads(runs_cli(two_runs, "list", "--json", "--limit", "1").stdout)] == ["run-b"]
    assert [r["run"] for r in json.loads(runs_cli(two_runs, "list", "--json", "--sort", "loss").stdout)] == [
        "run-b",
        "run-a",
    ]


@given(st.text(max_size=60), st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_url_text_is_refused_in_one_sentence_or_is_a_usable_url(text: str, path: bool) -> None:
    """Property: the URL check never crashes, and whatever it lets through has a scheme, a host and a port."""
    from urllib.parse import urlsplit

    from gangplank_sidecar.settings import ConfigError, gateway_url

    try:
        url = gateway_url(text, path=path)
    except ConfigError as error:
        assert str(error).startswith(f"bad URL {text!r}: ") and "\n" not in str(error).removeprefix(
            f"bad URL {text!r}: "
        )
        return
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https") and parts.hostname
    assert parts.port is None or 1 <= parts.port <= 65535
    assert path or (not parts.query and not parts.path)
