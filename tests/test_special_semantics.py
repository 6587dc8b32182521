"""The special-value semantics table: what each implementation returns for NaN, +inf and -inf rows.

For parity's own implementations (fused, sort_baseline, oracle) the table is the contract of
docs/DESIGN.md, asserted cell by cell: ids always valid and the oracle's (NaN ranks above +inf,
ties to the lower id), NaN weights in a row whose chosen logits hold NaN or +inf or are all -inf,
weight 0 for a chosen -inf beside finite logits, finite weights elsewhere.

For the torch references (softmax_all, topk_softmax) the table records torch's behaviour as it is
today, and the tests assert that the record still matches: this is documentation of the model code
we compare against, not a contract. Where torch.topk breaks ties (among -inf or NaN logits) its
choice depends on the backend, so those cells accept any tie-explained choice.

The table, as markdown, is handed to the pytest plugin, which writes it beside the run's
reliability tally (special_semantics.md and reliability.md under $PARITY_RELIABILITY_OUT).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from parity import device, routing
from parity.analysis import classify_ids
from parity.check import assert_weights_close
from parity.numerics import LOGIT_DTYPES
from parity.pytest_plugin import record_table
from parity.routing.oracle import route64

nan, inf = float("nan"), float("inf")
E, K = 16, 4
DTYPES = LOGIT_DTYPES
OURS = ("fused", "sort_baseline", "oracle")
TORCH = ("softmax_all", "topk_softmax")
DEVICE = device.default()

ROW_KINDS = {
    "nan": "NaN among the chosen",
    "posinf": "+inf among the chosen",
    "neginf": "-inf present, not chosen",
    "few_finite": "fewer than K finite (some chosen -inf)",
    "all_neginf": "all -inf",
    "nan_heavy": "more NaNs than K",
}


def special_rows() -> torch.Tensor:
    """One row per kind of ROW_KINDS (float32; distinct finite values, descending by id)."""
    base = torch.linspace(1.0, -1.0, E)
    rows = {k: base.clone() for k in ROW_KINDS}
    rows["nan"][5] = nan
    rows["posinf"][9] = inf
    rows["neginf"][[12, 14]] = -inf
    rows["few_finite"] = torch.full((E,), -inf)
    rows["few_finite"][[3, 11]] = torch.tensor([0.5, -0.25])
    rows["all_neginf"] = torch.full((E,), -inf)
    rows["nan_heavy"][[1, 4, 6, 8, 10, 13]] = nan
    return torch.stack([rows[k] for k in ROW_KINDS])


SCALE = torch.linspace(0.5, 2.0, E)  # nonzero: a weight of 0 means a probability of 0


# --- describing one row's output -----------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    ids: str      # "= oracle", "= oracle's set, other order", "tie-explained", "genuine", "INVALID"
    weights: str  # e.g. "NaN", "finite", "finite; 0 at the chosen -inf", "inf; NaN at the chosen -inf"

    def __str__(self) -> str:
        return f"ids {self.ids}; weights {self.weights}"


def _weight_kinds(w: torch.Tensor) -> str:
    kinds = [name for name, hit in (("finite", torch.isfinite(w).any()), ("inf", torch.isinf(w).any()),
                                    ("NaN", torch.isnan(w).any())) if bool(hit)]
    return " and ".join(kinds) if kinds else "none"


def describe(logits: torch.Tensor, w: torch.Tensor, ids: torch.Tensor, oracle_ids: torch.Tensor) -> Cell:
    """One row (1-D tensors on the CPU) as a table cell."""
    ids, oracle_ids = ids.long(), oracle_ids.long()
    if ids.min() < 0 or ids.max() >= logits.numel() or ids.unique().numel() != ids.numel():
        id_text = "INVALID"
    elif torch.equal(ids, oracle_ids):
        id_text = "= oracle"
    elif torch.equal(ids.sort().values, oracle_ids.sort().values):
        id_text = "= oracle's set, other order"
    else:
        verdict = classify_ids(logits[None], ids[None], oracle_ids[None], dtype=torch.float64)
        id_text = "tie-explained" if bool(verdict.tie_explained[0]) else "genuine"
    if bool(torch.isnan(w).all()):
        return Cell(id_text, "NaN")
    chosen_neginf = logits.double()[ids.clamp(0, logits.numel() - 1)] == -inf
    text = _weight_kinds(w[~chosen_neginf])
    if bool(chosen_neginf.any()):
        at = w[chosen_neginf]
        text += "; 0 at the chosen -inf" if bool((at == 0).all()) else f"; {_weight_kinds(at)} at the chosen -inf"
    return Cell(id_text, text)


def semantics_table(impls=OURS + TORCH, dtypes=DTYPES) -> dict[str, dict[str, dict[str, Cell]]]:
    """impl -> row kind -> dtype name -> Cell, on the tests' device."""
    table: dict[str, dict[str, dict[str, Cell]]] = {name: {k: {} for k in ROW_KINDS} for name in impls}
    for dtype in dtypes:
        g = special_rows().to(dtype).to(DEVICE)
        s = SCALE.to(DEVICE)
        _, oracle_ids = route64(g, K, s)
        for name in impls:
            w, ids = routing.get(name)(g, K, s)
            for r, kind in enumerate(ROW_KINDS):
                table[name][kind][str(dtype).removeprefix("torch.")] = describe(
                    g[r].cpu(), w[r].cpu(), ids[r].cpu(), oracle_ids[r].cpu())
    return table


