"""Precision study on the CPU: the mlp_memory chunk algebra with every product's operands rounded.

    PYTHONPATH=. python python/emulate_mlp_memory_precision.py [T]     # default T = 1000

The issue configuration (self target, read chunk, α + β + μ with β = η, gelu, residual, C = 64,
K = V = 64, F = 256, B2 H2, bf16 inputs, per-sequence initial states) is run tile by tile as in
``chunk._tile``, with the operands of each product (and of its two backward products) rounded to
a significand of 8 (bf16) or 11 (tf32) bits, per class of product: z (keys/queries through W2),
E (activations through W1), d (errors through W1, keys through S2), t (token-side n×n products),
u (the tile-end weight updates). Prints the relative error of the outputs, final states and
every gradient against the same algebra in float64, per precision mode: which products can take
16-bit operands in a kernel (docs/mlp_memory_triton.md, "Precision").
"""
import sys

import torch

from nested_kernels import mlp_memory
from nested_kernels.core.chunk_algebra import col, decay, masks, momentum, scal, solve
from nested_kernels.ops.mlp_memory.recurrence import gelu, gelu_grad
from nested_kernels.testing import rel_error
from check_mlp_memory_triton import make

F64 = torch.float64
BF16, TF32 = 8, 11          # significand bits
PRODUCTS = {}               # class of product -> significand bits of its operands (None: exact)
MODES = {"tf32 all": dict(wz=TF32, we=TF32, wd=TF32, t=TF32, u=TF32),
         "bf16 all": dict(wz=BF16, we=BF16, wd=BF16, t=BF16, u=BF16),
         "bf16 but E tf32": dict(wz=BF16, we=TF32, wd=BF16, t=BF16, u=BF16),
         "bf16 but z,E tf32": dict(wz=TF32, we=TF32, wd=BF16, t=BF16, u=BF16),
         "bf16 but z,E,u tf32": dict(wz=TF32, we=TF32, wd=BF16, t=BF16, u=TF32),
         "bf16 but u tf32": dict(wz=BF16, we=BF16, wd=BF16, t=BF16, u=TF32),
         "bf16 but E 16b": dict(wz=BF16, we=16, wd=BF16, t=BF16, u=BF16),
         "bf16 but z,E 16b": dict(wz=16, we=16, wd=BF16, t=BF16, u=BF16)}


def rnd(x, bits):
    """x rounded to a significand of ``bits`` bits (to nearest; None: unchanged)."""
    if bits is None:
        return x
    m, e = torch.frexp(x)
    s = 2.0 ** bits
    return torch.ldexp(torch.round(m * s) / s, e)


class RoundedMatmul(torch.autograd.Function):
    """a @ b with rounded operands; the two backward products round theirs too."""

    @staticmethod
    def forward(ctx, a, b, bits):
        ctx.save_for_backward(a, b)
        ctx.bits = bits
        return rnd(a, bits) @ rnd(b, bits)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        bt = ctx.bits
        return rnd(g, bt) @ rnd(b, bt).mT, rnd(a, bt).mT @ rnd(g, bt), None


def mm(a, b, kind):
    return RoundedMatmul.apply(a, b, PRODUCTS.get(kind))


