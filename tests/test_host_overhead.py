"""The eager fast paths of the custom-op layer (core/custom_op.py): a call that nothing traces runs
the backend directly (through core.custom_op._EagerAutograd when autograd records it); it must
behave like the registered op."""
import pytest
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


def test_profiler_takes_the_registered_op():
    args, state = _step_inputs()
    with torch.profiler.profile() as prof:
        nk.linear_memory_step(*args, state=state, backend="torch")
    assert any(e.name == "nested_kernels::linear_memory_step" for e in prof.events())
    q = torch.rand(1, 3, 1, 4, requires_grad=True)
    with torch.profiler.profile() as prof:
        o, _ = nk.linear_memory(q, torch.rand(1, 3, 1, 4), torch.rand(1, 3, 1, 4), torch.rand(1, 3, 1),
                                chunk_size=2, backend="torch")
        o.sum().backward()
    names = {e.name for e in prof.events()}
    assert {"nested_kernels::linear_memory", "nested_kernels::linear_memory_backward"} <= names


def test_source_digest_keys_the_config(tmp_path):
    """The config string holds the package's source digest, which any edit of a source changes
    (torch.compile's disk caches key on the config: an upgrade never gets an old graph)."""
    from nested_kernels.core.custom_op import CODE, source_digest
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = source_digest(tmp_path)
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != before
    _, config = _pack("op", ("a",), dict(a=torch.ones(1)), dict(chunk_size=3))
    assert f'"code":"{CODE}"' in config


def test_config_cached_per_option_set():
    cfg = dict(chunk_size=3, read="after", scale=0.5)
    a, b = _config(dict(cfg), ("mu",)), _config(dict(cfg), ("mu",))
    assert a is b and a == '{"absent":["mu"],"chunk_size":3,"read":"after","scale":0.5}'
    assert _config(dict(cfg), ()) != a


def _lm_case(T=7, final=True):
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    B, H, K = 2, 2, 4
    args = [r(B, T, H, K), r(B, T, H, K), r(B, T, H, K), 0.3 * r(B, T, H), -0.1 * r(B, T, H),
            0.5 * r(B, T, H), r(B, T, H)]
    m0 = (r(B, H, K, K), r(B, H, K, K))
    return args, m0


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_eager_autograd_equals_registered_op(backend):
    """A differentiable eager call (core.custom_op._EagerAutograd) gives the registered op's outputs
    and gradients, bit for bit, for every input including the initial states."""
    args, (m0, s0) = _lm_case()
    leaves = [t.clone().requires_grad_() for t in (*args, m0, s0)]
    kw = dict(chunk_size=3, read="before", output_final_state=True, backend=backend)
    o, st = nk.linear_memory(*leaves[:7], initial_state=(leaves[7], leaves[8]), **kw)
    assert type(o.grad_fn).__name__ == "_EagerAutogradBackward"
    w = torch.rand_like(o)
    got = torch.autograd.grad((o * w).sum() + st.M.sum() + (st.S ** 2).sum(), leaves)

    twins = [t.detach().clone().requires_grad_() for t in leaves]
    names = ("q", "k", "v", "eta", "log_alpha", "beta", "mu", "m0", "s0")
    cfg = dict(chunk_size=3, target="external", read="before", scale=1.0, output_final_state=True,
               backend=backend)
    tensors, config = _pack(api.OP.name, api.OP.inputs, dict(zip(names, twins)), cfg)
    outs = dict(zip(api.OP.outputs, api.OP.op(tensors, config)))
    assert "nested_kernels_linear_memory" in outs["o"].grad_fn.name()
    want = torch.autograd.grad((outs["o"] * w).sum() + outs["M"].sum() + (outs["S"] ** 2).sum(), twins)
    torch.testing.assert_close(o, outs["o"], rtol=0, atol=0)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_eager_autograd_refuses_double_backward():
    """The kernels' backward is not differentiable: a second-order gradient must raise, not come
    out silently wrong."""
    args, _ = _lm_case(final=False)
    q = args[0].clone().requires_grad_()
    o, _ = nk.linear_memory(q, *args[1:4], chunk_size=3, backend="torch")
    (g,) = torch.autograd.grad(o.sum(), q, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_eager_autograd_only_the_needed_gradients():
    """Inputs that do not require a gradient get none; absent optional inputs are not in the graph."""
    args, _ = _lm_case()
    k = args[1].clone().requires_grad_()
    o, _ = nk.linear_memory(args[0], k, *args[2:4], chunk_size=3, backend="torch")
    o.sum().backward()
    assert k.grad is not None and torch.isfinite(k.grad).all() and args[0].grad is None
