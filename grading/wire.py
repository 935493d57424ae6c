"""The message channel between the grader and the worker that runs learner code.

Both sides import this module; the worker gets a copy of it in its scratch
folder. Nothing here trusts what it reads: a frame is at most
:data:`MAX_FRAME` bytes and holds only plain data, in a small tagged format
of its own (no pickle, so no object of any other class can be built):
``None``, ``bool``, ``int``, ``float``, ``str``, ``torch.dtype``,
``torch.device``, ``torch.Size``, tensors (element type, shape, memory order
and raw bytes, read back as exactly ``torch.Tensor``, never a subclass), and
tuples, lists and ``str``-keyed dicts of these, nested at most
:data:`MAX_DEPTH` deep. A tensor is read back as a fresh leaf that does not
require grad: what the sender's autograd did is its own.

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

import math
import select
import socket
import struct
import time
from typing import Any, Callable

import torch
from torch import nn

HANDLE_KEY = "\x00handle"
#: torch's global seed at the start of every check, in the grader and in the check's worker child.
CHECK_SEED = 0
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

# The tensor element types that cross the channel, by the name the frame carries.
DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in (
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)}
_COUNT = struct.Struct("!I")
_INT = struct.Struct("!q")
_FLOAT = struct.Struct("!d")


def is_handle(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and HANDLE_KEY in value


def handle(side: str, number: int, info: dict) -> dict:
    return {HANDLE_KEY: (side, number, info)}


def dumps(message: Any) -> bytes:
    """``message`` (plain data, see the module docstring) as bytes; :class:`ProtocolError` for anything else."""
    parts: list[bytes] = []
    _encode(message, parts, 0)
    return b"".join(parts)


def _text(tag: bytes, text: str, parts: list[bytes]) -> None:
    data = text.encode("utf-8", errors="surrogatepass")
    parts += [tag, _COUNT.pack(len(data)), data]


def _encode(value: Any, parts: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProtocolError("data nested too deeply")
    kind = type(value)
    if value is None:
        parts.append(b"N")
    elif kind is bool:
        parts.append(b"T" if value else b"F")
    elif kind is int:
        if -(2**63) <= value < 2**63:
            parts += [b"I", _INT.pack(value)]
        else:
            _text(b"J", str(value), parts)
    elif kind is float:
        parts += [b"D", _FLOAT.pack(value)]
    elif kind is str:
        _text(b"S", value, parts)
    elif kind is torch.dtype:
        _text(b"Y", str(value).removeprefix("torch."), parts)
    elif kind is torch.device:
        _text(b"V", str(value), parts)
    elif kind is torch.Size:
        parts += [b"Z", _COUNT.pack(len(value)), *(_INT.pack(size) for size in value)]
    elif kind is torch.Tensor:
        _encode_tensor(value, parts)
    elif kind in (tuple, list):
        parts += [b"(" if kind is tuple else b"[", _COUNT.pack(len(value))]
        for item in value:
            _encode(item, parts, depth + 1)
    elif kind is dict:
        parts += [b"{", _COUNT.pack(len(value))]
        for key, item in value.items():
            if type(key) is not str:
                raise ProtocolError(f"a dict key of type {type(key).__name__}")
            _text(b"S", key, parts)
            _encode(item, parts, depth + 1)
    else:
        raise ProtocolError(f"an object of type {kind.__module__}.{kind.__qualname__}")


def _encode_tensor(tensor: torch.Tensor, parts: list[bytes]) -> None:
    """A dense CPU tensor: element type, shape, the order of its dimensions in memory, raw bytes."""
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in DTYPES or tensor.layout is not torch.strided:
        raise ProtocolError(f"a tensor of type {name} and layout {tensor.layout}")
    tensor = tensor.detach().cpu().resolve_conj().resolve_neg()
    # Keep the memory layout (channels-last stays channels-last): dimensions from the largest stride down.
    order = sorted(range(tensor.dim()), key=lambda dim: (-tensor.stride(dim), dim))
    data = tensor.permute(order).contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    _text(b"X", name, parts)
    parts += [_COUNT.pack(tensor.dim()), *(_INT.pack(size) for size in tensor.shape),
              *(_COUNT.pack(dim) for dim in order), _COUNT.pack(len(data)), data]


class _Reader:
    """Reads a frame written by :func:`dumps`, refusing anything malformed."""

    def __init__(self, frame: bytes) -> None:
        self.frame, self.at = memoryview(frame), 0

    def take(self, size: int) -> memoryview:
        if size < 0 or self.at + size > len(self.frame):
            raise ProtocolError("a frame cut short")
        chunk = self.frame[self.at:self.at + size]
        self.at += size
        return chunk

    def count(self) -> int:
        return _COUNT.unpack(self.take(_COUNT.size))[0]

    def integer(self) -> int:
        return _INT.unpack(self.take(_INT.size))[0]

    def text(self) -> str:
        return str(self.take(self.count()), "utf-8", errors="surrogatepass")

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ProtocolError("data nested too deeply")
        tag = bytes(self.take(1))
        if tag in _CONSTANTS:
            return _CONSTANTS[tag]
        if tag == b"I":
            return self.integer()
        if tag == b"J":
            return int(self.text())
        if tag == b"D":
            return _FLOAT.unpack(self.take(_FLOAT.size))[0]
        if tag == b"S":
            return self.text()
        if tag == b"Y":
            name = self.text()
            if name not in DTYPES:
                raise ProtocolError(f"an unknown dtype {name!r}")
            return DTYPES[name]
        if tag == b"V":
            return torch.device(self.text())
        if tag == b"Z":
            return torch.Size([self.integer() for _ in range(self.count())])
        if tag == b"X":
            return self.tensor()
        if tag in (b"(", b"["):
            items = [self.value(depth + 1) for _ in range(self.count())]
            return tuple(items) if tag == b"(" else items
        if tag == b"{":
            result = {}
            for _ in range(self.count()):
                if bytes(self.take(1)) != b"S":
                    raise ProtocolError("a dict key that is not a string")
                key = self.text()
                result[key] = self.value(depth + 1)
            return result
        raise ProtocolError(f"an unknown tag {tag!r}")

    def tensor(self) -> torch.Tensor:
        name = self.text()
        if name not in DTYPES:
            raise ProtocolError(f"a tensor of unknown type {name!r}")
        dtype, dims = DTYPES[name], self.count()
        if dims > 64:
            raise ProtocolError("a tensor with too many dimensions")
        shape = [self.integer() for _ in range(dims)]
        order = [self.count() for _ in range(dims)]
        data = self.take(self.count())
        if any(size < 0 for size in shape) or sorted(order) != list(range(dims)):
            raise ProtocolError("a malformed tensor")
        numel = math.prod(shape)
        if numel * dtype.itemsize != len(data):
            raise ProtocolError("a tensor whose data does not fit its shape")
        stored = [shape[dim] for dim in order]
        flat = torch.frombuffer(bytearray(data), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        inverse = sorted(range(dims), key=order.__getitem__)
        return flat.reshape(stored).permute(inverse)


_CONSTANTS = {b"N": None, b"T": True, b"F": False}


def loads(frame: bytes) -> Any:
    """The plain data in ``frame``: built here from the bytes, so it can hold nothing else."""
    reader = _Reader(frame)
    try:
        message = reader.value()
    except ProtocolError:
        raise
    except (ValueError, TypeError, RuntimeError, struct.error) as error:
        raise ProtocolError(f"an unreadable frame ({type(error).__name__})") from None
    if reader.at != len(reader.frame):
        raise ProtocolError("trailing bytes after a message")
    return message


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


# ---------------------------------------------------------------------------
# Shared by both sides (the worker cannot import the rest of grading/)
# ---------------------------------------------------------------------------


class Schedule:
    """A noise schedule as the checks hand it to learner code, and as a recording keeps it.

    The same attributes as a ``NoiseSchedule`` (its tensors, ``name``, ``dtype``,
    ``device``), and a ``to`` that casts the float64 values it came with (never the
    learner's §1.3–§1.4 functions, which a check of another phase must not depend on).
    It crosses the channel as ``{SCHEDULE_KEY: data}`` (:meth:`data_of`, :meth:`from_data`).
    """

    def __init__(self, attributes: dict, float64: dict) -> None:
        for key, value in attributes.items():
            setattr(self, key, value)
        self._float64 = dict(float64)
        self.TENSOR_NAMES = tuple(key for key, value in attributes.items() if type(value) is torch.Tensor)

    @staticmethod
    def data_of(schedule: Any) -> dict:
        """The plain data of a schedule (the reference's ``NoiseSchedule`` or one of these)."""
        attributes = {name: getattr(schedule, name) for name in schedule.TENSOR_NAMES}
        attributes.update(name=schedule.name, dtype=schedule.dtype, device=schedule.device)
        return {"attributes": attributes, "float64": dict(schedule._float64)}

    @classmethod
    def from_data(cls, data: Any) -> "Schedule":
        """A schedule from its data, checked: tensors and a few plain values, nothing else."""
        attributes = data.get("attributes") if type(data) is dict else None
        float64 = data.get("float64") if type(data) is dict else None
        if type(attributes) is not dict or type(float64) is not dict \
                or any(type(v) is not torch.Tensor for v in float64.values()) \
                or any(type(v) not in (torch.Tensor, str, torch.dtype, torch.device, type(None))
                       for v in attributes.values()) \
                or not {"betas", "dtype", "device", "name"} <= set(attributes):
            raise ProtocolError("a malformed schedule")
        return cls(attributes, float64)

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Schedule":
        device, dtype = torch.device(device or self.device), dtype or self.dtype
        attributes = {key: value.to(device=device, dtype=dtype) for key, value in self._float64.items()}
        attributes.update(name=self.name, dtype=dtype, device=device)
        return Schedule(attributes, self._float64)

    def __repr__(self) -> str:
        return (f"NoiseSchedule({self.name or 'custom'}, T={self.num_timesteps}, dtype={self.dtype}, "
                f"device={self.device})")


def flatten_tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value`` in a fixed order (tuples and lists in order, dicts by insertion)."""
    found: list[torch.Tensor] = []

    def walk(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (tuple, list)):
            for element in item:
                walk(element)
        elif isinstance(item, dict):
            for element in item.values():
                walk(element)

    walk(value)
    return found


NORM_TYPES = (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter seeded random values, in place; return ``model``.

    Weights of rank ≥ 2 get N(0, 1/fan_in); norm weights 1 + N(0, 0.2²); biases and
    other vectors N(0, 0.2²). Default initialisations are not enough for checking:
    a zero-initialised head hides everything before it, and GroupNorm's default
    weight 1 and bias 0 hide whether the affine part is applied.
    """
    generator = torch.Generator().manual_seed(seed)
    norm_weights = {id(m.weight) for m in model.modules() if isinstance(m, NORM_TYPES) and m.weight is not None}
    for parameter in model.parameters():
        noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
        if parameter.ndim >= 2:
            fan_in = parameter[0].numel()
            value = noise / fan_in**0.5
        elif id(parameter) in norm_weights:
            value = 1 + 0.2 * noise
        else:
            value = 0.2 * noise
        parameter.copy_(value.to(parameter.dtype))
    return model
