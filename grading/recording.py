"""The reference's answers, recorded once, so that the checks run where ``solutions/`` is absent.

A student release (``make student``) ships without the reference. Its checks
still compare a learner's code with the reference's numbers, the same way,
with the same messages and the same named mistakes: the ``ref`` fixture hands
them a :class:`Replay` that answers every reference call from a recording made
by running the same checks on the reference (:class:`Recorder`).

What is recorded, per call of anything in ``solutions/`` (a function, a class,
a model's forward, also when a learner function calls a reference helper lent to
it for a check):

* the call's *key*: its name and the structure of its arguments (types, shapes,
  dtypes, integers, strings), and a numeric fingerprint of their values (small
  tensors in full, larger ones as a few seeded random projections; models by
  their weights, mode and type; schedules by their tensors; generators and the
  global random state by their exact state);
* what it returned: tensors, numbers, schedules, models (as stand-ins with the
  same parameters, whose forward is answered the same way), and what it did to
  its arguments (models' weights and gradients, generators, the global random
  state, a Trajectory's frames);
* the gradients it passes back, for each gradient that arrived (backward
  through a reference computation is answered the same way);
* when a check put a learner function into the reference ("the reference's
  loop with your guided_model_output"), each call the reference made to it,
  with its inputs and the answer: the replay makes the same calls to the
  learner's function and compares its answers with those.

The recording is made while the reference is graded, and again while each
mutant of grading/mutants.py is graded, so that the calls a catalogued mistake
makes are answered too and the mistake is still named.

A replayed call looks for a recorded call with the same structure whose
fingerprint agrees within a relative 2e-5 (float32 rounding, not a mistake).
When none does, the inputs are not the reference's own: the learner's code
made them, and the check says so and what to look at first.

The recording carries a stamp: a hash of ``solutions/`` and one of the checks
and the grading code. ``make student`` records again when either changed, and
the student copy refuses a recording made for other checks.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import zlib
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import wire

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where the student release keeps the recording (written by ``tools/release.py student``).
RECORDING_PATH = REPO_ROOT / "tests" / "checks" / "reference_outputs.bin"
MAGIC = b"diffusion-exercises reference recording 1\n"
RELATIVE_TOLERANCE = 2e-5
#: Fingerprint of a tensor: its values when it has at most this many, else projections.
SMALL = 32
PROJECTIONS = 6
#: What the stamp of the checks covers (relative to the repository), less what a student release
#: leaves out.
CHECK_SOURCES = ("tests/checks", "grading", "provided")
NOT_STAMPED = ("grading/mutants.py",)


#: The check running now (set by grading/plugin.py), for the message of an unrecorded call.
CURRENT_CHECK: dict[str, str] = {}


class Unrecorded(Exception):
    """An object the recording cannot rebuild here."""


def unrecorded(what: str) -> None:
    """Fail the check: the reference was asked something it never answered while grading itself."""
    import pytest

    function, section = CURRENT_CHECK.get("function", "?"), CURRENT_CHECK.get("section", "?")
    pytest.fail(
        f"`{function}`: this check needed {what}, which the reference never computes when its own code is "
        f"graded. This copy has the reference's answers, not its code, so it cannot go on: something before "
        f"this point in `{function}` differs from the reference (usually a value it computes and passes on). "
        f"Compare it with IMPLEMENTATION_GUIDE.md §{section}; the instructor's grader, which has the "
        f"reference, names the difference.", pytrace=False)


# ---------------------------------------------------------------------------
# Stamps
# ---------------------------------------------------------------------------


def _hash_files(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def solutions_stamp(root: Path = REPO_ROOT) -> str:
    return _hash_files(list((root / "solutions").glob("*.py")), root)


def checks_stamp(root: Path = REPO_ROOT) -> str:
    """A hash of the visible checks, the grading code and the provided code."""
    paths = [path for folder in CHECK_SOURCES for path in (root / folder).glob("*.py")
             if str(path.relative_to(root)) not in NOT_STAMPED]
    return _hash_files(paths, root)


# ---------------------------------------------------------------------------
# Fingerprints of arguments
# ---------------------------------------------------------------------------


class Fingerprint:
    """The key of a call: ``structure`` (exact), ``numbers`` with their ``scales`` (approximate)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.numbers: list[float] = []
        self.scales: list[float] = []

    @property
    def structure(self) -> str:
        return "".join(self.parts)

    def number(self, value: float, scale: float) -> None:
        self.numbers.append(value)
        self.scales.append(scale)

    def add(self, value: Any, depth: int = 0) -> None:
        """Add ``value`` (an argument) to the key."""
        if depth > 12:
            raise TypeError("arguments nested too deeply to record")
        if value is None or type(value) in (bool, int, str) or isinstance(value, (torch.dtype, torch.device)):
            self.parts.append(f"{type(value).__name__}:{value!r};")
        elif isinstance(value, float):
            self.parts.append("float;")
            self.number(value, abs(value))
        elif isinstance(value, torch.Size):
            self.parts.append(f"size{tuple(value)};")
        elif isinstance(value, torch.Tensor):
            self.tensor(value)
        elif isinstance(value, (tuple, list)):
            self.parts.append(f"{type(value).__name__}[")
            for item in value:
                self.add(item, depth + 1)
            self.parts.append("]")
        elif isinstance(value, dict):
            self.parts.append("dict{")
            for key, item in value.items():
                self.parts.append(f"{key!s}=")
                self.add(item, depth + 1)
            self.parts.append("}")
        elif isinstance(value, (set, frozenset)):
            self.add(sorted(value), depth + 1)
        elif isinstance(value, torch.Generator):
            self.parts.append(f"generator:{_digest(value.get_state())};")
        elif isinstance(value, RecordedCallable):
            self.parts.append(f"reference:{value.__qualname__};")
        elif type(value).__name__ == "RemoteObject":
            raise TypeError("a learner object passed to the reference cannot be recorded")
        elif is_schedule(value):
            self.parts.append(f"schedule:{value.name}:{value.dtype}:")
            for name in sorted(value._float64):
                self.tensor(value._float64[name])
        elif isinstance(value, nn.Module):
            self.module(value)
        elif isinstance(value, type) or callable(value):
            self.parts.append(f"callable:{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')};")
        elif hasattr(value, "__dict__"):
            self.parts.append(f"object:{type(value).__qualname__}(")
            self.add({key: item for key, item in vars(value).items()}, depth + 1)
            self.parts.append(")")
        else:
            raise TypeError(f"an argument of type {type(value).__name__} cannot be recorded")

    def tensor(self, tensor: torch.Tensor) -> None:
        tensor = tensor.detach()
        self.parts.append(f"tensor:{str(tensor.dtype)[6:]}{tuple(tensor.shape)}:{tensor.device.type};")
        if not (tensor.is_floating_point() or tensor.is_complex()):
            self.parts.append(f"={_digest(tensor)};")
            return
        values = tensor.cpu().double().reshape(-1)
        if not torch.isfinite(values).all():
            self.parts.append(f"nonfinite={_digest(torch.isfinite(values))};")
            values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        scale = values.norm().item()
        if values.numel() <= SMALL:
            for item in values.tolist():
                self.number(item, scale / math.sqrt(max(values.numel(), 1)) + abs(item))
            return
        projections = torch.randn((PROJECTIONS, values.numel()), dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(values.numel()))
        for item in (projections @ values).tolist():
            self.number(item, scale)
        self.number(values.sum().item(), scale * math.sqrt(values.numel()))

    def module(self, module: nn.Module) -> None:
        """A model by its type, its mode and its weights (also weights swapped in by functional_call)."""
        self.parts.append(f"model:{recorded_type_name(module)}:{module.training}(")
        for name, value in module.state_dict(keep_vars=True).items():
            self.parts.append(f"{name}=")
            self.tensor(value)
        self.parts.append(")")


