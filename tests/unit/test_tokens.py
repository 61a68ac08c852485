"""orchestrator.auth.tokens.JwtManager: HS256 access tokens and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from orchestrator.auth.tokens import LEEWAY_SECONDS, JwtManager
from orchestrator.errors import Unauthenticated

# 64 bytes: long enough for HS512, so forging with the same secret raises no key-length warning.
SECRET = "unit-test-secret-" + "s" * 47
OTHER_SECRET = "another-secret--" + "o" * 48
LIFETIME = 3600
REFUSED = Unauthenticated().message


@pytest.fixture
def manager() -> JwtManager:
    return JwtManager(SECRET, LIFETIME)


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims JwtManager.issue writes, valid now; None removes one."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": "orchestrator",
        "aud": "orchestrator",
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + LIFETIME,
        "jti": str(uuid.uuid4()),
        "typ": "access",
        "role": "member",
        "sid": "family-1",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Any, payload: Any, key: str | None = SECRET) -> str:
    """A token built by hand, HMAC-SHA256-signed with `key` (unsigned if None)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def assert_refused(manager: JwtManager, token: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        manager.verify(token)
    # One message whatever the reason: a caller learns nothing from it.
    assert caught.value.message == REFUSED
    assert caught.value.__cause__ is None


def test_round_trip(manager: JwtManager) -> None:
    before = time.time()
    token = manager.issue(user_id="user-42", role="admin", session_id="family-7")
    verified = manager.verify(token)
    assert verified.user_id == "user-42"
    assert verified.role == "admin"
    assert verified.session_id == "family-7"
    assert verified.token_id
    assert int(before) + LIFETIME <= verified.expires_at <= time.time() + LIFETIME


def test_each_token_has_its_own_id(manager: JwtManager) -> None:
    first = manager.issue(user_id="u", role="member", session_id="s")
    second = manager.issue(user_id="u", role="member", session_id="s")
    assert manager.verify(first).token_id != manager.verify(second).token_id


def test_header_is_hs256(manager: JwtManager) -> None:
    token = manager.issue(user_id="u", role="member", session_id="s")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_expired_beyond_leeway_is_refused(manager: JwtManager) -> None:
    issued = time.time() - LIFETIME - LEEWAY_SECONDS - 10
    assert_refused(manager, manager.issue(user_id="u", role="member", session_id="s", now=issued))


def test_expired_within_leeway_is_accepted(manager: JwtManager) -> None:
    issued = time.time() - LIFETIME - LEEWAY_SECONDS / 2
    token = manager.issue(user_id="u", role="member", session_id="s", now=issued)
    assert manager.verify(token).user_id == "u"


def test_not_yet_valid_is_refused(manager: JwtManager) -> None:
    issued = time.time() + LEEWAY_SECONDS + 60
    assert_refused(manager, manager.issue(user_id="u", role="member", session_id="s", now=issued))


def test_wrong_key_is_refused(manager: JwtManager) -> None:
    forged = JwtManager(OTHER_SECRET, LIFETIME).issue(user_id="u", role="admin", session_id="s")
    assert_refused(manager, forged)


def test_tampered_payload_is_refused(manager: JwtManager) -> None:
    header, _, signature = manager.issue(user_id="u", role="member", session_id="s").split(".")
    payload = b64(json.dumps(claims(role="admin")).encode())
    assert_refused(manager, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(manager: JwtManager, alg: str) -> None:
    unsigned = raw_token({"alg": alg, "typ": "JWT"}, claims(), key=None)
    assert_refused(manager, unsigned)
    assert_refused(manager, unsigned.rstrip("."))


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_with_the_same_secret_are_refused(
    manager: JwtManager, alg: str
) -> None:
    assert_refused(manager, jwt.encode(claims(), SECRET, algorithm=alg))


def test_rs256_is_refused(manager: JwtManager) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert_refused(manager, jwt.encode(claims(), pem, algorithm="RS256"))


def test_rs256_header_over_an_hmac_signature_is_refused(manager: JwtManager) -> None:
    # Key confusion: the secret used as if it were an RSA public key.
    assert_refused(manager, raw_token({"alg": "RS256", "typ": "JWT"}, claims()))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        " ",
        "null",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "..",
        "Bearer abc",
        "ünïcödé.tökën.✓",
        "\x00\x01\x02",
        "x" * 10_000,
        f"{b64(b'not json')}.{b64(b'not json')}.{b64(b'sig')}",
        f"{b64(bytes([0xFF, 0xFE]))}.{b64(b'{}')}.{b64(b'sig')}",
    ],
)
def test_garbage_is_refused(manager: JwtManager, garbage: str) -> None:
    assert_refused(manager, garbage)


@pytest.mark.parametrize(
    "header",
    [
        ["HS256"],
        {"typ": "JWT"},
        {"alg": ["HS256"]},
        {"alg": 256},
        {"alg": "HS256", "kid": 7},
        {"alg": "HS256", "crit": ["unknown-extension"], "unknown-extension": True},
    ],
)
def test_malformed_header_is_refused(manager: JwtManager, header: Any) -> None:
    assert_refused(manager, raw_token(header, claims()))


@pytest.mark.parametrize("missing", ["exp", "iat", "nbf", "sub", "jti", "iss", "aud", "sid", "typ"])
def test_missing_claim_is_refused(manager: JwtManager, missing: str) -> None:
    token = jwt.encode(claims(**{missing: None}), SECRET, algorithm="HS256")
    assert_refused(manager, token)


@pytest.mark.parametrize(
    "overrides",
    [
        {"typ": "refresh"},
        {"typ": "ACCESS"},
        {"sid": 17},
        {"iss": "someone-else"},
        {"aud": "someone-else"},
        {"aud": ["someone-else"]},
        {"exp": "tomorrow"},
        {"iat": "now"},
        {"sub": 42},
        {"jti": ["not", "a", "string"]},
    ],
    ids=lambda overrides: ",".join(f"{k}={v!r}" for k, v in overrides.items()),
)
def test_wrong_claim_is_refused(manager: JwtManager, overrides: dict[str, Any]) -> None:
    assert_refused(manager, jwt.encode(claims(**overrides), SECRET, algorithm="HS256"))


def test_payload_that_is_not_an_object_is_refused(manager: JwtManager) -> None:
    assert_refused(manager, raw_token({"alg": "HS256", "typ": "JWT"}, ["not", "an", "object"]))


def test_hand_built_valid_token_is_accepted(manager: JwtManager) -> None:
    # The counterpart of the refusals above: the helper itself builds good tokens.
    token = raw_token({"alg": "HS256", "typ": "JWT"}, claims(sub="hand-made"))
    assert manager.verify(token).user_id == "hand-made"


def test_a_verified_token_is_refused_once_it_expires(manager: JwtManager) -> None:
    # Checked signatures are remembered; expiry must still be applied to
    # them. This one has a second left, leeway included.
    issued = time.time() - LIFETIME - LEEWAY_SECONDS + 1
    token = manager.issue(user_id="u", role="member", session_id="s", now=issued)
    assert manager.verify(token).user_id == "u"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # time passing is what is tested
        try:
            manager.verify(token)
        except Unauthenticated:
            return
        time.sleep(0.1)
    raise AssertionError("an expired token was still accepted")


def test_a_forged_token_is_refused_after_a_genuine_one_was_verified(manager: JwtManager) -> None:
    token = manager.issue(user_id="u", role="member", session_id="s")
    assert manager.verify(token).user_id == "u"
    header, payload, signature = token.split(".")
    assert_refused(manager, f"{header}.{payload}.{signature[:-2]}AA")
