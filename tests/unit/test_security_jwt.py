"""The JWT refusal matrix of orchestrator.auth.tokens.JwtManager, with tokens
forged by PyJWT directly.

tests/unit/test_tokens.py already covers alg none, HS384/HS512 with the same
secret, RS256 with a fresh key, RS256-header key confusion, another HMAC
secret, missing claims, typ "refresh", wrong issuer and audience, and expiry
well past the leeway. This file adds what it leaves out: the leeway's exact
edges for exp and nbf (and iat), the other asymmetric families (ES256, PS256,
EdDSA) and keys smuggled in the header (jwk, jku, x5u, kid), the empty key, an
unsigned HS256 token, the lowercase algorithm name, null claims, and that
every refusal carries the same message and no chained cause. Finally, the
claims JwtManager issues are checked with PyJWT as an outside verifier would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import RSAAlgorithm

from orchestrator.auth.tokens import LEEWAY_SECONDS, JwtManager
from orchestrator.errors import Unauthenticated

SECRET = "security-matrix-secret-" + "k" * 41  # 64 bytes: no key-length warnings for HS512
LIFETIME = 600
GENERIC = Unauthenticated().message
# Well inside and well outside the 10 s leeway; a slow test machine moves
# "now" by far less than the 5 s margin on either side.
INSIDE = LEEWAY_SECONDS // 2
OUTSIDE = LEEWAY_SECONDS + 5


@pytest.fixture
def manager() -> JwtManager:
    return JwtManager(SECRET, LIFETIME)


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid access-token claims for now; an override of ... removes a claim."""
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
    return {k: v for k, v in values.items() if v is not ...}


def hs256(payload: dict[str, Any], key: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm="HS256", headers=headers or None)


