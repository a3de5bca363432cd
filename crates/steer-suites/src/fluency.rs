//! Fluency-constrained choice of layer and strength.
//!
//! The configuration with the best validation behaviour is often one nobody
//! would deploy (it wrecks the model's text). Besides that unconstrained
//! choice the protocol makes a second one: the best validation configuration
//! whose perplexity on held-out text stays within [`FLUENCY_BOUND`] times the
//! unsteered model's. That constrained choice is the headline of every
//! result; the unconstrained one is reported beside it.
//!
//! The held-out text is one window of [`VALIDATION_TOKENS`] tokens of the
//! perplexity task's file, starting at token [`VALIDATION_OFFSET`] (or at
//! the task's `max_tokens`, if that is later), so it never overlaps the text
//! the damage measurement scores. The steering acts at every position, as in
//! the damage measurement.

use steer_methods::Steering;
use steer_model::ChatTokenizer;

use crate::perplexity::{Windows, perplexity};
use crate::spec::{Format, Task};
use crate::{Result, SuiteError, read_text};

pub use steer_stats::FLUENCY_BOUND;

/// First token of the held-out validation text.
pub const VALIDATION_OFFSET: usize = 8192;

/// Tokens of the held-out validation text.
pub const VALIDATION_TOKENS: usize = 512;

/// The held-out validation window of a `raw_text` task.
pub fn validation_windows(task: &Task, tokenizer: &ChatTokenizer) -> Result<Windows> {
    let spec = &task.spec;
    if spec.format != Format::RawText {
        return Err(SuiteError::BadRequest(format!("{} is not a raw_text task", task.id())));
    }
    let path = task.file(&spec.test);
    let text = read_text(&path)?;
    let tokens = tokenizer
        .encode(&text, false)
        .map_err(|e| SuiteError::Model(e.into()))?;
    let from = VALIDATION_OFFSET.max(spec.max_tokens.unwrap_or(0));
    if tokens.len() < from + VALIDATION_TOKENS {
        return Err(SuiteError::data(
            &path,
            0,
            format!(
                "{} tokens of text; the fluency check needs tokens {from}..{} (after the damage text)",
                tokens.len(),
                from + VALIDATION_TOKENS
            ),
        ));
    }
    Ok(Windows {
        rows: vec![tokens[from..from + VALIDATION_TOKENS].to_vec()],
        score_from: vec![1],
    })
}

/// Validation perplexity ratios (steered / unsteered) of every positive
/// point of a sweep laid out `[steering][multiplier]`; points at multiplier 0
/// are 1 and negative ones are not measured (NaN).
pub fn ratios(
    model: &steer_model::Llama,
    windows: &Windows,
    steerings: &[Steering],
    grid: &[f32],
) -> Result<(f64, Vec<f64>)> {
    let (plain, _) = perplexity(model, windows, None, 1)?;
    let mut out = Vec::with_capacity(steerings.len() * grid.len());
    for s in steerings {
        for &m in grid {
            out.push(if m > 0.0 {
                perplexity(model, windows, Some((s, m)), 1)?.0 / plain
            } else if m == 0.0 {
                1.0
            } else {
                f64::NAN
            });
        }
    }
    Ok((plain, out))
}

/// Index of the best point of a sweep laid out `[steering][multiplier]`
/// among positive multipliers whose perplexity ratio is at most `bound`
/// (ties go to the earlier steering and the smaller multiplier), or `None`
/// when no positive point stays within it.
pub fn choose_within(scores: &[f64], grid: &[f32], ratios: &[f64], bound: f64) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, score) in scores.iter().enumerate() {
        if grid[i % grid.len()] <= 0.0 || ratios[i].is_nan() || ratios[i] > bound {
            continue;
        }
        if best.is_none_or(|b| *score > scores[b]) {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constrained_choice_skips_points_past_the_bound() {
        let grid = [-1.0, 0.0, 1.0, 2.0];
        // Two steerings: the best score (0.9) is past the bound.
        let scores = [0.1, 0.5, 0.6, 0.9, 0.0, 0.5, 0.7, 0.8];
        let ratios = [f64::NAN, 1.0, 1.1, 3.0, f64::NAN, 1.0, 1.19, 1.5];
        assert_eq!(choose_within(&scores, &grid, &ratios, 1.2), Some(6));
        assert_eq!(choose_within(&scores, &grid, &ratios, 10.0), Some(3));
        // Nothing within the bound.
        assert_eq!(choose_within(&scores, &grid, &ratios, 1.05), None);
        // Ties go to the earlier point.
        let flat = [0.0, 0.5, 0.7, 0.7];
        assert_eq!(choose_within(&flat, &grid, &[f64::NAN, 1.0, 1.0, 1.0], 1.2), Some(2));
    }
}
