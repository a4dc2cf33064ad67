"""Whether a Docker engine answers: the test fixtures use testcontainers only then."""

from __future__ import annotations


def docker_available() -> bool:
    """True when a Docker engine answers a ping within a few seconds; never raises."""
    try:
        # testcontainers' own client resolves the engine the way it will when starting
        # containers (DOCKER_HOST, ~/.testcontainers.properties, default socket).
        from testcontainers.core.docker_client import DockerClient

        client = DockerClient(timeout=5)
        try:
            return bool(client.client.ping())
        finally:
            client.client.close()
    except Exception:  # no SDK, no socket, refused, timeout, bad config: all mean "no Docker"
        return False