def _digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    return hashlib.sha256(str(tuple(tensor.shape)).encode() + data).hexdigest()[:16]


def fingerprint(*values: Any) -> Fingerprint:
    found = Fingerprint()
    for value in values:
        found.add(value)
    return found


def agrees(numbers: list[float], recorded: list[float], scales: list[float]) -> bool:
    """Whether two fingerprints' numbers agree within :data:`RELATIVE_TOLERANCE` of their scales."""
    if len(numbers) != len(recorded):
        return False
    return all(abs(a - b) <= RELATIVE_TOLERANCE * s + 1e-12 for a, b, s in zip(numbers, recorded, scales))


def is_schedule(value: Any) -> bool:
    return hasattr(value, "TENSOR_NAMES") and hasattr(value, "_float64") and not isinstance(value, type)


def recorded_type_name(module: nn.Module) -> str:
    return getattr(module, "_recorded_type", None) or type(module).__name__


# ---------------------------------------------------------------------------
# Values: what a call returned, as plain data for the file, and back
# ---------------------------------------------------------------------------

TAG = "\x01"


def dump_value(value: Any) -> Any:
    """A reference call's result as plain data (:mod:`grading.wire`), with tagged objects."""
    if value is None or type(value) in (bool, int, float, str, torch.dtype, torch.device, torch.Size):
        return value
    if isinstance(value, torch.Tensor):
        plain = value.detach().clone()
        plain = torch.Tensor._make_subclass(torch.Tensor, plain, False) if type(plain) is not torch.Tensor else plain
        return {TAG + "grad": plain} if value.requires_grad else plain
    if isinstance(value, (tuple, list)):
        return type(value)(dump_value(item) for item in value) if type(value) in (tuple, list) \
            else tuple(dump_value(item) for item in value)
    if isinstance(value, dict):
        return {TAG + "dict": {str(key): dump_value(item) for key, item in value.items()}}
    if isinstance(value, (set, frozenset)):
        return {TAG + "set": [dump_value(item) for item in sorted(value)]}
    if isinstance(value, RecordedCallable):
        return {TAG + "reference": value.__qualname__}
    if is_schedule(value):
        return {TAG + "schedule": wire.Schedule.data_of(value)}
    if isinstance(value, nn.Module):
        return {TAG + "model": dump_module(value)}
    if isinstance(value, type) or callable(value):
        return {TAG + "import": f"{value.__module__}:{value.__qualname__}"}
    if hasattr(value, "__dict__"):
        return {TAG + "object": {"import": f"{type(value).__module__}:{type(value).__qualname__}",
                                 "vars": dump_value(dict(vars(value)))}}
    raise TypeError(f"a result of type {type(value).__name__} cannot be recorded")


