import numpy
import pytest
import torch

from spacy_clinalign.alignment.losses import row_column_cosine_loss, student_cosine
from spacy_clinalign.alignment.teacher import (
    context_concat,
    fuse_views,
    positional_prior,
    sentence_view,
    span_bias,
    window_mean,
)


def test_positional_prior_shape_50_100():
    prior, allowed = positional_prior(400, 400)
    # square pair: distance = |i - j| tokens
    assert prior[200, 200] == 1.0 and prior[200, 250] == 1.0  # within 50: full weight
    assert prior[200, 275] == pytest.approx(0.5)  # halfway through the decay
    assert prior[200, 300] == 0.0 and not allowed[200, 300]  # 100 and beyond: disallowed
    assert allowed[200, 299] and prior[200, 299] == pytest.approx(0.02)  # (100 - 99) / 50
    # scaled by both lengths: the diagonal follows the document, not i == j
    prior, allowed = positional_prior(200, 400)
    assert prior[100, 200] == 1.0 and not allowed[0, 399]
    short, short_allowed = positional_prior(20, 30)
    assert (short == 1.0).all() and short_allowed.all()  # sentence pairs: no effect
    with pytest.raises(ValueError):
        positional_prior(3, 3, full=100, zero=50)


def test_context_concat_weights_neighbours():
    v = numpy.arange(1, 5, dtype="float32")[:, None]  # 4 tokens, width 1: values 1..4
    out = context_concat(v, 2, 2, 0.1)
    assert out.shape == (4, 5)
    numpy.testing.assert_allclose(out[0], [1, 0, 0, 0.2, 0.3])  # no left neighbours
    numpy.testing.assert_allclose(out[2], [3, 0.1, 0.2, 0.4, 0])


def test_window_mean_and_sentence_view():
    v = numpy.array([[1.0], [3.0], [5.0]], dtype="float32")
    numpy.testing.assert_allclose(window_mean(v, 1)[:, 0], [2.0, 3.0, 4.0])
    t = numpy.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype="float32")
    s = numpy.array([[0.0, 1.0], [1.0, 0.0]], dtype="float32")
    view = sentence_view(t, s, [0, 0, 1], [0, 1])
    numpy.testing.assert_allclose(view, [[0, 1], [0, 1], [1, 0]], atol=1e-6)


def test_span_bias_and_fusion():
    bias = span_bias(4, 3, [((1, 3), (0, 2))], 2.0)
    assert bias.sum() == 2.0 * 4 and bias[1, 0] == 2.0 and bias[0, 0] == 0.0
    with pytest.raises(ValueError, match="outside"):
        span_bias(4, 3, [((0, 5), (0, 1))], 1.0)
    rng = numpy.random.default_rng(1)
    views = {"prior": numpy.ones((6, 6), "float32"), "token": rng.normal(size=(6, 6)).astype("float32")}
    teacher = fuse_views(views, {"prior": 1.0, "token": 1.0}, n_iter=100, temperature=1.0)
    numpy.testing.assert_allclose(teacher.sum(0), 1.0, atol=1e-4)
    numpy.testing.assert_allclose(teacher.sum(1), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="unknown views"):
        fuse_views({"bogus": numpy.ones((2, 2))}, {})


def test_loss_zero_when_student_equals_teacher_positive_otherwise():
    teacher = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    assert float(row_column_cosine_loss(teacher.clone(), teacher)) == pytest.approx(0.0, abs=1e-6)
    assert float(row_column_cosine_loss(teacher * 3.0, teacher)) == pytest.approx(0.0, abs=1e-6)  # scale-free
    worse = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert float(row_column_cosine_loss(worse, teacher)) > 0.5
    with pytest.raises(ValueError, match="differ"):
        row_column_cosine_loss(torch.zeros(2, 3), teacher)


def test_loss_gradient_flows_to_vectors():
    t = torch.randn(5, 8, requires_grad=True)
    s = torch.randn(4, 8, requires_grad=True)
    teacher = torch.eye(5, 4)
    loss = row_column_cosine_loss(student_cosine(t, s), teacher)
    loss.backward()
    assert t.grad is not None and t.grad.abs().sum() > 0 and s.grad.abs().sum() > 0
