"""Every local-task scorer (eval/tasks/utils.py, i.e. lmms-eval's scorers) on hand-built predictions."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from clips_llava_eval.tasks import utils as U


def test_pope_scores_match_hand_counts():
    gts = ["yes", "yes", "no", "no"]
    preds = ["Yes", "no", "yes", "no"]  # TP=1 FN=1 FP=1 TN=1
    per = [U.pope_process_results({"question_id": str(i), "answer": g}, [p]) for i, (g, p) in enumerate(zip(gts, preds))]
    assert U.pope_aggregate_accuracy([r["pope_accuracy"] for r in per]) == 0.5
    assert U.pope_aggregate_precision([r["pope_precision"] for r in per]) == 0.5
    assert U.pope_aggregate_recall([r["pope_recall"] for r in per]) == 0.5
    assert U.pope_aggregate_f1_score([r["pope_f1_score"] for r in per]) == 0.5
    assert U.pope_aggregate_yes_ratio([r["pope_yes_ratio"] for r in per]) == 0.5


def test_gqa_exact_match_ignores_case_and_punctuation():
    assert U.gqa_process_results({"answer": "red"}, ["Red."]) == {"exact_match": 1.0}
    assert U.gqa_process_results({"answer": "red"}, ["dark red"]) == {"exact_match": 0.0}


def test_mme_score_is_acc_plus_acc_plus_per_image_and_drops_broken_pairs():
    def doc(img, ans):
        return {"question_id": img, "answer": ans, "category": "color"}
    per = [
        U.mme_process_results(doc("a.png", "Yes"), ["Yes, it is."]),  # right
        U.mme_process_results(doc("a.png", "No"), ["No"]),            # right -> acc 100, acc+ 100
        U.mme_process_results(doc("b.png", "Yes"), ["yes"]),          # right
        U.mme_process_results(doc("b.png", "No"), ["Yes"]),           # wrong -> acc 50, acc+ 0
        U.mme_process_results(doc("c.png", "Yes"), ["no"]),           # half a pair (e.g. --limit)
    ]
    values = [r["mme_perception_score"] for r in per]
    assert U.mme_aggregate_results(values) == pytest.approx((200 + 50) / 2)


def test_textvqa_official_vqa_accuracy_with_ten_answers():
    doc = {"question_id": "t", "answers": ["bus"] * 3 + ["car"] * 7}
    # leave-one-out: 3 subsets keep 2 "bus" (2/3), 7 keep 3 "bus" (1) -> (3*2/3 + 7) / 10
    assert U.textvqa_process_results(doc, ["Bus."])["vqa_accuracy"] == pytest.approx(0.9)
    assert U.textvqa_process_results(doc, ["train"])["vqa_accuracy"] == 0.0


def test_textvqa_with_few_answers_is_normalised_match():
    assert U.textvqa_process_results({"answers": ["Stop"]}, ["stop."])["vqa_accuracy"] == 1.0
    assert U.textvqa_process_results({"answers": ["Stop"]}, ["go"])["vqa_accuracy"] == 0.0


def test_chartqa_relaxed_accuracy():
    assert U.chartqa_process_results({"answer": "10"}, ["10.4"])["relaxed_accuracy"] == 1.0  # within 5%
    assert U.chartqa_process_results({"answer": "10"}, ["11"])["relaxed_accuracy"] == 0.0
    assert U.chartqa_process_results({"answer": "G"}, ["g"])["relaxed_accuracy"] == 1.0


def test_caption_cider_and_bleu4(tmp_path):
    caps = ["a red square on green grass", "two blue cats sleep on a sofa", "an old man reads three books"]
    args = SimpleNamespace(output_path=str(tmp_path))  # lmms-eval writes a submission file there
    perfect = [U.caption_process_results({"references": [c], "image_id": i}, [c])["caption_CIDEr"] for i, c in enumerate(caps)]
    # CIDEr-D of a candidate equal to its only reference: cosine 1 for n = 1..4, times 10.
    assert U.caption_cider(perfect, args) == pytest.approx(10.0, abs=1e-6)
    assert U.caption_bleu4(perfect, args) == pytest.approx(1.0, abs=1e-6)
    wrong = [U.caption_process_results({"references": [c], "image_id": i}, ["zebra"])["caption_CIDEr"] for i, c in enumerate(caps)]
    assert U.caption_cider(wrong, args) == pytest.approx(0.0)
