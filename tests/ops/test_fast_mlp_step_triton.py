"""The Triton ``fast_mlp_step`` (under TRITON_INTERPRET=1 on CPU, tiny shapes): decode streams
crossing chunk boundaries against one float64 call of the full op (gelu / silu / swiglu, target or
teach, η per token or a number, retention, residual), dtypes, several blocks, in-place state
semantics, fallbacks and errors."""
from __future__ import annotations

import pytest
import torch

from nested_kernels import fast_mlp_step
from nested_kernels.cases import Case, make_inputs
from nested_kernels.step_check import call_step, prefix_state, stream_errors, tokens
from nested_kernels.testing import assert_close_rel, tolerance

OP = "fast_mlp"


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    """Tiles of 16 × 16: several blocks along D and F at the tiny test sizes."""
    monkeypatch.setenv("NESTED_KERNELS_FM_STEP_BLOCKS", "16,16")


def case(dtype=torch.float32, *, mlp="gelu", C=3, T=9, B=2, D=24, F=40, signal="target", eta_kind="tensor", **kw):
    return Case(OP, dict(B=B, T=T, D=D, F=F), dtype, dict(mlp=mlp, chunk_size=C, **kw),
                dict(signal=signal, eta_kind=eta_kind))


def check(c, prefix=2, seed=0):
    errs = stream_errors(c, "cpu", "triton", prefix, seed)
    tol = tolerance("kernel", c.dtype)
    bad = {n: e for n, e in errs.items() if not e <= tol}
    assert not bad, f"relative errors above {tol}: {bad}"


GRID = [  # mlp, F, signal, eta kind, residual, retention, C
    ("gelu", 40, "target", "tensor", True, 1.0, 3),
    ("silu", 40, "teach", "float", False, 0.9, 2),
    ("swiglu", 36, "target", "float", True, 0.95, 3),
    ("swiglu", 36, "teach", "tensor", False, 1.0, 1),
    ("gelu", 33, "teach", "tensor", False, 0.8, 4),
]


@pytest.mark.parametrize("mlp,F,signal,eta_kind,residual,retention,C", GRID)
def test_stream_matches_full_op(mlp, F, signal, eta_kind, residual, retention, C):
    check(case(mlp=mlp, F=F, signal=signal, eta_kind=eta_kind, residual=residual, retention=retention, C=C))


@pytest.mark.parametrize("dtype,mlp", [(torch.float16, "swiglu"), (torch.bfloat16, "gelu")])
def test_half_precision_inputs(dtype, mlp):
    check(case(dtype, mlp=mlp, F=36))


@pytest.mark.parametrize("prefix", [2, 3, 4])      # C = 3: the last token of a chunk, a chunk start, mid-chunk
@pytest.mark.parametrize("mlp", ["silu", "swiglu"])
def test_equals_torch_step_in_place(prefix, mlp):
    c = case(mlp=mlp, T=6, retention=0.9)
    t = make_inputs(c, "cpu", 0)
    st, tok = prefix_state(c, t, prefix), tokens(c, t, prefix)
    ref = st.clone()
    ptrs = {n: x.data_ptr() for n, x in st.tensors().items() if x is not None}
    y = call_step(c, tok, st, "triton")
    y_ref = call_step(c, tok, ref, "torch")
    assert y.dtype == tok["x"].dtype and torch.isfinite(y).all()
    assert {n: x.data_ptr() for n, x in st.tensors().items() if x is not None} == ptrs, "state must be updated in place"
    assert_close_rel(y, y_ref, 1e-5, "y")
    for n, x in st.tensors().items():
        if x is not None and n != "position":
            assert_close_rel(x, getattr(ref, n), 1e-5, n)
    assert torch.equal(st.position, ref.position)


def test_strided_inputs():
    """x and target as rows of larger tensors (row stride ≠ D)."""
    c = case(T=4)
    t = make_inputs(c, "cpu", 3)
    st, tok = prefix_state(c, t, 3), tokens(c, t, 3)
    ref = st.clone()
    both = torch.cat([tok["x"], tok["target"]], dim=1)
    y = fast_mlp_step(both[:, :24], tok["eta"], state=st, target=both[:, 24:], backend="triton")
    assert_close_rel(y, fast_mlp_step(tok["x"], tok["eta"], state=ref, target=tok["target"], backend="torch"),
                     1e-5, "y")
    assert_close_rel(st.u0, ref.u0, 1e-5, "u0")


def test_unsupported_states_and_inputs_are_refused_with_a_reason():
    c = case(T=3)
    t = make_inputs(c, "cpu", 0)
    st, tok = prefix_state(c, t, 2), tokens(c, t, 2)
    with pytest.raises(RuntimeError, match="float64"):
        fast_mlp_step(tok["x"].double(), tok["eta"], state=st, target=tok["target"], backend="triton")
    st.u1 = st.u1.t().contiguous().t() if st.u1.dim() == 2 else st.u1.transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(RuntimeError, match="contiguous"):
        fast_mlp_step(tok["x"], tok["eta"], state=st, target=tok["target"], backend="triton")
    with pytest.raises(ValueError, match="x"):
        fast_mlp_step(tok["x"][:, :5], tok["eta"], state=st, target=tok["target"], backend="triton")
    assert fast_mlp_step(tok["x"], tok["eta"], state=st, target=tok["target"]) is not None   # auto: torch on CPU
