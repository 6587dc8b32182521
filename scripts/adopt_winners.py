"""Which of the prepared switches `h200_run.sh min3` times win, by the rule of reports/bench/NOTES.md (a setting becomes
the default where it is 2% or more faster at T = 250000 and no more than 2% slower at T = 65536, every run the
oracle's),
and, with --apply, those switches set in parity/routing/fused.py of this tree, so that `make bench` in the same device
call times the defaults they make (the device's machine goes cold 30 s after a call). A probe's helper, not parity's:
the commit that makes a default is written by hand afterwards, from the printed lines.

    python3 scripts/adopt_winners.py logs/min3-medians.json [--apply]

The switches: fused.MIN3 (global: adopted only where no shape at T = 250000 loses more than 1% under it),
WORD_MAXIMA_MAX_REGISTERS (Gemma4's words: 80 or 72), and for fp32 FP32_FMA_KEYS, FP32_MAX_REGISTERS (64) and the
fp32 tile of twice the rows (KEYS_PER_WARP[torch.float32] 512 -> 1024). Prints one line a decision and, last, a tag
for the settings adopted (PARITY_GIT_SHA's suffix; "defaults" where none)."""
import argparse
import json
import re
from pathlib import Path

FUSED = Path(__file__).resolve().parent.parent / "parity" / "routing" / "fused.py"
WIN, LOSE_AT_65536, MIN3_LOSS = 0.98, 1.02, 1.01


def rows_of(path: str) -> list[dict]:
    return [r for r in json.loads(Path(path).read_text())["rows"] if r.get("kernel", "rounds") == "rounds"]


def pick(rows, T, **where):
    """The median time of the one row at T matching ``where`` (a key absent from a row reads as None), None if none
    or not the oracle's."""
    hits = [r for r in rows if r["T"] == T and all(r.get(k) == v for k, v in where.items())]
    if len(hits) != 1 or not hits[0]["ok"]:
        return None
    return hits[0]["median_us"]


def better(rows, base: dict, new: dict) -> bool:
    """Whether ``new`` wins over ``base`` by the rule (both matched by pick, at T = 250000 and 65536)."""
    b, n = pick(rows, 250000, **base), pick(rows, 250000, **new)
    b2, n2 = pick(rows, 65536, **base), pick(rows, 65536, **new)
    if None in (b, n):
        return False
    return n <= WIN * b and (b2 is None or n2 is None or n2 <= LOSE_AT_65536 * b2)


def fastest_winner(rows, base: dict, options: list[dict]) -> tuple[float, dict] | None:
    """(its median, the option) for the fastest of ``options`` that wins over ``base`` by the rule; None if none
    wins."""
    won = [(pick(rows, 250000, **o), o) for o in options if better(rows, base, o)]
    return min(won, key=lambda t: t[0], default=None)


