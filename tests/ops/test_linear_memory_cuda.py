"""The ``cuda`` backend of ``linear_memory``: the Triton backend with the CUDA state walks of
csrc/linear_memory/walk.cu (``ops/linear_memory/cuda_walk.py``).

On the CPU: what it covers and refuses, that ``auto`` never picks it, the binding's argument checks
(before any CUDA call) and that every covered configuration fits one ring stage of shared memory.
On the GPU (``pytest -m gpu``): outputs, final states and the gradients of a random functional of
all of them with respect to every input against the float64 reference and against the triton
backend, over gates × target × read × chunk_size (1 = the exact rule) × K, V × fixed / varlen with
an empty sequence / resumed, in bfloat16 and float16; fresh random inputs, outputs NaN-poisoned
(conftest); and that the Triton walks do not run.
"""
from __future__ import annotations

import importlib.util
import itertools

import pytest
import torch

from nested_kernels.ops.linear_memory import api, cuda_walk, linear_memory
from nested_kernels.testing import assert_run_close, projection_loss, rel_error, tolerance
from test_linear_memory_triton import DEVICE, make, run   # the Triton tests' data and runner

pytest.importorskip("triton")

needs_ext = pytest.mark.skipif(importlib.util.find_spec("nested_kernels._C") is None,
                               reason="nested_kernels._C is not built")


def cfg(**kw):
    return dict(dict(chunk_size=64, target="external", read="after", scale=1.0, output_final_state=True), **kw)


def inputs(K=64, V=64, dtype=torch.bfloat16, device="cpu", gates="abm", **kw):
    """The op's input dict (``api.INPUTS``; no initial state) of ``make``'s tensors, then ``kw``."""
    x, _ = make(T=8, K=K, V=V, gates=gates)
    out = dict.fromkeys(api.INPUTS)
    out.update({n: None if t is None else t.to(device, dtype) for n, t in x.items()}, **kw)
    return out


def test_registered_and_not_auto():
    assert api.BACKENDS["cuda"] is cuda_walk.BACKEND
    assert cuda_walk.BACKEND.experimental     # auto, verify and the bench skip it
    assert "CUDA tensors" in cuda_walk.unsupported(inputs(), cfg())
    x = inputs()
    with pytest.raises(RuntimeError, match="CUDA"):
        linear_memory(x["q"], x["k"], x["v"], x["eta"], chunk_size=16, backend="cuda")


@pytest.mark.parametrize("change,kw,what", [
    (dict(dtype=torch.float32), {}, "bfloat16 / float16"),
    (dict(K=32, V=32), {}, "K=32"),
    (dict(K=64, V=48), {}, "V=48"),
    ({}, dict(chunk_size=128), "chunk_size=128"),
])
def test_walk_unsupported_reasons(change, kw, what, monkeypatch):
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "bf16")
    assert what in cuda_walk.walk_unsupported(inputs(**change), cfg(**kw))


