"""The real Pushgateway behind TLS (client certificates required) and basic auth (a bcrypt hash).

Certificates are made here with ``cryptography``; the gateway reads them through
``--web.config.file``. Secrets must never show up in our output or argv.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from conftest import SIDECAR, free_port, pushgateway_binary
from proxy import FaultProxy

PASSWORD = "s3cret-Passw0rd-never-printed"
TOKEN = "tok-6f1d9c-never-printed"
RECORD = {
    "gangplank": 1,
    "event": "epoch",
    "run": "20261125-101530-a7c1",
    "phase": "train",
    "time": 1764065731.5,
    "epoch": 3,
    "elapsed_seconds": 4.75,
    "metrics": {"loss": 0.1839, "accuracy": 0.9448},
    "params": {"total": 104202},
}
LINES = (json.dumps(RECORD) + "\n").encode()


def _cert(
    subject: str, key, issuer: x509.Certificate | None, issuer_key, ca: bool, san: list[x509.GeneralName] | None = None
):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, cert, key) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.with_suffix(".key").write_bytes(key_pem)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    d = tmp_path_factory.mktemp("certs")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, None, ca=True)
    _write(d / "ca", ca, ca_key)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    _write(
        d / "server",
        _cert("127.0.0.1", server_key, ca, ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        server_key,
    )
    _write(d / "client", _cert("sidecar", client_key, ca, ca_key, False), client_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "other", _cert("other CA", other_key, None, None, ca=True), other_key)
    (d / "password").write_text(PASSWORD + "\n")
    (d / "wrong").write_text("not-the-password\n")
    return d


@pytest.fixture(scope="module")
def gateway(certs: Path):
    """The real Pushgateway with TLS, required client certificates and basic auth for 'alice'."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = certs / "web.yml"
    config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {certs / 'server.crt'}\n  key_file: {certs / 'server.key'}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs / 'ca.crt'}\n"
        f"basic_auth_users:\n  alice: {hashed}\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            pushgateway_binary(),
            f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=",
            f"--web.config.file={config}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the TLS gateway did not start"
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(10)


def scrape_tls(url: str, certs: Path) -> dict[str, float]:
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    request = urllib.request.Request(
        url + "/metrics", headers={"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}
    )
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        text = response.read().decode()
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("gangplank_train") and s.labels.get("job") == "secure"
    }