def decide(rows: list[dict]) -> dict:
    """The settings to adopt: {"MIN3": bool, "WORD_CAP": int|None, "FP32_FMA": bool, "FP32_CAP": int|None,
    "FP32_ROWS8": bool}, each with the figures that decided it printed."""
    out = {"MIN3": False, "WORD_CAP": None, "FP32_FMA": False, "FP32_CAP": None, "FP32_ROWS8": False}
    g4 = [r for r in rows if r["E"] == 128 and r["dtype"] == "bf16" and r["K"] == 8]
    g4_base = {"E": 128, "dtype": "bf16", "K": 8, "MIN3": None, "maxnreg": None}
    g4_options = [{**g4_base, "MIN3": m, "maxnreg": cap} for m in (None, False, True) for cap in (None, 80, 72)]
    best = fastest_winner(g4, g4_base, g4_options)
    if best is not None:
        print(f"Gemma4 bf16: {pick(g4, 250000, **g4_base)} -> {best[0]} us at T = 250000 with "
              f"MIN3={best[1]['MIN3']} cap={best[1]['maxnreg']}")
    if best is not None and best[1]["MIN3"] is True:
        # MIN3 is global: no shape may lose more than 1% at T = 250000 under it (other settings default)
        out["MIN3"] = True
        for E, dt, K in {(r["E"], r["dtype"], r["K"]) for r in rows}:
            at = dict(E=E, dtype=dt, K=K, maxnreg=None, FMA_KEYS=None, BLOCK_T=table_rows(rows, E, dt, K))
            off, on = pick(rows, 250000, MIN3=False, **at), pick(rows, 250000, MIN3=True, **at)
            print(f"MIN3 at E={E} {dt} K={K}: {off} -> {on} us")
            if off is None or on is None or on > MIN3_LOSS * off:
                out["MIN3"] = False
        if not out["MIN3"]:   # MIN3 refused: the best cap without it
            best = fastest_winner(g4, g4_base, [o for o in g4_options if o["MIN3"] is not True and o["maxnreg"]])
    out["WORD_CAP"] = best[1]["maxnreg"] if best is not None else None
    f32 = [r for r in rows if r["dtype"] == "fp32"]
    if f32:
        rows4 = table_rows(f32, 128, "fp32", 8)
        base = {"MIN3": None, "FMA_KEYS": None, "maxnreg": None, "BLOCK_T": rows4}
        options = [{"MIN3": out["MIN3"], "FMA_KEYS": f, "maxnreg": cap, "BLOCK_T": rows4} for f in (0, 1)
                   for cap in (None, 64)]
        options += [{"MIN3": out["MIN3"], "FMA_KEYS": f, "maxnreg": None, "BLOCK_T": 2 * rows4} for f in (0, 1)]
        won = fastest_winner(f32, base, options)
        if won is not None:
            print(f"Gemma4 fp32: {pick(f32, 250000, **base)} -> {won[0]} us at T = 250000 with {won[1]}")
            out.update(FP32_FMA=bool(won[1]["FMA_KEYS"]), FP32_CAP=won[1]["maxnreg"],
                       FP32_ROWS8=won[1]["BLOCK_T"] != rows4)
    return out


def table_rows(rows, E, dt, K) -> int | None:
    """The table's rows a program for a shape: the first row probe_fused wrote for it (configs_for puts it first)."""
    return next((r["BLOCK_T"] for r in rows if (r["E"], r["dtype"], r["K"]) == (E, dt, K)), None)


EDITS = {
    "MIN3": (r"^MIN3: bool = False$", "MIN3: bool = True"),
    "WORD_CAP": (r"^WORD_MAXIMA_MAX_REGISTERS = 96$", "WORD_MAXIMA_MAX_REGISTERS = {}"),
    "FP32_FMA": (r"^FP32_FMA_KEYS: bool = False$", "FP32_FMA_KEYS: bool = True"),
    "FP32_CAP": (r"^FP32_MAX_REGISTERS: int \| None = None$", "FP32_MAX_REGISTERS: int | None = {}"),
    "FP32_ROWS8": (r"^(KEYS_PER_WARP = .*torch\.float32: )512\}$", r"\g<1>1024}}"),
}


def apply(settings: dict) -> list[str]:
    """The adopted settings written into fused.py; returns their names."""
    src, done = FUSED.read_text(), []
    for name, value in settings.items():
        if value in (False, None):
            continue
        pattern, repl = EDITS[name]
        src, n = re.subn(pattern, repl.format(value), src, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"{name}: {pattern!r} not found once in {FUSED}")
        done.append(name if value is True else f"{name}={value}")
    FUSED.write_text(src)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("medians", help="benchmarks.probe_medians' --out JSON")
    ap.add_argument("--apply", action="store_true", help="write the adopted settings into parity/routing/fused.py")
    a = ap.parse_args()
    settings = decide(rows_of(a.medians))
    print("adopt:", json.dumps(settings))
    names = apply(settings) if a.apply else [k for k, v in settings.items() if v not in (False, None)]
    print("+".join(names) or "defaults")


if __name__ == "__main__":
    main()
