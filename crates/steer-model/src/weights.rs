//! Weight sources: GGUF files and Hugging Face safetensors, both seen through
//! Hugging Face tensor names and row-major f32 values.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::config::{Architecture, ModelConfig};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::host::HostTensor;

/// Where the weights of a model live.
pub enum WeightSource {
    /// A GGUF file (quantised weights are dequantised on read).
    Gguf(GgufFile),
    /// One or more safetensors files of a Hugging Face checkpoint.
    Safetensors(SafetensorsShards),
    /// Tensors already in memory, by Hugging Face name (tests, random models).
    Memory(HashMap<String, HostTensor>),
}

impl WeightSource {
    /// Reads the tensor called `hf_name` (Hugging Face naming), or `None` when absent.
    pub fn get(&self, hf_name: &str, cfg: &ModelConfig) -> Result<Option<HostTensor>> {
        match self {
            WeightSource::Gguf(file) => gguf_tensor(file, hf_name, cfg),
            WeightSource::Safetensors(shards) => shards.get(hf_name),
            WeightSource::Memory(map) => Ok(map.get(hf_name).cloned()),
        }
    }

    /// Seeded random weights of the shapes `cfg` asks for: norms near 1,
    /// projections with standard deviation `1/sqrt(fan_in)`. For tests and for
    /// benchmarks that must not ship real weights.
    pub fn random(cfg: &ModelConfig, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut map = HashMap::new();
        let mut add = |name: String, shape: Vec<usize>, std: f32, mean: f32| {
            let n: usize = shape.iter().product();
            // Sums of uniforms approximate a normal well enough for weights.
            let data = (0..n)
                .map(|_| {
                    let u: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum();
                    mean + std * u * 1.732
                })
                .collect();
            map.insert(name, HostTensor { shape, data });
        };
        let d = cfg.hidden_size;
        let hd = cfg.head_dim();
        let q = cfg.num_attention_heads * hd;
        let kv = cfg.num_key_value_heads * hd;
        let f = cfg.intermediate_size;
        let inv = |n: usize| 1.0 / (n as f32).sqrt();
        add("model.embed_tokens.weight".into(), vec![cfg.vocab_size, d], 1.0, 0.0);
        if !cfg.tie_word_embeddings {
            add("lm_head.weight".into(), vec![cfg.vocab_size, d], inv(d), 0.0);
        }
        add("model.norm.weight".into(), vec![d], 0.1, 1.0);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            add(format!("{p}.input_layernorm.weight"), vec![d], 0.1, 1.0);
            add(format!("{p}.post_attention_layernorm.weight"), vec![d], 0.1, 1.0);
            add(format!("{p}.self_attn.q_proj.weight"), vec![q, d], inv(d), 0.0);
            add(format!("{p}.self_attn.k_proj.weight"), vec![kv, d], inv(d), 0.0);
            add(format!("{p}.self_attn.v_proj.weight"), vec![kv, d], inv(d), 0.0);
            add(format!("{p}.self_attn.o_proj.weight"), vec![d, q], inv(q), 0.0);
            if cfg.attention_bias {
                add(format!("{p}.self_attn.q_proj.bias"), vec![q], 0.1, 0.0);
                add(format!("{p}.self_attn.k_proj.bias"), vec![kv], 0.1, 0.0);
                add(format!("{p}.self_attn.v_proj.bias"), vec![kv], 0.1, 0.0);
            }
            add(format!("{p}.mlp.gate_proj.weight"), vec![f, d], inv(d), 0.0);
            add(format!("{p}.mlp.up_proj.weight"), vec![f, d], inv(d), 0.0);
            add(format!("{p}.mlp.down_proj.weight"), vec![d, f], inv(f), 0.0);
        }
        WeightSource::Memory(map)
    }

    /// Reads `hf_name` and checks its shape; a missing tensor is an error.
    pub fn require(&self, hf_name: &str, shape: &[usize], cfg: &ModelConfig) -> Result<HostTensor> {
        let tensor = self
            .get(hf_name, cfg)?
            .ok_or_else(|| ModelError::invalid(self.path(), format!("missing tensor '{hf_name}'")))?;
        if tensor.shape != shape {
            return Err(ModelError::invalid(
                self.path(),
                format!("tensor '{hf_name}' has shape {:?}, expected {:?}", tensor.shape, shape),
            ));
        }
        Ok(tensor)
    }

    /// The file (or directory) the weights come from.
    pub fn path(&self) -> &Path {
        match self {
            WeightSource::Gguf(file) => file.path(),
            WeightSource::Safetensors(shards) => &shards.dir,
            WeightSource::Memory(_) => Path::new("<memory>"),
        }
    }
}

/// Seeded random token ids, `rows` sequences of `len` tokens below `vocab`:
/// inputs for benchmarks and backend checks.
pub fn random_tokens(rows: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vocab = vocab.max(1) as u32;
    (0..rows)
        .map(|_| (0..len).map(|_| rng.random_range(0..vocab)).collect())
        .collect()
}

