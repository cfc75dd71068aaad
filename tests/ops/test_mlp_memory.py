"""mlp_memory (SPEC §3): reference, chunked torch backend, decode step, streaming, errors (CPU)."""
import itertools

import pytest
import torch

from nested_kernels.core.custom_op import _pack
from nested_kernels.ops.mlp_memory import MLPMemoryState, mlp_memory, mlp_memory_step
from nested_kernels.ops.mlp_memory import api as mlp_api
from nested_kernels.testing import assert_close_rel

H, K, F = 2, 4, 8
GATE_SETS = ("", "a", "ab", "abm", "m")           # α (log_alpha), β, μ
STATE_FIELDS = ("W1", "W2", "S1", "S2", "W1_chunk", "W2_chunk")


def _gates(B, T, dtype, gates, gen):
    r = lambda: torch.rand(B, T, H, dtype=dtype, generator=gen)  # noqa: E731
    log_alpha = torch.log(0.8 + 0.2 * r()) if "a" in gates else None
    beta = 0.4 * r() if "b" in gates else None
    mu = 0.9 * r() if "m" in gates else None
    return log_alpha, beta, mu


def make_case(*, B=2, T=7, V=K, target="external", gates="abm", init=None, dtype=torch.float64,
              N=None, seed=0):
    """Positional args (q, k, v, eta, w1, w2, log_alpha, beta, mu) and the initial state.
    ``init``: None, "tuple" (per-sequence W1, W2 and, with μ, S1, S2)."""
    gen = torch.Generator().manual_seed(seed)
    n = lambda *s: torch.randn(*s, dtype=dtype, generator=gen)  # noqa: E731
    q = n(B, T, H, K)
    k = n(B, T, H, K)
    k = k / k.norm(dim=-1, keepdim=True)
    v = n(B, T, H, K if target == "self" else V)
    eta = 0.5 * torch.rand(B, T, H, dtype=dtype, generator=gen)
    w1, w2 = n(H, V, F) / F ** 0.5, n(H, F, K) / K ** 0.5
    args = [q, k, v, eta, w1, w2, *_gates(B, T, dtype, gates, gen)]
    state = None
    if init == "tuple":
        N = B if N is None else N
        W1 = w1 + 0.1 * n(N, H, V, F)
        W2 = w2 + 0.1 * n(N, H, F, K)
        S1, S2 = (0.05 * n(N, H, V, F), 0.05 * n(N, H, F, K)) if "m" in gates else (None, None)
        state = (W1, W2, S1, S2)
    return args, state


def leaves(args, state):
    """All floating tensors that get gradients, as (name, tensor) pairs, requiring grad."""
    names = ("q", "k", "v", "eta", "w1", "w2", "log_alpha", "beta", "mu")
    out = [(nm, a) for nm, a in zip(names, args) if a is not None]
    if isinstance(state, tuple):
        out += [(nm, s) for nm, s in zip(("W1_0", "W2_0", "S1_0", "S2_0"), state) if s is not None]
    return out


def run(args, state, backend, *, grads=True, **opts):
    """Outputs, final-state tensors and gradients of a fixed random projection of all of them."""
    args = [None if a is None else a.detach().clone().requires_grad_(grads) for a in args]
    if isinstance(state, tuple):
        state = tuple(None if s is None else s.detach().clone().requires_grad_(grads) for s in state)
    opts.setdefault("output_final_state", True)
    o, st = mlp_memory(*args, initial_state=state, backend=backend, **opts)
    outs = {"o": o}
    if st is not None:
        outs.update({f: getattr(st, f) for f in STATE_FIELDS if getattr(st, f) is not None})
        outs["position"] = st.position
    if not grads:
        return outs, {}
    gen = torch.Generator().manual_seed(123)
    loss = sum((t.double() * torch.randn(t.shape, dtype=torch.float64, generator=gen)).sum()
               for name, t in outs.items() if name != "position")
    named = leaves(args, state)
    got = torch.autograd.grad(loss, [t for _, t in named], allow_unused=True)
    return outs, {nm: g for (nm, _), g in zip(named, got)}


