//! A tiny random-initialised model shared by the fast tests.

use steer_model::{Architecture, Backend, Llama, ModelConfig, WeightSource};

/// A Llama-shaped config small enough to run in milliseconds, with GQA (4 query
/// heads over 2 key/value heads) so the grouped path is exercised.
pub fn tiny_config(architecture: Architecture) -> ModelConfig {
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

/// The tiny model with seeded random weights on the CPU backend.
pub fn tiny_model(architecture: Architecture, seed: u64) -> Llama {
    let cfg = tiny_config(architecture);
    let device = Backend::Cpu.device().expect("the CPU backend is always available");
    Llama::load(&cfg, &WeightSource::random(&cfg, seed), &device).expect("random weights match the config")
}

/// Largest absolute difference between two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}
