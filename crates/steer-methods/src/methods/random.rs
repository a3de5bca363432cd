//! Random-direction baseline.
//!
//! A control baseline with no paper of its own: a direction drawn
//! uniformly on the sphere, scaled to the norm of the CAA mean difference at
//! the same layer, so any effect it has is what an equally large but
//! meaningless push does. Reliability studies of steering vectors (Tan et al.
//! 2024, "Analyzing the Generalization and Reliability of Steering Vectors",
//! arXiv:2407.12404) are why every reported effect needs such a control.

use rand::{Rng, SeedableRng};

use crate::direction::{DirectionMethod, mean_difference, norm};
use crate::{FitConfig, MethodInfo, Result};

/// Random direction with the norm of the mean difference.
pub struct RandomDirection;

impl DirectionMethod for RandomDirection {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "random",
            paper: "control baseline (no source paper); motivated by Tan et al. 2024, arXiv:2407.12404",
            summary: "a seeded uniformly random direction scaled to the norm of the CAA mean difference",
            hyperparameters: &[],
            multipliers: crate::RELATIVE_GRID,
        }
    }

    fn direction(&self, positive: &[Vec<f32>], negative: &[Vec<f32>], config: &FitConfig) -> Result<Vec<f32>> {
        let target = norm(&mean_difference(positive, negative)?);
        let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
        // Box–Muller normals give a direction uniform on the sphere.
        let mut v: Vec<f32> = (0..positive[0].len())
            .map(|_| {
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random::<f64>();
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
            })
            .collect();
        let scale = target / norm(&v).max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x *= scale);
        Ok(v)
    }
}
