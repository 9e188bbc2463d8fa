"""Out-of-capacity backoffs survive restarts: a restarted daemon must not retry an offering it gave up on.

The state is a small JSON file (`spec.statePath`; systemd's StateDirectory gives /var/lib/hpscaler).
It is written atomically and durably (fsync of the file and its directory) whenever it changed,
checked every few seconds and once more at shutdown.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import anyio

from hpscaler.daemon.context import DaemonContext

CHECK_SECONDS = 5.0


def load_backoffs(ctx: DaemonContext, path: Path) -> None:
    """Restore backoffs written by an earlier run; an unreadable file is reported and ignored."""
    try:
        data = json.loads(path.read_text())
        ctx.unavailable.load_json(data["outOfCapacity"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        ctx.log.warning(
            "state_file_ignored", path=str(path), error=str(exc), fix="delete the file; hpscaler rewrites it"
        )
        return
    ctx.log.info("backoffs_restored", path=str(path), offerings=len(ctx.unavailable.entries))


def write_backoffs(ctx: DaemonContext, path: Path) -> None:
    """Write the current backoffs atomically and durably (see `write_atomically`)."""
    write_atomically(path, json.dumps({"outOfCapacity": ctx.unavailable.to_json()}, indent=1))


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a crash or power loss leaves the old file or the new one.

    The text goes to a temporary file in the same directory, which is fsynced and renamed over
    `path`; then the directory is fsynced so the rename itself survives. On any failure (a full
    disk) the temporary file is removed, so failed writes never pile up.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def persist_backoffs(ctx: DaemonContext, path: Path) -> None:
    """Write the backoffs whenever they change, and once more when the daemon stops."""
    written = ""  # the first check always writes: the file then reflects this run from the start
    try:
        while True:
            await anyio.sleep(CHECK_SECONDS)
            current = json.dumps(ctx.unavailable.to_json())
            if current != written:
                try:
                    write_backoffs(ctx, path)
                    written = current
                except OSError as exc:
                    ctx.log.warning("state_file_write_failed", path=str(path), error=str(exc))
    finally:
        try:
            write_backoffs(ctx, path)
        except OSError as exc:
            ctx.log.warning("state_file_write_failed", path=str(path), error=str(exc))