def compare(a, b, tol, what=""):
    (oa, ga), (ob, gb) = a, b
    assert oa.keys() == ob.keys(), what
    for name in oa:
        if name == "position":
            assert torch.equal(oa[name], ob[name]), f"{what} position"
        else:
            assert_close_rel(oa[name], ob[name], tol, f"{what} {name}")
    assert ga.keys() == gb.keys(), what
    for name in ga:
        assert ga[name] is not None and gb[name] is not None, f"{what} grad {name} missing"
        assert_close_rel(ga[name], gb[name], tol, f"{what} grad {name}")


def static_mlp(w1, w2, x, activation, residual):
    """M(x) = [x +] W1 φ(W2 x) with torch's own activations; x [B,T,H,K], w [H,*,*]."""
    phi = {"gelu": lambda z: torch.nn.functional.gelu(z), "silu": torch.nn.functional.silu}[activation]
    y = torch.einsum("hvf,bthf->bthv", w1, phi(torch.einsum("hfk,bthk->bthf", w2, x)))
    return y + x if residual else y


# ---------------------------------------------------------------------------- SPEC §3 named cases
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("activation,residual,read", [("gelu", True, "after"), ("silu", False, "before"),
                                                     ("gelu", False, "chunk")])
def test_eta_zero_is_static_read(backend, activation, residual, read):
    (q, k, v, eta, w1, w2, _, _, mu), _ = make_case(gates="m", V=K if residual else 3)
    o, st = mlp_memory(q, k, v, torch.zeros_like(eta), w1, w2, mu=mu, chunk_size=3, read=read,
                       scale=0.7, activation=activation, residual=residual, output_final_state=True,
                       backend=backend)
    assert_close_rel(o, static_mlp(w1, w2, 0.7 * q, activation, residual), 1e-12, "o")
    assert_close_rel(st.W1, w1.expand_as(st.W1), 1e-14, "W1")
    assert_close_rel(st.W2, w2.expand_as(st.W2), 1e-14, "W2")


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("target,activation,residual", [("external", "gelu", True), ("self", "silu", True),
                                                        ("external", "silu", False)])
def test_chunk_longer_than_sequence_is_one_minibatch_gd_step(backend, target, activation, residual):
    T = 9
    (q, k, v, eta, w1, w2, *_), _ = make_case(T=T, target=target, gates="", V=K if residual else 3)
    # closed form: W_L = W_0 − Σ_t η_t ∇_W ½‖M_W(k_t) − target_t‖² at W_0 (target held constant),
    # the gradients taken by autograd, independently of the op's formulas for G1, G2
    W1, W2 = w1.clone().requires_grad_(True), w2.clone().requires_grad_(True)
    tgt = v if target == "external" else static_mlp(w1, w2, v, activation, residual)
    err = static_mlp(W1, W2, k, activation, residual) - tgt.detach()
    loss = (0.5 * eta[..., None] * err ** 2).sum(dim=(1, 3))          # [B, H]: one loss per memory
    for b in range(q.shape[0]):
        G1, G2 = torch.autograd.grad(loss[b].sum(), [W1, W2], retain_graph=True)
        for read in ("after", "chunk"):
            o, st = mlp_memory(q[b:b + 1], k[b:b + 1], v[b:b + 1], eta[b:b + 1], w1, w2, chunk_size=16,
                               target=target, read=read, activation=activation, residual=residual,
                               output_final_state=True, backend=backend)
            assert_close_rel(st.W1[0], w1 - G1, 1e-12, "W1_L")
            assert_close_rel(st.W2[0], w2 - G2, 1e-12, "W2_L")
            if read == "after":   # the last token reads the updated weights
                want = static_mlp(w1 - G1, w2 - G2, q[b:b + 1, -1:], activation, residual)
                assert_close_rel(o[:, -1:], want, 1e-12, "o_L")
            else:                 # read "chunk": the initial weights throughout
                assert_close_rel(o, static_mlp(w1, w2, q[b:b + 1], activation, residual), 1e-12, "o")


