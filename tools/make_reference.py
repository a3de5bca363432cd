"""Produces reference activations, logits and a greedy continuation for the default model.

The numbers come from Hugging Face transformers running the dequantised GGUF in float32
with eager attention, and serve as an independent check of the Rust implementation.

Outputs (by default under crates/steer-model/tests/fixtures/):
  smollm2_reference.safetensors  tensors named pN.token_ids, pN.top_idx, pN.top_logits,
                                 pN.resid.L and gen.prompt_ids, gen.greedy_ids,
                                 gen.greedy_ids_full
  smollm2_reference.json         prompts, token ids, model config, versions, greedy text
"""

import argparse
import copy
import json
from pathlib import Path

from common import MODEL_SHA256, block_output, load_model, model_path, save_safetensors, sha256_of

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "crates" / "steer-model" / "tests" / "fixtures"

PROMPTS = [
    ("p0", "The capital of France is", False),
    ("p1", "def fibonacci(n):\n    if n < 2:\n        return n", False),
    ("p2", "What is the capital of France?", True),
    ("p3", "Give me three tips for staying focused while studying.", True),
    ("p4", "Zürich has 421,878 inhabitants — ça va? 😀", False),
]
RESID_LAYERS = [0, 9, 20, 29]
TOP_K = 50
GEN_PROMPT = "p2"
GEN_TOKENS = 32


def encode(tokenizer, text, chat):
    """Returns the text fed to the tokenizer and the resulting token ids."""
    if chat:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    else:
        rendered = text
        ids = tokenizer(text)["input_ids"]
    return rendered, list(ids)


