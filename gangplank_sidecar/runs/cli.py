"""The ``gangplank-runs`` command: list, show, compare, export and search the run history.

Tables are for a person; ``--json`` gives a script the same facts. Every call first marks
`interrupted` the runs whose sidecar died without an end record (see db.mark_stale).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import NoReturn, TextIO

from gangplank_sidecar.curve import Curve
from gangplank_sidecar.directions import lower_is_better
from gangplank_sidecar.environment import env
from gangplank_sidecar.options import BY_FLAG
from gangplank_sidecar.parsers.protocol import spell_non_finite
from gangplank_sidecar.runs import db, plot, search
from gangplank_sidecar.runs.db import RunRow
from gangplank_sidecar.runs.style import PLAIN, SEVERITY, Cell, Painter, best, status
from gangplank_sidecar.sparkline import UNICODE, curve_lines, levels_for

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2

DB = BY_FLAG["--db"]  # the sidecar's own option: one variable for both commands


class UsageError(ValueError):
    """A bad option or query: one line on stderr, exit 2."""


class NotFound(LookupError):
    """No such run, or no history: one line on stderr, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def number(value: float | None) -> str:
    """A value for a person: 6 significant digits, the protocol's spelling of non-finite values."""
    if value is None:
        return ""
    return f"{value:.6g}" if math.isfinite(value) else spell_non_finite(value)


def exact(value: float) -> float | str:
    """A value for a script: the float itself, or the protocol's string for a non-finite one."""
    return value if math.isfinite(value) else number(value)