# A scale beyond what the computation's dtype holds: the references cast the scale to the logit
# dtype (model code does); the kernels multiply in float32, or in float64 for a float64 scale.
SCALE_CASES = {
    "fp16 logits, fp32 scale 1e5": (torch.float16, torch.float32, 1e5),
    "fp32 logits, fp64 scale 4e38": (torch.float32, torch.float64, 4e38),
}
SCALE_ROW = torch.tensor([[2.0, 1.0, 0.0, -inf, -inf, -inf, -inf, -inf]])  # K = 4: one chosen -inf


def scale_table(impls=OURS + TORCH) -> dict[str, dict[str, Cell]]:
    """impl -> case -> Cell (weights compared with the oracle's within 8 fp32 ulps)."""
    table: dict[str, dict[str, Cell]] = {name: {} for name in impls}
    for case, (g_dtype, s_dtype, value) in SCALE_CASES.items():
        g = SCALE_ROW.to(g_dtype).to(DEVICE)
        s = torch.full((g.shape[1],), value, dtype=s_dtype, device=DEVICE)
        w64, ids64 = route64(g, 4, s)
        for name in impls:
            w, ids = routing.get(name)(g, 4, s)
            cell = describe(g[0].cpu(), w[0].cpu(), ids[0].cpu(), ids64[0].cpu())
            try:
                assert_weights_close(w, w64, max_ulp=8.0)
                cell = Cell(cell.ids, cell.weights + " (= oracle within 8 ulp)")
            except AssertionError:
                pass
            table[name][case] = cell
    return table


# --- what the table must say ---------------------------------------------------------------------

CONTRACT = {
    "nan": Cell("= oracle", "NaN"),
    "posinf": Cell("= oracle", "NaN"),
    "neginf": Cell("= oracle", "finite"),
    "few_finite": Cell("= oracle", "finite; 0 at the chosen -inf"),
    "all_neginf": Cell("= oracle", "NaN"),
    "nan_heavy": Cell("= oracle", "NaN"),
}
"""The contract (docs/DESIGN.md) for fused, sort_baseline and the oracle, in every dtype."""

TIES = {"= oracle", "= oracle's set, other order", "tie-explained"}
TORCH_BEHAVIOUR = {
    "nan": ({"= oracle"}, "NaN"),
    "posinf": ({"= oracle"}, "NaN"),
    "neginf": ({"= oracle"}, "finite"),
    "few_finite": (TIES, "finite; 0 at the chosen -inf"),
    "all_neginf": (TIES, "NaN"),
    "nan_heavy": (TIES, "NaN"),
}
"""torch's behaviour today (documented, not a contract): the references give the same NaN and
zero weights as the contract; among equal logits (-inf, NaN) torch.topk picks its own ties
(on the CPU: not the lower ids), which the analysis counts as tie-explained."""

TORCH_SCALE_BEHAVIOUR = {
    "fp16 logits, fp32 scale 1e5": "inf; NaN at the chosen -inf",
    "fp32 logits, fp64 scale 4e38": "inf; NaN at the chosen -inf",
}
"""torch's references cast the scale to the logit dtype: beyond its range the scale is inf, the
weights inf, and 0 * inf = NaN at a chosen -inf (documented, not a contract)."""


