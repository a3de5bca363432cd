//! The simple level: a method that turns paired activations into one
//! direction, and the adaptor that does everything else.

use steer_model::{Llama, Positions};

use crate::activations::paired_resid;
use crate::steering::{Steering, SteeringKind};
use crate::{FitConfig, MethodError, MethodInfo, Result, SteeringMethod, TrainingSet};

/// A method whose output is one vector computed from the activations of the
/// positive and negative sequence of each pair (row `i` of both belongs to pair `i`).
pub trait DirectionMethod: Send + Sync {
    /// Name, paper and hyperparameters.
    fn info(&self) -> MethodInfo;

    /// The steering direction, `d_model` values. `params` reads hyperparameters.
    fn direction(&self, positive: &[Vec<f32>], negative: &[Vec<f32>], config: &FitConfig) -> Result<Vec<f32>>;
}

/// Makes a [`DirectionMethod`] a [`SteeringMethod`]: reads the residual stream
/// after `config.layer` at the last token of every sequence, asks the method
/// for a direction, and adds it from the last prompt token onward.
pub struct Directional<M>(pub M);

impl<M: DirectionMethod> SteeringMethod for Directional<M> {
    fn info(&self) -> MethodInfo {
        self.0.info()
    }

    fn fit(&self, model: &Llama, data: &TrainingSet, config: &FitConfig) -> Result<Steering> {
        let info = self.0.info();
        config.check_params(&info)?;
        data.check(info.name)?;
        let pairs = &data.pairs;
        let (pos, neg) = paired_resid(model, data, config.layer, config.batch_size)?;
        let vector = self.0.direction(&pos, &neg, config)?;
        let d = model.config().hidden_size;
        if vector.len() != d || vector.iter().any(|v| !v.is_finite()) {
            return Err(MethodError::BadInput(format!(
                "{}: produced {} values (finite: {}), expected {d} finite values",
                info.name,
                vector.len(),
                vector.iter().all(|v| v.is_finite())
            )));
        }
        Steering::fitted(
            &info,
            config,
            pairs.len(),
            SteeringKind::Additive {
                vectors: vec![(config.layer, vector)],
            },
            Positions::PromptEndOnward,
        )
    }
}

/// Checks that `positive` and `negative` are non-empty, paired and of one width.
pub fn check_paired(positive: &[Vec<f32>], negative: &[Vec<f32>]) -> Result<usize> {
    let d = positive.first().map_or(0, Vec::len);
    if positive.is_empty() || positive.len() != negative.len() {
        return Err(MethodError::BadInput(format!(
            "need as many positive as negative activations, and at least one (got {} and {})",
            positive.len(),
            negative.len()
        )));
    }
    if d == 0 || positive.iter().chain(negative).any(|r| r.len() != d) {
        return Err(MethodError::BadInput(
            "activation rows have different or zero widths".into(),
        ));
    }
    Ok(d)
}

/// Mean of `positive[i] − negative[i]` over the pairs.
pub fn mean_difference(positive: &[Vec<f32>], negative: &[Vec<f32>]) -> Result<Vec<f32>> {
    let d = check_paired(positive, negative)?;
    let mut mean = vec![0.0f64; d];
    for (p, n) in positive.iter().zip(negative) {
        for j in 0..d {
            mean[j] += (p[j] - n[j]) as f64;
        }
    }
    let count = positive.len() as f64;
    Ok(mean.into_iter().map(|v| (v / count) as f32).collect())
}

/// Euclidean norm.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt() as f32
}
