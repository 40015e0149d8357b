"""The loss: exact values, ignored labels, and the num_items_in_batch convention used by Trainer."""

import torch
import torch.nn.functional as F
from helpers import make_inputs, tiny_clip
from peft import get_peft_model

from mitp_peft import MITPConfig
from mitp_peft.method.loss import classification_loss


def test_single_label_loss_is_mean_cross_entropy_ignoring_minus_100():
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 2, -100, 1])
    expected = F.cross_entropy(logits, labels)
    torch.testing.assert_close(classification_loss(logits, labels, "single_label_classification"), expected)
    torch.testing.assert_close(
        classification_loss(logits, labels, "single_label_classification", num_items_in_batch=6), expected * 3 / 6
    )


def test_multi_label_loss_is_mean_bce():
    logits = torch.randn(4, 3)
    labels = torch.randint(0, 2, (4, 3))
    expected = F.binary_cross_entropy_with_logits(logits, labels.float())
    torch.testing.assert_close(classification_loss(logits, labels, "multi_label_classification"), expected)
    got = classification_loss(logits, labels, "multi_label_classification", num_items_in_batch=torch.tensor(24))
    torch.testing.assert_close(got, expected / 2)


def test_model_loss_matches_its_logits():
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3, problem_type="multi_label_classification"))
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1]])
    out = model(**make_inputs(), labels=labels)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, labels.float()))


def test_accumulated_micro_batches_equal_one_batch():
    """Two micro-batches, each divided by the count over both (what Trainer passes), give the full batch's gradient."""
    inputs = make_inputs(batch=4, lengths=[7, 5, 6, 4])
    labels = torch.tensor([0, 2, 1, 2])
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    model(**inputs, labels=labels).loss.backward()
    full = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):
        micro = {k: v[half] for k, v in inputs.items()}
        model(**micro, labels=labels[half], num_items_in_batch=torch.tensor(4)).loss.backward()
    for name, grad in full.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6)
