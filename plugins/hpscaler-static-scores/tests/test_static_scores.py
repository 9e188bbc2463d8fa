"""The plugin is found through the entry point, serves the file's scores, and reports bad files clearly."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from hpscaler_static_scores import FileScores

from hpscaler.backends.protocols import BackendError, PlacementScores
from hpscaler.backends.registry import discover, load_factory
from hpscaler.config import default_config_path, load_config


def test_entry_point_is_discovered() -> None:
    assert "static-scores" in discover()
    assert load_factory("static-scores").__name__ == "static_scores_backend"


async def test_factory_builds_scores_from_the_configured_path(tmp_path: Path) -> None:
    path = tmp_path / "scores.yaml"
    path.write_text("usw2-az1: 8\nus-west-2b: 3\n")
    config = load_config(default_config_path())
    settings = config.settings.model_copy(
        update={
            "backends": config.settings.backends.model_copy(
                update={"options": {"static-scores": {"path": str(path)}}}
            )
        }
    )
    config = replace(config, settings=settings)
    async with load_factory("static-scores")(config) as backends:
        assert backends.kubernetes is None and backends.hyperpod is None
        assert isinstance(backends.scores, PlacementScores)
        assert await backends.scores.scores(["ml.c5.2xlarge"], 3) == {"usw2-az1": 8.0, "us-west-2b": 3.0}


async def test_scores_are_reread_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "scores.yaml"
    path.write_text("usw2-az1: 8\n")
    scores = FileScores(path)
    assert await scores.scores([], 1) == {"usw2-az1": 8.0}
    path.write_text("usw2-az1: 2\n")
    os.utime(path, (1, 1))  # a different mtime, whatever the filesystem's resolution
    assert await scores.scores([], 1) == {"usw2-az1": 2.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("usw2-az1: 11\n", "score must be a number from 1 to 10"),
        ("- a\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
async def test_bad_files_raise_backend_errors_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "scores.yaml"
    path.write_text(text)
    with pytest.raises(BackendError, match=message) as info:
        await FileScores(path).scores([], 1)
    assert str(path) in str(info.value)


async def test_missing_file_is_a_retryable_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as info:
        await FileScores(tmp_path / "nope.yaml").scores([], 1)
    assert info.value.retryable


async def test_a_config_naming_the_plugin_gets_its_scores_next_to_the_other_backends(tmp_path: Path) -> None:
    from hpscaler.backends.registry import open_backends

    path = tmp_path / "scores.yaml"
    path.write_text("us-west-2a: 7\n")
    config = load_config(default_config_path())  # kubernetes: fake, aws: fake
    backends = config.settings.backends.model_copy(
        update={"scores": "static-scores", "options": {"static-scores": {"path": str(path)}}}
    )
    config = replace(config, settings=config.settings.model_copy(update={"backends": backends}))
    async with open_backends(config) as opened:
        assert isinstance(opened.scores, FileScores)
        assert opened.kubernetes is not None and opened.hyperpod is not None  # from the fake backend
        assert await opened.scores.scores(["ml.c5.2xlarge"], 1) == {"us-west-2a": 7.0}
