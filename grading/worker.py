"""The worker: the only process that runs learner code (started by :mod:`grading.sandbox`).

It runs from a scratch folder that holds a copy of this file, of
:mod:`grading.wire`, of the provided code the worksheets import, and of the
learner files (see :func:`grading.sandbox.prepare_scratch`); it never sees the
grading checkout, the reference, the checks or the report.

The worker starts as a *zygote*: it imports torch and the provided modules
(no learner code), then waits on its control socket. For each check the grader
sends it a fresh socket, and the zygote forks a *child* that serves that check
alone: it imports the learner modules, runs what the grader asks, and is
killed with its whole process group when the check ends. Learner code never
runs in the zygote, so every check starts from the same clean state.

What a child answers (requests from the grader):

    ("import", module)                  the learner module, as a handle
    ("getattr", handle, name)           an attribute (plain data, or a handle)
    ("call", handle, args, kwargs)      call a learner function, class, model or method
    ("lend", module_handle, name, obj)  put a lent reference object into a learner module
    ("backward", handle, grad)          backpropagate from a tensor the learner returned
    ("randomize", handle, seed)         seeded random weights for a learner model (grading's randomize_)

Lent reference objects stay in the grader: a lent function, class or model
is a stand-in here whose calls go back to the grader (requests "call",
"construct", "forward" and "backward"), with autograd carried across, so a
learner's code can train through a lent model without its code being here.
"""

from __future__ import annotations

import importlib
import inspect
import linecache
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import nn

import wire  # the copy beside this file in the scratch folder

LEARNER_DIR = Path(os.environ.get("GRADING_LEARNER_DIR", "learner")).resolve()
PACKAGE = os.environ.get("GRADING_PACKAGE", "")  # "" for learner files, "solutions" for the reference
MAX_TEXT = 1500
STUB_PREFIX = "Phase "


# ---------------------------------------------------------------------------
# The child: one check's conversation
# ---------------------------------------------------------------------------