def dump_module(module: nn.Module) -> dict:
    """A model's type, its submodules (type and settings), parameters and buffers in order, and mode."""
    submodules = [(name, _module_class(sub), _settings(sub)) for name, sub in module.named_modules() if name]
    parameters = [(name, p.detach().clone(), p.requires_grad) for name, p in module.named_parameters()]
    buffers = [(name, b.detach().clone()) for name, b in module.named_buffers()]
    # Parameter slots left empty (nn.Linear(…, bias=False) has bias None): the stand-in's layers need them too.
    absent = [f"{prefix}.{leaf}" if prefix else leaf for prefix, sub in module.named_modules()
              for leaf, value in sub._parameters.items() if value is None]
    return {"type": recorded_type_name(module), "submodules": submodules, "parameters": parameters,
            "absent_parameters": absent, "buffers": buffers, "training": module.training,
            "attributes": _settings(module),
            "methods": _methods(module)}


def _methods(module: nn.Module) -> dict:
    """The methods of each of the reference's classes in ``module`` (stand-ins answer them), by type name."""
    found = {}
    for sub in module.modules():
        kind = type(sub)
        if str(kind.__module__).startswith("solutions"):
            found[recorded_type_name(sub)] = reference_methods(kind)
    return found


def reference_methods(kind: type) -> list[str]:
    """``forward`` and the other public methods that the reference's class ``kind`` defines itself."""
    names = {"forward"}
    for base in kind.__mro__:
        if str(base.__module__).startswith("solutions"):
            names.update(name for name, value in vars(base).items()
                         if not name.startswith("_") and callable(value) and not isinstance(value, type))
    return sorted(names)


def _settings(module: nn.Module) -> dict:
    """A module's public plain attributes (a convolution's stride and padding, a block's number of heads)."""
    found = {}
    for name, value in vars(module).items():
        if name.startswith("_") or name == "training" or isinstance(value, nn.Module):
            continue
        try:
            found[name] = dump_value(value)
        except TypeError:
            continue
    return found


def _module_class(module: nn.Module) -> str:
    """torch's own module classes by import path (stand-ins keep them: randomize_ looks for norms)."""
    kind = type(module)
    if kind.__module__.startswith("torch.nn"):
        return f"torch.nn:{kind.__name__}"
    return recorded_type_name(module)


def _allowed_import(path: str) -> Any:
    """``module:qualname`` of a provided or torch object (never anything else)."""
    module, _, qualname = path.partition(":")
    if not (module.startswith("provided.") or module == "torch" or module.startswith("torch.")):
        raise Unrecorded(f"an object of {module}, which a student copy cannot import")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


# ---------------------------------------------------------------------------
# Gradients through recorded calls
# ---------------------------------------------------------------------------


