"""Run one trainer update on a fixed global batch, in 1 or N processes; rank 0 saves weights.

    python tests/helpers/dist_update.py OUT.pt                             # one process
    accelerate launch --cpu --num_processes 2 tests/helpers/dist_update.py OUT.pt
"""

import sys

import torch

from scope_lib.config import load_config
from scope_lib.distributed import Processes
from scope_lib.trainer import Trainer, Timer

torch.set_num_threads(1)
method = sys.argv[2] if len(sys.argv) > 2 else "scope"
cfg = load_config("tiny", overrides={
    "method": method, "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False,
    "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4, "optim.micro_batch_size": 4,
    "rollout.group_size": 4, "rollout.max_new_tokens": 16, "output_dir": "/tmp/unused",
})
trainer = Trainer(cfg)
# The same global batch on every process: collect() on all prompts as if one process ran it.
procs = trainer.procs
trainer.procs = Processes()  # rank 0 of 1
batch, _ = trainer.collect(0, Timer())
# Make both paths non-empty so SCOPE's two weights are exercised on a weak smoke model.
batch["correct"] = torch.arange(len(batch["correct"])) % 3 == 0
if method == "scope":
    wrong = ~batch["correct"]
    batch["teacher_logp"][wrong] = trainer.teacher.score(batch["input_ids"][wrong], batch["attention_mask"][wrong])
trainer.procs = procs
rank, world = procs.rank, procs.size
groups = list(dict.fromkeys(batch["group"].tolist()))
share = len(groups) // world
mine = set(groups[rank * share:(rank + 1) * share])
rows = torch.tensor([i for i, g in enumerate(batch["group"].tolist()) if g in mine])
trainer.update({k: v[rows] for k, v in batch.items()})
if rank == 0:
    torch.save(trainer.student.state_dict(), sys.argv[1])
