"""The vLLM rollout path for real: `scope_lib.vllm_engine` with a running vLLM (tests marked `vllm`).

Run with `python3 -m scope_lib.bootstrap test-vllm` (vLLM's CPU wheel on a CPU machine; the
default `test` environment has no vLLM and skips these). vLLM's CPU attention takes head sizes
32, 64, 80, 96, 112, 128 and up, so the model served here is the shipped `tiny_routes` *teacher*
(4 layers x 128 hidden x 4 heads of 32), copied and trained as the student; the tiny students
(head size 20) are only written as `vllm_init` folders and read back with transformers.

What is checked:
- after one optimizer step and a push, the engine's log-probs of the tokens it sampled equal the
  trained model's transformers log-probs to 1e-4 (float32) and differ from the base model's;
- the same for a LoRA student (the merged weights are pushed);
- a push whose names or shapes do not match fails naming the first parameter, before anything
  is written, and the engine goes on sampling the weights it had;
- `vllm_init` folders are plain, dequantized and merged for every world (tiny_routes,
  tiny_code, smol, LoRA), and transformers reloads them to the same logits;
- a 2-step SCOPE run with `rollout.engine: vllm` (full and LoRA) samples step 2 from the weights
  step 1 pushed.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

pytestmark = pytest.mark.vllm

TOL = 1e-4  # float32 log-probs, vLLM's CPU kernels against transformers (measured: ~1e-5)


@pytest.fixture(scope="module")
def routes_world():
    from scope_lib.config import load_config
    from scope_lib.world import WorldSpec, load_world

    cfg = load_config("tiny", overrides={"model.student": "tiny_routes", "model.teacher": "tiny_routes",
                                         "progress": False})
    return cfg, load_world(WorldSpec.from_config(cfg))


def _student_like_teacher(world):
    """The world with a copy of its teacher (head size 32, which vLLM's CPU attention takes) as student."""
    student = copy.deepcopy(world.teacher).float()
    student.train()
    return type(world)(student, world.teacher, world.tokenizer, world.train_problems, world.eval_sets,
                       world.format_prompt, world.description, world.task)


@pytest.fixture(scope="module")
def engine(routes_world, tmp_path_factory):
    from scope_lib.vllm_engine import VLLMEngine, save_plain_model

    _, world = routes_world
    model = copy.deepcopy(world.teacher).float().eval()
    folder = save_plain_model(model, world.tokenizer, tmp_path_factory.mktemp("engine") / "model")
    engine = VLLMEngine(folder, world.tokenizer, dtype="float32", seed=0, enforce_eager=True)
    yield engine
    engine.close()


def _prompts(world, n=4):
    return [world.format_prompt(p) for p in world.train_problems[:n]]


def _engine_vs_hf(engine, model, prompts, *, seed=0, samples=2, max_new_tokens=24):
    """Sample with the engine; return (engine log-probs, HF log-probs of `model`) of the sampled tokens."""
    from scope_lib.logprobs import token_logprobs

    batch = engine.generate(prompts, num_samples=samples, temperature=1.0, max_new_tokens=max_new_tokens,
                            seed=seed, logprobs=True)
    with torch.no_grad():
        hf = token_logprobs(model.eval(), batch.input_ids, batch.attention_mask)
    width = batch.prompt_width
    engine_lp, hf_lp = [], []
    for row, values in enumerate(engine.last_logprobs):
        engine_lp.extend(values)
        hf_lp.extend(hf[row, width: width + len(values)].tolist())
    assert len(engine_lp) > 10, "the engine sampled almost nothing"
    return torch.tensor(engine_lp, dtype=torch.float64), torch.tensor(hf_lp, dtype=torch.float64), batch


def _one_step(model, batch, lr=3e-3):
    """One AdamW step raising the log-prob of the sampled responses (a large, visible change)."""
    from scope_lib.logprobs import token_logprobs

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    logp = token_logprobs(model, batch.input_ids, batch.attention_mask)
    loss = -(logp * batch.response_mask).sum() / batch.response_mask.sum()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    model.eval()


def test_pushed_weights_give_the_trained_models_logprobs(engine, routes_world):
    _, world = routes_world
    base = copy.deepcopy(world.teacher).float().eval()
    prompts = _prompts(world)
    got, want, batch = _engine_vs_hf(engine, base, prompts)
    assert (got - want).abs().max() < TOL  # the engine serves the base model before any push

    trained = copy.deepcopy(base)
    _one_step(trained, batch)
    engine.push_weights(trained)
    got, want, batch = _engine_vs_hf(engine, trained, prompts, seed=1)
    from scope_lib.logprobs import token_logprobs

    with torch.no_grad():
        before = token_logprobs(base, batch.input_ids, batch.attention_mask)
    old = torch.cat([before[r, batch.prompt_width: batch.prompt_width + len(v)].double()
                     for r, v in enumerate(engine.last_logprobs)])
    assert (got - want).abs().max() < TOL, f"engine vs trained model: {(got - want).abs().max():.2e}"
    assert (got - old).abs().max() > 100 * TOL, "the engine still samples the base model's weights"


def test_a_lora_student_is_pushed_merged(engine, routes_world):
    from peft import LoraConfig, get_peft_model

    from scope_lib.vllm_engine import plain_state_dict

    _, world = routes_world
    model = get_peft_model(copy.deepcopy(world.teacher).float(), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = plain_state_dict(model)
    assert not [k for k in plain if "lora_" in k or "base_layer" in k or k.startswith("base_model")]
    assert set(plain) == set(plain_state_dict(world.teacher))
    prompts = _prompts(world)
    batch = engine.generate(prompts, num_samples=2, temperature=1.0, max_new_tokens=24, seed=2)
    _one_step(model, batch, lr=3e-2)  # B moves off zero: the merged weights differ from the base
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed), "only the adapters train"
    engine.push_weights(model)
    got, want, _ = _engine_vs_hf(engine, model, prompts, seed=3)
    assert (got - want).abs().max() < TOL, f"engine vs LoRA model: {(got - want).abs().max():.2e}"
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    delta = max(float((plain_state_dict(model)[k] - merged[k].detach()).abs().max()) for k in plain)
    assert delta < 1e-6  # plain_state_dict adds each adapter's delta as peft's own merge does


def test_a_mismatched_push_fails_naming_the_parameter_and_changes_nothing(engine, routes_world, tmp_path):
    _, world = routes_world
    current = engine.weights_path.read_bytes()
    prompts = _prompts(world, 2)
    first = engine.generate(prompts, num_samples=2, temperature=1.0, max_new_tokens=16, seed=5, logprobs=True)
    first_lp = copy.deepcopy(engine.last_logprobs)

    wider = copy.deepcopy(world.teacher).float()
    wider.model.norm.weight = torch.nn.Parameter(torch.ones(wider.config.hidden_size + 1))
    with pytest.raises(ValueError, match=r"parameter 'model\.norm\.weight' is F32\[129\], the engine's model has F32\[128\]"):
        engine.push_weights(wider)
    extra = copy.deepcopy(world.teacher).float()
    extra.register_buffer("not_in_the_engine", torch.zeros(3))
    with pytest.raises(ValueError, match=r"parameter 'not_in_the_engine' is not in the engine's model"):
        engine.push_weights(extra)
    half = copy.deepcopy(world.teacher).half()
    with pytest.raises(ValueError, match=r"parameter 'model\.embed_tokens\.weight' is F16"):
        engine.push_weights(half)

    assert engine.weights_path.read_bytes() == current  # nothing was written
    again = engine.generate(prompts, num_samples=2, temperature=1.0, max_new_tokens=16, seed=5, logprobs=True)
    assert torch.equal(again.input_ids, first.input_ids)  # same seed, same weights: the same samples
    assert engine.last_logprobs == first_lp


def _reload(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).float().eval()


def _same_logits(a, b, tokenizer, prompt):
    ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return float((a(input_ids=ids).logits - b(input_ids=ids).logits).abs().max())


def _assert_plain_folder(folder):
    from scope_lib.vllm_engine import _file_layout

    names = _file_layout(folder / "model.safetensors")
    assert not [n for n in names if "lora_" in n or "base_layer" in n or n.startswith("base_model")], sorted(names)[:5]
    assert {dtype for _, dtype in names.values()} == {"F32"}
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]