def gradient_inputs(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors a call's result can pass gradients to: tensor arguments and models' weights."""
    found: list[torch.Tensor] = []
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.requires_grad and id(value) not in seen and (value.is_floating_point() or value.is_complex()):
                seen.add(id(value))
                found.append(value)
        elif isinstance(value, (tuple, list)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, nn.Module):
            for item in value.state_dict(keep_vars=True).values():
                walk(item)

    walk((args, kwargs))
    return found


class _RecordGradients(torch.autograd.Function):
    """Passes the real gradients on and writes down, for each incoming gradient, what went back."""

    @staticmethod
    def forward(ctx, note, outputs, *inputs):  # noqa: ANN001
        ctx.note, ctx.outputs, ctx.inputs = note, outputs, inputs
        return tuple(output.detach().clone() for output in outputs)

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001
        pairs = [(o, g) for o, g in zip(ctx.outputs, grads) if o.requires_grad and g is not None]
        found = [None] * len(ctx.inputs)
        if pairs:
            found = list(torch.autograd.grad([o for o, _ in pairs], ctx.inputs, [g for _, g in pairs],
                                             allow_unused=True, retain_graph=True))
        ctx.note(list(grads), found)
        return (None, None, *found)


class _ReplayGradients(torch.autograd.Function):
    """Answers each incoming gradient with the recorded one."""

    @staticmethod
    def forward(ctx, answer, values, *inputs):  # noqa: ANN001
        ctx.answer, ctx.count = answer, len(inputs)
        return tuple(value.clone() for value in values)

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001
        found = ctx.answer(list(grads))
        return (None, None, *found)


# ---------------------------------------------------------------------------
# The recording
# ---------------------------------------------------------------------------


class Recording:
    """Recorded calls by structure: ``calls[structure]`` is a list of entries (dicts of plain data)."""

    def __init__(self, calls: dict | None = None, stamps: dict | None = None) -> None:
        self.calls: dict[str, list[dict]] = calls or {}
        self.stamps = stamps or {}

    def add(self, key: Fingerprint, entry: dict) -> dict:
        entry.update(numbers=key.numbers, scales=key.scales, gradients=[])
        same = self.calls.setdefault(key.structure, [])
        for old in same:  # the same call with the same result: keep one (gradients merge)
            if agrees(key.numbers, old["numbers"], old["scales"]) and old.get("rng") == entry.get("rng"):
                return old
        same.append(entry)
        return entry

    def merge(self, other: "Recording") -> None:
        """Add ``other``'s calls (another run of the checks: a mutant's, say) that this one lacks."""
        for structure, entries in other.calls.items():
            same = self.calls.setdefault(structure, [])
            for entry in entries:
                old = next((e for e in same if agrees(entry["numbers"], e["numbers"], e["scales"])
                            and e.get("rng") == entry.get("rng")), None)
                if old is None:
                    same.append(entry)
                    continue
                for gradient in entry["gradients"]:
                    if not any(g["structure"] == gradient["structure"]
                               and agrees(gradient["numbers"], g["numbers"], g["scales"]) for g in old["gradients"]):
                        old["gradients"].append(gradient)

    def find(self, key: Fingerprint, rng: str) -> dict | None:
        """The recorded call with this key; of several (calls that drew from torch's global random
        state), the one made from the same state if there is one, else the first."""
        found = [entry for entry in self.calls.get(key.structure, [])
                 if agrees(key.numbers, entry["numbers"], entry["scales"])]
        return next((entry for entry in found if entry.get("rng") == rng), found[0] if found else None)

    def save(self, path: Path) -> None:
        data = zlib.compress(wire.dumps({"stamps": self.stamps, "calls": self.calls}), 6)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(MAGIC + data)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Recording":
        raw = path.read_bytes()
        if not raw.startswith(MAGIC):
            raise ValueError(f"{path.name} is not a recording of the reference's outputs")
        data = wire.loads(zlib.decompress(raw[len(MAGIC):]))
        return cls(data["calls"], data["stamps"])


def _rng_state() -> str:
    return _digest(torch.get_rng_state())


# ---------------------------------------------------------------------------
# The two sides: recording the reference at work, and replaying it
# ---------------------------------------------------------------------------


class RecordedCallable:
    """A function or class of the reference, called through its tape (``__qualname__``: "diffusion.q_sample")."""

    def __init__(self, tape: "Tape", qualname: str, target: Any, kind: str) -> None:
        self._tape, self.__qualname__, self._target, self._kind = tape, qualname, target, kind
        self.__name__ = qualname.rsplit(".", 1)[-1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tape.call(self, args, kwargs)

    def __getattr__(self, name: str) -> Any:  # a classmethod: NoiseSchedule.from_name
        if name.startswith("_"):
            raise AttributeError(name)
        return self._tape.attribute(self, name)

    def __repr__(self) -> str:
        return f"<reference {self._kind} {self.__qualname__}>"


class ReferenceModule:
    """``ref.diffusion``: the functions and classes of one reference file, through a tape.

    Setting a name puts a learner's function into the reference for a check ("the reference's
    loop with your guided_model_output", :func:`grading.modules.reference_parts`); setting the
    reference's own back, or deleting it, takes it out again.
    """

    def __init__(self, tape: "Tape", name: str) -> None:
        object.__setattr__(self, "_tape", tape)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        injected = self._tape.injected.get(f"{self._name}.{name}")
        return injected if injected is not None else self._tape.attribute(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        qualname = f"{self._name}.{name}"
        if isinstance(value, RecordedCallable) and value.__qualname__ == qualname:
            self._tape.take_out(qualname)
        else:
            self._tape.put_in(qualname, value)

    def __delattr__(self, name: str) -> None:
        self._tape.take_out(f"{self._name}.{name}")


class Tape:
    """Common part of :class:`Recorder` and :class:`Replay`: ``ref.<file>.<name>`` and calls through it."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.modules: dict[str, ReferenceModule] = {}
        self.injected: dict[str, Any] = {}  # "diffusion.guided_model_output" → the learner's function

    def module(self, name: str) -> ReferenceModule:
        return self.modules.setdefault(name, ReferenceModule(self, name))

    def put_in(self, qualname: str, value: Any) -> None:
        self.injected[qualname] = value

    def take_out(self, qualname: str) -> None:
        self.injected.pop(qualname, None)

    def key(self, qualname: str, args: tuple, kwargs: dict) -> Fingerprint:
        """A call's key: its name, the learner functions put into the reference, its arguments."""
        return fingerprint(qualname, sorted(self.injected), args, kwargs)

    def qualname(self, owner: Any, name: str) -> str:
        return f"{owner._name}.{name}" if isinstance(owner, ReferenceModule) else f"{owner.__qualname__}.{name}"


