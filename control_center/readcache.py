"""A short-lived cache of expensive read results, shared by every process of one machine.

At national scale (3,321 communes, millions of dossiers) one reading of the country's figures
sums about a million aggregate rows: too much to repeat for every browser every five seconds,
and the figures are the same for every viewer. :class:`SharedCache` keeps the last result in a
file for ``max_age_s`` seconds; when it is older, one process recomputes it (a ``flock``
decides which) while the others keep answering with the previous result, so viewers never
queue behind the computation and it runs at most once per period whatever the number of
gunicorn workers and browsers. Values are JSON (with aware datetimes and dates), written
atomically; several machines behind a proxy each keep their own copy, which is only a cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

_DATETIME, _DATE = "__datetime__", "__date__"


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if _DATETIME in obj:
            return datetime.fromisoformat(obj[_DATETIME])
        if _DATE in obj:
            return date.fromisoformat(obj[_DATE])
    return obj


def dumps(value: Any) -> str:
    """JSON of a reading, aware datetimes and dates kept as such by :func:`loads`."""
    return json.dumps(value, default=_encode, ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> Any:
    """The value :func:`dumps` wrote, its datetimes and dates restored."""
    return json.loads(text, object_hook=_decode)


class SharedCache:
    def __init__(self, directory: Path, max_age_s: float) -> None:
        self.directory = directory
        self.max_age_s = max_age_s

    def _paths(self, key: str) -> tuple[Path, Path]:
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.directory / f"{name}.json", self.directory / f"{name}.lock"

    def _read(self, path: Path) -> tuple[float, Any] | None:
        try:
            with path.open(encoding="utf-8") as fh:
                stored = loads(fh.read())
        except (OSError, ValueError):
            return None
        return float(stored["computed_at"]), stored["value"]

    def get(
        self, key: str, compute: Callable[[], Any], clock: Callable[[], float] = time.time
    ) -> Any:
        """The value for ``key``: the stored one while fresh, else recomputed by one process
        (the others meanwhile get the stored one, however old; they wait only when there is
        none yet). ``key`` must name everything the value depends on (database, scope)."""
        path, lock_path = self._paths(key)
        stored = self._read(path)
        if stored is not None and clock() - stored[0] < self.max_age_s:
            return stored[1]
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if stored is not None else 0))
            except BlockingIOError:
                return stored[1] if stored is not None else compute()
            try:
                again = self._read(path)  # another process may have just finished
                if again is not None and clock() - again[0] < self.max_age_s:
                    return again[1]
                computed_at, value = clock(), compute()
                self._write(path, computed_at, value)
                return value
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, path: Path, computed_at: float, value: Any) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(dumps({"computed_at": computed_at, "value": value}))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
