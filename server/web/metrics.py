"""``/metrics`` in Prometheus' text format: live gauges and the counters operators alert on.

Replicas: shards held and replicas seen say whether the leases are balanced (and a process that
holds none cannot serve); forwarded/received turns show how much traffic crosses replicas.
Timers: fired/retried/dropped show whether due timers keep up and whether some keep failing.
Store work (only with ``KONVO_STORE_STATS``): commands by name and documents written, what the
store's CPU follows (``./scripts/bench`` divides them by the events of its measured window).
"""

from __future__ import annotations

from server.runtime import Runtime
from server.store.stats import StoreStats
from server.web.graphql_view import SocketGauges

# name -> (help, Prometheus type, value or {label set such as '{command="find"}': value})
Series = dict[str, tuple[str, str, float | dict[str, float]]]


def exposition(runtime: Runtime, sockets: SocketGauges) -> str:
    lines = []
    for name, (help_text, kind, value) in collect(runtime, sockets).items():
        samples = value if isinstance(value, dict) else {"": value}
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{labels} {sample}" for labels, sample in samples.items()]
    return "\n".join(lines) + "\n"


def collect(runtime: Runtime, sockets: SocketGauges) -> Series:
    actors, worker = runtime.actors, runtime.timer_worker
    series: Series = {
        "konvo_active_actors": _gauge("Contact actors in memory.", actors.active_count if actors else 0),
        "konvo_websocket_connections": _gauge("Open GraphQL WebSocket connections.", sockets.connections),
        "konvo_websocket_operation_tasks": _gauge(
            "Running GraphQL operations (subscriptions) over WebSockets.", len(sockets.tasks)
        ),
        "konvo_pubsub_subscribers": _gauge("Local pub/sub subscriptions.", runtime.pubsub.subscriber_count),
    }
    if actors is not None:
        series |= {
            "konvo_shards_held": _gauge("Contact shards leased by this process.", len(actors.leases.held)),
            "konvo_replicas_live": _gauge("Replicas alive at the last lease tick.", len(actors.leases.live)),
            "konvo_turns_forwarded_total": _counter(
                "Turns sent to the replica owning the contact's shard.", actors.forwarded
            ),
            "konvo_turns_received_total": _counter("Turns run here for another replica.", actors.received),
        }
    if worker is not None:
        series |= {
            "konvo_timers_fired_total": _counter("Timer jobs acked after their turn.", worker.fired),
            "konvo_timers_retried_total": _counter("Timer jobs put back to run again.", worker.retried),
            "konvo_timers_dropped_total": _counter(
                "Timer jobs dropped: unreadable, expired or out of tries.", worker.dropped
            ),
        }
    if runtime.database.stats is not None:
        series |= _store_series(runtime.database.stats)
    return series


def _store_series(stats: StoreStats) -> Series:
    by_name = {f'{{command="{name}"}}': float(count) for name, count in sorted(stats.commands.items())}
    return {
        "konvo_store_commands_total": ("Commands sent to the store, by command name.", "counter", by_name),
        "konvo_store_command_failures_total": _counter("Store commands that failed.", stats.failures),
        "konvo_store_documents_written_total": _counter(
            "Documents the store inserted, changed or deleted for this process.", stats.documents_written
        ),
        "konvo_store_documents_written_by_collection_total": (
            "Documents the store inserted, changed or deleted for this process, by collection.",
            "counter",
            {f'{{collection="{name}"}}': float(n) for name, n in sorted(stats.written_by_collection.items())},
        ),
    }


def _gauge(help_text: str, value: float) -> tuple[str, str, float]:
    return help_text, "gauge", value


def _counter(help_text: str, value: float) -> tuple[str, str, float]:
    return help_text, "counter", value
