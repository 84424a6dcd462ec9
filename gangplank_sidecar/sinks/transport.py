"""How a push travels: HTTP(S) with separate connect and read timeouts, auth, TLS and headers.

``Transport`` is a prometheus-client ``handler``, so it plugs into ``push_to_gateway`` as
well as into our worker. It opens one connection per push (a gateway that restarts never
leaves us a dead keep-alive socket) and turns every failure into one plain sentence.
Secrets live in ``SecretStr`` and are only ever written into the request headers; any text
that comes back from the server (status reason, body) has every configured secret value cut
out before it goes into a message, since a proxy may echo the request's headers.

Configuration mistakes raise ``ValueError`` (the command line turns them into exit 2).
"""

from __future__ import annotations

import base64
import http.client
import re
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

from gangplank_sidecar.delivery import PushError, TransportConfig

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_RESERVED_HEADERS = frozenset({"authorization", "content-type", "content-length", "host", "transfer-encoding"})
_MAX_BODY = 4096
REDACTED = "<redacted>"


def read_secret(path: str, option: str) -> SecretStr:
    """The file's content without its trailing newline; an error names the file, never the content."""
    try:
        text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{option}: cannot read {path}: {exc.__class__.__name__}") from None
    if not text:
        raise ValueError(f"{option}: {path} is empty")
    return SecretStr(text)


def parse_headers(lines: Sequence[str]) -> tuple[tuple[str, SecretStr], ...]:
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _HEADER_NAME.match(name) or "\r" in value or "\n" in value:
            raise ValueError(f"--header: expected 'Name: value', got a header named {name!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(
                f"--header: {name} is set by the sidecar (use --basic-auth-* or --bearer-token-file for Authorization)"
            )
        headers.append((name, SecretStr(value)))
    return tuple(headers)


def check(url: str, config: TransportConfig) -> None:
    """Refuses what would silently do something else than asked, and unreadable TLS files."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ValueError(
            "put credentials in --basic-auth-user and --basic-auth-password-file, not in the Pushgateway URL"
        )
    if parts.scheme != "https" and (config.tls_ca_file or config.tls_cert_file):
        raise ValueError("--tls-* options need an https:// Pushgateway URL")
    if (config.basic_auth_user is None) != (config.basic_auth_password is None):
        raise ValueError(
            "basic auth needs both --basic-auth-user and a password (--basic-auth-password-file or "
            "GANGPLANK_BASIC_AUTH_PASSWORD)"
        )
    if config.basic_auth_password is not None and config.bearer_token is not None:
        raise ValueError("use either basic auth or a bearer token, not both")
    if config.tls_key_file and not config.tls_cert_file:
        raise ValueError("--tls-key-file needs --tls-cert-file")
    ssl_context(config)


def ssl_context(config: TransportConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(config.tls_ca_file) if config.tls_ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"--tls-ca-file: cannot load {config.tls_ca_file}: {exc.__class__.__name__}") from None
    if config.tls_cert_file:
        try:
            context.load_cert_chain(
                str(config.tls_cert_file), str(config.tls_key_file) if config.tls_key_file else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--tls-cert-file: cannot load {config.tls_cert_file}: {exc.__class__.__name__}") from None
    return context


class Transport:
    """A prometheus-client handler: ``handler(url, method, timeout, headers, data)()`` sends one request.

    ``timeout`` (from the caller) caps both of our own timeouts, so a final flush never
    outlives its deadline.
    """

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self._context = ssl_context(config)
        self._headers = [(name, value.get_secret_value()) for name, value in config.headers]
        if config.basic_auth_user and config.basic_auth_password:
            pair = f"{config.basic_auth_user}:{config.basic_auth_password.get_secret_value()}".encode()
            self._headers.append(("Authorization", "Basic " + base64.b64encode(pair).decode()))
        if config.bearer_token:
            self._headers.append(("Authorization", "Bearer " + config.bearer_token.get_secret_value()))
        secrets = [value for _, value in self._headers]
        for secret in (config.basic_auth_password, config.bearer_token):
            if secret is not None:
                secrets.append(secret.get_secret_value())
        secrets += [
            value.split(" ", 1)[1] for name, value in self._headers if name == "Authorization"
        ]  # the base64 pair
        secrets += [quote(secret, safe="") for secret in secrets]
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` (from a server) without any configured secret value, as sent or URL-encoded."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def __call__(
        self, url: str, method: str, timeout: float | None, headers: Sequence[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return lambda: self.send(url, method, data, headers, timeout)

    def send(
        self, url: str, method: str, data: bytes, headers: Sequence[tuple[str, str]], timeout: float | None = None
    ) -> None:
        self.request(url, method, data, headers, timeout)

    def request(
        self,
        url: str,
        method: str,
        data: bytes,
        headers: Sequence[tuple[str, str]],
        timeout: float | None = None,
        max_body: int | None = None,
    ) -> bytes:
        """One request; the answer's body: its start (for an error message), or all of it up to ``max_body`` bytes."""
        parts = urlsplit(url)
        connect_timeout = min(self.config.connect_timeout, timeout or self.config.connect_timeout)
        read_timeout = min(self.config.push_timeout, timeout or self.config.push_timeout)
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=connect_timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=connect_timeout)
        stage = "connect"
        try:
            conn.connect()
            stage = "answer"
            conn.sock.settimeout(read_timeout)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(method, path, body=data, headers=dict([*headers, *self._headers, ("Connection", "close")]))
            response = conn.getresponse()
            body = response.read(_MAX_BODY if max_body is None else max_body + 1)
        except TimeoutError:  # socket.timeout is its alias
            waited = connect_timeout if stage == "connect" else read_timeout
            raise PushError(f"no {'connection' if stage == 'connect' else 'answer'} within {waited:.3g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise PushError(
                f"TLS: the gateway's certificate is not trusted ({exc.verify_message}); check --tls-ca-file"
            ) from None
        except ssl.SSLError as exc:
            raise PushError(
                f"TLS: {exc.reason or exc.__class__.__name__} (a client certificate may be needed: --tls-cert-file)"
            ) from None
        except ConnectionRefusedError:
            raise PushError("connection refused") from None
        except (http.client.IncompleteRead, http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionError):
            raise PushError("the connection was closed before the gateway's answer was complete") from None
        except OSError as exc:
            raise PushError(f"{exc.__class__.__name__}: {exc.strerror or exc}") from None
        finally:
            conn.close()
        if response.status in (401, 403):
            raise PushError(
                f"HTTP {response.status} {self.redact(response.reason)}: the gateway rejected the credentials "
                "(check --basic-auth-user and its password, or --bearer-token-file)",
                response.status,
            )
        if response.status >= 400:
            detail = self.redact(body.decode("utf-8", "replace")).strip().splitlines()
            reason = self.redact(response.reason)
            raise PushError(
                f"HTTP {response.status} {reason}" + (f": {detail[0][:200]}" if detail else ""), response.status
            )
        if max_body is not None and len(body) > max_body:
            raise PushError(f"the answer is longer than {max_body} bytes")
        return body
