"""Importing contacts over GraphQL: every valid row stored, refusals reported, re-imports idempotent,
large files as jobs applied in batches with progress."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.runtime import Runtime
from tests.support.graphql import GraphQLClient, GraphQLErrors

IMPORT = (
    "mutation($r: JSON!) { importContacts(rows: $r) { id phone tags variables optedIn consentLog version } }"
)
CONTACT = "query($p: String!) { contact(phone: $p) { id phone tags variables optedIn consentLog version } }"
START = """mutation($r: JSON!, $more: Boolean!) { startContactImport(rows: $r, more: $more) { id status total receiving } }"""
ADD = """mutation($j: ID!, $r: JSON!, $more: Boolean!) { addContactImportRows(jobId: $j, rows: $r, more: $more) { id total receiving } }"""
JOB = """query($j: ID!, $n: Int!, $s: Int!) { importJob(id: $j) {
  id status receiving total processed created updated unchanged refused finishedAt
  errors(first: $n, skip: $s) { index field code message } } }"""
COUNT = "query($s: JSON) { contacts(segment: $s) { totalCount } }"


async def catalog(gql: GraphQLClient) -> None:
    await gql('mutation { createTag(name: "vip", kind: SUPPORT) { id } }')
    await gql('mutation { createTag(name: "newsletter", kind: MARKETING) { id } }')
    await gql('mutation { createField(name: "age", type: NUMBER) { id } }')


async def test_a_row_with_only_a_phone_is_stored(gql: GraphQLClient) -> None:
    imported = (await gql(IMPORT, r=[{"phone": "+34600920001"}]))["importContacts"]
    assert imported[0]["version"] == 1 and imported[0]["id"]
    found = (await gql(CONTACT, p="+34600920001"))["contact"]
    assert found is not None and found["id"] == imported[0]["id"]


async def test_every_refused_row_is_reported_with_its_index_and_field(gql: GraphQLClient) -> None:
    await catalog(gql)
    rows = [
        {"phone": "+34600920010"},
        {"phone": "not a phone"},
        {"phone": "+34600920012", "variables": {"age": "muchos"}},
        {"phone": "+34600920013", "tags": ["gold"]},
        {"phone": "+34600920014", "colour": "red"},
    ]
    with pytest.raises(GraphQLErrors) as caught:
        await gql(IMPORT, r=rows)
    error = caught.value.errors[0]
    assert error["extensions"]["code"] == "INVALID_INPUT" and error["message"].startswith("row 2: ")
    assert "3 more refused row(s); nothing was imported" in error["message"]
    refused = error["extensions"]["rows"]
    assert [(r["index"], r["field"], r["code"]) for r in refused] == [
        (1, "row 2: phone", "INVALID_INPUT"),
        (2, "age", "INVALID_INPUT"),
        (3, "tag", "NOT_FOUND"),
        (4, "rows", "INVALID_INPUT"),
    ]
    assert "'gold'" in refused[2]["message"] and "colour" in refused[3]["message"]
    assert (await gql(CONTACT, p="+34600920010"))["contact"] is None  # the call is all or nothing


async def test_importing_the_same_rows_twice_changes_nothing(gql: GraphQLClient) -> None:
    await catalog(gql)
    rows = [
        {"phone": "+34600920020", "variables": {"age": "33"}, "tags": ["vip", "vip"], "optedIn": True},
        {"phone": "+34600920021", "tags": ["newsletter"]},
        {"phone": "+34600920022"},
    ]
    first = (await gql(IMPORT, r=rows))["importContacts"]
    second = (await gql(IMPORT, r=rows))["importContacts"]
    assert [c["id"] for c in first] == [c["id"] for c in second]
    assert [c["version"] for c in first] == [c["version"] for c in second] == [1, 1, 1]
    stored = (await gql(CONTACT, p="+34600920020"))["contact"]
    assert stored["tags"] == ["vip"] and stored["variables"] == {"age": 33} and stored["optedIn"] is True
    assert len(stored["consentLog"]) == 1
    assert (await gql(COUNT))["contacts"]["totalCount"] == 3
    changed = [{**rows[0], "variables": {"age": 34}}, rows[1]]
    assert [c["version"] for c in (await gql(IMPORT, r=changed))["importContacts"]] == [2, 1]


async def run_job(gql: GraphQLClient, runtime: Runtime, parts: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Send ``parts`` as one import job (the last with more: false) and wait until it is applied."""
    job = (await gql(START, r=parts[0], more=len(parts) > 1))["startContactImport"]
    assert job["status"] == "running"
    for n, part in enumerate(parts[1:], start=2):
        added = (await gql(ADD, j=job["id"], r=part, more=n < len(parts)))["addContactImportRows"]
        assert added["total"] == sum(len(p) for p in parts[:n])
    await runtime.contact_services.imports.wait(job["id"])
    return (await gql(JOB, j=job["id"], n=100, s=0))["importJob"]


