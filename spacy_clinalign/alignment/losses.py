"""Distillation loss between the student's cosine matrix and the frozen teacher (torch, autograd)."""
import torch


def student_cosine(target: torch.Tensor, source: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(n_target, n_source) cosine matrix of two token-vector tensors, differentiable."""
    t = target / target.norm(dim=1, keepdim=True).clamp_min(eps)
    s = source / source.norm(dim=1, keepdim=True).clamp_min(eps)
    return t @ s.T


def row_column_cosine_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(1 - mean row-wise cosine) + (1 - mean column-wise cosine) between the two matrices.

    The student's cosines are not normalized like the doubly stochastic teacher, so the paper compares
    the direction of each row and each column rather than using a KL divergence. Rows or columns that
    are all zero in the teacher (nothing to learn there) are left out of the means.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"loss: student matrix {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ")
    if student.numel() == 0:
        return student.sum() * 0.0
    teacher = teacher.to(student.dtype)
    losses = []
    for dim in (1, 0):  # rows, then columns
        keep = teacher.abs().sum(dim=dim) > 0
        cos = torch.nn.functional.cosine_similarity(student, teacher, dim=dim, eps=eps)
        losses.append(1.0 - cos[keep].mean() if keep.any() else student.sum() * 0.0)
    return losses[0] + losses[1]


def gold_link_nll(student: torch.Tensor, gold: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Supervised loss on gold links, awesome-align's supervised objective in row and column form: the
    negative log of the softmax mass (of cosine / temperature) that each row falls on its gold cells,
    plus the same for each column; rows and columns without a gold link are left out.

    gold: bool (n_target, n_source) mask of gold (sure) links."""
    if student.shape != gold.shape:
        raise ValueError(f"loss: student matrix {tuple(student.shape)} and gold links {tuple(gold.shape)} differ")
    if student.numel() == 0 or not bool(gold.any()):
        return student.sum() * 0.0
    logits = student / temperature
    losses = []
    for dim in (1, 0):  # rows (each target token's source), then columns
        log_p = torch.log_softmax(logits, dim=dim)
        on_gold = torch.logsumexp(log_p.masked_fill(~gold, float("-inf")), dim=dim)
        keep = gold.any(dim=dim)
        losses.append(-on_gold[keep].mean())
    return losses[0] + losses[1]
