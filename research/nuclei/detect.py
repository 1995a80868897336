"""From heatmaps to scored detections: cell probability, disc non-maximum suppression, detection matching and
the paper's metrics (EXPERIMENTS.md section 6).

* cell probability = 1 - p(background); a detection's class = argmax of the three nucleus maps at its pixel;
* NMS: repeatedly take the most probable pixel above ``threshold`` and zero a disc of radius r around it;
* matching: predictions in descending confidence each take the nearest UNMATCHED annotation within r px;
  TP/FP/FN give precision, recall and F1; matched pairs give a 3 x 3 confusion (rows true, columns predicted),
  hence the overall classification accuracy and per class one-vs-rest accuracy, sensitivity and specificity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nuclei.synthetic import CLASS_NAMES

__all__ = ["Detections", "MatchCounts", "cell_probability", "detect", "disc_nms", "match", "metrics"]


def cell_probability(probs: np.ndarray) -> np.ndarray:
    """(4, H, W) softmax maps (background last) -> (H, W) probability that a nucleus is centred there."""
    return 1.0 - probs[3]


def disc_nms(prob: np.ndarray, radius: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of ``prob`` (H, W): (N, 2) int (x, y) and (N,) scores, in descending score, no two closer than
    ``radius`` (each pick zeroes the disc of radius ``radius`` around it: distance < radius)."""
    work = np.array(prob, dtype=np.float64, copy=True)
    height, width = work.shape
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = dx**2 + dy**2 < radius**2
    points, scores = [], []
    while True:
        flat = int(np.argmax(work))
        y, x = divmod(flat, width)
        score = work[y, x]
        if not score > threshold:
            break
        points.append((x, y))
        scores.append(float(prob[y, x]))
        y0, y1, x0, x1 = max(0, y - r), min(height, y + r + 1), max(0, x - r), min(width, x + r + 1)
        window = disc[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)]
        work[y0:y1, x0:x1][window] = 0.0
        work[y, x] = 0.0
    return np.array(points, dtype=np.int64).reshape(-1, 2), np.array(scores, dtype=np.float64)


@dataclass(frozen=True)
class Detections:
    """One patch's detections: (x, y), score, predicted class (0..2)."""

    centres: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def detect(probs: np.ndarray, radius: float, threshold: float) -> Detections:
    """NMS on the cell probability of (4, H, W) softmax maps; each detection's class from the nucleus maps."""
    centres, scores = disc_nms(cell_probability(probs), radius, threshold)
    labels = probs[:3, centres[:, 1], centres[:, 0]].argmax(axis=0) if len(centres) else np.zeros(0, dtype=np.int64)
    return Detections(centres, scores, labels.astype(np.int64))


@dataclass
class MatchCounts:
    """Detection counts and the confusion of matched pairs, summed over patches with ``+=``."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((3, 3), dtype=np.int64))

    def __iadd__(self, other: MatchCounts) -> MatchCounts:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.confusion = self.confusion + other.confusion
        return self


def match(detections: Detections, centres: np.ndarray, labels: np.ndarray, radius: float) -> tuple[MatchCounts, np.ndarray]:
    """Greedy matching in descending score; returns the counts and, per detection, the annotation index it
    matched (-1: a false positive). A match needs distance <= ``radius``."""
    order = np.argsort(-detections.scores, kind="stable")
    taken = np.zeros(len(centres), dtype=bool)
    matched = np.full(len(detections.scores), -1, dtype=np.int64)
    confusion = np.zeros((3, 3), dtype=np.int64)
    truth = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    for i in order:
        if not len(truth):
            break
        dist = np.hypot(*(truth - detections.centres[i]).T)
        dist[taken] = np.inf
        j = int(np.argmin(dist))
        if dist[j] <= radius:
            taken[j] = True
            matched[i] = j
            confusion[int(labels[j]), int(detections.labels[i])] += 1
    tp = int(taken.sum())
    return MatchCounts(tp, len(detections.scores) - tp, len(truth) - tp, confusion), matched


def metrics(counts: MatchCounts) -> dict[str, float]:
    """``det_precision``, ``det_recall``, ``det_f1``, ``class_accuracy`` and, per class C of L/BE/ME,
    ``acc_C``, ``sens_C``, ``spec_C`` (one vs rest on matched detections); 0 where a denominator is 0."""

    def ratio(a: float, b: float) -> float:
        return float(a) / b if b else 0.0

    precision = ratio(counts.tp, counts.tp + counts.fp)
    recall = ratio(counts.tp, counts.tp + counts.fn)
    conf = counts.confusion
    total = int(conf.sum())
    out = {
        "det_precision": precision,
        "det_recall": recall,
        "det_f1": ratio(2 * precision * recall, precision + recall),
        "class_accuracy": ratio(np.trace(conf), total),
    }
    for c, name in enumerate(CLASS_NAMES):
        tp = int(conf[c, c])
        fn = int(conf[c].sum()) - tp
        fp = int(conf[:, c].sum()) - tp
        tn = total - tp - fn - fp
        out[f"acc_{name}"] = ratio(tp + tn, total)
        out[f"sens_{name}"] = ratio(tp, tp + fn)
        out[f"spec_{name}"] = ratio(tn, tn + fp)
    return out
