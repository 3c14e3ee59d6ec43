"""The gains report: scores of several lmms-eval runs, deltas to a baseline, 95% bootstrap intervals.

Reads each run's newest `*_results.json` and its `*_samples_<task>.jsonl` (lmms-eval --log_samples),
and writes report.md, report.json and gains.png (bar chart of the deltas, error bars = the interval).

    clips-llava eval report --run openai-clip=runs/eval/openai --run clips=runs/eval/clips \
        --baseline openai-clip --out runs/eval/report

The interval is a paired bootstrap: samples are matched by `doc_id` across the two runs, the same
resampled units are scored for both, and the 2.5/97.5 percentiles of (run - baseline) are taken.
The unit is the document, or the image for MME (whose score is defined on each image's question
pair). Every resample re-applies the benchmark's own aggregation (lmms-eval's, e.g. POPE F1);
CIDEr is bootstrapped over per-image CIDEr with the document frequencies of the full set.

Blind controls: a run named `<name>-blind` (`clips-llava eval run --blind`: the same questions, every
image replaced by one fixed image) is paired with the run `<name>`; the report then has a vision-gap
table, `<name>` − `<name>-blind` with its paired interval, i.e. what the model gets from the image.
Blind runs stay out of the gains table.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from clips_tower.io import atomic_write, save_figure
from clips_llava_eval.runner import find_results


@dataclass(frozen=True)
class Headline:
    """One report row: a metric of a task, how its per-sample values aggregate, and the bootstrap unit."""
    label: str
    metric: str
    aggregate: Callable[[list], float] | None = None  # None: mean of numeric per-sample values
    cluster: Callable[[dict], str] | None = None  # per-sample value -> unit id (None: the doc)
    per_sample: Callable[[list[dict]], list[float]] | None = None  # recompute values from samples
    from_samples: bool = False  # the score is aggregate(per-sample values), not lmms-eval's number


def _pope(name: str) -> Callable[[list], float]:
    """lmms-eval's POPE aggregation `pope_aggregate_<name>` (f1_score, accuracy, ...)."""
    def aggregate(values: list) -> float:
        from lmms_eval.tasks.pope import utils
        return float(getattr(utils, f"pope_aggregate_{name}")(values))
    return aggregate


def _answered_yes(values: list) -> float:
    """POPE's yes-ratio as the POPE paper defines it: the share of questions the model answers "yes".
    (lmms-eval 0.7.3's `pope_yes_ratio` is the share of "yes" ground truths, a property of the data.)"""
    return float(np.mean([str(v["prediction"]).lower().startswith("yes") for v in values])) if values else 0.0


def _mme(values: list) -> float:
    from clips_llava_eval.tasks.utils import mme_aggregate_results
    return float(mme_aggregate_results(values))


