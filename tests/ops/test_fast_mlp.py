"""fast_mlp (SPEC §4): reference vs chunked torch backend, closed forms, streaming, decode step,
varlen, dtypes, errors (SPEC §8), and the custom-op machinery (opcheck, torch.compile)."""
import re
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from nested_kernels.core.custom_op import _pack
from nested_kernels.ops.fast_mlp import FastMLPState, fast_mlp, fast_mlp_step
from nested_kernels.ops.fast_mlp import api, mlp as mlp_math
from nested_kernels.ops.fast_mlp.mlp import weight_shapes
from nested_kernels.testing import assert_close_rel, tolerance

D, FH = 6, 12
MLPS = ("gelu", "silu", "swiglu")
BACKENDS = ("reference", "torch")
f64 = torch.float64
bf16 = torch.bfloat16


def make_weights(mlp, dtype=f64, d=D, f=FH):
    return tuple(torch.randn(s, dtype=dtype) / s[1] ** 0.5 for s in weight_shapes(mlp, d, f))


def make_inputs(B=2, T=7, mlp="gelu", dtype=f64, d=D, f=FH):
    return dict(x=0.5 * torch.randn(B, T, d, dtype=dtype), weights=make_weights(mlp, dtype, d, f),
                eta=(0.05 + 0.2 * torch.rand(B, T)).to(dtype), signal=torch.randn(B, T, d, dtype=dtype))


def call(backend, inp, mode="target", **kw):
    return fast_mlp(inp["x"], inp["weights"], inp["eta"], backend=backend, **{mode: inp["signal"]}, **kw)


def state_tensors(st):
    return [t for t in st.tensors().values() if t is not None]


def static_mlp(ws, x, mlp):
    """An independent MLP (torch.nn.functional), for closed-form checks."""
    if mlp == "swiglu":
        return F.linear(F.silu(F.linear(x, ws[0])) * F.linear(x, ws[1]), ws[2])
    return F.linear((F.gelu if mlp == "gelu" else F.silu)(F.linear(x, ws[0])), ws[1])


def run_with_grads(backend, inp, mode, bf16_coeffs=False, **kw):
    """Outputs (y and final-state tensors) and gradients of a fixed random functional of them
    with respect to x, every weight, eta and target/teach (``bf16_coeffs``: its coefficients
    rounded to bfloat16, so that the gradient arriving at a bfloat16 output is exact)."""
    leaves = dict(x=inp["x"], eta=inp["eta"], signal=inp["signal"],
                  **{f"w{i}": w for i, w in enumerate(inp["weights"])})
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in leaves.items()}
    ws = tuple(leaves[f"w{i}"] for i in range(len(inp["weights"])))
    y, st = call(backend, dict(x=leaves["x"], weights=ws, eta=leaves["eta"], signal=leaves["signal"]),
                 mode, output_final_state=True, **kw)
    outs = [y] + [t for t in state_tensors(st) if t.is_floating_point()]
    gen = torch.Generator().manual_seed(1)
    coeff = lambda o: torch.randn(o.shape, generator=gen, dtype=f64).to(bf16 if bf16_coeffs else f64)  # noqa: E731
    loss = sum((o.to(f64) * coeff(o).to(f64)).sum() for o in outs)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return [y] + state_tensors(st), dict(zip(leaves, grads))


def compare(a, b, tol, what=""):
    (outs_a, grads_a), (outs_b, grads_b) = a, b
    for i, (u, v) in enumerate(zip(outs_a, outs_b)):
        if u.is_floating_point():
            assert_close_rel(u, v, tol, f"{what} output {i}")
        else:
            assert torch.equal(u.cpu(), v.cpu()), f"{what} position"
    for name in grads_b:
        assert_close_rel(grads_a[name], grads_b[name], tol, f"{what} grad {name}")


# -- reference vs chunked torch backend ---------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [1, 2, 4])
@pytest.mark.parametrize("retention", [1.0, 0.9])
@pytest.mark.parametrize("mode", ["target", "teach"])
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("mlp", MLPS)
def test_torch_matches_reference_float64(mlp, residual, mode, retention, chunk_size):
    inp = make_inputs(B=2, T=7, mlp=mlp)                 # odd T: a partial last chunk for C = 2, 4
    kw = dict(chunk_size=chunk_size, mlp=mlp, residual=residual, retention=retention)
    ref = run_with_grads("reference", inp, mode, **kw)
    got = run_with_grads("torch", inp, mode, **kw)
    compare(got, ref, 1e-10)
    expect_pos = 7 % chunk_size
    assert ref[0][-1].tolist() == [expect_pos] * 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mlp", MLPS)
