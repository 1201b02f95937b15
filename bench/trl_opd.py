"""TRL's on-policy distillation beside the project's OPD on the tiny world: time per step and KL.

    nice -n 5 python bench/trl_opd.py [--steps 30] [--seeds 0 1 2] [--trainers gkd distillation] [--out DIR]

Needs the bench extra (`pip install -e .[bench]`, TRL); TRL is never a core dependency.

Both sides train a fresh copy of the `tiny` world's student against its teacher, in one process
on one torch thread, with the project's `opd` preset (`experiment_config("tiny", "opd", seed)`):

- the project: `scope_lib.trainer.Trainer` with method `opd`, one `collect()` + `update()` per
  step (the body of its training loop, without the per-step metrics file and weight records);
- TRL: `GKDTrainer` (`trl.experimental.gkd` in TRL >= 1.x, `trl` before) with `lmbda=1.0`
  (every batch is sampled from the student: fully on-policy) and `beta=1.0`, which in
  `GKDTrainer.generalized_jsd_loss` is `F.kl_div(teacher_logp, student_logp, log_target=True)`
  = sum_v p_S (log p_S - log p_T) = KL(student || teacher), the reverse KL (beta=0 is the
  forward KL(teacher || student)); `tests/test_bench_trl.py` checks this against a float64 sum;
- TRL: `DistillationTrainer` (`trl`, TRL >= 1.x), which GKDTrainer's own warning names as covering
  exactly this configuration (lmbda = 1, T = 1): always on-policy, `beta=1.0` = reverse KL, the
  full-vocabulary divergence computed in chunks from the hidden states and the `lm_head`.

Each TRL trainer runs beside its own fresh project trainer (`--trainers gkd distillation`); the
project's runs are deterministic, so the two project runs are the same run twice.

What is the same on both sides: the prompts of every step, in the same order (the project's
seeded walk of its training pool; TRL reads them from a `datasets.Dataset` with the sequential
sampler, or `shuffle_dataset=False`; DistillationTrainer then shuffles the rows *within* each
batch, and the bench checks every TRL batch against the project's prompt ids of that step),
`prompts_per_step` prompts and one completion per prompt (G = 1, Table 3),
`max_new_tokens`, temperature 1.0 with no top-k/top-p, the optimiser (one `torch.optim.AdamW`
over all parameters with the preset's lr, betas, eps and weight decay, the same linear warm-up
`LambdaLR`, built by `make_optimizer` for both), gradient clipping at `optim.grad_clip`, no
gradient accumulation, float32, CPU.

What differs, by design of each side (the record lists them):
- the loss reduction: the project's OPD averages the exact per-token KL over each sequence, then
  over sequences; both TRL trainers sum it over all completion tokens of the batch and divide by
  their count;
- GKDTrainer's loss normaliser: the Trainer counts `labels != -100` in the *collated* batch before
  generation; a prompt-only dataset has none, which makes TRL divide by 0 (inf loss). The bench
  sets `trainer.model_accepts_loss_kwargs = False`, so GKD falls back to its own token mean over
  the generated completions (the documented `batchmean` path);
- decoding: TRL calls `model.generate`; the project uses its own KV-cache loop that drops finished
  rows (`scope_lib.rollout`); the sampled distribution is the same, the random draws are not;
- GKDTrainer's forward passes give no position ids (positions count left padding); the project's count
  real tokens. With Llama's rotary embeddings a shift common to a row's tokens changes no attention
  score, so this changes nothing but float rounding;
- the teacher: TRL runs it inside `compute_loss`; the project scores in `collect()` and keeps its
  full log-probs for the update. Either way one no-grad teacher pass per step.

Timing: the two sides are interleaved step by step (a TRL callback runs one project step at each
TRL `on_step_begin`), so machine load hits both alike. A TRL step is timed from the end of one
project step to the start of the next (the whole Trainer iteration: its training step, clipping,
optimiser and scheduler step, callbacks, the next batch's collation), and also from `on_step_begin`
to `on_step_end` (training step, clipping, optimiser step). Medians skip `--warmup` steps.

KL: after the same number of steps, each trained student (and the untrained one) samples
`--kl-samples` completions at temperature 1.0 for each of `--kl-prompts` held-out prompts (the
tiny eval sets, chain2..chain5, in turn), and `reverse_kl_to_teacher` averages the exact
full-vocabulary KL(student || teacher) (`scope_lib.logprobs.full_reverse_kl`) over all
completion tokens, one function for all three.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Offline, quiet: TRL's trainers ping the hub's telemetry on start unless told not to.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from scope_lib.common.machine import cpu_model  # noqa: E402


def gkd_classes():
    """(GKDConfig, GKDTrainer) from the installed TRL: `trl.experimental.gkd` (1.x) or `trl` (0.x)."""
    try:
        from trl.experimental.gkd import GKDConfig, GKDTrainer
    except ImportError:
        from trl import GKDConfig, GKDTrainer
    return GKDConfig, GKDTrainer


def project_config(seed: int, steps: int, output_dir: str):
    """The project's OPD preset at tiny scale (G = 1, exact KL), for `steps` steps, no checkpoints."""
    from scope_lib.experiments.grid import experiment_config

    return experiment_config("tiny", "opd", seed, steps=steps, output_dir=output_dir, progress=False,
                             checkpoint_every=0)