def tile(q, k, v, eta, la, beta, mu, W1, W2, S1, S2):
    """``chunk._tile`` for self target, read chunk, α + β + μ, gelu, residual, one tile of n
    tokens whose start is a chunk start, every product through ``mm`` with its class."""
    n = q.shape[-2]
    strict, lower = masks(n, q.device)
    G = decay(la, strict, lower, q.dtype)
    Gc, Gp = G[..., 1:, 1:], G[..., :-1, 1:]
    gam, gamp = G[..., 1:, 0], G[..., :-1, 0]
    Dm = momentum(mu, strict, lower)
    Dc, m = Dm[..., 1:, 1:], Dm[..., 1:, 0]
    Pc, Pp = Gc @ Dc, Gp @ Dc
    nu, nup = (Gc @ col(m))[..., 0], (Gp @ col(m))[..., 0]
    z = mm(k, W2.mT, "wz")
    a = gelu(z)
    pred = mm(a, W1.mT, "we") + k
    tgt = mm(gelu(mm(v, W2.mT, "wz")), W1.mT, "we") + v
    e = pred - tgt
    d = mm(e, W1, "wd") * gelu_grad(z)
    w1, w2 = -col(eta) * e, -col(eta) * d
    KK = mm(k, k.mT, "t")
    rhs = col(gamp) * z + col(nup) * mm(k, S2.mT, "wd") + mm(KK * Pp, w2, "t")
    u = -col(beta) * solve(KK * Gp * beta[..., None, :], rhs)
    o = mm(gelu(mm(q, W2.mT, "wz")), W1.mT, "we") + q
    Gn, Pn = col(Gc[..., n - 1, :]), col(Pc[..., n - 1, :])
    X = Pn * w2 + Gn * u
    W2n = scal(gam[..., n - 1]) * W2 + mm(X.mT, k, "u") + scal(nu[..., n - 1]) * S2
    W1n = scal(gam[..., n - 1]) * W1 + mm((Pn * w1).mT, a, "u") + scal(nu[..., n - 1]) * S1
    Dn, mn = col(Dm[..., n, 1:]), scal(Dm[..., n, 0])
    S1n = mn * S1 + mm((Dn * w1).mT, a, "u")
    S2n = mn * S2 + mm((Dn * w2).mT, k, "u")
    return o, W1n, W2n, S1n, S2n


def run(x, st, C):
    """Outputs, final states and the gradients of a fixed random functional of them."""
    L = {n: t.clone().requires_grad_(True) for n, t in list(x.items()) + list(st.items())}
    tr = lambda t: t.transpose(1, 2)   # noqa: E731  [B,T,H,*] -> [B,H,T,*]
    q, k, v = tr(L["q"]), tr(L["k"]), tr(L["v"])
    eta, la, beta, mu = (tr(L[n][..., None])[..., 0] for n in ("eta", "log_alpha", "beta", "mu"))
    W1, W2, S1, S2 = L["W1"], L["W2"], L["S1"], L["S2"]
    T = q.shape[2]
    outs = []
    for s in range(0, T, C):
        sl = slice(s, min(T, s + C))
        o, W1, W2, S1, S2 = tile(q[:, :, sl], k[:, :, sl], v[:, :, sl], eta[:, :, sl], la[:, :, sl],
                                 beta[:, :, sl], mu[:, :, sl], W1, W2, S1, S2)
        outs.append(o)
    outs = dict(o=torch.cat(outs, 2).transpose(1, 2), W1=W1, W2=W2, S1=S1, S2=S2)
    g = torch.Generator().manual_seed(123)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=F64)).sum() for t in outs.values())
    grads = torch.autograd.grad(loss, list(L.values()))
    res = {n: t.detach() for n, t in outs.items()}
    res.update({"d" + n: gr for n, gr in zip(L, grads)})
    return res


def main():
    B, T, H, K, F, C = 2, int(sys.argv[1]) if len(sys.argv) > 1 else 1000, 2, 64, 256, 64
    x, st = make(B, T, H, K, K, F, "abm self", init=True, beta_eta=True, device="cpu")
    # per-sequence initial states (N = B), so the shared w1, w2 are not inputs here
    x = {n: t.to(torch.bfloat16).to(F64) for n, t in x.items() if t is not None and n not in ("w1", "w2")}
    x["beta"] = x["eta"].clone()
    st = {n: t.to(torch.float32).to(F64) for n, t in st.items()}
    ref = run(x, st, C)
    # the algebra here is the library's torch backend
    o, fs = mlp_memory(x["q"], x["k"], x["v"], x["eta"], torch.zeros(H, K, F, dtype=F64),
                       torch.zeros(H, F, K, dtype=F64), log_alpha=x["log_alpha"], beta=x["beta"], mu=x["mu"],
                       initial_state=(st["W1"], st["W2"], st["S1"], st["S2"]), output_final_state=True,
                       backend="torch", chunk_size=C, target="self", read="chunk")
    print("sanity o", rel_error(o, ref["o"]), "W1", rel_error(fs.W1, ref["W1"]))
    for name, bits in MODES.items():
        PRODUCTS.clear()
        PRODUCTS.update(bits)
        got = run(x, st, C)
        errs = {n: rel_error(got[n], ref[n]) for n in ref}
        w = max(errs, key=errs.get)
        print(f"{name:24s} worst {w} {errs[w]:.2e} | " + " ".join(f"{n}={e:.1e}" for n, e in errs.items()))


if __name__ == "__main__":
    main()
