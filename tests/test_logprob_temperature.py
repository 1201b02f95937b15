"""Log-probs at the temperatures the authors' code uses: the student's training
log-probs (pi_theta, pi_old, entropies) at `rollout.logprob_temperature` ("sampling": the rollout
temperature, as verl's actor divides logits by it), the teacher's at `teacher.logprob_temperature`
(1: the authors' vLLM prompt_logprobs). Checked against float64 hand computations."""

import math

import pytest
import torch

from scope_lib import rollout
from scope_lib.config import ConfigError, load_config, logprob_temperatures

SMOKE = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False,
    "steps": 1, "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4, "optim.micro_batch_size": 16,
    "rollout.group_size": 4, "rollout.max_new_tokens": 12, "checkpoint_every": 0,
    "scope.kl_estimator": "sampled", "optim.old_logp_pass": "always",
    "rollout.temperature": 0.6, "rollout.logprob_temperature": "sampling",
}


def _trainer(tmp_path, monkeypatch, **overrides):
    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Trainer

    # rewards by a hash of the text, so that a batch has both SCOPE paths
    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(lambda texts, problems: [sum(map(ord, t)) % 2 == 0 for t in texts]))
    return Trainer(load_config("tiny", overrides={**SMOKE, **overrides, "output_dir": str(tmp_path / "run")}))


def _hand_logp(model, ids, att, temperature):
    """float64 log p(token_t | tokens before t) from logits / temperature; 0 at t = 0."""
    from scope_lib.logprobs import position_ids_from_mask

    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=att, position_ids=position_ids_from_mask(att)).logits
    scaled = logits.double()[:, :-1] / temperature
    logp = torch.log_softmax(scaled, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return torch.cat([torch.zeros(ids.shape[0], 1, dtype=torch.float64), logp], 1)


def test_presets_use_the_authors_temperatures_and_tiny_ones_stay_at_one():
    for name in ("paper_code", "paper_distill_1p5b", "paper_qwen3_1p7b", "smol"):
        cfg = load_config(name)
        assert cfg.rollout.logprob_temperature == "sampling"
        assert logprob_temperatures(cfg) == (0.6, 1.0), name
    for name in ("tiny", "tiny_code"):
        assert logprob_temperatures(load_config(name)) == (1.0, 1.0)


@pytest.mark.parametrize("value", [0, -0.5, math.inf, math.nan, "hot", True, None, [1.0]])
def test_a_bad_logprob_temperature_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"rollout\.logprob_temperature"):
        load_config("tiny", overrides={"rollout.logprob_temperature": value})
    if not isinstance(value, str):
        with pytest.raises(ConfigError, match=r"teacher\.logprob_temperature"):
            load_config("tiny", overrides={"teacher.logprob_temperature": value})


def test_a_numeric_logprob_temperature_is_read_as_a_number():
    assert load_config("tiny", overrides={"rollout.logprob_temperature": "0.7", "scope.kl_estimator": "sampled"}
                       ).rollout.logprob_temperature == 0.7
    cfg = load_config("tiny", overrides={"rollout.logprob_temperature": 0.8, "rollout.temperature": 0.6,
                                         "scope.kl_estimator": "sampled"})
    assert logprob_temperatures(cfg) == (0.8, 1.0)
    # the exact KL is computed at temperature 1: another temperature is refused, naming the key
    with pytest.raises(ConfigError, match=r"scope\.kl_estimator"):
        load_config("tiny", overrides={"rollout.temperature": 0.6, "rollout.logprob_temperature": "sampling"})


def test_sampler_logps_equal_the_recomputed_old_logps_at_0_6(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, monkeypatch)
    tok, model = trainer.tokenizer, trainer.student
    prompts = [trainer.world.format_prompt(p) for p in trainer.world.train_problems[:3]]
    encoded = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts for _ in range(2)]
    batch = rollout.assemble(encoded, [[]] * len(encoded), tok.pad_token_id)
    width = max(map(len, encoded))
    torch.manual_seed(0)
    sampled: list[list[float]] = []
    model.eval()
    responses = rollout._decode(model, batch["input_ids"][:, :width], batch["attention_mask"][:, :width],
                                max_new_tokens=10, temperature=0.6, top_p=1.0, top_k=0, eos_id=tok.eos_token_id,
                                sampler_logps=sampled)
    model.train()
    laid = rollout.assemble(encoded, responses, tok.pad_token_id)
    laid["group"] = torch.arange(len(encoded)) // 2
    old, entropy = trainer._old_logp_pass(laid)
    at_one = _hand_logp(model, laid["input_ids"], laid["attention_mask"], 1.0)
    differs = 0.0
    for i, row in enumerate(sampled):
        cols = laid["response_mask"][i].nonzero().squeeze(-1)
        assert len(cols) == len(row) > 0
        assert torch.allclose(old[i, cols].double(), torch.tensor(row, dtype=torch.float64), atol=1e-5, rtol=0)
        differs = max(differs, float((at_one[i, cols] - torch.tensor(row, dtype=torch.float64)).abs().max()))
    assert differs > 1e-2  # at temperature 1 the recomputed log-probs are another distribution's


