"""HMAC-SHA256 signatures of model files: who holds the signing key vouches for an artifact."""

from __future__ import annotations

import hashlib
import hmac

from flight_delay.errors import SignatureRejected

SCHEME = "sha256="


def sign(data: bytes, key: str) -> str:
    """Returns the signature header value of a model file: `sha256=<hex HMAC of its bytes>`."""
    return SCHEME + hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str | None, key: str) -> None:
    """Raises SignatureRejected unless signature is the HMAC of data under key."""
    if not signature:
        raise SignatureRejected(
            "This server only accepts signed models: send X-Model-Signature: sha256=<HMAC-SHA256 of the "
            "file under ML_API_MODEL_SIGNING_KEY, hex> (flight-delay sign FILE prints it)."
        )
    if not hmac.compare_digest(signature.strip().encode(), sign(data, key).encode()):
        raise SignatureRejected("The model's signature does not match the file; nothing was loaded.")
