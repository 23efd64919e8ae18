"""Errors a user sees: each says what went wrong and how to fix it, in one line each."""

from __future__ import annotations


class KgragError(Exception):
    """Base error. `hint` tells the user how to fix it; the CLI prints both, never a traceback."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.hint})" if self.hint else self.message


class ConfigError(KgragError):
    """A setting has a value kgrag cannot use."""


class ServiceError(KgragError):
    """A backend service (graph server, LLM server) is unreachable or failed to start."""


class ModelNotFoundError(KgragError):
    """A model file or package is missing."""


class ReadOnlyViolation(KgragError):
    """A Cypher query that would write was sent to the read-only console."""


class QueryError(KgragError):
    """A Cypher query failed (syntax, timeout, unknown function)."""


class LLMOutputError(KgragError):
    """The LLM returned output that does not validate against the requested schema."""


class LLMCallError(KgragError):
    """The LLM call itself failed (server down, timeout) after all retries."""