@pytest.mark.parametrize("name", ["tiny_routes", "tiny_code"])
def test_vllm_init_of_the_tiny_worlds_is_plain_and_reloads(name, tmp_path):
    from scope_lib.config import load_config
    from scope_lib.vllm_engine import save_plain_model
    from scope_lib.world import WorldSpec, load_world

    overrides = {"model.student": name, "model.teacher": name, "progress": False}
    if name == "tiny_code":
        overrides["reward.verifier"] = "code"
    world = load_world(WorldSpec.from_config(load_config("tiny", overrides=overrides)))
    for role, model in (("student", world.student), ("teacher", world.teacher)):
        folder = save_plain_model(model, world.tokenizer, tmp_path / role)
        _assert_plain_folder(folder)
        prompt = world.format_prompt(world.train_problems[0])
        assert _same_logits(model.float().eval(), _reload(folder), world.tokenizer, prompt) == 0.0


def test_vllm_init_of_a_lora_student_holds_the_merged_weights(routes_world, tmp_path):
    from peft import LoraConfig, get_peft_model

    from scope_lib.vllm_engine import save_plain_model

    _, world = routes_world
    model = get_peft_model(copy.deepcopy(world.student).float(), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "o_proj", "up_proj"], task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=generator)  # a trained adapter: the merged model is not the base model
    folder = save_plain_model(model, world.tokenizer, tmp_path / "lora")
    _assert_plain_folder(folder)
    prompt = world.format_prompt(world.train_problems[0])
    reloaded = _reload(folder)
    assert _same_logits(model.eval(), reloaded, world.tokenizer, prompt) < 1e-4  # x(W + BA) against xW + xBA: rounding
    assert _same_logits(world.student.float().eval(), reloaded, world.tokenizer, prompt) > 1e-3


