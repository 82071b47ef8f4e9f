"""Choosing the backend: local by default, the real API with a key, and the key is never shown."""

import openai
import pytest

import labkit
from labkit.config import settings_from_env


def test_local_by_default():
    settings = settings_from_env({})
    assert not settings.use_real_api and "local" in settings.describe()
    with pytest.raises(ValueError, match="labkit.lab_server"):
        labkit.client(settings=settings)


def test_local_client_points_at_the_server(server):
    client = labkit.client(server, settings=settings_from_env({}))
    assert isinstance(client, openai.AsyncOpenAI) and str(client.base_url) == server.base_url + "/"
    assert isinstance(labkit.client(server, sync=True, settings=settings_from_env({})), openai.OpenAI)


def test_real_api_when_a_key_is_set_and_the_key_is_never_shown():
    secret = "sk-test-" + "x" * 40
    settings = settings_from_env({"OPENAI_API_KEY": secret, "OPENAI_BASE_URL": "https://example.invalid/v1"})
    assert settings.use_real_api
    for text in (repr(settings), str(settings), settings.describe()):
        assert secret not in text
    client = labkit.client(settings=settings)
    assert str(client.base_url) == "https://example.invalid/v1/" and client.api_key == secret
