"""How fresh a commune centre's data is (pure domain code).

The wall must say how fresh each centre's data is rather than show stale numbers as current
(DOMAIN.md: centres in the mountains drop offline for hours, then flush a backlog). Freshness
is judged on *our* arrival clock, never on the centre's ``occurred_at``: centre clocks are
minutes off, and a backlog of old events is news that the centre is back, not that it is late.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

LIVE, STALE, OFFLINE, CATCHING_UP, UNKNOWN = "live", "stale", "offline", "catching_up", "unknown"
FEED_STATES = (LIVE, CATCHING_UP, STALE, OFFLINE, UNKNOWN)


class FeedThresholds(Protocol):
    feed_stale_after_s: int
    feed_offline_after_s: int
    feed_catching_up_lag_s: int


def last_seen_at(feed: Any) -> datetime | None:
    """When anything (event or heartbeat) last arrived from the centre."""
    if feed is None:
        return None
    seen = [t for t in (feed.last_arrival_at, feed.last_heartbeat_arrived_at) if t is not None]
    return max(seen) if seen else None


def feed_state(feed: Any, now: datetime, settings: FeedThresholds) -> str:
    """live / catching_up / stale / offline / unknown for one ``centre_feeds`` row (or None).

    - unknown: nothing ever arrived from the centre;
    - offline: its heartbeat (or Last Will) said offline and nothing arrived after that,
      or nothing arrived for ``feed_offline_after_s``;
    - stale: nothing arrived for ``feed_stale_after_s``;
    - catching_up: events arrive but the newest is older than ``feed_catching_up_lag_s``
      (a centre flushing a backlog: its numbers are not current yet);
    - live: otherwise.
    """
    seen = last_seen_at(feed)
    if seen is None:
        return UNKNOWN
    if feed.reported_state == "offline":
        said_offline_at = feed.last_heartbeat_arrived_at
        # Events after the Last Will mean the centre is back before its next heartbeat.
        came_back = (
            feed.last_arrival_at is not None
            and said_offline_at is not None
            and feed.last_arrival_at > said_offline_at
        )
        if not came_back:
            return OFFLINE
    silence = (now - seen).total_seconds()
    if silence >= settings.feed_offline_after_s:
        return OFFLINE
    if silence >= settings.feed_stale_after_s:
        return STALE
    lag = feed.last_lag_seconds
    if lag is not None and lag > settings.feed_catching_up_lag_s:
        return CATCHING_UP
    return LIVE
