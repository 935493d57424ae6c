"""The grader's side of the worker: a sandbox per grading run, a fresh child per check.

:class:`Sandbox` prepares a scratch folder (a copy of the worker, of the
provided code and of the whitelisted learner files, nothing else), starts the
worker's zygote there with a minimal environment, and, when the grader runs as
root, as an unprivileged user. :meth:`Sandbox.conversation` forks a child of
the zygote for one check; :class:`Conversation` talks to it, times it out by
killing it from outside, and kills its whole process group when the check
ends. Learner results come back as plain data (:mod:`grading.wire`) and are
compared here; learner objects stay in the child and are reached through
:class:`RemoteObject` handles.

Limits on the worker (set by the worker itself before any learner code runs,
soft and hard, so they cannot be raised again): address space (torch's own
mapping plus ``memory_mb``), file size, open files, no core dumps, and the
number of processes when it runs as its own user. Output goes to /dev/null.
This process becomes a child subreaper, so anything a submission leaves
running (a double fork, ``setsid``) is adopted here and killed by
:meth:`Sandbox.close`.
"""

from __future__ import annotations

import contextlib
import json
import os
import py_compile
import shutil
import site
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from provided.phases import EXERCISE_MODULES

from . import confine, wire
from .recording import RecordedCallable
from .processes import children_of, kill_group, set_subreaper, sweep_orphans

REPO_ROOT = Path(__file__).resolve().parent.parent
LEARNER_MODULES = EXERCISE_MODULES
MAX_LEARNER_FILE = 2 * 2**20
SANDBOX_USER = 65534  # nobody


class WorkerProblem(Exception):
    """The worker could not answer: it timed out, died, or sent something that is not plain data."""


@dataclass(frozen=True)
class Limits:
    check_seconds: float = 30.0
    memory_mb: int = 4096  # on top of what torch maps when it is imported
    file_mb: int = 64
    processes: int = 64  # only enforced when the worker runs as its own user
    threads: int = 0  # torch threads in the worker (0: torch's default)


# ---------------------------------------------------------------------------
# The scratch folder
# ---------------------------------------------------------------------------


def learner_files(folder: Path) -> dict[str, bytes]:
    """The learner files of ``folder``: regular files with the expected names, nothing else.

    Symbolic links, packages, ``__pycache__`` and any other file are ignored;
    each file is read once here (at most 2 MiB), so what the worker imports is
    what was there when grading started.
    """
    files = {}
    for module in LEARNER_MODULES:
        path = folder / f"{module}.py"
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_LEARNER_FILE:
            continue
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            files[module] = handle.read(MAX_LEARNER_FILE)
    return files


def reference_files() -> dict[str, bytes]:
    return {module: (REPO_ROOT / "solutions" / f"{module}.py").read_bytes() for module in LEARNER_MODULES}


def prepare_scratch(root: Path, files: dict[str, bytes], package: str) -> None:
    """``root``/lib: the worker and the provided code; /learner: the files; /work: the only writable folder."""
    lib = root / "lib"
    (lib / "provided").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "grading" / "wire.py", lib / "wire.py")
    shutil.copy(REPO_ROOT / "grading" / "worker.py", lib / "worker.py")
    shutil.copy(REPO_ROOT / "grading" / "confine.py", lib / "confine.py")
    shutil.copy(REPO_ROOT / "utils.py", lib / "utils.py")
    for path in (REPO_ROOT / "provided").glob("*.py"):
        shutil.copy(path, lib / "provided" / path.name)
    learner = root / "learner" / package if package else root / "learner"
    learner.mkdir(parents=True)
    if package:
        (learner / "__init__.py").write_text("", encoding="utf-8")
    for module, source in files.items():
        (learner / f"{module}.py").write_bytes(source)
        compile_once(learner / f"{module}.py")
    (root / "work").mkdir()


