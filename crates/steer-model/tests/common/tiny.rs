//! A tiny random-initialised model shared by the fast tests.

use steer_model::{Architecture, Backend, Llama, ModelConfig, WeightSource};

/// The tiny test configuration (see `ModelConfig::tiny`).
pub fn tiny_config(architecture: Architecture) -> ModelConfig {
    ModelConfig::tiny(architecture)
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
