"""Shared helpers for the reference scripts: locating and loading the default GGUF model."""

import hashlib
import os
from pathlib import Path

# The hub is never contacted; everything is loaded from the local GGUF file.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL_DIR = Path.home() / ".cache" / "steerbench" / "models"


def model_path(path_arg=None):
    """Returns the GGUF path given on the command line, or the default cache location."""
    if path_arg:
        return Path(path_arg).expanduser().resolve()
    return DEFAULT_MODEL_DIR / MODEL_FILE


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(path, attn_implementation=None):
    """Loads tokenizer and float32 model from a GGUF file; transformers dequantises the weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"model file not found: {path}")
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    kwargs = {"gguf_file": path.name, "dtype": torch.float32}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), **kwargs)
    model.eval()
    return tokenizer, model


def block_output(output):
    """Decoder blocks return either a tensor or a tuple whose first item is the hidden state."""
    return output[0] if isinstance(output, tuple) else output


SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32", "uint8": "U8"}


def save_safetensors(tensors, path, metadata=None):
    """Writes a safetensors file with sorted keys, so that identical data gives identical bytes."""
    import json

    import numpy as np

    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        dtype = SAFETENSORS_DTYPES[array.dtype.name]
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for data in chunks:
            handle.write(data)
