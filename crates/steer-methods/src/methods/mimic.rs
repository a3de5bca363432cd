//! MiMiC — mean and covariance matching by an affine map.
//!
//! Singh, Ravfogel, Herzig, Aharoni, Cotterell, Kumaraguru, "Representation
//! Surgery: Theory and Practice of Affine Steering", ICML 2024
//! (arXiv:2402.09631). The map that moves the source class (activations of
//! the behaviour-non-matching completions) onto the target class (matching
//! ones) with the least expected squared displacement, when both are treated
//! as Gaussians, is the optimal-transport map
//! `A = Σs^{-1/2} (Σs^{1/2} Σt Σs^{1/2})^{1/2} Σs^{-1/2}`, `b = μt − A μs`.
//! Both covariances are shrunk towards a multiple of the identity, because the
//! training sets are smaller than the model dimension and the paper's
//! estimator assumes invertible covariances. Multiplier 1 applies the map,
//! 0 leaves the model alone; it acts from the last prompt token on, like CAA.

use steer_model::{Llama, Positions};

use crate::activations::paired_resid;
use crate::linalg::{covariance, matmul, matvec, mean, shrink, sqrt_and_inv_sqrt};
use crate::steering::{Steering, SteeringKind};
use crate::{FitConfig, HyperParam, MethodError, MethodInfo, Result, SteeringMethod, TrainingSet};

/// Mean and covariance matching (affine optimal transport between the classes).
pub struct Mimic;

static PARAMS: [HyperParam; 1] = [HyperParam {
    name: "shrinkage",
    default: 0.1,
    doc: "weight α of the identity target in (1 − α) Σ + α (tr Σ / d) I, for both classes",
}];

/// The map taking `N(μs, Σs)` to `N(μt, Σt)`: `(A row-major, b)`.
pub fn transport_map(source: &[Vec<f32>], target: &[Vec<f32>], shrinkage: f64) -> Result<(Vec<f32>, Vec<f32>)> {
    let d = source.first().map_or(0, Vec::len);
    if source.is_empty() || target.is_empty() || d == 0 || source.iter().chain(target).any(|r| r.len() != d) {
        return Err(MethodError::BadInput(
            "mimic: both classes need activation rows of one non-zero width".into(),
        ));
    }
    if !(0.0..=1.0).contains(&shrinkage) {
        return Err(MethodError::BadInput(format!("mimic: shrinkage {shrinkage} is not in [0, 1]")));
    }
    let (mu_s, mu_t) = (mean(source), mean(target));
    let mut cov_s = covariance(source, &mu_s);
    let mut cov_t = covariance(target, &mu_t);
    shrink(&mut cov_s, d, shrinkage);
    shrink(&mut cov_t, d, shrinkage);
    let (s_half, s_inv_half) = sqrt_and_inv_sqrt(&cov_s, d)?;
    let middle = matmul(&matmul(&s_half, &cov_t, d), &s_half, d);
    let (middle_half, _) = sqrt_and_inv_sqrt(&middle, d)?;
    let a = matmul(&matmul(&s_inv_half, &middle_half, d), &s_inv_half, d);
    let a_mu = matvec(&a, &mu_s);
    let b: Vec<f32> = mu_t.iter().zip(&a_mu).map(|(t, m)| (t - m) as f32).collect();
    Ok((a.into_iter().map(|x| x as f32).collect(), b))
}

impl SteeringMethod for Mimic {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "mimic",
            paper: "Singh et al. 2024, Representation Surgery: Theory and Practice of Affine Steering, arXiv:2402.09631",
            summary: "the affine map matching the mean and covariance of non-matching activations to matching ones",
            hyperparameters: &PARAMS,
            multipliers: &[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0],
        }
    }

    fn fit(&self, model: &Llama, data: &TrainingSet, config: &FitConfig) -> Result<Steering> {
        let info = self.info();
        config.check_params(&info)?;
        config.check_layer(model)?;
        data.check(info.name)?;
        let (pos, neg) = paired_resid(model, data, config.layer, config.batch_size)?;
        let (matrix, bias) = transport_map(&neg, &pos, config.param(&info, "shrinkage")?)?;
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
