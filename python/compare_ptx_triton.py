"""Compare the sm_90 PTX of the Triton kernels of ``linear_memory`` and ``mlp_memory`` between a git
revision and the working tree, compiled on the CPU (no GPU): the check that a refactor of
GPU-verified kernel code changed nothing the GPU would run.

    python python/compare_ptx_triton.py --base HEAD~1            # a few variants of each op
    python python/compare_ptx_triton.py --base main --all        # more variants (slower)

Each tree is compiled in its own process (the base from a temporary ``git worktree``): the
linear_memory variants through the real launchers (``compile_linear_memory_triton.launches``: every
kernel one forward + backward call launches), the mlp_memory forward, SAVE forward, backward (one
walk, the chain and the token part of the split) and prep kernels from explicit constexprs. Each variant prints one verdict:

* ``identical`` — the same PTX once the debug lines and Triton's ``$L__tmp`` debug labels are
  dropped;
* ``reordered`` — the same instructions with registers renumbered, in another order (e.g. a store
  moved): the same arithmetic, but ptxas may schedule it differently;
* ``arguments`` — as ``reordered`` once the parameter list and the parameter indices are dropped:
  the kernel gained or lost arguments that this variant does not read (check that the launcher
  passes the ones it reads);
* ``DIFFERENT`` / ``missing`` — anything else. Exit status 1 if any variant is DIFFERENT or missing.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

LM_CONFIGS = [dict(gates="abm", target="external", read="after", C=64, K=128, V=128, dtype="bf16", resume=False),
              dict(gates="ab", target="self", read="before", C=64, K=128, V=128, dtype="fp32", resume=True),
              dict(gates="", target="external", read="after", C=64, K=128, V=128, dtype="bf16", resume=False),
              dict(gates="a", target="self", read="before", C=32, K=64, V=64, dtype="bf16", resume=False)]
LM_MORE = [dict(gates="", target="external", read="chunk", C=64, K=128, V=128, dtype="fp16", resume=False),
           dict(gates="am", target="self", read="chunk", C=32, K=128, V=128, dtype="bf16", resume=True),
           dict(gates="m", target="external", read="before", C=64, K=128, V=128, dtype="fp32", resume=False),
           dict(gates="abm", target="external", read="before", C=1, K=128, V=128, dtype="bf16", resume=False),
           dict(gates="a", target="external", read="after", C=64, K=128, V=128, dtype="bf16", resume=False)]
# mlp_memory: (gates, self target, read, C, K, F, BF, NS, resumed + varlen, prep kernel)
MLP_CONFIGS = [("abm", True, 2, 64, 64, 256, 16, 4, False, True)]
MLP_MORE = [("ab", False, 0, 32, 128, 128, 32, 1, True, False)]


def strip(ptx: str) -> str:
    """PTX without debug lines, comments, Triton's ``$L__tmp`` labels and the debug sections."""
    keep = []
    for line in ptx.splitlines():
        s = line.strip()
        if not s or s.startswith((".loc", ".file", "//")) or re.fullmatch(r"\$L__tmp\d+:", s):
            continue
        if s.startswith(".section") and "debug" in s:
            break
        keep.append(line)
    return "\n".join(keep) + "\n"


def _renumbered(text: str) -> list[str]:
    return sorted(re.sub(r"%(r|rd|rs|p|f|fd)\d+", r"%\1", line) for line in text.splitlines())


def _without_parameter_numbers(text: str) -> str:
    """The PTX with the parameter list dropped and every parameter index replaced by N."""
    lines = (line for line in text.splitlines() if not re.match(r"\s*\.param\b.*_param_\d+,?$", line))
    return "\n".join(re.sub(r"_param_\d+", "_param_N", line) for line in lines)


def verdict(a: str, b: str) -> str:
    if a == b:
        return "identical"
    if _renumbered(a) == _renumbered(b):
        return "reordered"
    return "arguments" if _renumbered(_without_parameter_numbers(a)) == _renumbered(_without_parameter_numbers(b)) \
        else "DIFFERENT"


