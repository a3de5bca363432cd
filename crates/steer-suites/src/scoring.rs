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

/// Summed log-likelihood of each of `continuations` after `prompt`, with
/// `steering` at its multiplier acting as it is defined (from the last prompt
/// token on for most methods); `None` or multiplier 0 is the unsteered model.
/// `shared`, when given, must be [`Llama::shared_prefix`] of the prompt
/// without its last token: it is reused whenever the steering leaves those
/// positions alone.
pub fn continuations(
    model: &Llama,
    prompt: &[u32],
    shared: Option<&SharedPrefix>,
    continuations: &[Vec<u32>],
    steering: Option<(&Steering, f32)>,
) -> Result<Vec<f64>> {
    let Some((&last, _)) = prompt.split_last() else {
        return Err(SuiteError::BadRequest("a scored continuation needs a prompt".into()));
    };
    if continuations.iter().any(|c| c.is_empty()) {
        return Err(SuiteError::BadRequest("a scored continuation is empty".into()));
    }
    let p = prompt.len();
    let steering = steering.filter(|(_, m)| *m != 0.0);
    let touches_prefix = steering.is_some_and(|(s, _)| {
        matches!(s.kind, SteeringKind::Prompt { .. }) || (0..p - 1).any(|pos| s.positions.contains(pos, p))
    });
    if !touches_prefix {
        let edits = steering.map_or_else(Vec::new, |(s, m)| anchored(s, p).edits(m));
        let rows: Vec<Vec<u32>> = continuations.iter().map(|c| [&[last], c.as_slice()].concat()).collect();
        let from = vec![1; rows.len()];
        return match shared {
            Some(prefix) => row_log_likelihoods(model, Some(prefix), &rows, &from, &edits),
            None if p == 1 => row_log_likelihoods(model, None, &rows, &from, &edits),
            None => {
                let prefix = model.shared_prefix(&prompt[..p - 1])?;
                row_log_likelihoods(model, Some(&prefix), &rows, &from, &edits)
            }
        };
    }
    let (s, m) = steering.expect("a steering touches the prefix");
    let prefix = s.prompt(&[], m);
    let edits = anchored(s, prefix.len() + p).edits(m);
    let rows: Vec<Vec<u32>> = continuations
        .iter()
        .map(|c| [prefix.as_slice(), prompt, c].concat())
        .collect();
    let from = vec![prefix.len() + p; rows.len()];
    row_log_likelihoods(model, None, &rows, &from, &edits)
}
