"""Compile the Triton kernels of ``linear_memory`` for sm_90 without a GPU and report shared memory,
ptxas registers and spills per kernel variant (Triton ships ptxas; no device is used).

The kernels are not described by hand: the real launchers (``triton_backend.forward`` and
``backward``) run on small CPU tensors with every kernel launch intercepted, so the probe compiles
exactly what a GPU launch would compile — the same constexprs, ``None`` arguments, pointer dtypes,
alignment specialisation (pointers and integers divisible by 16), warps, ptxas options and the
MMA mode (DISABLE_MMA_V3) in force at the launch. Shapes only enter through constexprs and
integer specialisation: T = 256, H = 16 stand for the issue shape (T = 4096, H = 16).

    python python/compile_linear_memory_triton.py [--gates abm --target self --read before
        --C 64 --K 128 --V 128 --dtype bf16 --resume --mma v2|mixed|auto]
    python python/compile_linear_memory_triton.py --sweep [--jobs 2] [--cache /tmp/lm_probe.json]
    python python/compile_linear_memory_triton.py --gates abm --instructions /tmp/ptx_a   # then, on another tree,
        ... --instructions /tmp/ptx_b && diff -r /tmp/ptx_a /tmp/ptx_b   # same instructions?

``--sweep`` covers every configuration the backend accepts at K = 128 (V = 128, and V = 64 for
external targets): gates none/a/b/m/ab/am/bm/abm × target × read × C ∈ {1 (external only), 16, 32, 64, 128} ×
(fresh, resumed + varlen) × input dtype (bf16, fp16, fp32), compiles each distinct kernel variant
once and prints one line per configuration with its worst kernel; "OVER" marks shared memory
above the H100's 227 KB per block (the launch would fail), "spill" more than 1 KB of spill
stores per thread. Exit status 1 when a variant fails to compile or does not fit.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor

os.environ.pop("TRITON_INTERPRET", None)
os.environ.pop("NESTED_KERNELS_POISON", None)

import torch  # noqa: E402
import triton  # noqa: E402
from gpu_check_utils import compile_sm90, ptxas_usage  # noqa: E402

from nested_kernels.ops.linear_memory import triton_backend as tbk  # noqa: E402
from nested_kernels.ops.linear_memory.api import OP  # noqa: E402
from nested_kernels.ops.linear_memory import triton_bwd as tb, triton_bwd_plain as tp, triton_fwd as tf  # noqa: E402

SHARED_LIMIT = 232448          # bytes of shared memory an H100 block may use (227 KB)
SPILL_LIMIT = 1024             # bytes of spill stores per thread we accept
MODULES = (tf, tb, tp)         # the kernel modules of linear_memory
KERNELS = {n: getattr(m, n) for m in MODULES for n in dir(m)
           if n.endswith("_kernel") and isinstance(getattr(m, n), triton.runtime.JITFunction)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PTR = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32", torch.int32: "*i32",
       torch.int64: "*i64"}
LAUNCH_KW = ("num_warps", "num_stages", "ptx_options")


# -- capturing the launches --------------------------------------------------------------------

class _Recorder:
    """Stands in for a kernel: ``rec[grid](*args, **kw)`` records a compile description."""

    def __init__(self, name, fn, sink):
        self.name, self.fn, self.sink = name, fn, sink

    def __getitem__(self, grid):
        def launch(*args, **kw):
            self.sink.append(describe(self.name, self.fn, args, kw))
        return launch


def describe(name, fn, args, kw):
    """(name, signature, constexprs, attrs, options, mma) as Triton's JIT would specialise them."""
    names = fn.arg_names
    vals = dict(zip(names, args))
    vals.update({k: v for k, v in kw.items() if k not in LAUNCH_KW})
    sig, const, attrs = {}, {}, {}
    for i, n in enumerate(names):
        v = vals[n]
        if fn.params[i].is_constexpr or v is None:
            sig[n] = "constexpr"
            const[n] = v
        elif isinstance(v, torch.Tensor):
            sig[n] = PTR[v.dtype]
            attrs[n] = True
        elif isinstance(v, bool):
            sig[n] = "i1"
        elif isinstance(v, int):
            if v == 1:             # Triton specialises integers equal to 1 as constants
                sig[n] = "constexpr"
                const[n] = 1
            else:
                sig[n] = "i32" if abs(v) < 2**31 else "i64"
                attrs[n] = v % 16 == 0
        else:
            sig[n] = "fp32"
    opts = {k: kw[k] for k in LAUNCH_KW if k in kw}
    mma = "v2" if os.environ.get("DISABLE_MMA_V3") in ("1", "true", "on") else "v3"
    return dict(name=name, sig=sig, const=const, attrs=sorted(n for n, a in attrs.items() if a),
                opts=opts, mma=mma)


