"""Threshold-free scores of yes/no margins, shared by the diagnostics in scripts/.

A margin is log P(yes-answer) - log P(no-answer) for one question (teacher-forced). Greedy decoding
answers "yes" roughly when it is > 0; the AUC ignores that threshold, so a signal hidden by a yes- or
no-bias still shows.

    from clips_llava_eval.margins import summarize
    summarize([1.0, -1.0, 2.0, 0.5], [True, False, False, True])
    # {"acc@0": 0.75, "yes-ratio": 0.75, "AUC": 0.5}
"""
from __future__ import annotations


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a positive's margin > a negative's), ties counting half: 0.5 = no signal."""
    pairs = [(p > n) + 0.5 * (p == n) for p in positive for n in negative]
    return sum(pairs) / len(pairs)


def summarize(values: list[float], gold: list[bool]) -> dict[str, float]:
    """acc@0 (answer "yes" iff margin > 0), the yes-ratio, and the AUC of `values` against `gold`."""
    return {"acc@0": sum((m > 0) == g for m, g in zip(values, gold)) / len(gold),
            "yes-ratio": sum(m > 0 for m in values) / len(values),
            "AUC": auc([m for m, g in zip(values, gold) if g], [m for m, g in zip(values, gold) if not g])}
