"""CSRF tokens: valid for their own pool and action, within their lifetime, from this server."""

from __future__ import annotations

from jobpool.ui.security import TOKEN_LIFETIME, Csrf


def test_a_token_is_valid_only_for_its_scope_its_server_and_its_lifetime():
    csrf = Csrf()
    token = csrf.token("replay:p", now=1000)
    assert csrf.valid(token, "replay:p", now=1000 + 5)
    assert not csrf.valid(token, "purge:p", now=1005)
    assert not csrf.valid(token, "replay:q", now=1005)
    assert not Csrf().valid(token, "replay:p", now=1005)
    assert not csrf.valid(token, "replay:p", now=1000 + TOKEN_LIFETIME + 1)
    assert not csrf.valid(token, "replay:p", now=999 - 60)
    for forged in (None, "", "1000.", "x.y", token.replace(token[-1], "0" if token[-1] != "0" else "1")):
        assert not csrf.valid(forged, "replay:p", now=1005)
