"""The tiny world's teacher and student: Llama causal LMs built from a config and pretrained
by the project on ground-truth solutions, cached in `save_pretrained` format.

The teacher is pretrained to convergence under a cosine schedule. The student is smaller
and deliberately *unconverged*: it trains at a constant learning rate (after warm-up, no
anneal) and stops early. A prototype showed that a student converged under a schedule
annealed to zero has no headroom that minutes of fine-tuning (OPD or even supervised) can
fill; an early-stopped constant-lr student keeps its weakness in knowledge the teacher
has, which is the setting the paper studies. Measured (data/tiny_calibration.md, k=8, T=0.6):
teacher (4 layers x 128, 1.087M params, 1200 steps) Avg@8 0.88; student (4 x 96, 0.62M, 900
steps, the steep part of its learning curve) Avg@8 0.38, 0.62 -> 0.20 from chain2 to chain5.
These numbers depend on the CPU: an AMD EPYC machine built a teacher at Avg@16 0.76 and a
student at 0.16 (data/rebuild_2026-11-24), while an Intel Xeon machine with the same torch,
transformers, tokenizers and numpy versions rebuilt the committed world (data/run_2026-11-27).
Float kernels differ by CPU, and the early-stopped student is sensitive to small numerical
differences.
Each model pretrains on one torch thread, the two side by side on 2+ cores (`_build`). Build
time from nothing on a busy shared 2-core machine (load 4-6), one after the other: teacher
831 s, student 265 s; the weights were bit-identical to an earlier build (each is a fixed number
of optimiser steps on ~60-token sequences). `done.json` records each build's times.

Public: `ModelSpec`, `WorldConfig`, `TINY_WORLD`, `SMOKE_WORLD`, `build_tiny_world`,
`pretrain`, `TinyWorld`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from scope_lib.worlds import chain as tasks
from scope_lib.worlds.tokenizer import build_tokenizer, load_tokenizer
from scope_lib.common.progress import bar as tqdm
from scope_lib.common.progress import WorkerBars, wait_drawing, worker_initializer

_FORMAT_VERSION = 1  # bump when the task, tokenizer or training code changes what is built


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and supervised pretraining recipe of one tiny model (defaults: the teacher)."""

    layers: int = 4  # depth; >= 2 needed for the copy-the-next-operation (induction) pattern
    hidden: int = 128  # width; 128 gives ~1.1M params, enough for 2-digit arithmetic chains
    heads: int = 4  # head dim 32
    ffn: int = 512  # 4x hidden, the usual MLP ratio
    steps: int = 1200  # optimiser steps; the teacher reaches Avg@4 ~0.9 here
    batch_size: int = 32  # problems per step; small batches learn more per CPU-second here
    lr: float = 3e-3  # peak AdamW lr; tiny models tolerate a high lr with warm-up
    warmup: int = 60  # linear warm-up steps
    schedule: str = "cosine"  # "cosine" (anneal to min_lr_ratio*lr) or "constant" (no anneal)
    min_lr_ratio: float = 0.05  # floor of the cosine schedule
    weight_decay: float = 0.01  # as in the paper's fine-tuning
    tiers: tuple[int, ...] = tasks.TRAIN_TIERS  # operation counts seen in pretraining
    seed: int = 0  # init and data order

    def __post_init__(self):
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule: expected 'cosine' or 'constant', got {self.schedule!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden: expected a multiple of heads={self.heads}, got {self.hidden}")


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines the built tiny world (its hash keys the cache)."""

    vocab_size: int = 320  # byte-level BPE: 256 bytes + 3 specials + ~60 merges
    tokenizer_seed: int = 0  # corpus used to learn the merges
    max_positions: int = 128  # longest prompt + solution is ~100 tokens
    teacher: ModelSpec = field(default_factory=ModelSpec)
    # The student: narrower (0.62M params vs 1.09M) and stopped early at a constant lr, in the
    # middle of its learning curve, so minutes of further training (OPD or supervised) help.
    student: ModelSpec = field(default_factory=lambda: ModelSpec(
        hidden=96, ffn=384, steps=900, schedule="constant", seed=1,
    ))

    def key(self) -> str:
        blob = json.dumps({"v": _FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


TINY_WORLD = WorldConfig()
# A world that builds in a few seconds, for tests of other modules (its models are weak).
SMOKE_WORLD = WorldConfig(
    teacher=ModelSpec(layers=2, hidden=32, heads=2, ffn=64, steps=20, batch_size=16, warmup=5),
    student=ModelSpec(layers=1, hidden=32, heads=2, ffn=64, steps=10, batch_size=16, warmup=5,
                      schedule="constant", seed=1),
)


@dataclass
class TinyWorld:
    teacher: LlamaForCausalLM
    student: LlamaForCausalLM
    tokenizer: PreTrainedTokenizerFast
    config: WorldConfig
    path: Path  # cache folder holding teacher/, student/, tokenizer/


def make_model(spec: ModelSpec, tokenizer: PreTrainedTokenizerFast, max_positions: int) -> LlamaForCausalLM:
    """A freshly initialised Llama for `spec` (seeded by spec.seed)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.ffn,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,  # halves the (small) embedding cost and regularises
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def supervised_batch(problems, tokenizer, device="cpu"):
    """Right-padded prompt+solution+EOS batch; labels are -100 outside the solution.

    Returns input_ids, attention_mask, labels, each (B, T). Loss on solution tokens only.
    """
    pairs = [(tasks.format_prompt(p), tasks.format_target(p)) for p in problems]
    return tuple(t.to(device) for t in pair_batch(pairs, tokenizer))


def pair_batch(pairs: list[tuple[str, str]], tokenizer):
    """`supervised_batch` for (prompt, target) texts: input_ids, attention_mask, labels, (B, T) each."""
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=True)["input_ids"]
    targets = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
    seqs = [a + b + [tokenizer.eos_token_id] for a, b in zip(prompts, targets)]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (prompt, seq) in enumerate(zip(prompts, seqs)):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(prompt): len(seq)] = ids[i, len(prompt): len(seq)]
    return ids, mask, labels


