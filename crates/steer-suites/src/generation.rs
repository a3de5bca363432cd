//! Greedy generations under a steering: what steered text actually says
//! (sentiment, GSM8K, and the open-ended behaviour prompts kept for inspection).

use steer_methods::{Steering, SteeringKind};
use steer_model::{GenerateOptions, Llama, Sampling};

use crate::Result;

/// The new tokens of a greedy continuation of every prompt, `batch` prompts
/// per call, with `steering` at its multiplier acting as it is defined (a
/// prompt steering is prepended; `None` or multiplier 0 is the unsteered
/// model). Each row stops after an end token or `max_new_tokens` tokens.
pub fn greedy(
    model: &Llama,
    prompts: &[Vec<u32>],
    steering: Option<(&Steering, f32)>,
    max_new_tokens: usize,
    eos_ids: &[u32],
    batch: usize,
) -> Result<Vec<Vec<u32>>> {
    let steering = steering.filter(|(_, m)| *m != 0.0);
    let opts = GenerateOptions {
        max_new_tokens,
        sampling: Sampling::Greedy,
        eos_ids: eos_ids.to_vec(),
    };
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch.max(1)) {
        let (rows, edits): (Vec<Vec<u32>>, _) = match steering {
            None => (chunk.to_vec(), Vec::new()),
            Some((s, m)) => {
                let rows = match s.kind {
                    SteeringKind::Prompt { .. } => chunk.iter().map(|p| s.prompt(p, m)).collect(),
                    _ => chunk.to_vec(),
                };
                (rows, s.edits(m))
            }
        };
        out.extend(model.generate(&rows, &edits, &opts)?);
    }
    Ok(out)
}

/// The new tokens with a trailing end token removed.
pub fn strip_eos<'a>(tokens: &'a [u32], eos_ids: &[u32]) -> &'a [u32] {
    match tokens.split_last() {
        Some((last, rest)) if eos_ids.contains(last) => rest,
        _ => tokens,
    }
}

/// One kept generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Generation {
    /// `suite/task`.
    pub task: String,
    /// Method name.
    pub method: String,
    /// `unsteered`, `positive` (towards the behaviour), `negative` (away from it) or `random`.
    pub variant: String,
    /// Steered layer (`None`: no single layer).
    pub layer: Option<usize>,
    /// Multiplier.
    pub multiplier: f32,
    /// The prompt text.
    pub prompt: String,
    /// The continuation text.
    pub text: String,
}

/// Reads open-ended prompts: a JSON list of objects with a `question`.
pub fn read_open_prompts(path: &std::path::Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Raw {
        question: String,
    }
    let text = crate::read_text(path)?;
    let raw: Vec<Raw> = serde_json::from_str(&text).map_err(|e| {
        crate::SuiteError::data(
            path,
            e.line(),
            format!("not a JSON list of objects with a 'question': {e}"),
        )
    })?;
    if raw.is_empty() {
        return Err(crate::SuiteError::data(path, 1, "no prompts"));
    }
    Ok(raw.into_iter().map(|r| r.question).collect())
}