class Child:
    def __init__(self, sock: socket.socket) -> None:
        self.endpoint = wire.Endpoint(sock, self.serve)
        self.objects: list[Any] = []  # handle number → object
        self.numbers: dict[int, int] = {}  # id(object) → handle number
        self.mirrors: dict[int, nn.Module] = {}  # the grader's handle number → stand-in model
        self.mirror_signatures: dict[int, tuple] = {}  # number → (what mirror_changed last saw, its tensors)
        self.generators: dict[int, torch.Generator] = {}  # the grader's handle number → generator here

    # --- requests from the grader ---

    def serve(self, request: tuple) -> tuple:
        try:
            op, *args = request
            method = getattr(self, f"op_{op}", None)
            if method is None:
                raise wire.ProtocolError(f"unknown request {op!r}")
            value = method(*args)
            return "ok", (self.encode(value), self.mirror_states())
        except _Report as report:
            return "raised", report.info
        except BaseException as error:  # noqa: BLE001 - everything learner code raises is reported
            if isinstance(error, (SystemExit, KeyboardInterrupt)):
                return "raised", {"kind": "exit", "type": type(error).__name__, "message": _text(error)}
            # e.g. a returned object whose methods raise while it is encoded: name the function called
            label = args[-1] if op == "call" and args and isinstance(args[-1], str) else ""
            return "raised", describe_error(error, label)

    def op_import(self, module: str) -> Any:
        qualified = f"{PACKAGE}.{module}" if PACKAGE else module
        if not (LEARNER_DIR / PACKAGE / f"{module}.py").is_file():
            raise _Report({"kind": "absent", "module": module})
        try:
            return importlib.import_module(qualified)
        except BaseException as error:  # noqa: BLE001
            sys.modules.pop(qualified, None)
            where = ""
            if isinstance(error, SyntaxError):
                where = f" (line {error.lineno}: `{(error.text or '').strip()}`)"
            raise _Report({"kind": "import", "type": type(error).__name__,
                           "message": _text(error) + where}) from None

    def op_getattr(self, handle: dict, name: str) -> Any:
        target = self.resolve(handle)
        if not isinstance(name, str):
            raise wire.ProtocolError("an attribute name that is not a string")
        if not hasattr(target, name):
            raise _Report({"kind": "missing", "type": "AttributeError", "message": name})
        return getattr(target, name)

    def op_call(self, handle: dict, args: list, kwargs: dict, label: str) -> Any:
        function = self.resolve(handle)
        args, kwargs = self.decode(args), self.decode(kwargs)
        versions = input_versions(function, args, kwargs)
        try:
            result = function(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001
            if isinstance(error, (SystemExit, KeyboardInterrupt)):
                raise
            raise _Report(describe_error(error, label)) from None
        modified = [name for name, (tensor, version) in versions.items() if tensor._version != version]
        if modified:
            raise _Report({"kind": "modified", "label": label, "message": ", ".join(modified)})
        return result

    def op_lend(self, module_handle: dict, name: str, lent: Any) -> None:
        setattr(self.resolve(module_handle), name, self.decode(lent))

    def op_backward(self, handle: dict, gradient: Any) -> None:
        tensor = self.resolve(handle)
        try:
            tensor.backward(self.decode(gradient))
        except BaseException as error:  # noqa: BLE001
            raise _Report(describe_error(error, "backward")) from None

    def op_randomize(self, handle: dict, seed: int) -> Any:
        return wire.randomize_(self.resolve(handle), seed)

    # --- handles ---

    def resolve(self, value: Any) -> Any:
        if not wire.is_handle(value):
            raise wire.ProtocolError("expected a handle")
        side, number, _ = value[wire.HANDLE_KEY]
        if side != "W" or not isinstance(number, int) or not 0 <= number < len(self.objects):
            raise wire.ProtocolError("an unknown handle")
        return self.objects[number]

    def remember(self, value: Any) -> int:
        key = id(value)
        if key not in self.numbers:
            self.numbers[key] = len(self.objects)
            self.objects.append(value)
        return self.numbers[key]

    # --- what goes to the grader ---

    def encode(self, value: Any, depth: int = 0, mark_grad: bool = True) -> Any:
        """``value`` as plain data, learner objects as handles.

        With ``mark_grad`` (results for the grader) a tensor that requires grad
        comes with a handle, so that the grader can ask for its backward.
        """
        if depth > wire.MAX_DEPTH:
            raise wire.ProtocolError("a result nested too deeply")
        kind = type(value)
        if value is None or kind in (bool, int, float, str, torch.dtype, torch.device, torch.Size):
            return value
        if isinstance(value, torch.Tensor):
            plain = torch.Tensor._make_subclass(torch.Tensor, value.detach(), False) if kind is not torch.Tensor \
                else value.detach()
            if value.requires_grad and mark_grad:
                grad = value.grad if value.is_leaf else None
                grad = grad.detach().clone() if isinstance(grad, torch.Tensor) else None
                return {wire.GRAD_KEY: (plain, self.remember(value), grad)}
            return plain
        if isinstance(value, (bool, int, float)) and not isinstance(value, nn.Module):
            return kind.__mro__[1](value) if kind not in (bool, int, float) else value  # numpy scalars, IntEnum…
        if isinstance(value, (Mirror, LentObject)):
            return wire.handle("T", value._grading_number, {})
        if isinstance(value, torch.Generator):
            for number, generator in self.generators.items():
                if generator is value:
                    return wire.handle("T", number, {"state": value.get_state()})
        if kind is wire.Schedule:  # the grader's schedule goes back as the data it came as
            return {wire.SCHEDULE_KEY: wire.Schedule.data_of(value)}
        if kind in (tuple, list) or (isinstance(value, tuple) and hasattr(value, "_fields")):
            return tuple(self.encode(item, depth + 1, mark_grad) for item in value) if isinstance(value, tuple) \
                else [self.encode(item, depth + 1, mark_grad) for item in value]
        if isinstance(value, dict) and all(type(key) is str for key in value):
            return {key: self.encode(item, depth + 1, mark_grad) for key, item in value.items()}
        if kind.__name__ in ("generator", "map", "filter", "zip") or kind.__name__.endswith("iterator"):
            return [self.encode(item, depth + 1, mark_grad) for item in value]
        return wire.handle("W", self.remember(value), describe_object(value))

    def mirror_states(self) -> dict:
        """The weights and gradients of each lent model's stand-in that changed, for the grader to copy back."""
        states = {}
        for number, mirror in self.mirrors.items():
            if not self.mirror_changed(number, mirror):
                continue
            states[str(number)] = {
                "state": {name: value.detach().clone() for name, value in mirror.state_dict().items()},
                "grads": {name: p.grad.detach().clone() for name, p in mirror.named_parameters()
                          if p.grad is not None},
                "training": mirror.training,
                "trainable": [name for name, p in mirror.named_parameters() if p.requires_grad],
            }
        for number, generator in self.generators.items():
            states[str(number)] = {"state": generator.get_state()}
        return states

    def mirror_changed(self, number: int, mirror: nn.Module) -> bool:
        """Whether ``mirror``'s weights, gradients, mode or requires_grad flags changed since this was last asked.

        Compares each tensor's identity, storage and in-place version counter; the tensors
        of the last answer are kept alive, so a new tensor cannot reuse an old one's id or
        storage address and pass for it.
        """
        tensors = [value for _, value in sorted(mirror.state_dict(keep_vars=True).items())]
        tensors += [p.grad for _, p in sorted(mirror.named_parameters()) if p.grad is not None]
        flags = tuple(p.requires_grad for _, p in sorted(mirror.named_parameters()))
        signature = (mirror.training, flags, tuple((id(v), v.data_ptr(), v._version) for v in tensors))
        previous = self.mirror_signatures.get(number)
        self.mirror_signatures[number] = (signature, [v.detach() for v in tensors] + tensors)
        return previous is None or previous[0] != signature

    # --- what comes from the grader ---

    def decode(self, value: Any) -> Any:
        kind = type(value)
        if kind in (tuple, list):
            return kind(self.decode(item) for item in value)
        if kind is not dict:
            return value
        if wire.is_handle(value):
            side, number, info = value[wire.HANDLE_KEY]
            if side == "W":
                return self.resolve(value)
            return self.lent(number, info)
        if wire.SCHEDULE_KEY in value and len(value) == 1:
            return wire.Schedule.from_data(value[wire.SCHEDULE_KEY])
        return {key: self.decode(item) for key, item in value.items()}

    def lent(self, number: int, info: dict) -> Any:
        """A stand-in for the grader's object ``number``: a function, a class or a model."""
        kind = info.get("kind")
        if kind == "function":
            return lent_function(self, number, info.get("name", "function"))
        if kind == "class":
            return lent_class(self, number, info)
        if kind == "generator":
            generator = self.generators.setdefault(number, torch.Generator())
            generator.set_state(info["state"])  # the grader's generator may have drawn since
            return generator
        if kind == "object":
            return LentObject(self, number, info)
        if kind == "model":
            if number not in self.mirrors:
                self.mirrors[number] = Mirror(self, number, info)
                self.mirror_changed(number, self.mirrors[number])  # the grader's model holds this state already
            return self.mirrors[number]
        raise wire.ProtocolError(f"cannot lend a {kind!r}")

    # --- requests to the grader ---

    def ask(self, *request: Any, raw: bool = False) -> Any:
        status, value = self.endpoint.request(*request)
        if status == "raised":
            raise LentError(value)
        return value if raw else self.decode(value)

    def apply_remote(self, request: tuple, args: tuple, kwargs: dict) -> Any:
        """``request`` run by the grader on (args, kwargs), with autograd carried across when needed."""
        tensors = wire.flatten_tensors((args, kwargs))
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        if not needs_grad:
            value, _ = self.settle(self.ask(*request, self.encode((args, kwargs), mark_grad=False), [], False))
            return value
        return bridge(self, request, args, kwargs, tensors)

    def settle(self, reply: Any) -> tuple:
        """(value, token) of the grader's reply to a call, after taking over its generators' states."""
        if type(reply) is not tuple or len(reply) != 3:
            raise wire.ProtocolError("a malformed reply from the grader")
        value, token, states = reply
        for key, state in (states or {}).items():
            generator = self.generators.get(int(key))
            if generator is not None:
                generator.set_state(state)
        return value, token


class _Report(Exception):
    """A learner error, already described for the grader."""

    def __init__(self, info: dict) -> None:
        super().__init__(info.get("message", ""))
        self.info = info


class LentError(Exception):
    """A lent reference function raised (or refused its inputs) in the grader."""

    def __init__(self, info: dict) -> None:
        super().__init__(info.get("message", "") if isinstance(info, dict) else str(info))
        self.info = info


# ---------------------------------------------------------------------------
# Lent reference objects
# ---------------------------------------------------------------------------


def lent_function(child: Child, number: int, name: str):
    def function(*args, **kwargs):
        return child.apply_remote(("call", number), args, kwargs)

    function.__name__ = function.__qualname__ = name
    return function


def lent_class(child: Child, number: int, info: dict) -> type:
    def __init__(self, *args, **kwargs):
        nn.Module.__init__(self)
        reply = child.ask("construct", number, child.encode((args, kwargs), mark_grad=False), raw=True)
        if not wire.is_handle(reply):
            raise wire.ProtocolError("the grader did not construct the lent class")
        _, instance_number, instance_info = reply[wire.HANDLE_KEY]
        Mirror.setup(self, child, instance_number, instance_info)

    return type(info.get("name", "Lent"), (Mirror,), {"__init__": __init__})


class LentObject:
    """A stand-in for another object of the grader (a Trajectory recorder, say): its methods run there."""

    def __init__(self, child: Child, number: int, info: dict) -> None:
        self._grading_child, self._grading_number = child, number
        self._grading_methods = set(info.get("methods", ()))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._grading_methods:
            raise AttributeError(name)
        return lambda *args, **kwargs: self._grading_child.apply_remote(
            ("method", self._grading_number, name), args, kwargs)


class Mirror(nn.Module):
    """A stand-in for a model that lives in the grader: the same parameters, its forward run there."""

    def __init__(self, child: Child, number: int, info: dict) -> None:
        super().__init__()
        Mirror.setup(self, child, number, info)

    @staticmethod
    def setup(module: nn.Module, child: Child, number: int, info: dict) -> None:
        object.__setattr__(module, "_grading_child", child)
        object.__setattr__(module, "_grading_number", number)
        child.mirrors[number] = module
        trainable = set(info.get("trainable", ()))
        for name, value in info.get("state", {}).items():
            *path, leaf = name.split(".")
            owner = module
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            if name in trainable:
                owner.register_parameter(leaf, nn.Parameter(value.clone()))
            else:
                owner.register_buffer(leaf, value.clone())
        for name, value in info.get("attributes", {}).items():
            object.__setattr__(module, name, value)
        module.train(info.get("training", True))

    def forward(self, *args, **kwargs):
        state = dict(self.state_dict(keep_vars=True))
        return self._grading_child.apply_remote(
            ("forward", self._grading_number, self.training), (state, args), kwargs
        )


class _Bridge(torch.autograd.Function):
    """Carries autograd across the channel: the grader ran the forward; it runs the backward too.

    ``inputs`` are the tensors of the call that require grad, ``outputs`` the
    floating-point tensors the grader returned; the gradients of the inputs are
    asked from the grader (request "backward") when autograd gets here.
    """

    @staticmethod
    def forward(ctx, child, token, count, *tensors):  # noqa: ANN001
        ctx.child, ctx.token, ctx.count = child, token, count
        return tuple(output.clone() for output in tensors[count:])

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001
        grads = [g.detach() if g is not None else None for g in grads]
        result = ctx.child.ask("backward", ctx.token, grads)
        return (None, None, None, *result, *([None] * len(grads)))


def bridge(child: Child, request: tuple, args: tuple, kwargs: dict, tensors: list) -> Any:
    """The grader's answer to ``request`` with its floating-point outputs attached to the graph."""
    mask = [t.requires_grad for t in tensors]
    value, token = child.settle(child.ask(*request, child.encode((args, kwargs), mark_grad=False), mask, True))
    outputs = wire.flatten_tensors(value)
    floating = [o for o in outputs if o.is_floating_point()]
    inputs = [t for t in tensors if t.requires_grad]
    carried = list(_Bridge.apply(child, token, len(inputs), *inputs, *floating))
    return _rebuild(value, [carried.pop(0) if o.is_floating_point() else o for o in outputs])


def _rebuild(structure: Any, tensors: list) -> Any:
    if isinstance(structure, torch.Tensor):
        return tensors.pop(0)
    if isinstance(structure, (tuple, list)):
        return type(structure)(_rebuild(item, tensors) for item in structure)
    if isinstance(structure, dict):
        return {key: _rebuild(item, tensors) for key, item in structure.items()}
    return structure


# ---------------------------------------------------------------------------
# Describing learner objects and errors
# ---------------------------------------------------------------------------


def describe_object(value: Any) -> dict:
    kind = type(value)
    if isinstance(value, type(sys)):
        what = "module"
    elif isinstance(value, type):
        what = "class"
    elif isinstance(value, nn.Module):
        what = "model"
    elif callable(value):
        what = "function"
    else:
        what = "object"
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or kind.__name__
    file = getattr(value, "__file__", None)
    return {"kind": what, "type": f"{kind.__module__}.{kind.__qualname__}", "name": _text(name, 200),
            "file": Path(file).name if isinstance(file, str) else ""}


def input_versions(function: Any, args: list, kwargs: dict) -> dict[str, tuple[torch.Tensor, int]]:
    """Each tensor argument of a call, by parameter name, with its in-place version counter.

    torch counts every in-place operation on a tensor (``x += 1``, ``x.clamp_()``,
    ``x[0] = 0``) in ``tensor._version``: a counter that moved during the call means the
    learner's function wrote into a tensor its caller still holds.
    """
    try:
        bound = inspect.signature(function).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):  # a call the signature refuses: the call itself reports it
        bound = {f"argument {index + 1}": value for index, value in enumerate(args)} | kwargs
    return {f"`{name}`": (value, value._version) for name, value in bound.items()
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter)}