@pytest.mark.smol
def test_vllm_init_of_smol_is_dequantized(tmp_path):
    pytest.importorskip("gguf")
    from scope_lib.smol import format_chat_prompt, load_smol, smol_gguf_path
    from scope_lib.vllm_engine import save_plain_model

    try:
        smol_gguf_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    model, tokenizer = load_smol()
    folder = save_plain_model(model, tokenizer, tmp_path / "smol")
    _assert_plain_folder(folder)
    assert not list(folder.glob("*.gguf"))
    prompt = format_chat_prompt(tokenizer, "What is 2 + 3?")
    assert _same_logits(model, _reload(folder), tokenizer, prompt) == 0.0


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_scope_trains_two_steps_on_vllm_rollouts_from_the_pushed_weights(finetune, routes_world, tmp_path):
    from scope_lib.config import config_from_dict
    from scope_lib.logprobs import token_logprobs
    from scope_lib.trainer import Trainer

    cfg0, world = routes_world
    data = cfg0.to_dict()
    data.update(steps=2, output_dir=str(tmp_path / "run"), checkpoint_every=0, progress=False)
    data["model"].update(finetune=finetune, lora_rank=4, lora_alpha=8)
    data["rollout"].update(engine="vllm", vllm_enforce_eager=True, group_size=4, max_new_tokens=24)
    data["optim"].update(prompts_per_step=4, mini_batch_prompts=4, micro_batch_size=16, lr=3e-3, warmup_steps=0)
    cfg = config_from_dict(data)
    trainer = Trainer(cfg, _student_like_teacher(world))
    init = cfg.output_dir + "/vllm_init/rank0"
    _assert_plain_folder(__import__("pathlib").Path(init))
    seen = []  # per generate call: the rollouts, the engine's log-probs and the student's weights then
    generate = trainer.engine.generate

    def recording_generate(prompts, **kwargs):
        batch = generate(prompts, logprobs=True, **kwargs)
        seen.append((batch, trainer.engine.last_logprobs, copy.deepcopy(trainer.student).eval()))
        return batch

    trainer.engine.generate = recording_generate
    try:
        result = trainer.train()
    finally:
        trainer.engine.close()
    assert [row["step"] for row in result.history] == [1, 2] and len(seen) == 2
    assert all(row["grad_norm"] > 0 for row in result.history)
    initial = seen[0][2]
    for step, (batch, engine_lp, student) in enumerate(seen, start=1):
        with torch.no_grad():
            hf = token_logprobs(student, batch.input_ids, batch.attention_mask)
            base = token_logprobs(initial, batch.input_ids, batch.attention_mask)
        w = batch.prompt_width
        got = torch.cat([torch.tensor(v, dtype=torch.float64) for v in engine_lp])
        want = torch.cat([hf[r, w: w + len(v)].double() for r, v in enumerate(engine_lp)])
        old = torch.cat([base[r, w: w + len(v)].double() for r, v in enumerate(engine_lp)])
        assert (got - want).abs().max() < TOL, f"step {step}: rollouts not from the student's weights"
        if step == 2:  # sampled after step 1's push: the updated weights, not the initial ones
            # (one LoRA step moves the log-probs little, 9e-3 in one run: 10x the tolerance tells
            # the two apart, since the engine agrees with the pushed weights to TOL)
            assert (got - old).abs().max() > 10 * TOL