def step_prompts(trainer, steps: int) -> list[str]:
    """The prompt texts the project's trainer uses in steps 0..steps-1, in order."""
    return [trainer.world.format_prompt(p) for step in range(steps) for p in trainer._step_problems(step)]


def prompt_dataset(tokenizer, prompts: list[str]):
    """A `datasets.Dataset` TRL's ChatML collator reads as prompt-only rows.

    `input_ids` are the prompts tokenized exactly as the project's rollouts tokenize them (BOS
    first); `completion_mask` of zeros tells the collator the whole row is prompt, so its
    `prompts` are these ids and no token is a label (the tiny tokenizer has no chat template).
    """
    from datasets import Dataset

    ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    return Dataset.from_dict({"prompt": list(prompts), "input_ids": ids,
                              "completion_mask": [[0] * len(row) for row in ids]})


def make_optimizer(model, cfg):
    """The project trainer's optimiser and schedule (`Trainer.__init__`), for either side."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.adam_eps,
                                  weight_decay=cfg.optim.weight_decay)
    warmup = cfg.optim.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    return optimizer, scheduler


def gkd_config(cfg, steps: int, output_dir: str):
    """GKDConfig matching the project's OPD config: fully on-policy, reverse KL, same batch and lengths."""
    GKDConfig, _ = gkd_classes()
    o, r = cfg.optim, cfg.rollout
    return GKDConfig(
        output_dir=output_dir,
        lmbda=1.0,  # always sample from the student: fully on-policy
        beta=1.0,  # generalized JSD at beta = 1: KL(student || teacher)
        temperature=r.temperature,
        max_new_tokens=r.max_new_tokens,
        max_steps=steps,
        per_device_train_batch_size=o.prompts_per_step,  # prompts per step, one completion each (G = 1)
        gradient_accumulation_steps=1,
        # Informational only (the optimiser and scheduler are passed in, built by make_optimizer):
        learning_rate=o.lr, adam_beta1=o.betas[0], adam_beta2=o.betas[1], adam_epsilon=o.adam_eps,
        weight_decay=o.weight_decay, warmup_steps=o.warmup_steps,
        max_grad_norm=o.grad_clip,
        gradient_checkpointing=False,  # SFTConfig's default is True; the project does not checkpoint the model
        train_sampling_strategy="sequential",  # the dataset is already in the project's order
        seed=cfg.seed,
        use_cpu=True, bf16=False, fp16=False,
        report_to="none", save_strategy="no", eval_strategy="no",
        logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0,
        max_length=None,  # no truncation of the short tiny prompts
    )


def build_gkd_trainer(student, teacher, tokenizer, prompts: list[str], cfg, steps: int, output_dir: str,
                      callbacks=()):
    """TRL's GKDTrainer on `prompts` with the project's optimiser; returns (trainer, optimizer)."""
    _, GKDTrainer = gkd_classes()
    args = gkd_config(cfg, steps, output_dir)
    optimizer, scheduler = make_optimizer(student, cfg)
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=args,
                         train_dataset=prompt_dataset(tokenizer, prompts), processing_class=tokenizer,
                         optimizers=(optimizer, scheduler), callbacks=list(callbacks))
    # The Trainer would divide GKD's summed loss by the label count of the collated (prompt-only)
    # batch, which is 0; without it GKD divides by the generated completion tokens it masks.
    trainer.model_accepts_loss_kwargs = False
    return trainer, optimizer


