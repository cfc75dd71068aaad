"""Registration of every op as a ``torch.library`` custom op, with autograd and fake kernels.

An op is declared once as an :class:`OpSpec`: the names of its tensor inputs and outputs, a
function giving the outputs' shapes (the fake kernel) and its backends. The spec registers

* ``nested_kernels::<name>(Tensor[] inputs, str config) -> Tensor[]`` — the forward;
* ``nested_kernels::<name>_backward(Tensor[] inputs, Tensor[] outputs, Tensor?[] grads,
  str config) -> Tensor[]`` — the gradients of all inputs, from the backend's own backward or,
  for pure-PyTorch backends, from autograd through its forward (recomputed);

``config`` is a JSON object with the non-tensor arguments, including the chosen ``backend`` and,
under ``"absent"``, the names of the optional inputs that were not given: those travel as empty
placeholders, because autograd ignores a ``Tensor?[]`` list that holds a None (torch 2.13), and
under ``"knobs"`` the ``NESTED_KERNELS_*`` variables set at the call, which the registered op's
forward, fake forward and backward read instead of the environment (``core.env.frozen_knobs``):
the string keys torch.compile's caches, so a graph is never reused under other knobs.
A :class:`StepSpec` registers ``nested_kernels::<name>(Tensor[] inputs, Tensor(a!)[] state,
str config) -> Tensor``, a decode step that updates its state tensors in place.
Tensors the ops return never alias their inputs.

Host overhead: an eager call (:func:`_eager`: no torch.compile, no fake / functional / proxy
mode, no functorch transform, no tensor subclass, no profiler to name the op) bypasses the
dispatcher. When autograd records nothing it runs the backend's forward directly, with the config
dict it would have received through the dispatcher, under the same autograd exclusion and with the
same version-counter bumps of a step's state; when autograd records it (inputs that need
gradients), :class:`_EagerAutograd` runs the same forward and the same backward (the backend's, or
autograd through the recomputed forward) with the same saved tensors — the registered op's
Python layers (argument packing, pytree, schema checks, two dispatches) cost ~0.35 ms of host time
per forward + backward call, more than a short call's kernels. Every other call goes through the
registered op. The config JSON is written once per distinct option set and parsed once per
distinct string.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch.autograd.function import once_differentiable

from .backends import Backend
from .env import frozen_knobs, knob_snapshot

_LIB = "nested_kernels"


def _json(value) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return "{" + ",".join('"' + k + '":' + _json(value[k]) for k in sorted(value)) + "}"


def dumps(cfg: dict) -> str:
    """JSON of a config of plain values, written by hand so that torch.compile can trace it."""
    return _json(cfg)


def _config(cfg: dict, absent: tuple) -> str:
    """``dumps({**cfg, "absent": absent})``, cached per option set outside torch.compile (whose
    tracer must see the plain function)."""
    if torch.compiler.is_compiling():
        return dumps({**cfg, "absent": list(absent)})
    try:
        key = (tuple(cfg.items()), absent)
        return _CONFIGS[key]
    except KeyError:
        config = _CONFIGS[key] = dumps({**cfg, "absent": list(absent)})
        return config
    except TypeError:  # an unhashable option value
        return dumps({**cfg, "absent": list(absent)})


_CONFIGS: dict = {}


@functools.lru_cache(maxsize=1024)
def _parse(config: str) -> tuple[dict, frozenset]:
    """(config dict, names of the absent inputs); shared between calls: backends only read it."""
    cfg = json.loads(config)
    return cfg, frozenset(cfg["absent"])


def _eager(tensors) -> bool:
    """Whether this call may bypass the dispatcher (see the module docstring): eager, no tracing
    mode, plain tensors, no profiler to name the op."""
    if (torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack()
            or torch._C._is_torch_function_mode_enabled() or torch._C._are_functorch_transforms_active()
            or torch.autograd.profiler._is_profiler_enabled):
        return False
    return all(t is None or type(t) is torch.Tensor for t in tensors)


def _records_grad(tensors) -> bool:
    """Whether autograd records a call on ``tensors``."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _named(op_name: str, names: Sequence[str], inputs: Mapping) -> tuple[dict, tuple]:
    """(every input by name, None where absent; names of the absent ones)."""
    named = {n: inputs.get(n) for n in names}
    if len(inputs) > len(named) or not named.keys() >= inputs.keys():
        raise TypeError(f"{op_name}: unknown inputs {sorted(set(inputs) - set(names))}")
    return named, tuple(n for n, t in named.items() if t is None)


