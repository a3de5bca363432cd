"""Produces raw GGUF tensor bytes and their dequantised values for each supported type.

The values come from the numpy reference implementation in the `gguf` package (gguf-py),
so the Rust dequantisation kernels can be checked bit for bit against an independent source.

For each type the fixture holds `<TYPE>.raw` (uint8, the bytes as stored in a GGUF file) and
`<TYPE>.values` (float32, the dequantised elements). Types whose quantiser exists in gguf-py
are made by quantising seeded normal data; the others use seeded random bytes whose fp16
scale fields are replaced by finite values in [-2, 2].
"""

import argparse
import json
from pathlib import Path

from common import save_safetensors

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "crates" / "steer-model" / "tests" / "fixtures" / "dequant_reference.safetensors"

SEED = 20240611

# Number of blocks per type; F16 and BF16 use 256 single-element "blocks".
BLOCKS_SMALL = 8
BLOCKS_K = 4
FLOAT_ELEMENTS = 256

TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

# Byte offsets of the fp16 scale fields (d and, where present, dmin) inside one block.
# These follow the block layouts of ggml: Q2_K is scales[16] qs[64] d dmin; Q3_K is
# hmask[32] qs[64] scales[12] d; Q4_K is d dmin scales[12] qs[128]; Q5_K is d dmin
# scales[12] qh[32] qs[128]; Q6_K is ql[128] qh[64] scales[16] d.
FP16_FIELDS = {
    "Q8_0": [0],
    "Q4_0": [0],
    "Q4_1": [0, 2],
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q2_K": [80, 82],
    "Q3_K": [108],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
}


def element_count(name, block_size):
    if name in ("F16", "BF16"):
        return FLOAT_ELEMENTS
    return block_size * (BLOCKS_K if block_size == 256 else BLOCKS_SMALL)


def try_quantize(quants, qtype, data):
    """Returns the quantised bytes, or None when gguf-py has no quantiser for the type."""
    try:
        return quants.quantize(data, qtype)
    except NotImplementedError:
        return None


def random_blocks(np, rng, name, n_blocks, type_size):
    """Random block bytes with every fp16 scale field set to a finite value in [-2, 2]."""
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in FP16_FIELDS[name]:
        scales = rng.uniform(-2.0, 2.0, size=n_blocks).astype(np.float16)
        raw[:, offset : offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def main():
    import gguf
    import numpy as np
    from gguf import quants

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()

    version = getattr(gguf, "__version__", None)
    if version is None:
        from importlib.metadata import version as package_version

        version = package_version("gguf")

    tensors = {}
    methods = {}
    layout = {}
    for index, name in enumerate(TYPES):
        qtype = gguf.GGMLQuantizationType[name]
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_elements = element_count(name, block_size)
        n_blocks = n_elements // block_size
        rng = np.random.default_rng(SEED + index)

        data = rng.standard_normal(n_elements).astype(np.float32)
        raw = try_quantize(quants, qtype, data)
        if raw is not None:
            methods[name] = "quantize"
            raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
        else:
            methods[name] = "random_bytes"
            raw = random_blocks(np, rng, name, n_blocks, type_size)

        if raw.size != n_blocks * type_size:
            raise SystemExit(f"{name}: {raw.size} bytes, expected {n_blocks * type_size}")
        values = np.asarray(quants.dequantize(raw, qtype), dtype=np.float32).reshape(-1)
        if values.size != n_elements:
            raise SystemExit(f"{name}: {values.size} values, expected {n_elements}")
        if not np.all(np.isfinite(values)):
            raise SystemExit(f"{name}: dequantised values contain NaN or inf")

        tensors[f"{name}.raw"] = raw.copy()
        tensors[f"{name}.values"] = values.copy()
        layout[name] = {"block_size": block_size, "type_size": type_size, "n_blocks": n_blocks}
        print(
            f"{name:5} {methods[name]:12} blocks={n_blocks:3} bytes={raw.size:4} "
            f"elements={n_elements:4} absmax={np.abs(values).max():.4g}"
        )

    metadata = {
        "gguf_version": str(version),
        "numpy_version": np.__version__,
        "seed": str(SEED),
        "methods": json.dumps(methods, sort_keys=True),
        "layout": json.dumps(layout, sort_keys=True),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, out, metadata)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
