"""Check every backend of every op against the float64 reference: ``python -m nested_kernels.verify``.

For each op (SPEC §2–§5) whose module exists, each available backend other than ``reference``
and each case of :mod:`nested_kernels.cases`: draw fresh random inputs, run the backend on them
and the ``reference`` backend on the same inputs upcast to float64, then backpropagate the same
random upstream gradient (on the output and on every floating-point tensor of the final state)
through both. The relative error ‖x − ref‖ / ‖ref‖ (``testing.rel_error``; NaN/Inf count as inf)
of the output, every final-state tensor and the gradient of every floating-point input must stay
within ``testing.tolerance(backend, dtype)`` (SPEC §7). Kernel outputs are poisoned with NaN
(``NESTED_KERNELS_POISON=1``) so an element a kernel never writes fails. The decode steps
(``linear_memory_step``, ``mlp_memory_step``, ``fast_mlp_step``; SPEC §6) are checked per backend
over streams: a prefix by the full op, then one step per token across a chunk boundary, against
one float64 call of the full op (outputs and every final-state tensor, SPEC §7's kernel bound).

Off CUDA, Triton backends run under the interpreter (``TRITON_INTERPRET=1``, tiny shapes).
Prints one table and a summary line; the exit code is 1 when any check fails or errors. A
backend that hands the work to another one (``BackendFallbackWarning``) is an ERROR, not a pass.
On CUDA the cases are spread over ``--jobs`` worker processes (default min(8, CPUs)): Triton's
JIT compiles, 15–175 s per configuration on the H100 machine, run on the CPU and overlap.

    python -m nested_kernels.verify [--ops linear_memory,mlp_memory] [--backends torch,triton]
                                    [--quick] [--device cuda] [--case SUBSTRING] [--jobs N]
                                    [--json OUT]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch

from . import cases as cases_mod
from .core.backends import BackendFallbackWarning
from .cases import OPS, STEP_OPS, Case, call_op, flatten_result, load_op, load_step, make_inputs, op_status, upcast

PASS, FAIL, ERROR, SKIP, NA = "PASS", "FAIL", "ERROR", "SKIP", "N/A"
UNSUPPORTED_MARKER = "cannot run these inputs"   # core.backends.select_backend's message


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------
def git_commit() -> str:
    """Short commit of the checkout holding this package (+ "-dirty"), or $NESTED_KERNELS_COMMIT."""
    if os.environ.get("NESTED_KERNELS_COMMIT"):
        return os.environ["NESTED_KERNELS_COMMIT"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        if not commit:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def environment(device) -> dict:
    """Where and with what a result was produced (printed by verify, stored in every bench row)."""
    device = torch.device(device)
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return {"device": device_name(device), "torch": torch.__version__, "triton": triton_version,
            "python": platform.python_version(), "commit": git_commit(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def _triton_kernels_loaded() -> bool:
    """Whether a module of this package has imported Triton (its kernels may then be defined)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("nested_kernels.") and module is not None:
            if any(getattr(v, "__name__", "").startswith("triton") for v in vars(module).values()
                   if isinstance(v, type(sys))):
                return True
    return False


def prepare_interpreter(device: torch.device) -> Optional[str]:
    """Off CUDA, set TRITON_INTERPRET=1 so Triton kernels run on CPU tensors. Returns a warning
    when kernels of this package were already defined without the interpreter."""
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    os.environ["TRITON_INTERPRET"] = "1"
    if _triton_kernels_loaded():
        return ("warning: Triton kernels of nested_kernels were imported before TRITON_INTERPRET=1 was set; "
                "they cannot run on the CPU (run `python -m nested_kernels.verify` or set the variable)")
    return None


def reexec_with_interpreter(module: str, argv: list[str]) -> None:
    """For command-line entry points on a machine without CUDA: when importing the package already
    defined Triton kernels without the interpreter, restart the process with TRITON_INTERPRET=1."""
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") is not None:
        return
    if not _triton_kernels_loaded():
        os.environ["TRITON_INTERPRET"] = "1"
        return
    env = dict(os.environ, TRITON_INTERPRET="1")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