# ------------------------------------------------------------------------------------ gradcheck
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("init,target,read,gates,C", [
    (None, "external", "after", "abm", 2), ("tuple", "self", "before", "abm", 3),
    ("tuple", "external", "chunk", "ab", 2)])
def test_gradcheck(backend, init, target, read, gates, C):
    args, state = make_case(B=2, T=5, target=target, gates=gates, init=init, seed=3)
    names = [nm for nm, _ in leaves(args, state)]
    flat = [t.detach().clone().requires_grad_(True) for _, t in leaves(args, state)]

    def fn(*ts):
        d = dict(zip(names, ts))
        a = [d.get(nm) for nm in ("q", "k", "v", "eta", "w1", "w2", "log_alpha", "beta", "mu")]
        st = None if init is None else (d["W1_0"], d["W2_0"], d.get("S1_0"), d.get("S2_0"))
        o, fs = mlp_memory(*a, chunk_size=C, target=target, read=read, activation="gelu",
                           initial_state=st, output_final_state=True, backend=backend)
        extra = (fs.S1, fs.S2) if fs.S1 is not None else ()
        return o, fs.W1, fs.W2, fs.W1_chunk, fs.W2_chunk, *extra

    assert torch.autograd.gradcheck(fn, flat, fast_mode=True)


# ---------------------------------------------------------- torch backend vs reference, option grid
GRID = list(itertools.product(("external", "self"), ("after", "before", "chunk"), GATE_SETS, (1, 2, 3, 16)))


@pytest.mark.parametrize("target,read,gates,C", GRID)
def test_torch_matches_reference_float64(target, read, gates, C):
    i = GRID.index((target, read, gates, C))
    activation, residual = (("gelu", True), ("silu", False), ("silu", True), ("gelu", False))[i % 4]
    V = K if residual or target == "self" and i % 3 else 3        # V != K when nothing forbids it
    init = "tuple" if i % 2 else None
    args, state = make_case(B=2, T=9 if C < 16 else 19, V=V, target=target, gates=gates, init=init,
                            seed=i)
    opts = dict(chunk_size=C, target=target, read=read, activation=activation, residual=residual,
                scale=0.8)
    compare(run(args, state, "torch", **opts), run(args, state, "reference", **opts), 1e-10,
            f"{activation} residual={residual}")


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("target,read,gates,C", [("external", "after", "abm", 3), ("self", "before", "ab", 2),
                                                 ("self", "chunk", "m", 16), ("external", "after", "a", 1)])
def test_float32_matches_float64_reference(backend, target, read, gates, C):
    args, state = make_case(B=2, T=11, target=target, gates=gates, init="tuple", seed=7)
    opts = dict(chunk_size=C, target=target, read=read)
    a32 = [None if a is None else a.float() for a in args]
    s32 = tuple(None if s is None else s.float() for s in state)
    got = run(a32, s32, backend, **opts)
    assert got[0]["o"].dtype == torch.float32 and got[0]["W1"].dtype == torch.float32
    compare(got, run(args, state, "reference", **opts), 1e-5, "float32")


# ------------------------------------------------------------------------------------ streaming
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("split,read,gates", [(4, "after", "abm"), (6, "before", "ab"), (7, "chunk", "m"),
                                              (3, "after", "")])
