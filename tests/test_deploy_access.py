"""The systemd unit's dynamic user can read the configuration the README installs; images are pinned."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hpscaler.config import default_config_path

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "hpscaler.service"
README = (REPO / "README.md").read_text()
HPSCALER = Path(sys.executable).parent / "hpscaler"
NOBODY = 65534  # what a DynamicUser is to the files: neither their owner nor in their group

sys.path.insert(0, str(REPO / "deploy"))
from pin_constraints import runtime_closure  # noqa: E402


def unit_settings() -> dict[str, str]:
    lines = UNIT.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def readme_modes() -> tuple[int, int]:
    """The directory and file modes of the README's install step for /etc/hpscaler."""
    directory = re.search(r"install -d -m (0\d{3}) /etc/hpscaler", README)
    files = re.search(r"install -m (0\d{3}) config/examples/\* /etc/hpscaler/", README)
    assert directory and files, "the README's systemd steps must install /etc/hpscaler with explicit modes"
    return int(directory.group(1), 8), int(files.group(1), 8)


def test_a_dynamic_user_can_enter_and_read_the_configuration_directory() -> None:
    settings = unit_settings()
    assert settings["DynamicUser"] == "yes" and settings["ConfigurationDirectory"] == "hpscaler"
    unit_mode = int(settings["ConfigurationDirectoryMode"], 8)
    directory_mode, file_mode = readme_modes()
    # systemd re-applies ConfigurationDirectoryMode at every start and leaves the owner root.
    assert unit_mode == directory_mode
    assert unit_mode & stat.S_IROTH and unit_mode & stat.S_IXOTH
    assert file_mode & stat.S_IROTH


def test_the_readme_steps_give_an_unprivileged_user_a_readable_configuration() -> None:
    """Install as the README does, then run check-config as a user that owns nothing (as systemd would)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to switch to an unprivileged user")
    with tempfile.TemporaryDirectory() as root:  # pytest's tmp_path is private to root (0700)
        _check_as_nobody(setpriv, Path(root))


def _check_as_nobody(setpriv: str, tmp_path: Path) -> None:
    directory_mode, file_mode = readme_modes()
    etc = tmp_path / "etc-hpscaler"
    etc.mkdir(mode=directory_mode)
    etc.chmod(directory_mode)
    for source in default_config_path().iterdir():
        if source.is_file():
            shutil.copy(source, etc / source.name)
            (etc / source.name).chmod(file_mode)
    tmp_path.chmod(0o755)
    as_nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    result = subprocess.run(
        [*as_nobody, str(HPSCALER), "check-config", str(etc)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: cluster")
    # The old steps (0750, root:root) lock the service out: a clear error and exit 2, no traceback.
    etc.chmod(0o750)
    denied = subprocess.run(
        [*as_nobody, str(HPSCALER), "check-config", str(etc)], capture_output=True, text=True, timeout=120
    )
    assert denied.returncode == 2 and "Traceback" not in denied.stderr
    assert "not readable" in denied.stderr or "cannot be read" in denied.stderr


def test_the_readme_documents_a_manual_check_as_a_dynamic_user() -> None:
    assert "systemd-run --pipe --wait -p DynamicUser=yes" in README
    assert "hpscaler check-config /etc/hpscaler" in README


def test_secrets_reach_the_dynamic_user_through_credentials_not_the_config_directory() -> None:
    text = UNIT.read_text()
    assert "#LoadCredential=kubeconfig:/etc/hpscaler/secrets/kubeconfig" in text
    assert "#Environment=KUBECONFIG=%d/kubeconfig" in text


CONSTRAINTS = REPO / "deploy" / "constraints.txt"


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            found[canonicalize_name(name)] = version
    return found


def test_the_dockerfile_installs_with_the_constraints_file() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "COPY deploy/constraints.txt ./constraints.txt" in text
    assert re.search(r"pip install --constraint constraints\.txt \.", text)


def test_every_run_time_dependency_is_pinned_within_the_declared_ranges() -> None:
    pinned = pins()
    missing = sorted(runtime_closure().keys() - pinned.keys())
    assert not missing, f"not pinned: {missing}; run deploy/pin_constraints.py"
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, declared):
        version = pinned[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
