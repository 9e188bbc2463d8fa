"""`hpscaler interruption parse` and the EventBridge parser on real messages.

The messages are data extracted from aws-node-termination-handler's and karpenter-provider-aws's
sources by `scripts/extract_interruption_messages.py` (commits recorded in the file), plus the
HyperPod cluster-events reference's example record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpscaler.aws.eventbridge import parse_message
from hpscaler.backends.types import HyperPodEventKind, InterruptionKind, InterruptionMessage, JunkMessage
from hpscaler.cli import main

DATA = Path(__file__).parents[1] / "data" / "interruption-messages"
EXTRACTED: dict[str, Any] = json.loads((DATA / "extracted.json").read_text())["messages"]
HYPERPOD: dict[str, Any] = json.loads((DATA / "hyperpod-reference.json").read_text())["body"]

# What each extracted message must come out as: (kind, action). Karpenter ignores the same states.
EXPECTED = {
    "karpenter-capacityReservationInterruption": ("capacity-reservation-interruption", "drain"),
    "karpenter-scheduledChange": ("scheduled-change", "drain"),
    "karpenter-spotInterruption": ("spot-interruption", "drain"),
    "karpenter-stateChange-creating": ("state-change", "none"),
    "karpenter-stateChange-running": ("state-change", "none"),
    "karpenter-stateChange-shutting-down": ("state-change", "replace"),
    "karpenter-stateChange-stopped": ("state-change", "replace"),
    "karpenter-stateChange-stopping": ("state-change", "replace"),
    "karpenter-stateChange-terminated": ("state-change", "replace"),
    "nth-e2e-asg-lifecycle-sqs-test": ("ignored", "none"),
    "nth-e2e-ec2-state-change-sqs-test": ("state-change", "replace"),
    "nth-e2e-prometheus-metrics-sqs-test": ("state-change", "replace"),
    "nth-e2e-rebalance-recommendation-sqs-test": ("rebalance-recommendation", "none"),
    "nth-e2e-scheduled-change-event-sqs-test": ("scheduled-change", "drain"),
    "nth-e2e-spot-interruption-sqs-test": ("spot-interruption", "drain"),
    "nth-unit-asgLaunchLifecycleEvent": ("ignored", "none"),
    "nth-unit-asgLifecycleEvent": ("ignored", "none"),
    "nth-unit-asgLifecycleTestNotification": ("ignored", "none"),
    "nth-unit-rebalanceRecommendationEvent": ("rebalance-recommendation", "none"),
    "nth-unit-spotItnEvent": ("spot-interruption", "drain"),
    "nth-unit-spotItnEventNoTime": ("spot-interruption", "drain"),
}


def run_parse(body: str, *args: str) -> Any:
    result = CliRunner().invoke(main, ["interruption", "parse", "-", "--output", "json", *args], input=body)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_extracted_message_is_covered() -> None:
    assert set(EXTRACTED) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_extracted_message(name: str) -> None:
    out = run_parse(json.dumps(EXTRACTED[name]["body"]))
    assert (out["kind"], out["action"]) == EXPECTED[name]
    assert set(out) == {"kind", "instanceId", "deadline", "action", "reason"}
    if out["kind"] != "ignored":
        assert out["instanceId"].startswith("i-")
    assert out["reason"]


def test_spot_deadline_is_two_minutes_after_the_event() -> None:
    out = run_parse(json.dumps(EXTRACTED["karpenter-spotInterruption"]["body"]))
    assert out["deadline"] == "2026-01-01T00:02:00Z"


def test_empty_time_uses_the_receive_time() -> None:
    body = json.dumps(EXTRACTED["nth-unit-spotItnEventNoTime"]["body"])
    assert json.loads(body)["time"] == ""
    (parsed,) = parse_message(body, "m", "r", received_at=1000.0)
    assert isinstance(parsed, InterruptionMessage)
    assert (parsed.time, parsed.deadline) == (1000.0, 1120.0)
    (junk,) = parse_message(body, "m", "r")  # without a receive time there is nothing to go by
    assert isinstance(junk, JunkMessage)


def test_hyperpod_reference_record_is_a_capacity_failure() -> None:
    out = run_parse(json.dumps(HYPERPOD))
    assert out == {
        "kind": "hyperpod-event",
        "instanceId": "i-0391f86fa0fe0d465",
        "deadline": None,
        "action": "backoff",
        "reason": out["reason"],
    }
    assert "sufficient capacity" in out["reason"]
    (parsed,) = parse_message(json.dumps(HYPERPOD), "m", "r")
    assert isinstance(parsed, InterruptionMessage)
    assert (parsed.group, parsed.state) == ("p5Inst", HyperPodEventKind.CAPACITY_FAILURE)
    assert parsed.time == pytest.approx(1748794825.350)  # EventTime is epoch milliseconds


def test_hyperpod_instance_terminated_is_a_loss_without_notice() -> None:
    record = json.loads(json.dumps(HYPERPOD))
    details = record["detail"]["EventDetails"]
    details.update(
        EventLevel="Warn", Description="Instance i-0391f86fa0fe0d465 in InstanceGroup p5Inst terminated"
    )
    del details["EventDetails"]
    out = run_parse(json.dumps(record))
    assert (out["kind"], out["action"]) == ("hyperpod-event", "replace")


def test_sns_wrapped_batch_of_instances() -> None:
    health = EXTRACTED["karpenter-scheduledChange"]["body"]
    health = {
        **health,
        "detail": {
            **health["detail"],
            "affectedEntities": [{"entityValue": "i-0a"}, {"entityValue": "i-0b"}],
        },
    }
    wrapped = json.dumps({"Type": "Notification", "MessageId": "sns-1", "Message": json.dumps(health)})
    out = run_parse(wrapped)
    assert [(o["kind"], o["instanceId"]) for o in out] == [
        ("scheduled-change", "i-0a"),
        ("scheduled-change", "i-0b"),
    ]


def test_rebalance_as_warning_replaces_early() -> None:
    body = json.dumps(EXTRACTED["nth-unit-rebalanceRecommendationEvent"]["body"])
    assert run_parse(body, "--rebalance-as-warning")["action"] == "replace"


def test_junk_and_file_input(tmp_path: Path) -> None:
    path = tmp_path / "msg.json"
    path.write_text("{not json")
    result = CliRunner().invoke(main, ["interruption", "parse", str(path), "--output", "json"])
    assert result.exit_code == 0
    out = json.loads(result.output)
    assert (out["kind"], out["action"], out["instanceId"]) == ("ignored", "none", None)
    assert "not JSON" in out["reason"]


def test_state_change_kinds_parse_lower_case() -> None:
    body = json.dumps(EXTRACTED["karpenter-stateChange-stopping"]["body"]).replace('"stopping"', '"STOPPING"')
    (parsed,) = parse_message(body, "m", "r")
    assert isinstance(parsed, InterruptionMessage)
    assert (parsed.kind, parsed.state) == (InterruptionKind.STATE_CHANGE, "stopping")


def test_check_config_warns_when_no_notice_source_is_configured(tmp_path: Path) -> None:
    examples = Path(__file__).parents[2] / "config" / "examples"  # backends: the real aws one
    result = CliRunner().invoke(main, ["check-config", str(examples)])
    assert result.exit_code == 0
    assert "no interruption notice source is configured" in result.stderr
    for spec in (
        "aws: {interruptionQueueUrl: https://sqs.us-west-2.amazonaws.com/1/q}",
        "interruption: {nodeAgent: true}",
    ):
        config = tmp_path / spec.split(":")[0]
        config.mkdir()
        for item in examples.iterdir():
            if item.is_file():  # config/examples/gpu/ is a second example, not part of this one
                (config / item.name).write_text(item.read_text())
        (config / "hpscaler.yaml").write_text(
            "apiVersion: hpscaler.io/v1alpha1\nkind: HpscalerConfig\n"
            f"spec:\n  clusterName: my-cluster\n  {spec}\n"
        )
        quiet = CliRunner().invoke(main, ["check-config", str(config)])
        assert quiet.exit_code == 0, quiet.output
        assert "no interruption notice source" not in quiet.stderr
