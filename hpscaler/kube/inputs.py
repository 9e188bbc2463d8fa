"""Where `plan` reads manifests from: a file, a folder of files, or standard input (`-`).

A folder is read as `--config` reads one: its `.yaml`, `.yml` and `.json` files in name order, not
its subfolders. Standard input takes YAML (multi-document) or JSON, so that
`kubectl get pods -o yaml | hpscaler plan --pods -` and `kubectl get pods -o json | ...` both work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from hpscaler.kube.objects import MAX_PODS, ManifestError, load_manifest_sources, parse_manifest_text
from hpscaler.model import Node, Pod

STDIN = "-"
SUFFIXES = (".yaml", ".yml", ".json")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            "", "", f"cannot read the file: {exc}", "check the path", source=str(path)
        ) from None


def manifest_documents(location: str, stdin: TextIO) -> list[tuple[str, list[tuple[Any, int]]]]:
    """The parsed documents of `location` (a file, a folder, or `-`) with their lines, by source."""
    if location == STDIN:
        text = stdin.read()
        # JSON is a subset of YAML, so one parser serves both; `kubectl -o json` gives one List.
        return [("<stdin>", parse_manifest_text(text, source="<stdin>"))]
    path = Path(location)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise ManifestError(
                "",
                "",
                "the folder holds no .yaml, .yml or .json files",
                "put the Pod or workload manifests there, or pass a file",
                source=str(path),
            )
    else:
        files = [path]
    return [
        (str(f), parse_manifest_text(_read(f), source=str(f), json_format=f.suffix.lower() == ".json"))
        for f in files
    ]


def load_manifest_input(
    location: str, stdin: TextIO, *, max_pods: int = MAX_PODS
) -> tuple[list[Pod], list[Node], list[Pod]]:
    """(pods, nodes, daemonset pods) from a file, a folder or `-`; raises `ManifestError`."""
    return load_manifest_sources(manifest_documents(location, stdin), max_pods=max_pods)