class Recorder(Tape):
    """Runs the real reference and writes down every call (``ref`` while recording)."""

    def __init__(self, recording: Recording, modules: dict[str, Any]) -> None:
        super().__init__(recording)
        self.real = modules
        self.classes: dict[type, type] = {}
        self.depth = 0  # > 0 while the reference runs: its own inner calls are not recorded
        self.originals: dict[str, Any] = {}
        self.callbacks: list | None = None  # the calls of put-in learner functions during a recorded call
        self.outer: dict[int, str] = {}  # the recorded call's argument objects, by id → path

    def put_in(self, qualname: str, value: Any) -> None:
        """Put the learner's ``value`` into the real reference module; its calls are written down."""
        super().put_in(qualname, value)
        module, name = qualname.split(".", 1)
        self.originals.setdefault(qualname, getattr(self.real[module], name))
        recorder = self

        def put_in_function(*args, **kwargs):
            # The learner's function may call reference helpers lent to it (the reference's alpha_bar_at
            # while its renoise runs inside the reference's loop): record those calls as a check's own,
            # for the replay answers them when it makes this call again.
            depth, callbacks, outer = recorder.depth, recorder.callbacks, recorder.outer
            recorder.depth = 0
            try:
                result = value(*args, **kwargs)
            finally:
                recorder.depth, recorder.callbacks, recorder.outer = depth, callbacks, outer
            if recorder.callbacks is not None:
                recorder.callbacks.append({"name": qualname, "arguments": recorder.dump_arguments((args, kwargs)),
                                           "result": dump_value(result)})
            return result

        setattr(self.real[module], name, put_in_function)

    def take_out(self, qualname: str) -> None:
        super().take_out(qualname)
        if qualname in self.originals:
            module, name = qualname.split(".", 1)
            setattr(self.real[module], name, self.originals.pop(qualname))

    def dump_arguments(self, value: Any) -> Any:
        """Arguments the reference passed to a put-in learner function: the recorded call's own objects
        (a model, a schedule, one of their submodules) by where they were, the rest as values."""
        if isinstance(value, torch.Tensor):
            return dump_value(value)
        if id(value) in self.outer:
            return {TAG + "outer": self.outer[id(value)]}
        if isinstance(value, torch.Generator):
            return {TAG + "generator": value.get_state()}
        if type(value) in (tuple, list):
            return type(value)(self.dump_arguments(item) for item in value)
        if type(value) is dict:
            return {TAG + "dict": {str(key): self.dump_arguments(item) for key, item in value.items()}}
        return dump_value(value)

    def attribute(self, owner: Any, name: str) -> Any:
        real_owner = self.real[owner._name] if isinstance(owner, ReferenceModule) else owner._target
        value = getattr(real_owner, name)
        qualname = self.qualname(owner, name)
        entry = {"kind": "attribute"}
        if isinstance(value, type) or callable(value):
            if str(getattr(value, "__module__", "")).startswith("solutions"):
                kind = "class" if isinstance(value, type) else "function"
                entry["value"] = {TAG + "reference": qualname, "kind": kind}
                result = RecordedCallable(self, qualname, value, kind)
            else:
                entry["value"] = dump_value(value)
                result = value
        else:
            entry["value"] = dump_value(value)
            result = value
        self.recording.add(fingerprint(qualname, "attribute"), entry)
        return result

    def call(self, function: RecordedCallable, args: tuple, kwargs: dict) -> Any:
        return self.run(function.__qualname__, function._target, args, kwargs)

    def run(self, qualname: str, target: Callable, args: tuple, kwargs: dict) -> Any:
        """Call ``target`` for real; record the inputs, the result, the effects, and later the gradients."""
        if self.depth:
            return target(*args, **kwargs)
        key = self.key(qualname, args, kwargs)
        before = _rng_state()
        watched = _watch(args, kwargs)
        self.depth += 1
        self.callbacks, self.outer = [], outer_objects((args, kwargs))
        try:
            result = target(*args, **kwargs)
        finally:
            self.depth -= 1
            callbacks, self.callbacks, self.outer = self.callbacks, None, {}
        if isinstance(result, nn.Module) and str(type(result).__module__).startswith("solutions"):
            self.watch_forward(result)
        entry = {"kind": "call", "result": dump_value(result), "effects": _effects(watched), "callbacks": callbacks}
        after = _rng_state()
        if after != before:
            entry["rng"] = before
            entry["rng_after"] = torch.get_rng_state()
        entry = self.recording.add(key, entry)
        return self.record_gradients(entry, result, args, kwargs)

    def watch_forward(self, model: nn.Module) -> None:
        """From now on, calls of ``model`` and of its submodules of the reference's classes are recorded
        (when a check makes them, not when the reference does)."""
        for module in model.modules():
            kind = type(module)
            if not str(kind.__module__).startswith("solutions") or kind in self.classes.values():
                continue
            if kind not in self.classes:
                self.classes[kind] = self.watched_class(kind)
            module.__class__ = self.classes[kind]

    def watched_class(self, kind: type) -> type:
        """A subclass of the reference's ``kind`` whose forward and other public methods are recorded."""
        recorder = self

        def recorded(name: str) -> Callable:
            method = getattr(kind, name)

            def call(self, *args, **kwargs):
                return recorder.run(f"{kind.__qualname__}.{name}", method, (self, *args), kwargs)

            return call

        methods = {name: recorded(name) for name in reference_methods(kind)}
        return type(kind.__name__, (kind,), {**methods, "__module__": kind.__module__,
                                             "__qualname__": kind.__qualname__})

    def record_gradients(self, entry: dict, result: Any, args: tuple, kwargs: dict) -> Any:
        outputs = [t for t in wire.flatten_tensors(result) if isinstance(t, torch.Tensor) and t.requires_grad]
        inputs = gradient_inputs(args, kwargs)
        if not outputs or not inputs or not torch.is_grad_enabled():
            return result

        def note(grads: list, found: list) -> None:
            key = fingerprint(grads)
            if not any(key.structure == g["structure"] and agrees(key.numbers, g["numbers"], g["scales"])
                       for g in entry["gradients"]):
                entry["gradients"].append({"structure": key.structure, "numbers": key.numbers,
                                           "scales": key.scales, "found": [None if f is None else f.detach().clone()
                                                                           for f in found]})

        copies = _RecordGradients.apply(note, outputs, *inputs)
        replaced = iter(copies)
        return _replace_tensors(result, lambda t: next(replaced) if t.requires_grad else t)