def run_sidecar(url: str, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, str]:
    """Runs the sidecar on one epoch record; returns the process and its argv as the kernel saw it."""
    process = subprocess.Popen(
        [*SIDECAR, "--pushgateway", url, "--job", "secure", "--system-interval", "0", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
    out, err = process.communicate(LINES, timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), cmdline


def tls(certs: Path) -> list[str]:
    return [
        "--tls-ca-file",
        str(certs / "ca.crt"),
        "--tls-cert-file",
        str(certs / "client.crt"),
        "--tls-key-file",
        str(certs / "client.key"),
    ]


def assert_no_secret(done: subprocess.CompletedProcess, cmdline: str) -> None:
    for secret in (PASSWORD, TOKEN):
        assert secret.encode() not in done.stdout + done.stderr
        assert secret not in cmdline


@pytest.mark.parametrize("source", ["file", "env"])
def test_right_credentials_over_tls_deliver(source: str, gateway: str, certs: Path) -> None:
    if source == "file":
        done, cmdline = run_sidecar(
            gateway, *tls(certs), "--basic-auth-user", "alice", "--basic-auth-password-file", str(certs / "password")
        )
    else:
        done, cmdline = run_sidecar(
            gateway, *tls(certs), env={"GANGPLANK_BASIC_AUTH_USER": "alice", "GANGPLANK_BASIC_AUTH_PASSWORD": PASSWORD}
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == LINES
    assert b"Pushgateway" not in done.stderr
    samples = scrape_tls(gateway, certs)
    assert samples["gangplank_train_loss"] == 0.1839
    assert samples["gangplank_train_accuracy"] == 0.9448
    assert samples["gangplank_train_epochs_count"] == 3
    assert samples["gangplank_train_model_parameters_count"] == 104202
    assert_no_secret(done, cmdline)


def assert_failed(done: subprocess.CompletedProcess, url: str, *reasons: str) -> None:
    """Strict mode stops either when the retries are spent or at the end of input, whichever comes first."""
    assert done.returncode == 1
    at_end = (
        "gangplank-sidecar: not delivered to the Pushgateway at {} within 0.3 s: job=secure phase=train (epoch 3) "
        "({})\n"
    )
    spent = (
        "gangplank-sidecar: cannot push to the Pushgateway at {} after 0 retries ({}): job=secure phase=train "
        "(epoch 3) not delivered; giving up (--strict)\n"
    )
    assert done.stderr.decode() in [form.format(url, reason) for form in (at_end, spent) for reason in reasons]


FAILING = ["--strict", "--flush-timeout", "0.3", "--push-retries", "0", "--retry-backoff", "0.05"]


def test_wrong_password_fails_clearly(gateway: str, certs: Path) -> None:
    done, cmdline = run_sidecar(
        gateway, *tls(certs), *FAILING, "--basic-auth-user", "alice", "--basic-auth-password-file", str(certs / "wrong")
    )
    assert done.returncode == 1
    assert_failed(
        done,
        gateway,
        "HTTP 401 Unauthorized: the gateway rejected the credentials (check --basic-auth-user and its password, or "
        "--bearer-token-file)",
    )
    assert b"not-the-password" not in done.stdout + done.stderr
    assert_no_secret(done, cmdline)


def test_an_untrusted_gateway_certificate_is_refused(gateway: str, certs: Path) -> None:
    args = [
        "--tls-ca-file",
        str(certs / "other.crt"),
        "--basic-auth-user",
        "alice",
        "--basic-auth-password-file",
        str(certs / "password"),
    ]
    done, cmdline = run_sidecar(gateway, *args, *FAILING)
    assert done.returncode == 1
    assert_failed(
        done,
        gateway,
        "TLS: the gateway's certificate is not trusted (unable to get local issuer certificate); check --tls-ca-file",
    )
    assert_no_secret(done, cmdline)


def test_a_missing_client_certificate_is_named(gateway: str, certs: Path) -> None:
    args = [
        "--tls-ca-file",
        str(certs / "ca.crt"),
        "--basic-auth-user",
        "alice",
        "--basic-auth-password-file",
        str(certs / "password"),
    ]
    done, cmdline = run_sidecar(gateway, *args, *FAILING)
    assert done.returncode == 1
    # TLS 1.3 checks the client's certificate after the handshake: the alert or the closed connection comes first
    reasons = ("SSLV3_ALERT_BAD_CERTIFICATE", "SSLEOFError")
    assert_failed(done, gateway, *(f"TLS: {r} (a client certificate may be needed: --tls-cert-file)" for r in reasons))
    assert_no_secret(done, cmdline)


def test_bearer_token_and_headers_are_sent_and_never_printed(proxy: FaultProxy, certs: Path) -> None:
    (certs / "token").write_text(TOKEN + "\n")
    proxy.set("503")
    done, cmdline = run_sidecar(
        proxy.url,
        *FAILING,
        "--bearer-token-file",
        str(certs / "token"),
        "--header",
        "X-Scope-OrgID: team-a",
        env={"GANGPLANK_HEADERS": "X-Ignored: 1"},
    )
    assert done.returncode == 1
    assert_failed(done, proxy.url, "HTTP 503 Service Unavailable: injected 503")
    sent = proxy.requests[0].headers
    assert sent["Authorization"] == f"Bearer {TOKEN}"
    assert sent["X-Scope-OrgID"] == "team-a"
    assert "X-Ignored" not in sent  # --header replaces GANGPLANK_HEADERS
    assert_no_secret(done, cmdline)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--pushgateway", f"http://alice:{PASSWORD}@127.0.0.1:1"],
            {},
            "put credentials in --basic-auth-user and --basic-auth-password-file, not in the Pushgateway URL",
        ),
        (
            [
                "--pushgateway",
                "127.0.0.1:1",
                "--basic-auth-user",
                "alice",
                "--basic-auth-password-file",
                "/nonexistent/pw",
            ],
            {},
            "--basic-auth-password-file: cannot read /nonexistent/pw: FileNotFoundError",
        ),
        (
            ["--pushgateway", "127.0.0.1:1", "--basic-auth-user", "alice"],
            {},
            "basic auth needs both --basic-auth-user and a password (--basic-auth-password-file or "
            "GANGPLANK_BASIC_AUTH_PASSWORD)",
        ),
        (
            ["--pushgateway", "127.0.0.1:1", "--bearer-token-file", "/dev/null"],
            {},
            "--bearer-token-file: /dev/null is empty",
        ),
        (
            ["--pushgateway", "127.0.0.1:1", "--tls-ca-file", "/dev/null"],
            {},
            "--tls-* options need an https:// Pushgateway URL",
        ),
        (
            ["--pushgateway", "127.0.0.1:1", "--header", "Authorization: Bearer x"],
            {},
            "--header: Authorization is set by the sidecar (use --basic-auth-* or --bearer-token-file for "
            "Authorization)",
        ),
        (["--pushgateway", "127.0.0.1:1", "--push-timeout", "0"], {}, "--push-timeout: Input should be greater than 0"),
        (
            ["--pushgateway", "127.0.0.1:1"],
            {"GANGPLANK_PUSH_RETRIES": "-1"},
            "--push-retries: Input should be greater than or equal to 0",
        ),
        (
            ["--pushgateway", "127.0.0.1:1", "--basic-auth-user", "alice"],
            {"GANGPLANK_BASIC_AUTH_PASSWORD": PASSWORD, "GANGPLANK_BEARER_TOKEN": TOKEN},
            "use either basic auth or a bearer token, not both",
        ),
    ],
)
def test_configuration_mistakes_exit_2_without_secrets(args: list[str], env: dict[str, str], message: str) -> None:
    done = subprocess.run([*SIDECAR, *args], input=b"", capture_output=True, timeout=30, env={**os.environ, **env})
    assert done.returncode == 2
    assert done.stderr.decode() == f"gangplank-sidecar: {message}\n"
    assert PASSWORD.encode() not in done.stderr and TOKEN.encode() not in done.stderr