def test_streaming_two_calls_equal_one(backend, split, read, gates):
    args, state = make_case(B=2, T=13, gates=gates, init="tuple", seed=5)
    opts = dict(chunk_size=3, target="self", read=read, activation="silu", output_final_state=True,
                backend=backend)
    o, st = mlp_memory(*args, initial_state=state, **opts)
    first = [None if a is None or a.dim() != 4 and a.dim() != 3 else a[:, :split] for a in args]
    second = [None if a is None or a.dim() != 4 and a.dim() != 3 else a[:, split:] for a in args]
    first[4:6] = second[4:6] = args[4:6]                              # w1, w2 are not per token
    o1, st1 = mlp_memory(*first, initial_state=state, **opts)
    assert st1.position.tolist() == [split % 3] * 2
    o2, st2 = mlp_memory(*second, initial_state=st1, **opts)
    assert_close_rel(torch.cat([o1, o2], dim=1), o, 1e-12, "o")
    for f in STATE_FIELDS:
        if getattr(st, f) is not None:
            assert_close_rel(getattr(st2, f), getattr(st, f), 1e-12, f)
    assert torch.equal(st2.position, st.position)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_streaming_gradients_equal_one_call(backend):
    """Gradients flow through the state object (W*, S*, W*_chunk) into the first call's inputs."""
    args, state = make_case(B=2, T=8, gates="abm", init="tuple", seed=12)
    opts = dict(chunk_size=3, target="self", read="before", output_final_state=True, backend=backend)
    named = leaves(args, state)
    whole = run(args, state, backend, **{k: v for k, v in opts.items() if k != "backend"})

    def two_calls(*ts):
        d = dict(zip([n for n, _ in named], ts))
        a = [d.get(n) for n in ("q", "k", "v", "eta", "w1", "w2", "log_alpha", "beta", "mu")]
        st0 = (d["W1_0"], d["W2_0"], d["S1_0"], d["S2_0"])
        cut = lambda sl: [x if i in (4, 5) else x[:, sl] for i, x in enumerate(a)]  # noqa: E731
        o1, s1 = mlp_memory(*cut(slice(0, 5)), initial_state=st0, **opts)
        o2, s2 = mlp_memory(*cut(slice(5, None)), initial_state=s1, **opts)
        return torch.cat([o1, o2], dim=1), s2

    ts = [t.detach().clone().requires_grad_(True) for _, t in named]
    o, st = two_calls(*ts)
    outs = {"o": o, **{f: getattr(st, f) for f in STATE_FIELDS}, "position": st.position}
    gen = torch.Generator().manual_seed(123)
    loss = sum((t.double() * torch.randn(t.shape, dtype=torch.float64, generator=gen)).sum()
               for n, t in outs.items() if n != "position")
    grads = dict(zip([n for n, _ in named], torch.autograd.grad(loss, ts)))
    compare((outs, grads), whole, 1e-12, "two calls")


