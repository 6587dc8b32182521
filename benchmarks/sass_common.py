"""Reading laid-out SASS (cuobjdump -sass lines) without a GPU: the path a block without a rare case
runs, and its instructions by the pipe that issues them. Plain text processing, importable anywhere
(benchmarks/sass_grouped.py, which compiles the kernels, replaces Triton's driver for its process)."""
from __future__ import annotations

import hashlib
import re

ALU_PIPE = re.compile(r"(LOP3|SHF|SGXT|VIMNMX3|VIMNMX|VIADDMNMX|VIADD|IADD3|ISETP|SEL|LEA|PRMT|FMNMX|FSEL|FSETP|"
                      r"PLOP3|MOV|CS2R|BMSK|BREV|FLO|POPC|IABS|P2R|R2P)\b")
FMA_PIPE = re.compile(r"(IMAD|FFMA|FMUL|FADD|IMUL|HFMA2|HMUL2|HADD2)\b")
"""Opcode classes by the pipe that issues them on sm_90, as reports/bench/NOTES.md counts them:
integer, logic, min/max, compare and select on the ALU pipe; IMAD (and ptxas's IMAD.MOV / IMAD.IADD /
IMAD.SHL) and fp32 arithmetic on the FMA pipe; shuffles, loads, MUFU in neither. A reading aid, not
a measurement: Nsight Compute's pipe utilisation is that."""

_LINE = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);")
_BRANCH = re.compile(r"\bBRA(?:\.\w+)? (?:!?U?P\w+, )?(0x[0-9a-f]+)")


def instructions(sass: list[str]) -> list[tuple[int, str]]:
    """Every instruction of laid-out SASS (cuobjdump -sass lines) as (address, text)."""
    return [(int(m.group(1), 16), m.group(2).strip()) for m in map(_LINE.match, sass) if m]


def fingerprint(sass: list[str]) -> str:
    """The laid-out code's identity: 12 hex digits of a hash over every instruction's text (opcode, operands, branch
    targets), without the addresses, the encodings and the line info. Two compiles with the same fingerprint are the
    same machine code, so a source change that keeps it (a kernel's text mended) owes no timing."""
    text = "\n".join(t for _, t in instructions(sass))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def branch_target(text: str) -> int | None:
    """Where an instruction branches (BRA, predicated or not), or None: no branch, or a shuffle's divergence fallback
    (BRA.DIV), which a converged warp never takes."""
    branch = None if "BRA.DIV" in text else _BRANCH.search(text)
    return int(branch.group(1), 16) if branch else None


def opcode(text: str) -> str:
    """An instruction's opcode with its modifiers (``VIMNMX3.U32``), past any predicate (``@!P0``)."""
    return text.split()[1] if text.startswith("@") else text.split()[0]


def path_instructions(sass: list[str]) -> list[tuple[int, str]]:
    """The instructions a block without a rare case executes, as (address, text), read off the laid-out code: from
    the first instruction to the first EXIT, every forward conditional branch taken (past the NaN pass, fp32's exact
    and ranked paths, the word path's reread), the shuffles' divergence fallbacks (BRA.DIV) not, unconditional
    branches followed."""
    addr = instructions(sass)
    index = {a: i for i, (a, _) in enumerate(addr)}
    i, path = 0, []
    while i < len(addr) and len(path) <= len(addr):
        a, text = addr[i]
        path.append((a, text))
        if "EXIT" in text:
            break
        to = branch_target(text)
        i = index[to] if to is not None and (to > a or not text.startswith("@")) else i + 1
    return path


def common_path(sass: list[str]) -> dict:
    """The common path's length (path_instructions; "path": for route_kernel's Gemma4 bf16 tile 1450 a warp, where
    Nsight Compute counted 1454 executed) and its ALU- and FMA-pipe instructions (ALU_PIPE, FMA_PIPE)."""
    ops = [opcode(text) for _, text in path_instructions(sass)]
    return {"path": len(ops), "path_alu": sum(1 for o in ops if ALU_PIPE.match(o)),
            "path_fma": sum(1 for o in ops if FMA_PIPE.match(o))}