# ---------------------------------------------------------------------------------------------
# One check
# ---------------------------------------------------------------------------------------------
@dataclass
class Row:
    backend: str
    op: str
    case: str
    dtype: str
    status: str
    worst: str = ""
    error: float = float("nan")
    tol: float = float("nan")
    label: str = ""
    note: str = ""
    seconds: float = 0.0
    errors: dict = field(default_factory=dict)


def _leaves(tensors: dict, device) -> dict:
    """Copies of the inputs on ``device``; floating-point ones are leaves that require grad."""
    out = {}
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor):
            t = t.detach().to(device).clone()
            if t.is_floating_point():
                t.requires_grad_(True)
        out[name] = t
    return out


def _grads(outputs: dict, leaves: dict, upstream: dict) -> dict:
    """Gradients of every floating-point leaf for the given upstream gradients (None -> absent)."""
    pairs = [(outputs[n], upstream[n]) for n in upstream
             if n in outputs and outputs[n].is_floating_point() and outputs[n].requires_grad]
    wrt = {n: t for n, t in leaves.items() if isinstance(t, torch.Tensor) and t.requires_grad}
    if not pairs or not wrt:
        return {n: None for n in wrt}
    got = torch.autograd.grad([o for o, _ in pairs],
                              list(wrt.values()),
                              [g.to(device=o.device, dtype=o.dtype) for o, g in pairs],
                              allow_unused=True)
    return dict(zip(wrt, got))


class Reference:
    """The float64 reference of one case, computed once and shared by all backends."""

    def __init__(self, fn, case: Case, tensors: dict, device, seed: int):
        start = time.perf_counter()
        leaves = _leaves(upcast(tensors), device)
        self.outputs = flatten_result(case, call_op(fn, case, leaves, "reference"))
        gen = torch.Generator(device=device)
        gen.manual_seed(seed + 7919)
        self.upstream = {n: torch.randn(o.shape, generator=gen, device=device, dtype=torch.float64)
                         for n, o in sorted(self.outputs.items())
                         if o.is_floating_point() and o.requires_grad}
        self.grads = _grads(self.outputs, leaves, self.upstream)
        self.outputs = {n: o.detach() for n, o in self.outputs.items()}
        self.seconds = time.perf_counter() - start
        bad = [n for n, t in {**self.outputs, **self.grads}.items()
               if t is not None and t.is_floating_point() and not torch.isfinite(t).all()]
        zero = [n for n, t in self.outputs.items()   # e.g. a self target with a zero start memory
                if not n.startswith("final.") and t.is_floating_point() and t.numel() and not t.any()]
        self.problem = (f"reference is not finite in {', '.join(bad)}" if bad else
                        f"degenerate case: the reference {', '.join(zero)} is identically zero" if zero
                        else None)


def _compare(got: dict, ref: dict, prefix: str = "") -> dict:
    """Relative error per name (integer tensors: 0 when equal, inf otherwise)."""
    errors = {}
    for name, r in ref.items():
        g = got.get(name)
        if r is None and g is None:
            continue
        if r is None or g is None:
            template = r if r is not None else g
            r = torch.zeros_like(template) if r is None else r
            g = torch.zeros_like(template) if g is None else g
        if not r.is_floating_point():
            same = g.shape == r.shape and torch.equal(g.cpu().to(r.dtype), r.cpu())
            errors[prefix + name] = 0.0 if same else math.inf
            continue
        from .testing import rel_error
        try:
            errors[prefix + name] = rel_error(g, r)
        except AssertionError:   # shape mismatch
            errors[prefix + name] = math.inf
    return errors


class _Unsupported(Exception):
    """The backend refuses the case (``select_backend``'s UNSUPPORTED_MARKER): a SKIP row."""


def _backend_call(call: Callable):
    """``call()``, its refusal of the case raised as ``_Unsupported`` (the reason as the message)."""
    try:
        return call()
    except RuntimeError as exc:
        if UNSUPPORTED_MARKER in str(exc):
            raise _Unsupported(str(exc).split(UNSUPPORTED_MARKER)[-1].strip(" :")) from None
        raise


