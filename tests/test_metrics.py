"""Metrics: the shipped `evaluate` modules against hand-computed values, offline."""

from types import SimpleNamespace

import evaluate
import numpy as np
import pytest

from mitp_peft.metrics import compute_metrics, load_metric


def test_accuracy_is_an_evaluate_module_and_ignores_minus_100():
    metric = load_metric("accuracy")
    assert isinstance(metric, evaluate.Metric)
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [0.0, 1.0]])
    assert metric.compute(predictions=logits, references=[0, 0, -100, 1]) == {"accuracy": pytest.approx(2 / 3)}


def test_accuracy_accumulates_batches_like_any_evaluate_metric():
    metric = load_metric("accuracy")
    metric.add_batch(predictions=[[1.0, 0.0]], references=[0])
    metric.add_batch(predictions=[[1.0, 0.0], [0.0, 1.0]], references=[1, 1])
    assert metric.compute() == {"accuracy": pytest.approx(2 / 3)}


def test_multi_label_f1_by_hand():
    # Label 0: tp=1, fp=1, fn=0 -> F1 2/3. Label 1: tp=0, fp=0, fn=1 -> 0. Label 2: tp=1, fp=0, fn=0 -> 1.
    logits = np.array([[3.0, -3.0, 3.0], [3.0, -3.0, -3.0]])
    labels = np.array([[1, 1, 1], [0, 0, 0]])
    metric = load_metric("multi_label_f1")
    got = metric.compute(predictions=logits, references=labels)
    assert got["f1_macro"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert got["f1_micro"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert metric.compute(predictions=logits, references=labels, threshold=0.999)["f1_micro"] == 0.0


def test_unknown_metric_names_what_ships():
    with pytest.raises(ValueError, match=r"ships the metrics \['accuracy', 'multi_label_f1'\], not 'f1'"):
        load_metric("f1")


def test_trainer_metrics_take_the_logits_from_a_tuple():
    logits = np.array([[2.0, 1.0], [0.0, 3.0]])
    prediction = SimpleNamespace(predictions=(logits, np.zeros((2, 4))), label_ids=np.array([0, 0]))
    assert compute_metrics("single_label_classification")(prediction) == {"accuracy": 0.5}
    multi = SimpleNamespace(predictions=logits, label_ids=np.array([[1, 0], [0, 1]]))
    # Every sigmoid reaches 0.5 (logit 0 included): tp=2, fp=2, fn=0.
    assert compute_metrics("multi_label_classification")(multi)["f1_micro"] == pytest.approx(4 / 6)