def describe_error(error: BaseException, label: str) -> dict:
    message = _text(error)
    if isinstance(error, NotImplementedError) and message.startswith(STUB_PREFIX):
        return {"kind": "stub", "type": "NotImplementedError", "message": message, "label": label}
    if isinstance(error, LentError):
        info = error.info if isinstance(error.info, dict) else {}
        return {**info, "label": label}
    where, function = "", ""
    for frame, line in reversed(list(traceback.walk_tb(error.__traceback__))):
        path = Path(frame.f_code.co_filename)
        if path.parent.resolve() == LEARNER_DIR or path.parent.resolve() == LEARNER_DIR / PACKAGE:
            source = linecache.getline(str(path), line).strip()
            where = f"{path.name} line {line}: `{_text(source, 200)}`"
            function = frame.f_code.co_qualname  # e.g. "ResidualBlock.forward": the grader finds its section
            break
    return {"kind": "crash", "type": _text(type(error).__name__, 100), "message": message, "where": where,
            "function": function, "label": label}


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    try:
        text = str(value)
    except BaseException:  # noqa: BLE001 - a __str__ that raises
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + " …"


# ---------------------------------------------------------------------------
# Inputs the grader builds
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# The zygote
# ---------------------------------------------------------------------------


def zygote(control: socket.socket, note: str = "") -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    wire.send_frame(control, ("ready", os.getpid(), note))
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1024, 1)
        except OSError:
            return
        if not message:
            return  # the grader closed the control socket
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:
            control.close()
            os.setsid()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _serve_child(fds[0])
            os._exit(0)
        os.close(fds[0])
        control.sendall(str(pid).encode().ljust(16))


