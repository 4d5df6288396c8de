"""Whether a helper Pod is in use: the capture beats, ``podcap cleanup`` reads the beat.

While a capture runs, :class:`Heartbeat` writes the time into each of its helpers'
``podcap.io/heartbeat`` annotation every :data:`BEAT_SECONDS`. A helper whose last beat (or,
before the first, its creation) is younger than :data:`LIVE_SECONDS` belongs to a live capture,
on this machine or another one, and cleanup leaves it alone. The times are the clients' own
clocks: the window allows for some skew between the machine capturing and the one cleaning up.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

HEARTBEAT = "podcap.io/heartbeat"
BEAT_SECONDS = 5.0
LIVE_SECONDS = 20.0  # three beats missed, or clocks this far apart


def stamp(when: datetime | None = None) -> str:
    """A beat's text: UTC, to the second, as Kubernetes writes its own times."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_sign_of_life(pod) -> datetime | None:
    """The helper's last beat, or its creation when it has not beaten yet."""
    annotations = pod.metadata.annotations or {}
    if beat := annotations.get(HEARTBEAT):
        try:
            return datetime.strptime(beat, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            pass
    return pod.metadata.creation_timestamp


def seconds_since_alive(pod, now: datetime | None = None) -> float | None:
    """Seconds since the helper's last sign of life (None: it shows none)."""
    last = last_sign_of_life(pod)
    if last is None:
        return None
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - last).total_seconds()


def in_use(pod, now: datetime | None = None) -> bool:
    """True while the helper's capture is alive (see :data:`LIVE_SECONDS`)."""
    age = seconds_since_alive(pod, now)
    return age is not None and age < LIVE_SECONDS


class Heartbeat:
    """Beats on behalf of running helpers until :meth:`stop`: ``beat(helper)`` is called for
    each, now and every :data:`BEAT_SECONDS` (a beat that fails is tried again at the next)."""

    def __init__(self, helpers: list, beat, interval: float = BEAT_SECONDS):
        self.helpers = helpers
        self.beat = beat
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(self.interval)

    def _run(self) -> None:
        while not self._stopped.is_set():
            for helper in self.helpers:
                try:
                    self.beat(helper)
                except Exception:  # noqa: BLE001, S112 - a missed beat; the next one retries
                    continue
            self._stopped.wait(self.interval)