def test_walk_numerics(monkeypatch):
    """Only the Triton defaults of each input dtype (bf16 products over bf16 factors, tf32r over
    float32) and one token dtype."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "bf16")
    assert cuda_walk.walk_unsupported(inputs(), cfg()) is None
    x = inputs()
    assert "one token dtype" in cuda_walk.walk_unsupported(dict(x, k=x["k"].half()), cfg())
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_STORE", "fp32")
    assert "_STORE" in cuda_walk.walk_unsupported(inputs(), cfg())
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "tf32r")
    assert cuda_walk.walk_unsupported(inputs(dtype=torch.float16), cfg()) is None
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "tf32")
    assert "tf32r" in cuda_walk.walk_unsupported(inputs(dtype=torch.float16), cfg())


def _dims(ext, **kw):
    d = dict(token_dtype=ext.DTYPE_BFLOAT16, eta_dtype=ext.DTYPE_FLOAT32, alpha_dtype=ext.DTYPE_FLOAT32, N=1, T=64,
             H=1, K=128, V=128, BT=64, has_beta=0, has_mu=0, exact=0, has_off=1, plain_x=1, output_final=0, read=0)
    return dict(d, **kw)


@needs_ext
def test_binding_rejects_bad_arguments_without_a_gpu():
    import nested_kernels._C as ext
    ext.linear_memory_walk({}, _dims(ext, N=0), False, 0)      # no work: nothing is checked past the sizes
    for kw, what in [(dict(K=32), "K must be 64 or 128"), (dict(V=48), "V must be"), (dict(BT=128), "BT must be"),
                     (dict(token_dtype=ext.DTYPE_FLOAT32), "bfloat16 or float16"), (dict(read=3), "read must be"),
                     (dict(plain_x=1, has_mu=1), "no momentum"), (dict(N=70000), "65535"),
                     (dict(eta_dtype=7), "eta dtype code")]:
        with pytest.raises(ValueError, match=what):
            ext.linear_memory_walk({}, _dims(ext, **kw), False, 0)
    with pytest.raises(ValueError, match="null pointer"):
        ext.linear_memory_walk({}, _dims(ext), False, 0)
    with pytest.raises(ValueError, match="unknown pointer xq"):
        ext.linear_memory_walk({"xq": 0}, _dims(ext), False, 0)
    d = _dims(ext)
    del d["BT"]
    with pytest.raises(ValueError, match="dims lacks BT"):
        ext.linear_memory_walk({}, d, False, 0)


@needs_ext
def test_every_covered_configuration_fits_shared_memory():
    """At least one ring stage for every gate set, target, read, tile, K, V and dtype, both walks;
    the η-only issue shape gets the deepest ring (3 stages)."""
    import nested_kernels._C as ext
    for dt, K, V, BT, beta, mu, exact, read, bwd in itertools.product(
            (ext.DTYPE_BFLOAT16, ext.DTYPE_FLOAT16), (64, 128), (16, 128), (16, 32, 64), (0, 1), (0, 1), (0, 1),
            (0, 2), (False, True)):
        plain = int(not (beta or mu or exact))
        d = _dims(ext, token_dtype=dt, K=K, V=V, BT=BT, has_beta=beta, has_mu=mu, exact=exact, read=read,
                  plain_x=plain)
        assert ext.linear_memory_walk_stages(d, bwd) >= 1, d
    assert ext.linear_memory_walk_stages(_dims(ext), False) == 3
    assert ext.linear_memory_walk_stages(_dims(ext), True) == 3


# -- GPU ------------------------------------------------------------------------------------------

# (gates, target, read, chunk_size, K, V, batch, η scale): every gate set, target, read and chunk
# size, K ≠ V, fixed-length / varlen with an empty sequence / resumed mid-chunk. The inputs are
# well conditioned (test_grid_cases_are_well_conditioned): self targets without α run away at
# η ~ 1 and "abm self before C1" amplified bfloat16 input rounding 100-fold, hence η × 0.1 there;
# "ab self chunk C16" was fixed-length until 2026-12-07c, where β drives the final M from norm 64
# to 0.46 and rounding the inputs alone moved it by 4.3e-2 (the H100 compared cuda and triton
# within 5e-3 there, both 4.6e-2 from float64 on M only).
GRID = [
    ("", "external", "after", 64, 128, 128, "fixed", 1.0),       # the case: plain tiles
    ("a", "external", "before", 32, 64, 64, "varlen", 1.0),      # plain tiles with α
    ("ab", "self", "chunk", 16, 64, 64, "varlen", 1.0),
    ("abm", "external", "after", 64, 128, 128, "resumed", 1.0),
    ("m", "self", "before", 32, 128, 128, "varlen", 0.1),
    ("bm", "external", "chunk", 64, 64, 32, "fixed", 1.0),
    ("am", "external", "after", 1, 64, 64, "fixed", 1.0),
    ("abm", "self", "before", 1, 64, 64, "varlen", 0.1),
    ("b", "external", "after", 1, 128, 16, "fixed", 1.0),
    ("abm", "self", "after", 16, 64, 64, "resumed", 1.0),
]
LENGTHS = (67, 0, 233)


def grid_case(gates, C, K, V, batch, seed, eta_scale=1.0):
    """(x, st, extra kwargs) of a grid case: B = H = 2 and T = 203, or packed sequences of LENGTHS,
    or two sequences resuming at positions inside a chunk; always an initial state; η scaled by
    ``eta_scale``."""
    if batch == "varlen":
        x, st = make(B=1, T=sum(LENGTHS), N=len(LENGTHS), H=2, K=K, V=V, gates=gates, seed=seed)
        extra = dict(cu_seqlens=torch.tensor([0, *itertools.accumulate(LENGTHS)], dtype=torch.int32))
    else:
        resume = [5, C - 3] if batch == "resumed" else None
        x, st = make(B=2, T=203, H=2, K=K, V=V, gates=gates, seed=seed, resume=resume)
        extra = {}
    x["eta"] = x["eta"] * eta_scale
    return x, st, extra


@pytest.mark.parametrize("gates,target,read,C,K,V,batch,eta_scale", GRID)
def test_grid_cases_are_well_conditioned(gates, target, read, C, K, V, batch, eta_scale):
    """Rounding a grid case's inputs to bfloat16 moves its float64 result (torch backend, CPU) by at
    most 1.5e-2 on every output and gradient, and |o| stays ≤ 1e3: a kernel compared with the
    reference at the 2e-2 bound keeps at least 5e-3 for its own error."""
    x, st, extra = grid_case(gates, C, K, V, batch, 31 + len(gates), eta_scale)
    kw = dict(chunk_size=C, target=target, read=read, scale=0.7, **extra)
    exact, dexact = run("torch", x, st, torch.float64, **dict(kw))
    rounded = {n: None if t is None else t.to(torch.bfloat16).double() for n, t in x.items()}
    got, dgot = run("torch", rounded, st, torch.float64, **dict(kw))
    errs = {n: rel_error(got[n], exact[n]) for n in exact if n != "position"}
    errs.update({"d" + n: rel_error(dgot[n], dexact[n]) for n in dexact})
    assert max(errs.values()) <= 1.5e-2, errs
    assert exact["o"].abs().max() <= 1e3


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("gates,target,read,C,K,V,batch,eta_scale", GRID)
def test_gpu_matches_reference_and_triton(dtype, gates, target, read, C, K, V, batch, eta_scale):
    x, st, extra = grid_case(gates, C, K, V, batch, 31 + len(gates), eta_scale)
    kw = dict(chunk_size=C, target=target, read=read, scale=0.7, **extra)
    try:
        got, dgot = run("cuda", x, st, dtype, **dict(kw))
    except RuntimeError as exc:     # a configuration the backend refuses (triton_backend.unsupported)
        if "cannot run these inputs" not in str(exc):
            raise
        pytest.skip(str(exc))
    tri, dtri = run("triton", x, st, dtype, **dict(kw))
    ref, dref = run("reference", x, st, dtype, **dict(kw))
    for n in got:       # the same numerics as the Triton walks, up to the order of the sums
        if n != "position":
            assert rel_error(got[n], tri[n]) < 5e-3, n
    for n in dgot:
        assert rel_error(dgot[n], dtri[n]) < 5e-3, "d" + n
    assert_run_close(got, dgot, ref, dref, tolerance("cuda", dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gpu_no_initial_or_final_state(dtype):
    """Zero initial states, no final state: outputs and the token gradients against the reference."""
    x, _ = make(B=2, T=150, H=2, K=128, V=128, gates="am", seed=41)

    def call(backend):
        dev, dt = ("cpu", torch.float64) if backend == "reference" else (DEVICE, dtype)
        leaves = {n: t.to(dev, dt).requires_grad_(True) for n, t in x.items() if t is not None}
        o, fs = linear_memory(*[leaves.get(n) for n in ("q", "k", "v", "eta", "log_alpha", "beta", "mu")],
                              chunk_size=32, backend=backend)
        assert fs is None
        grads = torch.autograd.grad(projection_loss(dict(o=o)), list(leaves.values()))
        return o, dict(zip(leaves, grads))

    o, do = call("cuda")
    ref, dref = call("reference")
    tol = tolerance("cuda", dtype)
    assert rel_error(o, ref) <= tol
    for n in dref:
        assert rel_error(do[n], dref[n]) <= tol, "d" + n


@pytest.mark.gpu
def test_gpu_triton_walks_do_not_run(monkeypatch):
    """backend="cuda" runs neither ``_state_fwd_kernel`` nor ``_state_bwd_kernel``."""
    from nested_kernels.ops.linear_memory import triton_bwd, triton_fwd
    monkeypatch.setattr(triton_fwd, "_state_fwd_kernel", None)
    monkeypatch.setattr(triton_bwd, "_state_bwd_kernel", None)
    x, st, _ = grid_case("abm", 64, 64, 64, "fixed", seed=5)
    got, dgot = run("cuda", x, st, torch.bfloat16, chunk_size=64)
    assert torch.isfinite(got["o"]).all() and all(torch.isfinite(g).all() for g in dgot.values())


# -- the launcher against the binding, on the CPU -------------------------------------------------

class _Stub:
    """A Triton kernel that does nothing (``kernel[grid](...)``)."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