def test_chunks_longer_than_a_tile(monkeypatch):
    """The torch backend cuts chunks longer than MAX_TILE into sub-tiles that share the chunk-start
    weights; shrink MAX_TILE so that tiny shapes exercise it (also resuming mid-chunk)."""
    from nested_kernels.ops.mlp_memory import chunk
    monkeypatch.setattr(chunk, "MAX_TILE", 5)
    args, state = make_case(B=2, T=19, target="self", gates="abm", init="tuple", seed=13)
    opts = dict(chunk_size=16, target="self", read="after")
    compare(run(args, state, "torch", **opts), run(args, state, "reference", **opts), 1e-10, "sub-tiles")
    lens, split = [11, 8], [7, 2]
    (q, k, v, eta, w1, w2, la, beta, mu), _ = make_case(B=1, T=sum(lens), gates="abm", seed=14)
    per_tok = lambda idx: [x[:, idx] for x in (q, k, v, eta, la, beta, mu)]  # noqa: E731
    firsts = torch.cat([torch.arange(split[0]), lens[0] + torch.arange(split[1])])
    rests = torch.cat([torch.arange(split[0], lens[0]), lens[0] + torch.arange(split[1], lens[1])])
    res = {}
    for be in ("torch", "reference"):
        kw = dict(chunk_size=6, output_final_state=True, backend=be)
        qa, ka, va, ea, *g = per_tok(firsts)
        _, s1 = mlp_memory(qa, ka, va, ea, w1, w2, *g, cu_seqlens=torch.tensor([0, split[0], sum(split)]), **kw)
        qb, kb, vb, eb, *g = per_tok(rests)
        rest_cu = torch.tensor([0, lens[0] - split[0], sum(lens) - sum(split)])
        o2, s2 = mlp_memory(qb, kb, vb, eb, w1, w2, *g, cu_seqlens=rest_cu, initial_state=s1, **kw)
        res[be] = (o2, s2)
    assert_close_rel(res["torch"][0], res["reference"][0], 1e-10, "o")
    for f in STATE_FIELDS:
        assert_close_rel(getattr(res["torch"][1], f), getattr(res["reference"][1], f), 1e-10, f)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_streaming_with_different_positions_per_sequence(backend):
    """Packed sequences of different lengths leave different positions; the next call resumes each
    one mid-chunk (the torch backend's aligned-slot batching)."""
    (q, k, v, eta, w1, w2, la, beta, mu), _ = make_case(B=1, T=23, gates="abm", seed=9)
    opts = dict(chunk_size=4, read="before", output_final_state=True, backend=backend)
    lens1, lens2 = [2, 5, 0, 4], [7, 3, 2, 0]
    full = [a + b for a, b in zip(lens1, lens2)]
    # reorganise the packed tokens so that sequence n = its first part then its second part
    parts1, parts2, start = [], [], 0
    for a, b in zip(lens1, lens2):
        parts1.append((start, start + a))
        parts2.append((start + a, start + a + b))
        start += a + b
    idx1 = torch.cat([torch.arange(s, e) for s, e in parts1])
    idx2 = torch.cat([torch.arange(s, e) for s, e in parts2])
    take = lambda x, idx: None if x is None else x[:, idx]  # noqa: E731
    cu = lambda lens: torch.tensor([0] + list(itertools.accumulate(lens)))  # noqa: E731
    per_token = (q, k, v, eta, la, beta, mu)
    o, st = mlp_memory(*per_token[:4], w1, w2, *per_token[4:], cu_seqlens=cu(full), **opts)
    o1, st1 = mlp_memory(*(take(x, idx1) for x in per_token[:4]), w1, w2,
                         *(take(x, idx1) for x in per_token[4:]), cu_seqlens=cu(lens1), **opts)
    assert st1.position.tolist() == [2, 1, 0, 0]
    o2, st2 = mlp_memory(*(take(x, idx2) for x in per_token[:4]), w1, w2,
                         *(take(x, idx2) for x in per_token[4:]), cu_seqlens=cu(lens2), initial_state=st1,
                         **opts)
    both = torch.empty_like(o)
    both[:, idx1], both[:, idx2] = o1, o2
    assert_close_rel(both, o, 1e-12, "o")
    for f in STATE_FIELDS:
        assert_close_rel(getattr(st2, f), getattr(st, f), 1e-12, f)
    assert torch.equal(st2.position, st.position)


@pytest.mark.parametrize("target,read,gates", [("external", "after", "abm"), ("self", "before", "ab"),
                                               ("self", "chunk", "")])
def test_prefix_then_decode_steps_equal_one_call(target, read, gates):
    T, split, C = 10, 3, 4
    args, state = make_case(B=2, T=T, target=target, gates=gates, init="tuple", seed=11)
    opts = dict(target=target, read=read, activation="gelu")
    o, st = mlp_memory(*args, chunk_size=C, initial_state=state, output_final_state=True, **opts)
    pre = [a if a is None or i in (4, 5) else a[:, :split] for i, a in enumerate(args)]
    o_pre, s = mlp_memory(*pre, chunk_size=C, initial_state=state, output_final_state=True, **opts)
    steps = []
    for t in range(split, T):
        tok = [a if a is None or i in (4, 5) else a[:, t] for i, a in enumerate(args)]
        del tok[4:6]
        steps.append(mlp_memory_step(*tok, state=s, **opts))
    assert_close_rel(torch.cat([o_pre, torch.stack(steps, dim=1)], dim=1), o, 1e-12, "o")
    for f in STATE_FIELDS:
        if getattr(st, f) is not None:
            assert_close_rel(getattr(s, f), getattr(st, f), 1e-12, f)
    assert torch.equal(s.position, st.position)