def settings_of_both(project_trainer, gkd_trainer, gkd_optimizer, steps: int) -> dict:
    """What each side will do, side by side, in the same keys (the record's table; the test compares them).

    `gkd_trainer` is either TRL trainer (GKDTrainer or DistillationTrainer) with its optimiser."""
    cfg, args = project_trainer.cfg, gkd_trainer.args
    gen = gkd_trainer.generation_config

    def optim(opt):
        group = opt.param_groups[0]
        return {"type": type(opt).__name__, "lr": group.get("initial_lr", group["lr"]), "betas": tuple(group["betas"]),
                "eps": group["eps"], "weight_decay": group["weight_decay"],
                "n_params": sum(p.numel() for g in opt.param_groups for p in g["params"])}

    def lr_schedule(scheduler, n):
        return [f(i) for i in range(n) for f in scheduler.lr_lambdas]

    dataset = gkd_trainer.train_dataset
    return {
        "project": {
            "prompts": step_prompts(project_trainer, steps),
            "completions_per_prompt": cfg.rollout.group_size,
            "prompts_per_step": cfg.optim.prompts_per_step,
            "max_new_tokens": cfg.rollout.max_new_tokens,
            "temperature": cfg.rollout.temperature, "top_k": cfg.rollout.top_k, "top_p": cfg.rollout.top_p,
            "optimizer": optim(project_trainer.optimizer),
            "lr_factor": lr_schedule(project_trainer.scheduler, steps),
            "grad_clip": cfg.optim.grad_clip, "steps": steps,
            "divergence": f"exact reverse KL (scope.kl_estimator={cfg.scope.kl_estimator})",
        },
        "trl": {
            "prompts": list(dataset["prompt"]),
            "completions_per_prompt": 1,
            "prompts_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps,
            "max_new_tokens": gen.max_new_tokens,
            "temperature": gen.temperature, "top_k": gen.top_k, "top_p": gen.top_p,
            "optimizer": optim(gkd_optimizer),
            "lr_factor": lr_schedule(gkd_trainer.lr_scheduler, steps),
            "grad_clip": args.max_grad_norm, "steps": args.max_steps,
            "divergence": f"generalized JSD, beta={gkd_trainer.beta}"
                          + (f", lmbda={gkd_trainer.lmbda}" if hasattr(gkd_trainer, "lmbda") else ", always on-policy"),
        },
    }


@torch.no_grad()
def reverse_kl_to_teacher(student, teacher, tokenizer, prompts: list[str], *, samples: int, max_new_tokens: int,
                          seed: int, temperature: float = 1.0) -> dict:
    """Mean per-token KL(student || teacher) over `samples` student completions of each prompt.

    Completions are sampled from `student` at `temperature` (the project's decoding loop, seeded);
    the KL at each completion token (EOS included) is the exact full-vocabulary one of
    `scope_lib.logprobs.full_reverse_kl` on the two models' logits at temperature 1. Returns the
    token mean (`kl`), the mean over sequences of each sequence's token mean (`kl_seq`), the token
    and sequence counts, and each completion's text and prompt index (`texts`, `group`, to grade).
    """
    from scope_lib.logprobs import full_reverse_kl, position_ids_from_mask
    from scope_lib.rollout import Sampling, generate_rollouts

    was_training = student.training
    student.eval()
    batch = generate_rollouts(student, tokenizer, prompts, num_samples=samples,
                              sampling=Sampling(temperature=temperature, max_new_tokens=max_new_tokens), seed=seed)
    ids, att = batch.input_ids, batch.attention_mask
    pos = position_ids_from_mask(att)
    kl = full_reverse_kl(student(input_ids=ids, attention_mask=att, position_ids=pos).logits,
                         teacher(input_ids=ids, attention_mask=att, position_ids=pos).logits)
    mask = batch.response_mask.to(kl.dtype)
    per_seq = (kl * mask).sum(1) / mask.sum(1).clamp(min=1)
    student.train(was_training)
    return {"kl": float((kl * mask).sum() / mask.sum()), "kl_seq": float(per_seq.mean()),
            "tokens": int(mask.sum()), "sequences": len(batch), "texts": batch.texts, "group": batch.group.tolist()}