class Replay(Tape):
    """Answers every reference call from a :class:`Recording` (``ref`` in a student copy)."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(recording)
        self.stand_ins: dict[str, type] = {}
        self.methods: dict[str, list[str]] = {}  # type name → the methods its stand-ins answer

    def attribute(self, owner: Any, name: str) -> Any:
        qualname = self.qualname(owner, name)
        entry = self.recording.find(fingerprint(qualname, "attribute"), _rng_state())
        if entry is None:  # hasattr() probes land here too
            raise AttributeError(f"the recording has no {qualname}")
        value = entry["value"]
        if type(value) is dict and TAG + "reference" in value:
            return RecordedCallable(self, qualname, None, value["kind"])
        return self.load(value)

    def call(self, function: RecordedCallable, args: tuple, kwargs: dict) -> Any:
        return self.run(function.__qualname__, args, kwargs)

    def run(self, qualname: str, args: tuple, kwargs: dict) -> Any:
        key = self.key(qualname, args, kwargs)
        before = _rng_state()
        entry = self.recording.find(key, before)
        if entry is None:
            unrecorded(f"the reference's `{qualname}` on other inputs")
        self.call_back(qualname, entry.get("callbacks", []), (args, kwargs))
        _apply_effects(entry["effects"], _watch(args, kwargs), self)
        if "rng_after" in entry and entry.get("rng") == before:
            torch.set_rng_state(entry["rng_after"])  # as it was after the recorded call
        result = self.load(entry["result"])
        inputs = gradient_inputs(args, kwargs)
        outputs = [t for t in wire.flatten_tensors(result) if getattr(t, "_recorded_grad", False)]
        if not outputs or not inputs or not torch.is_grad_enabled():
            return result

        def answer(grads: list) -> list:
            wanted = fingerprint(grads)
            for recorded in entry["gradients"]:
                if recorded["structure"] == wanted.structure and agrees(wanted.numbers, recorded["numbers"],
                                                                        recorded["scales"]):
                    return [None if f is None else f.to(i.dtype) for f, i in zip(recorded["found"], inputs)]
            unrecorded(f"the gradient of the reference's `{qualname}` for another incoming gradient")
            return []

        copies = _ReplayGradients.apply(answer, outputs, *inputs)
        replaced = iter(copies)
        return _replace_tensors(result, lambda t: next(replaced) if getattr(t, "_recorded_grad", False) else t)

    def call_back(self, qualname: str, callbacks: list, outer: Any) -> None:
        """Call the learner functions put into the reference as the reference did when it was recorded,
        with the same inputs, and fail the check at the first answer that differs from the recorded one
        (the reference's own function, or the learner's when it was right)."""
        from .checker import check_close, fail

        paths = outer_paths(outer)
        for number, callback in enumerate(callbacks, start=1):
            name = callback["name"].split(".", 1)[1]
            args, kwargs = self.load_arguments(callback["arguments"], paths)
            got = self.injected[callback["name"]](*args, **kwargs)
            expected = self.load(callback["result"])
            where = f"at its call {number} inside the reference's `{qualname}`"
            section = CURRENT_CHECK.get("section", "?")
            if isinstance(expected, torch.Tensor):
                check_close(got, expected, function=name, section=section, what=f"its result {where}")
                continue
            got_tensors, expected_tensors = wire.flatten_tensors(got), wire.flatten_tensors(expected)
            if len(got_tensors) != len(expected_tensors):
                fail(f"`{name}` returned {len(got_tensors)} tensors {where}; the reference returns "
                     f"{len(expected_tensors)}. See IMPLEMENTATION_GUIDE.md §{section}.")
            for index, (mine, theirs) in enumerate(zip(got_tensors, expected_tensors)):
                check_close(mine, theirs, function=name, section=section, what=f"its output {index} {where}")

    def load_arguments(self, value: Any, paths: dict) -> Any:
        if type(value) in (tuple, list):
            return type(value)(self.load_arguments(item, paths) for item in value)
        if type(value) is dict and len(value) == 1:
            (tag, inner), = value.items()
            if tag == TAG + "outer":
                return paths[inner]
            if tag == TAG + "generator":
                return torch.Generator().set_state(inner)
            if tag == TAG + "dict":
                return {key: self.load_arguments(item, paths) for key, item in inner.items()}
        return self.load(value)

    def load(self, value: Any) -> Any:
        """A recorded result back as objects: tensors, schedules, stand-in models, provided objects."""
        kind = type(value)
        if kind in (tuple, list):
            return kind(self.load(item) for item in value)
        if kind is torch.Tensor:
            return value.clone()  # the check may change it; the recording stays as it was
        if kind is not dict:
            return value
        (tag, inner), = value.items()
        if tag == TAG + "grad":
            tensor = inner.clone()
            tensor._recorded_grad = True
            return tensor
        if tag == TAG + "set":
            return {self.load(item) for item in inner}
        if tag == TAG + "dict":
            return {key: self.load(item) for key, item in inner.items()}
        if tag == TAG + "schedule":
            return wire.Schedule.from_data(inner)
        if tag == TAG + "model":
            return self.load_module(inner)
        if tag == TAG + "reference":
            return RecordedCallable(self, inner, None, "function")
        if tag == TAG + "import":
            return _allowed_import(inner)
        if tag == TAG + "object":
            instance = object.__new__(_allowed_import(inner["import"]))
            instance.__dict__.update(self.load(inner["vars"]))
            return instance
        raise ValueError(f"a malformed recording (tag {tag!r})")

    def load_module(self, data: dict) -> nn.Module:
        """A stand-in with the recorded parameters, buffers and settings.

        Its forward, and that of each submodule of the reference's own classes, is
        answered by the recording; torch's own layers inside it are real ones
        (with their recorded settings), so a check may call them directly.
        """
        self.methods.update(data.get("methods", {}))
        model = self.stand_in_class(data["type"])()
        containers: dict[str, nn.Module] = {"": model}
        for name, kind, settings in data["submodules"]:
            parent, _, child = name.rpartition(".")
            if kind.startswith("torch.nn:"):
                cls = getattr(nn, kind.split(":", 1)[1])
                container = cls.__new__(cls)
                nn.Module.__init__(container)
            else:
                container = self.stand_in_class(kind)()
            for key, value in settings.items():
                setattr(container, key, self.load(value))
            containers[parent].add_module(child, container)
            containers[name] = container
        for name, value, trainable in data["parameters"]:
            parent, _, leaf = name.rpartition(".")
            containers[parent].register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=trainable))
        for name in data.get("absent_parameters", ()):
            parent, _, leaf = name.rpartition(".")
            containers[parent].register_parameter(leaf, None)
        for name, value in data["buffers"]:
            parent, _, leaf = name.rpartition(".")
            containers[parent].register_buffer(leaf, value.clone())
        for key, value in data["attributes"].items():
            setattr(model, key, self.load(value))
        model.train(data["training"])
        return model

    def stand_in_class(self, type_name: str) -> type:
        """An ``nn.Module`` class named like the reference's, whose forward the recording answers."""
        if type_name not in self.stand_ins:
            replay = self

            def replayed(name: str) -> Callable:
                def call(self, *args, **kwargs):
                    return replay.run(f"{type_name}.{name}", (self, *args), kwargs)

                return call

            methods = {name: replayed(name) for name in self.methods.get(type_name, ["forward"])}
            self.stand_ins[type_name] = type(type_name, (nn.Module,), {
                **methods, "_recorded_type": type_name, "__module__": "grading.recording"})
        return self.stand_ins[type_name]


