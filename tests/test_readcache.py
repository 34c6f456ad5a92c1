"""The cross-process read cache: one computation per period, nobody waits behind it."""

from __future__ import annotations

import fcntl
from datetime import UTC, date, datetime
from pathlib import Path

from control_center.readcache import SharedCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fresh_value_is_reused_and_an_old_one_recomputed(tmp_path: Path) -> None:
    cache, clock, calls = SharedCache(tmp_path, max_age_s=5), Clock(), []

    def compute() -> dict[str, object]:
        calls.append(clock.now)
        return {
            "n": len(calls),
            "at": datetime(2026, 11, 25, 3, tzinfo=UTC),
            "day": date(2026, 11, 25),
        }

    first = cache.get("k", compute, clock)
    clock.now += 4.9
    assert cache.get("k", compute, clock) == first  # read back from the file, types kept
    assert first["at"] == datetime(2026, 11, 25, 3, tzinfo=UTC) and first["day"] == date(
        2026, 11, 25
    )
    clock.now += 0.2
    assert cache.get("k", compute, clock)["n"] == 2
    assert cache.get("other", compute, clock)["n"] == 3  # keys do not mix
    assert calls == [1000.0, 1005.1, 1005.1]


def test_while_one_process_recomputes_the_others_answer_with_the_last_value(
    tmp_path: Path,
) -> None:
    cache, clock = SharedCache(tmp_path, max_age_s=5), Clock()
    cache.get("k", lambda: "old", clock)
    clock.now += 60
    _, lock_path = cache._paths("k")
    with lock_path.open("a") as held:  # another worker is computing right now
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cache.get("k", lambda: "new", clock) == "old"
    assert cache.get("k", lambda: "new", clock) == "new"