def when(timestamp: float | None) -> str:
    return "" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool], paint: Painter = PLAIN) -> str:
    """Columns padded to their plain text; a ``Cell``'s text is painted, its padding is not."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for row in [header, *rows]:
        cells = [
            " " * (w - len(c)) + paint(c) if r else paint(c) + " " * (w - len(c)) for c, w, r in zip(row, widths, right)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def summary(r: RunRow) -> dict:
    """A run as one JSON object (list, search, compare, and the head of show)."""
    best = {}
    for key in r.keys:
        found = r.best(key)
        if found is not None:
            best[key] = {"value": found[0], "epoch": found[1] if r.phase == "train" else None}
    return {
        "run": r.run,
        "phase": r.phase,
        "job": r.job,
        "labels": r.labels,
        "status": r.status,
        "started": r.started,
        "ended": r.ended,
        "epochs": r.epochs,
        "planned_epochs": r.planned_epochs,
        "elapsed": r.elapsed,
        "params": r.params,
        "framework": r.framework,
        "source": r.source,
        "last": {key: exact(v) for key in r.keys if (v := r.last(key)) is not None},
        "best": best,
        "checks": [c["name"] for c in r.checks if c["fired"]],
    }


def _elapsed(r: RunRow) -> str:
    return "" if r.elapsed is None else f"{r.elapsed:.1f} s"


def list_table(runs: list[RunRow], sort: str | None, paint: Painter = PLAIN) -> str:
    if not runs:
        return "no runs\n"
    header = ["RUN", "PHASE", "JOB", "STATUS", "STARTED", "EPOCHS", "ELAPSED"]
    with_labels = any(r.labels for r in runs)
    if with_labels:
        header.append("LABELS")
    if sort:
        header.append(f"BEST {sort}")
    rows = []
    for r in runs:
        row = [
            r.run,
            r.phase,
            r.job,
            status(r.status),
            when(r.started),
            "" if r.epochs is None else str(r.epochs),
            _elapsed(r),
        ]
        if with_labels:
            row.append(",".join(f"{k}={v}" for k, v in sorted(r.labels.items())))
        if sort:
            best = r.best(sort)
            row.append(number(best[0]) if best else "")
        rows.append(row)
    right = [False] * 5 + [True, True] + [False] * with_labels + [True] * bool(sort)
    return table(header, rows, right, paint)


def _epoch_label(r: RunRow, epoch: int) -> str:
    return "-" if r.phase != "train" and epoch == db.EVALUATE_EPOCH else str(epoch)


def system_text(system: dict) -> str:
    parts = [f"{system['samples']} samples"]
    if system["peak_memory_bytes"] is not None:
        parts.append(f"peak memory {system['peak_memory_bytes'] / 2**20:.1f} MiB")
    for key, name in (("mean_cpu_ratio", "mean CPU"), ("mean_gpu_ratio", "mean GPU")):
        if system[key] is not None:
            parts.append(f"{name} {system[key] * 100:.1f}%")
    return ", ".join(parts)


def curves_text(r: RunRow, levels: str = UNICODE, paint: Painter = PLAIN) -> list[str]:
    """A sparkline per metric over the training epochs, the best epoch marked (``sparkline``)."""
    if r.phase != "train":
        return []
    curves = {k: Curve.of([(e, v[k]) for e, v in sorted(r.rows.items()) if k in v]) for k in r.keys}
    bests = {k: b[1] for k in r.keys if (b := r.best(k)) is not None}
    lines = curve_lines(curves, bests, levels, mark=lambda text: paint(best(text)))
    if not lines:
        return []
    epochs = sorted(r.rows)
    return ["", f"  curves over epochs {epochs[0]}-{epochs[-1]}"] + ["  " + line for line in lines]


def show_text(r: RunRow, levels: str = UNICODE, paint: Painter = PLAIN) -> str:
    facts = [
        ("job", r.job),
        ("status", status(r.status)),
        ("started", when(r.started)),
        ("ended", when(r.ended)),
        ("elapsed", _elapsed(r)),
        ("epochs", "" if r.epochs is None else f"{r.epochs}" + (f" of {r.planned_epochs}" if r.planned_epochs else "")),
        ("params", "" if r.params is None else str(r.params)),
        ("framework", r.framework or ""),
        ("source", r.source),
        ("labels", ",".join(f"{k}={v}" for k, v in sorted(r.labels.items()))),
    ]
    out = [f"run {r.run} ({r.phase})"] + [f"  {name:<9}  {paint(value)}" for name, value in facts if value]
    keys = r.keys
    if keys:
        found = [r.best(k) for k in keys]
        at = [b[1] if b and r.phase == "train" else None for b in found]
        rows: list[list[str]] = [
            [_epoch_label(r, e), *(best(number(v.get(k))) if e == a else number(v.get(k)) for k, a in zip(keys, at))]
            for e, v in sorted(r.rows.items())
        ]
        if r.phase == "train":
            rows.append(["best", *(best(number(b[0])) if b else "" for b in found)])
            rows.append(["at epoch", *(str(b[1]) if b else "" for b in found)])
        out.append("")
        out.extend("  " + line for line in table(["epoch", *keys], rows, [True] * (len(keys) + 1), paint).splitlines())
        out.extend(curves_text(r, levels, paint))
    if r.system:
        out.append("")
        out.append("  system   " + system_text(r.system))
    out.append("")
    if not r.checks:
        out.append("  checks: none fired")
    for c in r.checks:
        span = (
            ""
            if c["first_epoch"] is None
            else f", epoch {c['first_epoch']}"
            + (f"-{c['last_epoch']}" if c["last_epoch"] not in (None, c["first_epoch"]) else "")
        )
        state = "firing" if c["fired"] else "cleared"
        line = f"  check {c['name']} ({c['code'] or '-'}, {c['severity']}{span}, {state}): {c['message']}"
        out.append(paint(Cell(line, SEVERITY.get(c["severity"], "red")) if c["fired"] else Cell(line, None, "dark")))
    return "\n".join(out) + "\n"


def compare_table(runs: list[RunRow], paint: Painter = PLAIN) -> str:
    keys = sorted({k for r in runs for k in r.keys})
    header = ["", *(r.run for r in runs)]
    rows = [
        ["phase", *(r.phase for r in runs)],
        ["job", *(r.job for r in runs)],
        ["status", *(status(r.status) for r in runs)],
        ["epochs", *("" if r.epochs is None else str(r.epochs) for r in runs)],
        ["elapsed", *(_elapsed(r) for r in runs)],
        ["params", *("" if r.params is None else str(r.params) for r in runs)],
    ]
    for key in keys:
        rows.append([f"{key} last", *(number(r.last(key)) for r in runs)])
        cells: list[str] = []
        found = [r.best(key) for r in runs]
        values = [b[0] for b in found if b is not None]
        winner = (min if lower_is_better(key) else max)(values) if len(values) > 1 else None
        for r, b in zip(runs, found):
            text = "" if b is None else number(b[0]) + (f" @{b[1]}" if r.phase == "train" else "")
            cells.append(best(text) if b is not None and b[0] == winner else text)
        rows.append([f"{key} best ({'min' if lower_is_better(key) else 'max'})", *cells])
    rows.append(
        [
            "checks",
            *(
                Cell(names, "red") if (names := ",".join(c["name"] for c in r.checks if c["fired"])) else "-"
                for r in runs
            ),
        ]
    )
    return table(header, rows, [False] + [True] * len(runs), paint)


def export(r: RunRow, fmt: str) -> str:
    """One row per epoch, one column per metric: ``epoch``, then the keys in order."""
    keys = r.keys
    records = []
    for epoch, values in sorted(r.rows.items()):
        record: dict[str, object] = {"epoch": None if _epoch_label(r, epoch) == "-" else epoch}
        record.update({k: exact(values[k]) if k in values else None for k in keys})
        records.append(record)
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for record in records:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in record.values()])
    return buffer.getvalue()


def _date(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"bad date {text!r}: expected YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]") from None


def _label_filter(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"bad label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _count(text: str) -> int:
    """A number of runs: 1 or more (``-1`` used to mean "all but the first")."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of runs, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(DB.flag, default=argparse.SUPPRESS, metavar="PATH", help=DB.help + DB.env_note())
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for a script")
    common.add_argument(
        "--no-color",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no colours (also NO_COLOR=1; off anyway when not a terminal)",
    )
    common.add_argument(
        "--stale-after",
        type=float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"a running run with no write for this long is interrupted (default {db.STALE_AFTER:g})",
    )
    p = _Parser(prog="gangplank-runs", description="The run history that gangplank-sidecar records.", parents=[common])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ls = sub.add_parser("list", parents=[common], help="the runs, oldest first")
    ls.add_argument("--job", help="only this job")
    ls.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="only runs with this label")
    ls.add_argument(
        "--status", choices=("running", "ok", "interrupted", "failed", "ended"), help="only runs with this status"
    )
    ls.add_argument("--phase", choices=("train", "test"), help="only this phase")
    ls.add_argument("--since", metavar="DATE", help="only runs started at or after DATE (local time)")
    ls.add_argument("--until", metavar="DATE", help="only runs started before DATE (local time)")
    ls.add_argument("--sort", metavar="METRIC", help="best runs first by this metric's best value")
    ls.add_argument("--limit", type=_count, metavar="N", help="only the last N runs (the first N with --sort)")
    show = sub.add_parser("show", parents=[common], help="a run's epochs by metrics, and its checks")
    show.add_argument("run", nargs="?", metavar="RUN", help="a run id or a unique prefix (default: the latest run)")
    show.add_argument("--phase", choices=("train", "test"), help="only this phase")
    compare = sub.add_parser("compare", parents=[common], help="runs side by side, with best values")
    compare.add_argument("runs", nargs="+", metavar="RUN")
    compare.add_argument("--phase", choices=("train", "test"), default="train", help="which phase (default: train)")
    ex = sub.add_parser("export", parents=[common], help="a run's epochs as CSV or JSON")
    ex.add_argument("run", metavar="RUN")
    ex.add_argument("--format", choices=("csv", "json"), default="csv")
    ex.add_argument("--phase", choices=("train", "test"), help="which phase (default: train, else test)")
    se = sub.add_parser("search", parents=[common], help='runs matching a query such as "val_loss<0.1 job=mnist"')
    se.add_argument("query", nargs="+", help="terms, quoted together or not")
    pl = sub.add_parser(
        "plot", parents=[common], help="the runs' curves over the epochs, in the terminal or as an image"
    )
    pl.add_argument("runs", nargs="+", metavar="RUN")
    pl.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help="a metric to draw (repeatable; default: the losses, else every metric)",
    )
    pl.add_argument(
        "--output", metavar="FILE", type=Path, help=f"write a .png or .svg instead (needs matplotlib: {plot.INSTALL})"
    )
    pl.add_argument("--width", type=int, metavar="COLUMNS", help="chart width (default: the terminal's, at most 100)")
    pl.add_argument("--height", type=int, metavar="ROWS", help="chart height (default: the terminal's, at most 25)")
    return p