# ---------------------------------------------------------------------------
# Effects of a call on its arguments
# ---------------------------------------------------------------------------


def outer_paths(value: Any, path: str = "") -> dict[str, Any]:
    """The objects among a call's arguments (models and their submodules, schedules, functions), by path."""
    found: dict[str, Any] = {}
    if isinstance(value, torch.Tensor) or value is None or type(value) in (bool, int, float, str):
        return found
    if type(value) in (tuple, list):
        for index, item in enumerate(value):
            found.update(outer_paths(item, f"{path}/{index}"))
    elif type(value) is dict:
        for key, item in value.items():
            found.update(outer_paths(item, f"{path}/{key}"))
    elif isinstance(value, nn.Module):
        for name, module in value.named_modules():
            found[f"{path}:{name}"] = module
    else:
        found[path] = value
    return found


def outer_objects(value: Any) -> dict[int, str]:
    return {id(item): path for path, item in outer_paths(value).items()}


def _watch(args: tuple, kwargs: dict) -> list[tuple[str, Any, Any]]:
    """The arguments a call may change, each with a copy of its state before: (path, object, state)."""
    watched = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, torch.Generator):
            watched.append((path, value, value.get_state()))
        elif isinstance(value, nn.Module):
            watched.append((path, value, _module_state(value)))
        elif isinstance(value, torch.Tensor):
            watched.append((path, value, value.detach().clone()))
        elif isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                walk(item, f"{path}.{index}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif hasattr(value, "__dict__") and not callable(value) and not is_schedule(value):
            watched.append((path, value, dump_value(dict(vars(value)))))

    walk(args, "args")
    walk(kwargs, "kwargs")
    return watched


def _module_state(model: nn.Module) -> dict:
    """Weights, gradients, and the public attributes a check's own model keeps (a spy's list of calls)."""
    attributes = {}
    for name, value in vars(model).items():
        if not name.startswith("_") and name != "training" and not isinstance(value, nn.Module):
            try:
                attributes[name] = dump_value(value)
            except TypeError:
                continue
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "grads": {k: None if p.grad is None else p.grad.detach().clone() for k, p in model.named_parameters()},
            "attributes": wire.dumps(attributes), "plain": attributes}


