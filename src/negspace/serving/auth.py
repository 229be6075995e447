"""The bearer token: read once from a file, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from negspace.errors import NegspaceError


def read_token(path: str | Path) -> str:
    """The token in a file (surrounding whitespace dropped).

    Raises:
        NegspaceError: missing, unreadable or empty file, or a token with inner whitespace.
    """
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise NegspaceError(f"token file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NegspaceError(f"{path}: cannot read the token ({e})") from None
    if not token:
        raise NegspaceError(f"{path}: the token file is empty")
    if len(token.split()) != 1:
        raise NegspaceError(f"{path}: the token must be one word (no spaces or newlines inside)")
    return token


class TokenCheck:
    """Checks `Authorization: Bearer <token>` headers.

    Both sides are hashed first, so `hmac.compare_digest` compares equal-length digests and the
    time taken says nothing about the token, its length included.
    """

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode("utf-8")).digest()

    def allows(self, header: bytes | None) -> bool:
        """Whether an Authorization header value carries the token."""
        if not header:
            return False
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(hashlib.sha256(given.strip()).digest(), self._digest)