def dump(root: str, out: str, more: bool) -> None:
    """Compile every variant of the tree at ``root`` (its package and probes first on sys.path)
    into ``out``."""
    sys.path[:0] = [os.path.join(root, "python"), root]
    os.environ.pop("TRITON_INTERPRET", None)
    import json

    import compile_linear_memory_triton as lm_probe
    import compile_mlp_memory_triton as mlp_probe
    from gpu_check_utils import compile_sm90
    from nested_kernels.ops.mlp_memory import triton_bwd as mb, triton_fwd as mf, triton_prep as mp
    os.makedirs(out, exist_ok=True)
    for i, cfg in enumerate(LM_CONFIGS + (LM_MORE if more else [])):
        seen, count = set(), {}
        for d in lm_probe.launches(cfg, {}):
            key = json.dumps(dict(d, const={k: str(v) for k, v in d["const"].items()}), sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            count[d["name"]] = count.get(d["name"], 0) + 1     # e.g. the forward's and backward's prep
            if d["mma"] == "v2":
                os.environ["DISABLE_MMA_V3"] = "1"
            else:
                os.environ.pop("DISABLE_MMA_V3", None)
            opts = {k: v for k, v in d["opts"].items() if k != "ptx_options"}
            ker = compile_sm90(lm_probe.KERNELS[d["name"]], d["sig"], d["const"], opts, d["attrs"])
            with open(os.path.join(out, f"lm{i}{d['name']}.{count[d['name']]}.ptx"), "w") as f:
                f.write(strip(ker.asm["ptx"]))
    os.environ["DISABLE_MMA_V3"] = "1"
    for i, (gates, self_t, read, C, K, F, BF, NS, resumed, prep) in enumerate(MLP_CONFIGS + (MLP_MORE if more else [])):
        common = dict(K=K, V=K, F=F, BF=BF, NS=NS, BT=C, LOG2BT=C.bit_length() - 1, ACT=0, RESIDUAL=True,
                      HAS_ALPHA="a" in gates, HAS_BETA="b" in gates, HAS_MU="m" in gates, SELF_TARGET=self_t,
                      READ=read, HAS_POS=resumed, IS_VARLEN=resumed, PREC="tf32", GPREC="tf32x3", PREP=prep)
        variants = [("fwd", mf._fwd_kernel, dict(common, OUTPUT_FINAL=True, SAVE=False, STORE_O=True)),
                    ("save", mf._fwd_kernel, dict(common, OUTPUT_FINAL=False, SAVE=True, STORE_O=False)),
                    *((f"bwd{part}", mb._bwd_kernel, dict(common, HAS_DC=True, PART=part)) for part in (0, 1, 2))]
        if prep:
            variants.append(("prep", mp._prep_kernel, common))
        for label, fn, const in variants:
            const = {n: v for n, v in const.items() if n in fn.arg_names}
            if not prep:    # the prep kernel's rows are absent (None) without it
                const.update({n: None for n in ("pv", "pk", "qp", "qg", "pm") if n in fn.arg_names})
            ker = compile_sm90(fn, mlp_probe.signature(fn, const, True), const,
                               dict(num_warps=4 if C <= 32 else 8, num_stages=1))
            with open(os.path.join(out, f"mlp{i}_{label}.ptx"), "w") as f:
                f.write(strip(ker.asm["ptx"]))


def _dump_tree(root: str, out: str, more: bool) -> subprocess.Popen:
    cmd = [sys.executable, os.path.join(HERE, "compare_ptx_triton.py"), "--dump", out, "--root", root]
    return subprocess.Popen(cmd + (["--all"] if more else []), cwd=root)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare the working tree with")
    ap.add_argument("--all", action="store_true", help="more variants")
    ap.add_argument("--dump", default=None, help=argparse.SUPPRESS)    # internal: compile one tree
    ap.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dump:
        dump(args.root, args.dump, args.all)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base")
        subprocess.run(["git", "worktree", "add", "--detach", "-q", base, args.base], cwd=ROOT, check=True)
        try:
            procs = [_dump_tree(base, os.path.join(tmp, "a"), args.all),
                     _dump_tree(ROOT, os.path.join(tmp, "b"), args.all)]
            if any(p.wait() for p in procs):
                print("a compile failed (see above)")
                return 1
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", base], cwd=ROOT, check=False)
        names = sorted(set(os.listdir(os.path.join(tmp, "a"))) | set(os.listdir(os.path.join(tmp, "b"))))
        bad = 0
        for name in names:
            texts = []
            for side in "ab":
                path = os.path.join(tmp, side, name)
                texts.append(open(path).read() if os.path.exists(path) else None)
            v = "missing" if None in texts else verdict(*texts)
            bad += v in ("DIFFERENT", "missing")
            print(f"{v:10s} {name}")
    print(f"{len(names)} variants, {bad} different or missing (base {args.base} vs the working tree)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
