//! Comparable steering strengths.
//!
//! A raw multiplier means nothing across methods, layers or models: a CAA
//! vector is an unnormalised mean difference, ICV is norm-preserving, FV is
//! a sum of head outputs. The protocol therefore states every strength
//! relative to the residual stream it acts on: the norm of the displacement
//! a steering makes at multiplier 1, divided by the mean residual-stream norm
//! at its layer over the training prompts (the last-token activations of both
//! completions of every pair).
//!
//! Additive steerings at one layer are rescaled so that multiplier 1 adds a
//! vector exactly as long as that mean norm; every additive method then runs
//! the one grid of fractions [`steer_methods::RELATIVE_GRID`], and the raw
//! multiplier of the method's own vector (`fraction × mean norm / ‖v‖`) is
//! recorded beside it. Affine maps keep their own grid; their relative
//! strength per unit of multiplier is the mean norm of `A h + b − h` over the
//! same activations, divided by the same mean norm. Steerings at several
//! layers (ICV) and prompt prefixes have no single residual stream to be
//! compared with and report none.

use steer_methods::{Steering, SteeringKind, TrainingSet};
use steer_model::Llama;

use crate::Result;

/// How strong a steering is at multiplier 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Strength {
    /// Norm of the displacement at multiplier 1 over the mean residual-stream
    /// norm at the steering's layer (`None`: not one layer, or a prompt).
    pub relative: Option<f64>,
    /// The multiplier of the method's own, unscaled vector that multiplier 1
    /// stands for (`None` where the steering was not rescaled).
    pub raw_per_unit: Option<f64>,
    /// The mean residual-stream norm at the steering's layer.
    pub resid_norm: Option<f64>,
}

impl Strength {
    /// No comparable strength.
    pub const NONE: Strength = Strength {
        relative: None,
        raw_per_unit: None,
        resid_norm: None,
    };
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt()
}

/// Mean residual-stream norm at `layer` over both completions of every
/// training pair, and the rows it was computed from.
fn resid_rows(model: &Llama, data: &TrainingSet, layer: usize, batch: usize) -> Result<(f64, Vec<Vec<f32>>)> {
    let (pos, neg) = steer_methods::activations::paired_resid(model, data, layer, batch)?;
    let rows: Vec<Vec<f32>> = pos.into_iter().chain(neg).collect();
    let mean = rows.iter().map(|r| norm(r)).sum::<f64>() / rows.len().max(1) as f64;
    Ok((mean, rows))
}

/// Mean norm of the displacement `A h + b − h` of the affine map over `rows`.
pub(crate) fn mean_displacement(matrix: &[f32], bias: &[f32], rows: &[Vec<f32>]) -> f64 {
    let d = bias.len();
    let total: f64 = rows
        .iter()
        .map(|h| {
            (0..d)
                .map(|i| {
                    let ah: f64 = (0..d).map(|j| matrix[i * d + j] as f64 * h[j] as f64).sum();
                    let delta = ah + bias[i] as f64 - h[i] as f64;
                    delta * delta
                })
                .sum::<f64>()
                .sqrt()
        })
        .sum();
    total / rows.len().max(1) as f64
}

/// Rescales every additive steering at one layer so that multiplier 1 adds a
/// vector as long as the mean residual-stream norm at its layer, and returns
/// each steering's [`Strength`]. `data` should hold the training activations
/// of those layers (they are read otherwise). A zero vector stays as it is,
/// with relative strength 0.
pub fn normalise(model: &Llama, data: &TrainingSet, steerings: &mut [Steering], batch: usize) -> Result<Vec<Strength>> {
    let mut out = Vec::with_capacity(steerings.len());
    for s in steerings.iter_mut() {
        let strength = match &mut s.kind {
            SteeringKind::Additive { vectors } if vectors.len() == 1 => {
                let (layer, v) = &mut vectors[0];
                let (resid, _) = resid_rows(model, data, *layer, batch)?;
                let length = norm(v);
                if length > 0.0 && resid > 0.0 {
                    let scale = resid / length;
                    v.iter_mut().for_each(|x| *x = (*x as f64 * scale) as f32);
                    s.metadata.insert("raw_multiplier_per_unit".into(), format!("{scale}"));
                    s.metadata.insert("resid_norm".into(), format!("{resid}"));
                    Strength {
                        relative: Some(1.0),
                        raw_per_unit: Some(scale),
                        resid_norm: Some(resid),
                    }
                } else {
                    Strength {
                        relative: Some(0.0),
                        raw_per_unit: None,
                        resid_norm: Some(resid),
                    }
                }
            }
            SteeringKind::Affine { layer, matrix, bias } => {
                let (resid, rows) = resid_rows(model, data, *layer, batch)?;
                let moved = mean_displacement(matrix, bias, &rows);
                Strength {
                    relative: (resid > 0.0).then(|| moved / resid),
                    raw_per_unit: None,
                    resid_norm: Some(resid),
                }
            }
            _ => Strength::NONE,
        };
        out.push(strength);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use steer_methods::ContrastPair;
    use steer_model::{Architecture, Positions};

    use super::*;
    use crate::test_support::{steering, tiny_model};

    #[test]
    fn additive_vectors_are_rescaled_to_the_mean_residual_norm() {
        let model = tiny_model(Architecture::Llama, 5);
        let data = TrainingSet::new(vec![
            ContrastPair {
                prompt: vec![3, 4, 5],
                positive: vec![6],
                negative: vec![7],
            },
            ContrastPair {
                prompt: vec![8, 9],
                positive: vec![10],
                negative: vec![11],
            },
        ]);
        let d = model.config().hidden_size;
        let v: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).cos() * 0.01).collect();
        let mut a = vec![0.0f32; d * d];
        (0..d).for_each(|i| a[i * d + i] = 0.5);
        let mut steerings = vec![
            steering(
                SteeringKind::Additive {
                    vectors: vec![(1, v.clone())],
                },
                Positions::PromptEndOnward,
            ),
            steering(
                SteeringKind::Affine {
                    layer: 1,
                    matrix: a,
                    bias: vec![0.0; d],
                },
                Positions::PromptEndOnward,
            ),
            steering(
                SteeringKind::NormPreserving {
                    vectors: vec![(0, v.clone()), (1, v.clone())],
                },
                Positions::All,
            ),
        ];
        let got = normalise(&model, &data, &mut steerings, 4).unwrap();
        // The reference: the mean norm of the captured rows, computed here.
        let (pos, neg) = steer_methods::activations::paired_resid(&model, &data, 1, 1).unwrap();
        let rows: Vec<&Vec<f32>> = pos.iter().chain(&neg).collect();
        let resid = rows.iter().map(|r| norm(r)).sum::<f64>() / rows.len() as f64;
        assert!((got[0].resid_norm.unwrap() - resid).abs() < 1e-5 * resid);
        let scaled = steerings[0].vectors().unwrap()[0].1.clone();
        assert!((norm(&scaled) - resid).abs() < 1e-4 * resid);
        assert!((got[0].raw_per_unit.unwrap() - resid / norm(&v)).abs() < 1e-6 * resid / norm(&v));
        assert_eq!(got[0].relative, Some(1.0));
        // h ← 0.5 h moves every row by half its norm.
        assert!((got[1].relative.unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(got[1].raw_per_unit, None);
        // The affine map is left as it was; several layers get no strength.
        assert_eq!(got[2], Strength::NONE);
        assert_eq!(steerings[2].vectors().unwrap()[0].1, v);
    }
}