@contextlib.contextmanager
def capture():
    sink = []
    saved = {}
    for mod in MODULES:
        for n in dir(mod):
            obj = getattr(mod, n)
            if n.endswith("_kernel") and isinstance(obj, triton.runtime.JITFunction):
                saved[(mod, n)] = obj
                setattr(mod, n, _Recorder(n, obj, sink))
    try:
        yield sink
    finally:
        for (mod, n), obj in saved.items():
            setattr(mod, n, obj)


def launches(cfg, env):
    """Compile descriptions of the kernels one forward + backward call of ``cfg`` launches."""
    gates, target, read, C, K, V, dtype, resume = (cfg[k] for k in
                                                   ("gates", "target", "read", "C", "K", "V", "dtype", "resume"))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        dt = DTYPES[dtype]
        B, T, H = 1, 256, 16
        Vv = K if target == "self" else V
        z = lambda *s, d=dt: torch.zeros(*s, dtype=d)  # noqa: E731
        N = 2 if resume else 1
        inputs = dict(q=z(B, T, H, K), k=z(B, T, H, K), v=z(B, T, H, Vv), eta=z(B, T, H),
                      log_alpha=z(B, T, H) if "a" in gates else None, beta=z(B, T, H) if "b" in gates else None,
                      mu=z(B, T, H) if "m" in gates else None, m0=z(N, H, K, V, d=torch.float32),
                      s0=z(N, H, K, V, d=torch.float32) if "m" in gates else None,
                      m_chunk0=z(N, H, K, V, d=torch.float32) if resume else None,
                      position0=torch.tensor([3 % C, 0]) if resume else None,
                      cu_seqlens=torch.tensor([0, 100, T], dtype=torch.int32) if resume else None)
        # keep_factors: the API sets it when a gradient will be taken (the backward reuses the factors)
        c = dict(chunk_size=C, target=target, read=read, scale=1.0, output_final_state=True, keep_factors=True)
        with capture() as sink:
            outs = tbk.forward(inputs, c)
            names = ("o", "M", "S", "M_chunk")
            grads = {n: torch.zeros_like(t) if t.is_floating_point() and t.numel() else None
                     for n, t in zip(names, outs)}
            tbk.backward(inputs, dict(zip(OP.outputs, outs)), grads, c)
        return sink
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- compiling ---------------------------------------------------------------------------------

def key_of(d):
    """Cache key: the description and the kernel's source hash (Triton's, with its callees)."""
    return json.dumps(dict(d, const={k: str(v) for k, v in d["const"].items()},
                           src=KERNELS[d["name"]].cache_key), sort_keys=True)


def compile_desc(d):
    """{shared, regs, spill_st, spill_ld} or {error} of one description."""
    try:
        if d["mma"] == "v2":
            os.environ["DISABLE_MMA_V3"] = "1"
        else:
            os.environ.pop("DISABLE_MMA_V3", None)
        opts = {k: v for k, v in d["opts"].items() if k != "ptx_options"}
        ker = compile_sm90(KERNELS[d["name"]], d["sig"], d["const"], opts, d["attrs"])
        regs, st, ld = (-1 if n is None else n for n in ptxas_usage(ker.asm["ptx"], d["opts"].get("ptx_options", "")))
        return dict(shared=ker.metadata.shared, regs=regs, spill_st=st, spill_ld=ld)
    except Exception as e:  # noqa: BLE001
        return dict(error=f"{type(e).__name__}: {str(e)[:500]}")


