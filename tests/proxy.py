"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real server (the Pushgateway).

Faults: ``refuse`` (nothing listens on the port), ``hang`` (accept, read the request, never
answer), ``500`` and ``503`` (answered by the proxy), ``cut`` (forward, then close in the
middle of the answer's status line: the gateway took the push, the client cannot know it),
``latency`` (forward after ``latency`` seconds).
Without a fault it forwards. Every request is recorded (method, path, headers, body, what
happened to it), so tests can count pushes exactly. One request per connection, as the
sidecar sends them.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from conftest import Pushgateway

FAULTS = ("refuse", "hang", "500", "503", "cut", "latency")
_REASONS = {"500": "Internal Server Error", "503": "Service Unavailable"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    outcome: str = ""  # "forwarded" (a whole answer went back), or the fault's name


@dataclass
class FaultProxy:
    upstream: str  # "127.0.0.1:PORT"
    fault: str | None = None
    latency: float = 0.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._running = True
        self._listener: socket.socket | None = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()

    def set(self, fault: str | None, latency: float = 0.0) -> None:
        assert fault is None or fault in FAULTS, fault
        with self._lock:
            self.fault, self.latency = fault, latency
            if fault == "refuse" and self._listener is not None:
                self._listener.close()
                self._listener = None
            elif fault != "refuse" and self._listener is None:
                self._listener = self._listen(self.port)

    def clear(self) -> None:
        self.set(None)

    def outcomes(self, path_part: str = "") -> list[str]:
        return [r.outcome for r in self.requests if path_part in r.path]

    def stop(self) -> None:
        self._running = False
        self.set(None)
        self._thread.join(5)
        with self._lock:
            if self._listener is not None:
                self._listener.close()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(16)
        s.settimeout(0.02)
        return s

    def _accept_loop(self) -> None:
        while self._running:
            with self._lock:
                listener = self._listener
            if listener is None:
                time.sleep(0.02)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            client.settimeout(5)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            try:
                request = _read_request(client)
            except (OSError, ValueError):
                return
            self.requests.append(request)
            try:
                self._answer(client, request)
            except OSError:
                request.outcome += " (client gone)"

    def _answer(self, client: socket.socket, request: Request) -> None:
        fault, latency = self.fault, self.latency
        request.outcome = fault or "forwarded"
        if fault == "hang":
            self._hang(client)
        elif fault in _REASONS:
            body = f"injected {fault}\n".encode()
            head = f"HTTP/1.1 {fault} {_REASONS[fault]}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            client.sendall(head.encode() + body)
        else:
            time.sleep(latency if fault == "latency" else 0)
            answer = self._forward(request)
            client.sendall(answer[: answer.index(b"\r\n") // 2] if fault == "cut" else answer)
            if fault == "latency":
                request.outcome = "forwarded"

    def _hang(self, client: socket.socket) -> None:
        """Holds the connection open, answering nothing, until the client gives up or the fault changes."""
        while self._running and self.fault == "hang":
            readable, _, _ = select.select([client], [], [], 0.02)
            if readable and not client.recv(4096):
                return

    def _forward(self, request: Request) -> bytes:
        host, port = self.upstream.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("connection", "host")}
            conn.request(request.method, request.path, body=request.body, headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        head = f"HTTP/1.1 {response.status} {response.reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        ctype = response.getheader("Content-Type")
        head += f"Content-Type: {ctype}\r\n\r\n" if ctype else "\r\n"
        return head.encode() + body


def _read_request(client: socket.socket) -> Request:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            raise ValueError("closed before the request was complete")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            raise ValueError("closed before the body was complete")
        body += chunk
    return Request(method, path, headers, body)


@pytest.fixture
def proxy(pushgateway: Pushgateway) -> Iterator[FaultProxy]:
    """A fault proxy in front of the test's Pushgateway (import this fixture into a test module)."""
    fault_proxy = FaultProxy(pushgateway.url.removeprefix("http://"))
    yield fault_proxy
    fault_proxy.stop()