def _effects(watched: list) -> dict:
    """What the call changed in its arguments, by path (only what changed)."""
    effects = {}
    for path, value, before in watched:
        if isinstance(value, torch.Generator):
            after = value.get_state()
            if not torch.equal(after, before):
                effects[path] = after
        elif isinstance(value, nn.Module):
            after = _module_state(value)
            changed = {kind: {k: v for k, v in after[kind].items() if not _same(v, before[kind].get(k))}
                       for kind in ("state", "grads")}
            if changed["state"] or changed["grads"] or after["attributes"] != before["attributes"]:
                effects[path] = {kind: {k: (v if v is not None else "none") for k, v in items.items()}
                                 for kind, items in changed.items()}
                if after["attributes"] != before["attributes"]:
                    effects[path]["attributes"] = after["plain"]
        elif isinstance(value, torch.Tensor):
            if not _same(value.detach(), before):
                effects[path] = value.detach().clone()
        else:
            after = dump_value(dict(vars(value)))
            if wire.dumps(after) != wire.dumps(before):
                effects[path] = {TAG + "vars": after}
    return effects


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


@torch.no_grad()
def _apply_effects(effects: dict, watched: list, replay: Replay) -> None:
    for path, value, _ in watched:
        if path not in effects:
            continue
        effect = effects[path]
        if isinstance(value, torch.Generator):
            value.set_state(effect)
        elif isinstance(value, nn.Module):
            own = value.state_dict(keep_vars=True)
            for name, tensor in effect["state"].items():
                own[name].data = tensor.to(own[name].dtype).clone()
            parameters = dict(value.named_parameters())
            for name, grad in effect["grads"].items():
                parameters[name].grad = None if isinstance(grad, str) else grad.clone()
            for name, attribute in effect.get("attributes", {}).items():
                setattr(value, name, replay.load(attribute))
        elif isinstance(value, torch.Tensor):
            value.copy_(effect)
        else:
            value.__dict__.update(replay.load(effect[TAG + "vars"]))


def _replace_tensors(value: Any, replace: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with each tensor (in :func:`grading.wire.flatten_tensors` order) passed through ``replace``."""
    if isinstance(value, torch.Tensor):
        return replace(value)
    if type(value) in (tuple, list):
        return type(value)(_replace_tensors(item, replace) for item in value)
    if type(value) is dict:
        return {key: _replace_tensors(item, replace) for key, item in value.items()}
    return value
