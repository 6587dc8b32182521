"""How numbers and tables are written: JSON without inf/nan, short numbers, markdown tables. Used by
the report, the plots, the benchmark, the CLI and the notebooks' API alike."""
from __future__ import annotations

import math


def jsonable(obj):
    """JSON has no inf/nan: write them as strings, so any JSON reader takes the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if obj != obj else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def num(x) -> float:
    """Read back a number written by ``jsonable``."""
    return float(x) if isinstance(x, str) else x


def fmt(x, digits=3) -> str:
    """A number in ``digits`` significant digits ('-' for None, '0' for zero, 'inf'/'nan' as such)."""
    x = num(x)
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def markdown_table(rows: list[dict], digits: int = 3) -> str:
    """A list of dicts as a markdown table, columns in the first row's order (floats through
    ``fmt``; '|' in a cell escaped)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cell = lambda v: (fmt(v, digits) if isinstance(v, float) else "-" if v is None else str(v)).replace("|", "\\|")  # noqa: E731
    return "\n".join(["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
                     + ["| " + " | ".join(cell(r.get(c, "-")) for c in cols) + " |" for r in rows])
