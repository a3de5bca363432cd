"""Times the validation sweep the way a researcher's PyTorch script runs it:
for every layer and multiplier, one forward pass of all items with a forward
hook adding `multiplier × vector` to that layer's output at the answer
position, and the A-vs-B logit difference read there. Random weights of the
default model's shapes (SmolLM2-135M), eager attention; the workload of
`steerbench sweep-bench` (30 layers × multipliers × items × tokens).

Prints one line per (device, dtype)."""

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--seq", type=int, default=150)
    parser.add_argument("--multipliers", type=float, nargs="+", default=[-2, -1, 0, 1, 2])
    args = parser.parse_args()
    cfg = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, rms_norm_eps=1e-5, rope_theta=100000.0, vocab_size=49152,
        max_position_embeddings=8192, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for dtype in (torch.float32, torch.bfloat16):
        model = LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval()
        model.config._attn_implementation = "eager"
        ids = torch.randint(0, cfg.vocab_size, (args.items, args.seq), device=device)
        vectors = torch.randn(cfg.num_hidden_layers, cfg.hidden_size, device=device, dtype=dtype)
        vectors = 5.0 * vectors / vectors.norm(dim=-1, keepdim=True)
        a = torch.tensor([65 + i % 2 for i in range(args.items)], device=device)
        b = torch.tensor([66 - i % 2 for i in range(args.items)], device=device)

        def sweep():
            out = []
            for layer in range(cfg.num_hidden_layers):
                for m in args.multipliers:
                    def hook(_module, _inputs, output, layer=layer, m=m):
                        hidden = output[0] if isinstance(output, tuple) else output
                        hidden[:, -1, :] += m * vectors[layer]
                        return output

                    handle = model.model.layers[layer].register_forward_hook(hook)
                    logits = model(ids, logits_to_keep=1).logits[:, -1, :]
                    handle.remove()
                    rows = torch.arange(args.items, device=device)
                    out.append((logits[rows, a] - logits[rows, b]).float())
            return torch.stack(out)

        with torch.inference_mode():
            sweep()
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            sweep()
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        n = cfg.num_hidden_layers * len(args.multipliers) * args.items
        print(f"torch {torch.__version__} {device} {str(dtype).split('.')[-1]} sweep "
              f"{cfg.num_hidden_layers}x{len(args.multipliers)}x{args.items}x{args.seq}: "
              f"{seconds:.2f} s, {n / seconds:.0f} scores/s")


if __name__ == "__main__":
    main()