def _checked(row: Row, device, compute: Callable[[], tuple]) -> Row:
    """Fill ``row`` from ``compute() -> (errors by tensor name, note)``: PASS or FAIL against
    ``row.tol``; SKIP when the backend refuses the case (``_backend_call``); ERROR when ``errors``
    is None (the note says why), when anything raises, or when the backend hands the work to
    another one (``BackendFallbackWarning``): not this backend's pass."""
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BackendFallbackWarning)
            errors, note = compute()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        row.seconds = time.perf_counter() - start
        row.note = note
        if errors is None:
            return row
        row.errors = errors
        row.worst, row.error = max(errors.items(), key=lambda kv: kv[1]) if errors else ("", 0.0)
        row.status = PASS if row.error <= row.tol else FAIL
        fallbacks = [str(w.message) for w in caught if issubclass(w.category, BackendFallbackWarning)]
        if fallbacks:
            row.status, row.note = ERROR, f"fell back: {fallbacks[0]}"[:300]
    except _Unsupported as exc:
        row.status, row.note = SKIP, str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure of a backend is reported, not raised
        row.status, row.note = ERROR, f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        row.seconds = time.perf_counter() - start
    return row


def check_case(fn, op: str, backend: str, case: Case, device, ref_device, seed: int,
               ref_cache: dict) -> Row:
    """Run ``backend`` on one case and compare with the float64 reference."""
    from .testing import tolerance

    def compute():
        tensors = make_inputs(case, device, seed)
        leaves = _leaves(tensors, device)
        outputs = flatten_result(case, _backend_call(lambda: call_op(fn, case, leaves, backend)))
        if id(case) not in ref_cache:
            ref_cache[id(case)] = Reference(fn, case, tensors, ref_device, seed)
        ref = ref_cache[id(case)]
        if ref.problem:
            return None, ref.problem
        missing = sorted(set(ref.outputs) - set(outputs))
        grads = _grads(outputs, leaves, ref.upstream)
        errors = _compare({n: o.detach() for n, o in outputs.items()}, ref.outputs)
        errors.update(_compare(grads, ref.grads, prefix="grad."))
        errors.update(dict.fromkeys(missing, math.inf))
        return errors, (f"missing outputs: {', '.join(missing)}" if missing else "")

    row = Row(backend, op, str(case), case.dtype_name, ERROR, tol=tolerance(backend, case.dtype), label=case.label)
    return _checked(row, device, compute)


def check_step_case(op: str, backend: str, case: Case, prefix: int, device, seed: int) -> Row:
    """Run the decode step ``op`` of ``backend`` over a stream (its first ``prefix`` tokens by the
    full op) and compare its outputs and final state with one float64 call of the full op
    (``step_check.stream_errors``), within SPEC §7's kernel bound for the case's dtype."""
    from .step_check import stream_errors
    from .testing import tolerance
    row = Row(backend, op, f"{case} steps {prefix}..{case.dims['T']}", case.dtype_name, ERROR,
              tol=tolerance("kernel", case.dtype), label=case.label)
    return _checked(row, device, lambda: (_backend_call(lambda: stream_errors(case, device, backend, prefix, seed)), ""))


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m nested_kernels.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", default=",".join(OPS + STEP_OPS),
                   help=f"comma-separated ops and decode steps (default: all of {', '.join(OPS + STEP_OPS)})")
    p.add_argument("--backends", default="",
                   help="comma-separated backends to check (default: every available one except 'reference'; "
                        "name 'reference' to check it in its low-precision dtypes too)")
    p.add_argument("--quick", action="store_true", help="the short case list")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--ref-device", default=None, help="device of the float64 reference (default: --device)")
    p.add_argument("--case", default="", help="only cases whose description or label contains this text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="OUT", help="also write all rows and the environment as JSON")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes, each checking every N-th case (default: on CUDA min(8, CPUs), "
                        "since Triton's JIT compiles dominate and run on the CPU; else 1)")
    p.add_argument("--shard", default=None, metavar="I/N", help=argparse.SUPPRESS)   # one worker's share
    return p.parse_args(argv)


def _fmt_err(x: float) -> str:
    return "-" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:.2e}")


