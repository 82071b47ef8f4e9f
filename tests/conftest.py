"""Shared fixtures: real labkit servers on free ports, with the simulated model sped up."""

from __future__ import annotations

import pytest

import labkit

#: Tests run the simulated model 20x faster than real time: the same schedule, shorter waits.
FAST = 0.05


@pytest.fixture
def server():
    with labkit.serve(time_scale=FAST) as s:
        yield s


@pytest.fixture
def make_server():
    """Start servers with any ServerConfig options; all are stopped at the end of the test."""
    started = []

    def make(**options):
        options.setdefault("time_scale", FAST)
        s = labkit.serve(**options)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium for Playwright (installed by the test setup when root; else a stated skip)."""
    import services

    from labkit.services import ServiceUnavailable, chromium_path

    services.wait_for_services()
    try:
        return chromium_path()
    except ServiceUnavailable as e:
        why = services.install_failures().get("chromium", e)
        pytest.skip(f"Chromium cannot be had here: {why}")


@pytest.fixture(scope="module")
def redis_url():
    """A private Redis (started by the test setup) for one test file; skipped, saying why, where none can be had."""
    from labkit.services import RedisServer, ServiceUnavailable

    try:
        with RedisServer() as redis:
            yield redis.url
    except ServiceUnavailable as e:
        pytest.skip(f"Redis cannot be had here: {e}")
