"""The eager fast path of the custom-op layer (core/custom_op.py): a call that nothing traces or
differentiates runs the backend directly; it must behave like the registered op."""
import torch

import nested_kernels as nk
from nested_kernels.core.custom_op import _config, _pack
from nested_kernels.ops.linear_memory import api


def _step_inputs(N=2, H=2, K=4, mu=True):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    state = nk.LinearMemoryState(r(N, H, K, K), r(N, H, K, K) if mu else None, r(N, H, K, K),
                                 torch.tensor([0, 2] * (N // 2)), 3)
    return (r(N, H, K), r(N, H, K), r(N, H, K), 0.1 * r(N, H), None, None, r(N, H) if mu else None), state


def test_direct_step_equals_op_and_bumps_versions():
    args, state = _step_inputs()
    twin = state.clone()
    versions = [t._version for t in state.tensors().values()]
    o = nk.linear_memory_step(*args, state=state, read="before", backend="torch")
    assert all(t._version > v for t, v in zip(state.tensors().values(), versions))
    q, k, v, eta, _, _, mu = args
    cfg = dict(chunk_size=3, target="external", read="before", scale=1.0, backend="torch")
    tensors, config = _pack(api.STEP_OP.name, api.STEP_OP.inputs, dict(q=q, k=k, v=v, eta=eta, mu=mu), cfg)
    o_op = api.STEP_OP.op(tensors, [getattr(twin, n) for n in api.STEP_STATE], config)
    torch.testing.assert_close(o, o_op, rtol=0, atol=0)
    for a, b in zip(state.tensors().values(), twin.tensors().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_profiler_and_grad_take_the_registered_op():
    args, state = _step_inputs()
    with torch.profiler.profile() as prof:
        nk.linear_memory_step(*args, state=state, backend="torch")
    assert any(e.name == "nested_kernels::linear_memory_step" for e in prof.events())
    q = torch.rand(1, 3, 1, 4, requires_grad=True)
    o, _ = nk.linear_memory(q, torch.rand(1, 3, 1, 4), torch.rand(1, 3, 1, 4), torch.rand(1, 3, 1),
                            chunk_size=2, backend="torch")
    o.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_config_cached_per_option_set():
    cfg = dict(chunk_size=3, read="after", scale=0.5)
    a, b = _config(dict(cfg), ("mu",)), _config(dict(cfg), ("mu",))
    assert a is b and a == '{"absent":["mu"],"chunk_size":3,"read":"after","scale":0.5}'
    assert _config(dict(cfg), ()) != a