def format_table(rows: list[Row]) -> str:
    head = ("backend", "op", "case", "dtype", "worst", "max rel err", "tol", "status")
    body = [(r.backend, r.op, r.case, r.dtype, r.worst, _fmt_err(r.error), _fmt_err(r.tol),
             r.status + (f"  ({r.note})" if r.note else "")) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    widths[-1] = len(head[-1])
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def summarize(rows: list[Row]) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in (PASS, FAIL, ERROR, SKIP, NA)}
    verdict = "FAILED" if counts[FAIL] or counts[ERROR] else "OK"
    return (f"verify: {verdict}: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[ERROR]} errors, "
            f"{counts[SKIP]} skipped (backend does not support the case), {counts[NA]} not available")


def run(ops, backends=None, quick=False, device=None, ref_device=None, case_filter="", seed=0,
        log=print, shard=(0, 1)) -> tuple[list[Row], dict]:
    """Run the checks; returns (rows, environment). ``log`` receives progress lines. ``shard``
    (i, n): only the cases whose running index (over all ops) is i modulo n."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ref_device = torch.device(ref_device) if ref_device else device
    warning = prepare_interpreter(device)
    os.environ["NESTED_KERNELS_POISON"] = "1"
    if device.type == "cuda":   # the 'torch' backend is held to float32 accuracy: no TF32 there
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    from .core.backends import available_backends
    threads = torch.get_num_threads()
    if device.type == "cpu" and ref_device.type == "cpu":
        torch.set_num_threads(1)    # tiny shapes: avoids OpenMP spin-waits when the cores are shared
    try:
        return _run(ops, backends, quick, device, ref_device, case_filter, seed, log, warning, available_backends,
                    shard)
    finally:
        torch.set_num_threads(threads)


def _run(ops, backends, quick, device, ref_device, case_filter, seed, log, warning, available_backends, shard):
    env = environment(device)
    if warning:
        log(warning)
    rows: list[Row] = []
    index = -1
    for op in ops:
        why = op_status(op)
        if why:
            if shard[0] == 0:
                rows.append(Row("-", op, "-", "-", NA, note=why))
            continue
        fn, op_backends = load_step(op) if op in STEP_OPS else load_op(op)
        names = [b for b in available_backends(op_backends, device, experimental=bool(backends))
                 if (b in backends if backends else b != "reference")]
        if not names:
            have = ", ".join(op_backends)
            if shard[0] == 0:
                rows.append(Row("-", op, "-", "-", NA, note=f"no backend to check on {device.type} (has: {have})"))
            continue
        if op in STEP_OPS:
            for case, prefix in cases_mod.step_cases(op, device.type, quick):
                if case_filter and case_filter not in str(case) and case_filter not in case.label:
                    continue
                index += 1
                if index % shard[1] != shard[0]:
                    continue
                for backend in names:
                    rows.append(check_step_case(op, backend, case, prefix, device, seed))
                    _log_row(log, rows[-1])
            continue
        ref_cache: dict = {}
        op_cases = [c for c in cases_mod.verification_cases(op, device.type, quick)
                    if not case_filter or case_filter in str(c) or case_filter in c.label]
        for case in op_cases:
            index += 1
            if index % shard[1] != shard[0]:
                continue
            for backend in names:
                if backend == "reference" and case.dtype == torch.float64:
                    continue
                rows.append(check_case(fn, op, backend, case, device, ref_device, seed, ref_cache))
                _log_row(log, rows[-1])
            ref_cache.pop(id(case), None)
    return rows, env


def _log_row(log, row: Row) -> None:
    log(f"  {row.status:5s} {row.backend:9s} {row.op} {row.case} {row.dtype} "
        f"{row.worst} {_fmt_err(row.error)} ({row.seconds:.1f} s)" + (f" {row.note}" if row.note else ""))


def _finite(obj):
    """JSON-safe copy: non-finite floats become strings ("inf", "nan")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _worker_argv(args, ops, device) -> list[str]:
    """The arguments of one worker process: this call's, without --jobs and --json."""
    argv = ["--ops", ",".join(ops), "--device", str(device), "--seed", str(args.seed)]
    for flag, value in (("--backends", args.backends), ("--ref-device", args.ref_device), ("--case", args.case)):
        if value:
            argv += [flag, value]
    return argv + (["--quick"] if args.quick else [])


