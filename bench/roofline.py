"""Roofline floors: the fewest FLOPs and bytes an op must spend, and the time they take at the
card's measured ceilings (GUIDE §1: H100 matmul 724 TFLOP/s bf16, 383 tf32; copy 3.0 TB/s).

    floor = max(FLOPs / PEAK_FLOPS[dtype], bytes / BANDWIDTH)

FLOPs count the matrix products of the chunk-parallel algorithm (DESIGN_chunk_algebra.md),
2 per multiply-add, causal (triangular) products at half size; elementwise work is left out.
Bytes count each input read once and each output written once; per-chunk states, fast weights
and other intermediates are left out (a kernel may avoid storing them). The backward pass is
counted as 2× the forward FLOPs and as "read inputs + upstream gradient, write input gradients"
bytes. A floor is a lower bound, not a prediction: report measured time / floor.

Override the ceilings with NESTED_KERNELS_PEAK_FLOPS (FLOP/s, all dtypes) and
NESTED_KERNELS_PEAK_BW (bytes/s). ``python bench/roofline.py`` prints the floors of the issue
shapes (the table in docs/performance.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

# H100 80GB HBM3, measured on the device machine (GUIDE §1).
PEAK_FLOPS = {"bf16": 724e12, "fp16": 724e12, "fp32": 383e12, "tf32": 383e12}   # fp32 inputs: TF32 allowed
BANDWIDTH = 3.0e12
ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "tf32": 4, "fp64": 8}
BWD_FLOP_FACTOR = 2.0


def peak_flops(dtype: str) -> float:
    env = os.environ.get("NESTED_KERNELS_PEAK_FLOPS")
    return float(env) if env else PEAK_FLOPS[dtype]


def bandwidth() -> float:
    env = os.environ.get("NESTED_KERNELS_PEAK_BW")
    return float(env) if env else BANDWIDTH


@dataclass
class Cost:
    """FLOPs and minimum bytes of one call (forward, and forward + backward)."""
    flops_fwd: float
    bytes_fwd: float
    flops_bwd: float
    bytes_bwd: float
    dtype: str = "bf16"

    def flops(self, mode: str) -> float:
        return self.flops_fwd + (self.flops_bwd if mode == "fwd+bwd" else 0.0)

    def bytes(self, mode: str) -> float:
        return self.bytes_fwd + (self.bytes_bwd if mode == "fwd+bwd" else 0.0)

    def floor_ms(self, mode: str) -> float:
        return 1e3 * max(self.flops(mode) / peak_flops(self.dtype), self.bytes(mode) / bandwidth())

    def bound(self, mode: str) -> str:
        return "compute" if self.flops(mode) / peak_flops(self.dtype) >= self.bytes(mode) / bandwidth() else "memory"


def _cost(flops_fwd, in_bytes, out_bytes, dtype, weight_bytes=0.0, grad_in_bytes=None) -> Cost:
    """Forward reads inputs (+ weights) and writes outputs; backward reads inputs, weights and the
    upstream gradient (size of the outputs) and writes a gradient for each input and weight."""
    grad_in_bytes = in_bytes if grad_in_bytes is None else grad_in_bytes
    return Cost(flops_fwd, in_bytes + weight_bytes + out_bytes, BWD_FLOP_FACTOR * flops_fwd,
                in_bytes + 2 * weight_bytes + out_bytes + grad_in_bytes, dtype)


def linear_memory(B, T, H, K, V, chunk_size, gates=("log_alpha", "beta", "mu"), target="external",
                  read="after", dtype="bf16", gate_bytes=None) -> Cost:
    """Per token and head: 2KV per product with a K×V state — Q M_0, K M_0, the state update
    Kᵀ X (+ V M_0 for self targets; + K S_0, Q S_0, the S update with momentum) — and per intra-tile
    product C·K (Grams QKᵀ, KKᵀ) or C·V (masked products with R, W; the (I + A) solve), where C is
    the tile (64 for chunk_size 1, the exact rule)."""
    e = ELEMENT_BYTES[dtype]
    ge = e if gate_bytes is None else gate_bytes
    C = 64 if chunk_size == 1 else min(chunk_size, T)
    dgd = "beta" in gates or chunk_size == 1
    n_state = 3 + (1 if target == "self" else 0) + (3 if "mu" in gates else 0)
    gram = (2 if dgd else 1) if read != "chunk" else (1 if dgd else 0)
    masked = (1 if read != "chunk" else 0) + (2 if dgd else 0)
    per = 2 * K * V * n_state + C * (gram * K + masked * V)
    n = B * T * H
    n_gates = 1 + sum(g in gates for g in ("log_alpha", "beta", "mu"))
    vin = K if target == "self" else V
    return _cost(n * per, n * ((2 * K + vin) * e + n_gates * ge), n * V * e, dtype)


def mlp_memory(B, T, H, K, V, F, chunk_size, gates=("log_alpha", "beta", "mu"), target="external",
               read="after", dtype="bf16") -> Cost:
    """Per token and head: 2FK per product with W2 (W2 k, W2 q, the G2 update; + W2 v for self
    targets; + S2 k, S2 q, the S2 update with momentum), 2VF per product with W1 (W1 a, W1ᵀe,
    W1 a_q, the G1 update; likewise +1, +3), and C·(K + 2F + V) for the intra-chunk reads
    (+ C·(K + 2F) for the DGD solve on W2)."""
    e = ELEMENT_BYTES[dtype]
    C = min(chunk_size, T)
    self_t = 1 if target == "self" else 0
    mom = 3 if "mu" in gates else 0
    per = 2 * F * K * (3 + self_t + mom) + 2 * V * F * (4 + self_t + mom)
    if read != "chunk":
        per += C * (K + 2 * F + V)
    if "beta" in gates:
        per += C * (K + 2 * F)
    n = B * T * H
    n_gates = 1 + sum(g in gates for g in ("log_alpha", "beta", "mu"))
    vin = K if target == "self" else V
    weights = H * 2 * F * K * e
    return _cost(n * per, n * ((2 * K + vin) * e + n_gates * e), n * V * e, dtype, weights)


def _mlp_products(mlp: str) -> tuple[int, int]:
    """(forward products, update products) of D×F each: gelu/silu 2 + 3, swiglu 3 + 4."""
    return (3, 4) if mlp == "swiglu" else (2, 3)


def static_mlp(B, T, D, F, mlp="gelu", dtype="bf16") -> Cost:
    """y = x + MLP(x): 2DF per product and token."""
    e = ELEMENT_BYTES[dtype]
    fwd, _ = _mlp_products(mlp)
    n = B * T
    return _cost(n * 2 * D * F * fwd, n * D * e, n * D * e, dtype, fwd * D * F * e)


def fast_mlp(B, T, D, F, chunk_size, mlp="gelu", signal="target", dtype="bf16") -> Cost:
    """The static MLP at chunk-start weights plus each chunk's update: g's backward through the
    MLP and the weight gradients (gelu/silu 10·D·F per token, swiglu 14·D·F). Reads x, the
    target/teach signal and η; writes y; the initial weights once. The per-sequence fast weights
    (16·D·F/C bytes per token in float32 when materialised) are not counted."""
    e = ELEMENT_BYTES[dtype]
    fwd, upd = _mlp_products(mlp)
    n = B * T
    n_in = D * e + (D * e if signal in ("target", "teach") else 0) + e
    return _cost(n * 2 * D * F * (fwd + upd), n * n_in, n * D * e, dtype, fwd * D * F * e)


def cms(B, T, D, F, chunk_sizes, mlp="gelu", dtype="bf16") -> Cost:
    """A chain of fast_mlp levels (each its own input as target): the levels' FLOPs; bytes of x
    read once, y written once and every level's initial weights (a fused chain keeps the levels'
    intermediate activations on chip)."""
    e = ELEMENT_BYTES[dtype]
    fwd, upd = _mlp_products(mlp)
    n = B * T
    flops = sum(n * 2 * D * F * (fwd + upd) for _ in chunk_sizes)
    return _cost(flops, n * D * e, n * D * e, dtype, len(chunk_sizes) * fwd * D * F * e)


def static_cms(B, T, D, F, levels, mlp="gelu", dtype="bf16") -> Cost:
    """``levels`` static MLPs chained (the same shapes as a CMS, no updates)."""
    e = ELEMENT_BYTES[dtype]
    fwd, _ = _mlp_products(mlp)
    n = B * T
    return _cost(levels * n * 2 * D * F * fwd, n * D * e, n * D * e, dtype, levels * fwd * D * F * e)


def self_modifying_titans(B, T, H, D, chunk_other=16, chunk_memory=64, memory="mlp", dtype="bf16") -> Cost:
    """Per token and head, with P(o) = 2·o·D the cost of a D→o product: evaluating M_k, M_v on x
    and M_mem on q̂; M_η, M_α on x; per memory, the frozen-gradient update at chunk-start weights
    (self target M_s(v), prediction M_s(k), backprop W1ᵀe, the G1, G2 (G_skip) updates) and the
    DGD solve (C·2D per memory).
    MLP memories (hidden D): D→D eval 4D², D→1 eval 2D²; update D→D 14D², D→1 6D² → ≈ 70 D².
    Linear memories: eval 2·o·D, update 3 products → D→D 2D² eval + 6D² update."""
    e = ELEMENT_BYTES[dtype]
    if memory == "mlp":
        per = 3 * 4 * D * D + 2 * 2 * D * D + 3 * 14 * D * D + 2 * 6 * D * D
        weights = H * (3 * 2 * D * D + 2 * (D * D + 2 * D)) * e
    else:
        per = 3 * 2 * D * D + 2 * 2 * D + 3 * 6 * D * D + 2 * 6 * D
        weights = H * (3 * D * D + 2 * D) * e
    per += 4 * min(chunk_other, T) * 2 * D + min(chunk_memory, T) * 2 * D
    n = B * T * H
    return _cost(n * per, n * 2 * D * e, n * D * e, dtype, weights)


def _step(flops, state_bytes, io_bytes, dtype) -> Cost:
    """A decode step: forward only (no backward), bytes = float32 state traffic + token I/O."""
    return Cost(flops, state_bytes + io_bytes, 0.0, 0.0, dtype)


def linear_memory_step(N, H, K, V, gates=("log_alpha", "beta", "mu"), target="external", dtype="bf16") -> Cost:
    """One token for N sequences: the float32 state must be read and written (M), the chunk-start
    copy read inside a chunk (at a chunk boundary it is written instead), S read and written with
    momentum: (3 + 2·[μ]) · N·H·K·V·4 bytes. FLOPs (2KV per product: M_sᵀk, kᵀM, M'ᵀq, + M_sᵀv for
    self targets, the two rank-1 updates) are negligible."""
    e = ELEMENT_BYTES[dtype]
    n = N * H
    arrays = 3 + (2 if "mu" in gates else 0)
    vin = K if target == "self" else V
    n_gates = 1 + sum(g in gates for g in ("log_alpha", "beta", "mu"))
    products = 5 + (1 if target == "self" else 0) + (1 if "beta" in gates else 0)
    return _step(n * 2 * K * V * products, arrays * n * K * V * 4,
                 n * ((2 * K + vin + V) * e + n_gates * e), dtype)


def mlp_memory_step(N, H, K, V, F, gates=("log_alpha", "beta", "mu"), target="external", dtype="bf16") -> Cost:
    """One token for N sequences: W1 [V,F] and W2 [F,K] read and written, their chunk-start copies
    read inside a chunk, S1, S2 read and written with momentum: (3 + 2·[μ]) · N·H·(V + K)·F·4 bytes.
    FLOPs: 7 products with a weight (W2_s k, W1_s a, W1_sᵀe, the two updates, the read's two; + 2 for
    self targets), ≈ (V + K)·F each."""
    e = ELEMENT_BYTES[dtype]
    n = N * H
    arrays = 3 + (2 if "mu" in gates else 0)
    vin = K if target == "self" else V
    n_gates = 1 + sum(g in gates for g in ("log_alpha", "beta", "mu"))
    products = 7 + (2 if target == "self" else 0)
    return _step(n * (V + K) * F * products, arrays * n * (V + K) * F * 4,
                 n * ((2 * K + vin + V) * e + n_gates * e), dtype)


def fast_mlp_step(N, D, F, mlp="gelu", dtype="bf16") -> Cost:
    """One token for N sequences: the fast weights W read (the MLP and W_outᵀg), the pending update
    U read and written: 3 weight sets of float32 (the chunk-end apply, once per chunk, is left out)."""
    e = ELEMENT_BYTES[dtype]
    fwd, upd = _mlp_products(mlp)
    return _step(N * 2 * D * F * (fwd + upd), 3 * fwd * N * D * F * 4, N * (3 * D * e + e), dtype)


# ---------------------------------------------------------------------------------------------
# The issue shapes
# ---------------------------------------------------------------------------------------------
ALL_GATES = ("log_alpha", "beta", "mu")


def issue_shapes() -> list[tuple[str, str, Cost]]:
    """(op, shape, cost) for the benchmark targets of the foundation issue."""
    rows = [
        ("linear_memory", "B4 T4096 H16 K128 V128 C64 +a+b+mu bf16",
         linear_memory(4, 4096, 16, 128, 128, 64, ALL_GATES)),
        ("linear_memory", "B4 T4096 H16 K128 V128 C1 bf16 (delta rule)",
         linear_memory(4, 4096, 16, 128, 128, 1, ())),
        ("linear_memory", "B4 T4096 H16 K128 V128 C1 +mu bf16 (momentum delta rule)",
         linear_memory(4, 4096, 16, 128, 128, 1, ("mu",))),
        ("linear_memory", "B4 T4096 H4 K128 V128 C64 +a+mu fp32 (titans shape)",
         linear_memory(4, 4096, 4, 128, 128, 64, ("log_alpha", "mu"), dtype="fp32")),
        ("mlp_memory", "B4 T4096 H8 K64 V64 F256 C64 +a+b+mu bf16",
         mlp_memory(4, 4096, 8, 64, 64, 256, 64, ALL_GATES)),
        ("mlp_memory", "B4 T4096 H4 K128 V128 F512 C64 +a+mu fp32 (titans shape)",
         mlp_memory(4, 4096, 4, 128, 128, 512, 64, ("log_alpha", "mu"), dtype="fp32")),
    ]
    for mlp, F in (("gelu", 8192), ("swiglu", 5504)):
        rows.append(("fast_mlp", f"B4 T4096 D2048 F{F} {mlp} static MLP bf16", static_mlp(4, 4096, 2048, F, mlp)))
        for c in (64, 512, 1024):
            rows.append(("fast_mlp", f"B4 T4096 D2048 F{F} {mlp} C{c} bf16", fast_mlp(4, 4096, 2048, F, c, mlp)))
    rows.append(("cms", "B4 T4096 D2048 F8192 gelu levels 64/512/4096 bf16",
                 cms(4, 4096, 2048, 8192, (64, 512, 4096))))
    rows.append(("cms", "B4 T4096 D2048 F8192 gelu static 3 MLPs bf16", static_cms(4, 4096, 2048, 8192, 3)))
    rows.append(("self_modifying_titans", "B1 T2048 H8 D64 Co8 Cm64 mlp bf16",
                 self_modifying_titans(1, 2048, 8, 64, 8, 64)))
    rows.append(("self_modifying_titans", "B4 T4096 H8 D64 Co16 Cm64 mlp bf16",
                 self_modifying_titans(4, 4096, 8, 64, 16, 64)))
    rows += [
        ("linear_memory_step", "N64 H16 K128 V128 +a+b+mu bf16", linear_memory_step(64, 16, 128, 128)),
        ("linear_memory_step", "N64 H16 K128 V128 no gates bf16", linear_memory_step(64, 16, 128, 128, ())),
        ("mlp_memory_step", "N64 H8 K64 V64 F256 +a+b+mu bf16", mlp_memory_step(64, 8, 64, 64, 256)),
        ("mlp_memory_step", "N64 H8 K64 V64 F256 no gates bf16", mlp_memory_step(64, 8, 64, 64, 256, ())),
        ("fast_mlp_step", "N4 D2048 F8192 gelu bf16", fast_mlp_step(4, 2048, 8192)),
        ("fast_mlp_step", "N4 D2048 F5504 swiglu bf16", fast_mlp_step(4, 2048, 5504, "swiglu")),
    ]
    return rows


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def markdown_table() -> str:
    lines = ["| op | shape | mode | GFLOP | MB | compute ms | memory ms | floor ms | bound |",
             "|---|---|---|---|---|---|---|---|---|"]
    for op, shape, cost in issue_shapes():
        for mode in ("fwd", "fwd+bwd") if cost.flops_bwd or cost.bytes_bwd else ("fwd",):
            c_ms = 1e3 * cost.flops(mode) / peak_flops(cost.dtype)
            m_ms = 1e3 * cost.bytes(mode) / bandwidth()
            lines.append(f"| {op} | {shape} | {mode} | {_fmt(cost.flops(mode) / 1e9)} | "
                         f"{_fmt(cost.bytes(mode) / 1e6)} | {_fmt(c_ms)} | {_fmt(m_ms)} | "
                         f"{_fmt(cost.floor_ms(mode))} | {cost.bound(mode)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(f"ceilings: {PEAK_FLOPS} FLOP/s, {BANDWIDTH:.3g} B/s (override: NESTED_KERNELS_PEAK_FLOPS, "
          "NESTED_KERNELS_PEAK_BW)")
    print(markdown_table())
