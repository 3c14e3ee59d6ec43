"""Prompt and scoring functions of the clips-llava local lmms-eval tasks (`eval/tasks/synth_*.yaml`).

lmms-eval imports this file by path (`!function utils.NAME` in the YAMLs). Wherever lmms-eval has a
scorer for the benchmark a task imitates, it is re-exported or wrapped here, never rewritten:

    synth_pope     POPE accuracy / precision / recall / F1 / yes-ratio   lmms_eval.tasks.pope.utils
    synth_gqa      exact match, case- and punctuation-insensitive         lmms_eval.api.metrics
    synth_mme      MME score = acc + acc+ over each image's 2 questions   lmms_eval.tasks.mme.utils
    synth_caption  CIDEr, BLEU-4 (PTB tokenizer, pycocoevalcap)           lmms_eval.tasks.coco_cap.utils
    synth_textvqa  VQA accuracy with the EvalAI answer normaliser         lmms_eval.tasks.textvqa.utils
    synth_chartqa  relaxed accuracy (5% tolerance on numbers)             lmms_eval.tasks.chartqa.utils

Try one scorer by hand:
    .venv/bin/python -c "from clips_llava_eval.tasks.utils import gqa_process_results as f; \
        print(f({'answer': 'Red'}, ['red.']))"
"""
from __future__ import annotations

import copy

from loguru import logger
from lmms_eval.api.metrics import exact_match_hf_evaluate
from lmms_eval.tasks.chartqa.utils import relaxed_correctness
from lmms_eval.tasks.coco_cap.utils import coco_aggregation_result
from lmms_eval.tasks.mme.utils import mme_aggregate_results as _lmms_mme_aggregate
from lmms_eval.tasks.mme.utils import mme_doc_to_text, mme_process_results  # noqa: F401  (used by YAML)
from lmms_eval.tasks.pope.utils import (  # noqa: F401  (used by YAML)
    pope_aggregate_accuracy,
    pope_aggregate_f1_score,
    pope_aggregate_precision,
    pope_aggregate_recall,
    pope_aggregate_yes_ratio,
    pope_doc_to_text,
    pope_process_results,
)
from lmms_eval.tasks.textvqa.utils import textvqa_process_results as _lmms_textvqa_process_results
from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

# The official VQA accuracy (min(1, #humans who gave the answer / 3), averaged over the 10
# leave-one-out subsets) is defined for 10 reference answers; with fewer it is not meaningful.
VQA_NUM_ANSWERS = 10


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def question_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question'].strip()}{kwargs.get('post_prompt', '')}"


def caption_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return (lmms_eval_specific_kwargs or {}).get("prompt", "Provide a one-sentence caption for the provided image.")


def gqa_process_results(doc, results):
    """GQA's metric in lmms-eval: exact match ignoring case and punctuation."""
    pred = results[0] if results else ""
    score = exact_match_hf_evaluate([pred], [doc["answer"]], ignore_case=True, ignore_punctuation=True)
    return {"exact_match": float(score["exact_match"])}


def mme_aggregate_results(results):
    """lmms-eval's MME aggregation, after dropping images whose 2 questions are not both present.

    MME scores each image's *pair* of questions (acc + acc+); `--limit` can cut a pair in half,
    which makes lmms-eval's aggregation assert. Incomplete pairs are dropped and counted.
    """
    per_key: dict[tuple[str, str], int] = {}
    for r in results:
        key = (r["category"], r["question_id"])
        per_key[key] = per_key.get(key, 0) + 1
    complete = [r for r in results if per_key[(r["category"], r["question_id"])] == 2]
    if len(complete) < len(results):
        logger.warning(f"MME: skipped {len(results) - len(complete)} question(s) whose image pair is incomplete")
    if not complete:
        return 0.0
    return _lmms_mme_aggregate(complete)


def textvqa_process_results(doc, results):
    """VQA accuracy: lmms-eval's TextVQA scorer when a question has 10 answers; otherwise, the
    EvalAI-normalised prediction must equal one of the normalised references (1.0 or 0.0)."""
    answers = list(doc["answers"])
    if len(answers) >= VQA_NUM_ANSWERS:
        scored = _lmms_textvqa_process_results(copy.deepcopy(dict(doc)), results)
        return {"vqa_accuracy": float(scored["exact_match"])}
    norm = EvalAIAnswerProcessor()
    pred = norm(results[0] if results else "")
    return {"vqa_accuracy": float(pred in {norm(a) for a in answers})}


def chartqa_process_results(doc, results):
    pred = results[0] if results else ""
    return {"relaxed_accuracy": float(relaxed_correctness(pred, str(doc["answer"])))}


# --- captioning: lmms-eval's COCO pipeline (PTB tokenizer + pycocoevalcap scorers) -------------
CAPTION_METRICS = ("CIDEr", "Bleu_4")


def caption_process_results(doc, results):
    pred = results[0] if results else ""
    data = {"answer": list(doc["references"]), "pred": pred, "image_id": int(doc["image_id"]), "id": int(doc["image_id"])}
    return {f"caption_{m}": data for m in CAPTION_METRICS}


def caption_cider(results, args=None):
    return coco_aggregation_result(results, "CIDEr", args)


def caption_bleu4(results, args=None):
    return coco_aggregation_result(results, "Bleu_4", args)
