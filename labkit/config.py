"""Settings from the environment. The API key is held but never shown: not in repr, not in logs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["Settings", "settings_from_env", "DEFAULT_MODEL", "LOCAL_API_KEY"]

DEFAULT_MODEL = "gpt-4o-mini"
#: The key labkit's own clients send to a local server: any non-empty key satisfies the SDK, and the
#: local model server accepts any key unless it was started with ``api_key``. Not a secret.
LOCAL_API_KEY = "lab-local-key"


@dataclass(frozen=True)
class Settings:
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    lab_token: str | None = field(default=None, repr=False)
    model: str = DEFAULT_MODEL

    @property
    def use_real_api(self) -> bool:
        """True when ``OPENAI_API_KEY`` is set: notebooks then talk to the real service."""
        return bool(self.openai_api_key)

    def describe(self) -> str:
        """A one-line, secret-free summary for notebooks to print."""
        if self.use_real_api:
            return f"real OpenAI API at {self.openai_base_url or 'https://api.openai.com/v1'} (key set, not shown)"
        return "local simulated backend (no key, no network)"


def settings_from_env(environ: dict | None = None) -> Settings:
    env = os.environ if environ is None else environ
    return Settings(
        openai_api_key=env.get("OPENAI_API_KEY") or None,
        openai_base_url=env.get("OPENAI_BASE_URL") or None,
        lab_token=env.get("LAB_TOKEN") or None,
        model=env.get("LAB_MODEL") or DEFAULT_MODEL,
    )
