"""``flowAnalytics`` as tests read it, and the same numbers worked out from stored runs.

The expected side reads nothing but run documents (their status, end reason and steps) and the
flow definition, with rules written here independently of ``server/machines/flow_counts.py``:
so a counter lost, counted twice or put in the wrong place shows as a difference.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

ANALYTICS = """
query($f: ID!, $v: Int, $from: DateTime, $to: DateTime) {
  flowAnalytics(flowId: $f, version: $v, from: $from, to: $to) {
    runsStarted runsNotStarted runsCompleted runsFailed runsCancelled
    endings { status reason count }
    nodes {
      nodeId entered waited replied noReply failed
      buttons { key count } branches { key count } failures { key count }
      messages { queued sent delivered read failed errors { key count } }
      steps { action outcome count }
    }
  }
}
"""

# Steps a node records when a run enters it (one each time; spin_stopped is not an entry).
ENTRY_ACTIONS = {
    "message_sent",
    "message_not_sent",
    "template_sent",
    "template_not_sent",
    "opted_in",
    "tagged",
    "variable_set",
    "variable_not_set",
    "assigned",
    "not_assigned",
    "condition",
    "delay",
    "connect_flow",
    "split",
}
SENDS = ("message_sent", "template_sent")


def _pairs(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted((k, n) for k, n in counter.items() if n)


def normalized(analytics: dict[str, Any]) -> dict[str, Any]:
    """The API's answer as comparable plain data (lists sorted, nodes with nothing left out)."""
    nodes = {}
    for node in analytics["nodes"]:
        shaped = {
            "entered": node["entered"],
            "waited": node["waited"],
            "replied": node["replied"],
            "noReply": node["noReply"],
            "failed": node["failed"],
            "buttons": sorted((b["key"], b["count"]) for b in node["buttons"]),
            "branches": sorted((b["key"], b["count"]) for b in node["branches"]),
            "failures": sorted((b["key"], b["count"]) for b in node["failures"]),
            "messages": {
                **{k: node["messages"][k] for k in ("queued", "sent", "delivered", "read", "failed")},
                "errors": sorted((e["key"], e["count"]) for e in node["messages"]["errors"]),
            },
            "steps": sorted((s["action"], s["outcome"], s["count"]) for s in node["steps"]),
        }
        if shaped["entered"] or shaped["steps"]:
            nodes[node["nodeId"]] = shaped
    return {
        "runs": {
            k: analytics[k]
            for k in ("runsStarted", "runsNotStarted", "runsCompleted", "runsFailed", "runsCancelled")
        },
        "endings": sorted((e["status"].lower(), e["reason"], e["count"]) for e in analytics["endings"]),
        "nodes": nodes,
    }


def waiting_nodes(definition: dict[str, Any]) -> set[str]:
    """Nodes where a run that got there stops: delays, and messages that wait for an answer."""
    found = set()
    for node in definition["nodes"]:
        if node["type"] == "delay":
            found.add(node["id"])
        elif node["type"] in ("message", "template") and (
            any(b.get("next") for b in node.get("buttons") or [])
            or node.get("on_reply")
            or node.get("no_reply")
        ):
            found.add(node["id"])
    return found


def expected_from_runs(runs: list[dict[str, Any]], definition: dict[str, Any]) -> dict[str, Any]:
    """What ``normalized(flowAnalytics)`` must be for these runs (all of one flow)."""
    waits = waiting_nodes(definition)
    runs_block = Counter[str]()
    endings = Counter[tuple[str, str]]()
    per_node: dict[str, dict[str, Counter[Any]]] = defaultdict(lambda: defaultdict(Counter))
    for run in runs:
        steps = run["steps"]
        assert not run.get("steps_dropped"), "the derivation needs every step of a run"
        if steps and steps[0]["action"] == "started":
            runs_block["runsStarted"] += 1
        if any(s["action"] == "not_started" for s in steps):
            runs_block["runsNotStarted"] += 1
        if run["status"] in ("completed", "failed", "cancelled"):
            runs_block[f"runs{run['status'].capitalize()}"] += 1
            endings[(run["status"], run["end_reason"] or "")] += 1
            if run["status"] == "failed" and run.get("node"):
                per_node[run["node"]]["failures"][run["end_reason"]] += 1
        previous: dict[str, Any] | None = None
        for step in steps:
            node, action, outcome = step.get("node"), step["action"], step["outcome"]
            detail = step.get("detail") or {}
            if node is None:
                previous = step
                continue
            counters = per_node[node]
            counters["steps"][(action, outcome)] += 1
            asked_again = previous is not None and (
                (previous["action"] == "reply_not_understood" and previous["outcome"] == "reprompted")
                or (
                    previous["action"] == "variable_not_set"
                    and "asking_again" in (previous.get("detail") or {})
                )
            )
            if action in ENTRY_ACTIONS and not (asked_again and action in SENDS):
                counters["plain"]["entered"] += 1
                if node in waits and (action in SENDS or (action == "delay" and outcome == "waiting")):
                    counters["plain"]["waited"] += 1
            if action == "reply":
                counters["plain"]["replied"] += 1
            if action == "no_reply":
                counters["plain"]["noReply"] += 1
            if action == "button":
                counters["buttons"][detail["button"]] += 1
            if "branch" in detail:
                counters["branches"][detail["branch"]] += 1
            if action in SENDS:
                counters["messages"]["queued"] += 1
            if action == "message_status":
                counters["messages"][outcome] += 1
                if outcome == "failed" and detail.get("error_code"):
                    counters["errors"][detail["error_code"]] += 1
            previous = step
    nodes = {}
    for node, counters in per_node.items():
        plain = counters["plain"]
        messages = counters["messages"]
        nodes[node] = {
            "entered": plain["entered"],
            "waited": plain["waited"],
            "replied": plain["replied"],
            "noReply": plain["noReply"],
            "failed": sum(counters["failures"].values()),
            "buttons": _pairs(counters["buttons"]),
            "branches": _pairs(counters["branches"]),
            "failures": _pairs(counters["failures"]),
            "messages": {
                **{k: messages[k] for k in ("queued", "sent", "delivered", "read", "failed")},
                "errors": _pairs(counters["errors"]),
            },
            "steps": sorted((a, o, n) for (a, o), n in counters["steps"].items()),
        }
    return {
        "runs": {
            k: runs_block[k]
            for k in ("runsStarted", "runsNotStarted", "runsCompleted", "runsFailed", "runsCancelled")
        },
        "endings": sorted((status, reason, n) for (status, reason), n in endings.items()),
        "nodes": nodes,
    }
