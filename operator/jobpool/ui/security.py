"""What keeps the page's actions to the people on the page: a CSRF token on every form, bound to
the pool and action and signed with a secret of this server process.

The rights belong to the server's credential, not to a viewer (who reached the page through
Kubernetes RBAC or a port on 127.0.0.1), so the token needs no session: it only has to prove the
POST came from a form this server rendered, which a page of another site cannot read."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

TOKEN_LIFETIME = 12 * 3600.0

# Every response: no inline script runs (a payload's markup could not run even if it were not
# escaped), no framing, no referrer carrying a job id elsewhere.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Csrf:
    def __init__(self, secret: bytes | None = None):
        self.secret = secret or secrets.token_bytes(32)

    def _sign(self, issued: int, scope: str) -> str:
        return hmac.new(self.secret, f"{issued}:{scope}".encode(), hashlib.sha256).hexdigest()

    def token(self, scope: str, now: float | None = None) -> str:
        """A token for forms of `scope` (e.g. "replay:pool-a")."""
        issued = int(time.time() if now is None else now)
        return f"{issued}.{self._sign(issued, scope)}"

    def valid(self, token: str | None, scope: str, now: float | None = None) -> bool:
        issued_text, _, signature = (token or "").partition(".")
        if not issued_text.isdigit() or not signature:
            return False
        issued = int(issued_text)
        age = (time.time() if now is None else now) - issued
        return 0 <= age <= TOKEN_LIFETIME and hmac.compare_digest(signature, self._sign(issued, scope))
