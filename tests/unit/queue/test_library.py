"""The library's `.lua` files against their Python wrappers (jobpool.queue.redis.functions): the
keys and arguments each function declares, reads and is sent must be the same names in the same
order, so a contract changes in one place or this test fails."""

from __future__ import annotations

import re

import pytest

from jobpool.queue.keys import PoolKeys
from jobpool.queue.redis import functions, library

POOL = PoolKeys("ns", "pool")
# One call of each wrapper: what a caller sends, with a list of two where a name takes a list.
SAMPLE_CALLS = {
    functions.Submit: dict(
        blob="a\x001\x00{}\x00b\x001\x00{}",
        given_ids=["a", "b"],
        partial=True,
        default_max_payload_bytes=10,
        memory_share=0.9,
    ),
    functions.Stats: dict(now_ms=1, horizon_ms=60000),
    functions.SampleMemory: dict(),
    functions.Fetch: dict(consumer="c", count=2, visibility_ms=1, reclaim_interval_ms=1),
    functions.Ack: dict(job_ids=["a", "b"], blob="x", result_ttl_ms=1, results_cap=1),
    functions.AckThenFetch: dict(
        job_ids=["a", "b"],
        blob="x",
        result_ttl_ms=1,
        results_cap=1,
        consumer="c",
        count=2,
        visibility_ms=1,
        reclaim_interval_ms=1,
    ),
    functions.TrimResults: dict(oldest=[("1-0", "a"), ("2-0", "b")]),
    functions.Fail: dict(
        entry_id="1-0",
        consumer="c",
        id="a",
        attempts=1,
        payload=b"{}",
        error="e",
        outcome="retried",
        delay_ms=1,
        replayed=False,
        dead_letter_cap=1,
        task="resize",
        options="5,,",
    ),
    functions.Progress: dict(consumer="c", entry_id="1-0", id="a", value="0.5"),
    functions.JobLookup: dict(id="a", scan_limit=1000),
    functions.Cancel: dict(ids=["a", "b"], scan_limit=1000),
    functions.Release: dict(consumer="c", entry_ids=["1-0", "2-0"]),
    functions.Heartbeat: dict(
        consumer="c", info="{}", tasks=["resize"], expires_ms=1, entry_ids=["1-0", "2-0"]
    ),
    functions.Unregister: dict(consumer="c"),
    functions.Replay: dict(ids=["a", "b"]),
    functions.Purge: dict(ids=["a", "b"]),
}
# Keys a wrapper computes per job (not one of the pool's fixed keys).
PER_JOB_KEYS = {"given_results...", "job_results...", "job_result"}