def pem(private_key: Any) -> bytes:
    return private_key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_by_hand(header: dict[str, Any], payload: Any, key: bytes = SECRET.encode()) -> str:
    """HS256 over exactly these JSON values: for what PyJWT refuses to encode."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refusal(manager: JwtManager, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        manager.verify(token)
    return caught.value


def assert_refused(manager: JwtManager, token: str) -> None:
    error = refusal(manager, token)
    # The same words whatever went wrong, and no PyJWT exception chained to
    # it that a careless handler could log or return.
    assert error.message == GENERIC
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


# -- the clock and its leeway ----------------------------------------------------


def test_expired_just_inside_the_leeway_is_accepted(manager: JwtManager) -> None:
    now = int(time.time())
    token = hs256(claims(iat=now - LIFETIME, nbf=now - LIFETIME, exp=now - INSIDE))
    assert manager.verify(token).user_id == "user-1"


def test_expired_just_outside_the_leeway_is_refused(manager: JwtManager) -> None:
    now = int(time.time())
    assert_refused(
        manager, hs256(claims(iat=now - LIFETIME, nbf=now - LIFETIME, exp=now - OUTSIDE))
    )


def test_not_before_just_inside_the_leeway_is_accepted(manager: JwtManager) -> None:
    # A server whose clock is a few seconds ahead of ours issued it.
    now = int(time.time())
    token = hs256(claims(iat=now + INSIDE, nbf=now + INSIDE))
    assert manager.verify(token).user_id == "user-1"


def test_not_before_just_outside_the_leeway_is_refused(manager: JwtManager) -> None:
    now = int(time.time())
    assert_refused(manager, hs256(claims(iat=now, nbf=now + OUTSIDE)))


def test_issued_in_the_future_beyond_the_leeway_is_refused(manager: JwtManager) -> None:
    now = int(time.time())
    assert_refused(manager, hs256(claims(iat=now + OUTSIDE, nbf=now)))


def test_an_old_iat_is_fine_while_exp_is_ahead(manager: JwtManager) -> None:
    # exp decides, not the age: nothing refuses a token for having been issued long ago.
    now = int(time.time())
    assert manager.verify(hs256(claims(iat=now - 86_400, nbf=now - 86_400))).user_id == "user-1"


# -- algorithms and keys ---------------------------------------------------------


def _rs256() -> str:
    return jwt.encode(claims(), pem(rsa.generate_private_key(65537, 2048)), algorithm="RS256")


def _ps256() -> str:
    return jwt.encode(claims(), pem(rsa.generate_private_key(65537, 2048)), algorithm="PS256")


def _es256() -> str:
    return jwt.encode(claims(), pem(ec.generate_private_key(ec.SECP256R1())), algorithm="ES256")


def _eddsa() -> str:
    return jwt.encode(claims(), pem(ed25519.Ed25519PrivateKey.generate()), algorithm="EdDSA")


def _hs512_same_secret() -> str:
    return jwt.encode(claims(), SECRET, algorithm="HS512")


def _jwk_in_header() -> str:
    # The attacker's own public key embedded in the header, signature by its
    # private key: a verifier that trusted the header would accept it.
    key = rsa.generate_private_key(65537, 2048)
    public_jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return jwt.encode(claims(), pem(key), algorithm="RS256", headers={"jwk": public_jwk})


def _hs256_keyed_by_header(field: str, value: str) -> Callable[[], str]:
    return lambda: hs256(claims(), "attacker-key-" + "a" * 40, **{field: value})


def _empty_key() -> str:
    # `kid: ../../dev/null` style attacks end with an empty HMAC key.
    return signed_by_hand(
        {"alg": "HS256", "typ": "JWT", "kid": "../../../../dev/null"}, claims(), b""
    )


def _hs256_without_signature() -> str:
    header, body, _ = hs256(claims()).split(".")
    return f"{header}.{body}."


def _lowercase_algorithm() -> str:
    header = b64(json.dumps({"alg": "hs256", "typ": "JWT"}).encode())
    _, body, signature = hs256(claims()).split(".")
    return f"{header}.{body}.{signature}"


def _signature_of_another_token() -> str:
    first = hs256(claims(sub="user-1"))
    second = hs256(claims(sub="admin-user", role="admin"))
    return ".".join([*second.split(".")[:2], first.split(".")[2]])


FORGERIES: dict[str, Callable[[], str]] = {
    "RS256 with a fresh key": _rs256,
    "PS256 with a fresh key": _ps256,
    "ES256 with a fresh key": _es256,
    "EdDSA with a fresh key": _eddsa,
    "HS512 with the same secret": _hs512_same_secret,
    "jwk header injection": _jwk_in_header,
    "jku header": _hs256_keyed_by_header("jku", "https://attacker.example/keys.json"),
    "x5u header": _hs256_keyed_by_header("x5u", "https://attacker.example/cert.pem"),
    "kid header, other key": _hs256_keyed_by_header("kid", "attacker"),
    "kid path traversal, empty key": _empty_key,
    "HS256 without a signature": _hs256_without_signature,
    "lowercase hs256": _lowercase_algorithm,
    "signature of another token": _signature_of_another_token,
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_forgery_is_refused(manager: JwtManager, forge: Callable[[], str]) -> None:
    assert_refused(manager, forge())


# -- claims ----------------------------------------------------------------------


CLAIM_PROBLEMS: dict[str, dict[str, Any]] = {
    "no typ": {"typ": ...},
    "typ refresh": {"typ": "refresh"},
    "typ null": {"typ": None},
    "typ list": {"typ": ["access"]},
    "no sid": {"sid": ...},
    "sid null": {"sid": None},
    "aud of another service": {"aud": "billing"},
    "aud null": {"aud": None},
    "iss of another service": {"iss": "https://accounts.example"},
    "exp null": {"exp": None},
    "nbf null": {"nbf": None},
    "expired long ago": {"iat": 1, "nbf": 1, "exp": 2},
}


@pytest.mark.parametrize("overrides", CLAIM_PROBLEMS.values(), ids=CLAIM_PROBLEMS.keys())
def test_bad_claims_are_refused(manager: JwtManager, overrides: dict[str, Any]) -> None:
    assert_refused(manager, hs256(claims(**overrides)))


def test_null_issuer_is_refused(manager: JwtManager) -> None:
    # PyJWT will not encode it; a hand-made token can still carry it.
    assert_refused(manager, signed_by_hand({"alg": "HS256", "typ": "JWT"}, claims(iss=None)))


def test_hand_signed_control_token_is_accepted(manager: JwtManager) -> None:
    # The counterpart of the refusals built with signed_by_hand.
    assert manager.verify(signed_by_hand({"alg": "HS256", "typ": "JWT"}, claims())).role == "member"


def test_every_refusal_has_the_same_message(manager: JwtManager) -> None:
    now = int(time.time())
    tokens = [f() for f in FORGERIES.values()]
    tokens += [hs256(claims(**o)) for o in CLAIM_PROBLEMS.values()]
    tokens += [hs256(claims(exp=now - OUTSIDE)), hs256(claims(nbf=now + OUTSIDE)), "", "x.y.z"]
    messages = {refusal(manager, token).message for token in tokens}
    assert messages == {GENERIC}
    # Nothing in it hints at which check failed.
    for word in ("expired", "signature", "audience", "issuer", "algorithm", "typ", "nbf"):
        assert word not in GENERIC.lower()


# -- what JwtManager issues, as an outside verifier sees it ---------------------------


def test_issued_token_has_the_documented_claims(manager: JwtManager) -> None:
    before = int(time.time())
    token = manager.issue(user_id="user-9", role="admin", session_id="family-9")
    after = int(time.time())
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    decoded = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="orchestrator", issuer="orchestrator"
    )
    assert set(decoded) == {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ", "role", "sid"}
    assert decoded["typ"] == "access"
    assert (decoded["sub"], decoded["role"], decoded["sid"]) == ("user-9", "admin", "family-9")
    assert before <= decoded["iat"] == decoded["nbf"] <= after
    assert decoded["exp"] - decoded["iat"] == LIFETIME
    uuid.UUID(decoded["jti"])


def test_a_token_of_one_secret_is_refused_by_a_manager_of_another() -> None:
    token = JwtManager(SECRET, LIFETIME).issue(user_id="u", role="member", session_id="s")
    assert_refused(JwtManager(SECRET + "-rotated", LIFETIME), token)