def lr_at(step: int, spec: ModelSpec) -> float:
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    if spec.schedule == "constant":
        return spec.lr
    progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    floor = spec.min_lr_ratio
    return spec.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(model, tokenizer, spec: ModelSpec, *, progress: bool = True, desc: str = "pretrain",
             callback=None, position: int | None = None) -> list[float]:
    """Supervised pretraining on fresh ground-truth solutions; returns the loss per step.

    Deterministic given spec.seed (data from `worlds.chain.train_stream`, never an eval question).
    `callback(step, model)`, if given, runs after every optimiser step (e.g. checkpoints).
    """
    data = tasks.train_stream(spec.steps * spec.batch_size, seed=spec.seed, tiers=spec.tiers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay,
                                  betas=(0.9, 0.98))
    model.train()
    losses = []
    bar = tqdm(range(spec.steps), desc=desc, disable=not progress, mininterval=2, position=position)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, spec)
        chunk = data[step * spec.batch_size: (step + 1) * spec.batch_size]
        ids, mask, labels = supervised_batch(chunk, tokenizer)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if callback is not None:
            callback(step + 1, model)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCOPE_CACHE_DIR", Path.home() / ".cache" / "scope"))


def build_tiny_world(config: WorldConfig = TINY_WORLD, cache_dir=None, progress: bool = True) -> TinyWorld:
    """Build (or load from cache) the tokenizer, teacher and student of the tiny world.

    Cached under `<cache_dir>/tiny/<config hash>/` in save_pretrained format; a second call
    loads in about a second. cache_dir defaults to $SCOPE_CACHE_DIR or ~/.cache/scope.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / "tiny" / config.key()
    if not (path / "done.json").exists():
        _build(config, path, progress)
    return load_world_folder(path, config)


def load_world_folder(path: Path, config) -> TinyWorld:
    """The teacher, student and tokenizer saved in a built world folder (no checks)."""
    return TinyWorld(teacher=LlamaForCausalLM.from_pretrained(path / "teacher").eval(),
                     student=LlamaForCausalLM.from_pretrained(path / "student").eval(),
                     tokenizer=load_tokenizer(path / "tokenizer"), config=config, path=Path(path))


def _build(config: WorldConfig, path: Path, progress: bool) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tokenizer = build_tokenizer(config.vocab_size, seed=config.tokenizer_seed)
    tokenizer.save_pretrained(tmp / "tokenizer")
    record = {"config": dataclasses.asdict(config)}
    names = ("teacher", "student")
    # One torch thread per model, always: these matmuls are too small for two OpenMP threads to
    # pay (measured on 2 idle cores: a 2-thread teacher build had used 1,176 CPU-s in under 10 min
    # and was not done; the whole 1-thread teacher build takes 802 CPU-s), and a fixed thread
    # count keeps the weights independent of the core count (not of the CPU: see the module
    # docstring). The two models are seeded independently, so on 2+ cores they
    # pretrain side by side in two processes and the build takes about as long as the teacher
    # (smoke-sized worlds build in seconds, less than starting a process costs).
    start = time.time()
    if _available_cores() >= 2 and max(config.teacher.hidden, config.student.hidden) > 64:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
        # The builders' bars are drawn here, one line each (raw bars from two processes would
        # interleave their escape codes in a notebook's output).
        bars = WorkerBars(context, first_position=0, enabled=progress)
        try:
            with ProcessPoolExecutor(max_workers=len(names), mp_context=context, initializer=worker_initializer,
                                     initargs=bars.initargs()) as pool:
                futures = {name: pool.submit(_build_model, config, name, tmp, progress, position)
                           for position, name in enumerate(names)}
                wait_drawing(futures.values(), bars)
                record.update({name: future.result() for name, future in futures.items()})
        finally:
            bars.close()
    else:
        record.update({name: _build_model(config, name, tmp, progress, 0) for name in names})
    record["build_seconds"] = round(time.time() - start, 1)
    (tmp / "done.json").write_text(json.dumps(record, indent=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(path)  # atomic publish: a concurrent builder never sees half a world
    except OSError:
        if not (path / "done.json").exists():
            raise


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _build_model(config: WorldConfig, name: str, tmp: Path, progress: bool, position: int) -> dict:
    """Pretrain one model of the world on one torch thread and save it to `tmp / name`; its record."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = getattr(config, name)
        tokenizer = load_tokenizer(tmp / "tokenizer")
        model = make_model(spec, tokenizer, config.max_positions)
        start, cpu_start = time.time(), time.process_time()
        losses = pretrain(model, tokenizer, spec, progress=progress, desc=f"pretrain {name}", position=position)
        model.save_pretrained(tmp / name)
        # Wall seconds depend on what else the machine runs; CPU seconds are what the model
        # costs on an idle core.
        return {"seconds": round(time.time() - start, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1),
                "threads": 1, "final_loss": losses[-1], "params": sum(p.numel() for p in model.parameters())}
    finally:
        torch.set_num_threads(threads)