def contract(name: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(declared keys, declared args, body) of one `.lua` file's `register` call."""
    source = library.sources()[name]
    found = re.search(r"register\('(\w+)', \{(.*?)\}, function\(k, a\)(.*)end\)\s*$", source, re.S)
    assert found, f"{name}.lua: no `register('{name}', {{keys = ..., args = ...}}, function(k, a) ... end)`"
    assert found.group(1) == name, f"{name}.lua registers {found.group(1)!r}"
    declared = {
        kind: tuple(
            re.findall(r"'([\w.]+)'", re.search(kind + r" = \{(.*?)\}", found.group(2), re.S).group(1))
        )
        for kind in ("keys", "args")
    }
    return declared["keys"], declared["args"], found.group(3)


def reads(name: str) -> tuple[set[str], set[str]]:
    """The key and argument names a function's body reads, with those of functions it runs."""
    _, _, body = contract(name)
    keys, args = set(re.findall(r"\bk\.(\w+)", body)), set(re.findall(r"\ba\.(\w+)", body))
    for other in re.findall(r"\bjobpool\.(\w+)\(k, a\)", body):
        more_keys, more_args = reads(other)
        keys |= more_keys
        args |= more_args
    return keys, args


def test_every_function_file_has_one_wrapper_and_every_wrapper_one_file():
    assert sorted(library.function_names()) == sorted(function.NAME for function in functions.ALL)
    assert set(SAMPLE_CALLS) == set(functions.ALL)


@pytest.mark.parametrize("function", functions.ALL, ids=lambda f: f.NAME)
def test_the_lua_declares_the_keys_and_arguments_the_wrapper_names(function):
    keys, args, _ = contract(function.NAME)
    assert keys == function.KEYS, f"{function.NAME}.lua declares keys {keys}, functions.py {function.KEYS}"
    assert args == function.ARGS, f"{function.NAME}.lua declares args {args}, functions.py {function.ARGS}"


@pytest.mark.parametrize("function", functions.ALL, ids=lambda f: f.NAME)
def test_the_lua_reads_exactly_what_it_declares_and_never_by_position(function):
    keys, args, body = contract(function.NAME)
    read_keys, read_args = reads(function.NAME)
    assert read_keys == {name.removesuffix("...") for name in keys}, function.NAME
    assert read_args == {name.removesuffix("...") for name in args}, function.NAME
    assert not re.search(r"\b(KEYS|ARGV)\b", body), f"{function.NAME}.lua reads KEYS/ARGV by position"


@pytest.mark.parametrize("function", functions.ALL, ids=lambda f: f.NAME)
def test_the_wrapper_sends_the_keys_and_arguments_the_lua_declares_in_order(function):
    keys, args, _ = contract(function.NAME)
    command = function.command(POOL, **SAMPLE_CALLS[function])
    assert command[:2] == ("FCALL", library.qualified(function.NAME))
    sent_keys, sent_args = command[3 : 3 + command[2]], command[3 + command[2] :]
    fixed = [name for name in keys if name not in PER_JOB_KEYS]
    assert all(not name.endswith("...") for name in fixed), (
        f"{function.NAME}: a list of keys the wrapper does not make"
    )
    assert list(sent_keys[: len(fixed)]) == [getattr(POOL, name) for name in fixed]
    assert all(key.startswith(POOL.tag) for key in sent_keys), "a key outside the pool's hash tag"
    per_job = len(sent_keys) - len(fixed)
    assert per_job == sum(2 if name.endswith("...") else 1 for name in keys if name in PER_JOB_KEYS)
    fixed_args = [name for name in args if not name.endswith("...")]
    rest = len(sent_args) - len(fixed_args)
    assert rest == (2 if args and args[-1].endswith("...") else 0), (
        f"{function.NAME}: sends {len(sent_args)} arguments for {args}"
    )


def test_a_wrapper_refuses_a_name_the_lua_does_not_declare():
    with pytest.raises(TypeError, match="stats takes no group"):
        functions.Stats._command(POOL, now_ms=1, horizon_ms=1, group="workers")
    with pytest.raises(KeyError):
        functions.Fetch._command(POOL, consumer="c", count=1, visibility_ms=1)


def test_the_field_names_come_from_python_and_the_library_reads_no_literal_one():
    code = library.code()
    assert (
        "local ENTRY, RESULT, DEAD = {id = 'id', payload = 'p', attempts = 'a', time = 't', replayed = 'r', "
        "task = 'k', options = 'o', express = 'x'}"
    ) in code
    assert "local MEMORY, ENDED = {sample = 'sample', added = 'added'}, {id = 'id', outcome = 'o'}" in code
    for name in library.function_names():
        assert not re.search(r"'(p|a|t|r|e|k|o|x|sample|added)'\s*[,)]", library.sources()[name]), (
            f"{name}.lua spells a field name"
        )


def test_the_library_name_carries_a_digest_of_its_code():
    assert re.fullmatch(r"jobpool_[0-9a-f]{12}", library.name())
    assert library.code().startswith(f"#!lua name={library.name()}\n")
    assert all(library.qualified(name).startswith(library.name() + "_") for name in library.function_names())
