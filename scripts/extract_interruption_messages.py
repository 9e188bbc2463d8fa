"""Extract real interruption messages from aws-node-termination-handler and karpenter-provider-aws.

The messages are taken from those projects' sources as data, not retyped:

- aws-node-termination-handler: the JSON heredocs its end-to-end tests send to SQS
  (`test/e2e/*-sqs-test`), and the `sqsevent.EventBridgeEvent{...}` literals of
  `pkg/monitor/sqsevent/sqs-monitor_test.go` (including the copy whose `Time` is set to "");
- karpenter-provider-aws: the message builders of `pkg/controllers/interruption/suite_test.go`,
  with Go field names mapped to JSON through the `json:"..."` tags of the message models, and one
  state-change message per state the suite sends.

Shell variables and `time.Now()` are replaced by fixed values so the output is reproducible.
Usage: python scripts/extract_interruption_messages.py NTH_GIT_DIR KARPENTER_GIT_DIR OUT_DIR
(git directories as `fetch` leaves them; the commit read is HEAD and is recorded in the output).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

INSTANCE = "i-0123456789abcdef0"
NOW = "2026-01-01T00:00:00Z"
REGION = "us-west-2"
_SHELL = {
    r"\$\(date[^)]*\)": NOW,
    r"\$\{instance_id\}": INSTANCE,
    r"\$\{START_TIME\}": NOW,
    r"\$\{AWS_REGION\}": "us-east-1",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def nth_heredocs(repo: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in git(repo, "ls-tree", "-r", "--name-only", "HEAD", "test/e2e").split():
        if not path.endswith("-sqs-test"):
            continue
        text = git(repo, "show", f"HEAD:{path}")
        for block in re.findall(r"<<EOF\n(.*?)\nEOF", text, re.S):
            if '"detail-type"' not in block:
                continue
            for pattern, value in _SHELL.items():
                block = re.sub(pattern, value, block)
            event = json.loads(block)
            found[f"nth-e2e-{Path(path).name}"] = {
                "source": f"aws/aws-node-termination-handler {path}",
                "body": event,
            }
    return found


_GO_FIELDS = {
    "Version": "version",
    "ID": "id",
    "DetailType": "detail-type",
    "Source": "source",
    "Account": "account",
    "Time": "time",
    "Region": "region",
}


def nth_go_events(repo: Path) -> dict[str, Any]:
    path = "pkg/monitor/sqsevent/sqs-monitor_test.go"
    text = git(repo, "show", f"HEAD:{path}")
    events: dict[str, dict[str, Any]] = {}
    for name, body in re.findall(r"var (\w+) = sqsevent\.EventBridgeEvent\{(.*?)\n\}", text, re.S):
        event: dict[str, Any] = {}
        for field, value in re.findall(r'^\s*(\w+):\s*"([^"]*)",', body, re.M):
            if field in _GO_FIELDS:
                event[_GO_FIELDS[field]] = value
        resources = re.search(r"Resources: \[\]string\{(.*?)\}", body, re.S)
        event["resources"] = re.findall(r'"([^"]*)"', resources.group(1)) if resources else []
        detail = re.search(r"Detail: \[\]byte\(`(.*?)`\)", body, re.S)
        event["detail"] = json.loads(detail.group(1)) if detail else {}
        events[name] = event
    # Copies with a field changed, e.g. `spotItnEventNoTime := spotItnEvent; spotItnEventNoTime.Time = ""`.
    for copy, original in re.findall(r"(\w+) := (\w+)\n", text):
        if original in events:
            changed = re.search(rf'{copy}\.Time = "([^"]*)"', text)
            if changed:
                events[copy] = {**events[original], "time": changed.group(1)}
    return {
        f"nth-unit-{name}": {"source": f"aws/aws-node-termination-handler {path} {name}", "body": event}
        for name, event in events.items()
    }


def _tags(repo: Path, package: str) -> dict[str, str]:
    text = git(repo, "show", f"HEAD:pkg/controllers/interruption/messages/{package}/model.go")
    return dict(re.findall(r'^\s*(\w+)\s+\S+\s+`json:"([^",]+)', text, re.M))


def _go_value(raw: str, state: str, name: str, constants: dict[str, str]) -> Any:
    raw = raw.strip().rstrip(",")
    if raw.startswith('"'):
        return raw.strip('"')
    known = {"involvedInstanceID": INSTANCE, "state": state, "time.Now()": NOW, "fake.DefaultRegion": REGION}
    if raw in known:
        return known[raw]
    if raw in constants:
        return constants[raw]
    if raw.startswith("string(uuid"):
        return f"{name}-0000"
    raise ValueError(f"{name}: cannot evaluate {raw!r}")


def _go_message(
    body: str,
    state: str,
    name: str,
    constants: dict[str, str],
    metadata_tags: dict[str, str],
    tags: dict[str, str],
) -> dict[str, Any]:
    meta, _, detail_src = body.partition("Detail:")
    event: dict[str, Any] = {}
    for field, raw in re.findall(r"^\s*(\w+):\s*([^{\n]+,)$", meta, re.M):
        if field in metadata_tags and field != "Resources":
            event[metadata_tags[field]] = _go_value(raw, state, name, constants)
    event["resources"] = [f"arn:aws:ec2:{REGION}:instance/{INSTANCE}"]
    detail: dict[str, Any] = {}
    for field, raw in re.findall(r"^\s*(\w+):\s*([^{\n]+,)$", detail_src, re.M):
        if field == "EntityValue":
            detail.setdefault("affectedEntities", []).append(
                {"entityValue": _go_value(raw, state, name, constants)}
            )
        elif field in tags:
            detail[tags[field]] = _go_value(raw, state, name, constants)
    event["detail"] = detail
    return event


def karpenter_builders(repo: Path) -> dict[str, Any]:
    path = "pkg/controllers/interruption/suite_test.go"
    text = git(repo, "show", f"HEAD:{path}")
    constants = dict(re.findall(r'^\s*(\w+)\s*=\s*"([^"]*)"', text, re.M))
    metadata_tags = dict(
        re.findall(
            r'^\s*(\w+)\s+\S+\s+`json:"([^",]+)',
            git(repo, "show", "HEAD:pkg/controllers/interruption/messages/types.go"),
            re.M,
        )
    )
    states = sorted(set(re.findall(r'stateChangeMessage\([^,]+, "(\w+)"\)', text)))
    states += [
        s for s in ("stopping", "stopped", "shutting-down", "terminated", "running") if s not in states
    ]
    found: dict[str, Any] = {}
    pattern = r"func (\w+)Message\(involvedInstanceID(, state)? string\) (\w+)\.Message \{(.*?)\n\}"
    for name, has_state, package, body in re.findall(pattern, text, re.S):
        tags = _tags(repo, package)
        for state in states if has_state else [""]:
            key = f"karpenter-{name}-{state}" if state else f"karpenter-{name}"
            found[key] = {
                "source": f"aws/karpenter-provider-aws {path} {name}Message"
                + (f"(state={state})" if state else ""),
                "body": _go_message(body, state, name, constants, metadata_tags, tags),
            }
    return found


def main() -> None:
    nth, karpenter, out = (Path(a) for a in sys.argv[1:4])
    out.mkdir(parents=True, exist_ok=True)
    commits = {
        "aws/aws-node-termination-handler": git(nth, "rev-parse", "HEAD").strip(),
        "aws/karpenter-provider-aws": git(karpenter, "rev-parse", "HEAD").strip(),
    }
    messages = {**nth_heredocs(nth), **nth_go_events(nth), **karpenter_builders(karpenter)}
    (out / "extracted.json").write_text(
        json.dumps({"commits": commits, "messages": messages}, indent=2, sort_keys=True) + "\n"
    )
    print(f"{len(messages)} messages written to {out / 'extracted.json'}")


if __name__ == "__main__":
    main()