def _cider_per_image(samples: list[dict], key: str) -> list[float]:
    """Per-image CIDEr of logged captions with lmms-eval's pipeline (PTB tokenizer + pycocoevalcap);
    their mean is the corpus CIDEr lmms-eval reports."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: [{"caption": a} for a in s[key]["answer"]] for i, s in enumerate(samples)}
    res = {i: [{"caption": s[key]["pred"]}] for i, s in enumerate(samples)}
    tok = PTBTokenizer()
    _, scores = Cider().compute_score(tok.tokenize(gts), tok.tokenize(res))
    return [float(x) for x in scores]


def _by_question(v: dict) -> str:
    return str(v["question_id"])


# Exact task names -> the rows they contribute. Tasks not listed get one row per numeric metric.
HEADLINES: dict[str, list[Headline]] = {
    "synth_pope": [Headline("POPE-style F1", "pope_f1_score", aggregate=_pope("f1_score")),
                   Headline("POPE-style accuracy", "pope_accuracy", aggregate=_pope("accuracy")),
                   Headline("POPE-style yes-ratio (answers)", "pope_yes_ratio", aggregate=_answered_yes,
                            from_samples=True)],
    "synth_gqa": [Headline("GQA-style", "exact_match")],
    "synth_mme": [Headline("MME-style perception", "mme_perception_score", aggregate=_mme, cluster=_by_question)],
    "synth_caption": [Headline("Caption CIDEr", "caption_CIDEr",
                               per_sample=lambda s: _cider_per_image(s, "caption_CIDEr"))],
    "synth_textvqa": [Headline("TextVQA-style", "vqa_accuracy")],
    "synth_chartqa": [Headline("ChartQA-style", "relaxed_accuracy")],
    "mme": [Headline("MME-P", "mme_perception_score", aggregate=_mme, cluster=_by_question),
            Headline("MME-C", "mme_cognition_score", aggregate=_mme, cluster=_by_question)],
    "pope": [Headline("POPE F1", "pope_f1_score", aggregate=_pope("f1_score"))],
    "gqa": [Headline("GQA", "exact_match")],
    "textvqa_val": [Headline("TextVQA", "exact_match")],
    "chartqa": [Headline("ChartQA", "relaxed_overall")],
    "nocaps_val": [Headline("NoCaps CIDEr", "nocaps_CIDEr", per_sample=lambda s: _cider_per_image(s, "nocaps_CIDEr"))],
    "mmmu_val": [Headline("MMMU", "mmmu_acc")],
    "mmvet": [Headline("MM-Vet", "gpt_eval_score")],
}


@dataclass
class Run:
    name: str
    results: dict  # task -> {"metric,filter": value}
    samples_dir: Path
    prefix: str  # "<date>" of `<date>_results.json`
    _values_cache: dict = field(default_factory=dict, repr=False, compare=False)  # (task, headline) -> values

    def values(self, task: str, h: Headline) -> dict[int, object] | None:
        """`_values` of this run's logs, computed once: the gains table and each vision gap reuse it
        (per-image CIDEr runs the PTB tokenizer)."""
        if (task, h) not in self._values_cache:
            self._values_cache[task, h] = _values(h, self.samples(task))
        return self._values_cache[task, h]

    def samples(self, task: str) -> list[dict] | None:
        path = self.samples_dir / f"{self.prefix}_samples_{task}.jsonl"
        if not path.is_file():
            return None
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: malformed JSON on line {n}: {e.msg}") from None
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: every line must be a JSON object (an lmms-eval sample log)")
        return rows

    def score(self, task: str, metric: str) -> float | None:
        for key, value in self.results.get(task, {}).items():
            if key.split(",")[0] == metric and isinstance(value, (int, float)):
                return float(value)
        return None


def parse_runs(specs: list[str]) -> dict[str, Run]:
    runs = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--run {spec!r}: expected NAME=DIR")
        if name in runs:
            raise ValueError(f"--run name {name!r} given twice")
        runs[name] = load_run(name, Path(path))
    return runs


def load_run(name: str, path: Path) -> Run:
    found = find_results(path) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"run {name!r}: no lmms-eval *_results.json under {path}")
    results_path = found[-1]
    from clips_tower.inputs import read_json_object

    data = read_json_object(results_path, "lmms-eval results JSON")
    if not isinstance(data.get("results", {}), dict):
        raise ValueError(f"{results_path}: \"results\" is not an object (not an lmms-eval results JSON)")
    return Run(name, data.get("results", {}), results_path.parent, results_path.name[: -len("_results.json")])


def _headlines(task: str, run: Run) -> list[Headline]:
    if task in HEADLINES:
        return HEADLINES[task]
    metrics = [k.split(",")[0] for k, v in run.results[task].items()
               if isinstance(v, (int, float)) and "_stderr" not in k]
    return [Headline(f"{task} {m}", m) for m in dict.fromkeys(metrics)]


def _values(h: Headline, samples: list[dict] | None) -> dict[int, object] | None:
    """doc_id -> per-sample value of the headline metric, or None when the logs cannot give it."""
    if not samples or any(h.metric not in s for s in samples):
        return None
    values = h.per_sample(samples) if h.per_sample else [s[h.metric] for s in samples]
    if h.aggregate is None and not all(isinstance(v, (int, float)) for v in values):
        return None
    return {int(s["doc_id"]): v for s, v in zip(samples, values)}


def paired_bootstrap(base: list, other: list, aggregate: Callable[[list], float] | None = None,
                     units: list[str] | None = None, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of aggregate(other) - aggregate(base) over resamples of paired samples.

    `base[i]` and `other[i]` are the same document; `units[i]` groups documents that must be
    resampled together (e.g. an MME image's two questions).
    """
    agg = aggregate or (lambda xs: float(np.mean(xs)))
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(units if units is not None else range(len(base))):
        groups.setdefault(str(u), []).append(i)
    members = list(groups.values())
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_boot)
    for b in range(n_boot):
        idx = [i for g in rng.integers(0, len(members), len(members)) for i in members[g]]
        deltas[b] = agg([other[i] for i in idx]) - agg([base[i] for i in idx])
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return float(lo), float(hi)


