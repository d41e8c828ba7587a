"""Which problem a pool reports: the chain of pure checks over the gathered facts, first one wins."""

import dataclasses

from hypothesis import given, settings, strategies as st

from jobpool.controller import problems, reasons
from jobpool.controller.plan import plan
from jobpool.controller.problems import CHAIN, Problem, first_problem
from tests.unit.controller.test_plan import gathered

# The facts of Gathered each check reads, in the chain's order.
FACTS = ("spec_problem", "refused", "queue_problem", "stats_problem", "credentials_problem")


def test_the_chain_checks_the_spec_then_the_refusal_then_the_queue_then_the_credentials():
    assert (
        problems.invalid_spec,
        problems.refused_worker_deployment,
        problems.unresolved_queue,
        problems.unreachable_queue,
        problems.credentials_not_set_up,
    ) == CHAIN
    for check, fact in zip(CHAIN, FACTS, strict=True):
        found = Problem("Reason", fact)
        assert check(gathered(**{fact: found})) is found
        assert all(other(gathered(**{fact: found})) is None for other in CHAIN if other is not check)


def test_no_fact_no_problem():
    assert first_problem(gathered()) is None
    assert gathered().problem is None


@settings(max_examples=200, deadline=None)
@given(present=st.lists(st.booleans(), min_size=len(FACTS), max_size=len(FACTS)))
def test_the_first_fact_in_the_chains_order_wins(present):
    found = {fact: Problem(reasons.QUEUE_UNAVAILABLE, fact, spec_ok=True) for fact in FACTS}
    g = gathered(**{fact: found[fact] for fact, there in zip(FACTS, present, strict=True) if there})
    expected = next((found[fact] for fact, there in zip(FACTS, present, strict=True) if there), None)
    assert g.problem is expected
    assert first_problem(g) is expected
    reported = plan(g).status
    if expected is not None:
        assert any(c.get("message") == expected.message for c in reported["conditions"])


def test_a_chain_may_be_given_and_stops_at_the_first_finding():
    seen: list[str] = []

    def finds(name: str):
        def check(_g):
            seen.append(name)
            return Problem("Reason", name) if name != "none" else None

        return check

    assert first_problem(gathered(), (finds("none"), finds("a"), finds("b"))).message == "a"
    assert seen == ["none", "a"]


def test_a_later_problem_does_not_hide_an_earlier_one():
    invalid = Problem(reasons.INVALID_SPEC, "spec.concurrency: bad")
    down = Problem(reasons.QUEUE_UNAVAILABLE, "spec.queue: down", spec_ok=True)
    g = dataclasses.replace(gathered(stats=None), spec_problem=invalid, stats_problem=down)
    decided = plan(g)
    assert decided.apply == ()
    ready = next(c for c in decided.status["conditions"] if c["type"] == reasons.READY)
    assert ready["reason"] == reasons.INVALID_SPEC