def _accuracy(texts, group, problems) -> float:
    from scope_lib.verify import grade_batch

    return float(sum(grade_batch(texts, [problems[g].answer for g in group])) / len(texts))


def heldout_problems(world, n: int) -> list:
    """`n` held-out problems, taken in turn from the tiny eval sets (chain2, chain3, ...)."""
    sets = list(world.eval_sets.values())
    out = [s[i] for i in range(max(map(len, sets))) for s in sets if i < len(s)]
    return out[:n]


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "datasets", "accelerate", "tokenizers"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def build_distillation_trainer(student, teacher, tokenizer, prompts: list[str], cfg, steps: int, output_dir: str,
                               callbacks=()):
    """TRL's `DistillationTrainer` (what GKDTrainer's warning points to at lmbda = 1, T = 1) set up the same way.

    Always on-policy; `beta=1.0` is the reverse KL (chunked over the vocabulary, token mean over the
    completions it generated). Plain-text prompts are tokenized by `processing_class` (BOS first, as
    the project's rollouts); `shuffle_dataset=False` keeps the project's order. Returns (trainer, optimizer).
    """
    from datasets import Dataset
    from trl import DistillationConfig, DistillationTrainer

    o, r = cfg.optim, cfg.rollout
    args = DistillationConfig(
        output_dir=output_dir, beta=1.0, temperature=r.temperature, top_k=0, top_p=1.0,
        max_completion_length=r.max_new_tokens, max_steps=steps,
        per_device_train_batch_size=o.prompts_per_step, gradient_accumulation_steps=1,
        learning_rate=o.lr, adam_beta1=o.betas[0], adam_beta2=o.betas[1], adam_epsilon=o.adam_eps,
        weight_decay=o.weight_decay, warmup_steps=o.warmup_steps, max_grad_norm=o.grad_clip,
        gradient_checkpointing=False, shuffle_dataset=False, disable_dropout=True, seed=cfg.seed,
        use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no", eval_strategy="no",
        logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )
    optimizer, scheduler = make_optimizer(student, cfg)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args,
                                  train_dataset=Dataset.from_dict({"prompt": list(prompts)}),
                                  processing_class=tokenizer, optimizers=(optimizer, scheduler), callbacks=list(callbacks))
    return trainer, optimizer


TRL_SIDES = {"gkd": ("GKDTrainer", build_gkd_trainer), "distillation": ("DistillationTrainer", build_distillation_trainer)}


def _batch_prompt_ids(inputs) -> list[list[int]]:
    """The prompt token ids (padding dropped) of a TRL training batch, either trainer's layout."""
    ids, mask = (inputs["prompts"], inputs["prompt_attention_mask"]) if "prompts" in inputs else \
        (inputs["prompt_ids"], inputs["prompt_mask"])
    return [row[m.bool()].tolist() for row, m in zip(ids, mask)]


