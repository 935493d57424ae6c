"""The message channel between the grader and the worker that runs learner code.

Both sides import this module; the worker gets a copy of it in its scratch
folder. Nothing here trusts what it reads: a frame is at most
:data:`MAX_FRAME` bytes, it is unpickled with ``torch.load(weights_only=True)``
(which builds no object of an arbitrary class), and :func:`check_plain` then
admits only plain data: ``None``, ``bool``, ``int``, ``float``, ``str``,
exactly ``torch.Tensor`` (never a subclass), ``torch.dtype``,
``torch.device``, ``torch.Size``, and tuples, lists and ``str``-keyed dicts of
these, nested at most :data:`MAX_DEPTH` deep.

Objects that are not plain data cross the channel as *handles*: a dict with
the single key :data:`HANDLE_KEY` holding ``(side, number, info)``. ``side``
is ``"W"`` for an object that lives in the worker (a learner module, class or
model) and ``"T"`` for one that lives in the grader (a reference function or
model lent to learner code for one check). Each side resolves only handles to
its own objects, by number, from its own table.

A conversation is a series of requests and replies; while a side waits for
its reply, the other may send requests of its own (a learner function calling
a lent reference function, which calls back into the learner's model), so
both sides serve requests while they wait (:meth:`Endpoint.request`).
"""

from __future__ import annotations

import io
import select
import socket
import struct
import time
from typing import Any, Callable

import torch

HANDLE_KEY = "\x00handle"
SCHEDULE_KEY = "\x00schedule"
GRAD_KEY = "\x00requires_grad"  # a result tensor attached to the learner's graph: (value, handle number)
MAX_FRAME = 512 * 2**20  # a frame larger than this is refused (the worker tried to flood the grader)
MAX_DEPTH = 32
_HEADER = struct.Struct("!Q")


class ChannelClosed(Exception):
    """The other side closed the channel (the worker exited or was killed)."""


class ChannelTimeout(Exception):
    """No message arrived before the deadline."""


class ProtocolError(Exception):
    """A frame that is too large, cannot be read, or holds something other than plain data."""


# ---------------------------------------------------------------------------
# Plain data
# ---------------------------------------------------------------------------

_SCALARS = (type(None), bool, int, float, str, torch.dtype, torch.device)


def check_plain(value: Any, depth: int = 0) -> Any:
    """``value`` if it is plain data (see the module docstring); else raise :class:`ProtocolError`.

    Tensors must be exactly ``torch.Tensor``: a subclass could override
    ``__torch_function__`` and change what a comparison computes.
    """
    if depth > MAX_DEPTH:
        raise ProtocolError("data nested too deeply")
    kind = type(value)
    if kind in _SCALARS or kind is torch.Size:
        return value
    if kind is torch.Tensor:
        return value
    if kind in (tuple, list):
        for item in value:
            check_plain(item, depth + 1)
        return value
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ProtocolError(f"a dict key of type {type(key).__name__}")
            check_plain(item, depth + 1)
        return value
    raise ProtocolError(f"an object of type {kind.__module__}.{kind.__qualname__}")


def is_handle(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and HANDLE_KEY in value


def handle(side: str, number: int, info: dict) -> dict:
    return {HANDLE_KEY: (side, number, info)}


def dumps(message: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return buffer.getvalue()


def loads(frame: bytes) -> Any:
    try:
        message = torch.load(io.BytesIO(frame), weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - whatever the frame holds, it is a protocol error
        raise ProtocolError(f"unreadable frame ({type(error).__name__})") from None
    check_plain(message)
    return _plain_tensors(message)


def _plain_tensors(value: Any) -> Any:
    """Tensors as fresh leaves that do not require grad (what the sender's autograd did is its own)."""
    if type(value) is torch.Tensor:
        return value.detach()
    if type(value) in (tuple, list):
        return type(value)(_plain_tensors(item) for item in value)
    if type(value) is dict:
        return {key: _plain_tensors(item) for key, item in value.items()}
    return value


# ---------------------------------------------------------------------------
# Frames on a socket
# ---------------------------------------------------------------------------


def send_frame(sock: socket.socket, message: Any) -> None:
    frame = dumps(message)
    sock.sendall(_HEADER.pack(len(frame)) + frame)


def _read_exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise ChannelTimeout()
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ChannelClosed()
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket, deadline: float | None = None) -> Any:
    """The next message, checked to be plain data; ``deadline`` is a ``time.monotonic()`` value."""
    (size,) = _HEADER.unpack(_read_exactly(sock, _HEADER.size, deadline))
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame of {size} bytes (at most {MAX_FRAME})")
    return loads(_read_exactly(sock, size, deadline))


# ---------------------------------------------------------------------------
# Requests and replies, served in both directions
# ---------------------------------------------------------------------------


class Endpoint:
    """One side of the conversation.

    ``serve(request)`` answers a request of the other side and returns
    ``("ok", value)`` or ``("raised", info)``; :meth:`request` sends one request
    and serves the other side's requests until its own reply arrives.
    """

    def __init__(self, sock: socket.socket, serve: Callable[[tuple], tuple]) -> None:
        self.sock = sock
        self.serve = serve
        self.deadline: float | None = None

    def request(self, *message: Any) -> tuple:
        send_frame(self.sock, ("request", *message))
        while True:
            incoming = recv_frame(self.sock, self.deadline)
            if type(incoming) is not tuple or not incoming or incoming[0] not in ("request", "reply"):
                raise ProtocolError("a message that is neither a request nor a reply")
            if incoming[0] == "reply":
                if len(incoming) != 3 or incoming[1] not in ("ok", "raised"):
                    raise ProtocolError("a malformed reply")
                return incoming[1], incoming[2]
            send_frame(self.sock, ("reply", *self.serve(incoming[1:])))