def autograd_enabled_guard():
    """Custom-op bodies run with the autograd dispatch keys excluded; re-enable them so a
    pure-PyTorch backward can differentiate the recomputed forward."""
    keys = torch._C.DispatchKey
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for key in ("AutogradOther", "AutogradFunctionality", "ADInplaceOrView", "AutogradNestedTensor"):
        exclude = exclude.remove(getattr(keys, key))
    return torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude)


def source_digest(root: Path) -> str:
    """A digest of the ``*.py`` files under ``root`` (their paths and contents)."""
    h = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# the package's source digest, in every config: torch.compile's caches (on disk, kept across
# upgrades) key on the config string, and a graph traced by another version of the package may
# hold its residual shapes (a changed default, say) — never served to this one
CODE = source_digest(Path(__file__).resolve().parents[1])


def _pack(op_name: str, names: Sequence[str], inputs: Mapping, cfg: dict):
    """(tensor list with placeholders for absent inputs, config JSON naming the absent ones and
    holding the knobs set now and the package's source digest ``CODE``)."""
    named, absent = _named(op_name, names, inputs)
    present = next(t for t in named.values() if t is not None)
    tensors = [present.new_empty(0) if t is None else t for t in named.values()]
    return tensors, _config({**cfg, "knobs": knob_snapshot(), "code": CODE}, absent)


def _under_knobs(method: Callable) -> Callable:
    """``method`` (whose last argument is the config JSON) run with the knobs its config holds."""
    @functools.wraps(method)
    def run(self, *args):
        with frozen_knobs(_parse(args[-1])[0].get("knobs")):
            return method(self, *args)
    return run


def _unpack(names: Sequence[str], tensors, absent) -> dict:
    return {n: None if n in absent else t for n, t in zip(names, tensors)}


def _unaliased(results: Sequence[torch.Tensor], others: Sequence) -> list[torch.Tensor]:
    """Contiguous results sharing no storage with ``others`` or each other (custom ops must not
    return aliases; autograd may hand back an incoming gradient as is)."""
    seen = {t.untyped_storage().data_ptr() for t in others if t is not None and t.numel()}
    out = []
    for t in results:
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        t = t.clone(memory_format=torch.contiguous_format) if ptr in seen else t.contiguous()
        if ptr is not None:
            seen.add(t.untyped_storage().data_ptr())
        out.append(t)
    return out


def _differentiable(t: Optional[torch.Tensor]) -> bool:
    return t is not None and t.is_floating_point()


def autograd_backward(forward: Callable, names: Sequence[str], inputs: Mapping, grads: Sequence,
                      cfg: dict) -> dict:
    """Gradients of every floating-point input by autograd through ``forward`` (recomputed)."""
    with autograd_enabled_guard(), torch.enable_grad():
        leaves = {n: inputs[n].detach().requires_grad_(True) for n in names if _differentiable(inputs[n])}
        outs = forward({n: leaves.get(n, inputs[n]) for n in names}, cfg)
        pairs = [(o, g) for o, g in zip(outs, grads) if o.requires_grad and g is not None]
        if not pairs or not leaves:
            return {n: torch.zeros_like(t) for n, t in leaves.items()}
        got = torch.autograd.grad([o for o, _ in pairs], list(leaves.values()), [g for _, g in pairs],
                                  allow_unused=True)
    return {n: torch.zeros_like(t) if g is None else g for (n, t), g in zip(leaves.items(), got)}


