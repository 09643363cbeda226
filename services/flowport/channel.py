"""The replicas' channel: short messages every replica of one database hears (cancel a run,
forget a key or a workflow, a run's log grew).

On PostgreSQL it is LISTEN/NOTIFY on the database itself, so replicas on any host that share
the database share the channel, with nothing more to run or configure. On SQLite, whose
replicas are processes on one host (`--workers N`, or several `flowport serve` on one file),
it is a Unix datagram socket per replica in a directory named after the database file."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import URL

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# A message is "<sender> <kind> <arg> <arg> ..."; ids hold no spaces.
Deliver = Callable[[str, list[str]], None]
# PostgreSQL refuses payloads of 8,000 bytes or more; long argument lists go in parts.
MAX_PAYLOAD = 7_000
POSTGRES_CHANNEL = "flowport"
RECONNECT_S = 1.0


class Channel(Protocol):
    async def start(self, deliver: Deliver) -> None:
        """Begins hearing the other replicas; `deliver(kind, args)` for each message."""

    async def publish(self, kind: str, args: Sequence[str]) -> None:
        """Sends a message to every other replica (not to this one)."""

    async def close(self) -> None: ...


def open_channel(url: URL, replica_id: str) -> Channel:
    """The channel of the database at `url` (the engine's URL), for replica `replica_id`."""
    if url.get_backend_name() == "sqlite":
        assert url.database  # the service runs on a file, never in memory
        return LocalChannel(_socket_dir(Path(url.database)), replica_id)
    return PostgresChannel(_libpq_url(url), replica_id)


def _messages(sender: str, kind: str, args: Sequence[str]) -> list[str]:
    """The message, split into parts under MAX_PAYLOAD when it has many arguments."""
    head = f"{sender} {kind}"
    parts, current = [], head
    for arg in args:
        if len(current) + len(arg) + 1 > MAX_PAYLOAD and current != head:
            parts.append(current)
            current = head
        current += f" {arg}"
    parts.append(current)
    return parts


def _parse(message: str, me: str) -> tuple[str, list[str]] | None:
    sender, kind, *args = message.split(" ")
    return None if sender == me else (kind, args)


class PostgresChannel:
    """LISTEN on a connection of its own (reconnecting if it drops), NOTIFY from another."""

    def __init__(self, conninfo: str, replica_id: str) -> None:
        self._conninfo = conninfo
        self._me = replica_id
        self._listener: asyncio.Task[None] | None = None
        self._sender: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._sending = asyncio.Lock()
        self._listening = asyncio.Event()

    async def start(self, deliver: Deliver) -> None:
        self._listener = asyncio.create_task(self._listen(deliver), name="channel listener")
        # Messages sent once start returns are heard (unless the database is down).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 10)

    async def publish(self, kind: str, args: Sequence[str]) -> None:
        import psycopg

        async with self._sending:
            for attempt in (1, 2):
                try:
                    if self._sender is None or self._sender.closed:
                        self._sender = await psycopg.AsyncConnection.connect(
                            self._conninfo, autocommit=True
                        )
                    for payload in _messages(self._me, kind, args):
                        await self._sender.execute(
                            "SELECT pg_notify(%s, %s)", (POSTGRES_CHANNEL, payload)
                        )
                    return
                except psycopg.OperationalError:
                    # A connection the server dropped: once more on a new one.
                    self._sender = None
                    if attempt == 2:
                        raise

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._sender is not None:
            await self._sender.close()

    async def _listen(self, deliver: Deliver) -> None:
        # Imported here: a service on SQLite never loads the driver.
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {POSTGRES_CHANNEL}")
                    self._listening.set()
                    async for notice in connection.notifies():
                        parsed = _parse(notice.payload, self._me)
                        if parsed is not None:
                            deliver(*parsed)
            except psycopg.OperationalError as error:
                log.warning("replicas' channel: %s; listening again in %.0f s", error, RECONNECT_S)
                await asyncio.sleep(RECONNECT_S)


class LocalChannel:
    """A datagram socket per replica in `directory`; a message goes to every socket there
    but this replica's, and the socket of a replica that is gone is removed."""

    def __init__(self, directory: Path, replica_id: str) -> None:
        self._directory = directory
        self._me = replica_id
        self._path = directory / f"{replica_id}.sock"
        self._socket: socket.socket | None = None

    async def start(self, deliver: Deliver) -> None:
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(str(self._path))
        self._socket = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive, deliver)

    async def publish(self, kind: str, args: Sequence[str]) -> None:
        if self._socket is None:
            return
        payloads = [message.encode() for message in _messages(self._me, kind, args)]
        for peer in self._directory.glob("*.sock"):
            if peer == self._path:
                continue
            for payload in payloads:
                try:
                    self._socket.sendto(payload, str(peer))
                except (ConnectionRefusedError, FileNotFoundError):
                    # Its replica is gone without removing it (killed).
                    with contextlib.suppress(FileNotFoundError):
                        peer.unlink()
                    break
                except BlockingIOError:
                    # The peer's queue is full: it is not reading; the message is dropped
                    # (followers fall back on polling; a cancel is answered by the reaper).
                    log.warning("replicas' channel: %s is not reading; message dropped", peer)
                    break

    async def close(self) -> None:
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    def _receive(self, deliver: Deliver) -> None:
        assert self._socket is not None
        while True:
            try:
                data = self._socket.recv(65536)
            except BlockingIOError:
                return
            parsed = _parse(data.decode(), self._me)
            if parsed is not None:
                deliver(*parsed)


def _socket_dir(database: Path) -> Path:
    """Short (a socket's path is limited to ~100 bytes) and the same for every process that
    opens this database file."""
    digest = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"flowport-{os.getuid()}-{digest}"


def _libpq_url(url: URL) -> str:
    """The engine's URL as libpq (psycopg) takes it."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
