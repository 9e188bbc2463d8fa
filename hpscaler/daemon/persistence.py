"""What a restarted daemon must not forget survives restarts, in the state file.

- Out-of-capacity backoffs (`outOfCapacity`): a restarted daemon must not retry an offering it gave
  up on.
- Nodes going away (`goneNodes`): HyperPod's logical ids of nodes seen ShuttingDown or deleted by
  hpscaler. A node whose termination fails shows as Failure, which otherwise reads as a launch
  HyperPod is retrying; a restarted daemon would adopt it as capacity on its way. Ids HyperPod no
  longer lists are dropped at the next ListClusterNodes, so the list stays small.

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
from typing import Any

import anyio

from hpscaler.daemon.context import DaemonContext

CHECK_SECONDS = 5.0


def load_state(ctx: DaemonContext, path: Path) -> None:
    """Restore what an earlier run wrote; an unreadable file is reported and ignored."""
    try:
        data = json.loads(path.read_text())
        gone = data.get("goneNodes", [])  # absent in files written before it was kept
        if not isinstance(gone, list) or not all(isinstance(i, str) for i in gone):
            raise ValueError(f"goneNodes must be a list of NodeLogicalIds, not {gone!r}")
        ctx.unavailable.load_json(data["outOfCapacity"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        ctx.log.warning(
            "state_file_ignored", path=str(path), error=str(exc), fix="delete the file; hpscaler rewrites it"
        )
        return
    for logical_id in gone:
        ctx.mark_gone(logical_id)
    ctx.log.info("state_restored", path=str(path), offerings=len(ctx.unavailable.entries), gone=len(gone))


def state(ctx: DaemonContext) -> dict[str, Any]:
    """The state file's content for the daemon's current state."""
    return {"outOfCapacity": ctx.unavailable.to_json(), "goneNodes": sorted(ctx.gone)}


def write_state(ctx: DaemonContext, path: Path) -> None:
    """Write the current state atomically and durably (see `write_atomically`)."""
    write_atomically(path, json.dumps(state(ctx), indent=1))


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


async def persist_state(ctx: DaemonContext, path: Path) -> None:
    """Write the state whenever it changes, and once more when the daemon stops."""
    written = ""  # the first check always writes: the file then reflects this run from the start
    try:
        while True:
            await anyio.sleep(CHECK_SECONDS)
            current = json.dumps(state(ctx))
            if current != written:
                try:
                    write_state(ctx, path)
                    written = current
                except OSError as exc:
                    ctx.log.warning("state_file_write_failed", path=str(path), error=str(exc))
    finally:
        try:
            write_state(ctx, path)
        except OSError as exc:
            ctx.log.warning("state_file_write_failed", path=str(path), error=str(exc))
