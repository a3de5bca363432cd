//! Function-vector tasks (the `icl_pairs` format): reading `input → output`
//! pairs, zero-shot and few-shot prompts, contrast pairs for fitting, and the
//! top-1 metric.

use std::path::Path;

use serde::Deserialize;
use steer_methods::{ContrastPair, TrainingSet};
use steer_model::ChatTokenizer;

use crate::jsonl::element_lines;
use crate::{Result, SuiteError, read_text};

/// One example of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct IclPair {
    /// The input.
    pub input: String,
    /// The output the function gives.
    pub output: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    input: String,
    output: String,
}

/// Reads a JSON list of `{"input", "output"}` pairs; a malformed or empty
/// pair is an error naming the file and line.
pub fn read_pairs(path: &Path) -> Result<Vec<IclPair>> {
    let text = read_text(path)?;
    let raw: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| SuiteError::data(path, e.line(), format!("not a JSON list of input/output pairs: {e}")))?;
    if raw.is_empty() {
        return Err(SuiteError::data(path, 1, "no items"));
    }
    let lines = element_lines(&text).unwrap_or_default();
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line = lines.get(i).copied().unwrap_or(0);
            let r: RawPair = serde_json::from_value(v)
                .map_err(|e| SuiteError::data(path, line, format!("item {i}: not an input/output pair: {e}")))?;
            if r.input.trim().is_empty() || r.output.trim().is_empty() {
                return Err(SuiteError::data(path, line, format!("item {i}: empty input or output")));
            }
            Ok(IclPair {
                input: r.input,
                output: r.output,
            })
        })
        .collect()
}

/// The zero-shot prompt of an input.
pub fn query(input: &str) -> String {
    format!("Q: {input}\nA:")
}

/// A demonstration.
pub fn demonstration(pair: &IclPair) -> String {
    format!("Q: {}\nA: {}\n\n", pair.input, pair.output)
}

fn encode(tokenizer: &ChatTokenizer, text: &str) -> Result<Vec<u32>> {
    tokenizer.encode(text, false).map_err(|e| SuiteError::Model(e.into()))
}

/// Zero-shot prompts and the first token of each answer ` <output>`.
pub fn prompts_and_answers(tokenizer: &ChatTokenizer, pairs: &[IclPair]) -> Result<(Vec<Vec<u32>>, Vec<u32>)> {
    let mut prompts = Vec::with_capacity(pairs.len());
    let mut answers = Vec::with_capacity(pairs.len());
    for p in pairs {
        prompts.push(encode(tokenizer, &query(&p.input))?);
        let answer = encode(tokenizer, &format!(" {}", p.output))?;
        answers.push(
            *answer
                .first()
                .ok_or_else(|| SuiteError::BadRequest("empty answer".into()))?,
        );
    }
    Ok((prompts, answers))
}

/// The few-shot prefix: `demos` as demonstrations, in order.
pub fn few_shot_prefix(tokenizer: &ChatTokenizer, demos: &[IclPair]) -> Result<Vec<u32>> {
    let text: String = demos.iter().map(demonstration).collect();
    encode(tokenizer, &text)
}

/// Contrast pairs: each prompt answered with its own output (positive) and
/// with the next pair's output (negative); demonstrations end with a blank line.
pub fn training_set(tokenizer: &ChatTokenizer, pairs: &[IclPair]) -> Result<TrainingSet> {
    let n = pairs.len();
    let mut out = Vec::with_capacity(n);
    for (i, p) in pairs.iter().enumerate() {
        let other = (1..n)
            .map(|k| &pairs[(i + k) % n])
            .find(|q| q.output != p.output)
            .unwrap_or(&pairs[(i + 1) % n]);
        out.push(ContrastPair {
            prompt: encode(tokenizer, &query(&p.input))?,
            positive: encode(tokenizer, &format!(" {}", p.output))?,
            negative: encode(tokenizer, &format!(" {}", other.output))?,
        });
    }
    Ok(TrainingSet {
        pairs: out,
        separator: encode(tokenizer, "\n\n")?,
        activations: None,
    })
}

/// Index of the largest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}