def test_decode_from_weights_equals_call_without_state():
    (q, k, v, eta, w1, w2, la, beta, mu), _ = make_case(B=3, T=5, gates="abm", seed=2)
    o, st = mlp_memory(q, k, v, eta, w1, w2, la, beta, mu, chunk_size=2, output_final_state=True)
    s = MLPMemoryState.from_weights(w1, w2, 3, chunk_size=2, momentum=True, dtype=torch.float64)
    steps = [mlp_memory_step(q[:, t], k[:, t], v[:, t], eta[:, t], la[:, t], beta[:, t], mu[:, t], state=s)
             for t in range(5)]
    assert_close_rel(torch.stack(steps, dim=1), o, 1e-12, "o")
    assert_close_rel(s.W2, st.W2, 1e-12, "W2")


# --------------------------------------------------------------------------- varlen, empty, dtypes
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("init", [None, "tuple"])
def test_cu_seqlens_equals_separate_calls(backend, init):
    lens = [5, 0, 3, 8]
    (q, k, v, eta, w1, w2, la, beta, mu), state = make_case(B=1, T=sum(lens), gates="abm", init=init,
                                                            N=len(lens), seed=4)
    cu = torch.tensor([0] + list(itertools.accumulate(lens)), dtype=torch.int32)
    opts = dict(chunk_size=3, target="self", read="after", output_final_state=True, backend=backend)
    o, st = mlp_memory(q, k, v, eta, w1, w2, la, beta, mu, initial_state=state, cu_seqlens=cu, **opts)
    for n, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        sl = lambda x: x[:, s:e]  # noqa: E731
        st_n = None if state is None else tuple(x[n:n + 1] for x in state)
        o_n, f_n = mlp_memory(sl(q), sl(k), sl(v), sl(eta), w1, w2, sl(la), sl(beta), sl(mu),
                              initial_state=st_n, **opts)
        assert_close_rel(o[:, s:e], o_n, 1e-12, f"o[{n}]")
        for f in STATE_FIELDS:
            assert_close_rel(getattr(st, f)[n:n + 1], getattr(f_n, f), 1e-12, f"{f}[{n}]")
        assert st.position[n] == f_n.position[0] == lens[n] % 3


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_empty_sequence(backend):
    args, state = make_case(B=2, T=0, gates="abm", init="tuple")
    o, st = mlp_memory(*args, initial_state=state, chunk_size=4, output_final_state=True, backend=backend)
    assert o.shape == (2, 0, H, K)
    for f, s0 in zip(("W1", "W2", "S1", "S2"), state):
        assert torch.equal(getattr(st, f), s0)
        assert getattr(st, f).data_ptr() != s0.data_ptr()
    assert torch.equal(st.W1_chunk, state[0]) and st.position.tolist() == [0, 0]
    # and resuming a mid-chunk state with no tokens keeps it as it is
    args1, _ = make_case(B=2, T=3, gates="abm")
    _, st1 = mlp_memory(*args1, chunk_size=4, output_final_state=True, backend=backend)
    _, st2 = mlp_memory(*args, initial_state=st1, chunk_size=4, output_final_state=True, backend=backend)
    for f in STATE_FIELDS:
        assert torch.equal(getattr(st2, f), getattr(st1, f))
    assert st2.position.tolist() == [3, 3]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_2e2(dtype):
    args, _ = make_case(B=2, T=9, gates="abm", seed=6)
    low = [None if a is None else a.to(dtype) for a in args]
    ref_args = [None if a is None else a.double() for a in low]            # same (rounded) values
    opts = dict(chunk_size=3, target="self", read="after")
    got = run(low, None, "torch", **opts)
    assert got[0]["o"].dtype == dtype and got[0]["W1"].dtype == torch.float32
    assert all(g.dtype == dtype for g in got[1].values())
    compare(got, run(ref_args, None, "reference", **opts), 2e-2, str(dtype))


def test_noncontiguous_inputs():
    args, _ = make_case(B=2, T=6, gates="abm", seed=8)
    nc = [None if a is None else a.transpose(0, -1).contiguous().transpose(0, -1) for a in args]
    assert not nc[0].is_contiguous()
    o, _ = mlp_memory(*nc, chunk_size=2)
    assert_close_rel(o, mlp_memory(*args, chunk_size=2)[0], 1e-14, "o")