/// Maps a Hugging Face tensor name to the GGUF name llama.cpp uses.
fn gguf_name(hf_name: &str) -> Option<String> {
    let fixed = match hf_name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        // Per-frequency RoPE divisors that llama.cpp stores for Llama 3.1-style scaling.
        "rope_freqs" => Some("rope_freqs.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match suffix {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

fn gguf_tensor(file: &GgufFile, hf_name: &str, cfg: &ModelConfig) -> Result<Option<HostTensor>> {
    let Some(name) = gguf_name(hf_name) else {
        return Ok(None);
    };
    let Some(info) = file.tensor_info(&name) else {
        return Ok(None);
    };
    let shape = info.shape();
    let mut data = file.dequantize(&name)?;
    // llama.cpp's converter reorders the rows of each Llama q/k head so that
    // RoPE can rotate adjacent pairs; undo it to get the Hugging Face layout,
    // whose RoPE rotates the two halves of each head.
    if cfg.architecture == Architecture::Llama {
        let heads = if hf_name.ends_with("q_proj.weight") || hf_name.ends_with("q_proj.bias") {
            Some(cfg.num_attention_heads)
        } else if hf_name.ends_with("k_proj.weight") || hf_name.ends_with("k_proj.bias") {
            Some(cfg.num_key_value_heads)
        } else {
            None
        };
        if let Some(heads) = heads {
            let cols: usize = shape[1..].iter().product();
            data = unpermute_rows(&data, shape[0], cols, heads).ok_or_else(|| {
                ModelError::invalid(
                    file.path(),
                    format!(
                        "tensor '{name}' has {} rows, not divisible into {heads} heads of even size",
                        shape[0]
                    ),
                )
            })?;
        }
    }
    Ok(HostTensor::new(shape, data))
}

/// Inverts llama.cpp's q/k row permutation: within each head of `head_dim`
/// rows, GGUF row `2i + j` holds Hugging Face row `j * head_dim / 2 + i`.
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, heads: usize) -> Option<Vec<f32>> {
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) || data.len() != rows * cols {
        return None;
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + 2 * i + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Some(out)
}

/// The safetensors files of a Hugging Face checkpoint, memory-mapped.
pub struct SafetensorsShards {
    dir: PathBuf,
    files: Vec<(PathBuf, Mmap)>,
    /// Tensor name → index into `files`.
    index: HashMap<String, usize>,
}

impl SafetensorsShards {
    /// Opens `model.safetensors`, or every shard listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let names: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::invalid(&index_path, format!("not valid JSON: {e}")))?;
            let map = value
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::invalid(&index_path, "no 'weight_map' object"))?;
            let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
            files.sort();
            files.dedup();
            files
                .into_iter()
                .map(|f| {
                    if f.contains('/') || f.contains("..") {
                        Err(ModelError::invalid(
                            &index_path,
                            format!("shard name '{f}' is not a plain file name"),
                        ))
                    } else {
                        Ok(dir.join(f))
                    }
                })
                .collect::<Result<_>>()?
        } else {
            return Err(ModelError::NotFound(format!(
                "{}: no model.safetensors or model.safetensors.index.json",
                dir.display()
            )));
        };
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for path in names {
            let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
            // Safety: the map is read-only and the file is not modified while mapped.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
            let tensors = SafeTensors::deserialize(&map)
                .map_err(|e| ModelError::invalid(&path, format!("not a valid safetensors file: {e}")))?;
            for name in tensors.names() {
                index.insert(name.to_string(), files.len());
            }
            files.push((path, map));
        }
        Ok(SafetensorsShards {
            dir: dir.to_path_buf(),
            files,
            index,
        })
    }

    /// Reads one tensor as f32.
    pub fn get(&self, name: &str) -> Result<Option<HostTensor>> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let (path, map) = &self.files[i];
        let tensors = SafeTensors::deserialize(map)
            .map_err(|e| ModelError::invalid(path, format!("not a valid safetensors file: {e}")))?;
        let view = tensors
            .tensor(name)
            .map_err(|e| ModelError::invalid(path, format!("tensor '{name}': {e}")))?;
        let bytes = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::invalid(
                    path,
                    format!("tensor '{name}' has dtype {other:?}; only F32, F16 and BF16 are supported"),
                ));
            }
        };
        let shape = view.shape().to_vec();
        HostTensor::new(shape, data)
            .map(Some)
            .ok_or_else(|| ModelError::invalid(path, format!("tensor '{name}': shape does not match its data")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies llama.cpp's permutation (the forward direction) for the test.
    fn permute_rows(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
        let head_dim = rows / heads;
        let half = head_dim / 2;
        let mut out = vec![0.0; data.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..half {
                    let src = h * head_dim + j * half + i;
                    let dst = h * head_dim + 2 * i + j;
                    out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        let (rows, cols, heads) = (12, 3, 2);
        let data: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let permuted = permute_rows(&data, rows, cols, heads);
        assert_ne!(permuted, data);
        assert_eq!(unpermute_rows(&permuted, rows, cols, heads).unwrap(), data);
        // Head 0, row 1 of the GGUF layout is Hugging Face row 3 (j = 1, i = 0).
        assert_eq!(&permuted[cols..2 * cols], &data[3 * cols..4 * cols]);
    }

    #[test]
    fn unpermute_rejects_odd_heads() {
        assert!(unpermute_rows(&[0.0; 6], 3, 2, 1).is_none());
        assert!(unpermute_rows(&[0.0; 8], 4, 2, 3).is_none());
    }

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.3.mlp.down_proj.weight").unwrap(),
            "blk.3.ffn_down.weight"
        );
        assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
        assert!(gguf_name("model.layers.x.mlp.down_proj.weight").is_none());
    }
}
