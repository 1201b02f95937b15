"""Token log-probs, entropies and the exact reverse KL from a causal LM's logits.

Every loss in :mod:`scope_lib.losses` reads ``(B, T)`` token log-probs aligned with
``input_ids``: ``logp[:, t] = log p(input_ids[:, t] | input_ids[:, :t])`` and ``logp[:, 0] = 0``.
This module is where they come from, for the student (with gradients), the frozen reference and
the in-process teacher alike; the vLLM-protocol teacher returns the same alignment
(:mod:`scope_lib.teacher`). The functions divide logits by a `temperature` argument before
normalising. The trainer passes the student's `rollout.logprob_temperature` for pi_theta, pi_old,
the reference and the entropies ("sampling": the rollout temperature, as the authors' verl actor
divides by it; the `paper` and `smol` presets) and the teacher gets `teacher.logprob_temperature`
(1, as the authors' vLLM prompt log-probs); the default 1.0 for both is what the trainer computed
before these keys existed (docs/DESIGN.md §3). The float32 upcast is done a few rows at a time so that no float32
``(B, T, V)`` copy of the logits is ever held whole.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["TEACHER_LOGP_FLOOR", "full_reverse_kl", "position_ids_from_mask", "token_logprobs", "token_logprobs_from_logits"]



def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) position ids counting only real tokens, so left padding scores like no padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _chunk_logp_entropy(logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool):
    """(b, T-1, V) logits, (b, T-1) targets -> float32 log-prob of the targets [, entropy]."""
    scaled = logits.float() / temperature
    lse = torch.logsumexp(scaled, dim=-1)  # (b, T-1)
    logp = scaled.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logp
    probs = torch.softmax(scaled, dim=-1)
    entropy = lse - (probs * scaled).sum(-1)  # H = logsumexp(z) - E_p[z]
    return logp, entropy


def _check_temperature(temperature) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")


def token_logprobs_from_logits(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 8,
):
    """Token log-probs [, entropies] of ``input_ids`` from already computed logits.

    logits: (B, T, V) any float dtype, from a forward pass over ``input_ids`` (B, T). Same
    outputs, alignment and chunking as :func:`token_logprobs`; useful when the caller also needs
    the logits (e.g. for :func:`full_reverse_kl`).
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be 2-D (B, T), got shape {tuple(input_ids.shape)}")
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits must be (B, T, V) with (B, T) = {tuple(input_ids.shape)}, got {tuple(logits.shape)}")
    _check_temperature(temperature)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    batch, length = input_ids.shape
    targets = input_ids[:, 1:]
    logp_chunks, ent_chunks = [], []
    use_checkpoint = torch.is_grad_enabled() and logits.requires_grad
    for start in range(0, batch, chunk_size):
        rows = slice(start, start + chunk_size)
        args = (logits[rows, :-1], targets[rows], float(temperature), with_entropy)
        if use_checkpoint:
            # Recompute the float32 upcast in backward instead of storing it (memory at long T).
            res = checkpoint(_chunk_logp_entropy, *args, use_reentrant=False)
        else:
            res = _chunk_logp_entropy(*args)
        if with_entropy:
            logp_chunks.append(res[0])
            ent_chunks.append(res[1])
        else:
            logp_chunks.append(res)
    first = torch.zeros(batch, 1, dtype=torch.float32, device=logits.device)
    logp = torch.cat([first, torch.cat(logp_chunks, 0)], dim=1) if length > 1 else first[:, :length]
    if not with_entropy:
        return logp
    entropy = torch.cat([first, torch.cat(ent_chunks, 0)], dim=1) if length > 1 else first[:, :length]
    return logp, entropy