# ------------------------------------------------------------------------------ errors (SPEC §8)
def _ok():
    (q, k, v, eta, w1, w2, la, beta, mu), _ = make_case(B=1, T=4, gates="abm", dtype=torch.float32)
    return dict(q=q, k=k, v=v, eta=eta, w1=w1, w2=w2, log_alpha=la, beta=beta, mu=mu)


def _call(**change):
    kw = _ok()
    opts = {n: change.pop(n) for n in list(change) if n not in kw}
    kw.update(change)
    return mlp_memory(**kw, **opts)


ERRORS = {
    "q_rank": (dict(q=torch.randn(4, H, K)), "q"),
    "k_shape": (dict(k=torch.randn(1, 4, H, K + 1)), "k"),
    "v_shape": (dict(v=torch.randn(1, 4, H, K + 1)), "v"),
    "self_v_shape": (dict(v=torch.randn(1, 4, H, 3), w1=torch.randn(H, 3, F), target="self", residual=False),
                     "v"),
    "eta_shape": (dict(eta=torch.rand(1, 4)), "eta"),
    "gate_shape": (dict(log_alpha=torch.zeros(1, 3, H)), "log_alpha"),
    "w1_shape": (dict(w1=torch.randn(H, K, F + 1)), "w1"),
    "w2_shape": (dict(w2=torch.randn(H, F, K + 1)), "w2"),
    "w2_heads": (dict(w2=torch.randn(H + 1, F, K)), "w2"),
    "dtype": (dict(q=torch.randn(1, 4, H, K).to(torch.int32)), "q"),
    "gate_dtype": (dict(mu=torch.zeros(1, 4, H, dtype=torch.int64)), "mu"),
    "device": (dict(k=torch.randn(1, 4, H, K, device="meta")), "k"),
    "residual_square": (dict(v=torch.randn(1, 4, H, 3), w1=torch.randn(H, 3, F)), "residual"),
    "chunk_negative": (dict(chunk_size=-2), "chunk_size"),
    "chunk_zero": (dict(chunk_size=0), "chunk_size"),
    "target": (dict(target="inner"), "target"),
    "read": (dict(read="later"), "read"),
    "activation": (dict(activation="relu"), "activation"),
    "residual_type": (dict(residual="yes"), "residual"),
    "scale": (dict(scale="big"), "scale"),
    "backend": (dict(backend="magic"), "backend"),
    "precision": (dict(precision="fp64"), "precision"),
    "cu_dtype": (dict(cu_seqlens=torch.tensor([0.0, 4.0])), "cu_seqlens"),
    "cu_start": (dict(cu_seqlens=torch.tensor([1, 4])), "cu_seqlens"),
    "cu_decreasing": (dict(cu_seqlens=torch.tensor([0, 3, 2, 4])), "cu_seqlens"),
    "cu_end": (dict(cu_seqlens=torch.tensor([0, 3])), "cu_seqlens"),
    "cu_batch": (dict(q=torch.randn(2, 4, H, K), k=torch.randn(2, 4, H, K), v=torch.randn(2, 4, H, K),
                      eta=torch.rand(2, 4, H), log_alpha=None, beta=None, mu=None,
                      cu_seqlens=torch.tensor([0, 4])), "cu_seqlens"),
    "state_type": (dict(initial_state=torch.zeros(1)), "initial_state"),
    "state_W1": (dict(initial_state=(torch.zeros(1, H, K, F + 1), torch.zeros(1, H, F, K))), "initial_state.W1"),
    "state_W2": (dict(initial_state=(torch.zeros(1, H, K, F), torch.zeros(2, H, F, K))), "initial_state.W2"),
    "state_S_half": (dict(initial_state=(torch.zeros(1, H, K, F), torch.zeros(1, H, F, K),
                                         torch.zeros(1, H, K, F), None)), "S2"),
    "state_S_without_mu": (dict(mu=None, initial_state=(torch.zeros(1, H, K, F), torch.zeros(1, H, F, K),
                                                        torch.zeros(1, H, K, F), torch.zeros(1, H, F, K))),
                           "mu"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors(case):
    change, name = ERRORS[case]
    with pytest.raises(ValueError, match=name):
        _call(**change)


def test_error_state_chunk_size_mismatch():
    _, st = _call(chunk_size=4, output_final_state=True)
    with pytest.raises(ValueError, match="chunk_size"):
        _call(chunk_size=2, initial_state=st)


def test_step_errors():
    kw = _ok()
    s = MLPMemoryState.from_weights(kw["w1"], kw["w2"], 1, chunk_size=2)
    tok = dict(q=kw["q"][:, 0], k=kw["k"][:, 0], v=kw["v"][:, 0], eta=kw["eta"][:, 0])
    with pytest.raises(ValueError, match="state"):
        mlp_memory_step(**tok, state=(kw["w1"], kw["w2"]))
    with pytest.raises(ValueError, match="q"):
        mlp_memory_step(**{**tok, "q": kw["q"]}, state=s)
    with pytest.raises(ValueError, match="mu"):
        mlp_memory_step(**tok, mu=kw["mu"][:, 0], state=s)
    with pytest.raises(ValueError, match="activation"):
        mlp_memory_step(**tok, state=s, activation="tanh")


# ------------------------------------------------------------------------- custom op machinery
@pytest.mark.parametrize("backend,final", [("torch", True), ("reference", False)])
def test_opcheck(backend, final):
    (q, k, v, eta, w1, w2, la, beta, mu), state = make_case(B=1, T=5, gates="abm", init="tuple",
                                                            dtype=torch.float32)
    inputs = dict(q=q, k=k, v=v, eta=eta, w1=w1, w2=w2, log_alpha=la, beta=beta, mu=mu,
                  w1_0=state[0], w2_0=state[1], s1_0=state[2], s2_0=state[3],
                  cu_seqlens=torch.tensor([0, 2, 5]))
    inputs = {n: t.requires_grad_(t.is_floating_point()) for n, t in inputs.items()}
    inputs["w1_0"], inputs["w2_0"], inputs["s1_0"], inputs["s2_0"] = (
        t.detach().expand(2, *t.shape[1:]).clone().requires_grad_(True) for t in state)
    cfg = dict(chunk_size=2, target="self", read="before", scale=1.0, activation="silu", residual=True,
               output_final_state=final, backend=backend)
    tensors, config = _pack(mlp_api.OP.name, mlp_api.OP.inputs, inputs, cfg)
    torch.library.opcheck(mlp_api.OP.op, (tensors, config))


def test_opcheck_step():
    kw = _ok()
    s = MLPMemoryState.from_weights(kw["w1"], kw["w2"], 1, chunk_size=2, momentum=True)
    inputs = dict(q=kw["q"][:, 0], k=kw["k"][:, 0], v=kw["v"][:, 0], eta=kw["eta"][:, 0], mu=kw["mu"][:, 0])
    cfg = dict(chunk_size=2, target="external", read="after", scale=1.0, activation="gelu", residual=True,
               backend="torch")
    tensors, config = _pack(mlp_api.STEP_OP.name, mlp_api.STEP_OP.inputs, inputs, cfg)
    state = [getattr(s, n) for n in mlp_api.STEP_STATE]
    torch.library.opcheck(mlp_api.STEP_OP.op, (tensors, state, config))


def test_torch_compile_fullgraph_forward_backward():
    (q, k, v, eta, w1, w2, la, beta, mu), _ = make_case(B=2, T=5, gates="abm", dtype=torch.float32)
    leaves_ = [t.requires_grad_(True) for t in (q, k, w1, w2, la)]

    def f(q, k, w1, w2, la):
        o, st = mlp_memory(q, k, v, eta, w1, w2, la, beta, mu, chunk_size=2, output_final_state=True)
        return o.square().sum() + st.W2.sum()

    eager = torch.autograd.grad(f(*leaves_), leaves_)
    compiled = torch.compile(f, fullgraph=True)
    loss = compiled(*leaves_)
    assert_close_rel(loss, f(*leaves_), 1e-6, "loss")
    for g, e in zip(torch.autograd.grad(loss, leaves_), eager):
        assert_close_rel(g, e, 1e-5, "grad")
