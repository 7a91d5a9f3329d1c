"""The scale-out routing rule and route table alone (no Ray): stickiness, checkpoint first, the load bound, retries
avoiding a dead replica, how each route is treated, merging the replicas' job lists."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loradeck.ray import routes
from loradeck.ray.policy import NoReplica, ReplicaView, StackAffinity

DEMO = frozenset({"demo"})


def views(*ids: str, checkpoints=DEMO) -> list[ReplicaView]:
    return [ReplicaView(i, checkpoints) for i in ids]


def test_a_stack_sticks_and_new_stacks_spread():
    policy = StackAffinity(slack=2)
    live = views("r0", "r1")
    first = {s: policy.choose(live, "demo", s) for s in ("a", "b", "c", "d")}
    assert first == {"a": "r0", "b": "r1", "c": "r0", "d": "r1"}  # fewest owned stacks first, then Ray's order
    for _ in range(3):
        assert {s: policy.choose(live, "demo", s) for s in first} == first


def test_the_checkpoint_comes_first_and_an_empty_replica_counts_as_free():
    policy = StackAffinity(slack=2)
    live = [ReplicaView("sd15", frozenset({"sd15"})), ReplicaView("xl", frozenset({"xl"})), ReplicaView("new")]
    assert policy.choose(live, "xl", "x1") == "xl"
    assert policy.choose(live, "xl", "x2") == "new"  # holds nothing: a load there evicts nothing, and it owns less
    assert policy.choose(live, "sd15", "s1") == "sd15"
    policy.started("sd15"), policy.started("sd15"), policy.started("sd15")
    assert policy.choose(live, "sd15", "s2") in ("xl", "new")  # the holder is over the bound: anyone less busy


def test_a_busy_sticky_replica_gives_its_stack_up_past_the_bound():
    policy = StackAffinity(slack=1)
    live = views("r0", "r1")
    assert policy.choose(live, "demo", "a") == "r0"
    policy.started("r0")
    assert policy.choose(live, "demo", "a") == "r0"  # 1 in flight ≤ 0 + slack
    policy.started("r0")
    assert policy.choose(live, "demo", "a") == "r1"  # 2 > 0 + 1: moved, and it stays there
    policy.finished("r0"), policy.finished("r0")
    assert policy.choose(live, "demo", "a") == "r1"


@settings(max_examples=60, deadline=None)
@given(
    slack=st.integers(0, 3),
    trace=st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans(), st.integers(0, 2)), max_size=60),
)
def test_no_choice_ever_exceeds_the_least_busy_plus_slack(slack, trace):
    policy = StackAffinity(slack=slack)
    live = views("r0", "r1", "r2")
    busy: list[str] = []
    for stack, finish_one, pick in trace:
        if finish_one and busy:
            policy.finished(busy.pop(pick % len(busy)))
        before = {r.id: policy.inflight().get(r.id, 0) for r in live}
        chosen = policy.choose(live, "demo", stack)
        assert before[chosen] <= min(before.values()) + slack
        policy.started(chosen)
        busy.append(chosen)


def test_a_retry_avoids_the_dead_replica_and_forget_drops_its_stacks():
    policy = StackAffinity()
    live = views("r0", "r1")
    assert policy.choose(live, "demo", "a") == "r0"
    assert policy.choose(live, "demo", "a", avoid=["r0"]) == "r1"
    with pytest.raises(NoReplica, match="No loradeck replica is alive"):
        policy.choose(live, "demo", "a", avoid=["r0", "r1"])
    policy.forget(["r1", "r2"])
    assert "r0" not in policy.sticky().values()
    assert policy.least_busy(views("r1", "r2")) == "r1"


@pytest.mark.parametrize(
    "method, path, kind, job",
    [
        ("POST", "/sdapi/v1/txt2img", routes.GENERATE, None),
        ("post", "/sdapi/v1/img2img/", routes.GENERATE, None),
        ("GET", "/sdapi/v1/progress", routes.CALLER, None),
        ("POST", "/sdapi/v1/interrupt", routes.CALLER, None),
        ("POST", "/sdapi/v1/options", routes.BROADCAST, None),
        ("GET", "/sdapi/v1/options", routes.ANY, None),
        ("POST", "/sdapi/v1/refresh-loras", routes.BROADCAST, None),
        ("POST", "/loradeck/v1/train", routes.WORK, None),
        ("POST", "/loradeck/v1/tools/merge", routes.WORK, None),
        ("GET", "/loradeck/v1/jobs", routes.JOBS, None),
        ("GET", "/loradeck/v1/jobs/abc123", routes.JOB, "abc123"),
        ("POST", "/loradeck/v1/jobs/abc123/cancel", routes.JOB, "abc123"),
        ("DELETE", "/loradeck/v1/jobs/abc123", routes.JOB, "abc123"),
        ("GET", "/loradeck/v1/jobs/abc123/cancel", routes.ANY, None),
        ("GET", "/loradeck/v1/cluster", routes.CLUSTER, None),
        ("GET", "/", routes.ANY, None),
    ],
)
def test_each_route_has_its_treatment(method, path, kind, job):
    assert routes.classify(method, path) == (kind, job)


def test_the_caller_is_the_basic_user_and_the_host():
    token = "Basic " + base64.b64encode(b"alice:pw:with:colons").decode()
    assert routes.caller_of({"authorization": token}, ("10.0.0.5", 5555)) == "alice@10.0.0.5"
    assert routes.caller_of({"authorization": "Basic !!"}, ("10.0.0.5", 1)) == "@10.0.0.5"
    assert routes.caller_of({}, None) == "@"


def test_the_replicas_job_lists_merge_into_one():
    a = {"jobs": [{"id": "j2", "queued_at": 2.0}], "queue": {"affinity": True, "fairness": 4, "pending": 1,
         "running": "j2", "completed": 3, "stack_switches": 1}}  # fmt: skip
    b = {"jobs": [{"id": "j1", "queued_at": 1.0}], "queue": {"pending": 2, "running": None, "completed": 4,
         "stack_switches": 2}}  # fmt: skip
    merged = routes.merge_jobs({"ra": a, "rb": b})
    assert [(j["id"], j["replica"]) for j in merged["jobs"]] == [("j1", "rb"), ("j2", "ra")]
    queue = merged["queue"]
    assert (queue["pending"], queue["completed"], queue["stack_switches"]) == (3, 7, 3)
    assert queue["running"] == "j2" and queue["running_all"] == ["j2"] and set(queue["replicas"]) == {"ra", "rb"}
    lost = routes.lost_job("j9", "ra", "train")
    assert lost["state"] == "failed" and lost["lost"] and "ra" in lost["error"] and "j9" in lost["error"]
