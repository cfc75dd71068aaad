"""The fused Triton ``linear_memory_step`` (under TRITON_INTERPRET=1 on CPU, tiny shapes): decode
streams crossing chunk boundaries against one float64 call of the full op, every option and
dtype, in-place state semantics, the chunk-start copy, fallbacks and errors."""
from __future__ import annotations

import pytest
import torch

from nested_kernels import LinearMemoryState, linear_memory_step
from nested_kernels.cases import Case
from nested_kernels.core.backends import select_backend
from nested_kernels.core.step_backend import with_state
from nested_kernels.ops.linear_memory import api
from nested_kernels.step_check import assert_step_in_place, call_step, step_inputs
from nested_kernels.step_check import assert_stream_close as check
from nested_kernels.testing import assert_close_rel

ALL = ("log_alpha", "beta", "mu")
OP = "linear_memory"


def case(dtype=torch.float32, *, gates=ALL, C=4, T=11, B=2, H=2, K=8, V=8, init=True, **kw):
    return Case(OP, dict(B=B, T=T, H=H, K=K, V=V), dtype, dict(chunk_size=C, **kw),
                dict(gates=gates, initial_state=init))


# every gate set, target and read appears; chunk sizes 1 (exact rule), 3 and 4 with 9 steps cross
# several chunk boundaries, starting mid-chunk
GRID = [
    ((), "external", "after", 4), (("log_alpha",), "external", "before", 3),
    (("log_alpha", "beta"), "external", "chunk", 4), (ALL, "external", "after", 1),
    (("mu",), "external", "before", 4), (("beta", "mu"), "external", "chunk", 3),
    ((), "self", "chunk", 4), (("log_alpha", "beta"), "self", "after", 3),
    (ALL, "self", "before", 4), (("log_alpha", "mu"), "self", "chunk", 1),
]


@pytest.mark.parametrize("gates,target,read,C", GRID)
def test_stream_matches_full_op(gates, target, read, C):
    check(case(gates=gates, target=target, read=read, C=C, scale=0.7))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    check(case(dtype, target="self", read="after"))


def test_k_ne_v_several_v_blocks_and_odd_sizes(monkeypatch):
    """K = 12, V = 40 (not powers of two; padded, masked) in V blocks of 16."""
    monkeypatch.setenv("NESTED_KERNELS_LM_STEP_BV", "16")
    check(case(K=12, V=40, read="before"))


def test_beta_is_eta_and_fresh_state():
    """HOPE's DGD (β = η, self target) from a zero state (prefix of one token, no initial state)."""
    c = Case(OP, dict(B=3, T=9, H=1, K=8, V=8), torch.float32, dict(chunk_size=2, target="self"),
             dict(gates=("log_alpha", "beta"), beta="eta"))
    check(c, prefix=1)


@pytest.mark.parametrize("prefix", [3, 4, 5])      # C = 4: the last token of a chunk, a chunk start, mid-chunk
def test_equals_torch_step_in_place(prefix):
    c = case(T=8)
    st, tok = step_inputs(c, prefix)
    assert_step_in_place(c, tok, st)


def check_chunk_start_copy(backend: str = "triton", device: str = "cpu"):
    """A hand-made state at a boundary whose M_chunk is stale: like the torch step, the kernel
    uses M as the chunk start and leaves M_chunk = M_{t-1} (and the same position)."""
    c = case(T=6)
    st, tok = step_inputs(c, 4, device=device)
    assert st.position.eq(0).all()
    st.M_chunk.normal_()
    ref = st.clone()
    o = call_step(c, tok, st, backend)
    assert_close_rel(o, call_step(c, tok, ref, "torch"), 1e-5, "o")
    assert_close_rel(st.M_chunk, ref.M_chunk, 1e-5, "M_chunk")
    assert torch.equal(st.position, ref.position)


def test_chunk_start_copy_refreshed_at_position_zero():
    check_chunk_start_copy()


def test_strided_token_inputs():
    """q, k, v as slices of one projection output [N, H, 3, K] (unit last stride, no copies)."""
    c = case(T=5, gates=("mu",))
    st, tok = step_inputs(c, 4, seed=1)
    qkv = torch.stack([tok["q"], tok["k"], tok["v"]], dim=2)
    ref = st.clone()
    o = linear_memory_step(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], tok["eta"], mu=tok["mu"], state=st,
                           backend="triton")
    o_ref = linear_memory_step(tok["q"], tok["k"], tok["v"], tok["eta"], mu=tok["mu"], state=ref, backend="torch")
    assert_close_rel(o, o_ref, 1e-5, "o")
    assert_close_rel(st.M, ref.M, 1e-5, "M")


def _select(st, tok, backend="auto"):
    inputs = dict(q=tok["q"], k=tok["k"], v=tok["v"], eta=tok["eta"], log_alpha=None, beta=None, mu=None)
    tensors = st.tensors()
    tensors["S"] = st.M.new_empty(0) if tensors["S"] is None else tensors["S"]
    cfg = dict(chunk_size=st.chunk_size, target="external", read="after", scale=1.0)
    return select_backend("linear_memory_step", backend, api.STEP_BACKENDS, st.M.device,
                          with_state(inputs, tensors), cfg)


def test_auto_never_picks_triton_on_cpu():
    c = case(gates=(), init=True, T=3)
    st, tok = step_inputs(c, 2)
    assert _select(st, tok) == "torch"


def test_unsupported_states_and_inputs_are_refused_with_a_reason():
    c = case(gates=(), T=3)
    st, tok = step_inputs(c, 2)
    st64 = LinearMemoryState(st.M.double(), None, st.M_chunk.double(), st.position, st.chunk_size)
    with pytest.raises(RuntimeError, match="float64"):
        linear_memory_step(tok["q"].double(), tok["k"].double(), tok["v"].double(), tok["eta"].double(),
                           state=st64, backend="triton")
    strided = LinearMemoryState(st.M.transpose(-1, -2).contiguous().transpose(-1, -2), None, st.M_chunk,
                                st.position, st.chunk_size)
    with pytest.raises(RuntimeError, match="contiguous"):
        linear_memory_step(tok["q"], tok["k"], tok["v"], tok["eta"], state=strided, backend="triton")
    with pytest.raises(ValueError, match="k must have shape"):
        linear_memory_step(tok["q"], tok["k"][:, :, :4], tok["v"], tok["eta"], state=st, backend="triton")


def test_empty_batch():
    st = LinearMemoryState(torch.zeros(0, 2, 8, 8), None, torch.zeros(0, 2, 8, 8),
                           torch.zeros(0, dtype=torch.int64), 4)
    o = linear_memory_step(torch.zeros(0, 2, 8), torch.zeros(0, 2, 8), torch.zeros(0, 2, 8), torch.zeros(0, 2),
                           state=st, backend="triton")
    assert o.shape == (0, 2, 8)