def run_side(kind: str, cfg, steps: int, tmp: str) -> dict:
    """One TRL trainer and a fresh project trainer, `steps` steps each, interleaved step by step.

    Returns the per-step seconds, per-step training stats, whether every TRL batch held the project's
    prompt ids of that step, the settings of both, and both trained students.
    """
    from transformers import TrainerCallback

    from scope_lib.trainer import Timer, Trainer
    from scope_lib.world import WorldSpec, load_world

    project = Trainer(cfg)  # its own student and teacher, loaded from the built tiny world
    world = load_world(WorldSpec.from_config(cfg), train_seed=cfg.seed)  # fresh copies of the same student and teacher for TRL
    tokenizer = world.tokenizer
    prompts = step_prompts(project, steps)
    per_step = cfg.optim.prompts_per_step
    expected_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    timings = {"project": [], "trl_iteration": [], "trl_step": []}
    project_stats, trl_stats = [], []
    marks: dict[str, float] = {}

    class Interleave(TrainerCallback):
        """At each TRL step's start: close the previous TRL iteration's clock, run one project step."""

        def on_step_begin(self, _args, state, control, **kwargs):
            now = time.perf_counter()
            if "leave" in marks:
                timings["trl_iteration"].append(now - marks["leave"])
            step = len(timings["project"])
            timer = Timer()
            with timer("step"):
                batch, stats = project.collect(step, timer)
                for key, value in project.update(batch, timer).items():
                    stats.setdefault(key, value)
            timings["project"].append(timer.seconds["step"])
            project_stats.append({k: stats[k] for k in ("opd_loss", "kl_to_teacher", "response_length",
                                                       "accuracy", "grad_norm", "lr") if k in stats})
            if torch.get_num_threads() != 1:
                raise RuntimeError(f"expected 1 torch thread, got {torch.get_num_threads()}")
            marks["leave"] = marks["begin"] = time.perf_counter()

        def on_step_end(self, _args, state, control, **kwargs):
            timings["trl_step"].append(time.perf_counter() - marks["begin"])

        def on_train_end(self, _args, state, control, **kwargs):
            timings["trl_iteration"].append(time.perf_counter() - marks["leave"])

    name, build = TRL_SIDES[kind]
    trl, optimizer = build(world.student, world.teacher, tokenizer, prompts, cfg, steps, str(Path(tmp) / kind),
                           callbacks=[Interleave()])
    settings = settings_of_both(project, trl, optimizer, steps)
    original_loss = trl.compute_loss

    def recorded_loss(model, inputs, *a, **k):  # per-step loss, completion length and prompts, for the record
        loss = original_loss(model, inputs, *a, **k)
        value = loss[0] if isinstance(loss, tuple) else loss
        step = len(trl_stats)
        if "labels" in inputs:
            length = float((inputs["labels"] != -100).sum() / len(inputs["labels"]))
        else:
            length = float(inputs["completion_mask"].sum() / len(inputs["completion_mask"]))
        trl_stats.append({"loss": float(value.detach()), "response_length": length,
                          "same_prompt_ids": sorted(_batch_prompt_ids(inputs))  # DistillationTrainer shuffles rows within a batch
                          == sorted(expected_ids[step * per_step:(step + 1) * per_step])})
        return loss

    trl.compute_loss = recorded_loss
    start = time.perf_counter()
    trl.train()
    wall = time.perf_counter() - start
    if len(timings["project"]) != steps or len(timings["trl_step"]) != steps or len(trl_stats) != steps:
        raise RuntimeError(f"{name}: expected {steps} steps on each side, got project {len(timings['project'])}, "
                           f"TRL {len(timings['trl_step'])} ({len(trl_stats)} losses)")
    settings["trl"]["trainer"] = f"trl.{type(trl).__module__.removeprefix('trl.')}.{name}"
    return {"trainer": name, "timings": timings, "train_project": project_stats, "train_trl": trl_stats,
            "settings": settings, "wall_seconds_both": wall, "project_student": project.student,
            "trl_student": trl.model, "world": project.world}


