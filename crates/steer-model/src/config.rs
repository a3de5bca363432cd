//! The model configuration, with Hugging Face field names.
//!
//! A `ModelConfig` is read from a Hugging Face `config.json` or derived from
//! the `{arch}.*` keys of a GGUF file; both give the same struct, so the rest of
//! the crate never asks where a model came from.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::gguf::GgufFile;

/// The decoder architectures this crate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama 2/3, SmolLM2, TinyLlama, Mistral: no attention biases.
    Llama,
    /// Qwen2: biases on the q, k and v projections.
    Qwen2,
}

impl Architecture {
    /// The name used by GGUF's `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// Llama-3-style RoPE frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    /// Overall scale factor applied to low frequencies.
    pub factor: f32,
    /// Wavelength boundary, as a fraction of the original context, below which frequencies are scaled.
    pub low_freq_factor: f32,
    /// Wavelength boundary above which frequencies are kept.
    pub high_freq_factor: f32,
    /// The context length the model was pretrained with.
    pub original_max_position_embeddings: usize,
}

/// Hyperparameters of a decoder-only transformer, named as in Hugging Face's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which block layout to build.
    pub architecture: Architecture,
    /// Width of the residual stream (d_model).
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when smaller than the query heads).
    pub num_key_value_heads: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f32,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Optional Llama-3 frequency scaling.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab_size: usize,
    /// Longest context the model supports.
    pub max_position_embeddings: usize,
    /// Whether the output head reuses the token embedding.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
}

impl ModelConfig {
    /// The shapes of SmolLM2-135M(-Instruct), the default model: for benchmarks
    /// and backend checks on random weights where the real file is not at hand.
    pub fn smollm2_135m() -> Self {
        ModelConfig {
            architecture: Architecture::Llama,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_scaling: None,
            vocab_size: 49152,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    /// A three-block model small enough to run in milliseconds, with grouped-query
    /// attention (4 query heads over 2 key/value heads): for tests and examples
    /// on random weights. Llama ties its embeddings; Qwen2 has q/k/v biases.
    pub fn tiny(architecture: Architecture) -> Self {
        ModelConfig {
            architecture,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            vocab_size: 97,
            max_position_embeddings: 256,
            tie_word_embeddings: architecture == Architecture::Llama,
            attention_bias: architecture == Architecture::Qwen2,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks internal consistency; `source` names the file in the error.
    pub fn validate(&self, source: &Path) -> Result<(), ModelError> {
        let bad = |what: String| Err(ModelError::invalid(source, what));
        if self.hidden_size == 0 || self.num_hidden_layers == 0 || self.vocab_size == 0 {
            return bad("config has a zero hidden_size, num_hidden_layers or vocab_size".into());
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!("head dimension {} is odd; RoPE needs it even", self.head_dim()));
        }
        if self.num_key_value_heads == 0 || !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !is_positive(self.rms_norm_eps) || !is_positive(self.rope_theta) {
            return bad("rms_norm_eps and rope_theta must be positive".into());
        }
        // Sizes this large would not fit in memory; they signal a corrupt header.
        let limit = 1usize << 20;
        if self.hidden_size > limit
            || self.intermediate_size > limit
            || self.num_hidden_layers > 4096
            || self.vocab_size > (1 << 24)
        {
            return bad(format!(
                "implausible sizes (hidden_size {}, intermediate_size {}, layers {}, vocab {})",
                self.hidden_size, self.intermediate_size, self.num_hidden_layers, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let raw: HfConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::invalid(path, format!("not a valid config.json: {e}")))?;
        let model_type = raw.model_type.as_deref().unwrap_or("");
        let architecture = match model_type {
            "llama" | "mistral" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(ModelError::invalid(
                    path,
                    format!("unsupported architecture '{other}' (supported: llama, mistral, qwen2)"),
                ));
            }
        };
        let rope_scaling = match raw.rope_scaling {
            None => None,
            Some(s) => {
                let kind = s.rope_type.or(s.r#type).unwrap_or_default();
                match kind.as_str() {
                    "llama3" => Some(Llama3RopeScaling {
                        factor: s.factor.unwrap_or(1.0),
                        low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                        high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                        original_max_position_embeddings: s.original_max_position_embeddings.unwrap_or(8192),
                    }),
                    "default" | "" => None,
                    other => {
                        return Err(ModelError::invalid(
                            path,
                            format!("unsupported rope_scaling type '{other}'"),
                        ));
                    }
                }
            }
        };
        let heads = raw.num_attention_heads;
        let cfg = ModelConfig {
            architecture,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(heads),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: raw.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            vocab_size: raw.vocab_size,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw.attention_bias.unwrap_or(architecture == Architecture::Qwen2),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Derives the configuration from GGUF metadata and tensor shapes.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let path = file.path();
        let arch_name = file.get_str("general.architecture").map_err(ModelError::from)?;
        let architecture = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(ModelError::invalid(
                    path,
                    format!("unsupported architecture '{other}' (supported: llama, qwen2)"),
                ));
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let get =
            |k: &str| -> Result<usize, ModelError> { Ok(file.get_u64(&key(k)).map_err(ModelError::from)? as usize) };
        let heads = get("attention.head_count")?;
        let kv_heads = match file
            .opt_u64(&key("attention.head_count_kv"))
            .map_err(ModelError::from)?
        {
            Some(v) => v as usize,
            None => heads,
        };
        let embd = file
            .tensor_info("token_embd.weight")
            .ok_or_else(|| ModelError::invalid(path, "missing tensor 'token_embd.weight'"))?;
        let vocab_size = embd.shape().first().copied().unwrap_or(0);
        let tie = file.tensor_info("output.weight").is_none();
        let cfg = ModelConfig {
            architecture,
            hidden_size: get("embedding_length")?,
            intermediate_size: get("feed_forward_length")?,
            num_hidden_layers: get("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            rms_norm_eps: file
                .get_f32(&key("attention.layer_norm_rms_epsilon"))
                .map_err(ModelError::from)?,
            rope_theta: file
                .opt_f32(&key("rope.freq_base"))
                .map_err(ModelError::from)?
                .unwrap_or(10_000.0),
            rope_scaling: None,
            vocab_size,
            max_position_embeddings: file
                .opt_u64(&key("context_length"))
                .map_err(ModelError::from)?
                .map(|v| v as usize)
                .unwrap_or(2048),
            tie_word_embeddings: tie,
            attention_bias: architecture == Architecture::Qwen2,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }
}

/// Whether `v` is a positive number (false for NaN).
pub(crate) fn is_positive(v: f32) -> bool {
    v > 0.0 && v.is_finite()
}

#[derive(Deserialize)]
struct HfRopeScaling {
    rope_type: Option<String>,
    r#type: Option<String>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f32>,
    rope_scaling: Option<HfRopeScaling>,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
}
