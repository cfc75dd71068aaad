"""The CUDA ``linear_memory_step`` (csrc/linear_memory/step.cu). On the GPU (``pytest -m gpu``):
decode streams crossing chunk boundaries against one float64 call of the full op for every option
and dtype, in-place state semantics, the chunk-start copy, odd K and V over several column blocks.
On CPU: the binding's argument checks (before any CUDA call) and the backend's fallbacks."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from nested_kernels.step_check import assert_step_in_place, call_step, step_inputs
from nested_kernels.step_check import assert_stream_close
from nested_kernels.testing import assert_close_rel

from test_linear_memory_step_triton import GRID, case, check_chunk_start_copy  # shared with the Triton step's

needs_ext = pytest.mark.skipif(importlib.util.find_spec("nested_kernels._C") is None,
                               reason="nested_kernels._C is not built")


def check(c, **kw):
    assert_stream_close(c, device="cuda", backend="cuda", **kw)


@pytest.mark.gpu
@pytest.mark.parametrize("gates,target,read,C", GRID)
def test_stream_matches_full_op(gates, target, read, C):
    check(case(gates=gates, target=target, read=read, C=C, scale=0.7))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    check(case(dtype, target="self", read="after"))


@pytest.mark.gpu
@pytest.mark.parametrize("K,V", [(12, 40), (128, 128), (64, 200)])
def test_odd_and_issue_sizes(K, V):
    """Sizes that are not powers of two, one full column block, and two blocks (V = 200)."""
    check(case(K=K, V=V, read="before", H=3))


@pytest.mark.gpu
@pytest.mark.parametrize("prefix", [3, 4, 5])      # C = 4: the last token of a chunk, a chunk start, mid-chunk
def test_equals_torch_step_in_place(prefix):
    c = case(T=8)
    st, tok = step_inputs(c, prefix, device="cuda")
    assert_step_in_place(c, tok, st, backend="cuda")


@pytest.mark.gpu
def test_chunk_start_copy_refreshed_at_position_zero():
    check_chunk_start_copy("cuda", "cuda")


def test_cpu_tensors_are_refused():
    """backend="cuda" on CPU tensors: an error saying why; "auto" never picks it there."""
    c = case(T=6)
    st, tok = step_inputs(c, 2)
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        call_step(c, tok, st, "cuda")
    assert_close_rel(call_step(c, tok, st.clone(), "auto"), call_step(c, tok, st.clone(), "torch"), 1e-6, "o")


@needs_ext
def test_binding_rejects_bad_arguments_without_a_gpu():
    """ValueErrors before any CUDA call; no work launches nothing."""
    import nested_kernels._C as ext
    gate = (0, 0, 0, ext.DTYPE_FLOAT32)
    args = dict(q=0, k=0, v=0, token_strides=(0,) * 6, token_dtype=ext.DTYPE_FLOAT32, eta=gate,
                log_alpha=gate, beta=gate, mu=gate, M=0, S=0, M_chunk=0, position=0, counters=0, o=0,
                N=1, H=1, K=4, V=4, chunk_size=2, scale=1.0, self_target=False, read=0, stream=0)
    ext.linear_memory_step(**{**args, "N": 0})
    with pytest.raises(ValueError, match="null pointer"):
        ext.linear_memory_step(**args)
    with pytest.raises(ValueError, match="K must be"):
        ext.linear_memory_step(**{**args, "K": 5000})
    with pytest.raises(ValueError, match="chunk_size"):
        ext.linear_memory_step(**{**args, "chunk_size": 0})
    with pytest.raises(ValueError, match="read"):
        ext.linear_memory_step(**{**args, "read": 3})
    with pytest.raises(ValueError, match="dtype code"):
        ext.linear_memory_step(**{**args, "token_dtype": 9})
    with pytest.raises(ValueError, match="eta"):
        ext.linear_memory_step(**{**args, "eta": (0, 0, 0)})
    with pytest.raises(ValueError, match="token_strides"):
        ext.linear_memory_step(**{**args, "token_strides": (0,) * 5})