def run_seed(seed: int, args) -> dict:
    """The untrained student's KL, then each TRL trainer beside a fresh project trainer: one seed's record."""
    from scope_lib.world import WorldSpec, load_world

    load_start = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="trl-opd-bench-")
    cfg = project_config(seed, args.steps, str(Path(tmp) / "project"))
    base = load_world(WorldSpec.from_config(cfg), train_seed=cfg.seed)
    eval_problems = heldout_problems(base, args.kl_prompts)
    eval_prompts = [base.format_prompt(p) for p in eval_problems]
    kl_seed = seed + 777

    def kl_row(student):
        out = reverse_kl_to_teacher(student, base.teacher, base.tokenizer, eval_prompts, samples=args.kl_samples,
                                    max_new_tokens=cfg.rollout.max_new_tokens, seed=kl_seed)
        out["accuracy"] = _accuracy(out.pop("texts"), out.pop("group"), eval_problems)
        return out

    kl_before = kl_row(base.student)
    w = args.warmup
    sides = []
    for index, kind in enumerate(args.trainers):
        side_cfg = project_config(seed, args.steps, str(Path(tmp) / f"project{index}"))
        side = run_side(kind, side_cfg, args.steps, tmp)
        med = {k: _median(v[w:]) for k, v in side["timings"].items()}
        sides.append({
            "trainer": side["trainer"], "settings": {k: {kk: vv for kk, vv in v.items() if kk != "prompts"}
                                                     for k, v in side["settings"].items()},
            "same_prompts": side["settings"]["project"]["prompts"] == side["settings"]["trl"]["prompts"],
            "same_prompt_ids_every_step": all(row["same_prompt_ids"] for row in side["train_trl"]),
            "median_seconds": med,
            "ratio_trl_over_project": {"iteration": med["trl_iteration"] / med["project"],
                                       "step": med["trl_step"] / med["project"]},
            "seconds_per_step": side["timings"], "wall_seconds_both": side["wall_seconds_both"],
            "kl_after_project": kl_row(side["project_student"]), "kl_after_trl": kl_row(side["trl_student"]),
            "train_project": side["train_project"], "train_trl": side["train_trl"],
        })
        del side
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "torch_threads": torch.get_num_threads(), "nice": os.nice(0),
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "world": base.description, "steps": args.steps, "warmup_steps_excluded": w, "seed": seed,
        "kl_eval": {"prompts": len(eval_prompts), "samples_per_prompt": args.kl_samples, "temperature": 1.0,
                    "max_new_tokens": cfg.rollout.max_new_tokens, "seed": kl_seed},
        "kl_before": kl_before, "sides": sides,
    }


def summarise(runs: list[dict]) -> dict:
    """Per TRL trainer, over seeds: the time ratios and the KLs (mean, min, max)."""
    out = {}
    for name in [s["trainer"] for s in runs[0]["sides"]]:
        rows = [s for r in runs for s in r["sides"] if s["trainer"] == name]
        values = {
            "ratio_iteration": [s["ratio_trl_over_project"]["iteration"] for s in rows],
            "ratio_step": [s["ratio_trl_over_project"]["step"] for s in rows],
            "kl_project": [s["kl_after_project"]["kl"] for s in rows],
            "kl_trl": [s["kl_after_trl"]["kl"] for s in rows],
            "kl_ratio_trl_over_project": [s["kl_after_trl"]["kl"] / s["kl_after_project"]["kl"] for s in rows],
        }
        out[name] = {k: {"mean": statistics.fmean(v), "min": min(v), "max": max(v), "values": v} for k, v in values.items()}
    out["kl_before"] = [r["kl_before"]["kl"] for r in runs]
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps on each side")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one full comparison per seed")
    parser.add_argument("--trainers", nargs="+", default=["gkd", "distillation"], choices=list(TRL_SIDES),
                        help="TRL trainers, each run beside a fresh project trainer")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing medians")
    parser.add_argument("--kl-prompts", type=int, default=64, help="held-out prompts for the KL")
    parser.add_argument("--kl-samples", type=int, default=4, help="student completions per held-out prompt")
    parser.add_argument("--out", default=None, help="folder for README.md and results.json")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    import transformers

    transformers.logging.set_verbosity_error()
    runs = [run_seed(seed, args) for seed in args.seeds]
    record = {
        "command": "nice -n 5 python bench/trl_opd.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "versions": _versions(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "summary": summarise(runs), "runs": runs,
    }
    text = render(record)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
        (out / "README.md").write_text(text + "\n")
    return record


