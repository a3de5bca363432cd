"""Times the steerbench workload in plain PyTorch, as a baseline for the Rust benchmarks.

It loads the default GGUF into transformers in float32 with the default attention, then
measures: model load time; a forward pass over a batch of 8 x 128 seeded random tokens;
and greedy decoding of 64 new tokens from a short chat prompt with the KV cache, once
plain and once with a steering vector added to the output of block 15 at every position.

Prints one JSON line followed by a small table.
"""

import argparse
import json
import platform
import statistics
import time

from common import block_output, load_model, model_path, sha256_of

BATCH = 8
SEQ_LEN = 128
DECODE_TOKENS = 64
STEER_LAYER = 15
STEER_NORM = 4.0
SEED = 1234
CHAT_PROMPT = "Give me three tips for staying focused while studying."


def timed(fn, warmup, repeats):
    """Runs fn warmup times untimed, then returns the wall times of repeats runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="path to the GGUF file (default: the steerbench cache)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes after one warm-up")
    parser.add_argument("--decode-repeats", type=int, default=3, help="timed decodes per variant after one warm-up")
    args = parser.parse_args()

    import_start = time.perf_counter()
    import torch
    import transformers

    import_s = time.perf_counter() - import_start
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    path = model_path(args.model)
    sha256_of(path)  # Reads the file once so that the load below is not timed from a cold cache.

    load_start = time.perf_counter()
    tokenizer, model = load_model(path)
    load_s = time.perf_counter() - load_start
    config = model.config

    generator = torch.Generator().manual_seed(SEED)
    batch = torch.randint(0, config.vocab_size, (BATCH, SEQ_LEN), generator=generator)

    def forward():
        with torch.inference_mode():
            model(input_ids=batch, use_cache=False)

    forward_times = timed(forward, warmup=1, repeats=args.repeats)
    forward_s = statistics.median(forward_times)

    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": CHAT_PROMPT}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = torch.tensor([tokenizer(rendered, add_special_tokens=False)["input_ids"]])
    attention_mask = torch.ones_like(prompt_ids)

    def decode():
        with torch.inference_mode():
            output = model.generate(
                input_ids=prompt_ids,
                attention_mask=attention_mask,
                do_sample=False,
                max_new_tokens=DECODE_TOKENS,
                min_new_tokens=DECODE_TOKENS,
                pad_token_id=tokenizer.eos_token_id,
            )
        produced = output.shape[1] - prompt_ids.shape[1]
        if produced != DECODE_TOKENS:
            raise SystemExit(f"generated {produced} tokens, expected {DECODE_TOKENS}")

    decode_times = timed(decode, warmup=1, repeats=args.decode_repeats)

    vector = torch.randn(config.hidden_size, generator=torch.Generator().manual_seed(SEED + 1))
    vector = (vector * (STEER_NORM / vector.norm())).to(torch.float32)

    def steer(_module, _inputs, output):
        if isinstance(output, tuple):
            return (output[0] + vector,) + tuple(output[1:])
        return block_output(output) + vector

    handle = model.model.layers[STEER_LAYER].register_forward_hook(steer)
    try:
        steered_times = timed(decode, warmup=1, repeats=args.decode_repeats)
    finally:
        handle.remove()

    decode_s = statistics.median(decode_times)
    steered_s = statistics.median(steered_times)
    result = {
        "bench": "torch_reference",
        "model_file": path.name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "attn_implementation": config._attn_implementation,
        "dtype": "float32",
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "import_s": round(import_s, 3),
        "load_s": round(load_s, 3),
        "forward": {
            "batch": BATCH,
            "seq_len": SEQ_LEN,
            "median_s": round(forward_s, 4),
            "times_s": [round(t, 4) for t in forward_times],
            "tokens_per_s": round(BATCH * SEQ_LEN / forward_s, 1),
        },
        "decode": {
            "prompt_tokens": int(prompt_ids.shape[1]),
            "new_tokens": DECODE_TOKENS,
            "median_s": round(decode_s, 4),
            "times_s": [round(t, 4) for t in decode_times],
            "tokens_per_s": round(DECODE_TOKENS / decode_s, 2),
        },
        "decode_steered": {
            "layer": STEER_LAYER,
            "vector_norm": STEER_NORM,
            "median_s": round(steered_s, 4),
            "times_s": [round(t, 4) for t in steered_times],
            "tokens_per_s": round(DECODE_TOKENS / steered_s, 2),
        },
    }
    print(json.dumps(result))
    print()
    print(f"{'measurement':<34} {'median s':>10} {'tokens/s':>10}")
    print(f"{'model load':<34} {load_s:>10.3f} {'':>10}")
    print(f"{f'forward {BATCH}x{SEQ_LEN}':<34} {forward_s:>10.3f} {BATCH * SEQ_LEN / forward_s:>10.1f}")
    print(f"{f'greedy decode {DECODE_TOKENS}':<34} {decode_s:>10.3f} {DECODE_TOKENS / decode_s:>10.2f}")
    print(
        f"{f'greedy decode {DECODE_TOKENS}, steered @ {STEER_LAYER}':<34} "
        f"{steered_s:>10.3f} {DECODE_TOKENS / steered_s:>10.2f}"
    )
    print(f"threads={torch.get_num_threads()} attention={config._attn_implementation}")


if __name__ == "__main__":
    main()