def test_float32_within_spec(backend, mlp):
    inp = make_inputs(B=2, T=9, mlp=mlp)
    kw = dict(chunk_size=2, mlp=mlp, retention=0.9)
    ref = run_with_grads("reference", inp, "target", **kw)
    inp32 = {k: (tuple(w.float() for w in v) if k == "weights" else v.float()) for k, v in inp.items()}
    got = run_with_grads(backend, inp32, "target", **kw)
    assert got[0][0].dtype == torch.float32 and got[0][1].dtype == torch.float32
    compare(got, ref, tolerance(backend, torch.float32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["target", "teach"])
def test_half_precision_within_spec(dtype, mode):
    inp = make_inputs(B=2, T=8, mlp="swiglu")
    inp = {k: (tuple(w.to(dtype) for w in v) if k == "weights" else v.to(dtype)) for k, v in inp.items()}
    kw = dict(chunk_size=2, mlp="swiglu", retention=0.9)
    got = run_with_grads("torch", inp, mode, **kw)
    up = {k: (tuple(w.double() for w in v) if k == "weights" else v.double()) for k, v in inp.items()}
    ref = run_with_grads("reference", up, mode, **kw)
    assert got[0][0].dtype == dtype and got[0][1].dtype == torch.float32
    compare(got, ref, tolerance("torch", dtype))


def test_per_sequence_initial_weights_and_shared_gradient_sum():
    """Per-sequence initial weights get their own gradients (reference == torch), and the shared
    weights' gradient is their sum over sequences."""
    inp = make_inputs(B=3, T=5, mlp="silu")
    grads = {}
    for backend in BACKENDS:
        per_seq = tuple(w.expand(3, *w.shape).clone().requires_grad_(True) for w in inp["weights"])
        y, st = call(backend, inp, mlp="silu", chunk_size=2, initial_state=per_seq, output_final_state=True)
        (y.square().sum() + st.w0.square().sum() + st.u1.sum()).backward()
        grads[backend] = [w.grad for w in per_seq]
    shared = tuple(w.clone().requires_grad_(True) for w in inp["weights"])
    y, st = call("torch", dict(inp, weights=shared), mlp="silu", chunk_size=2, output_final_state=True)
    (y.square().sum() + st.w0.square().sum() + st.u1.sum()).backward()
    for a, b, w in zip(grads["torch"], grads["reference"], shared):
        assert_close_rel(a, b, 1e-10, "per-sequence weight grad")
        assert_close_rel(w.grad, a.sum(0), 1e-10, "shared grad = sum over sequences")


def test_eta_as_float_matches_tensor():
    inp = make_inputs(B=2, T=6)
    for backend in BACKENDS:
        y1, s1 = call(backend, dict(inp, eta=0.3), chunk_size=2, output_final_state=True)
        y2, s2 = call(backend, dict(inp, eta=torch.full((2, 6), 0.3, dtype=f64)), chunk_size=2,
                      output_final_state=True)
        assert_close_rel(y1, y2, 1e-14)
        for a, b in zip(state_tensors(s1), state_tensors(s2)):
            assert torch.allclose(a, b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("mlp", MLPS)
def test_grad_factors_match_autograd(mlp):
    """The shared MLP-gradient code equals autograd's ∇_W Σ_t η_t ⟨g_t, MLP_W(x_t)⟩."""
    ws = tuple(w.requires_grad_(True) for w in make_weights(mlp))
    x, g, eta = torch.randn(5, D, dtype=f64), torch.randn(5, D, dtype=f64), torch.rand(5, dtype=f64)
    out, cache = mlp_math.forward(ws, x, mlp)
    assert_close_rel(out, static_mlp(ws, x, mlp), 1e-14)
    want = torch.autograd.grad((eta[:, None] * g * static_mlp(ws, x, mlp)).sum(), ws)
    got = [mlp_math.eta_weighted_sum(left, right, eta)
           for left, right in mlp_math.grad_factors(ws, x, cache, g, mlp)]
    for a, b in zip(got, want):
        assert_close_rel(a, b, 1e-13)


# -- closed forms ---------------------------------------------------------------------------------

def _inner_grad(ws, x, signal, eta, mlp, residual, mode):
    """Σ_t η_t ∇_W⟨g_t, MLP_W(x_t)⟩ at ws (independent: autograd through F.linear), and y."""
    ws = [w.detach().requires_grad_(True) for w in ws]
    out = static_mlp(ws, x, mlp)
    y = x + out if residual else out
    g = (y - signal) if mode == "target" else signal
    grads = torch.autograd.grad((eta[:, None] * g.detach() * out).sum(), ws)
    return [gr.detach() for gr in grads], y.detach()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mlp", MLPS)
@pytest.mark.parametrize("mode", ["target", "teach"])
def test_chunk_longer_than_sequence_is_static_mlp(backend, mlp, mode):
    inp = make_inputs(B=2, T=5, mlp=mlp)
    y, st = call(backend, inp, mode, chunk_size=8, mlp=mlp, residual=True, retention=0.5,
                 output_final_state=True)
    for n in range(2):
        grads, y_n = _inner_grad(inp["weights"], inp["x"][n], inp["signal"][n], inp["eta"][n], mlp, True, mode)
        assert_close_rel(y[n], y_n, 1e-13, "y = static MLP")
        for w0, w, u, gr in zip(inp["weights"], st.weights, st.updates, grads):
            assert torch.equal(w[n], w0), "no update inside an incomplete chunk"
            assert_close_rel(u[n], gr, 1e-13, "pending update")
    assert st.position.tolist() == [5, 5]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mlp", MLPS)
@pytest.mark.parametrize("mode", ["target", "teach"])
@pytest.mark.parametrize("residual", [True, False])
def test_two_chunks_by_hand(backend, mlp, mode, residual):
    """chunk_size 2, T = 4: W1 = r·W0 − Σ_{t=1,2} η_t ∇ at W0; tokens 3, 4 use W1; W2 likewise."""
    r = 0.8
    inp = make_inputs(B=2, T=4, mlp=mlp)
    y, st = call(backend, inp, mode, chunk_size=2, mlp=mlp, residual=residual, retention=r,
                 output_final_state=True)
    for n in range(2):
        x, s, e = inp["x"][n], inp["signal"][n], inp["eta"][n]
        W = list(inp["weights"])
        ys = []
        for c in range(2):
            sl = slice(2 * c, 2 * c + 2)
            grads, y_c = _inner_grad(W, x[sl], s[sl], e[sl], mlp, residual, mode)
            ys.append(y_c)
            W = [r * w - g for w, g in zip(W, grads)]
        assert_close_rel(y[n], torch.cat(ys), 1e-13, "y")
        for w, w_hand in zip(st.weights, W):
            assert_close_rel(w[n], w_hand, 1e-13, "final weights")
        for u in st.updates:
            assert torch.count_nonzero(u[n]) == 0
    assert st.position.tolist() == [0, 0]


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("mode", ["target", "teach"])
def test_gradcheck(mlp, mode):
    d, f = 3, 4
    inp = make_inputs(B=1, T=3, mlp=mlp, d=d, f=f)
    k = len(inp["weights"])
    args = [inp["x"], *inp["weights"], inp["eta"], inp["signal"]]
    args = [a.clone().requires_grad_(True) for a in args]

    def fn(x, *rest):
        ws, eta, sig = rest[:k], rest[k], rest[k + 1]
        y, st = fast_mlp(x, ws, eta, chunk_size=2, mlp=mlp, retention=0.9, output_final_state=True,
                         backend="torch", **{mode: sig})
        return (y, *st.weights, *st.updates)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6)


def test_gradcheck_state_mid_chunk():
    """Gradients with respect to a resumed state: weights, pending update (position 1 of 3)."""
    d, f = 3, 4
    inp = make_inputs(B=2, T=3, mlp="silu", d=d, f=f)
    ws = [w.expand(2, *w.shape).clone() for w in inp["weights"]]
    us = [0.1 * torch.randn_like(w) for w in ws]
    args = [inp["x"], *ws, *us]
    args = [a.clone().requires_grad_(True) for a in args]

    def fn(x, w0, w1, u0, u1):
        st = FastMLPState(w0, w1, None, u0, u1, None, torch.tensor([1, 2]), 3)
        y, st = fast_mlp(x, inp["weights"], inp["eta"], chunk_size=3, mlp="silu", target=inp["signal"],
                         initial_state=st, output_final_state=True, backend="torch")
        return (y, *st.weights, *st.updates)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6)


