"""Append-only per-point results that survive a crash, and the tidy table built from them.

Each finished point is one JSON line in ``points.jsonl``, written and flushed to disk
(``fsync``) as soon as its result arrives. A driver killed mid-write leaves at most one partial
last line, which the next run drops before it appends. A resumed sweep skips every key with an
``ok`` line, so no finished point is computed or recorded twice; failed points are tried again.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from core.errors import ConfigError

log = structlog.get_logger()

POINTS_FILE = "points.jsonl"
STUDY_COPY = "study.toml"
TABLE_CSV = "results.csv"
TABLE_PARQUET = "results.parquet"


class PointStore:
    """``points.jsonl`` in ``out_dir``: what is done, and appending what finishes.

    Args:
        out_dir: The sweep's output directory (created).
        study_source: The study file's text; a directory holding another study is refused.
    """

    def __init__(self, out_dir: Path, study_source: str) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        copy = out_dir / STUDY_COPY
        if copy.exists():
            if copy.read_text("utf-8") != study_source:
                raise ConfigError(
                    f"Expected {out_dir} to hold this study's earlier results (or nothing), "
                    f"actual results of a different study ({copy}); use another --out"
                )
        else:
            copy.write_text(study_source, "utf-8")
        self.path = out_dir / POINTS_FILE
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped_partial = self._load()
        self._file: TextIO = self.path.open("a", encoding="utf-8")

    def _load(self) -> bool:
        """Read every complete line; cut a partial last line. Returns whether one was cut."""
        if not self.path.exists():
            return False
        raw = self.path.read_bytes()
        good_end = raw.rfind(b"\n") + 1
        for line in raw[:good_end].decode("utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log.warning("sweep_line_unreadable", file=str(self.path), line=line[:80])
                continue
            if rec.get("status") == "ok" or rec["key"] not in self.records:
                self.records[rec["key"]] = rec
        if good_end < len(raw):
            with self.path.open("r+b") as f:
                f.truncate(good_end)
            log.warning(
                "sweep_partial_line_dropped", file=str(self.path), bytes=len(raw) - good_end
            )
            return True
        return False

    def done(self, key: str) -> bool:
        """Whether ``key`` has a successful result."""
        rec = self.records.get(key)
        return rec is not None and rec.get("status") == "ok"

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one point's record and force it to disk before returning."""
        if self.done(str(record["key"])):
            return  # already recorded: never twice
        self._file.write(json.dumps(dict(record), allow_nan=False, default=_jsonable) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records[str(record["key"])] = dict(record)

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._file.close()

    def ok_records(self) -> list[dict[str, Any]]:
        """Successful points, sorted by parameters then seed."""
        rows = [r for r in self.records.values() if r.get("status") == "ok"]
        return sorted(rows, key=lambda r: (json.dumps(r["params"], sort_keys=True), r["seed"]))

    def failed_records(self) -> list[dict[str, Any]]:
        """Points whose last attempt failed."""
        return [r for r in self.records.values() if r.get("status") != "ok"]


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"Expected JSON-serialisable values in a summary, actual {type(x).__name__}")


def tidy_rows(records: Iterable[Mapping[str, Any]], param_names: list[str]) -> list[dict[str, Any]]:
    """One flat row per (point, seed): the parameters, the seed, then every scalar summary field."""
    rows = []
    for rec in records:
        row: dict[str, Any] = {"key": rec["key"]}
        for name in param_names:
            row[name] = rec["params"].get(name)
        row["seed"] = rec["seed"]
        for k, v in rec["summary"].items():
            if k in row or isinstance(v, dict | list):
                continue
            row[k] = v
        rows.append(row)
    return rows


def write_table(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write the tidy table as CSV, and as Parquet when pyarrow is installed."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    written = []
    csv_path = out_dir / TABLE_CSV
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    written.append(csv_path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        log.warning("parquet_skipped", reason="pyarrow not installed (pip install -e '.[cluster]')")
        return written
    table = pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows])
    pq.write_table(table, out_dir / TABLE_PARQUET)
    written.append(out_dir / TABLE_PARQUET)
    return written
