"""Helpers for comparing backends with the float64 reference (used by tests and ``verify``)."""
from __future__ import annotations

from typing import Optional

import torch

# SPEC §7: relative error bounds against the float64 reference.
TOLERANCE = {
    ("reference", torch.float32): 1e-5, ("torch", torch.float32): 1e-5,
    ("kernel", torch.float32): 2e-3,
    ("any", torch.bfloat16): 2e-2, ("any", torch.float16): 2e-2,
}


def tolerance(backend: str, dtype: torch.dtype) -> float:
    """Relative-error bound of SPEC §7 for ``backend`` on inputs of ``dtype`` (vs float64)."""
    if dtype in (torch.bfloat16, torch.float16):
        return TOLERANCE[("any", dtype)]
    if dtype == torch.float64:
        return 1e-10
    return TOLERANCE[(backend if backend in ("reference", "torch") else "kernel", dtype)]


def rel_error(out: Optional[torch.Tensor], ref: Optional[torch.Tensor]) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (inf for NaN/Inf in ``out``; 0 when both are empty/zero)."""
    if out is None and ref is None:
        return 0.0
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if out.shape != ref.shape:
        raise AssertionError(f"shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}")
    if not torch.isfinite(out).all():
        return float("inf")
    denom = ref.norm().item()
    diff = (out - ref).norm().item()
    return diff if denom == 0 else diff / denom


def assert_close_rel(out, ref, tol: float, what: str = "") -> None:
    err = rel_error(out, ref)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"


def poison_(t: torch.Tensor) -> torch.Tensor:
    """Fill ``t`` with NaN (or the dtype's max for integers) so unwritten elements show up."""
    if t.is_floating_point():
        return t.fill_(float("nan"))
    return t.fill_(torch.iinfo(t.dtype).max)


def projection_loss(outputs: dict, seed: int = 123) -> torch.Tensor:
    """Σ ⟨t, r_t⟩ over the outputs with fixed random r_t (float64, CPU): one scalar whose gradient
    checks every output's adjoint at once."""
    g = torch.Generator().manual_seed(seed)
    return sum((t.double().cpu() * torch.randn(t.shape, generator=g, dtype=torch.float64)).sum()
               for t in outputs.values())


def assert_run_close(got: dict, dgot: dict, ref: dict, dref: dict, tol: float) -> None:
    """Outputs (``position`` compared exactly, the rest by relative error) and gradients (``d``
    prefixed in the message) of a backend run against the reference run."""
    assert torch.equal(got.pop("position").cpu(), ref.pop("position").cpu())
    assert got.keys() == ref.keys(), (sorted(got), sorted(ref))
    errs = {n: rel_error(got[n], ref[n]) for n in ref}
    errs.update({"d" + n: rel_error(dgot[n], dref[n]) for n in dref})
    bad = {n: e for n, e in errs.items() if not e <= tol}
    assert not bad, f"relative errors above {tol}: {bad}"


def linear_memory_draw(B: int, T: int, H: int, K: int, V: int, gates: str = "abm", *, N: Optional[int] = None,
                       resume=None, seed: int = 0) -> tuple[dict, dict]:
    """Float64 CPU inputs of ``linear_memory`` in the SPEC §7 range (‖k‖ = 1, η ∈ [0, 1),
    α ∈ [0.5, 1], β ≤ α, μ ∈ [0, 0.9); ``gates`` a subset of "abm") and an initial state {M, S}
    of N sequences (default B), with M_chunk and ``position`` (positions per sequence) when
    ``resume`` is given: a state that resumes mid-chunk."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    ru = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    N = B if N is None else N
    alpha = 0.5 + 0.5 * ru(B, T, H)
    x = dict(q=rn(B, T, H, K), k=torch.nn.functional.normalize(rn(B, T, H, K), dim=-1), v=rn(B, T, H, V),
             eta=ru(B, T, H),
             log_alpha=alpha.log() if "a" in gates else None,
             beta=alpha * ru(B, T, H) if "b" in gates else None,
             mu=0.9 * ru(B, T, H) if "m" in gates else None)
    st = dict(M=0.5 * rn(N, H, K, V), S=0.3 * rn(N, H, K, V) if "m" in gates else None)
    if resume is not None:
        st["M_chunk"] = 0.5 * rn(N, H, K, V)
        st["position"] = torch.tensor(resume, dtype=torch.int64)
    return x, st

