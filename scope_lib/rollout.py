"""Rollout generation with Hugging Face `generate`, in the project's batch layout.

Layout (shared by every module): `input_ids` (N, P + R) is the left-padded prompt (width P,
the longest prompt) followed by the right-padded response (width R, the longest response).
`attention_mask` is 1 on real prompt and response tokens; `response_mask` is 1 exactly on
generated tokens, including the EOS when one was generated; tokens after EOS are padding.
Rows of one prompt are adjacent: row `i` belongs to prompt `group[i]`.

`Sampling` holds how text is sampled (temperature, top-p, top-k, completion budget, repetition
penalty, generation batch size); every caller that generates text passes one. Sampling is
seeded per generate call from `seed` inside `torch.random.fork_rng`, so a call
is reproducible and leaves the caller's global RNG untouched.

Decoding runs the project's own loop (`_decode`) over the model's KV cache: it drops rows
from the batch (and their cache) as soon as they emit EOS, so a batch costs what its rows
need rather than what its longest row needs, and it skips `generate`'s per-token machinery.
`bench/step_speed.py` measures it against `model.generate` side by side. Sampling follows
`generate`'s order (temperature, then top-k, then top-p); a repetition penalty, which the
loop does not implement, falls back to `model.generate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import inspect

import torch


@dataclass(frozen=True)
class Sampling:
    """How text is sampled (`generate_rollouts`, `evaluate.evaluate`, `pipeline.score_rollouts`,
    `recovery.recovery_study`); temperature 0 is greedy."""

    temperature: float
    max_new_tokens: int
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    batch_size: int = 256  # sequences decoded together (one generation batch)

    @classmethod
    def from_config(cls, section, **overrides) -> Sampling:
        """The settings of a config section that has them: `rollout` (`config.RolloutConfig`, the
        training rollouts) or `eval` (`config.EvalConfig`), with `overrides` (field=value) on top."""
        settings = dict(temperature=section.temperature, max_new_tokens=section.max_new_tokens,
                        top_p=section.top_p, top_k=section.top_k,
                        repetition_penalty=section.repetition_penalty, batch_size=section.batch_size)
        return cls(**{**settings, **overrides})

    def kwargs(self) -> dict:
        """The settings as keywords (a sampler with `generate_rollouts`' old keywords, e.g.
        `VLLMEngine.generate`)."""
        return dict(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                    max_new_tokens=self.max_new_tokens, repetition_penalty=self.repetition_penalty,
                    batch_size=self.batch_size)


@dataclass
class RolloutBatch:
    input_ids: torch.Tensor  # (N, P + R) long
    attention_mask: torch.Tensor  # (N, P + R) long
    response_mask: torch.Tensor  # (N, P + R) long, 1 on generated tokens (EOS included)
    group: torch.Tensor  # (N,) long, prompt index of each row; rows of a prompt adjacent
    texts: list[str]  # decoded responses (special tokens dropped)
    response_lengths: torch.Tensor  # (N,) long, generated tokens per row (EOS included)
    prompt_width: int  # P: responses start at column P

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def assemble(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Place token lists into the layout: prompt left-padded to P, response right-padded to R.

    Returns input_ids, attention_mask, response_mask, each (N, P + R).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"responses: expected {len(prompts)} rows like prompts, got {len(responses)}")
    width_p = max(map(len, prompts))
    width_r = max(1, max(map(len, responses)))
    n = len(prompts)
    ids = torch.full((n, width_p + width_r), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response_mask = torch.zeros_like(ids)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, width_p - len(p): width_p] = torch.tensor(p, dtype=torch.long)
        attention[i, width_p - len(p): width_p] = 1
        if r:
            ids[i, width_p: width_p + len(r)] = torch.tensor(r, dtype=torch.long)
            attention[i, width_p: width_p + len(r)] = 1
            response_mask[i, width_p: width_p + len(r)] = 1
    return {"input_ids": ids, "attention_mask": attention, "response_mask": response_mask}


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], *, add_eos: bool = True) -> dict[str, torch.Tensor]:
    """Tokenize (prompt, response) text pairs into the rollout layout (e.g. SFT or KD data).

    The prompt gets the tokenizer's special tokens (BOS); the response gets EOS appended
    (counted in response_mask) when `add_eos`.
    """
    if not pairs:
        raise ValueError("pairs: expected at least one (prompt, response) pair")
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=True)["input_ids"]
    responses = tokenizer([r for _, r in pairs], add_special_tokens=False)["input_ids"]
    if add_eos:
        responses = [r + [tokenizer.eos_token_id] for r in responses]
    return assemble(prompts, responses, tokenizer.pad_token_id)


def filter_logits(logits: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf the logits outside the top-k and outside the top-p nucleus (rows of (B, V)).

    Same rule as `transformers`' TopK/TopP warpers: top-k keeps ties of the k-th value; top-p
    keeps the smallest set of most likely tokens whose probability reaches `top_p`, always at
    least the most likely token.
    """
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative <= 1 - top_p
        drop_sorted[..., -1] = False  # keep the most likely token
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits


