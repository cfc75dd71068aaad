"""The verdicts of ``python/compare_ptx_triton.py`` (PTX of two trees compared): debug lines and
labels never count, a reordering with renumbered registers is "reordered", new unread arguments
"arguments", any other change "DIFFERENT"."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from compare_ptx_triton import strip, verdict  # noqa: E402

PTX = """\t.loc\t1 10 0
$L__tmp3:
\tld.global.b32 \t%r1, [%rd2];
\tadd.s32 \t%r3, %r1, 4;
// a comment
\tst.global.b32 \t[%rd2], %r3;
\tst.global.b32 \t[%rd4], %r1;
\t.section\t.debug_info
\t.b8 1
"""


def test_strip_drops_debug_lines_labels_and_sections():
    assert strip(PTX).splitlines() == ["\tld.global.b32 \t%r1, [%rd2];", "\tadd.s32 \t%r3, %r1, 4;",
                                       "\tst.global.b32 \t[%rd2], %r3;", "\tst.global.b32 \t[%rd4], %r1;"]


def test_verdicts():
    a = strip(PTX)
    assert verdict(a, strip(PTX.replace("$L__tmp3:", "$L__tmp9:").replace("10 0", "12 0"))) == "identical"
    lines = a.splitlines()
    moved = "\n".join([lines[0], lines[1], lines[3], lines[2]]).replace("%r3", "%r7").replace("%r1", "%r5") + "\n"
    assert verdict(a, moved) == "reordered"
    assert verdict(a, a.replace("4;", "8;")) == "DIFFERENT"


def test_new_arguments_are_their_own_verdict():
    """A kernel that gained an argument it does not read: its parameter list and the indices of
    the parameters it loads change, nothing else."""
    param = "\t.param .u64 .ptr .global .align 1 k_param_{},\n"
    body = "\tld.param.b64 \t%rd1, [k_param_{}];\n\tld.global.b32 \t%r1, [%rd1];\n"
    old = ".entry k(\n" + param.format(0) + ")\n" + body.format(0)
    new = ".entry k(\n" + param.format(0) + param.format(1) + ")\n" + body.format(1)
    assert verdict(old, new) == "arguments"
    assert verdict(old, new.replace("ld.global.b32", "ld.global.b16")) == "DIFFERENT"
