"""An hpscaler backend plugin: Spot placement scores read from a YAML file.

Some accounts may not call `ec2:GetSpotPlacementScores` (policy, GovCloud, air-gapped mirrors) or
want scores of their own, e.g. from their interruption history. This backend serves those scores.
The file maps zone names or zone ids to scores 1-10 and is read again whenever it changes, so the
scores can be updated without restarting the daemon:

    # /etc/hpscaler/scores.yaml
    usw2-az1: 8
    us-west-2b: 3

Enable it in the HpscalerConfig:

    spec:
      backends:
        scores: static-scores
        options:
          static-scores: {path: /etc/hpscaler/scores.yaml}
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import yaml

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.registry import BackendSet, serves
from hpscaler.config import LoadedConfig

DEFAULT_PATH = "/etc/hpscaler/scores.yaml"


class FileScores:
    """`PlacementScores` from a YAML file, cached until the file's modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self._scores: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        try:
            stamp = self.path.stat().st_mtime
        except OSError as exc:
            raise BackendError(f"{self.path}: cannot read placement scores: {exc}", retryable=True) from exc
        if stamp == self._stamp:
            return self._scores
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise BackendError(f"{self.path}: not valid YAML: {exc}", retryable=True) from exc
        if not isinstance(data, Mapping):
            raise BackendError(f"{self.path}: expected a mapping of zone -> score", retryable=True)
        scores: dict[str, float] = {}
        for zone, score in data.items():
            if not isinstance(score, int | float) or isinstance(score, bool) or not 1 <= score <= 10:
                raise BackendError(
                    f"{self.path}: zone {zone!r}: score must be a number from 1 to 10, got {score!r}",
                    retryable=True,
                )
            scores[str(zone)] = float(score)
        self._stamp, self._scores = stamp, scores
        return scores

    async def scores(self, instance_types: Sequence[str], target_capacity: int) -> Mapping[str, float]:
        """The file's scores (the same for every instance type and capacity)."""
        return dict(self._read())


@serves("scores")
@asynccontextmanager
async def static_scores_backend(config: LoadedConfig) -> AsyncIterator[BackendSet]:
    """The entry point: a BackendSet that only provides placement scores."""
    options = config.settings.backends.options.get("static-scores", {})
    path = Path(str(options.get("path", DEFAULT_PATH)))
    yield BackendSet(scores=FileScores(path))
