"""Disc NMS keeps no two detections closer than r and takes the maxima; matching counts TP/FP/FN and the
confusion on a hand-made example; the per-class metrics follow from them."""

from __future__ import annotations

import numpy as np
import pytest
from nuclei.detect import Detections, MatchCounts, detect, disc_nms, match, metrics


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("radius", [3.0, 6.5, 10.0])
def test_nms_keeps_no_two_detections_closer_than_r_and_starts_at_the_maximum(seed: int, radius: float) -> None:
    prob = np.random.default_rng(seed).uniform(0, 1, (40, 50))
    points, scores = disc_nms(prob, radius, threshold=0.3)
    assert len(points) > 1
    assert tuple(points[0]) == tuple(np.unravel_index(np.argmax(prob), prob.shape)[::-1])
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0.3)
    gaps = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    assert gaps[~np.eye(len(points), dtype=bool)].min() >= radius
    # every pixel above the threshold lies within r of a detection scoring at least as much (nothing was missed)
    ys, xs = np.nonzero(prob > 0.3)
    near = np.hypot(xs[:, None] - points[None, :, 0], ys[:, None] - points[None, :, 1]) < radius
    assert np.all((near & (scores[None, :] >= prob[ys, xs][:, None])).any(axis=1))


def test_nms_picks_isolated_peaks_exactly() -> None:
    prob = np.zeros((30, 30))
    prob[5, 7], prob[20, 22], prob[6, 9] = 0.9, 0.8, 0.7  # (7, 5) suppresses (9, 6): 2.2 px away
    points, scores = disc_nms(prob, 4.0, 0.5)
    assert points.tolist() == [[7, 5], [22, 20]] and scores.tolist() == [0.9, 0.8]
    assert len(disc_nms(prob, 4.0, 0.95)[0]) == 0


def test_detect_takes_the_class_from_the_nucleus_maps() -> None:
    probs = np.zeros((4, 20, 20))
    probs[3] = 1.0
    probs[:, 5, 5] = [0.1, 0.7, 0.1, 0.1]  # BE
    probs[:, 15, 12] = [0.05, 0.05, 0.6, 0.3]  # ME
    found = detect(probs, 4.0, 0.5)
    assert found.centres.tolist() == [[5, 5], [12, 15]] and found.labels.tolist() == [1, 2]


def test_matching_on_a_hand_made_example() -> None:
    # annotations: A (10, 10) L, B (30, 10) BE, C (50, 10) ME, D (80, 80) ME (never found)
    truth = np.array([[10, 10], [30, 10], [50, 10], [80, 80]])
    labels = np.array([0, 1, 2, 2])
    detections = Detections(
        centres=np.array([[11, 10], [12, 12], [30, 13], [52, 10], [60, 60]]),
        scores=np.array([0.9, 0.95, 0.8, 0.7, 0.99]),
        labels=np.array([0, 0, 1, 1, 2]),
    )
    counts, matched = match(detections, truth, labels, radius=4.0)
    # by score: (60,60) nothing within 4 -> FP; (12,12) takes A (2.8 px); (11,10) A taken -> FP;
    # (30,13) takes B, class right; (52,10) takes C, predicted BE for ME
    assert (counts.tp, counts.fp, counts.fn) == (3, 2, 1)
    assert matched.tolist() == [-1, 0, 1, 2, -1]
    assert counts.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    got = metrics(counts)
    assert got["det_precision"] == pytest.approx(3 / 5) and got["det_recall"] == pytest.approx(3 / 4)
    assert got["det_f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert got["class_accuracy"] == pytest.approx(2 / 3)
    # one vs rest on the 3 matched: L all right; BE: TP 1, FP 1 (the ME), TN 1; ME: FN 1, TN 2
    assert (got["acc_L"], got["sens_L"], got["spec_L"]) == (1.0, 1.0, 1.0)
    assert (got["acc_BE"], got["sens_BE"], got["spec_BE"]) == pytest.approx((2 / 3, 1.0, 0.5))
    assert (got["acc_ME"], got["sens_ME"], got["spec_ME"]) == pytest.approx((2 / 3, 0.0, 1.0))


def test_nearest_unmatched_annotation_wins_and_counts_add_up() -> None:
    truth = np.array([[0, 0], [3, 0]])
    one = Detections(np.array([[2, 0], [1, 0]]), np.array([0.9, 0.8]), np.array([0, 0]))
    counts, matched = match(one, truth, np.array([0, 0]), radius=3.0)
    assert matched.tolist() == [1, 0] and (counts.tp, counts.fp, counts.fn) == (2, 0, 0)
    total = MatchCounts()
    total += counts
    total += match(Detections(np.zeros((0, 2), int), np.zeros(0), np.zeros(0, int)), truth, np.array([0, 1]), 3.0)[0]
    assert (total.tp, total.fp, total.fn) == (2, 0, 2) and total.confusion[0, 0] == 2
    assert metrics(MatchCounts())["det_f1"] == 0.0
