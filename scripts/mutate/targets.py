"""What is mutated and which tests are meant to catch it: module (or functions) -> tests.

Each target runs only its own tests, so a run takes minutes rather than the whole suite per
mutant. ``first_tests`` splits a target in two stages: a mutant the fast tests kill never
starts the slow ones (the segments' unit tests and fixed store cases take seconds, the
property test's random search twenty: only what the fixed cases miss needs the search).
``mutants`` narrows a module to the functions that hold the concept (mutmut's mutant names,
globbed); without it every function of the files is mutated. mutmut mutates function bodies
only: module-level constants (``WINDOW = timedelta(hours=24)``) are covered by the boundary
tests, not by mutants.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    why: str
    files: tuple[str, ...]
    tests: tuple[str, ...]
    mutants: tuple[str, ...] = ()
    first_tests: tuple[str, ...] = ()
    """Cheap tests tried first: only the mutants they leave alive pay for ``tests`` (all of them)."""


MAILBOX = "tests/integration/test_actor_mailbox.py"
WEBHOOK = "tests/integration/test_whatsapp_webhook.py"
SEGMENTS_EVERY_LEAF = "tests/integration/test_segments_every_leaf.py"
SEGMENTS_PROPERTY = "tests/integration/test_segments_property.py"
DEDUPE_FIRST = (
    "tests/unit/test_turn_bookkeeping.py",
    f"{MAILBOX}::test_an_older_event_told_again_is_a_duplicate_not_only_the_latest",
    f"{MAILBOX}::test_tells_racing_the_task_exit_all_apply_in_order_one_at_a_time",
    "tests/integration/test_turn_effects.py::test_a_redelivered_message_redoes_the_effects_its_turn_lost",
    f"{WEBHOOK}::test_the_same_wamid_twice_is_applied_once",
)

# Cheapest first: a run that is stopped early has the fast targets' figures.
TARGETS: tuple[Target, ...] = (
    Target(
        name="signature",
        why="the WhatsApp webhook's X-Hub-Signature-256 check",
        files=("server/channels/whatsapp/signature.py",),
        tests=("tests/unit/test_whatsapp_signature.py", WEBHOOK),
    ),
    Target(
        name="window",
        why="the 24-hour customer service window",
        files=("server/window.py",),
        mutants=("*window_open__mutmut_*",),
        tests=("tests/unit/test_window.py", "tests/unit/test_runner.py"),
    ),
    Target(
        name="permissions",
        why="who may call a GraphQL field (ADMIN / AGENT / no key)",
        files=("server/graphql/permissions.py",),
        tests=(
            "tests/integration/test_api_keys.py",
            "tests/integration/test_api_isolation.py",
        ),
    ),
    Target(
        name="commit",
        why="the contact's compare-and-set commit, fenced by the lease epoch",
        files=("server/store/contacts.py", "server/store/batching.py"),
        mutants=("*cas_filter__mutmut_*", "*compare_and_set__mutmut_*", "*CasBatcherǁ*__mutmut_*"),
        tests=(
            "tests/integration/test_group_commit.py",
            "tests/integration/test_shard_leases.py::test_fenced_write_refused_for_a_stale_epoch",
            f"{MAILBOX}::test_tells_racing_the_task_exit_all_apply_in_order_one_at_a_time",
        ),
    ),
    Target(
        name="dedupe",
        why="the actor's applied-event dedupe and a turn's commit (a redelivered event is applied once)",
        # The turn moved from ``_turn``/``_finish`` to ``_admitted_turn`` (check, redeliver, CAS
        # retry) and ``TurnLogic.finish`` (version, updated_at, applied ids, ended runs kept).
        files=("server/actors/contact_actor.py", "server/actors/turn_logic.py"),
        mutants=(
            "*ContactActorǁ_turn__mutmut_*",
            "*ContactActorǁ_admitted_turn__mutmut_*",
            "*TurnLogicǁfinish__mutmut_*",
        ),
        # The pure bookkeeping and the four dedupe tests first; the actor's other integration
        # tests (mailbox, effects after a commit, outbox) only for what they leave alive.
        first_tests=DEDUPE_FIRST,
        tests=(
            *DEDUPE_FIRST,
            MAILBOX,
            "tests/integration/test_turn_effects.py",
            "tests/integration/test_sent_outbox.py",
        ),
    ),
    Target(
        name="segments",
        why="segment conditions: the store filter and the in-memory evaluator agree",
        # The two back ends; the parser's error wording (language.py) is left out of the default
        # run: hundreds of message-text mutants, minutes each through the property test.
        files=("server/segments/evaluate.py", "server/segments/mongo.py"),
        # Unit tests and the fixed store cases first (seconds); the random search only for what
        # they leave alive.
        first_tests=(
            "tests/unit/test_segments.py",
            SEGMENTS_EVERY_LEAF,
            f"{SEGMENTS_PROPERTY}::test_presence_not_equal_in_and_contains_select_the_same_contacts",
        ),
        tests=("tests/unit/test_segments.py", SEGMENTS_EVERY_LEAF, SEGMENTS_PROPERTY),
    ),
    Target(
        name="leases",
        why="shard leases: who owns a contact, epochs, takeover and handover",
        files=("server/actors/leases.py",),
        # The pure owner and shard functions first; the rest needs Redis.
        first_tests=("tests/unit/test_shard_leases.py",),
        tests=("tests/unit/test_shard_leases.py", "tests/integration/test_shard_leases.py"),
    ),
)

# Not security-critical, so not in the default run: how much of the pure flow machinery its unit
# tests pin down (``./scripts/mutation compiler runner``).
EXTRA: tuple[Target, ...] = (
    Target(
        name="compiler",
        why="flow documents compiled to a step function, and the diagram",
        files=("server/machines/compiler.py",),
        tests=("tests/unit/test_compiler.py",),
    ),
    Target(
        name="runner",
        why="what entering each node kind does, replies, timers, spins",
        files=(
            "server/machines/runner.py",
            "server/machines/turn.py",
            "server/machines/node_entry.py",
            "server/machines/send_nodes.py",
            "server/machines/interactive_bodies.py",
            "server/machines/answers.py",
        ),
        tests=("tests/unit/test_runner.py", "tests/unit/test_window.py"),
    ),
)


def by_name(names: list[str]) -> list[Target]:
    known = {t.name: t for t in TARGETS + EXTRA}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names] if names else list(TARGETS)
