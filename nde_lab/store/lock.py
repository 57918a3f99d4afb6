"""The writer's lock: who assembles a run (pid, host) and a heartbeat that tells live from dead.

`lock.json` sits in the run's hidden `.partial` directory while it is written. A daemon thread
refreshes `heartbeat` every `HEARTBEAT_S` seconds. A run is `running` while its writer is alive: on
the same host, its pid exists and the heartbeat is younger than `STALE_S`; on another host, the
heartbeat alone decides. Otherwise the leftover is `dead` and `gc` may remove it.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any

from nde_lab.store.attrs import now_iso

__all__ = ["HEARTBEAT_S", "LOCK", "STALE_S", "Heartbeat", "is_alive", "lock_record"]

LOCK = "lock.json"
HEARTBEAT_S = 10.0
STALE_S = 120.0


def lock_record(token: str) -> dict[str, Any]:
    now = now_iso()
    return {"pid": os.getpid(), "host": socket.gethostname(), "token": token, "started": now, "heartbeat": now}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def is_alive(record: dict[str, Any], now: datetime | None = None) -> tuple[bool, str]:
    """(alive?, why) for a lock record."""
    now = now or datetime.now(UTC)
    try:
        age = (now - datetime.fromisoformat(record["heartbeat"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return False, "the lock has no readable heartbeat"
    where = f"pid {record.get('pid')} on {record.get('host')}"
    if record.get("host") == socket.gethostname():
        if not _pid_alive(int(record.get("pid", -1))):
            return False, f"writer {where} is gone"
        if age > STALE_S:
            return False, f"writer {where}: last heartbeat {age:.0f} s ago"
        return True, f"writer {where} is alive"
    if age > STALE_S:
        return False, f"writer {where}: last heartbeat {age:.0f} s ago"
    return True, f"writer {where}: heartbeat {age:.0f} s ago"


class Heartbeat:
    """Refreshes the lock at `location` (a `Location`) every `HEARTBEAT_S` seconds until stopped."""

    def __init__(self, location: Any, record: dict[str, Any]) -> None:
        self.location, self.record = location, dict(record)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="nde-lab-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.record["heartbeat"] = now_iso()
                self.location.write_json(self.record)
            except Exception:  # the directory may be published or removed meanwhile
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
