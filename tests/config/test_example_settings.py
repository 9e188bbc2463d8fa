"""hpscaler/examples/hpscaler.yaml lists every setting of `Settings`, each with its default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from hpscaler.config.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "hpscaler" / "examples" / "hpscaler.yaml"
# The settings the example deliberately sets to something else (marked "example" in the file).
NOT_DEFAULT = {
    "clusterName",
    "region",
    "backends.kubernetes",
    "backends.aws",
    "placementScores",
}


def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    assert document["kind"] == "HpscalerConfig"
    result: dict[str, Any] = document["spec"]
    return result


def settings_paths(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Every leaf setting as its document path (camelCase, dotted) with its default value."""
    paths: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.update(settings_paths(annotation, f"{key}."))
        else:
            paths[key] = field.get_default(call_default_factory=True)
    return paths


def lookup(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        assert isinstance(value, dict) and part in value, f"{EXAMPLE.name} lacks spec.{path}"
        value = value[part]
    return value


def test_the_example_lists_every_setting() -> None:
    document = spec()
    for path in settings_paths(Settings):
        lookup(document, path)


def test_the_example_holds_no_setting_the_model_does_not_know() -> None:
    Settings.model_validate(spec())  # extra keys are rejected by the model


def test_every_setting_not_marked_as_an_example_has_its_default() -> None:
    document = spec()
    for path, default in settings_paths(Settings).items():
        if path in NOT_DEFAULT:
            continue
        value = lookup(document, path)
        if isinstance(default, tuple):
            value = tuple(value)
        assert value == default, f"spec.{path} is {value!r} in the example, but defaults to {default!r}"


def test_the_example_names_interruption_queue_and_state_path() -> None:
    document = spec()
    assert "interruptionQueueUrl" in document["aws"] and "statePath" in document