def token_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 8,
):
    """Token log-probs (and optionally entropies) of ``input_ids`` under a causal LM.

    model: a ``transformers`` causal LM or a peft wrapper of one (``model(...).logits`` is used).
    input_ids, attention_mask: (B, T) left-padded prompt + right-padded response.
    Position ids come from the attention mask (``cumsum - 1``), so left padding does not shift
    positions. Logits are divided by ``temperature`` (the sampling temperature, as verl does)
    before normalising.

    Returns ``logp`` (B, T) float32 with ``logp[:, t] = log p(input_ids[:, t] | input_ids[:, :t])``
    and ``logp[:, 0] = 0``; with ``with_entropy`` also ``entropy`` (B, T) float32, the entropy of
    the next-token distribution that predicted position t (``entropy[:, 0] = 0``). Values on
    padding positions are meaningless; multiply by a mask downstream.

    The float32 ``gather - logsumexp`` is computed ``chunk_size`` rows at a time; when a graph is
    being built each chunk is checkpointed, so no float32 (B, T, V) copy of the logits exists at
    once, neither in the forward pass nor saved for backward. Gradients flow through ``logp``.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be 2-D (B, T), got shape {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}"
        )
    _check_temperature(temperature)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    )
    return token_logprobs_from_logits(
        out.logits, input_ids, temperature=temperature, with_entropy=with_entropy, chunk_size=chunk_size
    )


# Teacher log-probs are read as at least this (nats). A teacher probability of exactly 0 (a -inf
# logit: a banned or masked token) at a token the student gives mass makes KL(p_S || p_T) +inf;
# clamped, it is a penalty of at most 100 nats per position whose gradient still pushes the
# student off that token. e^-100 is below float32's smallest normal number (1.2e-38), so the
# clamp changes nothing a float32 teacher distinguishes from 0 in probability.
TEACHER_LOGP_FLOOR = -100.0


def full_reverse_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """Exact per-position reverse KL ``KL(p_S || p_T)`` over the full vocabulary, (B, T).

    The small-vocabulary exact option, NOT the paper's estimator: Eq. 3 uses the single-sample
    log-ratio of the sampled token (:func:`opd_loss`). Useful for the tiny world and as a check.

    student_logits, teacher_logits: (B, T, V) raw logits from the same ``input_ids`` (equal
    vocabularies are required). Both are divided by ``temperature``. Aligned with the tokens:
    ``kl[:, t]`` is the KL of the distributions predicting token t, i.e. of logits at t-1;
    ``kl[:, 0] = 0``. Computed in float32 (float64 for float64 logits); differentiable w.r.t.
    ``student_logits`` only (the teacher is detached). Multiply by the response mask downstream.

    Zero probabilities (-inf logits): a token the student gives no mass contributes 0
    (``0 log 0 = 0``), whatever the teacher says, with zero gradient; the teacher's log-probs are
    clamped at ``TEACHER_LOGP_FLOOR``, so the KL is finite wherever the student has support and
    equals the plain formula wherever the teacher's log-probs are above the floor. A teacher row
    that is NaN (or all -inf) stays NaN: that is a broken teacher, not a rare token.
    """
    if student_logits.dim() != 3 or teacher_logits.shape != student_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must both be (B, T, V) with equal vocabularies, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    _check_temperature(temperature)
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    log_ps = F.log_softmax(student_logits[:, :-1].to(dtype) / temperature, dim=-1)  # (B, T-1, V)
    log_pt = F.log_softmax(teacher_logits[:, :-1].detach().to(dtype) / temperature, dim=-1)
    log_pt = log_pt.clamp(min=TEACHER_LOGP_FLOOR)
    # where, not a product with p_S = 0: -inf - (-inf) is NaN, and NaN * 0 is NaN in value and gradient.
    on_support = log_ps > -math.inf
    safe_log_ps = torch.where(on_support, log_ps, torch.zeros((), dtype=dtype, device=log_ps.device))
    kl = (log_ps.exp() * (safe_log_ps - log_pt)).sum(-1)  # (B, T-1); exp(-inf) = 0 exactly
    return torch.cat([kl.new_zeros(kl.shape[0], 1), kl], dim=1)
