"""Authentication: passwords, tokens, the caller's identity and the gate."""

from orchestrator.auth.gate import AuthGate, is_open
from orchestrator.auth.identity import Identity, current, require_admin
from orchestrator.auth.passwords import hash_password, password_problem, verify_password
from orchestrator.auth.tokens import JwtManager

__all__ = [
    "AuthGate",
    "Identity",
    "JwtManager",
    "current",
    "hash_password",
    "is_open",
    "password_problem",
    "require_admin",
    "verify_password",
]