@pytest.fixture(scope="module")
def table():
    t = semantics_table()
    record_table("special_semantics.md", markdown(t, scale_table()))
    return t


@pytest.mark.parametrize("kind", list(ROW_KINDS))
@pytest.mark.parametrize("name", OURS)
def test_ours_keep_the_contract(table, name, kind):
    for dtype, cell in table[name][kind].items():
        assert cell == CONTRACT[kind], f"{name}, {ROW_KINDS[kind]} ({dtype}): got {cell}, contract {CONTRACT[kind]}"


@pytest.mark.parametrize("kind", list(ROW_KINDS))
@pytest.mark.parametrize("name", TORCH)
def test_torch_references_behave_as_documented(table, name, kind):
    ids_allowed, weights = TORCH_BEHAVIOUR[kind]
    for dtype, cell in table[name][kind].items():
        assert cell.ids in ids_allowed and cell.weights == weights, (
            f"{name}, {ROW_KINDS[kind]} ({dtype}): got {cell}, documented ids in {sorted(ids_allowed)}, "
            f"weights {weights}: torch changed; update TORCH_BEHAVIOUR and the report")


@pytest.mark.parametrize("name", TORCH)
def test_torch_references_overflow_a_scale_beyond_the_logit_dtype(name):
    cells = scale_table(impls=(name,))[name]
    for case, weights in TORCH_SCALE_BEHAVIOUR.items():
        assert cells[case].weights == weights, f"{name}, {case}: got {cells[case]}, documented {weights}"


@pytest.mark.parametrize("name", OURS)
def test_ours_follow_the_oracle_beyond_a_dtype_range(name):
    cells = scale_table(impls=(name, "oracle"))
    for case in SCALE_CASES:
        ours, oracle = cells[name][case], cells["oracle"][case]
        assert ours == oracle and oracle.weights.endswith("(= oracle within 8 ulp)"), (
            f"{name}, {case}: got {ours}, the oracle {oracle}")


def test_the_table_is_handed_to_the_run(table):
    from parity.pytest_plugin import _reliability

    text = _reliability["tables"]["special_semantics.md"]
    assert all(desc in text for desc in ROW_KINDS.values())
    assert all(f"`{name}`" in text for name in OURS + TORCH)


# --- markdown ------------------------------------------------------------------------------------

def _merged(by_dtype: dict[str, Cell]) -> str:
    """One cell for all dtypes when they agree, else one line per dtype."""
    texts = {d: str(c) for d, c in by_dtype.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "<br>".join(f"{d}: {t}" for d, t in texts.items())


def markdown(table: dict, scales: dict) -> str:
    """The table as markdown."""
    role = {**{n: "contract" for n in OURS}, **{n: "torch: documented, not a contract" for n in TORCH}}
    lines = [
        f"Rows of E={E} logits, K={K}, per_expert_scale in [0.5, 2]; every cell holds for float32, "
        "bfloat16 and float16 unless it says otherwise. ids: `= oracle` (slot order included), or "
        "`tie-explained` (the experts that differ all carry the K-th logit: torch.topk's own tie "
        "choice, backend-dependent). Written by tests/test_special_semantics.py, which asserts every "
        "cell: the contract for parity's implementations, today's behaviour for torch's.",
        "",
        "| implementation | " + " | ".join(ROW_KINDS.values()) + " |",
        "|---|" + "---|" * len(ROW_KINDS),
    ]
    for name, kinds in table.items():
        lines.append(f"| `{name}` ({role[name]}) | " + " | ".join(_merged(kinds[k]) for k in ROW_KINDS) + " |")
    lines += [
        "",
        "A scale beyond the range of the dtype an implementation computes in (row: logits 2, 1, 0, "
        "-inf..., K=4, one chosen -inf; the oracle computes in float64). The torch references cast "
        "the scale to the logit dtype; the kernels multiply in float32, or in float64 for a float64 "
        "scale, and round the product once (tests/test_properties.py::test_float64_scale_beyond_float32_range).",
        "",
        "| implementation | " + " | ".join(SCALE_CASES) + " |",
        "|---|" + "---|" * len(SCALE_CASES),
    ]
    for name, cases in scales.items():
        lines.append(f"| `{name}` | " + " | ".join(str(cases[c]) for c in SCALE_CASES) + " |")
    return "\n".join(lines) + "\n"