def instructions(d) -> str:
    """The sm_90 PTX instructions of one description as a sorted multiset: debug sections,
    comments and parameter declarations dropped, register numbers and labels normalised — equal
    for two source trees when a refactor only reordered or renamed (order is not compared)."""
    os.environ.pop("DISABLE_MMA_V3", None) if d["mma"] != "v2" else os.environ.update(DISABLE_MMA_V3="1")
    opts = {k: v for k, v in d["opts"].items() if k != "ptx_options"}
    ptx = compile_sm90(KERNELS[d["name"]], d["sig"], d["const"], opts, d["attrs"]).asm["ptx"]
    body = ptx.split("\t.section")[0].splitlines()
    keep = (re.sub(r"_param_\d+", "_param_N", re.sub(r"%[a-z]+\d+", "%R", re.sub(r"\$L__\w+", "L", line)))
            for line in body if not re.match(r"\s*(\.loc|\.file|//|\.param|\$L__\w+:)", line))
    return "\n".join(sorted(line for line in keep if line.strip())) + "\n"


def verdict(r):
    if "error" in r:
        return "ERROR"
    if r["shared"] > SHARED_LIMIT:
        return "OVER"
    if r["spill_st"] > SPILL_LIMIT:
        return "spill"
    return "ok"


def fmt(r):
    if "error" in r:
        return r["error"]
    return f"shared {r['shared']:6d}  regs {r['regs']:3d}  spill st/ld {r['spill_st']}/{r['spill_ld']}"


def compile_all(descs, jobs, cache_path):
    cache = {}
    if cache_path and os.path.exists(cache_path):
        with open(cache_path) as fh:
            cache = json.load(fh)
    todo = {}
    for d in descs:
        k = key_of(d)
        if k not in cache:
            todo[k] = d
    if todo:
        print(f"compiling {len(todo)} kernel variants ({len(cache)} cached) with {jobs} job(s)", flush=True)
        with ProcessPoolExecutor(jobs) as ex:
            for i, (k, r) in enumerate(zip(todo, ex.map(compile_desc, todo.values()))):
                cache[k] = r
                if cache_path and i % 8 == 7:
                    _save(cache, cache_path)
        if cache_path:
            _save(cache, cache_path)
    return cache


def _save(cache, path):
    with open(path + ".tmp", "w") as fh:
        json.dump(cache, fh)
    os.replace(path + ".tmp", path)


def sweep_configs(args):
    gates = args.sweep_gates.split(",")
    for g, target, read, C, V, resume, dtype in itertools.product(
            gates, ("external", "self"), ("after", "before", "chunk"), [int(c) for c in args.sweep_C.split(",")],
            (128, 64), (False, True), args.sweep_dtypes.split(",")):
        if target == "self" and V != 128:
            continue
        yield dict(gates=g, target=target, read=read, C=C, K=128, V=V, dtype=dtype, resume=resume)


