"""The training questions' words must not give their yes/no answers, or a blind model passes POPE.

A "name-only" model predicts each answer from the object's (or colour's) name alone, by the share of
"Yes" that name gets in training. On the stage-2 existence conversations and the look-up lines it must
score chance on POPE's three kinds of negatives, as drawn by the eval split. Before the training
negatives were matched to each name's presence (popular ones ranked by frequency, the frequent names
mostly "No"), it scored 0.628 on POPE's popular negatives, and this test failed.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from clips_tower.world.conversations import existence_turns, yes_no_turns
from clips_tower.world.questions import (
    ALL_NAMES,
    NEGATIVE_WEIGHTS,
    PRIOR_POPULARITY,
    existence_question,
    pope_negative,
)
from clips_tower.world.scene import COLORS, sample_scene

NAME = re.compile(r"Is there an? (\w+ \w+) in")


def _scenes(seed: int, n: int):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, 1, 6) for _ in range(n)], rng


def _yes_share(pairs) -> dict[str, float]:
    yes, total = Counter(), Counter()
    for key, answer in pairs:
        total[key] += 1
        yes[key] += answer == "Yes"
    return {k: yes[k] / total[k] for k in total}


def _name_only_accuracy(share: dict[str, float], questions) -> float:
    """Expected accuracy of a model that knows only each name's training share of "Yes" and answers "Yes"
    with that probability (a blind LLaVA's calibrated prior). Chance is 0.5."""
    return float(np.mean([share.get(k, 0.5) if a == "Yes" else 1.0 - share.get(k, 0.5) for k, a in questions]))


def _pope(category: str, seed: int = 1, n: int = 2000):
    """POPE's eval questions as the eval split draws them: a present object, and a negative of `category`."""
    scenes, rng = _scenes(seed, n)
    out = []
    for scene in scenes:
        if category == "adversarial" and len({o.shape for o in scene.objects}) * len(COLORS) == len(scene.names):
            continue
        out += [(sorted(scene.names)[int(rng.integers(len(scene.names)))], "Yes"),
                (pope_negative(scene, rng, category, PRIOR_POPULARITY), "No")]
    return out


def _existence_training(n: int = 6000):
    scenes, rng = _scenes(0, n)
    return [(NAME.search(q).group(1), a) for s in scenes for q, a in existence_turns(s, rng)]


@pytest.fixture(scope="module")
def existence_share():
    return _yes_share(_existence_training())


def test_every_name_is_as_often_yes_as_no_in_the_existence_conversations(existence_share):
    assert set(existence_share) == set(ALL_NAMES)
    # sampling noise at this size is about +-0.03 for the rarest names
    assert all(0.42 < s < 0.58 for s in existence_share.values()), sorted(existence_share.items(), key=lambda t: t[1])


@pytest.mark.parametrize("category", ["random", "popular", "adversarial"])
def test_a_name_only_model_scores_chance_on_pope(existence_share, category):
    acc = _name_only_accuracy(existence_share, _pope(category))
    assert 0.47 < acc < 0.53, acc


def test_the_look_up_lines_give_no_name_prior():
    scenes, rng = _scenes(2, 12000)
    share = _yes_share((NAME.search(q).group(1), a) for s in scenes for q, a in [existence_question(s, rng)])
    for category in ("random", "popular", "adversarial"):
        assert 0.47 < _name_only_accuracy(share, _pope(category)) < 0.53, category


def test_negative_weights_follow_presence():
    """The frequent objects are drawn more often as negatives, in the order the scene sampler favours them."""
    w = [NEGATIVE_WEIGHTS[n] for n in PRIOR_POPULARITY]
    assert w == sorted(w, reverse=True) and w[0] > 5 * w[-1]


def test_colour_yes_no_pairs_give_no_colour_prior():
    scenes, rng = _scenes(3, 12000)
    colour = re.compile(r"Is the \w+ (\w+)\?")
    pairs = [(m.group(1), a) for s in scenes for q, a in yes_no_turns(s, rng) if (m := colour.match(q))]
    share = _yes_share(pairs)
    assert set(share) == set(COLORS) and len(pairs) > 2000
    assert all(0.42 < s < 0.58 for s in share.values()), share