def _serve_child(fd: int) -> None:
    # Every check starts from the same random state: what learner code draws without a generator
    # (a layer's initial weights) is the same in every run, and the same as when the reference's
    # answers were recorded (grading/recording.py).
    torch.manual_seed(wire.CHECK_SEED)
    sock = socket.socket(fileno=fd)
    child = Child(sock)
    while True:
        try:
            request = wire.recv_frame(sock)
        except (wire.ChannelClosed, wire.ProtocolError, OSError):
            return
        if type(request) is not tuple or not request or request[0] != "request":
            return
        wire.send_frame(sock, ("reply", *child.serve(request[1:])))


def set_limits() -> None:
    """Limits on this process and all it starts, soft and hard (learner code cannot raise them again)."""
    import resource

    memory_mb, file_mb, processes = (int(part) for part in os.environ.get("GRADING_LIMITS", "0,0,0").split(","))
    with open("/proc/self/status", encoding="utf-8") as status:
        mapped = next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:")), 0)
    limits = {resource.RLIMIT_CORE: 0, resource.RLIMIT_NOFILE: 256}
    if memory_mb:
        limits[resource.RLIMIT_AS] = mapped + memory_mb * 2**20
    if file_mb:
        limits[resource.RLIMIT_FSIZE] = file_mb * 2**20
    if processes:
        limits[resource.RLIMIT_NPROC] = processes
    for which, value in limits.items():
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file limit fails instead of killing


def main(note: str = "") -> None:
    """Serve the grader; ``note`` says how grading/confine.py confined this process."""
    threads = int(os.environ.get("GRADING_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    sys.path.append(str(LEARNER_DIR))  # after the standard library and site-packages
    for name in ("provided.choices", "provided.validate", "provided.files", "numpy"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    set_limits()
    zygote(socket.socket(fileno=int(sys.argv[1])), note)


if __name__ == "__main__":
    main()