def rows_of(count: int, bad_every: int = 0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in range(count):
        row: dict[str, Any] = {"phone": f"+3461{n:07d}", "tags": ["vip"] if n % 2 else []}
        if n % 3 == 0:
            row["variables"] = {"age": n % 90}
        if bad_every and n % bad_every == bad_every - 1:
            row["variables"] = {"age": "unknown"}
        rows.append(row)
    return rows


async def test_an_import_job_applies_every_valid_row_in_batches_and_reports_the_rest(
    gql: GraphQLClient, runtime: Runtime
) -> None:
    await catalog(gql)
    rows = rows_of(3000, bad_every=500)
    parts = [rows[:1200], rows[1200:2500], rows[2500:]]
    job = await run_job(gql, runtime, parts)
    assert job["status"] == "completed" and job["receiving"] is False and job["finishedAt"]
    assert (job["total"], job["processed"], job["refused"]) == (3000, 3000, 6)
    assert (job["created"], job["updated"], job["unchanged"]) == (2994, 0, 0)
    assert [e["index"] for e in job["errors"]] == [499, 999, 1499, 1999, 2499, 2999]
    assert {(e["field"], e["code"]) for e in job["errors"]} == {("age", "INVALID_INPUT")}
    assert "row 500: field 'age' (NUMBER)" in job["errors"][0]["message"]
    later = (await gql(JOB, j=job["id"], n=2, s=4))["importJob"]["errors"]
    assert [e["index"] for e in later] == [2499, 2999]
    assert (await gql(COUNT))["contacts"]["totalCount"] == 2994
    assert (await gql(COUNT, s={"tag": "vip"}))["contacts"][
        "totalCount"
    ] == 1494  # odd rows, less the 6 refused
    assert (await gql(CONTACT, p="+34610000003"))["contact"]["variables"] == {"age": 3}
    again = await run_job(gql, runtime, [rows])  # the same file again: nothing new, nothing changed
    assert (again["created"], again["updated"], again["unchanged"], again["refused"]) == (0, 0, 2994, 6)
    assert (await gql(COUNT))["contacts"]["totalCount"] == 2994
    with pytest.raises(GraphQLErrors) as caught:  # a completed job takes no more rows
        await gql(ADD, j=job["id"], r=rows[:1], more=False)
    assert caught.value.codes == ["INVALID_INPUT"]


@pytest.mark.full
async def test_a_100k_row_import_streams_in_batches(gql: GraphQLClient, runtime: Runtime) -> None:
    await catalog(gql)
    rows = rows_of(100_000)
    parts = [rows[n : n + 10_000] for n in range(0, len(rows), 10_000)]
    began = time.perf_counter()
    job = await run_job(gql, runtime, parts)
    elapsed = time.perf_counter() - began
    print(f"\nimported {job['processed']} rows in {elapsed:.1f}s: {job['processed'] / elapsed:.0f} rows/s")
    assert (job["created"], job["refused"]) == (100_000, 0)
    assert (await gql(COUNT))["contacts"]["totalCount"] == 100_000
