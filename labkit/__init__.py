"""labkit: the Realtime AI Lab's toolkit.

The few names a notebook needs::

    import labkit
    server = labkit.lab_server()       # this kernel's local OpenAI-compatible backend, on a free port:
                                       # started on first use, the same one after a re-run, stopped with the kernel
    client = labkit.client(server)     # AsyncOpenAI: local by default, the real API if OPENAI_API_KEY is set
"""

from __future__ import annotations

from .config import Settings, settings_from_env
from .model import PROFILES, MODEL_ALIASES, list_models, resolve_model
from .server import LabServer, ServerConfig, lab_server, serve, stop_at_exit

__all__ = ["lab_server", "stop_at_exit", "serve", "client", "LabServer", "ServerConfig", "Settings", "settings_from_env",
           "PROFILES", "MODEL_ALIASES", "list_models", "resolve_model", "backend_description"]
__version__ = "0.1.0"


def client(server: LabServer | None = None, *, sync: bool = False, settings: Settings | None = None, **kwargs):
    """The one way notebooks get an OpenAI client.

    With ``OPENAI_API_KEY`` set, the real service (``OPENAI_BASE_URL`` if set); the key is read by
    the SDK itself and never printed. Otherwise the local backend ``server`` (start one with
    :func:`lab_server`). ``sync=True`` gives ``OpenAI`` instead of ``AsyncOpenAI``.
    """
    import openai

    settings = settings or settings_from_env()
    cls = openai.OpenAI if sync else openai.AsyncOpenAI
    if settings.use_real_api:
        return cls(api_key=settings.openai_api_key, base_url=settings.openai_base_url, **kwargs)
    if server is None:
        raise ValueError("no OPENAI_API_KEY is set, so pass the local server: labkit.client(labkit.lab_server())")
    return server.client(sync=sync, **kwargs)


def backend_description(settings: Settings | None = None) -> str:
    """Which backend notebooks will talk to, in one secret-free line."""
    return (settings or settings_from_env()).describe()
