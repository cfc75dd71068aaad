"""Short runnable examples of every public op: one call, streaming in two calls, one decode step.

    python python/example_ops.py                 # CPU (torch backend), a few seconds
    python python/example_ops.py --device cuda   # the fastest backend available on the GPU

Each example prints the output shape and two checks that must be ~0: "stream" (two calls, the
second resuming mid-chunk from the first's final state, vs one call) and "step" (a one-token
decode step vs the same token in a call).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from nested_kernels.ops.fast_mlp import fast_mlp, fast_mlp_step
from nested_kernels.ops.linear_memory import linear_memory, linear_memory_step
from nested_kernels.ops.mlp_memory import mlp_memory, mlp_memory_step
from nested_kernels.ops.self_modifying_titans import (SelfModifyingTitansState, self_modifying_titans,
                                                      self_modifying_titans_step)


def diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def report(name, o, stream, step):
    print(f"{name:24s} out {tuple(o.shape)}  stream |Δ| {stream:.1e}  step |Δ| {step:.1e}")


def example_linear_memory(dev, B=2, T=40, H=4, K=32):
    q, k, v = torch.randn(B, T, H, K, device=dev), F.normalize(torch.randn(B, T, H, K, device=dev), dim=-1), \
        torch.randn(B, T, H, K, device=dev)
    eta = 0.2 * torch.rand(B, T, H, device=dev)
    log_alpha = torch.log(0.9 + 0.1 * torch.rand(B, T, H, device=dev))
    mu = 0.5 * torch.rand(B, T, H, device=dev)
    kw = dict(chunk_size=16, target="self", read="after")          # HOPE's DGD memory: beta = eta
    o, st = linear_memory(q, k, v, eta, log_alpha, eta, mu, output_final_state=True, **kw)
    s = 21                                                        # split inside a chunk
    o1, st1 = linear_memory(q[:, :s], k[:, :s], v[:, :s], eta[:, :s], log_alpha[:, :s], eta[:, :s], mu[:, :s],
                            output_final_state=True, **kw)
    o2, st2 = linear_memory(q[:, s:], k[:, s:], v[:, s:], eta[:, s:], log_alpha[:, s:], eta[:, s:], mu[:, s:],
                            initial_state=st1, output_final_state=True, **kw)
    st1 = st1.detach().clone()
    o_step = linear_memory_step(q[:, s], k[:, s], v[:, s], eta[:, s], log_alpha[:, s], eta[:, s], mu[:, s],
                                state=st1, target="self", read="after")
    report("linear_memory", o, max(diff(torch.cat([o1, o2], 1), o), diff(st2.M, st.M)), diff(o_step, o[:, s]))


def example_mlp_memory(dev, B=2, T=40, H=4, K=32):
    q, k, v = torch.randn(B, T, H, K, device=dev), F.normalize(torch.randn(B, T, H, K, device=dev), dim=-1), \
        torch.randn(B, T, H, K, device=dev)
    eta = 0.1 * torch.rand(B, T, H, device=dev)
    w1, w2 = 0.05 * torch.randn(H, K, 2 * K, device=dev), torch.randn(H, 2 * K, K, device=dev) / K ** 0.5
    kw = dict(chunk_size=16, target="self", read="chunk", activation="gelu", residual=True)
    o, st = mlp_memory(q, k, v, eta, w1, w2, beta=eta, output_final_state=True, **kw)
    s = 21
    o1, st1 = mlp_memory(q[:, :s], k[:, :s], v[:, :s], eta[:, :s], w1, w2, beta=eta[:, :s],
                         output_final_state=True, **kw)
    o2, st2 = mlp_memory(q[:, s:], k[:, s:], v[:, s:], eta[:, s:], w1, w2, beta=eta[:, s:], initial_state=st1,
                         output_final_state=True, **kw)
    st1 = st1.detach().clone()
    o_step = mlp_memory_step(q[:, s], k[:, s], v[:, s], eta[:, s], beta=eta[:, s], state=st1, target="self",
                             read="chunk")
    report("mlp_memory", o, max(diff(torch.cat([o1, o2], 1), o), diff(st2.W2, st.W2)), diff(o_step, o[:, s]))


def example_fast_mlp(dev, B=2, T=40, D=64):
    x = torch.randn(B, T, D, device=dev)
    weights = (torch.randn(4 * D, D, device=dev) / D ** 0.5, torch.randn(D, 4 * D, device=dev) / (4 * D) ** 0.5)
    kw = dict(chunk_size=8, mlp="gelu")
    y, st = fast_mlp(x, weights, 1e-2, target=x, output_final_state=True, **kw)
    s = 21
    y1, st1 = fast_mlp(x[:, :s], weights, 1e-2, target=x[:, :s], output_final_state=True, **kw)
    y2, st2 = fast_mlp(x[:, s:], weights, 1e-2, target=x[:, s:], initial_state=st1, output_final_state=True, **kw)
    st1 = st1.detach().clone()
    y_step = fast_mlp_step(x[:, s], 1e-2, state=st1, target=x[:, s], mlp="gelu")
    report("fast_mlp (CMS level)", y, diff(torch.cat([y1, y2], 1), y), diff(y_step, y[:, s]))


def example_self_modifying_titans(dev, B=2, T=40, H=4, D=16):
    x, q = F.normalize(torch.randn(B, T, H, D, device=dev), dim=-1), torch.randn(B, T, H, D, device=dev)
    params = {}
    for m in ("k", "v", "eta", "alpha", "mem"):                   # memory="mlp": (w1, w2, w_skip)
        out = 1 if m in ("eta", "alpha") else D
        skip = torch.zeros(H, 1, D, device=dev) if out == 1 else None
        params[m] = (0.02 * torch.randn(H, out, D, device=dev), torch.randn(H, D, D, device=dev) / D ** 0.5, skip)
    params["alpha"][2][..., 0] = 5.0                              # retention ≈ sigmoid(5 x_0) at the start
    kw = dict(memory="mlp", chunk_size_other=8, chunk_size_memory=16, eta_scale=0.1, mu=0.5, read="chunk")
    o, st = self_modifying_titans(x, q, params, output_final_state=True, **kw)
    s = 21
    o1, st1 = self_modifying_titans(x[:, :s], q[:, :s], params, output_final_state=True, **kw)
    o2, st2 = self_modifying_titans(x[:, s:], q[:, s:], params, initial_state=st1, output_final_state=True, **kw)
    st1 = st1.detach().clone()
    o_step = self_modifying_titans_step(x[:, s], q[:, s], state=st1, eta_scale=0.1, mu=0.5, read="chunk")
    report("self_modifying_titans", o, max(diff(torch.cat([o1, o2], 1), o),
                                           diff(st2.weights["mem"][1], st.weights["mem"][1])), diff(o_step, o[:, s]))
    # decode from scratch: a fresh state from the params, then one token at a time
    fresh = SelfModifyingTitansState.from_params(params, B, memory="mlp", chunk_size_other=8,
                                                 chunk_size_memory=16, momentum=True)
    outs = [self_modifying_titans_step(x[:, t], q[:, t], state=fresh, eta_scale=0.1, mu=0.5) for t in range(T)]
    print(f"{'  decode from scratch':24s} {T} steps vs one call |Δ| {diff(torch.stack(outs, 1), o):.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    for example in (example_linear_memory, example_mlp_memory, example_fast_mlp, example_self_modifying_titans):
        example(dev)


if __name__ == "__main__":
    main()
