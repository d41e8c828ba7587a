"""`jobpool ui`'s flags and the pool discovery's key patterns."""

from __future__ import annotations

import pytest

from jobpool.cli import main
from jobpool.ui.command import parse_listen
from jobpool.ui.discovery import counters_pattern, pool_of


def test_listen_is_host_and_port():
    assert parse_listen("127.0.0.1:8081") == ("127.0.0.1", 8081)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("8081", "host:", "host:http", "h:70000"):
        with pytest.raises(ValueError, match="must be HOST:PORT"):
            parse_listen(bad)


def test_bad_flags_are_one_line_errors_that_name_the_flag(capsys, monkeypatch):
    monkeypatch.delenv("JOBPOOL_QUEUE_URL", raising=False)
    assert main(["ui", "--pool", "p"]) == 2
    assert "jobpool ui: error: no queue URL" in capsys.readouterr().err
    assert main(["ui", "--queue", "redis://h:6379/0", "--pool", "p", "--listen", "nope"]) == 2
    assert "--listen 'nope' must be HOST:PORT" in capsys.readouterr().err
    assert main(["ui", "--queue", "redis://:secret@h:6379/0", "--pool", "Not_A_Label"]) == 2
    err = capsys.readouterr().err
    assert "pool" in err and "secret" not in err
    assert (
        main(["ui", "--queue", "redis://h:6379/0", "--namespace", "a", "--namespace", "b", "--pool", "p"])
        == 2
    )
    assert "one --namespace" in capsys.readouterr().err


def test_pools_are_found_by_their_counters_keys():
    assert counters_pattern("team-a") == "{jobpool:team-a/*}:counters"
    assert counters_pattern(None) == "{jobpool:*/*}:counters"
    assert pool_of("{jobpool:team-a/thumbs}:counters") == ("team-a", "thumbs")
    assert pool_of("{jobpool:broken}:counters") is None and pool_of("other") is None
