//! Log-likelihood of token continuations under a steering: the shared piece
//! of perplexity and open-ended scoring.

use steer_methods::{Steering, SteeringKind};
use steer_model::{Edit, ForwardRequest, Llama, LogitsMode, SharedPrefix};

use crate::{Result, SuiteError};

/// `log softmax(logits)[token]`, computed in f64.
pub fn log_prob(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    logits[token as usize] as f64 - max - z.ln()
}

/// For each row, the summed log-probability of its tokens from index
/// `score_from[r]` on, each predicted from the tokens before it (in the row,
/// after `prefix` when one is given). `edits` apply as in a forward pass.
pub fn row_log_likelihoods(
    model: &Llama,
    prefix: Option<&SharedPrefix>,
    rows: &[Vec<u32>],
    score_from: &[usize],
    edits: &[Edit],
) -> Result<Vec<f64>> {
    if rows.len() != score_from.len() || rows.iter().zip(score_from).any(|(r, &s)| s == 0 || s > r.len()) {
        return Err(SuiteError::BadRequest(
            "each scored row needs a context token before the tokens it scores".into(),
        ));
    }
    let req = ForwardRequest {
        captures: &[],
        edits,
        logits: LogitsMode::All,
    };
    let out = match prefix {
        Some(p) => model.forward_after(p, rows, &req)?,
        None => model.forward(rows, &req)?,
    };
    let logits = out
        .logits
        .as_ref()
        .ok_or_else(|| SuiteError::BadRequest("the model returned no logits".into()))?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(r, row)| {
            (score_from[r]..row.len())
                .map(|j| log_prob(logits.row(&[r, out.padded_index(r, j - 1)]), row[j]))
                .sum()
        })
        .collect())
}

/// The steering applied at every position (what it does to every generated
/// token), at strength `multiplier`: its edits and, for a prompt steering, its prefix.
pub fn everywhere(steering: &Steering, multiplier: f32) -> (Vec<Edit>, Vec<u32>) {
    let mut all = steering.clone();
    all.positions = steer_model::Positions::All;
    let prefix = match steering.kind {
        SteeringKind::Prompt { .. } => steering.prompt(&[], multiplier),
        _ => Vec::new(),
    };
    (all.edits(multiplier), prefix)
}

/// `steering` with its positions pinned to a prompt of `prompt_len` tokens, for
/// rows that continue past the prompt (a forward pass counts a whole row as
/// the prompt): "from the last prompt token on" becomes "from position
/// `prompt_len − 1` on", and so on.
pub fn anchored(steering: &Steering, prompt_len: usize) -> Steering {
    use steer_model::Positions;
    let mut s = steering.clone();
    let last = prompt_len.saturating_sub(1);
    s.positions = match &steering.positions {
        Positions::PromptEndOnward => Positions::From(last),
        Positions::LastPrompt => Positions::At(vec![last]),
        Positions::Generated => Positions::From(prompt_len),
        other => other.clone(),
    };
    s
}