class OpSpec:
    """A differentiable op: ``spec(cfg, **inputs) -> dict`` of outputs (see module docstring).

    fake(inputs: dict, cfg) -> tuple of empty output tensors with the right shapes and dtypes.
    ``residuals``: names of extra outputs, after ``outputs``, that a backend may return for its own
    backward (e.g. per-chunk states it would otherwise recompute); autograd keeps them with the
    outputs, the public function ignores them. A backend without them (``Backend.residuals`` is
    None) gets empty tensors in their place. Residuals are non-differentiable, and autograd hands
    the backward None (not zeros) for outputs without a gradient: no residual-sized zero tensor.
    """

    def __init__(self, name: str, inputs: Sequence[str], outputs: Sequence[str],
                 fake: Callable, backends: Mapping[str, Backend], residuals: Sequence[str] = ()):
        self.name, self.inputs = name, tuple(inputs)
        self.outputs = tuple(outputs) + tuple(residuals)
        self.n_residuals = len(residuals)
        self.backends = dict(backends)
        self._fake_outputs = fake
        qual = f"{_LIB}::{name}"
        self.op = torch.library.custom_op(qual, self._forward, mutates_args=(),
                                          schema="(Tensor[] inputs, str config) -> Tensor[]")
        self.op.register_fake(self._fake)
        self.backward_op = torch.library.custom_op(
            qual + "_backward", self._backward, mutates_args=(),
            schema="(Tensor[] inputs, Tensor[] outputs, Tensor?[] grads, str config) -> Tensor[]")
        self.backward_op.register_fake(self._fake_backward)
        self.op.register_autograd(self._autograd_backward, setup_context=self._setup_context)

    def __call__(self, cfg: dict, **inputs) -> dict:
        if _eager(inputs.values()):
            named, absent = _named(self.name, self.inputs, inputs)
            cfg = {**cfg, "absent": list(absent)}
            if _records_grad(named.values()):
                outs = _EagerAutograd.apply(self, cfg, *named.values())
            else:
                with torch._C._AutoDispatchBelowAutograd():
                    outs = self._run(named, cfg)
        else:
            outs = self.op(*_pack(self.name, self.inputs, inputs, cfg))
        return dict(zip(self.outputs, outs))

    # -- kernels --------------------------------------------------------------------------
    def _run(self, named: dict, cfg: dict) -> list:
        outs = [o.contiguous() for o in self.backends[cfg["backend"]].forward(named, cfg)]
        return outs + [outs[0].new_empty(0) for _ in range(len(self.outputs) - len(outs))]

    @_under_knobs
    def _forward(self, inputs, config):
        cfg, absent = _parse(config)
        return self._run(_unpack(self.inputs, inputs, absent), cfg)

    @_under_knobs
    def _fake(self, inputs, config):
        cfg, absent = _parse(config)
        named = _unpack(self.inputs, inputs, absent)
        outs = list(self._fake_outputs(named, cfg))
        residuals = self.backends[cfg["backend"]].residuals
        outs += list(residuals(named, cfg)) if residuals is not None else []
        return outs + [outs[0].new_empty(0) for _ in range(len(self.outputs) - len(outs))]

    def _gradients(self, named: dict, outputs, grads, cfg: dict) -> list:
        """The backend's gradient of every input (zeros where it gave none, None for the absent and
        the non-floating ones); ``grads``: None for outputs without a gradient."""
        backend = self.backends[cfg["backend"]]
        if backend.backward is not None:
            got = backend.backward(named, dict(zip(self.outputs, outputs)), dict(zip(self.outputs, grads)), cfg)
        else:
            got = autograd_backward(backend.forward, self.inputs, named, grads, cfg)
        return [got[n] if _differentiable(named[n]) and got.get(n) is not None
                else (torch.zeros_like(named[n]) if _differentiable(named[n]) else None)
                for n in self.inputs]

    @_under_knobs
    def _backward(self, inputs, outputs, grads, config):
        cfg, absent = _parse(config)
        result = self._gradients(_unpack(self.inputs, inputs, absent), outputs, grads, cfg)
        return _unaliased([torch.empty(0) if g is None else g for g in result], [*inputs, *outputs, *grads])

    @_under_knobs
    def _fake_backward(self, inputs, outputs, grads, config):
        named = _unpack(self.inputs, inputs, _parse(config)[1])
        return [torch.empty_like(t) if _differentiable(t) else torch.empty(0) for t in named.values()]

    # -- autograd -------------------------------------------------------------------------
    def _setup_context(self, ctx, inputs, output):
        tensors, config = inputs
        ctx.n_in = len(tensors)
        ctx.config = config
        ctx.save_for_backward(*tensors, *output)
        ctx.mark_non_differentiable(*output[len(output) - self.n_residuals:])
        ctx.set_materialize_grads(False)

    def _autograd_backward(self, ctx, grads):
        saved = ctx.saved_tensors
        inputs, outputs = list(saved[:ctx.n_in]), list(saved[ctx.n_in:])
        absent = _parse(ctx.config)[1]
        got = self.backward_op(inputs, outputs, _incoming(grads, outputs), ctx.config)
        return [g if _differentiable(t) and n not in absent else None
                for n, t, g in zip(self.inputs, inputs, got)], None


