"""Big inputs: `hpscaler plan` on a `List` of 100,000 pending pods, and on a 50 MB manifest.

Each runs `hpscaler plan --config config/examples --pods FILE --output json` in a subprocess, as a
user would, and reads its wall time, CPU time (user + system) and peak RSS (`os.wait4`'s
`ru_maxrss` for that child alone). On a shared machine the wall time grows with the load and the
CPU time does not, so both are reported. The output is checked: every input pod appears exactly
once (on a new node or unschedulable).

* The List: 100,000 Pods of 20 Deployments in one `kind: List` document, each pod with the
  metadata a real pod carries (labels, owner reference, a container with requests). Written as
  `kubectl get pods -o yaml` writes it (`kind` after `items`), and the same pods as
  `kubectl get pods -o json` writes them.
* The 50 MB manifest: one document per pod, each with the annotations and env a real pod carries,
  until the file reaches 50 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Result, Row

# HPSCALER_BENCH_BIG_PODS / _MB shrink the inputs on a machine too loaded to parse 100k pods in time.
LIST_PODS = int(os.environ.get("HPSCALER_BENCH_BIG_PODS", "100000"))
MANIFEST_BYTES = int(float(os.environ.get("HPSCALER_BENCH_BIG_MB", "50")) * 1_000_000)
TARGET_SECONDS = 30.0
TARGET_MB = 800.0
CONFIG = Path("config/examples")
CPUS = ("100m", "250m", "500m", "1", "1500m")
MEMORY = ("100Mi", "256Mi", "512Mi", "1Gi", "2Gi")


def pod_yaml(i: int, indent: str, extra: str = "") -> str:
    app = f"app-{i % 20:02d}"
    return (
        f"{indent}apiVersion: v1\n"
        f"{indent}kind: Pod\n"
        f"{indent}metadata:\n"
        f"{indent}  name: {app}-{i:06d}\n"
        f"{indent}  namespace: default\n"
        f"{indent}  uid: 5f3e{i:08d}-0000-4000-8000-000000000000\n"
        f"{indent}  labels: {{app: {app}, pod-template-hash: 7d9f8c{i % 20:02d}}}\n"
        f"{indent}  ownerReferences:\n"
        f"{indent}  - {{apiVersion: apps/v1, kind: ReplicaSet, name: {app}-7d9f8c, uid: rs-{i % 20},"
        f" controller: true}}\n"
        f"{extra}"
        f"{indent}spec:\n"
        f"{indent}  containers:\n"
        f"{indent}  - name: main\n"
        f"{indent}    image: public.ecr.aws/docker/library/nginx:1.27\n"
        f"{indent}    resources:\n"
        f"{indent}      requests: {{cpu: {CPUS[i % 5]}, memory: {MEMORY[(i // 5) % 5]}}}\n"
        f"{indent}status:\n"
        f"{indent}  phase: Pending\n"
    )


def write_list(path: Path, count: int) -> None:
    """The List as `kubectl get -o yaml` writes it: keys in order, so `kind` comes after `items`."""
    with path.open("w", encoding="utf-8") as out:
        out.write("apiVersion: v1\nitems:\n")
        for i in range(count):
            text = pod_yaml(i, "    ")
            out.write("  - " + text[4:])
        out.write('kind: List\nmetadata:\n  resourceVersion: ""\n')


def pod_object(i: int) -> dict[str, Any]:
    """`pod_yaml`'s pod as the API returns it."""
    app = f"app-{i % 20:02d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{i:06d}",
            "namespace": "default",
            "uid": f"5f3e{i:08d}-0000-4000-8000-000000000000",
            "labels": {"app": app, "pod-template-hash": f"7d9f8c{i % 20:02d}"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-7d9f8c",
                    "uid": f"rs-{i % 20}",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "public.ecr.aws/docker/library/nginx:1.27",
                    "resources": {"requests": {"cpu": CPUS[i % 5], "memory": MEMORY[(i // 5) % 5]}},
                }
            ]
        },
        "status": {"phase": "Pending"},
    }


def write_json_list(path: Path, count: int) -> None:
    """The List as `kubectl get -o json` writes it (indented by 4)."""
    with path.open("w", encoding="utf-8") as out:
        out.write('{\n    "apiVersion": "v1",\n    "items": [\n')
        for i in range(count):
            item = json.dumps(pod_object(i), indent=4)
            out.write(("" if i == 0 else ",\n") + "\n".join("        " + line for line in item.splitlines()))
        out.write(
            '\n    ],\n    "kind": "List",\n    "metadata": {\n        "resourceVersion": ""\n    }\n}\n'
        )


def write_manifest(path: Path, size: int) -> int:
    annotations = "".join(
        f'    example.com/note-{k}: "{"x" * 40}"\n' for k in range(8)
    )  # what admission webhooks and CI leave on real pods
    extra = "  annotations:\n" + annotations
    count = 0
    with path.open("w", encoding="utf-8") as out:
        while out.tell() < size:
            out.write("---\n" + pod_yaml(count, "", extra))
            count += 1
    return count


def run_plan(pods: Path) -> tuple[float, float, float, dict[str, Any] | None, str]:
    """(wall seconds, CPU seconds, peak RSS MB, parsed JSON output or None, stderr tail)."""
    command = [sys.executable, "-c", "from hpscaler.cli import main; main()", "plan"]
    command += ["--config", str(CONFIG), "--pods", str(pods)]
    command += ["--output", "json"]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")[-400:]
        try:
            parsed = json.loads(stdout.read())
        except ValueError:
            parsed = None
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, parsed, err


def placed_once(output: dict[str, Any] | None, expected: int) -> str:
    """'' if every input pod appears exactly once in the plan's output, else what is wrong."""
    if output is None:
        return "no JSON output"
    keys = [p for n in output.get("newNodes", []) for p in n["pods"]]
    keys += [p for n in output.get("existingNodes", []) for p in n["pods"]]
    keys += [u["pod"] for u in output.get("unschedulable", [])]
    if len(keys) != expected or len(set(keys)) != expected:
        return f"{len(set(keys))} distinct pods of {expected} in the output ({len(keys)} entries)"
    return ""


def run(quick: bool = False) -> Result:
    count = 5_000 if quick else LIST_PODS
    size = 2_000_000 if quick else MANIFEST_BYTES
    result = Result("big")
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "pods-list.yaml"
        write_list(listing, count)
        json_listing = Path(tmp) / "pods-list.json"
        write_json_list(json_listing, count)
        manifest = Path(tmp) / "pods-manifest.yaml"
        manifest_pods = write_manifest(manifest, size)
        cases = (
            (f"plan on a List of {count:,} pods", listing, count),
            (f"plan on a List of {count:,} pods as JSON", json_listing, count),
            (f"plan on a {size / 1e6:.0f} MB manifest ({manifest_pods:,} pods)", manifest, manifest_pods),
        )
        for label, path, expected in cases:
            mb = path.stat().st_size / 1e6
            seconds, cpu, rss, output, err = run_plan(path)
            problem = placed_once(output, expected)
            print(
                f"  big: {label} ({mb:.0f} MB file): {seconds:.1f} s ({cpu:.1f} CPU s), peak RSS {rss:.0f} MB"
                f"{'; ' + problem + ' ' + err if problem else ''}",
                flush=True,
            )
            result.data[label] = {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "rss_mb": rss,
                "file_mb": mb,
                "problem": problem,
            }
            result.rows.append(
                Row(
                    "big",
                    f"{label}: wall time",
                    seconds,
                    None,
                    None,
                    f"<= {TARGET_SECONDS:g} s",
                    seconds <= TARGET_SECONDS and not problem,
                    "s",
                    f"{mb:.0f} MB file; {cpu:.1f} CPU s; every pod in the output once: {problem or 'yes'}",
                )
            )
            result.rows.append(
                Row(
                    "big",
                    f"{label}: peak RSS",
                    rss,
                    None,
                    None,
                    f"<= {TARGET_MB:g} MB",
                    rss <= TARGET_MB and not problem,
                    "MB",
                )
            )
    return result
