import numpy as np
import pytest
import torch

from onet.geometry.iou import iou, iou_per_threshold


def test_iou_definitions_and_errors():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, a) == 1.0
    assert iou(np.zeros(5, bool), np.zeros(5, bool)) == 1.0  # two empty sets are identical
    assert iou(np.array([1, 0]), np.array([1, 1], np.uint8)) == 0.5
    with pytest.raises(ValueError, match="shapes differ"):
        iou(a, a[:3])
    with pytest.raises(ValueError, match="threshold probabilities first"):
        iou(np.array([0.2, 0.9]), np.array([True, False]))


def test_iou_per_threshold_on_a_hand_made_case():
    logits = torch.tensor([[2.0, -2.0, 0.5, -3.0], [-5.0, -5.0, -5.0, -5.0]])
    occ = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    ious = iou_per_threshold(logits, occ, [0.5, 0.1])
    # tau 0.5 (logit 0): predicted {0, 2}, inside {0, 1} -> 1/3; tau 0.1 (logit -2.2): {0, 1, 2} -> 2/3
    assert ious[0].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert ious[1].tolist() == [1.0, 1.0]  # nothing inside, nothing predicted