_FLOAT32_PTRS = ("tsc", "m0", "s0", "mc0", "m_out", "s_out", "mc_out", "dmf", "dsf", "dmcf", "dm0", "ds0", "dmc0")


@needs_ext
@pytest.mark.skipif(torch.cuda.is_available(), reason="hands CPU addresses to the binding: CPU machine only")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("gates,target,read,C,batch", [
    ("", "external", "after", 16, "fixed"), ("a", "external", "chunk", 16, "varlen"),
    ("", "self", "before", 16, "fixed"), ("ab", "self", "chunk", 16, "resumed"),
    ("abm", "external", "after", 16, "resumed"), ("m", "self", "before", 16, "varlen"),
    ("bm", "external", "chunk", 16, "fixed"), ("am", "external", "after", 1, "fixed"),
    ("abm", "self", "before", 1, "varlen"), ("b", "external", "chunk", 1, "fixed"),
])
@pytest.mark.parametrize("keep", [True, False], ids=["keep", "recompute"])
def test_launcher_dicts_pass_the_binding_checks(dtype, gates, target, read, C, batch, keep, monkeypatch):
    """forward and backward of the cuda backend with every Triton kernel stubbed out: each walk's
    pointer / dims dictionaries pass the binding's checks (names, dtype codes, sizes, the pointers
    the options need, a ring stage that fits) and stop only at the first CUDA call (no GPU here);
    the pointers the kernels read as float32 / int64 are of those dtypes, all contiguous."""
    import nested_kernels._C as ext
    from nested_kernels.ops.linear_memory import triton_backend as tb, triton_bwd, triton_bwd_plain, triton_fwd
    for mod, names in ((triton_fwd, ("_prep_kernel", "_out_kernel", "_state_fwd_kernel")),
                       (triton_bwd, ("_grad_kernel", "_grad_nn_kernel", "_grad_dk_kernel", "_state_bwd_kernel")),
                       (triton_bwd_plain, ("_plain_dv_kernel", "_plain_dqk_kernel"))):
        for n in names:
            monkeypatch.setattr(mod, n, _Stub() if "state" not in n else None)   # the Triton walks must not run
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "bf16" if dtype == torch.bfloat16 else "tf32r")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_KEEP_FACTORS", "1" if keep else "0")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_EXACT_TILE", "32")
    calls = []

    class Ext:      # the real binding; on this GPU-less machine it must get as far as cudaGetDevice
        def linear_memory_walk(self, ptrs, dims, backward, stream):
            with pytest.raises(RuntimeError, match="cudaGetDevice"):
                ext.linear_memory_walk(ptrs, dims, backward, stream)
            assert ext.linear_memory_walk_stages(dims, backward) >= 1
            calls.append(backward)

    real_launch = cuda_walk._launch

    def launch(a, ptrs, backward, output_final=False):
        for n, t in ptrs.items():
            if t is not None:
                assert t.is_contiguous(), n
                if n in _FLOAT32_PTRS:
                    assert t.dtype == torch.float32, n
                if n in ("pos", "cu", "tile_base"):
                    assert t.dtype == torch.int64, n
                if n in ("xw", "xz", "yw", "yz", "qw", "qz", "xu", "yu", "tiles_m", "tiles_s"):
                    assert t.dtype == cuda_walk.NUMERICS[dtype][1], n
                if n in ("k", "v", "dO"):
                    assert t.dtype == dtype, n
        real_launch(a, ptrs, backward, output_final)

    monkeypatch.setattr(cuda_walk, "_launch", launch)
    monkeypatch.setattr(cuda_walk, "cuda_extension", lambda: Ext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: __import__("contextlib").nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda d=None: type("S", (), {"cuda_stream": 0})())

    x, st, extra = grid_case(gates, max(C, 16), 64, 64 if target == "self" else 16, batch, seed=3)
    inp = dict.fromkeys(api.INPUTS)
    inp.update({n: None if t is None else t.to(dtype) for n, t in x.items()})
    inp.update(m0=st["M"].float(), s0=None if st.get("S") is None else st["S"].float())
    if "position" in st:
        inp.update(m_chunk0=st["M_chunk"].float(), position0=st["position"])
    if "cu_seqlens" in extra:
        inp["cu_seqlens"] = extra["cu_seqlens"].to(torch.int64)
    c = dict(chunk_size=C, target=target, read=read, scale=0.5, output_final_state=True, keep_factors=keep)
    out = tb.forward(inp, c, walk="cuda")
    assert calls == [False]
    res = dict(zip(("tile_m", "tile_s", "tile_factors", "tile_ainv", "tile_scalars"), out[5:]))
    if not keep:
        res = {n: t.new_empty(0) for n, t in res.items()}      # the backward recomputes the tile states
    grads = dict(o=torch.ones_like(out[0]), M=torch.ones_like(out[1]), M_chunk=torch.ones_like(out[3]))
    if inp["mu"] is not None:
        grads["S"] = torch.ones_like(out[2])
    tb.backward(inp, res, grads, c, walk="cuda")
    assert calls == [False] + ([] if keep else [False]) + [True]