# -- streaming, decode, varlen, empty -------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("splits", [[4], [6], [2, 5], [0, 9]])     # inside a chunk, at a boundary, …
@pytest.mark.parametrize("mlp,weight_dtype", [("gelu", None), ("swiglu", None), ("gelu", bf16)])
def test_streaming_equals_one_call(backend, splits, mlp, weight_dtype):
    inp = make_inputs(B=2, T=9, mlp=mlp)
    kw = dict(chunk_size=3, mlp=mlp, retention=0.9, weight_dtype=weight_dtype)
    y_full, st_full = call(backend, inp, output_final_state=True, **kw)
    ys, st = [], None
    for a, b in zip([0] + splits, splits + [9]):
        piece = dict(inp, x=inp["x"][:, a:b], eta=inp["eta"][:, a:b], signal=inp["signal"][:, a:b])
        y, st = call(backend, piece, initial_state=st, output_final_state=True, **kw)
        ys.append(y)
    assert_close_rel(torch.cat(ys, 1), y_full, 1e-12, "y")
    for a, b in zip(state_tensors(st), state_tensors(st_full)):
        if a.is_floating_point():
            assert_close_rel(a, b, 1e-12, "state")
        else:
            assert torch.equal(a, b), "position"


def test_streaming_gradients_equal_one_call():
    inp = make_inputs(B=2, T=7, mlp="gelu")
    results = []
    for split in (None, 4):
        x = inp["x"].clone().requires_grad_(True)
        ws = tuple(w.clone().requires_grad_(True) for w in inp["weights"])
        kw = dict(chunk_size=3, target=inp["signal"], output_final_state=True, backend="torch")
        if split is None:
            y, st = fast_mlp(x, ws, inp["eta"], **kw)
        else:
            y1, st = fast_mlp(x[:, :split], ws, inp["eta"][:, :split], **dict(kw, target=inp["signal"][:, :split]))
            y2, st = fast_mlp(x[:, split:], ws, inp["eta"][:, split:], initial_state=st,
                              **dict(kw, target=inp["signal"][:, split:]))
            y = torch.cat([y1, y2], 1)
        (y.square().sum() + st.w1.sum()).backward()
        results.append([x.grad, *(w.grad for w in ws)])
    for a, b in zip(*results):
        assert_close_rel(a, b, 1e-12)


