"""Console sign-in: an access key's secret checked once, then a session cookie and its CSRF token.

A browser cannot sign each request with SigV4, so the console trades the key for a session:
the secret is compared in constant time (`hmac.compare_digest`, and against a dummy secret
when the key id is unknown, so a miss costs the same as a wrong secret); the session id is
a random 256-bit token kept only as its SHA-256 here (a memory dump does not hand out live
sessions); every session expires, and ends at once when its key is deleted. Actions must
carry the session's CSRF token (`X-CSRF-Token`), which a page of another site cannot read.

Sessions live in the controller's memory: a controller restart signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.security.keys import AccessKey

SESSION_TTL_S = 8 * 3600  # a working day; the cookie's Max-Age says the same
MAX_SESSIONS = 10_000  # sign-ins beyond this evict the oldest session
_DUMMY_SECRET = secrets.token_urlsafe(30)


@dataclass
class Session:
    key_id: str
    csrf: str
    expires: float
    created: float = field(default_factory=time.time)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def secret_matches(key: AccessKey | None, secret: str) -> bool:
    """Whether `secret` is `key`'s, in time independent of where they differ (and of
    whether the key exists)."""
    expected = key.secret_access_key if key is not None else _DUMMY_SECRET
    same = hmac.compare_digest(expected.encode(), secret.encode())
    return key is not None and same


class Sessions:
    """The console's signed-in browsers: session id (hashed) -> Session."""

    def __init__(
        self,
        lookup: Callable[[str], AccessKey | None],
        ttl: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lookup = lookup  # AccessKeys.get: a deleted key ends its sessions
        self.ttl = ttl
        self._clock = clock
        self._by_digest: dict[str, Session] = {}

    def sign_in(self, key_id: str, secret: str) -> tuple[str, Session] | None:
        """A new session (its cookie value, the Session) when the secret is the key's."""
        if not secret_matches(self._lookup(key_id), secret):
            return None
        self._evict()
        token = secrets.token_urlsafe(32)
        session = Session(key_id, secrets.token_urlsafe(32), self._clock() + self.ttl)
        self._by_digest[_digest(token)] = session
        return token, session

    def find(self, token: str) -> tuple[Session, AccessKey] | None:
        """The live session of a cookie value and its key; None if unknown, expired or the
        key is gone (the session is then forgotten)."""
        if not token:
            return None
        digest = _digest(token)
        session = self._by_digest.get(digest)
        if session is None:
            return None
        key = self._lookup(session.key_id)
        if key is None or session.expires <= self._clock():
            del self._by_digest[digest]
            return None
        return session, key

    def sign_out(self, token: str) -> None:
        self._by_digest.pop(_digest(token), None)

    def __len__(self) -> int:
        return len(self._by_digest)

    def _evict(self) -> None:
        """Drop expired sessions; past MAX_SESSIONS, the oldest too."""
        now = self._clock()
        for digest in [d for d, s in self._by_digest.items() if s.expires <= now]:
            del self._by_digest[digest]
        while len(self._by_digest) >= MAX_SESSIONS:
            oldest = min(self._by_digest, key=lambda d: self._by_digest[d].created)
            del self._by_digest[oldest]


def csrf_matches(session: Session, sent: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), sent.encode())