@torch.no_grad()
def _decode(model, ids: torch.Tensor, mask: torch.Tensor, *, max_new_tokens: int, temperature: float,
            top_p: float, top_k: int, eos_id: int, sampler_logps: list[list[float]] | None = None,
            on_rows_done: Callable[[list[int]], None] | None = None,
            rows_out: list[list[int]] | None = None) -> list[list[int]]:
    """Sample up to `max_new_tokens` per row of a left-padded batch; a row stops after its EOS.

    Finished rows leave the batch and the KV cache at once. Returns each row's tokens (EOS
    included when one was sampled). `sampler_logps`, when given (an empty list), receives per
    row the log-prob of each sampled token under the sampling distribution before top-k/top-p,
    softmax(logits / temperature) (what the trainer's `rollout.logprob_temperature: sampling`
    recomputes as pi_old). `on_rows_done(rows)`, when given, is called with the rows whose tokens
    are final as soon as they are (after the step that sampled their EOS; the rest at the end),
    so that they can be graded while the others decode; it changes nothing that is sampled.
    """
    from transformers import DynamicCache

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrappers pass kwargs on
    accepted = inspect.signature(type(base).forward).parameters
    cache_kw = "cache" if "cache" in accepted else "past_key_values"  # renamed in transformers 5.x
    extra = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
    n = ids.shape[0]
    out: list[list[int]] = [[] for _ in range(n)]
    if rows_out is not None:  # the caller sees each row's tokens as they grow (on_rows_done reads them)
        rows_out.extend(out)
        out = rows_out
    if sampler_logps is not None:
        sampler_logps.extend([] for _ in range(n))
    alive = torch.arange(n, device=ids.device)  # original row of each row still in the batch
    positions = mask.long().sum(-1, keepdim=True)  # next position id of each row
    cache = DynamicCache()
    logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.long().cumsum(-1) - 1).clamp(min=0),
                   use_cache=True, **{cache_kw: cache}, **extra).logits[:, -1].float()
    for step in range(max_new_tokens):
        if temperature > 0:
            probs = filter_logits(logits / temperature, top_k=top_k, top_p=top_p).softmax(-1)
            tokens = torch.multinomial(probs, 1).squeeze(-1)
        else:
            tokens = logits.argmax(-1)
        for row, token in zip(alive.tolist(), tokens.tolist()):
            out[row].append(token)
        if sampler_logps is not None:
            scaled = logits / temperature if temperature > 0 else logits
            chosen = torch.log_softmax(scaled, -1).gather(-1, tokens[:, None]).squeeze(-1)
            for row, value in zip(alive.tolist(), chosen.tolist()):
                sampler_logps[row].append(value)
        keep = (tokens != eos_id).nonzero().squeeze(-1)
        if keep.numel() == 0 or step == max_new_tokens - 1:
            if on_rows_done is not None:
                on_rows_done(alive.tolist())
            break
        if on_rows_done is not None and keep.numel() < alive.numel():
            finished = torch.ones(alive.numel(), dtype=torch.bool, device=alive.device)
            finished[keep] = False
            on_rows_done(alive[finished].tolist())
        if keep.numel() < alive.numel():
            alive, tokens, mask, positions = alive[keep], tokens[keep], mask[keep], positions[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                       use_cache=True, **{cache_kw: cache}, **extra).logits[:, -1].float()
        positions = positions + 1
    return out


def _cut_at_eos(row: list[int], eos_id: int) -> list[int]:
    return row[: row.index(eos_id) + 1] if eos_id in row else row


