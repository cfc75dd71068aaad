"""CUDA launchers of the fast-weight MLP (SPEC.md §4), backed by the extension ``nested_kernels._C``.

``outer_update`` is the fused end-of-chunk weight update of one fast weight matrix:

    out[n] = retention * weight[n] - sum_t eta[n, t] * outer(left[n, t, :], right[n, t, :])
           = retention * weight[n] - left[n]^T @ diag(eta[n]) @ right[n]

For a Linear weight W [out, in] with input x_t and output gradient g_t, ∇_W⟨g_t, W x_t⟩ = g_t x_tᵀ,
so ``left`` holds the output-side vectors (g or the hidden-layer gradient) and ``right`` the
input-side vectors (x or the hidden activation) of a chunk's tokens.

These are raw launchers: no autograd (the result does not require grad), no backend selection.
The extension is looked up at call time; a missing build raises ``RuntimeError`` with build
instructions, never at import.
"""
from __future__ import annotations

from typing import Optional

import torch

from nested_kernels.core.alloc import new_empty
from nested_kernels.core.checks import check_tensor, common_device
from nested_kernels.core.extension import cuda_extension, dtype_code

INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def outer_update(weight: torch.Tensor, left: torch.Tensor, right: torch.Tensor, eta: torch.Tensor,
                 retention: float, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[n] = retention * weight[n] - left[n]ᵀ diag(eta[n]) right[n]`` on the GPU.

    Args:
        weight: ``[N, P, Q]`` float32, the fast weights at the chunk start.
        left: ``[N, n_tok, P]`` float32, bfloat16 or float16.
        right: ``[N, n_tok, Q]``, same dtype as ``left``.
        eta: ``[N, n_tok]`` per-token learning rates (float32; bfloat16/float16 are upcast).
        retention: the retention factor (a Python number).
        out: optional ``[N, P, Q]`` float32 destination; may be ``weight`` itself (in-place
            update). Must not overlap ``left``, ``right`` or ``eta``.

    Returns:
        ``out`` (a new float32 tensor when ``out`` is None). Products and sums are accumulated in
        float32. Runs asynchronously on the current CUDA stream of the tensors' device.

    Inputs need not be contiguous (they are copied when they are not, e.g. the stride-0
    gradients of ``.sum().backward()``). Raises ``ValueError`` for wrong shapes, dtypes or
    devices, and ``RuntimeError`` when the CUDA extension is not built or a launch fails.
    """
    check_tensor("weight", weight, [None, None, None], names="N, P, Q", dtypes=(torch.float32,))
    N, P, Q = weight.shape
    check_tensor("left", left, [N, None, P], names="N, n_tok, P", dtypes=INPUT_DTYPES)
    n_tok = left.shape[1]
    check_tensor("right", right, [N, n_tok, Q], names="N, n_tok, Q", dtypes=INPUT_DTYPES)
    if right.dtype != left.dtype:
        raise ValueError(f"left and right must have the same dtype, got {left.dtype} and {right.dtype}")
    check_tensor("eta", eta, [N, n_tok], names="N, n_tok", dtypes=INPUT_DTYPES)
    if out is not None:
        check_tensor("out", out, [N, P, Q], names="N, P, Q", dtypes=(torch.float32,))
    if isinstance(retention, bool) or not isinstance(retention, (int, float)):
        raise ValueError(f"retention must be a Python number, got {type(retention).__name__}")
    device = common_device(weight=weight, left=left, right=right, eta=eta, out=out)
    if device.type != "cuda":
        raise ValueError(f"outer_update runs on CUDA tensors, got tensors on {device}")

    ext = cuda_extension()  # RuntimeError with build instructions when _C is missing
    with torch.no_grad():  # raw launcher: the copies below must not build an autograd graph
        return _launch(ext, weight, left, right, eta, float(retention), out, device)


def _launch(ext, weight, left, right, eta, retention, out, device) -> torch.Tensor:
    N, n_tok, P = left.shape
    Q = right.shape[2]
    weight_c = weight.contiguous()
    left_c = left.contiguous()
    right_c = right.contiguous()
    eta_c = eta.to(torch.float32).contiguous()
    if out is None:
        result = new_empty(N, P, Q, dtype=torch.float32, device=device)
    elif out.is_contiguous():
        result = out  # may be weight itself: the kernel reads each element before writing it
    else:
        result = new_empty(N, P, Q, dtype=torch.float32, device=device)

    if result.numel() > 0:
        with torch.cuda.device(device):
            stream = torch.cuda.current_stream(device).cuda_stream
            ext.outer_update(
                out=result.data_ptr(), weight=weight_c.data_ptr(), left=left_c.data_ptr(),
                right=right_c.data_ptr(), eta=eta_c.data_ptr(), N=N, n_tok=n_tok, P=P, Q=Q,
                dtype=dtype_code(left.dtype), retention=retention,
                stream=stream,
            )

    if out is not None and result is not out:
        out.copy_(result)
        return out
    return result
