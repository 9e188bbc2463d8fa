"""The README's commands, paths and links are real, and the command line explains itself."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hpscaler.cli import main

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
PATH = re.compile(
    r"(?<![\w/.-])((?:config|deploy|docs|systemd|bench|plugins|hpscaler/examples)/[\w./-]*[\w/])"
)


def commands() -> list[list[str]]:
    """Every `hpscaler ...` command line in the README's shell blocks and console examples."""
    found = []
    for block in re.findall(r"```(?:sh|console)\n(.*?)```", README, re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for part in re.split(r"\||&&|;", line.removeprefix("$ ")):
                words = shlex.split(part.split("#")[0]) if part.strip() else []
                if words[:1] == ["sudo"]:
                    words.pop(0)
                if len(words) > 1 and (words[0] == "hpscaler" or words[0].endswith("bin/hpscaler")):
                    found.append(words[1:])
    return found


def test_every_path_the_readme_names_exists() -> None:
    # Folders git ignores are written by commands (bench/out/): they exist only after a run.
    outputs = {line.strip().lstrip("/") for line in (REPO / ".gitignore").read_text().splitlines()}
    named = {p for p in PATH.findall(README) if p.rstrip(".") not in outputs}
    missing = sorted(p for p in named if not (REPO / p.rstrip(".")).exists())
    assert missing == []


def test_every_link_and_image_in_the_readme_exists() -> None:
    targets = re.findall(r"\]\(([^)#:]+)\)", README)
    assert "docs/soak.png" in targets and "bench/results/scaling.png" in targets
    assert [t for t in targets if not (REPO / t).exists()] == []


def test_every_readme_section_a_file_points_to_exists() -> None:
    headings = {h.strip() for h in re.findall(r"^#+ (.+)$", README, re.M)}
    for name in ("systemd/hpscaler.service", "Dockerfile", "deploy/kubernetes/deployment.yaml"):
        for title in re.findall(r'README "([^"]+)"', (REPO / name).read_text()):
            assert title in headings, f"{name} points to README section {title!r}, which does not exist"


def test_every_hpscaler_command_in_the_readme_names_real_commands_and_options() -> None:
    lines = commands()
    assert len(lines) >= 8
    for words in lines:
        command = main.get_command(click.Context(main), words[0])
        if words[0] in ("--version", "--help"):
            continue
        assert command is not None, f"README: hpscaler {' '.join(words)}: no command {words[0]!r}"
        known = {opt for param in command.params for opt in getattr(param, "opts", [])} | {"--help", "-h"}
        for word in words[1:]:
            if word.startswith("--"):
                assert word.split("=")[0] in known, (
                    f"README: hpscaler {' '.join(words)}: unknown option {word}"
                )


def test_the_readme_quick_start_says_how_to_reach_hpscaler() -> None:
    assert ". .venv/bin/activate" in README and ".venv/bin/hpscaler" in README


def all_commands() -> list[click.Command]:
    return [
        c
        for name in main.list_commands(click.Context(main))
        if (c := main.get_command(click.Context(main), name))
    ]


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: c.name or "")
def test_every_option_has_a_description(command: click.Command) -> None:
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"hpscaler {command.name} {param.opts[0]} has no help text"
    assert command.help


def test_top_level_help_shows_each_command_description_in_full() -> None:
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["--help"], terminal_width=80)
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    for command in all_commands():
        first = " ".join((command.help or "").split("\n\n")[0].split())
        assert first in flat, f"--help cuts the description of {command.name}"
    assert "..." not in result.output.split("Commands:")[1]


def test_backends_shows_the_roles_each_backend_serves() -> None:
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[1:]}
    assert rows["kubernetes"] == "kubernetes"
    assert set(rows["aws"].split(",")) == {"hyperpod", "scores", "interruptions", "prices"}
    assert set(rows["fake"].split(",")) == {"kubernetes", "hyperpod", "scores", "interruptions"}
    assert rows["static-scores"] == "scores"


def test_run_log_flags_override_the_environment_and_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, str | None] = {}

    def fake_run_service(path: str, config: object) -> int:
        seen["level"] = os.environ.get("HPSCALER_LOG_LEVEL")
        seen["format"] = os.environ.get("HPSCALER_LOG_FORMAT")
        return 0

    monkeypatch.setattr("hpscaler.service.run.run_service", fake_run_service)
    monkeypatch.setenv("HPSCALER_LOG_LEVEL", "info")
    monkeypatch.delenv("HPSCALER_LOG_FORMAT", raising=False)
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--config",
            str(REPO / "config" / "examples"),
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen == {"level": "debug", "format": "json"}
    result = CliRunner().invoke(
        main, ["run", "--config", str(REPO / "config" / "examples"), "--log-level", "loud"]
    )
    assert result.exit_code == 2 and "'loud' is not one of" in result.output
