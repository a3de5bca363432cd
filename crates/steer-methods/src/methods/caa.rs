//! CAA — Contrastive Activation Addition.
//!
//! Panickssery (Rimsky), Gabrieli, Schulz, Tong, Hubinger, Turner, "Steering
//! Llama 2 via Contrastive Activation Addition", 2023 (arXiv:2312.06681).
//! The steering vector is the mean, over A/B prompts, of the residual stream at
//! the answer-letter token when the letter matches the behaviour minus the
//! same when it does not; it is added after the prompt at layer L. The vector
//! is kept unnormalised, so multiplier 1 adds the mean difference itself.

use crate::direction::{DirectionMethod, mean_difference};
use crate::{FitConfig, MethodInfo, Result};

/// Contrastive Activation Addition.
pub struct Caa;

impl DirectionMethod for Caa {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "caa",
            paper: "Panickssery et al. 2023, Steering Llama 2 via Contrastive Activation Addition, arXiv:2312.06681",
            summary: "mean difference of the residual stream at the answer letter between matching and non-matching A/B completions",
            hyperparameters: &[],
            multipliers: crate::RELATIVE_GRID,
        }
    }

    fn direction(&self, positive: &[Vec<f32>], negative: &[Vec<f32>], _config: &FitConfig) -> Result<Vec<f32>> {
        mean_difference(positive, negative)
    }
}
