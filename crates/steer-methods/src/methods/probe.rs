//! Linear-probe direction.
//!
//! The weight vector of an L2-regularised logistic regression that separates
//! positive from negative activations: a linear probe (Alain & Bengio 2016,
//! "Understanding intermediate layers using linear classifier probes",
//! arXiv:1610.01644) used as a steering direction, one of the directions
//! compared in Li et al. 2023, "Inference-Time Intervention" (arXiv:2306.03341).
//! Activations are centred and divided by one global scale
//! before fitting (plain gradient descent, zero start); the direction is
//! mapped back, oriented towards the positive class and scaled to the length
//! of the mean difference projected on it, so multipliers are comparable with
//! CAA's.

use crate::direction::{DirectionMethod, check_paired, mean_difference};
use crate::{FitConfig, HyperParam, MethodError, MethodInfo, Result};

/// Logistic-regression probe direction.
pub struct Probe;

static PARAMS: [HyperParam; 3] = [
    HyperParam {
        name: "l2",
        default: 1e-2,
        doc: "L2 penalty on the weights (on standardised activations)",
    },
    HyperParam {
        name: "steps",
        default: 300.0,
        doc: "gradient-descent steps",
    },
    HyperParam {
        name: "lr",
        default: 0.5,
        doc: "gradient-descent step size",
    },
];

impl DirectionMethod for Probe {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "probe",
            paper: "Alain & Bengio 2016, linear classifier probes, arXiv:1610.01644; probe directions as in Li et al. 2023, Inference-Time Intervention, arXiv:2306.03341",
            summary: "weights of an L2-regularised logistic regression separating positive from negative activations",
            hyperparameters: &PARAMS,
            multipliers: crate::RELATIVE_GRID,
        }
    }

    fn direction(&self, positive: &[Vec<f32>], negative: &[Vec<f32>], config: &FitConfig) -> Result<Vec<f32>> {
        let d = check_paired(positive, negative)?;
        let info = self.info();
        let l2 = config.param(&info, "l2")?;
        let steps = config.param(&info, "steps")?.max(1.0) as usize;
        let lr = config.param(&info, "lr")?;
        let rows: Vec<(&Vec<f32>, f64)> = positive
            .iter()
            .map(|r| (r, 1.0))
            .chain(negative.iter().map(|r| (r, 0.0)))
            .collect();
        let n = rows.len() as f64;
        let mut centre = vec![0.0f64; d];
        for (r, _) in &rows {
            for j in 0..d {
                centre[j] += r[j] as f64 / n;
            }
        }
        let scale = (rows
            .iter()
            .map(|(r, _)| (0..d).map(|j| (r[j] as f64 - centre[j]).powi(2)).sum::<f64>())
            .sum::<f64>()
            / (n * d as f64))
            .sqrt();
        if scale.is_nan() || scale <= 0.0 {
            return Err(MethodError::BadInput("probe: the activations do not vary".into()));
        }
        let x: Vec<Vec<f64>> = rows
            .iter()
            .map(|(r, _)| (0..d).map(|j| (r[j] as f64 - centre[j]) / scale).collect())
            .collect();
        let mut w = vec![0.0f64; d];
        let mut b = 0.0f64;
        for _ in 0..steps {
            let mut grad = vec![0.0f64; d];
            let mut grad_b = 0.0;
            for (xi, (_, y)) in x.iter().zip(&rows) {
                let z: f64 = xi.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>() + b;
                let err = 1.0 / (1.0 + (-z).exp()) - y;
                for j in 0..d {
                    grad[j] += err * xi[j] / n;
                }
                grad_b += err / n;
            }
            for j in 0..d {
                w[j] -= lr * (grad[j] + l2 * w[j]);
            }
            b -= lr * grad_b;
        }
        // Undo the global scale (a positive factor: the direction is unchanged) and orient.
        let len = w.iter().map(|v| v * v).sum::<f64>().sqrt();
        if len.is_nan() || len <= 0.0 {
            return Err(MethodError::BadInput(
                "probe: the classes could not be separated at all".into(),
            ));
        }
        let unit: Vec<f64> = w.iter().map(|v| v / len).collect();
        let mean = mean_difference(positive, negative)?;
        let along: f64 = unit.iter().zip(&mean).map(|(u, m)| u * *m as f64).sum();
        Ok(unit.iter().map(|u| (u * along) as f32).collect())
    }
}
