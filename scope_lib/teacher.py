"""Teacher scoring backends: token log-probs of student rollouts under the teacher.

Two backends share one interface, `score(input_ids, attention_mask) -> (B, T)` token
log-probs aligned with `input_ids` (the project's convention: `logp[:, t]` scores token t
given the tokens before it; `logp[:, 0] = 0`):

- `LocalTeacher`: the teacher model in this process (tiny and smol scales, tests).
- `ServerTeacher`: a vLLM OpenAI-compatible server, scored the way the authors' code does
  (docs/DESIGN.md §3): a `/v1/completions` request whose prompt is the full token sequence,
  with `echo=True`, `max_tokens=1` and `logprobs`, so the server returns the prompt tokens'
  log-probs. `scope_lib.teacher_server` serves a local model through the same protocol.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
import urllib.error
import urllib.request
from typing import Protocol

import torch

from scope_lib.logprobs import _check_temperature, token_logprobs


class Teacher(Protocol):
    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...


def check_same_vocabulary(student_tokenizer, teacher_tokenizer, student_name: str, teacher_name: str) -> None:
    """Fail before any rollout when teacher and student would disagree on token ids."""
    student_vocab, teacher_vocab = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if student_vocab != teacher_vocab:
        only_student = len(set(student_vocab.items()) - set(teacher_vocab.items()))
        raise ValueError(
            f"teacher {teacher_name!r} and student {student_name!r} do not share a vocabulary "
            f"({len(teacher_vocab)} vs {len(student_vocab)} tokens, {only_student} student entries differ); "
            "token-level distillation needs identical token ids"
        )


class LocalTeacher:
    """The teacher model in this process, evaluated without gradients."""

    def __init__(self, model: torch.nn.Module, *, micro_batch_size: int = 64, temperature: float = 1.0):
        _check_temperature(temperature)
        self.model = model.eval()
        self.micro_batch_size = micro_batch_size
        self.temperature = float(temperature)  # logits are divided by it (the authors' teacher: 1)

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        chunks = []
        for start in range(0, input_ids.shape[0], self.micro_batch_size):
            ids = input_ids[start : start + self.micro_batch_size].to(device)
            mask = attention_mask[start : start + self.micro_batch_size].to(device)
            chunks.append(token_logprobs(self.model, ids, mask, temperature=self.temperature).float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(input_ids.shape, dtype=torch.float32)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Full next-token logits (B, T, V), for the exact full-vocabulary KL option."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits

    @torch.no_grad()
    def full_log_probs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token log-distributions (B, T, V) float32 on the CPU, and the token log-probs (B, T).

        One teacher pass for the exact KL: ``full[:, t]`` is the distribution of the token at
        t + 1 (aligned like logits) and ``token[:, t] = full[:, t - 1, input_ids[:, t]]``
        (``token[:, 0] = 0``), the same values as :meth:`score`.
        """
        device = next(self.model.parameters()).device
        fulls, tokens = [], []
        for start in range(0, input_ids.shape[0], self.micro_batch_size):
            ids = input_ids[start : start + self.micro_batch_size].to(device)
            mask = attention_mask[start : start + self.micro_batch_size].to(device)
            logits = self.logits(ids, mask).float()
            if self.temperature != 1.0:  # at 1 the very tensor as before (a copy would change rounding downstream)
                logits = logits / self.temperature
            full = torch.log_softmax(logits, dim=-1)
            token = full[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
            fulls.append(full.cpu())
            tokens.append(torch.cat([token.new_zeros(token.shape[0], 1), token], dim=1).cpu())
        return torch.cat(fulls), torch.cat(tokens)


class ServerTeacher:
    """Scores sequences with a vLLM (or compatible) OpenAI completions server.

    Each request carries `request_batch_size` prompts given as token-id lists; the server
    echoes them with `logprobs.token_logprobs` (the first entry is None: nothing conditions
    the first token). Padding is stripped before sending and restored after.

    Scoring is idempotent, so a request that fails on the way (connection refused, reset or
    dropped, a timeout, HTTP 408/429/502/503/504) is retried up to `retries` times with
    exponential backoff (`backoff_s` doubling, with jitter, at most 30 s per wait). Any other
    HTTP error is the request's fault and fails at once. Every error names the URL and, for an
    HTTP error, the server's own message. `api_key` (default: env SCOPE_TEACHER_API_KEY) is
    sent as a bearer token.
    """

    RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})

    def __init__(self, base_url: str, model: str, *, request_batch_size: int = 32, timeout: float = 600.0,
                 retries: int = 4, backoff_s: float = 0.5, api_key: str | None = None, temperature: float = 1.0):
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries: expected an integer >= 0, got {retries!r}")
        _check_temperature(temperature)
        if temperature != 1.0:
            # vLLM's echoed prompt log-probs are those of the raw logits; a server cannot be asked for others.
            raise ValueError(f"temperature: a scoring server returns log-probs at temperature 1 (the authors' "
                             f"teacher), got {temperature!r}; use the in-process LocalTeacher for another")
        self.temperature = 1.0
        self.url = base_url.rstrip("/") + "/v1/completions"
        self.model = model
        self.request_batch_size = request_batch_size
        self.timeout = timeout
        self.retries, self.backoff_s = retries, backoff_s
        self.api_key = api_key if api_key is not None else os.environ.get("SCOPE_TEACHER_API_KEY") or None
        self._jitter = random.Random()

    def _wait(self, attempt: int) -> None:
        time.sleep(min(30.0, self.backoff_s * 2**attempt) * self._jitter.uniform(0.5, 1.5))

    def _post(self, payload: dict) -> dict:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                with urllib.request.urlopen(urllib.request.Request(self.url, data=data, headers=headers),
                                            timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as error:
                message = _server_message(error)
                if error.code in self.RETRY_STATUSES and not last:
                    self._wait(attempt)
                    continue
                raise RuntimeError(f"teacher server {self.url} answered HTTP {error.code}: {message}") from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                # refused, reset, dropped (RemoteDisconnected) or timed out: worth another try
                reason = getattr(error, "reason", error)
                if not last:
                    self._wait(attempt)
                    continue
                raise RuntimeError(f"teacher server {self.url} failed after {attempt + 1} attempt(s): "
                                   f"{type(reason).__name__}: {reason}") from error
            try:
                return json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise RuntimeError(f"teacher server {self.url} answered with invalid JSON ({error})") from None
        raise AssertionError("unreachable")

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(input_ids.shape, dtype=torch.float32)
        rows = [input_ids[i][attention_mask[i].bool()].tolist() for i in range(input_ids.shape[0])]
        for start in range(0, len(rows), self.request_batch_size):
            batch = rows[start : start + self.request_batch_size]
            reply = self._post(
                {"model": self.model, "prompt": batch, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0.0}
            )
            choices = reply.get("choices") if isinstance(reply, dict) else None
            if not isinstance(choices, list) or len(choices) != len(batch):
                raise RuntimeError(f"teacher server {self.url} answered {len(choices) if isinstance(choices, list) else 'no'} "
                                   f"choices for {len(batch)} prompts")
            seen = set()
            for choice in choices:
                index = choice.get("index") if isinstance(choice, dict) else None
                if not isinstance(index, int) or not 0 <= index < len(batch) or index in seen:
                    raise RuntimeError(f"teacher server {self.url} answered a choice with index {index!r} for "
                                       f"{len(batch)} prompts")
                seen.add(index)
                i = start + index
                try:
                    token_logps = choice["logprobs"]["token_logprobs"][: len(rows[i])]
                    values = torch.tensor([0.0 if v is None else float(v) for v in token_logps])
                except (KeyError, TypeError, ValueError) as error:
                    raise RuntimeError(f"teacher server {self.url}: choice {index} has no numeric "
                                       f"logprobs.token_logprobs ({error})") from None
                if len(token_logps) != len(rows[i]):
                    raise RuntimeError(f"teacher server {self.url} echoed {len(token_logps)} log-probs for a "
                                       f"{len(rows[i])}-token sequence")
                positions = attention_mask[i].bool().nonzero().squeeze(-1)
                out[i, positions] = values
        return out


def _server_message(error: urllib.error.HTTPError) -> str:
    """The message of an OpenAI-style JSON error body, else the start of the body, else the reason."""
    try:
        body = error.read(4096).decode("utf-8", "replace")
    except OSError:
        body = ""
    try:
        detail = json.loads(body)["error"]
        return str(detail["message"] if isinstance(detail, dict) else detail)
    except (ValueError, KeyError, TypeError):
        return body.strip()[:300] or str(error.reason)
