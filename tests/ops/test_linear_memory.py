"""Tests of ``linear_memory`` (SPEC §2, §6–§8): the token-loop reference against formulas written
independently here, the chunked ``torch`` backend against the reference (outputs, final states and
every gradient), streaming, packed sequences, dtypes, argument errors and the torch.library
machinery (opcheck, torch.compile).
"""
from __future__ import annotations

import itertools
import re

import pytest
import torch
import torch.nn.functional as F

from nested_kernels import LinearMemoryState, linear_memory, linear_memory_step
from nested_kernels.core.backends import select_backend
from nested_kernels.core.custom_op import _pack
from nested_kernels.ops.linear_memory import api, chunk
from nested_kernels.testing import assert_close_rel, tolerance

BACKENDS = ("reference", "torch")
GATES = {"none": "", "alpha": "a", "alpha_beta": "ab", "all": "abm", "mu": "m"}
GATE_NAMES = ("log_alpha", "beta", "mu")
F64 = torch.float64


# -- inputs -----------------------------------------------------------------------------------

def make_inputs(B=2, T=7, H=2, K=4, V=4, *, gates="abm", state=True, seed=0, mu_zeros=False):
    """Realistic float64 inputs (SPEC §7): ‖k‖ = 1, η ∈ [0, 1], α ∈ [0.5, 1], β ≤ α, μ ∈ [0, 0.9).

    Returns (x, init): x holds q, k, v, eta and the gates (None when not in ``gates``); init is
    (M0, S0) [B, H, K, V] (S0 None without momentum) or None."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    ru = lambda *s: torch.rand(*s, generator=g, dtype=F64)  # noqa: E731
    alpha = 0.5 + 0.5 * ru(B, T, H)
    mu = 0.9 * ru(B, T, H)
    if mu_zeros:
        mu[..., ::3, :] = 0.0
    x = dict(q=rn(B, T, H, K), k=F.normalize(rn(B, T, H, K), dim=-1), v=rn(B, T, H, V), eta=ru(B, T, H),
             log_alpha=alpha.log() if "a" in gates else None,
             beta=alpha * ru(B, T, H) if "b" in gates else None,
             mu=mu if "m" in gates else None)
    init = None
    if state:
        init = (0.5 * rn(B, H, K, V), 0.5 * rn(B, H, K, V) if "m" in gates else None)
    return x, init


def cast(x, dtype):
    return {n: None if t is None else t.to(dtype) for n, t in x.items()}


def call(backend, x, init=None, **kw):
    kw.setdefault("output_final_state", True)
    return linear_memory(x["q"], x["k"], x["v"], x["eta"], x["log_alpha"], x["beta"], x["mu"],
                         initial_state=init, backend=backend, **kw)


def state_tensors(st):
    return dict(M=st.M, S=st.S, M_chunk=st.M_chunk)


def outputs_and_grads(backend, x, init, **kw):
    """Outputs, final states and the gradients of a fixed random functional of all of them with
    respect to every floating-point input (q, k, v, eta, gates, M0, S0)."""
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in x.items() if t is not None}
    xx = {n: leaves.get(n) for n in x}
    ii = None
    if init is not None:
        leaves["M0"] = init[0].detach().clone().requires_grad_(True)
        if init[1] is not None:
            leaves["S0"] = init[1].detach().clone().requires_grad_(True)
        ii = (leaves["M0"], leaves.get("S0"))
    o, st = call(backend, xx, ii, **kw)
    outs = dict(o=o, **{n: t for n, t in state_tensors(st).items() if t is not None})
    g = torch.Generator().manual_seed(123)
    loss = sum((t.double() * torch.randn(t.shape, generator=g, dtype=F64)).sum() for t in outs.values())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    res = {n: t.detach() for n, t in outs.items()}
    res["position"] = st.position
    res.update({"d_" + n: gr for n, gr in zip(leaves, grads)})
    return res


def assert_all_close(got, ref, tol, what=""):
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    for n in ref:
        if n == "position":
            assert torch.equal(got[n], ref[n]), f"{what} position {got[n]} != {ref[n]}"
        else:
            assert_close_rel(got[n], ref[n], tol, f"{what} {n}")


# -- named special cases against formulas written independently (SPEC §2) ----------------------

def _loop(x, init, fn):
    """Run ``fn(b, h, M, S, t) -> (o_t, M, S)`` over every (b, h) and token; returns o, M_L, S_L."""
    B, T, H, _ = x["q"].shape
    o = torch.zeros(B, T, H, init[0].shape[-1], dtype=F64)
    M_out, S_out = init[0].clone(), torch.zeros_like(init[0])
    for b, h in itertools.product(range(B), range(H)):
        M = init[0][b, h].clone()
        S = torch.zeros_like(M) if init[1] is None else init[1][b, h].clone()
        for t in range(T):
            o[b, t, h], M, S = fn(b, h, M, S, t)
        M_out[b, h], S_out[b, h] = M, S
    return o, M_out, S_out


def _at(x, name, b, t, h):
    return x[name][b, t, h]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("C", [1, 3])
def test_titans_linear_memory(backend, C):
    """beta None: S_t = μ_t S_{t−1} − η_t k_t(M_sᵀk_t − v_t)ᵀ, M_t = α_t M_{t−1} + S_t."""
    x, init = make_inputs(T=7, K=3, V=5, gates="am")
    Ms = {}

    def fn(b, h, M, S, t):
        k, v, q = (x[n][b, t, h] for n in ("k", "v", "q"))
        if t % C == 0:
            Ms[b, h] = M
        grad = torch.outer(k, Ms[b, h].T @ k - v)
        S = _at(x, "mu", b, t, h) * S - _at(x, "eta", b, t, h) * grad
        M = _at(x, "log_alpha", b, t, h).exp() * M + S
        return M.T @ q, M, S

    o_ref, M_ref, S_ref = _loop(x, init, fn)
    o, st = call(backend, x, init, chunk_size=C)
    assert_close_rel(o, o_ref, 1e-12, "o")
    assert_close_rel(st.M, M_ref, 1e-12, "M")
    assert_close_rel(st.S, S_ref, 1e-12, "S")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("C", [1, 4])
def test_hope_dgd(backend, C):
    """beta = eta, target self: M_t = (α_t I − η_t k_t k_tᵀ) M_{t−1} − η_t k_t (k_t − v_t)ᵀ M_s."""
    x, init = make_inputs(T=9, gates="a")
    x["beta"] = x["eta"]
    Ms = {}
    eye = torch.eye(4, dtype=F64)

    def fn(b, h, M, S, t):
        k, v, q = (x[n][b, t, h] for n in ("k", "v", "q"))
        if t % C == 0:
            Ms[b, h] = M
        a, eta = _at(x, "log_alpha", b, t, h).exp(), _at(x, "eta", b, t, h)
        M = (a * eye - eta * torch.outer(k, k)) @ M - eta * torch.outer(k, k - v) @ Ms[b, h]
        return M.T @ q, M, S

    o_ref, M_ref, _ = _loop(x, init, fn)
    o, st = call(backend, x, init, chunk_size=C, target="self")
    assert_close_rel(o, o_ref, 1e-12, "o")
    assert_close_rel(st.M, M_ref, 1e-12, "M")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alpha", [False, True])
def test_delta_rule_with_decay(backend, alpha):
    """chunk_size 1, beta/mu None: M_t = (α_t I − η_t k_t k_tᵀ) M_{t−1} + η_t k_t v_tᵀ."""
    x, init = make_inputs(T=40, K=3, V=5, gates="a" if alpha else "")   # 40 > EXACT_TILE: two tiles

    def fn(b, h, M, S, t):
        k, v, q, eta = (x[n][b, t, h] for n in ("k", "v", "q", "eta"))
        a = _at(x, "log_alpha", b, t, h).exp() if alpha else 1.0
        M = (a * torch.eye(3, dtype=F64) - eta * torch.outer(k, k)) @ M + eta * torch.outer(k, v)
        return M.T @ q, M, S

    o_ref, M_ref, _ = _loop(x, init, fn)
    o, st = call(backend, x, init, chunk_size=1)
    assert_close_rel(o, o_ref, 1e-12, "o")
    assert_close_rel(st.M, M_ref, 1e-12, "M")


@pytest.mark.parametrize("backend", BACKENDS)
def test_momentum_delta_rule(backend):
    """chunk_size 1, beta None, mu: S_t = μ_t S_{t−1} − η_t k_t(M_{t−1}ᵀk_t − v_t)ᵀ; M_t = α_t M_{t−1} + S_t."""
    x, init = make_inputs(T=11, K=3, V=5, gates="am")

    def fn(b, h, M, S, t):
        k, v, q, eta, mu = (x[n][b, t, h] for n in ("k", "v", "q", "eta", "mu"))
        S = mu * S - eta * torch.outer(k, M.T @ k - v)
        M = _at(x, "log_alpha", b, t, h).exp() * M + S
        return M.T @ q, M, S

    o_ref, M_ref, S_ref = _loop(x, init, fn)
    o, st = call(backend, x, init, chunk_size=1)
    assert_close_rel(o, o_ref, 1e-12, "o")
    assert_close_rel(st.M, M_ref, 1e-12, "M")
    assert_close_rel(st.S, S_ref, 1e-12, "S")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("C", [7, 64])
def test_one_minibatch_gd_step(backend, C):
    """Gates None, chunk_size ≥ L: M_L = M_0 − Σ_t η_t k_t (M_0ᵀk_t − v_t)ᵀ; read "after" gives
    o_t = (M_0 − Σ_{j≤t} η_j k_j e_jᵀ)ᵀ q_t, read "chunk" gives M_0ᵀ q_t."""
    x, init = make_inputs(T=7, K=3, V=5, gates="")
    q, k, v, eta = x["q"], x["k"], x["v"], x["eta"]
    M0 = init[0]
    E = torch.einsum("bthk,bhkv->bthv", k, M0) - v
    M_ref = M0 - torch.einsum("bth,bthk,bthv->bhkv", eta, k, E)
    qk = torch.einsum("bthk,bshk->bhts", q, k).tril()
    o_after = torch.einsum("bthk,bhkv->bthv", q, M0) - torch.einsum("bhts,bsh,bshv->bthv", qk, eta, E)
    o, st = call(backend, x, init, chunk_size=C)
    assert_close_rel(st.M, M_ref, 1e-12, "M")
    assert_close_rel(o, o_after, 1e-12, "o after")
    o, _ = call(backend, x, init, chunk_size=C, read="chunk")
    assert_close_rel(o, torch.einsum("bthk,bhkv->bthv", q, M0), 1e-12, "o chunk")


# -- torch backend against the reference -------------------------------------------------------

def _grid_case(target, gates, T, seed=0, B=2, **kw):
    """B × T tokens, H = 2 heads; K = V = 4 for self targets, K = 3, V = 5 for external ones."""
    V = 4 if target == "self" else 5
    return make_inputs(B=B, T=T, H=2, K=4 if target == "self" else 3, V=V, gates=gates, seed=seed, **kw)


# every target × read × gate set at chunk sizes 1, 3, 4; 'before' left out at 2 and 16
GRID = [(t, r, g, c) for t, r, g, c in itertools.product(["external", "self"], ["after", "before", "chunk"],
                                                          list(GATES), [1, 2, 3, 4, 16])
        if not (c in (2, 16) and r == "before")]


@pytest.mark.parametrize("target,read,gates,C", GRID)
def test_torch_matches_reference(target, read, gates, C):
    """float64: outputs, final states and every gradient agree to 1e-10."""
    x, init = _grid_case(target, GATES[gates], T=13)
    kw = dict(chunk_size=C, target=target, read=read, scale=0.7)
    ref = outputs_and_grads("reference", x, init, **kw)
    got = outputs_and_grads("torch", x, init, **kw)
    assert_all_close(got, ref, 1e-10)


@pytest.mark.parametrize("T,C", [(1, 1), (1, 4), (7, 1), (7, 2), (7, 3), (7, 16), (40, 1), (40, 16)])
@pytest.mark.parametrize("target", ["external", "self"])
def test_torch_matches_reference_lengths(target, T, C):
    """Odd lengths, more than one exact tile (T = 40 > EXACT_TILE), no initial state."""
    x, _ = _grid_case(target, "abm", T=T, seed=1)
    kw = dict(chunk_size=C, target=target)
    assert_all_close(outputs_and_grads("torch", x, None, **kw), outputs_and_grads("reference", x, None, **kw), 1e-10)


@pytest.mark.parametrize("target", ["external", "self"])
@pytest.mark.parametrize("C", [1, 16])
def test_torch_sub_tiles(monkeypatch, target, C):
    """Chunks longer than MAX_TILE (sub-tiles sharing the chunk-start memory) and C = 1 tiles of
    4 tokens."""
    monkeypatch.setattr(chunk, "MAX_TILE", 4)
    monkeypatch.setattr(chunk, "EXACT_TILE", 4)
    x, init = _grid_case(target, "abm", T=21)
    for read in ("after", "chunk"):
        kw = dict(chunk_size=C, target=target, read=read)
        assert_all_close(outputs_and_grads("torch", x, init, **kw),
                         outputs_and_grads("reference", x, init, **kw), 1e-10, read)


@pytest.mark.parametrize("C", [1, 4])
def test_mu_exactly_zero(C):
    x, init = _grid_case("external", "abm", T=13, mu_zeros=True)
    ref = outputs_and_grads("reference", x, init, chunk_size=C)
    got = outputs_and_grads("torch", x, init, chunk_size=C)
    assert all(torch.isfinite(t).all() for t in got.values())
    assert_all_close(got, ref, 1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target,C", [("external", 1), ("external", 16), ("self", 1), ("self", 4)])
def test_float32_within_spec(backend, target, C):
    """float32 inputs: ≤ 1e-5 relative error against float64 on the same inputs (SPEC §7);
    states are float32, o has q's dtype."""
    x, init = _grid_case(target, "abm", T=40)
    x32 = cast(x, torch.float32)
    init32 = tuple(t.float() for t in init)
    ref = outputs_and_grads("reference", cast(x32, F64), tuple(t.double() for t in init32), chunk_size=C, target=target)
    got = outputs_and_grads(backend, x32, init32, chunk_size=C, target=target)
    assert got["o"].dtype == torch.float32 and got["M"].dtype == torch.float32
    assert_all_close(got, ref, tolerance(backend, torch.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_spec(backend, dtype):
    """bf16 / fp16 inputs: outputs and gradients within 2e-2 of float64 on the same inputs."""
    x, init = _grid_case("external", "abm", T=40)
    xh = cast(x, dtype)
    kw = dict(chunk_size=4)
    ref = outputs_and_grads("reference", cast(xh, F64), init, **kw)
    got = outputs_and_grads(backend, xh, tuple(t.float() for t in init), **kw)
    assert got["o"].dtype == dtype and got["M"].dtype == torch.float32
    assert_all_close(got, ref, tolerance(backend, dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("C", [1, 16])
def test_forward_sanity_random_inputs(backend, C):
    """Random (never zero) float32 inputs, long sequence: finite, every token's output nonzero."""
    x, init = _grid_case("self", "abm", T=200)
    o, st = call(backend, cast(x, torch.float32), tuple(t.float() for t in init), chunk_size=C,
                 target="self")
    assert torch.isfinite(o).all() and torch.isfinite(st.M).all() and torch.isfinite(st.S).all()
    assert (o.norm(dim=-1) > 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_layout_dtype_and_small_cases(backend):
    """Non-contiguous inputs give the same result; float64 inputs keep float64 states; with
    chunk_size 1 read "chunk" equals read "before"; an empty batch (B = 0) works."""
    x, init = _grid_case("external", "abm", T=9)
    o, st = call(backend, x, init, chunk_size=3)
    assert o.dtype == F64 and st.M.dtype == F64 and st.S.dtype == F64 and st.M_chunk.dtype == F64
    strided = {n: t.transpose(0, 1).contiguous().transpose(0, 1) for n, t in x.items()}
    assert not strided["q"].is_contiguous()
    o2, st2 = call(backend, strided, init, chunk_size=3)
    assert_close_rel(o2, o, 1e-14, "o")
    assert_close_rel(st2.M, st.M, 1e-14, "M")
    o_before, _ = call(backend, x, init, chunk_size=1, read="before")
    o_chunk, _ = call(backend, x, init, chunk_size=1, read="chunk")
    assert_close_rel(o_chunk, o_before, 1e-14, "chunk vs before at C = 1")
    x0, _ = _grid_case("external", "abm", T=5, B=0)
    o, st = call(backend, x0, None, chunk_size=3)
    assert o.shape == (0, 5, 2, 5) and st.M.shape == (0, 2, 3, 5) and st.position.shape == (0,)


# -- gradcheck --------------------------------------------------------------------------------

GRADCHECK_CASES = [
    dict(target="external", read="after", chunk_size=2, gates="abm", state=True),
    dict(target="self", read="before", chunk_size=1, gates="ab", state=True),
    dict(target="external", read="chunk", chunk_size=3, gates="m", state=False),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(len(GRADCHECK_CASES)))
def test_gradcheck(backend, case):
    c = dict(GRADCHECK_CASES[case])
    gates, state = c.pop("gates"), c.pop("state")
    K, V = (3, 3) if c["target"] == "self" else (2, 3)
    x, init = make_inputs(B=1, T=5, H=1, K=K, V=V, gates=gates, state=state)
    names = [n for n, t in x.items() if t is not None]
    tensors = [x[n] for n in names] + ([t for t in init if t is not None] if init else [])

    def f(*ts):
        xx = dict.fromkeys(x)
        xx.update(zip(names, ts))
        rest = ts[len(names):]
        ii = (rest[0], rest[1] if len(rest) > 1 else None) if init else None
        o, st = call(backend, xx, ii, **c)
        return (o, st.M) + ((st.S,) if st.S is not None else ())

    assert torch.autograd.gradcheck(f, [t.clone().requires_grad_(True) for t in tensors])


# -- streaming --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split", [6, 8])            # inside a chunk, at a chunk boundary
@pytest.mark.parametrize("target,read,gates", [("external", "after", "abm"), ("self", "before", "ab"),
                                               ("external", "chunk", "m")])
def test_two_calls_equal_one(backend, target, read, gates, split):
    """Outputs, states and gradients (through the chunk-start copy M_chunk) of two calls equal one."""
    x, init = _grid_case(target, gates, T=13)
    kw = dict(chunk_size=4, target=target, read=read)
    full = outputs_and_grads(backend, x, init, **kw)

    leaves = {n: t.clone().requires_grad_(True) for n, t in x.items() if t is not None}
    xx = {n: leaves.get(n) for n in x}
    first = {n: None if t is None else t[:, :split] for n, t in xx.items()}
    second = {n: None if t is None else t[:, split:] for n, t in xx.items()}
    o1, st1 = call(backend, first, init, **kw)
    assert st1.position.tolist() == [split % 4] * 2
    o2, st2 = call(backend, second, st1, **kw)
    o = torch.cat([o1, o2], dim=1)
    outs = dict(o=o, **{n: t for n, t in state_tensors(st2).items() if t is not None})
    g = torch.Generator().manual_seed(123)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=F64)).sum() for t in outs.values())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    for n in outs:
        assert_close_rel(outs[n], full[n], 1e-12, n)
    assert torch.equal(st2.position, full["position"])
    for n, gr in zip(leaves, grads):
        assert_close_rel(gr, full["d_" + n], 1e-10, "d_" + n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target,read,gates,C", [("external", "after", "abm", 4), ("self", "chunk", "ab", 4),
                                                 ("external", "before", "a", 1)])
def test_prefix_then_decode_steps(backend, target, read, gates, C):
    x, init = _grid_case(target, gates, T=11)
    kw = dict(chunk_size=C, target=target, read=read)
    o_full, st_full = call(backend, x, init, **kw)
    prefix = 5
    o_pre, st = call(backend, {n: None if t is None else t[:, :prefix] for n, t in x.items()}, init, **kw)
    outs = [o_pre]
    for t in range(prefix, 11):
        tok = {n: None if v is None else v[:, t] for n, v in x.items()}
        outs.append(linear_memory_step(tok["q"], tok["k"], tok["v"], tok["eta"], tok["log_alpha"],
                                       tok["beta"], tok["mu"], state=st, target=target, read=read)[:, None])
    assert_close_rel(torch.cat(outs, dim=1), o_full, 1e-12, "o")
    for n, t in state_tensors(st_full).items():
        assert_close_rel(getattr(st, n), t, 1e-12, n)
    assert torch.equal(st.position, st_full.position)


# -- packed sequences, empty inputs -----------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cu", [[0, 5, 5, 12, 15], [0, 4, 8, 13, 17, 18]])
@pytest.mark.parametrize("C", [1, 4])
def test_cu_seqlens_equals_separate_calls(backend, cu, C):
    N, T = len(cu) - 1, cu[-1]
    x, _ = _grid_case("external", "abm", T=T, seed=2, B=1)
    _, init = _grid_case("external", "abm", T=1, seed=3, B=N)     # one initial state per sequence
    o, st = call(backend, x, init, chunk_size=C, cu_seqlens=torch.tensor(cu, dtype=torch.int32))
    for n in range(N):
        a, b = cu[n], cu[n + 1]
        xn = {name: None if t is None else t[:, a:b] for name, t in x.items()}
        on, stn = call(backend, xn, (init[0][n:n + 1], init[1][n:n + 1]), chunk_size=C)
        assert_close_rel(o[:, a:b], on, 1e-12, f"o of sequence {n}")
        for name, t in state_tensors(stn).items():
            assert_close_rel(getattr(st, name)[n:n + 1], t, 1e-12, f"{name} of sequence {n}")
        assert st.position[n].item() == (b - a) % C


@pytest.mark.parametrize("backend", BACKENDS)
def test_streaming_with_different_positions(backend):
    """A varlen call leaves each sequence at its own position in its chunk; a second call (packed,
    then as B rows) continues each exactly as one call on the whole sequence."""
    first, second = [3, 5, 8], [6, 2, 4]
    N, C = 3, 4
    x, init = _grid_case("self", "abm", T=12, seed=4, B=N)
    kw = dict(chunk_size=C, target="self")
    pack = lambda lens, off: {n: torch.cat([t[i:i + 1, off[i]:off[i] + lens[i]] for i in range(N)], dim=1)  # noqa: E731
                              for n, t in x.items()}
    cu1 = torch.tensor([0] + list(itertools.accumulate(first)))
    o1, st1 = call(backend, pack(first, [0] * N), init, cu_seqlens=cu1, **kw)
    assert st1.position.tolist() == [3, 1, 0]
    cu2 = torch.tensor([0] + list(itertools.accumulate(second)))
    o2, st2 = call(backend, pack(second, first), st1, cu_seqlens=cu2, **kw)
    for n in range(N):
        L = first[n] + second[n]
        xn = {name: t[n:n + 1, :L] for name, t in x.items()}
        on, stn = call(backend, xn, (init[0][n:n + 1], init[1][n:n + 1]), **kw)
        assert_close_rel(torch.cat([o1[:, cu1[n]:cu1[n + 1]], o2[:, cu2[n]:cu2[n + 1]]], 1), on, 1e-12, "o")
        for name, t in state_tensors(stn).items():
            assert_close_rel(getattr(st2, name)[n:n + 1], t, 1e-12, name)
    # the same state continued as B = N rows of equal length (rows at different positions)
    o3, st3 = call(backend, {n: t[:, :2] for n, t in x.items()}, st1, **kw)
    for n in range(N):
        xn = {name: torch.cat([t[n:n + 1, :first[n]], t[n:n + 1, :2]], 1) for name, t in x.items()}
        on, stn = call(backend, xn, (init[0][n:n + 1], init[1][n:n + 1]), **kw)
        assert_close_rel(o3[n:n + 1], on[:, first[n]:], 1e-12, "o rows")
        assert_close_rel(st3.M[n:n + 1], stn.M, 1e-12, "M rows")
        assert_close_rel(st3.M_chunk[n:n + 1], stn.M_chunk, 1e-12, "M_chunk rows")


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_input(backend):
    x, init = _grid_case("external", "abm", T=0)
    o, st = call(backend, x, init, chunk_size=4)
    assert o.shape == (2, 0, 2, 5)
    assert torch.equal(st.M, init[0]) and torch.equal(st.S, init[1]) and torch.equal(st.M_chunk, init[0])
    assert st.position.tolist() == [0, 0]
    mid = LinearMemoryState(init[0], init[1], init[0] * 2, torch.tensor([1, 3]), 4)   # resumed mid-chunk
    o, st = call(backend, x, mid, chunk_size=4)
    assert torch.equal(st.M_chunk, mid.M_chunk) and st.position.tolist() == [1, 3]
    assert st.M.data_ptr() != init[0].data_ptr()                                     # no aliasing


# -- argument errors (SPEC §8) ----------------------------------------------------------------

def _error_cases():
    x, _ = make_inputs(B=1, T=6, H=2, K=4, V=4, gates="abm", state=False)
    cases = {
        "q rank": (dict(q=x["q"][0]), {}, "q"),
        "k shape": (dict(k=x["k"][..., :3]), {}, "k"),
        "v rank": (dict(v=x["v"][..., 0]), {}, "v"),
        "eta shape": (dict(eta=x["eta"][:, :5]), {}, "eta"),
        "mu shape": (dict(mu=x["mu"][..., None]), {}, "mu"),
        "device": (dict(k=x["k"].to("meta")), {}, "k"),
        "dtype": (dict(q=x["q"].long()), {}, "q"),
        "gate dtype": (dict(log_alpha=x["log_alpha"].int()), {}, "log_alpha"),
        "cu dtype": ({}, dict(cu_seqlens=torch.tensor([0.0, 6.0])), "cu_seqlens"),
        "cu start": ({}, dict(cu_seqlens=torch.tensor([1, 6])), "cu_seqlens"),
        "cu decreasing": ({}, dict(cu_seqlens=torch.tensor([0, 4, 3, 6])), "cu_seqlens"),
        "cu end": ({}, dict(cu_seqlens=torch.tensor([0, 5])), "cu_seqlens"),
        "cu batch": ({n: torch.cat([t, t]) for n, t in x.items()}, dict(cu_seqlens=torch.tensor([0, 6])),
                     "cu_seqlens"),
        "chunk zero": ({}, dict(chunk_size=0), "chunk_size"),
        "chunk negative": ({}, dict(chunk_size=-4), "chunk_size"),
        "self K != V": (dict(v=x["v"][..., :3]), dict(target="self"), "v"),
        "target": ({}, dict(target="selfish"), "target"),
        "read": ({}, dict(read="later"), "read"),
        "backend": ({}, dict(backend="cudnn"), "backend"),
        "state shape": ({}, dict(initial_state=(torch.zeros(1, 2, 4, 5), None)), "initial_state.M"),
        "state position": ({}, dict(chunk_size=4, initial_state=LinearMemoryState(
            torch.zeros(1, 2, 4, 4), None, torch.zeros(1, 2, 4, 4), torch.tensor([4]), 4)), "initial_state.position"),
        "state chunk_size": ({}, dict(chunk_size=8, initial_state=LinearMemoryState(
            torch.zeros(1, 2, 4, 4), None, torch.zeros(1, 2, 4, 4), torch.tensor([1]), 4)), "initial_state"),
    }
    return x, cases


@pytest.mark.parametrize("case", list(_error_cases()[1]))
def test_argument_errors(case):
    x, cases = _error_cases()
    override, kw, name = cases[case]
    args = {**x, **override}
    kw = dict(kw)
    backend = kw.pop("backend", "torch")
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}\b"):     # the message starts with the name
        linear_memory(args["q"], args["k"], args["v"], args["eta"], args["log_alpha"], args["beta"],
                      args["mu"], backend=backend, **kw)