def render(record: dict) -> str:
    """The whole record as Markdown: the summary over seeds, then each seed's tables."""
    v = record["versions"]
    runs = record["runs"]
    lines = [
        "# TRL's on-policy distillation beside the project's OPD (tiny world)",
        "",
        f"Command: `{record['command']}` (from the repository root, after `pip install -e .[bench]`).",
        "",
        f"Machine: {record['cpu']}, {record['cores']} cores shared with other jobs; Python {v['python']}, torch "
        f"{v['torch']}, transformers {v['transformers']}, TRL {v['trl']}, datasets {v['datasets']}, accelerate "
        f"{v['accelerate']}, tokenizers {v['tokenizers']}. Seeds {', '.join(str(r['seed']) for r in runs)}; "
        f"{runs[0]['steps']} steps per side per seed. Load average (1 min) at the start of each seed: "
        + ", ".join(f"{r['loadavg_start'][0]:.2f}" for r in runs) + "; at the end of each: "
        + ", ".join(f"{r['loadavg_end'][0]:.2f}" for r in runs) + ".",
        "",
        "Summary over seeds (mean, [min, max]): time per step as TRL / project (TRL: the whole Trainer iteration; "
        "in brackets, on_step_begin to on_step_end), and the mean per-token reverse KL(student ‖ teacher) on "
        "held-out prompts after the same number of steps (before training: "
        + ", ".join(f"{x:.4f}" for x in record["summary"]["kl_before"]) + ").",
        "",
        "| TRL trainer | time TRL / project | KL after: project | KL after: TRL | KL TRL / project |",
        "|---|---:|---:|---:|---:|",
    ]

    def cell(d, fmt):
        return f"{d['mean']:{fmt}} [{d['min']:{fmt}}, {d['max']:{fmt}}]"

    for name, row in record["summary"].items():
        if name == "kl_before":
            continue
        lines.append(f"| {name} | {cell(row['ratio_iteration'], '.2f')}x ({cell(row['ratio_step'], '.2f')}x) | "
                     f"{cell(row['kl_project'], '.4f')} | {cell(row['kl_trl'], '.4f')} | "
                     f"{cell(row['kl_ratio_trl_over_project'], '.2f')} |")
    for r in runs:
        lines += ["", f"## Seed {r['seed']}", "", render_run(r)]
    return "\n".join(lines)