@pytest.mark.parametrize("method", ["scope", "opd"])
def test_advantage_and_perplexities_at_0_6_match_a_float64_hand_computation(tmp_path, monkeypatch, method):
    overrides = {"method": method, "optim.mini_batch_prompts": 4}
    if method == "opd":
        overrides["rollout.group_size"] = 1
    trainer = _trainer(tmp_path, monkeypatch, **overrides)
    assert (trainer.logp_temperature, trainer.teacher_temperature) == (0.6, 1.0)
    batch, _ = trainer.collect(0, __import__("scope_lib.trainer", fromlist=["Timer"]).Timer())
    ids, att, on = batch["input_ids"], batch["attention_mask"], batch["response_mask"].bool()
    student = _hand_logp(trainer.student, ids, att, 0.6)
    teacher = _hand_logp(trainer.world.teacher, ids, att, 1.0)
    assert torch.allclose(batch["old_logp"].double()[on], student[on], atol=1e-5, rtol=0)
    scored = torch.isfinite(batch["teacher_logp"]).any(1)
    assert scored.any()
    both = on & scored[:, None]
    # the OPD per-token advantage sg[log pi_T - log pi_theta] of the first update (pi_theta = pi_old)
    advantage = (batch["teacher_logp"] - batch["old_logp"]).double()
    assert torch.allclose(advantage[both], (teacher - student)[both], atol=1e-5, rtol=0)
    stats = trainer.update(batch)
    hand_ppl_student = -(student * on).sum(1) / on.sum(1)
    hand_ppl_teacher = -(teacher * on).sum(1) / on.sum(1)
    records = trainer.row_records
    assert torch.allclose(records["student_log_ppl"].double(), hand_ppl_student, atol=1e-5, rtol=0)
    rows = scored.nonzero().squeeze(-1)
    assert torch.allclose(records["teacher_log_ppl"].double()[rows], hand_ppl_teacher[rows], atol=1e-5, rtol=0)
    if method == "opd":  # one micro-batch: its mean token advantage is the batch's
        assert stats["adv_mean"] == pytest.approx(float((teacher - student)[both].mean()), abs=1e-5)
    else:  # Eq. 4/5 are softmaxes of these scores within a group's path: some weight differs from 1
        assert torch.isfinite(records["student_weight"]).any() or torch.isfinite(records["teacher_weight"]).any()
    # and pi_old at temperature 1 would differ (the test can fail)
    at_one = _hand_logp(trainer.student, ids, att, 1.0)
    assert float((at_one - student)[on].abs().max()) > 1e-2


def test_the_teacher_temperature_is_applied_alike_in_process_and_through_the_server(tmp_path):
    from scope_lib.teacher import LocalTeacher, ServerTeacher
    from scope_lib.teacher_server import serve
    from scope_lib.world import WorldSpec, load_world
    import threading

    cfg = load_config("tiny", overrides={"model.student": "tiny_smoke", "model.teacher": "tiny_smoke"})
    world = load_world(WorldSpec.from_config(cfg), need_teacher=True)
    g = torch.Generator().manual_seed(1)
    vocab = world.teacher.config.vocab_size
    ids = torch.randint(3, vocab, (3, 9), generator=g)
    att = torch.ones_like(ids)
    att[0, :2] = 0  # left padding
    hand = _hand_logp(world.teacher, ids, att, 1.0)
    local = LocalTeacher(world.teacher, temperature=1.0).score(ids, att)
    on = att.bool()
    on[:, 0] = False
    on[0, 2] = False  # the first real token: nothing conditions it
    assert torch.allclose(local.double()[on], hand[on], atol=1e-5, rtol=0)
    server = serve(world.teacher, "tiny", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        remote = ServerTeacher(f"http://{host}:{port}", "tiny", temperature=1.0).score(ids, att)
    finally:
        server.shutdown()
        server.server_close()
    assert torch.allclose(remote[on], local[on], atol=1e-5, rtol=0)
    # another teacher temperature: in-process it divides the logits; a server cannot be asked for it
    hot = LocalTeacher(world.teacher, temperature=2.0).score(ids, att)
    assert torch.allclose(hot.double()[on], _hand_logp(world.teacher, ids, att, 2.0)[on], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="temperature 1"):
        ServerTeacher("http://127.0.0.1:1", "tiny", temperature=2.0)
    with pytest.raises(ConfigError, match=r"teacher\.logprob_temperature"):
        load_config("paper_code", overrides={"teacher.logprob_temperature": 2.0})
