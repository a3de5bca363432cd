//! Perplexity of raw text under a steering (the `raw_text` format).

use steer_methods::Steering;
use steer_model::{ChatTokenizer, Llama};

use crate::scoring::{everywhere, row_log_likelihoods};
use crate::spec::{Format, Task};
use crate::{Result, SuiteError, read_text};

/// Token windows of a `raw_text` task: each window and the index its scoring starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    /// Token windows.
    pub rows: Vec<Vec<u32>>,
    /// Index of the first scored token of each window.
    pub score_from: Vec<usize>,
}

/// Tokenizes a `raw_text` task and cuts its windows as its spec says: window
/// `k` covers tokens `[k·stride, k·stride + window)` with `stride < window`;
/// tokens already scored by an earlier window are context only, so every
/// token but the text's first is scored exactly once.
pub fn windows(task: &Task, tokenizer: &ChatTokenizer) -> Result<Windows> {
    let spec = &task.spec;
    let (Format::RawText, Some(window), Some(stride), Some(max_tokens)) =
        (spec.format, spec.window, spec.stride, spec.max_tokens)
    else {
        return Err(SuiteError::BadRequest(format!("{} is not a raw_text task", task.id())));
    };
    let path = task.file(&spec.test);
    let text = read_text(&path)?;
    let mut tokens = tokenizer
        .encode(&text, false)
        .map_err(|e| SuiteError::Model(e.into()))?;
    tokens.truncate(max_tokens);
    if tokens.len() < 2 {
        return Err(SuiteError::data(&path, 0, "fewer than two tokens of text"));
    }
    Ok(cut(&tokens, window, stride))
}

/// Cuts `tokens` into windows of `window` tokens starting every `stride` tokens.
fn cut(tokens: &[u32], window: usize, stride: usize) -> Windows {
    let (mut rows, mut score_from) = (Vec::new(), Vec::new());
    let mut scored_to = 1;
    let mut begin = 0;
    while scored_to < tokens.len() {
        let end = (begin + window).min(tokens.len());
        rows.push(tokens[begin..end].to_vec());
        score_from.push(scored_to.max(begin + 1) - begin);
        scored_to = end;
        begin += stride;
    }
    Windows { rows, score_from }
}

/// Perplexity of `windows` with `steering` at `multiplier` applied at every
/// position (none: the unsteered model), and the number of scored tokens.
pub fn perplexity(
    model: &Llama,
    windows: &Windows,
    steering: Option<(&Steering, f32)>,
    batch: usize,
) -> Result<(f64, usize)> {
    let (edits, prefix) = steering.map(|(s, m)| everywhere(s, m)).unwrap_or_default();
    let shared = if prefix.is_empty() {
        None
    } else {
        Some(model.shared_prefix(&prefix)?)
    };
    let (mut nll, mut count) = (0.0f64, 0usize);
    for (rows, from) in windows
        .rows
        .chunks(batch.max(1))
        .zip(windows.score_from.chunks(batch.max(1)))
    {
        let ll = row_log_likelihoods(model, shared.as_ref(), rows, from, &edits)?;
        nll -= ll.iter().sum::<f64>();
        count += rows.iter().zip(from).map(|(r, f)| r.len() - f).sum::<usize>();
    }
    Ok(((nll / count as f64).exp(), count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_score_every_token_once() {
        for (n, w, s) in [(10, 4, 3), (10, 4, 2), (11, 5, 1), (3, 8, 7), (512, 64, 63)] {
            let tokens: Vec<u32> = (0..n as u32).collect();
            let windows = cut(&tokens, w, s);
            let mut seen = vec![0; n];
            for (row, from) in windows.rows.iter().zip(&windows.score_from) {
                assert!(row.len() <= w && *from >= 1);
                // Tokens are their own positions here, so a row names what it scores.
                row[*from..].iter().for_each(|&t| seen[t as usize] += 1);
            }
            assert_eq!(seen[0], 0);
            assert!(seen[1..].iter().all(|&c| c == 1), "{n} {w} {s}: {seen:?}");
        }
    }
}