def _row(d: dict) -> Row:
    """A Row from its JSON form (non-finite floats were written as strings)."""
    num = lambda v: float(v) if isinstance(v, str) else v  # noqa: E731
    d = dict(d, error=num(d["error"]), tol=num(d["tol"]), errors={k: num(v) for k, v in d["errors"].items()})
    return Row(**d)


def _run_workers(argv: list[str], jobs: int, ops: list[str], log=print, poll_s: float = 0.5) -> list[Row]:
    """Run ``python -m nested_kernels.verify ARGV --shard i/JOBS`` for every i at once and collect
    their rows in op order; each worker's progress lines are printed as they come (so a run cut
    short still shows every case that finished), and workers still running when this one is
    interrupted are killed. A worker that ends without results gives an ERROR row with its last
    output line."""
    with tempfile.TemporaryDirectory() as tmp:
        workers = []
        try:
            for i in range(jobs):
                out, text = os.path.join(tmp, f"{i}.json"), os.path.join(tmp, f"{i}.log")
                with open(text, "w") as f:
                    proc = subprocess.Popen([sys.executable, "-m", "nested_kernels.verify", *argv, "--shard",
                                             f"{i}/{jobs}", "--json", out], stdout=f, stderr=subprocess.STDOUT)
                workers.append((i, proc, out, text))
            printed = [0] * jobs
            while True:
                alive = [proc.poll() is None for _, proc, _, _ in workers]
                for (i, _, _, text), on in zip(workers, alive):
                    with open(text) as f:
                        lines = f.read().splitlines()
                    done = len(lines) - 1 if on else len(lines)     # a live worker's last line may be partial
                    for line in lines[printed[i]:done]:
                        if line.startswith("  "):
                            log(line)
                    printed[i] = max(printed[i], done)
                if not any(alive):
                    break
                time.sleep(poll_s)
        finally:
            for _, proc, _, _ in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        rows: list[Row] = []
        for i, proc, out, text in workers:
            if os.path.exists(out):
                with open(out) as f:
                    rows += [_row(d) for d in json.load(f)["rows"]]
            else:
                with open(text) as f:
                    lines = f.read().splitlines()
                last = lines[-1] if lines else ""
                rows.append(Row("-", "-", f"worker {i}/{jobs}", "-", ERROR,
                                note=f"exited with {proc.returncode} without results: {last}"[:300]))
    return sorted(rows, key=lambda r: ops.index(r.op) if r.op in ops else len(ops))


def main(argv=None) -> int:
    args = _parse(argv)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = [o for o in ops if o not in OPS + STEP_OPS]
    if unknown:
        print(f"unknown ops: {', '.join(unknown)}; known: {', '.join(OPS + STEP_OPS)}", file=sys.stderr)
        return 2
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] or None
    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    prepare_interpreter(device)
    env = environment(device)
    print(f"nested_kernels verify: device {env['device']} | torch {env['torch']} | triton {env['triton']} | "
          f"python {env['python']} | commit {env['commit']} | {env['date']}")
    print(f"cases: {'quick' if args.quick else 'full'} set for {device.type}; reference: float64 on "
          f"{args.ref_device or device.type}; outputs poisoned (NESTED_KERNELS_POISON=1)")
    jobs = 1 if args.shard else (max(1, args.jobs) if args.jobs is not None else
                                 (min(8, os.cpu_count() or 1) if device.type == "cuda" else 1))
    if jobs > 1:
        print(f"{jobs} worker processes (--jobs), each checking every {jobs}-th case")
        rows = _run_workers(_worker_argv(args, ops, device), jobs, ops)
    else:
        shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else (0, 1)
        rows, env = run(ops, backends, args.quick, device, args.ref_device, args.case, args.seed, shard=shard)
    print()
    print(format_table(rows))
    print()
    print(summarize(rows) + f" in {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_finite({"environment": env, "quick": args.quick, "rows": [asdict(r) for r in rows]}),
                      f, indent=1, default=str)
    return 1 if any(r.status in (FAIL, ERROR) for r in rows) else 0


if __name__ == "__main__":
    reexec_with_interpreter("nested_kernels.verify", sys.argv[1:])
    sys.exit(main())
