//! ICV — In-Context Vectors.
//!
//! Liu, Ye, Xing, Zou, "In-context Vectors: Making In Context Learning More
//! Effective and Controllable Through Latent Space Steering", ICML 2024
//! (arXiv:2311.06668). For every demonstration pair (x, y) the residual
//! streams of x and y at their last token are read after every block and
//! their differences concatenated across blocks; the in-context vector is the
//! first principal component of those differences, split back into one vector
//! per block. At inference it is added at every block and every position with
//! strength λ (the multiplier), and each position is rescaled to the norm it
//! had before the addition, as the paper prescribes.
//!
//! The component is oriented so that the mean difference projects positively
//! on it and scaled to the length of that projection (as the `pca` method
//! does), so that λ is on the same scale as other methods' multipliers. The
//! authors' released code instead adds the mean difference to the unit
//! component and edits the MLP output rather than the residual stream;
//! `add_mean = 1` reproduces the first choice. Pairs are used as
//! `x = prompt ++ negative`, `y = prompt ++ positive`.

use steer_model::{Llama, Positions};

use crate::activations::paired_resid_layers;
use crate::linalg::{gram, sym_eigen};
use crate::steering::{Steering, SteeringKind};
use crate::{FitConfig, HyperParam, MethodError, MethodInfo, Result, SteeringMethod, TrainingSet};

/// In-context vectors: the first principal component of demonstration latent differences at every block.
pub struct Icv;

static PARAMS: [HyperParam; 1] = [HyperParam {
    name: "add_mean",
    default: 0.0,
    doc: "1 adds the mean difference to the unit principal component (the authors' code); 0 scales the component by the mean's projection",
}];

/// The in-context direction from per-pair difference rows (each the concatenation over blocks).
pub fn icv_direction(diffs: &[Vec<f64>], add_mean: bool) -> Result<Vec<f64>> {
    let n = diffs.len();
    let width = diffs.first().map_or(0, Vec::len);
    if n < 2 || width == 0 || diffs.iter().any(|r| r.len() != width) {
        return Err(MethodError::BadInput(
            "icv needs at least two demonstration pairs with activations of one width".into(),
        ));
    }
    let mean: Vec<f64> = (0..width).map(|j| diffs.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
    // Centred rows, row-major `n × width`.
    let centred: Vec<f64> = diffs.iter().flat_map(|r| r.iter().zip(&mean).map(|(x, m)| x - m)).collect();
    // The leading eigenvector of the n × n Gram matrix maps to the leading component.
    let w = sym_eigen(&gram(&centred, n), n)?.top();
    let mut pc = vec![0.0f64; width];
    for (row, wi) in centred.chunks(width).zip(&w) {
        for (p, x) in pc.iter_mut().zip(row) {
            *p += wi * x;
        }
    }
    let len = pc.iter().map(|x| x * x).sum::<f64>().sqrt();
    if len == 0.0 {
        return Err(MethodError::BadInput("icv: the demonstration differences do not vary".into()));
    }
    pc.iter_mut().for_each(|x| *x /= len);
    let along: f64 = pc.iter().zip(&mean).map(|(a, b)| a * b).sum();
    let sign = if along < 0.0 { -1.0 } else { 1.0 };
    Ok(if add_mean {
        pc.iter().zip(&mean).map(|(p, m)| sign * p + m).collect()
    } else {
        pc.iter().map(|p| sign * p * along.abs()).collect()
    })
}

impl SteeringMethod for Icv {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "icv",
            paper: "Liu et al. 2023, In-context Vectors: Making In Context Learning More Effective and Controllable Through Latent Space Steering, arXiv:2311.06668",
            summary: "first principal component of demonstration latent differences at every block, added everywhere with norm-preserving rescaling",
            hyperparameters: &PARAMS,
            multipliers: &[-1.0, -0.5, 0.0, 0.5, 1.0],
        }
    }

    /// The vectors act at every block, whatever the layer asked for.
    fn per_layer(&self) -> bool {
        false
    }

    fn fit(&self, model: &Llama, data: &TrainingSet, config: &FitConfig) -> Result<Steering> {
        let info = self.info();
        config.check_params(&info)?;
        config.check_layer(model)?;
        data.check(info.name)?;
        let layers: Vec<usize> = (0..model.config().num_hidden_layers).collect();
        let (hy, hx) = paired_resid_layers(model, data, &layers, config.batch_size)?;
        let diffs: Vec<Vec<f64>> = hy
            .iter()
            .zip(&hx)
            .map(|(y, x)| {
                y.iter()
                    .zip(x)
                    .flat_map(|(yl, xl)| yl.iter().zip(xl).map(|(a, b)| (a - b) as f64))
                    .collect()
            })
            .collect();
        let direction = icv_direction(&diffs, config.param(&info, "add_mean")? != 0.0)?;
        let d = model.config().hidden_size;
        let vectors = layers
            .iter()
            .map(|&l| (l, direction[l * d..(l + 1) * d].iter().map(|x| *x as f32).collect()))
            .collect();
        Steering::fitted(
            &info,
            config,
            data.pairs.len(),
            SteeringKind::NormPreserving { vectors },
            Positions::All,
        )
    }
}
