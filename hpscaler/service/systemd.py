"""systemd's notification protocol (sd_notify): READY, STOPPING, STATUS and the watchdog.

Ten lines of socket code; no library needed. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("hpscaler.systemd")


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when not running under systemd."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # a reader that stopped reading must never block the event loop
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:  # systemd gone, not reading, or a wrong NOTIFY_SOCKET: never fatal
        log.warning("sd_notify_failed", socket=os.environ.get("NOTIFY_SOCKET"), error=str(exc))
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec (systemd's advice for the ping period), if the watchdog is on for us."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
