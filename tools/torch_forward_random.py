"""Times a batched forward pass of a randomly initialised model with the
default model's shapes (SmolLM2-135M) in PyTorch + transformers, the way a
researcher's script runs it: eager attention, all logits returned.

Used beside `steerbench backends` on machines where the real weights cannot
travel. Prints one line per (device, dtype, batch)."""

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[8])
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cfg = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, rms_norm_eps=1e-5, rope_theta=100000.0, vocab_size=49152,
        max_position_embeddings=8192, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    devices = ["cuda"] if torch.cuda.is_available() else ["cpu"]
    for device in devices:
        for dtype in (torch.float32, torch.bfloat16):
            model = LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval()
            model.config._attn_implementation = "eager"
            for batch in args.batches:
                ids = torch.randint(0, cfg.vocab_size, (batch, args.seq), device=device)
                with torch.inference_mode():
                    model(ids)
                    times = []
                    for _ in range(args.repeat):
                        if device == "cuda":
                            torch.cuda.synchronize()
                        start = time.perf_counter()
                        model(ids).logits
                        if device == "cuda":
                            torch.cuda.synchronize()
                        times.append(time.perf_counter() - start)
                median = statistics.median(times)
                print(f"torch {torch.__version__} {device} {str(dtype).split('.')[-1]} "
                      f"{batch}x{args.seq}: {median * 1e3:.1f} ms, {batch * args.seq / median:.0f} tokens/s")


if __name__ == "__main__":
    main()
