"""A delete on FalkorDB is all or nothing: killed at any point, the graph is as before or
as after it, and running it again ends exactly where an uninterrupted delete ends."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from kg.store import FalkorGraphStore
from tests.kg.store.test_contract import corpus

pytestmark = pytest.mark.services


class Killed(BaseException):
    """The process dies here: nothing after this point runs (no except clause sees it)."""


def dump(store: FalkorGraphStore) -> list[str]:
    """The whole graph, canonical: every node and edge with its properties, less the
    documents' `ingested_at` (the clock's second at each re-write, not part of a delete)."""
    nodes = store.read_query("MATCH (n) RETURN labels(n) AS labels, properties(n) AS props",
                             limit=10_000).rows
    for node in nodes:
        node["props"].pop("ingested_at", None)
    edges = store.read_query("MATCH (a)-[r]->(b) RETURN type(r) AS type, a.id AS a, "
                             "b.id AS b, properties(r) AS props", limit=10_000).rows
    return sorted(json.dumps(x, sort_keys=True, default=str) for x in nodes + edges)


def count_round_trips(store: FalkorGraphStore, monkeypatch: pytest.MonkeyPatch,
                      kill_at: int | None = None) -> Callable[[], int]:
    """Count the store's calls to the server; with `kill_at`, die just before that one."""
    sent = 0

    def step() -> None:
        nonlocal sent
        sent += 1
        if sent == kill_at:
            raise Killed

    send_one = store._graph.execute_command

    def one(*args: Any, **kwargs: Any) -> Any:
        step()
        return send_one(*args, **kwargs)

    send_block = redis.client.Pipeline.execute

    def block(self: redis.client.Pipeline, *args: Any, **kwargs: Any) -> Any:
        step()
        return send_block(self, *args, **kwargs)

    monkeypatch.setattr(store._graph, "execute_command", one)
    monkeypatch.setattr(redis.client.Pipeline, "execute", block)
    return lambda: sent


def fresh(store: FalkorGraphStore) -> list[str]:
    store.clear()
    corpus().write(store)
    return dump(store)


def test_a_killed_delete_leaves_the_graph_whole_or_deleted_and_a_rerun_finishes(
        falkor_store: FalkorGraphStore) -> None:
    store = falkor_store
    before = fresh(store)
    with pytest.MonkeyPatch.context() as mp:
        sent = count_round_trips(store, mp)
        store.delete_documents(["d1"])
        trips = sent()
    after = dump(store)
    assert after != before and trips >= 2

    for kill_at in range(1, trips + 1):
        assert fresh(store) == before
        with pytest.MonkeyPatch.context() as mp:
            count_round_trips(store, mp, kill_at=kill_at)
            with pytest.raises(Killed):
                store.delete_documents(["d1"])
        assert dump(store) in (before, after), f"half a delete when killed at call {kill_at}"
        store.delete_documents(["d1"])
        assert dump(store) == after, f"the re-run after a kill at call {kill_at}"