@torch.no_grad()
def generate_rollouts(model, tokenizer, prompts: list[str], *, num_samples: int, sampling: Sampling, seed: int = 0,
                      use_generate: bool = False) -> RolloutBatch:
    """Sample `num_samples` responses per prompt as `sampling` says; temperature 0 means greedy.

    `sampling.batch_size` is the number of sequences decoded together. Responses stop at EOS or
    after `sampling.max_new_tokens` (then they have no EOS). `use_generate` decodes with
    `model.generate` instead of the project's loop (a repetition penalty always does).
    Returns a RolloutBatch on the CPU.
    """
    batches = generation_batches(model, tokenizer, prompts, num_samples=num_samples, sampling=sampling, seed=seed,
                                 use_generate=use_generate)
    while True:
        try:
            next(batches)
        except StopIteration as done:
            return done.value


@torch.no_grad()
def generation_batches(model, tokenizer, prompts: list[str], *, num_samples: int, sampling: Sampling, seed: int = 0,
                       use_generate: bool = False,
                       on_rows_done: Callable[[int, list[int], list[list[int]]], None] | None = None):
    """`generate_rollouts`, one generation batch at a time (the trainer's overlapped scoring).

    Yields ``(start, prompt_token_lists, responses)`` per batch of `sampling.batch_size` rows as
    soon as it is decoded (rows ``start .. start + len(responses)``), then returns (StopIteration.value)
    the RolloutBatch of all rows. Each batch is seeded from `seed` and its first row, so the
    result does not depend on how the batches are consumed. `on_rows_done(start, rows, tokens)`,
    when given, receives rows of a batch (their indices in it, and their response tokens) as soon
    as they are final, before the batch is yielded (all at once under `model.generate`).
    """
    if not isinstance(sampling, Sampling):
        raise ValueError(f"sampling: expected a rollout.Sampling, got {type(sampling).__name__}")
    temperature, top_p, top_k = sampling.temperature, sampling.top_p, sampling.top_k
    max_new_tokens, repetition_penalty, batch_size = sampling.max_new_tokens, sampling.repetition_penalty, sampling.batch_size
    if num_samples < 1:
        raise ValueError(f"num_samples: expected >= 1, got {num_samples}")
    if temperature < 0:
        raise ValueError(f"temperature: expected >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p: expected in (0, 1], got {top_p}")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens: expected >= 1, got {batch_size}, {max_new_tokens}")
    if not prompts:
        raise ValueError("prompts: expected at least one prompt")
    device = next(model.parameters()).device
    encoded = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    rows = [(g, encoded[g]) for g in range(len(prompts)) for _ in range(num_samples)]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    generate_kw = dict(do_sample=temperature > 0, max_new_tokens=max_new_tokens, eos_token_id=eos,
                       pad_token_id=pad, repetition_penalty=repetition_penalty)
    if temperature > 0:
        generate_kw.update(temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else None)
    was_training = model.training
    model.eval()
    responses: list[list[int]] = []
    for start in range(0, len(rows), batch_size):
        chunk = [ids for _, ids in rows[start: start + batch_size]]
        batch = assemble(chunk, [[]] * len(chunk), pad)
        width = max(map(len, chunk))
        ids = batch["input_ids"][:, :width].to(device)
        mask = batch["attention_mask"][:, :width].to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed * 1_000_003 + start)
            if repetition_penalty == 1.0 and not use_generate:
                done = None
                if on_rows_done is not None:
                    def done(rows, start=start):  # noqa: E306 - the rows' token lists are final
                        on_rows_done(start, rows, [new_rows[r] for r in rows])
                new_rows: list[list[int]] = []
                new = _decode(model, ids, mask, max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, top_k=top_k, eos_id=eos, on_rows_done=done, rows_out=new_rows)
            else:
                out = model.generate(input_ids=ids, attention_mask=mask, **generate_kw)
                new = [_cut_at_eos(r, eos) for r in out[:, width:].tolist()]
                if on_rows_done is not None:
                    on_rows_done(start, list(range(len(new))), new)
        responses.extend(new)
        yield start, chunk, new
    model.train(was_training)
    batch = assemble([ids for _, ids in rows], responses, pad)
    return RolloutBatch(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
        response_mask=batch["response_mask"],
        group=torch.tensor([g for g, _ in rows], dtype=torch.long),
        texts=tokenizer.batch_decode(responses, skip_special_tokens=True),
        response_lengths=torch.tensor([len(r) for r in responses], dtype=torch.long),
        prompt_width=max(len(ids) for _, ids in rows),
    )
