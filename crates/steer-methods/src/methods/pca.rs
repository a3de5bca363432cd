//! PCA of differences — the RepE reading vector.
//!
//! Zou et al. 2023, "Representation Engineering: A Top-Down Approach to AI
//! Transparency" (arXiv:2310.01405): the first principal component of the
//! paired activation differences. The component is oriented so the mean
//! difference projects positively on it, and scaled to the length of that
//! projection, so multipliers are comparable with CAA's. Computed by power
//! iteration on the centred differences (seeded start).

use rand::{Rng, SeedableRng};

use crate::direction::{DirectionMethod, check_paired, mean_difference, norm};
use crate::{FitConfig, MethodError, MethodInfo, Result};

/// First principal component of the paired differences.
pub struct PcaDifferences;

static PARAMS: [crate::HyperParam; 1] = [crate::HyperParam {
    name: "iterations",
    default: 200.0,
    doc: "power-iteration steps for the leading principal component",
}];

impl DirectionMethod for PcaDifferences {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "pca",
            paper: "Zou et al. 2023, Representation Engineering: A Top-Down Approach to AI Transparency, arXiv:2310.01405",
            summary: "first principal component of the paired activation differences, oriented and scaled by the mean difference",
            hyperparameters: &PARAMS,
            multipliers: crate::RELATIVE_GRID,
        }
    }

    fn direction(&self, positive: &[Vec<f32>], negative: &[Vec<f32>], config: &FitConfig) -> Result<Vec<f32>> {
        let d = check_paired(positive, negative)?;
        if positive.len() < 2 {
            return Err(MethodError::BadInput("pca needs at least two pairs".into()));
        }
        let iterations = config.param(&self.info(), "iterations")?.max(1.0) as usize;
        let mean = mean_difference(positive, negative)?;
        let diffs: Vec<Vec<f64>> = positive
            .iter()
            .zip(negative)
            .map(|(p, n)| (0..d).map(|j| (p[j] - n[j] - mean[j]) as f64).collect())
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
        let mut v: Vec<f64> = (0..d).map(|_| rng.random::<f64>() - 0.5).collect();
        for _ in 0..iterations {
            // v ← Xᵀ X v, normalised.
            let proj: Vec<f64> = diffs
                .iter()
                .map(|x| x.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            let mut next = vec![0.0f64; d];
            for (x, p) in diffs.iter().zip(&proj) {
                for j in 0..d {
                    next[j] += x[j] * p;
                }
            }
            let n = next.iter().map(|x| x * x).sum::<f64>().sqrt();
            if n == 0.0 {
                return Err(MethodError::BadInput("pca: the differences do not vary".into()));
            }
            v = next.into_iter().map(|x| x / n).collect();
        }
        let along: f64 = v.iter().zip(&mean).map(|(a, b)| a * *b as f64).sum();
        let sign = if along < 0.0 { -1.0 } else { 1.0 };
        let length = if along.abs() > 0.0 {
            along.abs()
        } else {
            norm(&mean) as f64
        };
        Ok(v.into_iter().map(|x| (sign * x * length) as f32).collect())
    }
}