def _resolve(conn: sqlite3.Connection, run: str | None, phase: str | None) -> list[RunRow]:
    """The rows of one run id (given exactly, by a unique prefix, or the latest), train before test."""
    if run is None:
        latest = conn.execute("SELECT run FROM runs ORDER BY started DESC, id DESC LIMIT 1").fetchone()
        if latest is None:
            raise NotFound("no runs recorded yet")
        ids = [latest[0]]
    else:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT run FROM runs WHERE run = ? OR substr(run, 1, ?) = ?", (run, len(run), run)
            )
        ]
        if run in ids:
            ids = [run]
        if not ids:
            raise NotFound(f"no run {run!r}")
        if len(ids) > 1:
            raise UsageError(f"{run!r} matches {len(ids)} runs: {', '.join(sorted(ids)[:5])}")
    where = "WHERE r.run = ?" + (" AND r.phase = ?" if phase else "")
    args: tuple[str, ...] = (ids[0], phase) if phase else (ids[0],)
    rows = sorted(db.load_runs(conn, where, args), key=lambda r: r.phase != "train")
    if not rows:
        raise NotFound(f"run {ids[0]!r} has no {phase} phase")
    return rows


def _list(conn: sqlite3.Connection, args: argparse.Namespace) -> list[RunRow]:
    where, params = [], []
    if args.job:
        where.append("p.name = ?")
        params.append(args.job)
    for column in ("status", "phase"):
        if getattr(args, column):
            where.append(f"r.{column} = ?")
            params.append(getattr(args, column))
    if args.since:
        where.append("r.started >= ?")
        params.append(_date(args.since))
    if args.until:
        where.append("r.started < ?")
        params.append(_date(args.until))
    runs = db.load_runs(conn, "WHERE " + " AND ".join(where) if where else "", tuple(params))
    labels = _label_filter(args.label)
    runs = [r for r in runs if all(r.labels.get(k) == v for k, v in labels.items())]
    if args.sort:
        if runs and all(args.sort not in r.keys for r in runs):
            known = sorted({key for r in runs for key in r.keys})
            raise UsageError(f"--sort {args.sort}: no run has this metric (they have: {', '.join(known) or 'none'})")
        ranked = [(best[0], r) for r in runs if (best := r.best(args.sort)) is not None]
        ranked.sort(key=lambda pair: pair[0], reverse=not lower_is_better(args.sort))
        runs = [r for _, r in ranked]
        return runs[: args.limit] if args.limit is not None else runs
    return runs[-args.limit :] if args.limit else runs