def label(cfg):
    return (f"gates '{cfg['gates'] or '-'}' {cfg['target']:8s} {cfg['read']:6s} C{cfg['C']:<3d} "
            f"K{cfg['K']} V{cfg['V']} {cfg['dtype']}{' resumed+varlen' if cfg['resume'] else ''}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gates", default="ab", help="letters of log_alpha (a), beta (b), mu (m); '' for none")
    ap.add_argument("--target", default="external", choices=["external", "self"])
    ap.add_argument("--read", default="after", choices=["after", "before", "chunk"])
    ap.add_argument("--C", type=int, default=64, help="chunk size (1: the exact rule, tiles of "
                    "NESTED_KERNELS_LM_TRITON_EXACT_TILE tokens, set with --env)")
    ap.add_argument("--K", type=int, default=128)
    ap.add_argument("--V", type=int, default=128)
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    ap.add_argument("--resume", action="store_true", help="resumed mid-chunk state and cu_seqlens")
    ap.add_argument("--mma", default=None, choices=["v2", "mixed", "auto"],
                    help="NESTED_KERNELS_LM_TRITON_MMA for the launchers (default: theirs)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the launchers (repeatable)")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--sweep-gates", default=",a,b,m,ab,am,bm,abm")
    ap.add_argument("--sweep-C", default="1,16,32,64,128")
    ap.add_argument("--sweep-dtypes", default="bf16,fp16,fp32")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", default=None, help="JSON file of compiled variants, reused across runs")
    ap.add_argument("--instructions", default=None, metavar="DIR",
                    help="also write each kernel's sorted PTX instructions to DIR (one configuration)")
    args = ap.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    if args.mma:
        env["NESTED_KERNELS_LM_TRITON_MMA"] = args.mma

    cfgs = list(sweep_configs(args)) if args.sweep else [
        dict(gates=args.gates, target=args.target, read=args.read, C=args.C, K=args.K,
             V=args.K if args.target == "self" else args.V, dtype=args.dtype, resume=args.resume)]
    per_cfg = [(cfg, launches(cfg, env)) for cfg in cfgs]
    results = compile_all([d for _, ds in per_cfg for d in ds], args.jobs, args.cache)
    print(f"sm_90, Triton {triton.__version__}, env {env or 'launcher defaults'}; limits: shared "
          f"{SHARED_LIMIT} B, spill stores {SPILL_LIMIT} B per thread")
    bad = 0
    worst = {}
    for cfg, ds in per_cfg:
        rows = [(d, results[key_of(d)]) for d in ds]
        for d, r in rows:
            w = worst.setdefault(d["name"], dict(shared=0, spill_st=0, regs=0, cfg_sh=None, cfg_sp=None))
            if "error" not in r:
                if r["shared"] > w["shared"]:
                    w.update(shared=r["shared"], cfg_sh=label(cfg) + f" [{d['mma']}]")
                if r["spill_st"] > w["spill_st"]:
                    w.update(spill_st=r["spill_st"], cfg_sp=label(cfg) + f" [{d['mma']}]")
        verdicts = [verdict(r) for _, r in rows]
        bad += any(v in ("ERROR", "OVER") for v in verdicts)
        if args.sweep:
            top_sh = max(rows, key=lambda dr: dr[1].get("shared", 1 << 30))
            top_sp = max(rows, key=lambda dr: dr[1].get("spill_st", 1 << 30))
            flag = "OVER" if "OVER" in verdicts else "ERROR" if "ERROR" in verdicts else \
                "spill" if "spill" in verdicts else "ok"
            print(f"{flag:5s} {label(cfg)}: max shared {top_sh[1].get('shared', -1)} ({top_sh[0]['name']}, "
                  f"{top_sh[0]['mma']}), max spill {top_sp[1].get('spill_st', -1)} ({top_sp[0]['name']})", flush=True)
            for d, r in rows:
                if verdict(r) in ("ERROR", "OVER"):
                    print(f"      {d['name']:22s} {d['mma']} {fmt(r)}")
        else:
            print(label(cfg))
            for d, r in rows:
                print(f"  {d['name']:22s} {d['mma']} warps {d['opts'].get('num_warps')} {fmt(r)}  {verdict(r)}")
    if args.instructions and not args.sweep:
        os.makedirs(args.instructions, exist_ok=True)
        for i, d in enumerate(per_cfg[0][1]):
            with open(os.path.join(args.instructions, f"{i:02d}{d['name']}.txt"), "w") as fh:
                fh.write(instructions(d))
    if args.sweep:
        print("\nworst per kernel over the sweep:")
        for n, w in worst.items():
            print(f"  {n:22s} shared {w['shared']:6d} ({w['cfg_sh']})\n  {'':22s} spill st {w['spill_st']:5d} "
                  f"({w['cfg_sp']})")
        print(f"{len(per_cfg)} configurations, {bad} with a kernel that fails to compile or does not fit")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
