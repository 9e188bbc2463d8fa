"""Where `plan` reads manifests from: a file, a folder of files, or standard input (`-`); and how.

A folder is read as `--config` reads one: its `.yaml`, `.yml` and `.json` files in name order, not
its subfolders. Standard input takes YAML (multi-document) or JSON, so that
`kubectl get pods -o yaml | hpscaler plan --pods -` and `kubectl get pods -o json | ...` both work.

Inputs can be big (`kubectl get pods -A -o yaml` on a large cluster: 100,000 pods, 53 MB in one
`List`). So YAML is read as a stream of objects (`hpscaler.yamlstream`), and a text that is JSON
item by item with the JSON decoder (`hpscaler.jsonstream`): each item of a `List` is converted to a
pod as soon as it is parsed and its raw mapping is dropped, so only the pods stay in memory. An
error names the file, the object and the line the object starts on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hpscaler.jsonstream import stream_json
from hpscaler.kube.objects import MAX_PODS, ManifestError, _Loader
from hpscaler.model import Node, Pod
from hpscaler.provisioning.provreq import RequestSet
from hpscaler.yamlio import YamlInputError
from hpscaler.yamlstream import Streamed, stream_documents

STDIN = "-"
SUFFIXES = (".yaml", ".yml", ".json")
_LIST_KINDS = ("List", "PodList", "NodeList")
_REQUEST_KINDS = ("ProvisioningRequest", "PodTemplate")

# Called with (bytes read so far, bytes in all sources) as objects are read.
Progress = Callable[[int, int], None]


@dataclass
class ManifestInput:
    """What `--pods` or `--nodes` holds, converted."""

    pods: list[Pod] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    daemonsets: list[Pod] = field(default_factory=list)  # as their template pods
    requests: RequestSet = field(default_factory=RequestSet)


@dataclass(slots=True)
class _Source:
    name: str
    data: bytes  # emptied once a JSON text is decoded: the text holds it then
    json_suffix: bool = False


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        data.decode("utf-8")  # refused here with the reason, not later as a YAML character error
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            "", "", f"cannot read the file: {exc}", "check the path", source=str(path)
        ) from None
    return data


def _sources(location: str, stdin: TextIO) -> list[_Source]:
    if location == STDIN:
        return [_Source("<stdin>", stdin.read().encode("utf-8"))]
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
    return [_Source(str(f), _read(f), f.suffix.lower() == ".json") for f in files]


def _json_objects(source: _Source) -> Iterator[Streamed] | None:
    """The objects of a JSON text (a `List`'s items one by one), or None when it is not JSON.

    A `.json` file must be JSON; any other text is tried as JSON only when it starts like JSON,
    and is read as YAML when it is not (JSON is YAML's flow style, and YAML says where it broke).
    Only an error before the first object sends it to YAML: after that it is an error of the JSON.
    """
    if not source.json_suffix and source.data.lstrip()[:1] not in (b"{", b"["):
        return None
    objects = stream_json(source.data.decode("utf-8"))
    try:
        first = next(objects)
    except (json.JSONDecodeError, RecursionError) as exc:
        if not source.json_suffix:
            return None
        raise _json_error(exc, source) from None
    source.data = b""  # JSON it is: let the bytes go (a 128 MB List holds 128 MB less)
    return _json_rest(first, objects, source)


def _json_rest(first: Streamed, objects: Iterator[Streamed], source: _Source) -> Iterator[Streamed]:
    yield first
    try:
        yield from objects
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _json_error(exc, source) from None


def _json_error(exc: json.JSONDecodeError | RecursionError, source: _Source) -> ManifestError:
    if isinstance(exc, RecursionError):
        return ManifestError("", "", "invalid JSON: nested too deeply", "flatten it", source=source.name)
    return ManifestError(
        "",
        f"line {exc.lineno}, column {exc.colno}",
        f"invalid JSON: {exc.msg}",
        "fix the JSON syntax",
        source=source.name,
    )


def _yaml_objects(source: _Source) -> Iterator[Streamed]:
    try:
        yield from stream_documents(source.data)
    except YamlInputError as exc:
        where = f"line {exc.line}" + (f", column {exc.column}" if exc.column else "") if exc.line else ""
        raise ManifestError(
            "",
            where,
            f"invalid YAML: {exc.problem}",
            "fix the YAML syntax (indentation, quoting, `key: value`)",
            source=source.name,
        ) from None


def _with_line(exc: ManifestError, source: str, line: int) -> ManifestError:
    """`exc`, naming the line its object starts on when the message does not already."""
    if line > 0 and exc.source == source and f"line {line}" not in str(exc):
        exc.message = f"{exc.message.rstrip('.')} (the object starts at line {line})"
    return exc


class _Reader:
    """Feeds the objects of each source to the manifest loader, List items as they arrive."""

    def __init__(self, max_pods: int, take_requests: bool) -> None:
        self.loader = _Loader("", [], [], [], max_pods)
        self.take_requests = take_requests
        self.requests: list[tuple[Any, int]] = []  # ProvisioningRequests and PodTemplates of the source
        self.found = RequestSet()

    def add(self, doc: Any, where: str, line: int, default_kind: str = "") -> None:
        try:
            self.loader.add(doc, where, default_kind)
        except ManifestError as exc:
            raise _with_line(exc, self.loader.source, line) from None

    def document(self, doc: Any, where: str, line: int) -> None:
        """A whole document: a ProvisioningRequest or PodTemplate is kept for `split_requests`."""
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if self.take_requests and kind in _REQUEST_KINDS:
            self.requests.append((doc, line))
        else:
            self.add(doc, where, line)

    def read(self, source: _Source, objects: Iterator[Streamed], progress: Callable[[int], None]) -> None:
        self.loader.source = source.name
        split: _SplitList | None = None
        for obj in objects:
            progress(obj.position)
            where = f"document {obj.document}, line {obj.line}"
            if obj.item is not None:
                if split is None or split.document != obj.document:
                    split = _SplitList(self, obj.document)
                split.item(obj)
                continue
            if obj.streamed and split is not None and split.document == obj.document:
                split.finish(obj.data, where, obj.line)
            else:
                self.document(obj.data, where, obj.line)
        if self.requests:
            # Imported here: it pulls in kubernetes_asyncio (a second of start-up) for its client.
            from hpscaler.kube.provreqs import split_requests

            found, _ = split_requests(self.requests, source=source.name)
            self.found = RequestSet(
                (*self.found.requests, *found.requests), {**self.found.templates, **found.templates}
            )
            self.requests = []


class _SplitList:
    """The items of one document's top-level `items`, handed over before the document is complete.

    `kubectl get -o yaml` writes `kind: List` after the items, so an item is converted at once when
    it names its own kind (a `List`'s items must, and then the list's kind does not change how it
    converts), and kept raw, with every later one, when it does not (a `PodList` item takes the
    list's kind). When the document ends it is checked as a list (its apiVersion) and the items kept
    raw are converted; a document of no list kind never had its items counted.
    """

    def __init__(self, reader: _Reader, document: int) -> None:
        self.reader = reader
        self.document = document
        loader = reader.loader
        self.mark = (len(loader.pods), len(loader.nodes), len(loader.daemonsets))
        self.kept: list[tuple[Any, str, int]] = []
        self.error: ManifestError | None = None

    def item(self, obj: Streamed) -> None:
        kind = obj.shell.get("kind") if obj.shell is not None else None
        where = f"document {obj.document}, line {obj.document_line} items[{obj.item}]"
        if kind in _LIST_KINDS:
            self.reader.add(obj.data, where, obj.line, str(kind).removesuffix("List"))
        elif kind is not None:
            return  # not a list: its items are nobody's pods
        elif self.kept or not (isinstance(obj.data, Mapping) and isinstance(obj.data.get("kind"), str)):
            self.kept.append((obj.data, where, obj.line))
        elif self.error is None:
            try:
                self.reader.add(obj.data, where, obj.line)
            except ManifestError as exc:
                self.error = exc  # raised only if the document turns out to be a list

    def finish(self, shell: Any, where: str, line: int) -> None:
        reader = self.reader
        kind = shell.get("kind") if isinstance(shell, Mapping) else None
        if kind not in _LIST_KINDS:
            loader = reader.loader
            del loader.pods[self.mark[0] :], loader.nodes[self.mark[1] :], loader.daemonsets[self.mark[2] :]
            reader.document(shell, where, line)
            return
        reader.add(shell, where, line)  # the list's own apiVersion
        if self.error is not None:
            raise self.error
        for data, item_where, item_line in self.kept:
            reader.add(data, item_where, item_line, str(kind).removesuffix("List"))
        self.kept = []


def read_manifest_input(
    location: str,
    stdin: TextIO,
    *,
    max_pods: int = MAX_PODS,
    take_requests: bool = True,
    progress: Progress | None = None,
) -> ManifestInput:
    """The objects of a file, a folder or `-`, converted; raises `ManifestError`.

    With `take_requests`, ProvisioningRequests and their PodTemplates are read into `requests`;
    otherwise they are refused as unsupported kinds (`--nodes`).
    """
    sources = _sources(location, stdin)
    sizes = [len(s.data) for s in sources]
    total = sum(sizes)
    reader = _Reader(max_pods, take_requests)
    done = 0

    def advanced(position: int) -> None:
        if progress is not None:
            progress(done + position, total)

    for source, size in zip(sources, sizes, strict=True):
        reader.read(source, _json_objects(source) or _yaml_objects(source), advanced)
        advanced(size)
        done += size
    pods, nodes, daemonsets = reader.loader.finish()
    return ManifestInput(pods, nodes, daemonsets, reader.found)


def load_manifest_input(
    location: str, stdin: TextIO, *, max_pods: int = MAX_PODS
) -> tuple[list[Pod], list[Node], list[Pod]]:
    """(pods, nodes, daemonset pods) from a file, a folder or `-`; raises `ManifestError`."""
    found = read_manifest_input(location, stdin, max_pods=max_pods, take_requests=False)
    return found.pods, found.nodes, found.daemonsets