def _plot(conn: sqlite3.Connection, args: argparse.Namespace, unicode: bool, paint: Painter) -> str:
    """The chart as text, or a line saying where the image went (``--output``)."""
    runs = [_resolve(conn, run, "train")[0] for run in args.runs]
    try:
        chart = plot.lines(runs, args.metric or plot.default_metrics(runs))
        if getattr(args, "json", False):
            return (
                json.dumps(
                    [
                        {
                            "run": ln.run,
                            "metric": ln.metric,
                            "epochs": ln.epochs,
                            "values": [exact(v) for v in ln.values],
                        }
                        for ln in chart
                    ],
                    indent=2,
                )
                + "\n"
            )
        if args.output is not None:
            plot.image(chart, plot.title(runs), args.output)
            return f"wrote {args.output}\n"
    except plot.PlotError as exc:
        raise UsageError(str(exc)) from None
    size = shutil.get_terminal_size((80, 24))
    width, height = args.width or min(size.columns, 100), args.height or min(size.lines - 2, 25)
    if width < 20 or height < 8:
        raise UsageError(f"a chart needs at least 20 columns and 8 rows, not {width}x{height} (--width, --height)")
    return plot.terminal(chart, plot.title(runs), width, height, unicode, paint)


def execute(args: argparse.Namespace, out: TextIO) -> None:
    path = Path(getattr(args, "db", None) or db.default_path())
    try:
        conn = db.connect(path, create=False)
    except FileNotFoundError as exc:
        raise NotFound(str(exc)) from None
    as_json = getattr(args, "json", False)
    paint = Painter(getattr(args, "no_color", False))
    levels = levels_for(getattr(out, "encoding", None))
    try:
        db.mark_stale(conn, getattr(args, "stale_after", db.STALE_AFTER))
        if args.command in ("list", "search"):
            if args.command == "search":
                terms = search.parse(" ".join(args.query))
                runs = [r for r in db.load_runs(conn) if all(t.matches(r) for t in terms)]
            else:
                runs = _list(conn, args)
            sort = getattr(args, "sort", None)
            out.write(
                json.dumps([summary(r) for r in runs], indent=2) + "\n" if as_json else list_table(runs, sort, paint)
            )
        elif args.command == "show":
            runs = _resolve(conn, args.run, args.phase)
            if as_json:
                out.write(
                    json.dumps(
                        [
                            summary(r) | {"rows": json.loads(export(r, "json")), "checks": r.checks, "system": r.system}
                            for r in runs
                        ],
                        indent=2,
                    )
                    + "\n"
                )
            else:
                out.write("\n".join(show_text(r, levels, paint) for r in runs))
        elif args.command == "compare":
            runs = [_resolve(conn, run, args.phase)[0] for run in args.runs]
            out.write(
                json.dumps([summary(r) for r in runs], indent=2) + "\n" if as_json else compare_table(runs, paint)
            )
        elif args.command == "plot":
            out.write(_plot(conn, args, levels == UNICODE, paint))
        else:
            runs = _resolve(conn, args.run, args.phase)
            out.write(export(runs[0], args.format))
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        args.db = getattr(args, "db", None) or env(DB.env or "")
        execute(args, sys.stdout)
    except (UsageError, ValueError) as exc:
        print(f"gangplank-runs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NotFound as exc:
        print(f"gangplank-runs: {exc.args[0]}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except sqlite3.Error as exc:
        print(f"gangplank-runs: run history: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_OK
