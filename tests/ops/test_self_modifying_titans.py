"""Tests of ``self_modifying_titans`` (SPEC §5, §6–§8): the token-loop reference against rules written
independently here (inner gradients by autograd, a matrix loop for the linear form), the chunked
``torch`` backend against the reference (outputs, final states and every gradient), streaming,
decode steps, packed sequences, dtypes, argument errors and the torch.library machinery.
"""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from nested_kernels.core.custom_op import _pack
from nested_kernels.ops.self_modifying_titans import (SelfModifyingTitansState, self_modifying_titans,
                                                      self_modifying_titans_step)
from nested_kernels.ops.self_modifying_titans import api
from nested_kernels.testing import assert_close_rel, tolerance

F64 = torch.float64
MEMS = ("k", "v", "eta", "alpha", "mem")
BACKENDS = ("reference", "torch")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP start-up/contention costs on 2 cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- inputs ---------------------------------------------------------------------------------------

def make_params(memory="mlp", H=2, D=4, *, seed=0, dtype=F64):
    """Initial weights with moderate scales (the self-referential recurrence stays bounded for
    eta_scale ≤ 0.3 and T ≤ 20)."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    P = {}
    for m in MEMS:
        O = 1 if m in ("eta", "alpha") else D
        if memory == "mlp":
            P[m] = (0.4 * rn(H, O, D), rn(H, D, D) / D ** 0.5, 0.5 * rn(H, 1, D) if O == 1 else None)
        else:
            P[m] = (rn(H, O, D) / D ** 0.5 + (torch.eye(D, dtype=F64) if O == D else 0),)
    return {m: tuple(None if t is None else t.to(dtype) for t in w) for m, w in P.items()}


def make_xq(B=2, T=7, H=2, D=4, *, seed=1, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, H, D, generator=g, dtype=F64).to(dtype),
            torch.randn(B, T, H, D, generator=g, dtype=F64).to(dtype))


KW = dict(eta_scale=0.3, output_final_state=True)


def call(backend, x, q, P, init=None, **kw):
    kw = {**KW, **kw}
    return self_modifying_titans(x, q, P, initial_state=init, backend=backend, **kw)


def state_dict(st: SelfModifyingTitansState):
    return {n: t for n, t in st.tensors().items() if t is not None}


def outputs_and_grads(backend, x, q, P, init=None, **kw):
    """Outputs, final states and the gradients of a fixed random functional of all of them with
    respect to x, q, every parameter and every initial-state tensor."""
    leaves = {"x": x.detach().clone().requires_grad_(True), "q": q.detach().clone().requires_grad_(True)}
    PP = {}
    for m, w in P.items():
        PP[m] = tuple(None if t is None else t.detach().clone().requires_grad_(True) for t in w)
        for i, t in enumerate(PP[m]):
            if t is not None:
                leaves[f"P.{m}.{i}"] = t
    ii = None
    if init is not None:
        ii = init.detach().clone()
        ii = ii._map(lambda t: t.requires_grad_(True) if t.is_floating_point() else t)
        leaves.update({"init." + n: t for n, t in state_dict(ii).items() if t.is_floating_point()})
    o, st = call(backend, leaves["x"], leaves["q"], PP, ii, **kw)
    outs = dict(o=o, **{n: t for n, t in state_dict(st).items() if t.is_floating_point()})
    g = torch.Generator().manual_seed(123)
    loss = sum((t.double() * torch.randn(t.shape, generator=g, dtype=F64)).sum() for t in outs.values())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    res = {n: t.detach() for n, t in outs.items()}
    res["pos_other"], res["pos_memory"] = st.position_other, st.position_memory
    res.update({"d_" + n: gr for n, gr in zip(leaves, grads)})
    return res


def assert_all_close(got, ref, tol, what=""):
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    for n in ref:
        if n.startswith("pos"):
            assert torch.equal(got[n], ref[n]), f"{what} {n}: {got[n]} != {ref[n]}"
        else:
            assert_close_rel(got[n], ref[n], tol, f"{what} {n}")


def prefix_state(x, q, P, n, **kw):
    """State after the first n tokens (reference backend, detached)."""
    _, st = call("reference", x[:, :n], q[:, :n], P, **kw)
    return st.detach()


# -- the reference against rules written independently (SPEC §5) ---------------------------------

def _mlp(w, x):
    w1, w2, skip = w
    return w1 @ F.gelu(w2 @ x) + (x if skip is None else skip @ x)


def _lin(w, x):
    return w[0] @ x


def _l2(x):
    return x / x.norm().clamp_min(1e-6)


def hand_loop(memory, x, q, P, *, chunk_size_other, chunk_size_memory, eta_scale, use_alpha, mu, read):
    """SPEC §5 for one (sequence, head) at a time, with each inner gradient taken by autograd of
    ½‖M(k) − v̂‖² at the chunk-start weights (v̂ held constant) and DGD on the key side of W2,
    W_skip (MLP) or W (linear)."""
    fn = _mlp if memory == "mlp" else _lin
    dgd = (False, True, True) if memory == "mlp" else (True,)
    B, T, H, D = x.shape
    o = torch.zeros(B, T, H, D, dtype=F64)
    for b, h in itertools.product(range(B), range(H)):
        W = {m: [None if t is None else t[h].clone() for t in P[m]] for m in MEMS}
        S = {m: [None if t is None else torch.zeros_like(t) for t in W[m]] for m in MEMS}
        C = {}
        for t in range(T):
            if t % chunk_size_other == 0:
                C.update({m: [None if w is None else w.clone() for w in W[m]] for m in MEMS[:4]})
            if t % chunk_size_memory == 0:
                C["mem"] = [None if w is None else w.clone() for w in W["mem"]]
            xt = x[b, t, h]
            k = _l2(fn(C["k"], xt))
            v = fn(C["v"], xt)
            eta = eta_scale * F.softplus(fn(C["eta"], xt))[0]
            alpha = torch.sigmoid(fn(C["alpha"], xt))[0] if use_alpha else 1.0
            o[b, t, h] = fn(C["mem"] if read == "chunk" else W["mem"], _l2(q[b, t, h]))
            for m in MEMS:
                leaves = [None if w is None else w.clone().requires_grad_(True) for w in C[m]]
                target = fn(C[m], v).detach()
                with torch.enable_grad():
                    loss = 0.5 * ((fn(leaves, k) - target) ** 2).sum()
                    grads = torch.autograd.grad(loss, [w for w in leaves if w is not None])
                grads = iter(grads)
                for i, w in enumerate(W[m]):
                    if w is None:
                        continue
                    G = next(grads)
                    S[m][i] = (0.0 if mu is None else mu * S[m][i]) - eta * G
                    decay = alpha * torch.eye(w.shape[-1], dtype=F64)
                    if dgd[i]:
                        decay = decay - eta * torch.outer(k, k)
                    W[m][i] = (w @ decay if dgd[i] else alpha * w) + S[m][i]
    return o, W


@pytest.mark.parametrize("memory", ["mlp", "linear"])
@pytest.mark.parametrize("cs,read", [((1, 1), "before"), ((2, 4), "chunk"), ((4, 2), "before"), ((3, 3), "chunk")])
def test_reference_matches_independent_rule(memory, cs, read):
    x, q = make_xq(B=1, T=9)
    P = make_params(memory)
    kw = dict(chunk_size_other=cs[0], chunk_size_memory=cs[1], eta_scale=0.3, use_alpha=True, mu=0.5, read=read)
    o_hand, W_last = hand_loop(memory, x, q, P, **kw)
    o, st = call("reference", x, q, P, memory=memory, **kw)
    assert_close_rel(o, o_hand, 1e-12, "o")
    for m in MEMS:                                     # the last head's final weights
        for w_ref, w_hand in zip(st.weights[m], W_last[m]):
            if w_hand is not None:
                assert_close_rel(w_ref[0, -1], w_hand, 1e-12, f"W {m}")


@pytest.mark.parametrize("mu", [None, 0.5])
def test_linear_online_rule_by_hand(mu):
    """memory="linear", read "before", chunk sizes 1: W_t = W_{t−1}(α I − η k kᵀ) + S_t with
    S_t = μ S_{t−1} − η (W_{t−1}k − W_{t−1}v) kᵀ, written with plain matrices."""
    x, q = make_xq(B=2, T=6)
    P = make_params("linear")
    kw = dict(chunk_size_other=1, chunk_size_memory=1, eta_scale=0.3, use_alpha=True, mu=mu, read="before")
    o_ref, st = call("reference", x, q, P, memory="linear", **kw)
    B, T, H, D = x.shape
    for b, h in itertools.product(range(B), range(H)):
        W = {m: P[m][0][h].clone() for m in MEMS}
        S = {m: torch.zeros_like(W[m]) for m in MEMS}
        for t in range(T):
            xt = x[b, t, h]
            k = W["k"] @ xt
            k = k / max(k.norm().item(), 1e-6)
            v = W["v"] @ xt
            eta = 0.3 * torch.log1p(torch.exp(W["eta"] @ xt))[0]
            alpha = 1.0 / (1.0 + torch.exp(-(W["alpha"] @ xt)[0]))
            qh = q[b, t, h] / max(q[b, t, h].norm().item(), 1e-6)
            assert_close_rel(o_ref[b, t, h], W["mem"] @ qh, 1e-12, f"o[{b},{t},{h}]")
            for m in MEMS:
                e = W[m] @ k - W[m] @ v
                S[m] = (0.0 if mu is None else mu * S[m]) - eta * torch.outer(e, k)
                W[m] = alpha * W[m] - eta * torch.outer(W[m] @ k, k) + S[m]
        for m in MEMS:
            assert_close_rel(st.weights[m][0][b, h], W[m], 1e-12, f"W {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("memory", ["mlp", "linear"])
@pytest.mark.parametrize("mu", [None, 0.5])
def test_eta_zero_is_static(backend, memory, mu):
    """eta_scale = 0 and no retention: no memory changes; o_t = M_mem(q̂_t) at the initial weights."""
    x, q = make_xq(T=7)
    P = make_params(memory)
    o, st = call(backend, x, q, P, memory=memory, eta_scale=0.0, use_alpha=False, mu=mu,
                 chunk_size_other=2, chunk_size_memory=4, read="before")
    qh = q / q.norm(dim=-1, keepdim=True)
    if memory == "mlp":
        w1, w2, _ = P["mem"]
        static = qh + torch.einsum("hvf,bthf->bthv", w1, F.gelu(torch.einsum("hfk,bthk->bthf", w2, qh)))
    else:
        static = torch.einsum("hvk,bthk->bthv", P["mem"][0], qh)
    assert_close_rel(o, static, 1e-12, "o")
    for m in MEMS:
        for w, p in zip(st.weights[m], P[m]):
            if p is not None:
                assert_close_rel(w, p.expand_as(w), 1e-14, f"W {m}")


# -- torch backend against the reference ----------------------------------------------------------

GRID = list(itertools.product(["mlp", "linear"], ["chunk", "before"], [True, False], [None, 0.5],
                              [(2, 4), (4, 2), (1, 1)]))


@pytest.mark.parametrize("memory,read,use_alpha,mu,cs", GRID)
def test_torch_matches_reference(memory, read, use_alpha, mu, cs):
    """Outputs, final states and every gradient, float64. Half of the grid starts from a mid-chunk
    state of an earlier call (gradients w.r.t. the initial state), the other half from params."""
    x, q = make_xq(B=2, T=9)
    P = make_params(memory)
    kw = dict(memory=memory, read=read, use_alpha=use_alpha, mu=mu, chunk_size_other=cs[0],
              chunk_size_memory=cs[1])
    init = None
    if use_alpha == (mu is None):
        init = prefix_state(x, q, P, 3, **kw)
        x, q = x[:, 3:], q[:, 3:]
    ref = outputs_and_grads("reference", x, q, P, init, **kw)
    got = outputs_and_grads("torch", x, q, P, init, **kw)
    assert_all_close(got, ref, 1e-10, "torch")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("memory,cs", [("mlp", (2, 4)), ("linear", (4, 2))])
def test_float32_within_spec(backend, memory, cs):
    x, q = make_xq(B=2, T=9)
    P = make_params(memory)
    kw = dict(memory=memory, chunk_size_other=cs[0], chunk_size_memory=cs[1], mu=0.5, read="before")
    ref = outputs_and_grads("reference", x, q, P, **kw)
    P32 = {m: tuple(None if t is None else t.float() for t in w) for m, w in P.items()}
    got = outputs_and_grads(backend, x.float(), q.float(), P32, **kw)
    assert all(t.dtype == torch.float32 for n, t in got.items() if not n.startswith("pos"))
    assert_all_close(got, ref, tolerance(backend, torch.float32), backend)


@pytest.mark.parametrize("memory", ["mlp", "linear"])
def test_bfloat16_within_spec(memory):
    """bf16 x, q and params: outputs in bf16, states float32, all within 2e-2 of the float64
    reference on the same (rounded) inputs."""
    x, q = make_xq(B=2, T=9, dtype=torch.bfloat16)
    P = make_params(memory, dtype=torch.bfloat16)
    kw = dict(memory=memory, chunk_size_other=2, chunk_size_memory=4, mu=0.5)
    up = lambda t: None if t is None else t.double()  # noqa: E731
    ref = outputs_and_grads("reference", x.double(), q.double(), {m: tuple(up(t) for t in w) for m, w in P.items()},
                            **kw)
    got = outputs_and_grads("torch", x, q, P, **kw)
    assert got["o"].dtype == torch.bfloat16 and got["W.k.0"].dtype == torch.float32
    assert_all_close(got, ref, tolerance("torch", torch.bfloat16), "bf16")


@pytest.mark.parametrize("memory", ["mlp", "linear"])
def test_gradcheck(memory):
    x, q = make_xq(B=1, T=5, H=1, D=3)
    P = make_params(memory, H=1, D=3)
    names = [(m, i) for m in MEMS for i, t in enumerate(P[m]) if t is not None]

    def f(x, q, *ws):
        PP = {m: list(P[m]) for m in MEMS}
        for (m, i), w in zip(names, ws):
            PP[m][i] = w
        o, st = self_modifying_titans(x, q, {m: tuple(w) for m, w in PP.items()}, memory=memory,
                                      chunk_size_other=2, chunk_size_memory=4, eta_scale=0.3, mu=0.5,
                                      read="before", output_final_state=True, backend="torch")
        return o, st.weights["mem"][0], st.weights["eta"][0]

    args = [x, q] + [P[m][i] for m, i in names]
    args = [a.clone().requires_grad_(True) for a in args]
    assert torch.autograd.gradcheck(f, args, fast_mode=True)


# -- streaming, decoding, packing, empty inputs ---------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("memory,cs,splits", [("mlp", (2, 4), [1, 3, 6]), ("linear", (4, 2), [2, 5, 8]),
                                              ("mlp", (3, 1), [4, 7])])
def test_pieces_equal_one_call(backend, memory, cs, splits):
    x, q = make_xq(B=2, T=11)
    P = make_params(memory)
    kw = dict(memory=memory, chunk_size_other=cs[0], chunk_size_memory=cs[1], mu=0.5, read="before")
    o_full, st_full = call(backend, x, q, P, **kw)
    outs, st = [], None
    for a, b in zip([0] + splits, splits + [x.shape[1]]):
        o, st = call(backend, x[:, a:b], q[:, a:b], P, st, **kw)
        outs.append(o)
    assert_close_rel(torch.cat(outs, 1), o_full, 1e-12, "o")
    full = state_dict(st_full)
    for n, t in state_dict(st).items():
        if n.startswith("pos"):
            assert torch.equal(t, full[n]), n
        else:
            assert_close_rel(t, full[n], 1e-12, n)


@pytest.mark.parametrize("memory,read", [("mlp", "chunk"), ("linear", "before")])
@pytest.mark.parametrize("prefix", [0, 3])
def test_decode_steps_equal_one_call(memory, read, prefix):
    x, q = make_xq(B=2, T=9)
    P = make_params(memory)
    kw = dict(memory=memory, chunk_size_other=2, chunk_size_memory=4, mu=0.5, read=read)
    o_full, st_full = call("torch", x, q, P, **kw)
    if prefix:
        st = prefix_state(x, q, P, prefix, **kw)
    else:
        st = SelfModifyingTitansState.from_params(P, 2, memory=memory, chunk_size_other=2,
                                                  chunk_size_memory=4, momentum=True, dtype=F64)
    step_kw = dict(eta_scale=KW["eta_scale"], mu=0.5, read=read)
    outs = [self_modifying_titans_step(x[:, t], q[:, t], state=st, **step_kw) for t in range(prefix, 9)]
    assert_close_rel(torch.stack(outs, 1), o_full[:, prefix:], 1e-12, "o")
    full = state_dict(st_full)
    for n, t in state_dict(st).items():
        if n.startswith("pos"):
            assert torch.equal(t, full[n]), n
        else:
            assert_close_rel(t, full[n], 1e-12, n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("memory", ["mlp", "linear"])
def test_cu_seqlens_equals_separate_calls(backend, memory):
    """Packed sequences (one empty), each resuming from its own mid-chunk state."""
    pre = [1, 2, 0, 3]                                  # prefix lengths: different start positions
    main = [5, 0, 7, 5]
    x, q = make_xq(B=1, T=sum(pre) + sum(main))
    P = make_params(memory)
    kw = dict(memory=memory, chunk_size_other=2, chunk_size_memory=4, mu=0.5)
    cu_pre = torch.tensor([0] + list(itertools.accumulate(pre)))
    cu = torch.tensor([0] + list(itertools.accumulate(main)))
    n_pre = sum(pre)
    _, st_pre = call(backend, x[:, :n_pre], q[:, :n_pre], P, cu_seqlens=cu_pre, **kw)
    o, st = call(backend, x[:, n_pre:], q[:, n_pre:], P, st_pre, cu_seqlens=cu, **kw)
    assert st.num_sequences == 4
    for n in range(4):
        a, b = int(cu_pre[n]), int(cu_pre[n + 1])
        _, s1 = call(backend, x[:, a:b], q[:, a:b], P, **kw)
        a, b = n_pre + int(cu[n]), n_pre + int(cu[n + 1])
        o_n, s2 = call(backend, x[:, a:b], q[:, a:b], P, s1, **kw)
        assert_close_rel(o[:, a - n_pre:b - n_pre], o_n, 1e-12, f"o seq {n}")
        got, want = state_dict(st), state_dict(s2)
        for name, t in want.items():
            if name.startswith("pos"):
                assert int(got[name][n]) == int(t[0]), name
            else:
                assert_close_rel(got[name][n], t[0], 1e-12, f"{name} seq {n}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("memory", ["mlp", "linear"])
def test_empty_input(backend, memory):
    x, q = make_xq(B=2, T=5)
    P = make_params(memory)
    kw = dict(memory=memory, chunk_size_other=2, chunk_size_memory=4, mu=0.5)
    st = prefix_state(x, q, P, 3, **kw)
    o, st2 = call(backend, x[:, :0], q[:, :0], P, st, **kw)
    assert o.shape == (2, 0, 2, 4)
    for n, t in state_dict(st).items():
        assert torch.equal(state_dict(st2)[n], t), n
    o, st3 = call(backend, x[:, :0], q[:, :0], P, **kw)
    assert torch.equal(st3.weights["k"][0], P["k"][0].expand(2, -1, -1, -1))
    assert (st3.position_other == 0).all() and (st3.position_memory == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_and_dict_state(backend):
    x, q = make_xq(B=2, T=7)
    P = make_params("mlp")
    o, _ = call(backend, x, q, P, chunk_size_other=2, chunk_size_memory=4)
    xt = x.transpose(0, 1).contiguous().transpose(0, 1)
    assert not xt.is_contiguous()
    o2, _ = call(backend, xt, q[..., :].transpose(2, 3).contiguous().transpose(2, 3), P,
                 chunk_size_other=2, chunk_size_memory=4)
    assert_close_rel(o2, o, 1e-14, "non-contiguous")
    per_seq = {m: tuple(None if t is None else t.expand(2, *t.shape) for t in w) for m, w in P.items()}
    o3, _ = call(backend, x, q, P, per_seq, chunk_size_other=2, chunk_size_memory=4)
    assert_close_rel(o3, o, 1e-14, "dict initial state")


def test_backend_auto_and_env(monkeypatch):
    x, q = make_xq(B=1, T=3)
    P = make_params("linear")
    inputs, cfg, _ = api._build(x, q, P, "linear", 2, 4, 0.1, True, None, "chunk", "gelu", None, False,
                                None, "auto")
    assert cfg["backend"] == "torch"
    monkeypatch.setenv("NESTED_KERNELS_BACKEND_SELF_MODIFYING_TITANS", "reference")
    inputs, cfg, _ = api._build(x, q, P, "linear", 2, 4, 0.1, True, None, "chunk", "gelu", None, False,
                                None, "auto")
    assert cfg["backend"] == "reference"
    with pytest.raises(RuntimeError, match="no 'cuda' backend"):
        call("cuda", x, q, P, memory="linear")


# -- errors (SPEC §8) -----------------------------------------------------------------------------

def _error_cases():
    x, q = make_xq(B=2, T=5)
    P = make_params("mlp")
    PL = make_params("linear")
    st = prefix_state(x, q, P, 3, chunk_size_other=2, chunk_size_memory=4)

    def swap(m, i, t, params=P):
        new = dict(params)
        w = list(new[m])
        w[i] = t
        new[m] = tuple(w)
        return new

    cases = {
        "rank": (dict(x=x[0]), r"x must have 4 dimensions"),
        "q shape": (dict(q=q[:, :4]), r"q must have shape"),
        "device": (dict(q=q.to("meta")), r"q is on meta"),
        "dtype": (dict(x=x.long()), r"x has unsupported dtype int64"),
        "param dtype": (dict(params=swap("k", 0, P["k"][0].int())), r"params\['k'\]\[0\] has unsupported dtype"),
        "param shape": (dict(params=swap("eta", 2, P["eta"][2][:, :, :3])), r"params\['eta'\]\[2\] must have shape"),
        "param out dim": (dict(params=swap("k", 0, P["k"][0][:, :3])), r"params\['k'\]\[0\] must have shape"),
        "param device": (dict(params=swap("mem", 1, P["mem"][1].to("meta"))), r"params\['mem'\]\[1\] is on meta"),
        "skip not identity": (dict(params=swap("k", 2, P["eta"][2])), r"params\['k'\]\[2\] \(w_skip\) must be None"),
        "missing skip": (dict(params=swap("alpha", 2, None)), r"params\['alpha'\]\[2\] must be a torch.Tensor"),
        "params keys": (dict(params={m: P[m] for m in MEMS[:4]}), r"params must be a dict with keys"),
        "params tuple": (dict(params={**P, "v": P["v"][:2]}), r"params\['v'\] must be a tuple \(w1, w2, None\)"),
        "linear tuple": (dict(params=P, memory="linear"), r"params\['k'\] must be a tuple \(w,\)"),
        "memory": (dict(memory="deep"), r"memory must be one of"),
        "read": (dict(read="after"), r"read must be one of 'chunk', 'before'"),
        "activation": (dict(activation="relu"), r"activation must be one of"),
        "backend": (dict(backend="fast"), r"backend must be one of"),
        "chunk size": (dict(chunk_size_other=-2), r"chunk_size_other must be a positive integer"),
        "chunk size 0": (dict(chunk_size_memory=0), r"chunk_size_memory must be a positive integer"),
        "chunk multiple": (dict(chunk_size_other=3, chunk_size_memory=4),
                           r"chunk_size_memory must be a multiple of chunk_size_other or vice versa"),
        "mu": (dict(mu=1.0), r"mu must be None or a float in \[0, 1\)"),
        "mu tensor": (dict(mu=torch.tensor(0.5)), r"mu must be None or a float"),
        "eta_scale": (dict(eta_scale=-1.0), r"eta_scale must be a number"),
        "use_alpha": (dict(use_alpha="yes"), r"use_alpha must be True or False"),
        "cu dtype": (dict(x=x[:1], q=q[:1], cu_seqlens=torch.tensor([0.0, 5.0])), r"cu_seqlens must have dtype"),
        "cu batch": (dict(cu_seqlens=torch.tensor([0, 5])), r"cu_seqlens requires batch size B == 1"),
        "cu start": (dict(x=x[:1], q=q[:1], cu_seqlens=torch.tensor([1, 5])), r"cu_seqlens must start at 0"),
        "cu decreasing": (dict(x=x[:1], q=q[:1], cu_seqlens=torch.tensor([0, 4, 3, 5])),
                          r"cu_seqlens must be non-decreasing"),
        "cu end": (dict(x=x[:1], q=q[:1], cu_seqlens=torch.tensor([0, 4])), r"cu_seqlens must end at T = 5"),
        "state chunk size": (dict(initial_state=st, chunk_size_other=4), r"chunk_size_other=2"),
        "state memory": (dict(initial_state=st, memory="linear", params=PL), r"memory='mlp'"),
        "state momentum": (dict(initial_state=SelfModifyingTitansState.from_params(
            P, 2, chunk_size_other=2, chunk_size_memory=4, momentum=True, dtype=F64)),
            r"initial_state has momenta, but mu is None"),
        "state N": (dict(initial_state=st, x=x[:1], q=q[:1]), r"initial_state.weights\['k'\]\[0\] must have shape"),
        "state type": (dict(initial_state=(P["k"][0],)), r"initial_state must be None, a SelfModifyingTitansState"),
        "state position": (dict(initial_state=st._map(lambda t: t + 4 if t.dtype == torch.int64 else t)),
                           r"initial_state.position_other must lie in \[0, 2\)"),
    }
    base = dict(x=x, q=q, params=P, chunk_size_other=2, chunk_size_memory=4)
    return base, cases


_BASE, _CASES = _error_cases()


@pytest.mark.parametrize("case", list(_CASES))
def test_argument_errors(case):
    change, pattern = _CASES[case]
    kw = {**_BASE, **change}
    x, q, params = kw.pop("x"), kw.pop("q"), kw.pop("params")
    with pytest.raises(ValueError, match=pattern):
        self_modifying_titans(x, q, params, **kw)


def test_step_argument_errors():
    x, q = make_xq(B=2, T=3)
    P = make_params("mlp")
    st = SelfModifyingTitansState.from_params(P, 2, chunk_size_other=2, chunk_size_memory=4, dtype=F64)
    with pytest.raises(ValueError, match=r"state must be a SelfModifyingTitansState"):
        self_modifying_titans_step(x[:, 0], q[:, 0], state=None)
    with pytest.raises(ValueError, match=r"x must have shape"):
        self_modifying_titans_step(x[:1, 0], q[:, 0], state=st)
    with pytest.raises(ValueError, match=r"mu and state.momentum must be given together"):
        self_modifying_titans_step(x[:, 0], q[:, 0], state=st, mu=0.5)
    with pytest.raises(ValueError, match=r"read must be one of"):
        self_modifying_titans_step(x[:, 0], q[:, 0], state=st, read="after")


# -- torch.library machinery ----------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("memory,with_state", [("mlp", True), ("linear", False)])
def test_opcheck(backend, memory, with_state):
    x, q = make_xq(B=1, T=5, H=1, D=3, dtype=torch.float32)
    P = make_params(memory, H=1, D=3, dtype=torch.float32)
    kw = dict(chunk_size_other=2, chunk_size_memory=4, mu=0.5)
    init = None
    if with_state:
        init = prefix_state(x, q, P, 3, **kw)
        x, q = x[:, 3:], q[:, 3:]
    inputs, cfg, _ = api._build(x, q, P, memory, 2, 4, 0.3, True, 0.5, "before", "gelu", init, True, None,
                                backend)
    inputs = {n: None if t is None else t.clone().requires_grad_(t.is_floating_point())
              for n, t in inputs.items()}
    tensors, config = _pack(api.OP.name, api.OP.inputs, inputs, cfg)
    torch.library.opcheck(api.OP.op, (tensors, config))


def test_torch_compile_fullgraph():
    x, q = make_xq(B=2, T=5, dtype=torch.float32)
    P = make_params("mlp", dtype=torch.float32)
    names = [(m, i) for m in MEMS for i, t in enumerate(P[m]) if t is not None]

    def f(x, q, *ws):
        PP = {m: [None] * 3 for m in MEMS}
        for (m, i), w in zip(names, ws):
            PP[m][i] = w
        o, st = self_modifying_titans(x, q, {m: tuple(w) for m, w in PP.items()}, chunk_size_other=2,
                                      chunk_size_memory=4, eta_scale=0.3, mu=0.5, output_final_state=True,
                                      backend="torch")
        return o, st.weights["mem"][0], st.momentum["eta"][2]

    args = [x, q] + [P[m][i] for m, i in names]
    compiled = torch.compile(f, fullgraph=True)
    results = []
    for fn in (f, compiled):
        leaves = [a.clone().requires_grad_(True) for a in args]
        outs = fn(*leaves)
        sum((o * (i + 1)).sum() for i, o in enumerate(outs)).backward()
        results.append((outs, [a.grad for a in leaves]))
    (o_e, g_e), (o_c, g_c) = results
    for a, b in zip(list(o_c) + g_c, list(o_e) + g_e):
        assert_close_rel(a, b, 1e-6)
