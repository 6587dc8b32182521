"""Does a routing divergence matter? How much of it reaches the MoE layer's output, in units of the
layer's own rounding noise.

For logits, a routing pair (candidate and baseline, default the oracle) and an MoE layer:

- the truth: the layer in float64 with the oracle's routing (fp64 weights);
- the layer's own noise, per row: the same layer run as the model runs it (expert matmuls, the
  weighting and the accumulation in the model dtype, bf16 by default) with the oracle's routing,
  against the truth (RMS over the hidden dimension);
- the routing's effect, per row: the layer in float64 with the candidate's routing against the layer
  in float64 with the baseline's (the divergence alone, no layer rounding in it), in units of that
  row's noise;
- as run: the layer in the model dtype with the candidate's routing against the truth, in units of
  the noise (what a user of the kernel sees; 1 is as good as the oracle's routing can be in bf16).

Rows are grouped by what the analyzer found in them: identical routing (effect exactly 0), weights
only, a tie-explained swap, a near-tie swap, genuinely different experts, special-value rows.

Layers: ``SyntheticMoE`` (random experts of a model's hidden and expert sizes, seeded; each expert's
weights drawn from its own generator when needed, so that no layer of DeepSeek-V3's size has to fit
in memory) and ``HFExperts`` (the routed-experts module of the model code in transformers, from a
small random config: the ``models`` extra). Both take (x [T, H], ids [T, K], weights [T, K], dtype).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from parity import routing
from parity.numerics import stable_seed
from parity.analysis import classify_ids
from parity.routing.contract import by_id
from parity.routing.family import Layer
from parity.routing.oracle import route64

MEMORY = {"cuda": 48e9, "cpu": 1e9}
"""Bytes the layer outputs of one chunk of rows may take (float64 for every routing, the dtype for
those run as the model runs)."""
CATEGORIES = ("identical", "weights only", "tie swap", "near-tie swap", "genuine", "special")
QUANTILES = (0.5, 0.9, 0.99, 1.0)


def _activation(name: str):
    if name == "silu":
        return torch.nn.functional.silu
    if name == "gelu_tanh":
        return lambda v: torch.nn.functional.gelu(v, approximate="tanh")
    raise ValueError(f"activation: expected silu or gelu_tanh, got {name!r}")


class SyntheticMoE:
    """E experts of ``layer``'s sizes: gate_up [2I, H] and down [H, I] per expert, normal with
    standard deviation 1/sqrt(fan in), drawn on ``device`` from a generator seeded by (seed,
    expert) every time the expert is used (nothing of E x 3 x H x I is kept)."""

    def __init__(self, E: int, layer: Layer, seed: int = 0, device: torch.device | str = "cpu"):
        self.E, self.layer, self.seed, self.device = E, layer, seed, torch.device(device)
        self.act = _activation(layer.activation)

    def expert(self, e: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        H, I = self.layer.hidden, self.layer.intermediate
        gen = torch.Generator(device=self.device).manual_seed(stable_seed("expert", self.seed, e))
        gate_up = torch.randn(2 * I, H, generator=gen, device=self.device) / math.sqrt(H)
        down = torch.randn(H, I, generator=gen, device=self.device) / math.sqrt(I)
        return gate_up.to(dtype), down.to(dtype)

    def __call__(self, x: torch.Tensor, routings: list[tuple[torch.Tensor, torch.Tensor]],
                 dtype: torch.dtype) -> list[torch.Tensor]:
        """The layer's output [T, H] in ``dtype`` for each routing (ids [T, K], weights [T, K]),
        computed as the model code does it: per expert, gather its rows, gate_up, act(gate) * up,
        down, times the routing weight in ``dtype``, index_add into the output in ``dtype``;
        experts in ascending order. One pass over the experts serves every routing, and each
        expert's MLP runs once per distinct row (and weight, where the weight scales the input)
        over all routings: a row routed alike by two routings gets the same bits from both, whatever
        else the batch holds (a GEMM's rounding can depend on how many rows it multiplies)."""
        xs = x.to(dtype)
        outs = [torch.zeros_like(xs) for _ in routings]
        on_input = self.layer.weighted == "input"
        slots = [(ids.reshape(-1).long(), w.to(dtype).reshape(-1), ids.shape[1]) for ids, w in routings]
        hit = torch.zeros(self.E, dtype=torch.bool, device=xs.device)
        for flat, _, _ in slots:
            hit[flat] = True
        bits = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16,
                torch.float16: torch.int16}[dtype]
        for e in hit.nonzero().flatten().tolist():
            picked = [(flat == e).nonzero().flatten() for flat, _, _ in slots]
            keys = []
            for (flat, w, K), sl in zip(slots, picked):
                wk = w[sl].view(bits).long() if on_input else torch.zeros_like(sl)
                keys.append(torch.stack([sl // K, wk], -1))
            distinct, where = torch.unique(torch.cat(keys), dim=0, return_inverse=True)
            gate_up, down = self.expert(e, dtype)
            h = xs[distinct[:, 0]]
            if on_input:
                h = h * distinct[:, 1].to(bits).view(dtype)[:, None]
            g, u = (h @ gate_up.T).chunk(2, dim=-1)
            y = (self.act(g) * u) @ down.T
            at = 0
            for r, ((flat, w, K), sl) in enumerate(zip(slots, picked)):
                mine = y[where[at: at + sl.numel()]]
                at += sl.numel()
                if not on_input:
                    mine = mine * w[sl, None]
                outs[r].index_add_(0, sl // K, mine)
        return outs


class HFExperts:
    """The routed experts of a model's MoE block in transformers (``<Model>Experts`` or
    ``<Model>TextExperts``), built from a small random config: the model code's own expert loop,
    weighting and accumulation. Needs the ``models`` extra."""

    CLASSES = {"gemma4": ("gemma4", "Gemma4TextExperts", "Gemma4TextConfig", {"hidden_activation": "gelu_pytorch_tanh"}),
               "mixtral": ("qwen3_moe", "Qwen3MoeExperts", "Qwen3MoeConfig", {}),
               "gpt_oss": ("gpt_oss", "GptOssExperts", "GptOssConfig", {}),
               "deepseek_v3": ("deepseek_v3", "DeepseekV3Experts", "DeepseekV3Config", {}),
               "llama4": ("llama4", "Llama4TextExperts", "Llama4TextConfig", {})}

    def __init__(self, family: str, E: int, hidden: int, intermediate: int, seed: int = 0,
                 device: torch.device | str = "cpu"):
        import importlib

        try:
            mod_name, cls, cfg_cls, extra = self.CLASSES[family]
        except KeyError:
            raise ValueError(f"layer: no transformers experts module for family {family!r}") from None
        try:
            mod = importlib.import_module(f"transformers.models.{mod_name}.modeling_{mod_name}")
            cfg_mod = importlib.import_module(f"transformers.models.{mod_name}.configuration_{mod_name}")
        except ImportError as e:
            raise RuntimeError("layer 'hf' needs the models extra: pip install -e '.[models]'") from e
        sizes = {"hidden_size": hidden, "intermediate_size": intermediate, "moe_intermediate_size": intermediate,
                 "num_experts": E, "num_local_experts": E, "n_routed_experts": E, **extra}
        cfg = getattr(cfg_mod, cfg_cls)(**sizes)
        self.family, self.E, self.hidden = family, E, hidden
        self.module = getattr(mod, cls)(cfg).to(device)
        gen = torch.Generator().manual_seed(stable_seed("hf", family, seed))
        with torch.no_grad():
            for p in self.module.parameters():
                p.copy_((torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1])).to(p.dtype))
        self.fp32 = {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def __call__(self, x, routings, dtype):
        with torch.no_grad():
            self.module.load_state_dict({k: v.to(dtype) for k, v in self.fp32.items()}, assign=True)
            out = []
            xs = x.to(dtype)
            for ids, w in routings:
                if self.family == "llama4":
                    # Llama4TextMoe's way: every expert sees every row, scaled by its dense score
                    # (0 where not chosen, so its output is 0 there), and the E outputs are summed
                    scores = torch.zeros(xs.shape[0], self.E, dtype=dtype, device=xs.device)
                    scores.scatter_(1, ids.long(), w.to(dtype))
                    routed = xs.repeat(self.E, 1) * scores.transpose(0, 1).reshape(-1, 1)
                    y = self.module(routed).reshape(self.E, -1, xs.shape[-1]).sum(dim=0)
                else:
                    y = self.module(xs, ids.long(), w.to(dtype))
                out.append(y[0] if isinstance(y, tuple) else y)
            return out


@dataclass
class PairImpact:
    """One routing pair's effect on the layer, per category of row."""

    candidate: str
    baseline: str
    rows: dict = field(default_factory=dict)            # category -> rows
    effect: dict = field(default_factory=dict)          # category -> quantiles of effect / noise
    as_run: dict = field(default_factory=dict)          # category -> quantiles of (as run - truth) / noise
    dominates: dict = field(default_factory=dict)       # category -> fraction of rows with effect > noise
    expert_set_changed: float = 0.0                     # fraction of rows whose expert set differs
    max_dweight: float = 0.0                            # largest |Δweight| of the rows with the same experts
    crossover_dweight: float | None = None              # |Δweight| at which weights-only rows reach the noise (linear)
    bins: list = field(default_factory=list)            # weights-only rows: [Δw low, Δw high, rows, median effect/noise]
    samples: dict = field(default_factory=dict)         # a few rows per category for plots: [Δw, effect/noise]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImpactResult:
    family: str
    model: str
    E: int
    K: int
    T: int
    dtype: str
    dist: str
    seed: int
    layer: dict
    layer_kind: str
    noise: dict = field(default_factory=dict)           # quantiles of the layer's own noise, relative to the row's RMS
    crossover_dweight: float | None = None              # pooled over the pairs' weights-only rows
    pairs: list = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "pairs": [p.as_dict() if isinstance(p, PairImpact) else p for p in self.pairs]}


def _rms(v: torch.Tensor) -> torch.Tensor:
    return v.double().pow(2).mean(-1).sqrt()


def _quantiles(v: torch.Tensor) -> dict:
    if v.numel() == 0:
        return {}
    v = v.double().cpu()
    q = torch.quantile(v, torch.tensor(QUANTILES, dtype=torch.float64)) if v.numel() <= 1 << 24 else \
        torch.stack([v.kthvalue(max(1, math.ceil(p * v.numel()))).values for p in QUANTILES])
    return {f"q{int(p * 100)}" if p < 1 else "max": float(x) for p, x in zip(QUANTILES, q)}


def categories(logits: torch.Tensor, cand: tuple[torch.Tensor, torch.Tensor], base: tuple[torch.Tensor, torch.Tensor],
               router) -> dict[str, torch.Tensor]:
    """Each row's category (bool masks [T], one per CATEGORIES entry) from the analyzer."""
    (cw, cid), (bw, bid) = cand, base
    v = classify_ids(logits, cid, bid, router=router)
    same_w = (cw.double() == bw.double()) | (torch.isnan(cw.double()) & torch.isnan(bw.double()))
    identical = ~v.mismatched & same_w.all(-1)      # the verdict's masks are on the logits' device
    return {"identical": identical, "weights only": ~v.mismatched & ~identical,
            "tie swap": v.tie_explained, "near-tie swap": v.near_tie, "genuine": v.genuine, "special": v.special}


def measure(family: str, pairs: list[tuple[str, str]], *, model: str | None = None, T: int = 4096,
            dtype: str = "bfloat16", dist: str = "randn", seed: int = 0, layer: str = "synthetic",
            hidden: int | None = None, intermediate: int | None = None, device=None, chunk: int | None = None,
            progress=None) -> ImpactResult:
    """The impact of each (candidate, baseline) pair of ``family``'s implementations (or "oracle")
    on ``family``'s MoE layer, for T rows of ``dist`` logits in ``dtype``; layer sizes from the
    model unless given."""
    import time

    from parity import device as _device
    from parity import inputs

    t0 = time.monotonic()
    fam = routing.family(family)
    m = fam.model(model)
    dev = torch.device(device) if device is not None else _device.default()
    dt = getattr(torch, dtype)
    lay = m.layer
    lay = Layer(hidden or lay.hidden, intermediate or lay.intermediate, lay.activation, lay.weighted, lay.source)
    moe = (SyntheticMoE(m.E, lay, seed, dev) if layer == "synthetic"
           else HFExperts(family, m.E, lay.hidden, lay.intermediate, seed, dev))
    inp = inputs.make(dist, T, m.E, dt, seed, dev)
    router = fam.make_router(m, dist, seed, inp.per_expert_scale, dev)
    arg = fam.argument(router)
    g = inp.gating_output
    routed = sorted({n for p in pairs for n in p} | {"oracle"})          # the layer in float64 with each
    run = ["oracle"] + sorted({p[0] for p in pairs} - {"oracle"})       # the layer in the model dtype
    outs = {n: by_id(*(route64(g, m.K, arg) if n == "oracle" else routing.get(n, family)(g, m.K, arg)))
            for n in routed}
    gen = torch.Generator(device=dev).manual_seed(stable_seed("hidden", family, seed, T))
    x = torch.randn(T, lay.hidden, generator=gen, device=dev)     # RMS-normed hidden states: unit RMS per row
    res = ImpactResult(family, m.name, m.E, m.K, T, dtype, dist, seed, asdict(lay), layer)
    if chunk is None:   # as many rows as the outputs of every routing fit in (a pass draws every expert's weights)
        per_row = lay.hidden * (8 * len(routed) + dt.itemsize * len(run)) + 8 * lay.hidden
        chunk = max(1024, int(MEMORY[dev.type] // per_row))
    diffs: dict[tuple[str, str], list] = {p: [] for p in pairs}
    runs: dict[str, list] = {p[0]: [] for p in pairs}
    noise_rows, scale_rows = [], []
    n_chunks = -(-T // chunk)
    for c in range(n_chunks):
        sl = slice(c * chunk, min(T, (c + 1) * chunk))
        xc = x[sl]
        y64 = dict(zip(routed, moe(xc.double(), [(outs[n][1][sl], outs[n][0][sl]) for n in routed], torch.float64)))
        yrun = dict(zip(run, moe(xc, [(outs[n][1][sl], outs[n][0][sl]) for n in run], dt)))
        truth = y64["oracle"]
        noise = _rms(yrun["oracle"].double() - truth)
        noise_rows.append(noise)
        scale_rows.append(_rms(truth))
        for p in pairs:
            diffs[p].append(_rms(y64[p[0]] - y64[p[1]]))
            runs[p[0]].append(_rms(yrun[p[0]].double() - truth))
        if progress is not None:
            progress(c + 1, n_chunks)
    noise = torch.cat(noise_rows)
    scale = torch.cat(scale_rows)
    res.noise = {"relative": _quantiles(noise / scale), "zero_rows": int((noise == 0).sum())}
    floor = noise.clamp_min(torch.finfo(torch.float64).tiny)
    pooled = ([], [])
    for p in pairs:
        cand, base = outs[p[0]], outs[p[1]]
        masks = categories(g, cand, base, router)
        effect = torch.cat(diffs[p]) / floor
        as_run = torch.cat(runs[p[0]]) / floor
        dw = (cand[0].double() - base[0].double()).abs().nan_to_num(0.0).amax(-1)
        pi = PairImpact(p[0], p[1])
        for k in CATEGORIES:
            mk = masks[k]
            n = int(mk.sum())
            if not n:
                continue
            pi.rows[k] = n
            pi.effect[k] = _quantiles(effect[mk])
            pi.as_run[k] = _quantiles(as_run[mk])
            pi.dominates[k] = float((effect[mk] > 1).double().mean())
            idx = mk.nonzero().flatten()
            pick = idx[torch.randperm(idx.numel(), generator=torch.Generator().manual_seed(seed))[:400].to(idx.device)]
            pi.samples[k] = torch.stack([dw[pick], effect[pick]], -1).cpu().tolist()
        pi.expert_set_changed = float((masks["tie swap"] | masks["near-tie swap"] | masks["genuine"]).double().mean())
        wo = masks["weights only"]
        pi.max_dweight = float(dw[wo | masks["identical"]].max()) if bool((wo | masks["identical"]).any()) else 0.0
        pi.bins, pi.crossover_dweight = _crossover(dw[wo], effect[wo])
        pooled[0].append(dw[wo])
        pooled[1].append(effect[wo])
        res.pairs.append(pi)
    if pairs:
        res.crossover_dweight = _crossover(torch.cat(pooled[0]), torch.cat(pooled[1]))[1]
    res.seconds = round(time.monotonic() - t0, 2)
    return res


def _crossover(dw: torch.Tensor, ratio: torch.Tensor) -> tuple[list, float | None]:
    """Weights-only rows binned by their largest |Δweight| (log-spaced, 4 bins per decade) with each
    bin's median effect / noise (for the plot); and the Δweight at which the effect reaches the
    noise, from the rows' ratio of effect / noise to |Δweight| (median; the effect is linear in the
    weights' change while the experts are the same)."""
    ok = dw > 0
    dw, ratio = dw[ok].double().cpu(), ratio[ok].double().cpu()
    if dw.numel() == 0:
        return [], None
    lo, hi = math.floor(math.log10(float(dw.min())) * 4) / 4, math.ceil(math.log10(float(dw.max())) * 4) / 4 + 0.25
    edges = [10 ** (lo + 0.25 * i) for i in range(int(round((hi - lo) / 0.25)) + 1)]
    bins = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (dw >= a) & (dw < b)
        if int(sel.sum()):
            bins.append([a, b, int(sel.sum()), float(ratio[sel].median())])
    # with the experts fixed, the effect is linear in the weights' change: effect/noise ≈ c·|Δw|;
    # the Δweight at which it reaches the noise is 1/median(c)
    c = float((ratio / dw).median())
    return bins, (1.0 / c if c > 0 else None)


def default_pairs(family: str) -> list[tuple[str, str]]:
    """Every implementation of the family against the oracle; for Gemma4 also the mutants the
    upstream policy misses (ties-high is missed by every policy against softmax_all)."""
    fam = routing.family(family)
    # sort_baseline routes exactly as fused does (and takes minutes per thousand rows in the interpreter)
    pairs = [(n, "oracle") for n in fam.implementations if n != "sort_baseline"]
    if family == "gemma4":
        pairs += [(n, "oracle") for n in ("mutant-ties-high", "mutant-approx-exp", "mutant-fp16-weights")]
    return pairs