@pytest.mark.parametrize("mlp", MLPS)
@pytest.mark.parametrize("mode", ["target", "teach"])
@pytest.mark.parametrize("eta_float", [False, True])
def test_prefix_then_decode_steps_equal_one_call(mlp, mode, eta_float):
    inp = make_inputs(B=2, T=7, mlp=mlp)
    if eta_float:
        inp["eta"] = 0.25
    kw = dict(chunk_size=3, mlp=mlp, retention=0.9)
    y_full, st_full = call("torch", inp, mode, output_final_state=True, **kw)
    prefix = dict(inp, x=inp["x"][:, :2], signal=inp["signal"][:, :2],
                  eta=inp["eta"] if eta_float else inp["eta"][:, :2])
    _, st = call("torch", prefix, mode, output_final_state=True, **kw)
    st = st.detach()
    for t in range(2, 7):
        eta = inp["eta"] if eta_float else inp["eta"][:, t]
        y_t = fast_mlp_step(inp["x"][:, t], eta, state=st, mlp=mlp, retention=0.9,
                            **{mode: inp["signal"][:, t]})
        assert_close_rel(y_t, y_full[:, t], 1e-12, f"y at {t}")
    for a, b in zip(state_tensors(st), state_tensors(st_full)):
        if a.is_floating_point():
            assert_close_rel(a, b, 1e-12, "state")
        else:
            assert torch.equal(a, b), "position"


def test_decode_step_float32_state_with_bf16_inputs():
    inp = make_inputs(B=3, T=1, mlp="gelu", dtype=torch.bfloat16)
    st = FastMLPState.from_weights([w.float().expand(3, *w.shape).clone() for w in inp["weights"]], 1)
    w_before = st.w0.clone()
    y = fast_mlp_step(inp["x"][:, 0], inp["eta"][:, 0], state=st, target=inp["signal"][:, 0])
    assert y.dtype == torch.bfloat16 and y.shape == (3, D)
    assert st.w0.dtype == torch.float32 and not torch.equal(st.w0, w_before)   # C = 1: updated
    assert st.position.tolist() == [0, 0, 0]


# -- bfloat16 fast weights (weight_dtype) ----------------------------------------------------------

def _bf16_valued(t):
    return torch.equal(t.to(bf16).to(t.dtype), t)


@pytest.mark.parametrize("mlp,mode", [("gelu", "target"), ("swiglu", "teach")])
def test_bf16_weights_torch_matches_reference(mlp, mode):
    """The torch backend in float32 with bf16 fast weights against the float64 reference with the
    same rounding points: outputs, final state and gradients agree to float32 accuracy (a rounding
    that fell differently would show as ~4e-3; the functional's coefficients are bf16 values so
    that the gradient autograd hands to a bf16 state tensor is not rounded). The float64 torch
    backend agrees exactly."""
    inp = make_inputs(B=2, T=8, mlp=mlp)
    kw = dict(chunk_size=3, mlp=mlp, retention=0.9, weight_dtype=bf16, bf16_coeffs=True)
    ref = run_with_grads("reference", inp, mode, **kw)
    compare(run_with_grads("torch", inp, mode, **kw), ref, 1e-12, "float64")
    f32 = dict(inp, x=inp["x"].float(), eta=inp["eta"].float(), signal=inp["signal"].float(),
               weights=tuple(w.float() for w in inp["weights"]))
    got = run_with_grads("torch", f32, mode, **kw)
    compare(got, ref, 1e-5, "float32")
    weights, pending = got[0][1:1 + len(inp["weights"])], got[0][1 + len(inp["weights"]):-1]
    assert all(w.dtype == bf16 for w in weights) and all(u.dtype == torch.float32 for u in pending)
    assert all(_bf16_valued(w) for w in ref[0][1:1 + len(inp["weights"])])      # float64, rounded


def test_round_weight_keeps_exact_dtypes():
    """``keep_exact`` hands back a weight that float32 holds exactly (bf16, fp16) without a
    conversion pass, and still rounds or converts where the values would change."""
    from nested_kernels.ops.fast_mlp.inputs import round_weight
    w = torch.randn(4, 3).to(torch.bfloat16)
    assert round_weight(w, {}, torch.float32, keep_exact=True) is w
    assert round_weight(w, {}, torch.float32).dtype == torch.float32
    w32 = torch.randn(4, 3)
    assert round_weight(w32, {}, torch.float16, keep_exact=True).dtype == torch.float16    # not exact
    r = round_weight(w32, dict(weight_dtype="bfloat16"), torch.float32, keep_exact=True)
    assert r.dtype == torch.float32 and torch.equal(r, w32.to(torch.bfloat16).float())


