"""Start-up recovery: undo what a predecessor that died mid-way left behind.

A daemon killed between tainting a node for consolidation and deleting it leaves the node tainted
`karpenter.sh/disrupted:NoSchedule` with nobody to finish the job; the cluster would never use the
node again. Karpenter clears such taints at start-up too. Interruption taints are not touched: the
unacknowledged notice is delivered again and the handler takes over where its predecessor stopped.
"""

from __future__ import annotations

import anyio

from hpscaler.backends.protocols import BackendError
from hpscaler.daemon.context import DaemonContext
from hpscaler.daemon.drain import DISRUPTED_TAINT, REASON_ANNOTATION
from hpscaler.daemon.events import OrphanedTaintCleared


async def clear_orphaned_taints(ctx: DaemonContext, retry_seconds: float = 30.0) -> None:
    """Once synced, untaint nodes a previous incarnation marked for consolidation but never removed."""
    while True:
        if await _clear_once(ctx):
            return
        await anyio.sleep(retry_seconds)  # the API server refused: try again later


async def _clear_once(ctx: DaemonContext) -> bool:
    """One pass; False if some taint could not be removed (the caller tries again later)."""
    cleared = True
    for node in list(ctx.cache.nodes.values()):
        # Nodes in `disrupting` are this incarnation's own work in progress.
        if node.name in ctx.disrupting or not any(t.key == DISRUPTED_TAINT.key for t in node.taints):
            continue
        try:
            await ctx.backends.kubernetes.taint_node(node.name, remove=[DISRUPTED_TAINT.key])
            await ctx.backends.kubernetes.annotate_node(node.name, {REASON_ANNOTATION: None})
        except BackendError as exc:
            ctx.log.warning("orphaned_taint_not_cleared", node=node.name, error=str(exc))
            cleared = False
            continue
        ctx.record(OrphanedTaintCleared(node.name, DISRUPTED_TAINT.key))
    return cleared