# -- machinery --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("varlen", [False, True])
def test_opcheck(backend, varlen):
    x, init = make_inputs(B=1, T=6, H=1, K=3, V=2, gates="abm")
    st = LinearMemoryState(init[0], init[1], init[0] * 0.5, torch.tensor([1]), 3)
    inputs = dict(q=x["q"], k=x["k"], v=x["v"], eta=x["eta"], log_alpha=x["log_alpha"], beta=x["beta"],
                  mu=x["mu"], m0=st.M, s0=st.S, m_chunk0=st.M_chunk, position0=st.position,
                  cu_seqlens=None)
    if varlen:
        inputs.update(m0=None, s0=None, m_chunk0=None, position0=None, cu_seqlens=torch.tensor([0, 2, 6]))
    inputs = {n: None if t is None else (t.clone().requires_grad_(t.is_floating_point()))
              for n, t in inputs.items()}
    cfg = dict(chunk_size=3, target="external", read="after", scale=1.0, output_final_state=True,
               backend=backend)
    tensors, config = _pack("linear_memory", api.INPUTS, inputs, cfg)
    torch.library.opcheck(api.OP.op, (tensors, config))


def test_torch_compile_fullgraph():
    x, init = make_inputs(B=1, T=6, H=2, K=3, V=3, gates="abm")

    def f(q, k, v, eta, log_alpha, beta, mu, M0, S0):
        o, st = linear_memory(q, k, v, eta, log_alpha, beta, mu, chunk_size=4, initial_state=(M0, S0),
                              output_final_state=True, backend="torch")
        return o, st.M, st.S

    args = [x[n] for n in ("q", "k", "v", "eta", "log_alpha", "beta", "mu")] + list(init)
    compiled = torch.compile(f, fullgraph=True)
    results = []
    for fn in (f, compiled):
        leaves = [a.clone().requires_grad_(True) for a in args]
        outs = fn(*leaves)
        sum((o * (i + 1)).sum() for i, o in enumerate(outs)).backward()
        results.append((outs, [a.grad for a in leaves]))
    (o_e, g_e), (o_c, g_c) = results
    for a, b in zip(o_c, o_e):
        assert_close_rel(a, b, 1e-12)
    for a, b in zip(g_c, g_e):
        assert_close_rel(a, b, 1e-12)


def test_backend_auto_and_env(monkeypatch):
    monkeypatch.delenv("NESTED_KERNELS_BACKEND", raising=False)
    monkeypatch.delenv("NESTED_KERNELS_BACKEND_LINEAR_MEMORY", raising=False)
    x, _ = make_inputs(T=3)
    cfg = dict(chunk_size=4, target="external", read="after", scale=1.0, output_final_state=False)
    pick = lambda b: select_backend("linear_memory", b, api.BACKENDS, torch.device("cpu"), x, cfg)  # noqa: E731
    assert pick("auto") == "torch"
    monkeypatch.setenv("NESTED_KERNELS_BACKEND_LINEAR_MEMORY", "reference")
    assert pick("auto") == "reference"
    assert pick("torch") == "torch"                  # an explicit keyword wins over the variable
    # and end to end: the forced backend runs (the reference gives the same numbers)
    o_env, _ = call("auto", x, None, chunk_size=4)
    o_ref, _ = call("reference", x, None, chunk_size=4)
    assert torch.equal(o_env, o_ref)