def test_prune_uses_the_same_tls_and_auth_options_as_the_push(gateway: str, certs: Path) -> None:
    done, _ = run_sidecar(
        gateway, *tls(certs), "--basic-auth-user", "alice", "--basic-auth-password-file", str(certs / "password")
    )
    assert done.returncode == 0, done.stderr
    prune = [
        *SIDECAR,
        "prune",
        "--pushgateway",
        gateway,
        *tls(certs),
        "--older-than",
        "1ms",
        "--job",
        "secure",
        "--basic-auth-user",
        "alice",
    ]
    wrong = subprocess.run(
        [*prune, "--basic-auth-password-file", str(certs / "wrong"), "--yes"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (wrong.returncode, wrong.stdout) == (1, "")
    assert wrong.stderr == (
        f"gangplank-sidecar prune: cannot list the groups of the Pushgateway at {gateway}: HTTP 401 Unauthorized: "
        "the gateway rejected the credentials (check --basic-auth-user and its password, or --bearer-token-file)\n"
    )
    right = subprocess.run(
        [*prune, "--basic-auth-password-file", str(certs / "password"), "--yes"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert right.returncode == 0, right.stderr
    assert sorted(line.split("  ")[-1] for line in right.stdout.splitlines()) == [
        "job=secure phase=sidecar",
        "job=secure phase=train",
    ]
    assert "deleted 2" in right.stderr
    assert scrape_tls(gateway, certs) == {}
    assert PASSWORD not in right.stdout + right.stderr + wrong.stdout + wrong.stderr
