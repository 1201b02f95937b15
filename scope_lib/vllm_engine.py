"""vLLM rollout engine for GPU runs (`rollout.engine: vllm`), colocated with the actor.

It returns the same `RolloutBatch` as `scope_lib.rollout.generate_rollouts`, so the trainer
does not care which engine sampled. After each optimizer update the trainer calls
`push_weights(student)` so the next rollouts come from the current policy (on-policy).

Not exercised by the CPU test suite (vLLM needs a GPU); the project's CPU tests cover the
HF engine that shares the output layout. Install with `pip install -e .[vllm]`.
"""

from __future__ import annotations

import torch

from scope_lib.rollout import RolloutBatch, assemble


class VLLMEngine:
    """One in-process `vllm.LLM` holding a copy of the student's weights."""

    def __init__(self, model_path: str, tokenizer, *, gpu_memory_utilization: float = 0.4, dtype: str = "bfloat16",
                 max_model_len: int | None = None, seed: int = 0):
        try:
            from vllm import LLM
        except ImportError as error:  # pragma: no cover - GPU extra
            raise ImportError("rollout.engine 'vllm' needs the vllm extra: pip install -e .[vllm]") from error
        self.tokenizer = tokenizer
        self.llm = LLM(model=str(model_path), tokenizer=str(model_path), dtype=dtype, seed=seed,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                       enable_prefix_caching=True)

    def generate(self, prompts: list[str], *, num_samples: int, temperature: float, top_p: float = 1.0, top_k: int = 0,
                 max_new_tokens: int, repetition_penalty: float = 1.0, seed: int = 0, **_unused) -> RolloutBatch:
        from vllm import SamplingParams, TokensPrompt

        encoded = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        params = SamplingParams(n=num_samples, temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else -1,
                                max_tokens=max_new_tokens, repetition_penalty=repetition_penalty, seed=seed)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params, use_tqdm=False)
        prompt_rows, responses, groups = [], [], []
        eos = self.tokenizer.eos_token_id
        for index, output in enumerate(outputs):
            for sample in output.outputs:
                ids = list(sample.token_ids)
                if sample.finish_reason == "stop" and (not ids or ids[-1] != eos):
                    ids.append(eos)  # keep the stop token in the response mask, as the HF engine does
                prompt_rows.append(encoded[index])
                responses.append(ids)
                groups.append(index)
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
        """Copy the student's current weights into vLLM (LoRA merged on the fly)."""
        is_lora = hasattr(model, "merge_adapter")
        if is_lora:  # peft: merge, copy, unmerge
            model.merge_adapter()
        try:
            weights = [(name.removeprefix("base_model.model.").replace(".base_layer", ""), tensor)
                       for name, tensor in model.state_dict().items() if "lora_" not in name]
            self.llm.apply_model(lambda vllm_model: vllm_model.load_weights(weights))
        finally:
            if is_lora:
                model.unmerge_adapter()
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