def compare(runs: dict[str, Run], baseline: str, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """One row per (task, headline metric) present in the baseline: scores, deltas and intervals."""
    base = runs[baseline]
    rows = []
    for task in sorted(base.results):
        for h in _headlines(task, base):
            values = {name: run.values(task, h) for name, run in runs.items()}
            if h.from_samples:
                scores = {name: h.aggregate(list(v.values())) if v else None for name, v in values.items()}
            else:
                scores = {name: run.score(task, h.metric) for name, run in runs.items()}
            if scores[baseline] is None:
                continue
            base_vals = values[baseline]
            deltas = {}
            for name, run in runs.items():
                if name == baseline or scores[name] is None:
                    continue
                d = {"delta": scores[name] - scores[baseline], "ci_low": None, "ci_high": None, "n": 0}
                vals = values[name]
                if base_vals is not None and vals is not None:
                    ids = sorted(set(base_vals) & set(vals))
                    if ids:
                        a, b = [base_vals[i] for i in ids], [vals[i] for i in ids]
                        units = [h.cluster(v) for v in a] if h.cluster else None
                        d["ci_low"], d["ci_high"] = paired_bootstrap(a, b, h.aggregate, units, n_boot, seed)
                        d["n"] = len(ids)
                deltas[name] = d
            rows.append({"task": task, "benchmark": h.label, "metric": h.metric, "scores": scores, "deltas": deltas})
    return rows


BLIND_SUFFIX = "-blind"


def blind_pairs(names: list[str]) -> dict[str, str]:
    """{run: its blind control} for every `<run>-blind` whose `<run>` is also present."""
    return {n[: -len(BLIND_SUFFIX)]: n for n in names
            if n.endswith(BLIND_SUFFIX) and n[: -len(BLIND_SUFFIX)] in names}


def vision_gaps(runs: dict[str, Run], n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """One row per (run with a blind control, task, headline): real, blind, gap = real − blind, CI."""
    rows = []
    for real, blind in blind_pairs(list(runs)).items():
        for r in compare({blind: runs[blind], real: runs[real]}, blind, n_boot, seed):
            d = r["deltas"].get(real)
            if d is None:
                continue
            rows.append({"run": real, "task": r["task"], "benchmark": r["benchmark"], "metric": r["metric"],
                         "real": r["scores"][real], "blind": r["scores"][blind], "gap": d["delta"],
                         "ci_low": d["ci_low"], "ci_high": d["ci_high"], "n": d["n"]})
    return rows


def vision_gap_table(rows: list[dict]) -> str:
    lines = ["| run | benchmark | metric | real | blind | vision gap | 95% CI | n |", "|" + "---|" * 8]
    for r in rows:
        ci = f"[{_fmt(r['ci_low'], True)}, {_fmt(r['ci_high'], True)}]" if r["ci_low"] is not None else "n/a"
        lines.append(f"| {r['run']} | {r['benchmark']} | {r['metric']} | {_fmt(r['real'])} | {_fmt(r['blind'])} "
                     f"| {_fmt(r['gap'], True)} | {ci} | {r['n']} |")
    return "\n".join(lines)


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def markdown_table(rows: list[dict], names: list[str], baseline: str) -> str:
    others = [n for n in names if n != baseline]
    head = ["benchmark", "metric", *names] + [c for n in others for c in (f"Δ {n}", "95% CI", "n")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["benchmark"], r["metric"], *(_fmt(r["scores"][n]) for n in names)]
        for n in others:
            d = r["deltas"].get(n)
            if d is None:
                cells += ["n/a", "n/a", "0"]
                continue
            ci = f"[{_fmt(d['ci_low'], True)}, {_fmt(d['ci_high'], True)}]" if d["ci_low"] is not None else "n/a"
            cells += [_fmt(d["delta"], True), ci, str(d["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_gains(rows: list[dict], others: list[str], baseline: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["benchmark"] for r in rows]
    y = np.arange(len(rows))
    height = 0.8 / max(len(others), 1)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    for k, name in enumerate(others):
        ds = [r["deltas"].get(name, {}) for r in rows]
        delta = np.array([d.get("delta", np.nan) for d in ds], dtype=float)
        err = np.array([[d["delta"] - d["ci_low"], d["ci_high"] - d["delta"]] if d.get("ci_low") is not None
                        else [0.0, 0.0] for d in ds]).T.reshape(2, len(rows))
        colors = ["tab:green" if v >= 0 else "tab:red" for v in np.nan_to_num(delta)]
        ax.barh(y + k * height, delta, height, xerr=err, color=colors, alpha=0.5 + 0.5 / (k + 1),
                label=name, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y + height * (len(others) - 1) / 2, labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"gain over {baseline} (95% bootstrap CI)")
    if len(others) > 1:
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


@contextmanager
def _quiet_loguru(*names: str):
    """Silence loguru for these packages while the bootstrap runs, then give their logs back."""
    from loguru import logger

    for name in names:
        logger.disable(name)
    try:
        yield
    finally:
        for name in names:
            logger.enable(name)


def build_report(runs: dict[str, Run], baseline: str, out: Path, n_boot: int = 2000, seed: int = 0) -> str:
    """Write report.md, report.json and gains.png under `out`; return the markdown table."""
    # lmms-eval's aggregations (and our task utils) log per call, i.e. per bootstrap resample
    with _quiet_loguru("lmms_eval", __name__.split(".")[0]):
        return _build_report(runs, baseline, out, n_boot, seed)


def _build_report(runs: dict[str, Run], baseline: str, out: Path, n_boot: int, seed: int) -> str:
    out.mkdir(parents=True, exist_ok=True)
    if baseline.endswith(BLIND_SUFFIX):
        raise ValueError(f"--baseline {baseline!r} is a blind control; pick a real run")
    blinds = set(blind_pairs(list(runs)).values())
    seen = {n: r for n, r in runs.items() if n not in blinds}
    names = list(seen)
    rows = compare(seen, baseline, n_boot, seed)
    gaps = vision_gaps(runs, n_boot, seed)
    table = markdown_table(rows, names, baseline)
    if gaps:
        table += ("\n\n## Vision gap (run − run-blind: the same questions, every image replaced by one fixed "
                  "image)\n\n" + vision_gap_table(gaps))
    intro = (f"# Gains over `{baseline}`\n\nScores as lmms-eval reports them; Δ = run − {baseline}; "
             f"95% CI from a paired bootstrap ({n_boot} resamples) of the per-sample logs; n = paired samples.\n\n")
    atomic_write(out / "report.md", intro + table + "\n\n![gains](gains.png)\n")
    report = {"baseline": baseline, "runs": {n: str(r.samples_dir) for n, r in runs.items()},
              "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95}, "rows": rows,
              "vision_gaps": gaps}
    atomic_write(out / "report.json", json.dumps(report, indent=2))
    plot_gains(rows, [n for n in names if n != baseline], baseline, out / "gains.png")
    return table
