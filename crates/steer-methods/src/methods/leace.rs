//! LEACE — least-squares concept erasure.
//!
//! Belrose, Schneider-Joseph, Ravfogel, Cotterell, Raff, Biderman, "LEACE:
//! Perfect linear concept erasure in closed form", NeurIPS 2023
//! (arXiv:2306.03819). With `W = Σ^{-1/2}` (pseudo-inverse square root of the
//! activation covariance over both classes) and `P` the orthogonal projection
//! onto `W Σ_xz`, the eraser `r(x) = x − W⁺ P W (x − μ)` makes the class means
//! equal, so no linear classifier beats a constant one, while moving `x` as
//! little as possible. For a binary concept `Σ_xz` is one column, parallel to
//! the difference of the class means, so the eraser is a rank-one affine map.
//! Multiplier 1 erases; 2 reflects the concept (swaps the class means); −1
//! doubles it. It acts from the last prompt token on, like CAA.

use steer_model::{Llama, Positions};

use crate::activations::paired_resid;
use crate::linalg::{covariance, mean, matvec, sqrt_and_inv_sqrt};
use crate::steering::{Steering, SteeringKind};
use crate::{FitConfig, MethodError, MethodInfo, Result, SteeringMethod, TrainingSet};

/// Closed-form linear concept erasure of the behaviour.
pub struct Leace;

/// The eraser for the binary concept "row of `positive` vs row of `negative`": `(A row-major, b)`
/// with `r(x) = A x + b`.
pub fn eraser(positive: &[Vec<f32>], negative: &[Vec<f32>]) -> Result<(Vec<f32>, Vec<f32>)> {
    let d = positive.first().map_or(0, Vec::len);
    if positive.is_empty() || negative.is_empty() || d == 0 || positive.iter().chain(negative).any(|r| r.len() != d)
    {
        return Err(MethodError::BadInput(
            "leace: both classes need activation rows of one non-zero width".into(),
        ));
    }
    let all: Vec<Vec<f32>> = positive.iter().chain(negative).cloned().collect();
    let mu = mean(&all);
    let cov = covariance(&all, &mu);
    let (half, inv_half) = sqrt_and_inv_sqrt(&cov, d)?;
    let (mu_p, mu_n) = (mean(positive), mean(negative));
    let delta: Vec<f64> = mu_p.iter().zip(&mu_n).map(|(p, n)| p - n).collect();
    let w_delta = matvec(&inv_half, &delta);
    let len = w_delta.iter().map(|x| x * x).sum::<f64>().sqrt();
    if len < 1e-12 {
        // The class means already coincide: there is nothing linear to erase.
        let mut id = vec![0.0f32; d * d];
        (0..d).for_each(|i| id[i * d + i] = 1.0);
        return Ok((id, vec![0.0; d]));
    }
    let u: Vec<f64> = w_delta.iter().map(|x| x / len).collect();
    // r(x) = x − a (cᵀ (x − μ)) with a = Σ^{1/2} u and c = Σ^{-1/2} u.
    let a = matvec(&half, &u);
    let c = matvec(&inv_half, &u);
    let c_mu: f64 = c.iter().zip(&mu).map(|(p, q)| p * q).sum();
    let mut matrix = vec![0.0f32; d * d];
    for i in 0..d {
        for j in 0..d {
            let id = if i == j { 1.0 } else { 0.0 };
            matrix[i * d + j] = (id - a[i] * c[j]) as f32;
        }
    }
    let bias = a.iter().map(|ai| (ai * c_mu) as f32).collect();
    Ok((matrix, bias))
}

impl SteeringMethod for Leace {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "leace",
            paper: "Belrose et al. 2023, LEACE: Perfect linear concept erasure in closed form, arXiv:2306.03819",
            summary: "the least-squares affine eraser that makes the behaviour linearly undecodable at the layer",
            hyperparameters: &[],
            multipliers: &[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0],
        }
    }

    fn fit(&self, model: &Llama, data: &TrainingSet, config: &FitConfig) -> Result<Steering> {
        let info = self.info();
        config.check_params(&info)?;
        config.check_layer(model)?;
        data.check(info.name)?;
        let (pos, neg) = paired_resid(model, data, config.layer, config.batch_size)?;
        let (matrix, bias) = eraser(&pos, &neg)?;
        Steering::fitted(
            &info,
            config,
            data.pairs.len(),
            SteeringKind::Affine {
                layer: config.layer,
                matrix,
                bias,
            },
            Positions::PromptEndOnward,
        )
    }
}