def main():
    import numpy as np
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="path to the GGUF file (default: the steerbench cache)")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT))
    args = parser.parse_args()

    path = model_path(args.model)
    digest = sha256_of(path)
    if digest != MODEL_SHA256:
        print(f"warning: sha256 {digest} differs from the expected {MODEL_SHA256}")

    torch.manual_seed(0)
    tokenizer, model = load_model(path, attn_implementation="eager")
    config = model.config

    captured = {}

    def make_hook(layer):
        def hook(_module, _inputs, output):
            captured[layer] = block_output(output).detach().clone()

        return hook

    handles = [model.model.layers[layer].register_forward_hook(make_hook(layer)) for layer in RESID_LAYERS]

    tensors = {}
    prompt_records = []
    with torch.inference_mode():
        for name, text, chat in PROMPTS:
            rendered, ids = encode(tokenizer, text, chat)
            captured.clear()
            input_ids = torch.tensor([ids], dtype=torch.long)
            logits = model(input_ids=input_ids, use_cache=False).logits[0].float()
            top_logits, top_idx = torch.topk(logits, TOP_K, dim=-1, largest=True, sorted=True)
            tensors[f"{name}.token_ids"] = np.asarray(ids, dtype=np.int64)
            tensors[f"{name}.top_idx"] = top_idx.numpy().astype(np.int64)
            tensors[f"{name}.top_logits"] = top_logits.numpy().astype(np.float32)
            for layer in RESID_LAYERS:
                tensors[f"{name}.resid.{layer}"] = captured[layer][0].numpy().astype(np.float32)
            prompt_records.append(
                {
                    "name": name,
                    "text": text,
                    "chat": chat,
                    "rendered": rendered,
                    "token_ids": ids,
                    "n_tokens": len(ids),
                    "tokens": tokenizer.convert_ids_to_tokens(ids),
                    "argmax_last": int(top_idx[-1, 0]),
                    "argmax_last_text": tokenizer.decode([int(top_idx[-1, 0])]),
                }
            )
            print(f"{name}: {len(ids)} tokens, next token {tokenizer.decode([int(top_idx[-1, 0])])!r}")

        for handle in handles:
            handle.remove()

        gen_record = next(r for r in prompt_records if r["name"] == GEN_PROMPT)
        prompt_ids = torch.tensor([gen_record["token_ids"]], dtype=torch.long)
        output = model.generate(
            input_ids=prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            do_sample=False,
            max_new_tokens=GEN_TOKENS,
            repetition_penalty=1.0,
            pad_token_id=tokenizer.eos_token_id,
        )
        new_ids = output[0, prompt_ids.shape[1] :].tolist()

        # A second run ignores EOS so that all 32 cached decode steps are covered. The
        # generation config falls back to the model's EOS when given None, so it is cleared
        # on the model itself for this run.
        saved_eos = model.generation_config.eos_token_id
        model.generation_config.eos_token_id = None
        full_config = copy.deepcopy(model.generation_config)
        full_config.do_sample = False
        full_config.max_new_tokens = GEN_TOKENS
        full_config.min_new_tokens = None
        full_config.repetition_penalty = 1.0
        full_config.pad_token_id = tokenizer.eos_token_id
        output = model.generate(
            input_ids=prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            generation_config=full_config,
        )
        model.generation_config.eos_token_id = saved_eos
        full_ids = output[0, prompt_ids.shape[1] :].tolist()

        # The cached decode is checked against a plain argmax loop without a KV cache.
        sequence = prompt_ids
        for _ in range(GEN_TOKENS):
            next_id = model(input_ids=sequence, use_cache=False).logits[0, -1].argmax()
            sequence = torch.cat([sequence, next_id.view(1, 1)], dim=1)
        uncached_ids = sequence[0, prompt_ids.shape[1] :].tolist()
    if uncached_ids != full_ids:
        raise SystemExit(f"cached and uncached greedy decodes differ: {full_ids} vs {uncached_ids}")
    if full_ids[: len(new_ids)] != new_ids:
        raise SystemExit("greedy decode with EOS stop is not a prefix of the full decode")
    tensors["gen.prompt_ids"] = np.asarray(gen_record["token_ids"], dtype=np.int64)
    tensors["gen.greedy_ids"] = np.asarray(new_ids, dtype=np.int64)
    tensors["gen.greedy_ids_full"] = np.asarray(full_ids, dtype=np.int64)
    greedy_text = tokenizer.decode(new_ids, skip_special_tokens=False)
    print(f"greedy ({len(new_ids)} tokens): {greedy_text!r}")

    rope_theta = getattr(config, "rope_theta", None)
    if rope_theta is None:
        rope_theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    record = {
        "model_file": path.name,
        "model_sha256": digest,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "attn_implementation": model.config._attn_implementation,
        "dtype": "float32",
        "config": {
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "head_dim": getattr(config, "head_dim", config.hidden_size // config.num_attention_heads),
            "rms_norm_eps": config.rms_norm_eps,
            "rope_theta": rope_theta,
            "vocab_size": config.vocab_size,
            "tie_word_embeddings": config.tie_word_embeddings,
            "max_position_embeddings": config.max_position_embeddings,
        },
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "raw_prompts_start_with_bos": all(
            r["token_ids"][0] == tokenizer.bos_token_id for r in prompt_records if not r["chat"]
        ),
        "chat_template": tokenizer.chat_template,
        "resid_layers": RESID_LAYERS,
        "resid_note": "pN.resid.L is the output of decoder block L (0-based), before the final norm",
        "top_k": TOP_K,
        "prompts": prompt_records,
        "greedy": {
            "prompt": GEN_PROMPT,
            "max_new_tokens": GEN_TOKENS,
            "n_generated": len(new_ids),
            "stopped_early": len(new_ids) < GEN_TOKENS,
            "greedy_ids": new_ids,
            "greedy_text": greedy_text,
            "full_note": "gen.greedy_ids_full continues past EOS for all max_new_tokens steps",
            "greedy_ids_full": full_ids,
            "greedy_text_full": tokenizer.decode(full_ids, skip_special_tokens=False),
        },
    }

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {
        "model_file": path.name,
        "model_sha256": digest,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    save_safetensors(tensors, out_dir / "smollm2_reference.safetensors", metadata)
    with open(out_dir / "smollm2_reference.json", "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    print(f"wrote {out_dir / 'smollm2_reference.safetensors'} and {out_dir / 'smollm2_reference.json'}")


if __name__ == "__main__":
    main()