def render_run(r: dict) -> str:
    """One seed's record as Markdown."""
    before = r["kl_before"]

    def mean(rows, key):
        xs = [row[key] for row in rows if key in row]
        return sum(xs) / len(xs) if xs else float("nan")

    lines = [
        f"Run {r['date_utc']} UTC, {r['torch_threads']} torch thread, nice {r['nice']}; load average (1/5/15 min) "
        f"{'/'.join(f'{x:.2f}' for x in r['loadavg_start'])} at the start, "
        f"{'/'.join(f'{x:.2f}' for x in r['loadavg_end'])} at the end. {r['world']}, seed {r['seed']}.",
        "",
        f"Each TRL trainer ran {r['steps']} steps beside a fresh project OPD trainer ({r['steps']} steps), interleaved "
        f"step by step in one process; medians over steps {r['warmup_steps_excluded'] + 1}..{r['steps']}. "
        "TRL seconds: the whole Trainer iteration (training step, clipping, optimiser and scheduler, callbacks, "
        "the next batch's collation); in brackets from `on_step_begin` to `on_step_end`.",
        "",
        "| | project OPD | TRL | TRL / project | KL after: project | KL after: TRL | accuracy after: project / TRL |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for side in r["sides"]:
        med, ratio = side["median_seconds"], side["ratio_trl_over_project"]
        kp, kt = side["kl_after_project"], side["kl_after_trl"]
        lines.append(f"| {side['trainer']} | {med['project']:.3f} s | {med['trl_iteration']:.3f} s "
                     f"({med['trl_step']:.3f} s) | {ratio['iteration']:.2f}x ({ratio['step']:.2f}x) | "
                     f"{kp['kl']:.4f} | {kt['kl']:.4f} | {kp['accuracy']:.3f} / {kt['accuracy']:.3f} |")
    lines += [
        "",
        f"Before training: KL {before['kl']:.4f}, accuracy {before['accuracy']:.3f}. KL: mean per-token reverse "
        f"KL(student ‖ teacher), exact over the vocabulary (`reverse_kl_to_teacher`, i.e. "
        f"`scope_lib.logprobs.full_reverse_kl`), on {r['kl_eval']['prompts']} held-out prompts (chain2..chain5 in "
        f"turn) x {r['kl_eval']['samples_per_prompt']} samples of the student being measured at T = "
        f"{r['kl_eval']['temperature']}, up to {r['kl_eval']['max_new_tokens']} tokens, seed {r['kl_eval']['seed']}; "
        "accuracy: the chain task's verifier on those samples. Mean of per-sequence means, and token counts:",
        "",
        "| | before | " + " | ".join(f"project ({s['trainer']} run) | {s['trainer']}" for s in r["sides"]) + " |",
        "|---|---:|" + "---:|---:|" * len(r["sides"]),
        "| KL, mean of per-sequence means | " + f"{before['kl_seq']:.4f} | " + " | ".join(
            f"{s['kl_after_project']['kl_seq']:.4f} | {s['kl_after_trl']['kl_seq']:.4f}" for s in r["sides"]) + " |",
        "| completion tokens | " + f"{before['tokens']} | " + " | ".join(
            f"{s['kl_after_project']['tokens']} | {s['kl_after_trl']['tokens']}" for s in r["sides"]) + " |",
        "| mean completion length in training | | " + " | ".join(
            f"{mean(s['train_project'], 'response_length'):.1f} | {mean(s['train_trl'], 'response_length'):.1f}"
            for s in r["sides"]) + " |",
        "| mean training loss (project: opd_loss) | | " + " | ".join(
            f"{mean(s['train_project'], 'opd_loss'):.4f} | {mean(s['train_trl'], 'loss'):.4f}" for s in r["sides"]) + " |",
        "",
        "Settings of each side, as read back from the objects that ran (same prompts in the same order: "
        + ", ".join(f"{s['trainer']} {s['same_prompts']}, each of its batches held the project's prompt ids of that step: "
                    f"{s['same_prompt_ids_every_step']}" for s in r["sides"]) + "):",
        "",
        "| | project OPD | " + " | ".join(s["trainer"] for s in r["sides"]) + " |",
        "|---|---|" + "---|" * len(r["sides"]),
    ]
    project = r["sides"][0]["settings"]["project"]
    for key in ("prompts_per_step", "completions_per_prompt", "max_new_tokens", "temperature", "top_k", "top_p",
                "grad_clip", "steps", "divergence"):
        lines.append(f"| {key} | {project[key]} | " + " | ".join(str(s["settings"]["trl"][key]) for s in r["sides"]) + " |")
    lines.append(f"| optimizer | {_optim_text(project['optimizer'])} | "
                 + " | ".join(_optim_text(s["settings"]["trl"]["optimizer"]) for s in r["sides"]) + " |")
    lines.append("| lr factor, steps 1-11 | " + " | ".join(", ".join(f"{x:.1f}" for x in f[:11]) for f in
                 [project["lr_factor"]] + [s["settings"]["trl"]["lr_factor"] for s in r["sides"]]) + " |")
    lines += [
        "",
        "Differences that remain (the docstring of `bench/trl_opd.py` has the detail): the loss reduction (project: "
        "mean over sequences of each sequence's token mean; both TRL trainers: token mean over the batch's "
        "completion tokens); decoding (TRL: `model.generate`; the project: its KV-cache loop that drops finished "
        "rows; the same distribution, different random draws); GKDTrainer's normaliser set to its own token count "
        "(`model_accepts_loss_kwargs = False`: the Trainer's count of labels in the prompt-only collated batch is 0, "
        "and the stock setting gives an inf loss and NaN weights after one step); GKDTrainer's forward passes "
        "without position ids (no effect with rotary embeddings but rounding); DistillationTrainer computes the KL "
        "in chunks from the hidden states and the `lm_head` (same value). Overheads left on TRL's side: the "
        "Trainer loop itself (callbacks, FLOP and token counting, the loss NaN/inf check, `model.zero_grad`), "
        "collation, `unwrap_model_for_generation`, and DistillationTrainer's per-step metrics kept in memory. "
        "Off on all sides: logging to files or trackers, checkpoints, evaluation, progress bars; the project's "
        "per-step metrics.jsonl and weight records are not written (its steps run as `collect()` + `update()`).",
    ]
    return "\n".join(lines)


def _optim_text(o: dict) -> str:
    return (f"{o['type']} lr {o['lr']:g}, betas {tuple(o['betas'])}, eps {o['eps']:g}, weight decay "
            f"{o['weight_decay']:g}, {o['n_params']} params")


if __name__ == "__main__":
    main()