def _incoming(grads, outputs) -> list:
    """The outputs' gradients as a backward gets them: contiguous, None for outputs without one."""
    return [None if g is None or not o.is_floating_point() else g.contiguous() for g, o in zip(grads, outputs)]


class _EagerAutograd(torch.autograd.Function):
    """A differentiable eager call without the dispatcher (module docstring): the same forward,
    saved tensors and gradients as the registered op and its autograd kernel, less the round trips
    through ``torch.library``'s Python layers. Absent inputs travel as None."""

    @staticmethod
    def forward(ctx, spec: OpSpec, cfg: dict, *tensors):
        outs = spec._run(dict(zip(spec.inputs, tensors)), cfg)
        ctx.spec, ctx.cfg = spec, cfg
        ctx.save_for_backward(*tensors, *outs)
        ctx.mark_non_differentiable(*outs[len(outs) - spec.n_residuals:])
        ctx.set_materialize_grads(False)
        return tuple(outs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        spec, saved = ctx.spec, ctx.saved_tensors
        n = len(spec.inputs)
        named, outputs = dict(zip(spec.inputs, saved[:n])), saved[n:]
        got = spec._gradients(named, outputs, _incoming(grads, outputs), ctx.cfg)
        return (None, None, *(g if need else None for g, need in zip(got, ctx.needs_input_grad[2:])))


class StepSpec:
    """A one-token decode step that updates its state tensors in place and returns the output.

    forward(inputs: dict, state: dict, cfg) -> output tensor (writes into ``state``'s tensors).
    fake(inputs: dict, state: dict, cfg) -> empty output tensor.
    """

    def __init__(self, name: str, inputs: Sequence[str], state: Sequence[str], fake: Callable,
                 backends: Mapping[str, Backend]):
        self.name, self.inputs, self.state = name, tuple(inputs), tuple(state)
        self.backends = dict(backends)
        self._fake_output = fake
        self.op = torch.library.custom_op(f"{_LIB}::{name}", self._forward, mutates_args=("state",),
                                          schema="(Tensor[] inputs, Tensor(a!)[] state, str config) -> Tensor")
        self.op.register_fake(self._fake)

    def __call__(self, cfg: dict, state: Mapping[str, torch.Tensor], **inputs) -> torch.Tensor:
        states = [state[n] for n in self.state]
        if _eager([*states, *inputs.values()]) and not _records_grad([*states, *inputs.values()]):
            named, absent = _named(self.name, self.inputs, inputs)
            with torch._C._AutoDispatchBelowAutograd():
                out = self.backends[cfg["backend"]].forward(named, dict(zip(self.state, states)),
                                                            {**cfg, "absent": list(absent)})
            torch._C._increment_version(states)  # as the op's ADInplaceOrView kernel does
            return out
        tensors, config = _pack(self.name, self.inputs, inputs, cfg)
        return self.op(tensors, states, config)

    @_under_knobs
    def _forward(self, inputs, state, config):
        cfg, absent = _parse(config)
        return self.backends[cfg["backend"]].forward(_unpack(self.inputs, inputs, absent),
                                                     dict(zip(self.state, state)), cfg)

    @_under_knobs
    def _fake(self, inputs, state, config):
        cfg, absent = _parse(config)
        return self._fake_output(_unpack(self.inputs, inputs, absent), dict(zip(self.state, state)), cfg)