def test_bf16_weights_round_at_chunk_ends():
    """Against the unrounded run the rounding is visible (the option does something), and one
    chunk by hand: W_1 = bf16(r·bf16(W_0) − Σ)."""
    inp = make_inputs(B=1, T=3, mlp="gelu")
    kw = dict(chunk_size=3, retention=0.9, output_final_state=True)
    _, st = call("reference", inp, weight_dtype=bf16, **kw)
    _, st_full = call("reference", inp, **kw)
    assert 0 < (st.w0 - st_full.w0).abs().max() <= 2 ** -8 * st_full.w0.abs().max()
    w0 = [w.to(bf16).to(f64) for w in inp["weights"]]
    _, by_hand = call("reference", dict(inp, weights=tuple(w0)), **kw)
    for w, h in zip(st.weights, by_hand.weights):
        assert torch.equal(w, h.to(bf16).to(f64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_weights_halve_state_memory(backend):
    inp = make_inputs(B=2, T=5, mlp="swiglu")
    inp = {k: v.float() if isinstance(v, torch.Tensor) else tuple(w.float() for w in v)
           for k, v in inp.items()}
    kw = dict(chunk_size=2, mlp="swiglu", output_final_state=True)
    _, st32 = call(backend, inp, **kw)
    _, st16 = call(backend, inp, weight_dtype=bf16, **kw)
    for w32, w16 in zip(st32.weights, st16.weights):
        assert w16.element_size() * 2 == w32.element_size() and w16.shape == w32.shape
    assert all(u.dtype == torch.float32 for u in st16.updates)    # the pending update is a float32 sum
    assert call(backend, inp, weight_dtype=torch.float32, **kw)[1].w0.dtype == torch.float32


@pytest.mark.parametrize("dtype", [f64, torch.float32])
def test_bf16_weights_prefix_then_decode_steps_equal_one_call(dtype):
    """fast_mlp_step with bf16 fast weights (float64: rounded values; float32: a bf16 state)."""
    inp = make_inputs(B=2, T=7, mlp="swiglu", dtype=dtype)
    kw = dict(mlp="swiglu", retention=0.9, weight_dtype=bf16)
    tol = 1e-12 if dtype == f64 else 1e-6
    y_full, st_full = call("torch", inp, chunk_size=3, output_final_state=True, **kw)
    prefix = dict(inp, x=inp["x"][:, :2], signal=inp["signal"][:, :2], eta=inp["eta"][:, :2])
    st = call("torch", prefix, chunk_size=3, output_final_state=True, **kw)[1].detach()
    for t in range(2, 7):
        y_t = fast_mlp_step(inp["x"][:, t], inp["eta"][:, t], state=st, target=inp["signal"][:, t], **kw)
        assert_close_rel(y_t, y_full[:, t], tol, f"y at {t}")
    assert st.w0.dtype == (f64 if dtype == f64 else bf16)
    for a, b in zip(state_tensors(st), state_tensors(st_full)):
        assert a.dtype == b.dtype
        if a.is_floating_point():
            assert_close_rel(a, b, tol, "state")
        else:
            assert torch.equal(a, b), "position"


@pytest.mark.parametrize("backend", BACKENDS)
def test_varlen_equals_separate_calls(backend):
    lengths = [3, 0, 5, 2]
    T = sum(lengths)
    cu = torch.tensor([0, 3, 3, 8, 10])
    inp = make_inputs(B=1, T=T, mlp="swiglu")
    kw = dict(chunk_size=2, mlp="swiglu", retention=0.9, output_final_state=True)
    y, st = call(backend, inp, cu_seqlens=cu, **kw)
    assert y.shape == (1, T, D)
    for n, (a, b) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        piece = dict(inp, x=inp["x"][:, a:b], eta=inp["eta"][:, a:b], signal=inp["signal"][:, a:b])
        y_n, st_n = call(backend, piece, **kw)
        if b > a:
            assert_close_rel(y[:, a:b], y_n, 1e-12, f"y of sequence {n}")
        for u, v in zip(state_tensors(st), state_tensors(st_n)):
            assert torch.allclose(u[n:n + 1], v, rtol=1e-12, atol=1e-14), f"state of sequence {n}"
    for w, w0 in zip(st.weights, inp["weights"]):
        assert torch.equal(w[1], w0), "zero-length sequence: unchanged"


@pytest.mark.parametrize("backend", BACKENDS)
def test_varlen_streaming_with_unaligned_positions(backend):
    """Two packed calls whose sequences end at different chunk positions == one call each."""
    first, second = [3, 0, 5, 2], [4, 2, 1, 0]
    total = [a + b for a, b in zip(first, second)]
    seqs = [make_inputs(B=1, T=n, mlp="gelu") for n in total]
    for s in seqs[1:]:
        s["weights"] = seqs[0]["weights"]
    kw = dict(chunk_size=3, retention=0.9, output_final_state=True)
    pack = lambda part: {k: (seqs[0]["weights"] if k == "weights" else torch.cat(  # noqa: E731
        [s[k][:, sl] for s, sl in zip(seqs, part)], 1)) for k in ("x", "weights", "eta", "signal")}
    cu = lambda ls: torch.tensor([0] + torch.tensor(ls).cumsum(0).tolist())  # noqa: E731
    p1 = pack([slice(0, a) for a in first])
    p2 = pack([slice(a, a + b) for a, b in zip(first, second)])
    _, st = call(backend, p1, cu_seqlens=cu(first), **kw)
    assert st.position.tolist() == [a % 3 for a in first]
    y2, st = call(backend, p2, cu_seqlens=cu(second), initial_state=st, **kw)
    offsets = cu(second).tolist()
    for n, s in enumerate(seqs):
        y_n, st_n = call(backend, s, **kw)
        assert_close_rel(y2[:, offsets[n]:offsets[n + 1]], y_n[:, first[n]:], 1e-12, f"y of {n}")
        for u, v in zip(state_tensors(st), state_tensors(st_n)):
            assert torch.allclose(u[n:n + 1], v, rtol=1e-12, atol=1e-14), f"state of sequence {n}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_sequence(backend):
    inp = make_inputs(B=2, T=0, mlp="gelu")
    y, st = call(backend, inp, chunk_size=2, output_final_state=True)
    assert y.shape == (2, 0, D)
    for w, w0 in zip(st.weights, inp["weights"]):
        assert torch.equal(w, w0.expand(2, *w0.shape))
    start = FastMLPState(*(torch.randn(2, *w.shape, dtype=f64) for w in inp["weights"]), None,
                         *(torch.randn(2, *w.shape, dtype=f64) for w in inp["weights"]), None,
                         torch.tensor([1, 0]), 2)
    y, st = call(backend, inp, chunk_size=2, initial_state=start, output_final_state=True)
    for a, b in zip(state_tensors(st), state_tensors(start)):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    y, st = call(backend, inp, chunk_size=2)
    assert y.shape == (2, 0, D) and st is None


def test_non_contiguous_inputs():
    inp = make_inputs(B=2, T=5, mlp="swiglu")
    y, st = call("torch", inp, chunk_size=2, mlp="swiglu", output_final_state=True)
    nc = dict(x=inp["x"].transpose(0, 1).contiguous().transpose(0, 1),
              weights=tuple(w.t().contiguous().t() for w in inp["weights"]),
              eta=inp["eta"].t().contiguous().t(), signal=inp["signal"][..., None].expand(2, 5, D, 2)[..., 0])
    assert not nc["x"].is_contiguous() and not nc["weights"][0].is_contiguous()
    for backend in BACKENDS:
        y2, st2 = call(backend, nc, chunk_size=2, mlp="swiglu", output_final_state=True)
        assert_close_rel(y2, y, 1e-13)
        for a, b in zip(state_tensors(st2), state_tensors(st)):
            assert torch.allclose(a, b, rtol=1e-13, atol=1e-15)


# -- errors (SPEC §8) -----------------------------------------------------------------------------

def _error_cases():
    B, T = 1, 4
    x = torch.randn(B, T, D)
    ws = make_weights("gelu", torch.float32)
    eta, sig = torch.rand(B, T), torch.randn(B, T, D)
    good = dict(x=x, weights=ws, eta=eta, target=sig, teach=None, chunk_size=2, mlp="gelu")
    st_bad_c = FastMLPState.from_weights([w.expand(1, *w.shape) for w in ws], 3)
    st_f32 = FastMLPState.from_weights([w.expand(1, *w.shape) for w in ws], 2)
    per_seq = tuple(w.expand(1, *w.shape) for w in ws)
    return {
        "rank": (dict(x=x[0]), "x"),
        "weights_shape": (dict(weights=(ws[0], ws[0])), "weights[1] (w_out)"),
        "weights_count": (dict(weights=ws + (ws[0],)), "weights"),
        "swiglu_count": (dict(mlp="swiglu"), "weights"),
        "eta_shape": (dict(eta=torch.rand(B, T + 1)), "eta"),
        "eta_type": (dict(eta="0.1"), "eta"),
        "target_shape": (dict(target=sig[..., :3]), "target"),
        "teach_shape": (dict(target=None, teach=sig[:, :2]), "teach"),
        "both_signals": (dict(teach=sig), "target / teach"),
        "no_signal": (dict(target=None), "target / teach"),
        "device": (dict(target=sig.to("meta")), "target"),
        "weight_device": (dict(weights=(ws[0], ws[1].to("meta"))), "weights[1] (w_out)"),
        "dtype": (dict(x=x.to(torch.int32)), "x"),
        "weight_dtype": (dict(weights=(ws[0].to(torch.int64), ws[1])), "weights[0] (w_in)"),
        "cu_dtype": (dict(cu_seqlens=torch.tensor([0.0, 4.0])), "cu_seqlens"),
        "cu_start": (dict(cu_seqlens=torch.tensor([1, 4])), "cu_seqlens"),
        "cu_decreasing": (dict(cu_seqlens=torch.tensor([0, 3, 2, 4])), "cu_seqlens"),
        "cu_end": (dict(cu_seqlens=torch.tensor([0, 3])), "cu_seqlens"),
        "cu_batch": (dict(x=x.expand(2, T, D), eta=eta.expand(2, T), target=sig.expand(2, T, D),
                          cu_seqlens=torch.tensor([0, 4])), "cu_seqlens"),
        "chunk_negative": (dict(chunk_size=-2), "chunk_size"),
        "chunk_zero": (dict(chunk_size=0), "chunk_size"),
        "mlp_option": (dict(mlp="relu"), "mlp"),
        "backend_option": (dict(backend="fast"), "backend"),
        "residual": (dict(residual="yes"), "residual"),
        "retention": (dict(retention=float("nan")), "retention"),
        "state_type": (dict(initial_state={"w": ws}), "initial_state"),
        "state_tuple_shape": (dict(initial_state=ws), "initial_state[0] (w_in)"),
        "state_chunk": (dict(initial_state=st_bad_c), "initial_state"),
        "state_mlp": (dict(initial_state=st_bad_c, chunk_size=3, mlp="swiglu",
                           weights=make_weights("swiglu", torch.float32)), "initial_state"),
        "weight_dtype_fp16": (dict(weight_dtype=torch.float16), "weight_dtype"),
        "weight_dtype_str": (dict(weight_dtype="bfloat16"), "weight_dtype"),
        "state_weight_dtype": (dict(initial_state=st_f32, weight_dtype=bf16), "initial_state.w0 (w_in)"),
        "state_tuple_weight_dtype": (dict(initial_state=tuple(w.to(bf16) for w in per_seq),
                                          weight_dtype=torch.float32), "initial_state[0] (w_in)"),
    }, good


@pytest.mark.parametrize("case", sorted(_error_cases()[0]))
def test_errors(case):
    cases, good = _error_cases()
    override, name = cases[case]
    args = {**good, **override}
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}"):   # the message starts with the name
        fast_mlp(args.pop("x"), args.pop("weights"), args.pop("eta"), **args)


def test_step_errors():
    ws = make_weights("gelu", torch.float32)
    st = FastMLPState.from_weights([w.expand(2, *w.shape).clone() for w in ws], 2)
    x, sig = torch.randn(2, D), torch.randn(2, D)
    with pytest.raises(ValueError, match="^state"):
        fast_mlp_step(x, 0.1, state=ws, target=sig)
    with pytest.raises(ValueError, match="^state"):
        fast_mlp_step(x, 0.1, state=st, target=sig, mlp="swiglu")
    with pytest.raises(ValueError, match="^x"):
        fast_mlp_step(x[:1], 0.1, state=st, target=sig)
    with pytest.raises(ValueError, match="^eta"):
        fast_mlp_step(x, torch.rand(3), state=st, target=sig)
    with pytest.raises(ValueError, match="^target / teach"):
        fast_mlp_step(x, 0.1, state=st)
    with pytest.raises(ValueError, match="^weight_dtype"):
        fast_mlp_step(x, 0.1, state=st, target=sig, weight_dtype=torch.float16)
    with pytest.raises(ValueError, match=r"^state.w0 \(w_in\) must be bfloat16"):     # a float32 state
        fast_mlp_step(x, 0.1, state=st, target=sig, weight_dtype=bf16)
    st16 = FastMLPState(st.w0.to(bf16), st.w1.to(bf16), None, st.u0, st.u1, None, st.position, 2)
    with pytest.raises(ValueError, match=r"^state.w0 \(w_in\) must be float32"):
        fast_mlp_step(x, 0.1, state=st16, target=sig)


def test_cuda_backend_on_cpu_is_a_clear_error():
    inp = make_inputs(B=1, T=3)
    with pytest.raises(RuntimeError, match="backend 'cuda'.*CUDA tensors"):
        call("cuda", inp, chunk_size=2)
    assert call("auto", inp, chunk_size=2)[0].shape == (1, 3, D)    # auto falls back to torch


@pytest.mark.parametrize("weight_dtype", [None, "bfloat16"])
def test_cuda_backend_dispatch_with_stand_in_kernel(monkeypatch, weight_dtype):
    """The cuda backend's glue (forward through ``outer_update``, backward through the torch
    backend), with a PyTorch stand-in for the kernel so that it runs on the CPU; with bf16 fast
    weights the chunk loop rounds the kernel's float32 result."""
    calls = []

    def outer_update(weight, left, right, eta, retention, out=None):
        calls.append((tuple(weight.shape), tuple(left.shape)))
        return retention * weight - torch.einsum("ntp,nt,ntq->npq", left, eta, right)

    monkeypatch.setitem(sys.modules, "nested_kernels.ops.fast_mlp.cuda",
                        types.SimpleNamespace(outer_update=outer_update))
    inp = make_inputs(B=2, T=7, mlp="swiglu")
    results = []
    for backend in ("cuda", "torch"):
        leaves = [inp["x"], *inp["weights"], inp["eta"], inp["signal"]]
        leaves = [t.clone().requires_grad_(True) for t in leaves]
        inputs = dict(x=leaves[0], w0=leaves[1], w1=leaves[2], w2=leaves[3], eta=leaves[4],
                      target=leaves[5])
        cfg = dict(chunk_size=3, mlp="swiglu", residual=True, retention=0.9, eta_value=None,
                   output_final_state=True, weight_dtype=weight_dtype, backend=backend)
        out = api.OP(cfg, **inputs)
        outs = [out[n] for n in ("y", "w0", "w1", "w2", "u0", "u1", "u2")]
        sum((o * (i + 1)).sum() for i, o in enumerate(outs)).backward()
        results.append((outs, [t.grad for t in leaves]))
    assert len(calls) == 2 * 3                     # two complete chunks × three weights
    assert calls[0] == ((2, FH, D), (2, 3, FH))
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        assert_close_rel(a, b, 1e-12)


# -- machinery --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("varlen", [False, True])
def test_opcheck(backend, varlen):
    inp = make_inputs(B=1, T=5, mlp="gelu")
    ws = [w.expand(1, *w.shape).clone() for w in inp["weights"]]
    inputs = dict(x=inp["x"], w0=None, w1=None, w2=None, eta=inp["eta"], target=None, teach=inp["signal"],
                  s_w0=ws[0], s_w1=ws[1], s_w2=None, s_u0=0.1 * ws[0], s_u1=0.1 * ws[1], s_u2=None,
                  position0=torch.tensor([1]), cu_seqlens=None)
    if varlen:
        inputs.update(w0=inp["weights"][0], w1=inp["weights"][1], s_w0=None, s_w1=None, s_u0=None,
                      s_u1=None, position0=None, cu_seqlens=torch.tensor([0, 2, 5]))
    inputs = {n: None if t is None else t.clone().requires_grad_(t.is_floating_point())
              for n, t in inputs.items()}
    cfg = dict(chunk_size=2, mlp="gelu", residual=True, retention=0.9, eta_value=None,
               output_final_state=True, backend=backend)
    tensors, config = _pack("fast_mlp", api.INPUTS, inputs, cfg)
    torch.library.opcheck(api.OP.op, (tensors, config))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_bf16_weights(backend):
    """float32 inputs, a bf16 initial state mid-chunk: the fake outputs' dtypes (bf16 weights,
    float32 pending update) and the gradients go through the registered op."""
    inp = make_inputs(B=1, T=5, mlp="gelu", dtype=torch.float32)
    ws = [w.expand(1, *w.shape).to(bf16) for w in inp["weights"]]
    inputs = dict(x=inp["x"], w0=None, w1=None, w2=None, eta=inp["eta"], target=inp["signal"], teach=None,
                  s_w0=ws[0], s_w1=ws[1], s_w2=None, s_u0=0.1 * ws[0].float(), s_u1=0.1 * ws[1].float(),
                  s_u2=None, position0=torch.tensor([1]), cu_seqlens=None)
    inputs = {n: None if t is None else t.clone().requires_grad_(t.is_floating_point())
              for n, t in inputs.items()}
    cfg = dict(chunk_size=2, mlp="gelu", residual=True, retention=0.9, eta_value=None,
               output_final_state=True, weight_dtype="bfloat16", backend=backend)
    tensors, config = _pack("fast_mlp", api.INPUTS, inputs, cfg)
    torch.library.opcheck(api.OP.op, (tensors, config))
    out = api.OP(cfg, **inputs)
    assert [out[n].dtype for n in ("w0", "w1", "u0", "u1")] == [bf16, bf16, torch.float32, torch.float32]


@pytest.mark.parametrize("dtype,weight_dtype", [(f64, None), (torch.float32, bf16)])
def test_torch_compile_fullgraph(dtype, weight_dtype):
    inp = make_inputs(B=2, T=5, mlp="swiglu", dtype=dtype)

    def f(x, w0, w1, w2, eta, target):
        y, st = fast_mlp(x, (w0, w1, w2), eta, chunk_size=2, target=target, mlp="swiglu", retention=0.9,
                         output_final_state=True, weight_dtype=weight_dtype, backend="torch")
        return y, st.w0, st.u2

    args = [inp["x"], *inp["weights"], inp["eta"], inp["signal"]]
    compiled = torch.compile(f, fullgraph=True)
    results = []
    for fn in (f, compiled):
        leaves = [a.clone().requires_grad_(True) for a in args]
        outs = fn(*leaves)
        sum((o * (i + 1)).sum() for i, o in enumerate(outs)).backward()
        results.append((outs, [a.grad for a in leaves]))
    (o_e, g_e), (o_c, g_c) = results
    for a, b in zip(o_c + tuple(g_c), o_e + tuple(g_e)):
        assert_close_rel(a, b, 1e-12)


# -- GPU ------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("mlp", MLPS)
def test_cuda_backend_matches_reference(mlp):
    """The compiled kernel path (``outer_update``) vs the float64 reference (SPEC §7 kernel bound)."""
    pytest.importorskip("nested_kernels._C")
    inp = make_inputs(B=2, T=37, mlp=mlp, d=64, f=128)
    kw = dict(chunk_size=16, mlp=mlp, retention=0.9)
    ref = run_with_grads("torch", inp, "target", **kw)
    cuda = {k: (tuple(w.float().cuda() for w in v) if k == "weights" else v.float().cuda())
            for k, v in inp.items()}
    got = run_with_grads("cuda", cuda, "target", **kw)
    compare(got, ref, tolerance("kernel", torch.float32), "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_backend_half_precision_and_auto(dtype):
    pytest.importorskip("nested_kernels._C")
    from nested_kernels.core.backends import select_backend
    inp = make_inputs(B=2, T=40, mlp="gelu", d=64, f=256)
    kw = dict(chunk_size=16, mlp="gelu", retention=0.9)
    ref = run_with_grads("reference", inp, "teach", **kw)
    half = {k: (tuple(w.to(dtype).cuda() for w in v) if k == "weights" else v.to(dtype).cuda())
            for k, v in inp.items()}
    compare(run_with_grads("cuda", half, "teach", **kw), ref, tolerance("kernel", dtype), "cuda")
    x = half["x"]
    cfg = dict(chunk_size=16, mlp="gelu", residual=True, retention=0.9, eta_value=0.1,
               output_final_state=False)
    auto = "triton" if "triton" in api.BACKENDS else "cuda"     # api.AUTO_ORDER: triton first
    assert select_backend("fast_mlp", "auto", api.BACKENDS, x.device, dict(x=x), cfg, api.AUTO_ORDER) == auto
