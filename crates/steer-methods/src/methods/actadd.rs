//! ActAdd — Activation Addition from a single contrast pair.
//!
//! Turner, Thiergart, Leech, Udell, Vazquez, Mini, MacDiarmid, "Steering
//! Language Models With Activation Engineering" (Activation Addition), 2023
//! (arXiv:2308.10248). The paper subtracts the activations of two prompts
//! ("Love" − "Hate") position by position and adds the difference at the
//! front of the user's prompt. Here the difference is taken at the last token
//! of one chosen pair and added like the other vectors (from the last prompt
//! token on), which keeps it comparable with CAA: CAA averaged over many
//! pairs, ActAdd from one.

use crate::direction::{DirectionMethod, check_paired};
use crate::{FitConfig, HyperParam, MethodError, MethodInfo, Result};

/// Activation difference of a single contrast pair.
pub struct ActAdd;

static PARAMS: [HyperParam; 1] = [HyperParam {
    name: "pair",
    default: 0.0,
    doc: "index of the training pair whose difference is used",
}];

impl DirectionMethod for ActAdd {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "actadd",
            paper: "Turner et al. 2023, Steering Language Models With Activation Engineering, arXiv:2308.10248",
            summary: "the activation difference of one contrast pair at the last token",
            hyperparameters: &PARAMS,
            multipliers: crate::RELATIVE_GRID,
        }
    }

    fn direction(&self, positive: &[Vec<f32>], negative: &[Vec<f32>], config: &FitConfig) -> Result<Vec<f32>> {
        check_paired(positive, negative)?;
        let index = config.param(&self.info(), "pair")?;
        if index < 0.0 || index.fract() != 0.0 || index as usize >= positive.len() {
            return Err(MethodError::BadInput(format!(
                "actadd: pair {index} is not one of the {} training pairs",
                positive.len()
            )));
        }
        let i = index as usize;
        Ok(positive[i].iter().zip(&negative[i]).map(|(p, n)| p - n).collect())
    }
}
