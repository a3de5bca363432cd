"""Runs the `steerbench perf` workload the way a PyTorch user runs it today.

transformers loads the default GGUF in float32; the steering-vectors library
fits CAA vectors (`train_steering_vector`, mean of the positive-minus-negative
differences at the answer letter) and applies them (`SteeringVector.apply`)
in a loop over layers, multipliers and items, one forward pass each. The
workload and the JSON it writes match `crates/steerbench/src/perf.rs`, so

    steerbench perf --compare torch.json

prints both side by side, with the ratios and how far the sweep margins differ.
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from common import load_model, model_path, sha256_of

REPO = Path(__file__).resolve().parent.parent
FORWARD_ROWS, FORWARD_SEQ = 8, 128
FORWARD_TEXT_BYTES = 16_000
FIT_ITEMS = 200
SWEEP_ITEMS = 20
SWEEP_MULTIPLIERS = [-2.0, -1.0, 0.0, 1.0, 2.0]
DECODE_TOKENS = 64
DECODE_LAYER = 15
DECODE_MULTIPLIER = 2.0
DECODE_PROMPT = "Give me three tips for staying focused while studying."


def read_items(path, limit):
    """CAA A/B items: question, matching letter and other letter."""
    items = []
    for row in json.loads(Path(path).read_text())[:limit]:
        matching = row["answer_matching_behavior"].strip().strip("()")[0]
        other = row["answer_not_matching_behavior"]
        other = (other[0] if isinstance(other, list) else other).strip().strip("()")[0]
        items.append((row["question"], matching, other))
    return items


def chat(tokenizer, question):
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def median_of_three(fn):
    """Runs fn once untimed, then three times timed; returns the median seconds."""
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_text():
    data = (REPO / "suites/perplexity/wikitext2/wiki.test.raw").read_bytes()
    return data[: data.rindex(b"\n", 0, FORWARD_TEXT_BYTES)].decode("utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="path to the GGUF file (default: the steerbench cache)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--out", default="perf_torch.json", help="where to write the JSON report")
    args = parser.parse_args()

    import torch
    import transformers
    from steering_vectors import SteeringVector, train_steering_vector

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    path = model_path(args.model)
    sha256_of(path)  # Warms the page cache so that the timed load reads from memory, as steerbench's does.
    start = time.perf_counter()
    tokenizer, model = load_model(path)
    load_s = time.perf_counter() - start
    cfg = model.config

    # 1. Forward, every logit.
    ids = tokenizer(forward_text(), add_special_tokens=False)["input_ids"]
    batch = torch.tensor([ids[i * FORWARD_SEQ : (i + 1) * FORWARD_SEQ] for i in range(FORWARD_ROWS)])

    def forward():
        with torch.inference_mode():
            model(input_ids=batch, use_cache=False)

    forward_s = median_of_three(forward)
    print(f"forward {FORWARD_ROWS}x{FORWARD_SEQ}: {forward_s:.3f} s", flush=True)

    # 2. CAA fit at every layer: the prompt, "(" and the letter; read at the letter.
    mcq = REPO / "suites/mcq/sycophancy"
    train = read_items(mcq / "generate_dataset.json", FIT_ITEMS)
    samples = [(chat(tokenizer, q) + "(" + m, chat(tokenizer, q) + "(" + o) for q, m, o in train]
    start = time.perf_counter()
    vector = train_steering_vector(model, tokenizer, samples, layers=None, read_token_index=-1, show_progress=False)
    fit_s = time.perf_counter() - start
    print(f"CAA fit, {len(samples)} items x {cfg.num_hidden_layers} layers: {fit_s:.2f} s", flush=True)
    layers = sorted(vector.layer_activations)
    vectors = {layer: vector.layer_activations[layer] for layer in layers}

    # 3. Sweep: one forward pass per (layer, multiplier, item), steered from the answer position on.
    test = read_items(mcq / "test_dataset_ab.json", SWEEP_ITEMS)
    letter = lambda c: tokenizer("(" + c, add_special_tokens=False)["input_ids"][-1]  # noqa: E731
    prompts = [torch.tensor([tokenizer(chat(tokenizer, q) + "(", add_special_tokens=False)["input_ids"]]) for q, _, _ in test]
    pairs = [(letter(m), letter(o)) for _, m, o in test]
    margins = []
    start = time.perf_counter()
    with torch.inference_mode():
        for layer in layers:
            single = SteeringVector({layer: vectors[layer]}, layer_type="decoder_block")
            per_layer = []
            for m in SWEEP_MULTIPLIERS:
                per_m = []
                for prompt, (yes, no) in zip(prompts, pairs):
                    with single.apply(model, multiplier=m, min_token_index=prompt.shape[1] - 1):
                        logits = model(input_ids=prompt, use_cache=False).logits[0, -1]
                    per_m.append(float(logits[yes] - logits[no]))
                per_layer.append(per_m)
            margins.append(per_layer)
    sweep_s = time.perf_counter() - start
    best = None
    for li, per_layer in enumerate(margins):
        for k, m in enumerate(SWEEP_MULTIPLIERS):
            if m <= 0:
                continue
            score = sum(1 / (1 + pow(2.718281828459045, -x)) for x in per_layer[k]) / len(per_layer[k])
            if best is None or score > best[0]:
                best = (score, layers[li], m)
    print(f"sweep: {sweep_s:.2f} s, chose layer {best[1]} x {best[2]}", flush=True)

    # 4. Greedy decode of 64 tokens, unsteered and with the layer-15 vector x2 at every position.
    prompt_ids = torch.tensor([tokenizer(chat(tokenizer, DECODE_PROMPT), add_special_tokens=False)["input_ids"]])

    def decode():
        with torch.inference_mode():
            out = model.generate(
                input_ids=prompt_ids,
                attention_mask=torch.ones_like(prompt_ids),
                do_sample=False,
                max_new_tokens=DECODE_TOKENS,
                min_new_tokens=DECODE_TOKENS,
                pad_token_id=tokenizer.eos_token_id,
            )
        if out.shape[1] - prompt_ids.shape[1] != DECODE_TOKENS:
            raise SystemExit("decoding stopped early")

    decode_s = median_of_three(decode)
    steer = SteeringVector({DECODE_LAYER: vectors[DECODE_LAYER]}, layer_type="decoder_block")
    with steer.apply(model, multiplier=DECODE_MULTIPLIER, min_token_index=0):
        decode_steered_s = median_of_three(decode)
    print(f"decode {DECODE_TOKENS}: {decode_s:.3f} s, steered {decode_steered_s:.3f} s", flush=True)

    report = {
        "implementation": f"PyTorch {torch.__version__} + transformers {transformers.__version__} + steering-vectors",
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "forward_s": forward_s,
        "fit_s": fit_s,
        "sweep_s": sweep_s,
        "decode_s": decode_s,
        "decode_steered_s": decode_steered_s,
        "chosen_layer": best[1],
        "chosen_multiplier": best[2],
        "margins": margins,
        "vector_norms": [float(vectors[layer].norm()) for layer in layers],
    }
    Path(args.out).write_text(json.dumps(report))
    print(f"wrote {args.out} (threads={torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")


if __name__ == "__main__":
    main()
