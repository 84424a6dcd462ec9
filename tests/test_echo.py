"""A live log for a person: under a terminal the protocol records are not echoed, the Keras lines are.

The terminal is a real pseudo-terminal (raw mode, so that its bytes are the bytes we wrote);
the training is a real Keras fit whose stdout is also teed to a file, so the test knows every
byte the sidecar read. The expected echo is that file without the records, cut out by a
regular expression independent of the sidecar's filter.
"""

from __future__ import annotations

import os
import pty
import re
import shlex
import subprocess
import sys
import tty
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT, SIDECAR, keras_env
from gangplank_sidecar.sources.records import RecordFilter

RECORD = re.compile(rb'\{"gangplank":[^\n]*\n')
NOTICE = "gangplank-sidecar: stdout is a terminal: protocol records are not echoed (--echo all shows them)\n"


def under_pty(tmp_path: Path, *options: str) -> tuple[int, bytes, str, bytes]:
    """Runs a Keras fit wrapped by the sidecar, with the sidecar's stdout on a pty.

    Returns (code, screen, stderr, what Keras wrote).
    """
    raw = tmp_path / "raw.out"
    script = [sys.executable, str(ROOT / "tests/scripts/train_digits.py"), str(tmp_path / "keras.json")]
    train = f"{shlex.join(script)} | tee {shlex.quote(str(raw))}"
    argv = [*SIDECAR, "--no-history", "--system-interval", "0", *options, "--", "bash", "-o", "pipefail", "-c", train]
    master, slave = pty.openpty()
    tty.setraw(slave)
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, env=keras_env(EPOCHS="2")
    )
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: every writer of the pty is gone
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, screen, stderr.decode(), raw.read_bytes()


def test_a_terminal_sees_the_keras_lines_and_not_the_records(tmp_path: Path) -> None:
    code, screen, stderr, raw = under_pty(tmp_path)
    assert code == 0, stderr
    assert stderr.startswith(NOTICE)
    records = RECORD.findall(raw)
    assert len(records) == 7  # fit: start, 2 epochs, end; evaluate: start, evaluate, end
    assert re.search(
        rb'[^\n]\{"gangplank": 1, "event": "epoch"', raw
    )  # the bar text before a record (design.md, section 2)
    assert screen == RECORD.sub(b"", raw)
    assert b'{"gangplank":' not in screen
    assert screen.count(b"Epoch 1/2") == 1 and screen.count(b"Epoch 2/2") == 1 and b"val_loss: " in screen


def test_echo_all_shows_both_on_a_terminal(tmp_path: Path) -> None:
    code, screen, stderr, raw = under_pty(tmp_path, "--echo", "all")
    assert code == 0, stderr
    assert NOTICE not in stderr
    assert screen == raw
    assert len(RECORD.findall(screen)) == 7


def test_a_pipe_still_gets_every_byte_and_echo_text_is_explicit() -> None:
    text = (
        b'Epoch 1/1\n\r7/7 bar - loss: 0.5{"gangplank": 1, "event": "start", "run": "r", "phase": "train", "time": '
        b'1.0, "params": {"total": 1}}\n\r7/7 done\n'
    )
    piped = subprocess.run(
        [*SIDECAR, "--no-history", "--system-interval", "0"], input=text, capture_output=True, timeout=60
    )
    assert (piped.returncode, piped.stdout) == (0, text)
    assert NOTICE.encode() not in piped.stderr
    stripped = subprocess.run(
        [*SIDECAR, "--no-history", "--system-interval", "0", "--echo", "text"],
        input=text,
        capture_output=True,
        timeout=60,
    )
    assert (stripped.returncode, stripped.stdout) == (0, b"Epoch 1/1\n\r7/7 bar - loss: 0.5\r7/7 done\n")
    assert NOTICE.encode() not in stripped.stderr


fragments = st.sampled_from(
    [b"\n", b"\r", b"x", b"{", b'{"', b'{"gang', b'{"gangplank":', b'{"gangplank": 1}', b"\xff", b" - loss: 0.5"]
)


@given(st.lists(fragments, max_size=40), st.lists(st.integers(1, 20), max_size=20))
def test_the_filter_cuts_records_the_same_however_the_stream_is_chunked(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    chunks, at = [], 0
    for cut in cuts:
        chunks.append(data[at : at + cut])
        at += cut
    chunks.append(data[at:])
    records = RecordFilter()
    shown = b"".join(records(chunk) for chunk in chunks if chunk) + records.end()
    # A record runs to its newline, or to the end of the stream when it is unfinished.
    assert shown == re.sub(rb'\{"gangplank":[^\n]*(?:\n|\Z)', b"", data)