def compile_once(path: Path) -> None:
    """Byte-compile a learner file here, so that each check's child loads it instead of compiling it again.

    Compiling runs none of the file's code. The .pyc records the source's hash
    and Python checks it on import; a file that does not compile gets none, and
    its import reports the error as before.
    """
    with contextlib.suppress(py_compile.PyCompileError, SyntaxError, ValueError, OSError):
        py_compile.compile(str(path), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


# ---------------------------------------------------------------------------
# The sandbox: one zygote per grading run
# ---------------------------------------------------------------------------


class Sandbox:
    """The worker's zygote for one implementation: ``Sandbox(files, package="")``.

    ``files`` maps module names to sources (:func:`learner_files`); ``package``
    is "" for learner files and "solutions" when the reference itself is graded.
    """

    def __init__(self, files: dict[str, bytes], package: str = "", limits: Limits = Limits(),
                 hidden: tuple[Path, ...] = ()) -> None:
        self.files, self.package, self.limits = files, package, limits
        self.hidden = hidden  # folders the worker must not see, besides the checkout (a submission's folder)
        self.note = ""  # how the worker is confined (grading/confine.py), or why it is not
        self.confined = False  # its own user, the grading files hidden, everything else read-only
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.scratch = Path(tempfile.mkdtemp(prefix="grading-sandbox-"))
        os.chmod(self.scratch, 0o755)
        prepare_scratch(self.scratch, files, package)
        set_subreaper()
        self.own_children = set(children_of(os.getpid()))  # started before the sandbox: not the submission's
        self._start_as_sandbox_user()

    def _start_as_sandbox_user(self) -> None:
        """Start the zygote confined (grading/confine.py) when running as root; as this user otherwise."""
        self.user = None
        if os.geteuid() == 0:
            os.chown(self.scratch / "work", SANDBOX_USER, SANDBOX_USER)
            os.chmod(self.scratch / "work", 0o700)
            self.user = SANDBOX_USER
            try:
                self._start()
                return
            except (OSError, WorkerProblem) as error:
                self._stop_zygote()
                self.user = None
                self.note = (f"the worker runs as root: the unprivileged user {SANDBOX_USER} cannot start "
                             f"{Path(sys.executable).name} with torch here ({error}); install "
                             "Python where every user can read it")
        else:
            self.note = ("the worker runs as the grader's own user: it cannot read the reference through the "
                         "grader, but the files this user may read stay readable (grade as root to confine it)")
        self._start()

    def confinement(self) -> dict:
        """What grading/confine.py does in the worker: the user, what to hide, what it must reach."""
        if self.user is None:
            return {"user": None}
        # What the interpreter needs (``python -I``: the standard library and site-packages), never sys.path,
        # which pytest extends with the checks' own folders.
        needed = (sys.prefix, sys.base_prefix, *sysconfig.get_paths().values(), *site.getsitepackages())
        reach = {Path(p).resolve() for p in needed if p and Path(p).is_dir()}
        reach.add(self.scratch.resolve())
        hide = {REPO_ROOT / entry for entry in os.listdir(REPO_ROOT)}
        hide.update(Path(p) for p in os.environ.get("GRADING_HIDE", "").split(os.pathsep) if p)
        hide.update(self.hidden)
        hide = {path.resolve() for path in hide}
        # Keep what Python needs (a virtual environment inside the checkout, say) and its ancestors.
        hide = {path for path in hide if not any(path == r or path in r.parents for r in reach)}
        return {"user": self.user, "hide": sorted(map(str, hide)), "reach": sorted(map(str, reach)),
                "writable": str(self.scratch / "work")}

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        work = self.scratch / "work"
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
            "GRADING_LEARNER_DIR": str(self.scratch / "learner"), "GRADING_PACKAGE": self.package,
            "GRADING_THREADS": str(self.limits.threads),
            "GRADING_LIMITS": ",".join(map(str, (self.limits.memory_mb, self.limits.file_mb,
                                                 self.limits.processes if self.user is not None else 0))),
            "GRADING_CONFINE": json.dumps(self.confinement()),
        }
        if self.limits.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.limits.threads)
        # confine first (standard library only), then torch and the worker
        bootstrap = (f"import sys; sys.path.insert(0, {str(self.scratch / 'lib')!r}); "
                     "import confine; note = confine.apply(); import worker; worker.main(note)")
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", bootstrap, str(theirs.fileno())],
            cwd=work, env=env, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        theirs.close()
        self.control = ours
        try:
            ready = wire.recv_frame(ours, time.monotonic() + 120)
        except (wire.ChannelClosed, wire.ChannelTimeout, wire.ProtocolError) as error:
            raise WorkerProblem(f"the grading worker did not start ({type(error).__name__})") from None
        if ready[0] != "ready":
            raise WorkerProblem("the grading worker did not start")
        if ready[2]:
            self.note = ready[2]
        self.confined = self.user is not None and self.note == confine.CONFINED

    def _fork(self, deadline: float) -> tuple[int, socket.socket]:
        ours, theirs = socket.socketpair()
        try:
            socket.send_fds(self.control, [b"fork"], [theirs.fileno()])
            raw = b""
            while len(raw) < 16:
                if not wire.select.select([self.control], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    raise WorkerProblem("the grading worker did not answer")
                chunk = self.control.recv(16 - len(raw))
                if not chunk:
                    raise WorkerProblem("the grading worker exited")
                raw += chunk
        except OSError as error:
            raise WorkerProblem(f"the grading worker exited ({error})") from None
        finally:
            theirs.close()
        return int(raw.decode().strip()), ours

    def conversation(self, timeout: float | None = None) -> "Conversation":
        """A fresh child of the zygote for one check (the zygote is restarted if a check killed it)."""
        timeout = timeout or self.limits.check_seconds
        deadline = time.monotonic() + timeout
        try:
            pid, sock = self._fork(deadline)
        except WorkerProblem:
            self._stop_zygote()
            self._start()  # as the same user as before
            pid, sock = self._fork(time.monotonic() + timeout)
        return Conversation(self, pid, sock, timeout)

    def _stop_zygote(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.process is not None:
            kill_group(self.process.pid)
            with contextlib.suppress(Exception):
                self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        """Stop the zygote, kill whatever the submission left running, delete the scratch folder."""
        self._stop_zygote()
        sweep_orphans(self.own_children)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# One check's conversation with one child
# ---------------------------------------------------------------------------


class RemoteObject:
    """A learner object that lives in the worker: attributes and calls go there and back as plain data."""

    __slots__ = ("_conversation", "_handle", "_info")

    def __init__(self, conversation: "Conversation", handle: dict, info: dict) -> None:
        object.__setattr__(self, "_conversation", conversation)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_info", info)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._conversation.getattr(self, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._conversation.call(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<{self._info.get('kind', 'object')} {self._info.get('name', '?')} in the worker>"

    @property
    def kind(self) -> str:
        return str(self._info.get("kind", "object"))

    @property
    def type_name(self) -> str:
        return str(self._info.get("type", "object")).rsplit(".", 1)[-1]


class LearnerError(Exception):
    """Learner code raised (or could not be imported); ``info`` says how (see worker.describe_error)."""

    def __init__(self, info: dict) -> None:
        super().__init__(str(info.get("message", "")))
        self.info = info


class Conversation:
    """The grader's end of one child: send requests, serve the child's requests, keep its deadline."""

    def __init__(self, sandbox: Sandbox, pid: int, sock: socket.socket, timeout: float) -> None:
        self.sandbox, self.pid, self.timeout = sandbox, pid, timeout
        self.endpoint = wire.Endpoint(sock, self.serve)
        self.endpoint.deadline = time.monotonic() + timeout
        self.objects: list[Any] = []  # the grader's objects lent to this child, by handle number
        self.numbers: dict[int, int] = {}
        self.tokens: list[tuple[list, list]] = []  # (inputs, outputs) of lent calls, for their backward
        self.remote_leaves: list[torch.Tensor] = []  # tensors of the learner's graph, for backward()
        self.closed = False
        self.touched_generators: list[torch.Generator] = []
        self.report: Any = None  # called with a LearnerError or WorkerProblem instead of raising it

    # --- requests to the child ---

    def request(self, op: str, *args: Any, context: dict | None = None) -> Any:
        try:
            return self._request(op, *args, context=context)
        except (LearnerError, WorkerProblem) as error:
            if self.report is None:
                raise
            problem = error
        self.report(problem)  # outside the except block: the report shows no chained traceback
        raise problem

    def _request(self, op: str, *args: Any, context: dict | None = None) -> Any:
        if self.closed:
            raise WorkerProblem("the check's worker was already stopped")
        try:
            status, value = self.endpoint.request(op, *args)
        except wire.ChannelTimeout:
            self.close()
            raise WorkerProblem(f"timed out after {self.timeout:g} s: an endless loop, or something far too slow.") \
                from None
        except wire.ChannelClosed:
            self.close()
            raise WorkerProblem("the worker running your code stopped (os._exit, a crash, or too much memory); "
                                "no check can use code that ends the process.") from None
        except wire.ProtocolError as error:
            self.close()
            raise WorkerProblem(f"the worker running your code sent something that is not plain data ({error}).") \
                from None
        except OSError as error:
            self.close()
            raise WorkerProblem(f"the worker running your code could not be reached ({error}).") from None
        if status == "raised":
            raise LearnerError({**(value if type(value) is dict else {"message": str(value)}), **(context or {})})
        if type(value) is not tuple or len(value) != 2 or type(value[1]) is not dict:
            raise WorkerProblem("the worker running your code sent a malformed reply.")
        result, states = value
        self._apply_states(states)
        return self.decode(result)

    def import_module(self, module: str) -> RemoteObject:
        return self.request("import", module, context={"module": module})

    def getattr(self, target: RemoteObject, name: str) -> Any:
        return self.request("getattr", target._handle, name, context={"file": target._info.get("file", "")})

    def call(self, target: RemoteObject, args: tuple, kwargs: dict) -> Any:
        return self.request("call", target._handle, self.encode(list(args)), self.encode(kwargs), label_of(target))

    def lend(self, module: RemoteObject, name: str, value: Any) -> None:
        self.request("lend", module._handle, name, self.encode(value))

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` carried on into the worker, through the learner's graph.

        ``loss`` may be a tensor returned by learner code, or computed here from
        such tensors: each one that gets a gradient passes it on to the worker.
        """
        if loss.requires_grad and loss.grad_fn is not None:
            loss.backward()
        elif getattr(loss, "_grading_remote", None) is not None:
            loss.grad = torch.ones_like(loss)
        for leaf in self.remote_leaves:
            if leaf.grad is not None:
                gradient, leaf.grad = leaf.grad, None
                self.request("backward", wire.handle("W", leaf._grading_remote, {}), gradient,
                             context={"label": "backward"})

    def randomize(self, model: RemoteObject, seed: int) -> Any:
        return self.request("randomize", model._handle, seed)

    # --- requests from the child (lent reference objects at work) ---

    def serve(self, request: tuple) -> tuple:
        try:
            op, *args = request
            if op == "call":
                return "ok", self._serve_call(self._object(args[0]), *args[1:])
            if op == "method":
                target, name = self._object(args[0]), args[1]
                if type(name) is not str or name.startswith("_") or not callable(getattr(target, name, None)):
                    raise wire.ProtocolError("an unknown method")
                return "ok", self._serve_call(getattr(target, name), *args[2:])
            if op == "forward":
                number, training, structure, mask, grad = args
                module = self._object(number)
                if not isinstance(module, nn.Module):
                    raise wire.ProtocolError("forward of something that is not a model")
                module.train(bool(training))

                def run(state, inner_args, **kwargs):
                    return torch.func.functional_call(module, state, tuple(inner_args), kwargs, strict=False)

                return "ok", self._serve_call(run, structure, mask, grad)
            if op == "construct":
                cls = self._object(args[0])
                call_args, call_kwargs = self.decode(args[1], lent=True)
                instance = cls(*call_args, **call_kwargs)
                return "ok", self.encode(instance)
            if op == "backward":
                return "ok", self._serve_backward(*args)
            raise wire.ProtocolError(f"unknown request {op!r}")
        except wire.ProtocolError as error:
            return "raised", {"kind": "lent", "message": f"a malformed request ({error})"}
        except Exception as error:  # noqa: BLE001 - the reference refused what learner code passed it
            return "raised", {"kind": "lent", "type": type(error).__name__, "message": str(error)[:800]}

    def _object(self, number: Any) -> Any:
        if type(number) is not int or not 0 <= number < len(self.objects):
            raise wire.ProtocolError("an unknown handle")
        return self.objects[number]

    def _serve_call(self, function: Any, structure: Any, mask: Any, grad: Any) -> tuple:
        self.touched_generators: list[torch.Generator] = []
        args, kwargs = self.decode(structure, lent=True)
        tensors = wire.flatten_tensors((args, kwargs))
        inputs = []
        if grad:
            if type(mask) is not list or len(mask) != len(tensors):
                raise wire.ProtocolError("a gradient mask that does not fit the arguments")
            for tensor, needs in zip(tensors, mask):
                if needs and tensor.is_floating_point():
                    tensor.requires_grad_(True)
                    inputs.append(tensor)
        with torch.set_grad_enabled(bool(grad)):
            result = function(*args, **kwargs)
        token = None
        if grad:
            outputs = [t for t in wire.flatten_tensors(result) if t.is_floating_point()]
            token = len(self.tokens)
            self.tokens.append((inputs, outputs))
        return self.encode(result), token, self._generator_states()

    def _generator_states(self) -> dict:
        """The states of the generators that a lent call received (they drew here; the worker goes on)."""
        return {str(self.numbers[id(generator)]): generator.get_state() for generator in self.touched_generators}

    def _serve_backward(self, token: Any, grads: Any) -> list:
        if type(token) is not int or not 0 <= token < len(self.tokens):
            raise wire.ProtocolError("an unknown backward token")
        inputs, outputs = self.tokens[token]
        if type(grads) is not list or len(grads) != len(outputs):
            raise wire.ProtocolError("gradients that do not fit the outputs")
        pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad and g is not None]
        if not inputs or not pairs:
            return [None] * len(inputs)
        found = torch.autograd.grad([o for o, _ in pairs], inputs, [g.to(o.dtype) for o, g in pairs],
                                    allow_unused=True, retain_graph=True)
        return [g.detach() if g is not None else None for g in found]

    # --- encoding ---

    def encode(self, value: Any) -> Any:
        """The grader's values for the child: plain data, lent objects as handles."""
        if isinstance(value, RemoteObject):
            return value._handle
        if isinstance(value, torch.Tensor):
            return torch.Tensor._make_subclass(torch.Tensor, value.detach(), False) \
                if type(value) is not torch.Tensor else value.detach()
        if value is None or type(value) in (bool, int, float, str, torch.dtype, torch.device, torch.Size):
            return value
        if isinstance(value, (tuple, list)):
            return type(value)(self.encode(item) for item in value) if type(value) in (tuple, list) \
                else tuple(self.encode(item) for item in value)
        if isinstance(value, dict):
            return {str(key): self.encode(item) for key, item in value.items()}
        if isinstance(value, torch.Generator):
            return wire.handle("T", self._remember(value), {"kind": "generator", "state": value.get_state()})
        if isinstance(value, RecordedCallable):  # the reference's, answered from a recording (or recorded)
            kind = "class" if value._kind == "class" else "function"
            return wire.handle("T", self._remember(value), {"kind": kind, "name": value.__name__})
        if hasattr(value, "TENSOR_NAMES") and hasattr(value, "_float64"):
            return {wire.SCHEDULE_KEY: wire.Schedule.data_of(value)}
        if isinstance(value, nn.Module):
            return wire.handle("T", self._remember(value), model_info(value))
        if isinstance(value, type):
            return wire.handle("T", self._remember(value), {"kind": "class", "name": value.__name__})
        if callable(value):
            name = getattr(value, "__name__", "function")
            return wire.handle("T", self._remember(value), {"kind": "function", "name": name})
        if isinstance(value, (bool, int, float)):
            return type(value).__mro__[1](value)
        methods = [name for name in dir(type(value)) if not name.startswith("_")
                   and callable(getattr(type(value), name, None))]
        return wire.handle("T", self._remember(value), {"kind": "object", "name": type(value).__name__,
                                                        "methods": methods})

    def _remember(self, value: Any) -> int:
        key = id(value)
        if key not in self.numbers:
            self.numbers[key] = len(self.objects)
            self.objects.append(value)
        return self.numbers[key]

    def decode(self, value: Any, lent: bool = False) -> Any:
        """The child's values: plain data; learner objects become :class:`RemoteObject` handles.

        Handles of the grader's own objects are resolved only in the child's
        requests (``lent``); as a result they stand for themselves.
        """
        kind = type(value)
        if kind in (tuple, list):
            return kind(self.decode(item, lent) for item in value)
        if kind is not dict:
            return value
        if wire.is_handle(value):
            side, number, info = value[wire.HANDLE_KEY]
            if side == "W" and type(number) is int and type(info) is dict:
                return RemoteObject(self, wire.handle("W", number, {}), info)
            if side == "T":
                target = self._object(number)
                if isinstance(target, torch.Generator) and type(info) is dict \
                        and type(info.get("state")) is torch.Tensor:
                    target.set_state(info["state"])  # the worker's generator has drawn since
                    self.touched_generators.append(target)
                return target
            raise wire.ProtocolError("a malformed handle")
        if wire.SCHEDULE_KEY in value and len(value) == 1:  # the check's schedule, passed back by learner code
            return wire.Schedule.from_data(value[wire.SCHEDULE_KEY])
        if wire.GRAD_KEY in value and len(value) == 1:
            item = value[wire.GRAD_KEY]
            if type(item) is not tuple or len(item) != 3 or type(item[0]) is not torch.Tensor \
                    or type(item[1]) is not int:
                raise wire.ProtocolError("a malformed tensor")
            tensor, number, grad = item
            if tensor.is_floating_point() or tensor.is_complex():
                tensor.requires_grad_(True)
                if type(grad) is torch.Tensor and grad.shape == tensor.shape:
                    tensor.grad = grad.to(tensor.dtype)
            tensor._grading_remote = number
            if tensor.requires_grad and tensor.grad is None:
                self.remote_leaves.append(tensor)
            return tensor
        return {key: self.decode(item, lent) for key, item in value.items()}

    def _apply_states(self, states: dict) -> None:
        """Copy what learner code did to lent models and generators back into the grader's objects."""
        for key, state in states.items():
            if not key.isdigit() or type(state) is not dict:
                continue
            target = self._object(int(key))
            if isinstance(target, torch.Generator) and type(state.get("state")) is torch.Tensor:
                with contextlib.suppress(Exception):
                    target.set_state(state["state"])
            elif isinstance(target, nn.Module):
                copy_state(target, state)

    # --- the end ---

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.endpoint.sock.close()
        kill_group(self.pid)


def model_info(model: nn.Module) -> dict:
    """What a stand-in needs: the weights and buffers, which are trainable, simple attributes, the mode."""
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    attributes = {name: value for name, value in vars(model).items()
                  if not name.startswith("_") and name != "training"
                  and type(value) in (bool, int, float, str, type(None))}
    return {"kind": "model", "name": type(model).__name__, "state": state, "trainable": trainable,
            "attributes": attributes, "training": model.training}


@torch.no_grad()
def copy_state(model: nn.Module, state: dict) -> None:
    values = state.get("state") if type(state.get("state")) is dict else {}
    grads = state.get("grads") if type(state.get("grads")) is dict else {}
    own = model.state_dict(keep_vars=True)
    for name, value in values.items():
        if name in own and type(value) is torch.Tensor and value.shape == own[name].shape:
            own[name].data = value.to(own[name].dtype)
    for name, parameter in model.named_parameters():
        grad = grads.get(name)
        parameter.grad = grad.to(parameter.dtype) if type(grad) is torch.Tensor and grad.shape == parameter.shape \
            else None
    if type(state.get("training")) is bool:
        model.train(state["training"])
    trainable = state.get("trainable")
    if type(trainable) is list:  # what requires_grad_ (e.g. freezing) did to the stand-in's parameters
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in trainable)


def label_of(target: RemoteObject) -> str:
    """How a message names a call: ``q_sample``, ``ResidualBlock.__init__``, ``ResidualBlock.forward``."""
    name = str(target._info.get("name", "?"))
    if target.kind == "class":
        return f"{name}.__init__"
    if target.kind == "model":
        return f"{target.type_name}.forward"
    return name


@contextlib.contextmanager
def lent(module: RemoteObject, source: Any, names: tuple[str, ...]) -> Iterator[None]:
    """Put the reference's ``names`` (from ``source``) into the learner's ``module`` for a block of a check.

    The reference objects stay in the grader: the child gets stand-ins whose
    calls come back here. Afterwards the learner's own objects are put back.
    """
    conversation = module._conversation
    saved = {}
    for name in names:
        try:
            saved[name] = conversation.getattr(module, name)
        except LearnerError:
            saved[name] = None
        conversation.lend(module, name, getattr(source, name))
    try:
        yield
    finally:
        if not conversation.closed:
            for name, value in saved.items():
                if value is not None:
                    conversation.lend(module, name, value)
