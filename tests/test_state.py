"""The run state: finished runs are bounded, and work put off is done before anyone copies a series."""

from __future__ import annotations

import threading

from gangplank_sidecar.aggregation.state import FINISHED_KEPT, RunState, Store
from gangplank_sidecar.sinks.summary import summarize


def test_only_the_last_finished_runs_are_kept_and_the_rest_counted() -> None:
    store = Store()
    for n in range(FINISHED_KEPT + 3):
        series = store.begin("j", "train", f"r{n}", when=1.0)
        store.update(series, "epoch", lambda s: setattr(s, "epoch", 1))
    runs = store.all_runs()
    assert (len(runs), store.dropped) == (FINISHED_KEPT + 1, 2)
    assert [s.run for s in runs[:2]] == ["r2", "r3"]
    assert runs[-1].run == f"r{FINISHED_KEPT + 2}"
    summary = summarize(runs, dropped=store.dropped).splitlines()
    assert (
        summary[0]
        == f"gangplank-sidecar: 2 earlier runs not shown (only the last {FINISHED_KEPT} finished runs are kept)"
    )
    assert summary[1] == "gangplank-sidecar: run r2 (job j, train): 1 epoch, no end record"
    assert not summarize(runs).startswith("gangplank-sidecar: 2 earlier")


def test_settle_runs_once_before_a_snapshot_and_before_listeners() -> None:
    store, settled, heard = Store(), [], []
    series = store.begin("j", "train", "r", when=1.0)

    def put_off(s: RunState) -> None:
        s.settle = lambda s: (settled.append(s.epoch), setattr(s, "status", "settled"))
        s.epoch = 3

    store.update(series, "epoch", put_off)
    assert settled == []
    assert [(s.epoch, s.status, s.settle) for s in store.snapshot()] == [(3, "settled", None)]
    assert [(s.status, s.settle) for s in store.all_runs()] == [("settled", None)]
    store.listeners.append(lambda event, s: heard.append((event, s.status)))
    store.update(series, "epoch", put_off)
    assert (settled, heard) == ([3, 3], [("epoch", "settled")])


def test_a_run_set_aside_is_settled_first() -> None:
    store = Store()
    series = store.begin("j", "train", "a", when=1.0)
    store.update(series, "epoch", lambda s: setattr(s, "settle", lambda s: setattr(s, "status", "settled")))
    store.begin("j", "train", "b", when=2.0)
    assert [(s.run, s.status) for s in store.finished] == [("a", "settled")]


def test_watchers_hear_every_change_with_the_lock_free_and_settle_nothing() -> None:
    """A watcher (the push sink's wake-up) runs after the lock is released: another thread can read the store."""
    store, seen = Store(), []

    def watcher() -> None:
        reader = threading.Thread(target=lambda: seen.append((store.version, store.job())))  # job() takes the lock
        reader.start()
        reader.join(10)
        assert not reader.is_alive()

    store.watchers.append(watcher)
    series = store.begin("j", "train", "r", when=1.0)
    store.update(series, "epoch", lambda s: setattr(s, "settle", lambda s: setattr(s, "status", "settled")))
    assert series.settle is not None  # no listener: the put-off work waits for someone to look
    store.forget(series)
    store.forget(series)  # already gone: no change, nobody told
    assert seen == [(1, "j"), (2, "j"), (3, "gangplank")]
