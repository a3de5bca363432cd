//! tinyBenchmarks anchor items (the `anchor_mc` format): multiple-choice
//! capability under steering, scored by the answer letter, with the anchor
//! weights' estimate of full-set accuracy.

use std::path::Path;

use serde::Deserialize;
use steer_methods::Steering;
use steer_model::{ChatTokenizer, Llama};

use crate::ab::last_position_scores;
use crate::icl::argmax;
use crate::spec::{Format, Task};
use crate::{Result, SuiteError, read_text};

/// One anchor item.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AnchorItem {
    /// Anchor weight (the weights of a benchmark sum to 1).
    pub weight: f64,
    /// MMLU subject (empty for other benchmarks).
    #[serde(default)]
    pub subject: String,
    /// The question.
    pub question: String,
    /// The choices, in letter order.
    pub choices: Vec<String>,
    /// 0-based index of the right choice.
    pub answer: usize,
}

/// Reads anchor items (JSON Lines); an unusable line is an error naming file and line.
pub fn read_anchor_items(path: &Path) -> Result<Vec<AnchorItem>> {
    let text = read_text(path)?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item: AnchorItem = serde_json::from_str(line)
            .map_err(|e| SuiteError::data(path, i + 1, format!("not an anchor item: {e}")))?;
        if item.choices.len() < 2 || item.choices.len() > 26 || item.answer >= item.choices.len() {
            return Err(SuiteError::data(
                path,
                i + 1,
                format!("answer {} is not one of {} choices", item.answer, item.choices.len()),
            ));
        }
        if !(item.weight.is_finite() && item.weight >= 0.0) {
            return Err(SuiteError::data(
                path,
                i + 1,
                "the weight must be a finite, non-negative number",
            ));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(SuiteError::data(path, 1, "no items"));
    }
    Ok(items)
}

/// The prompt of an item, ending in `Answer:`.
pub fn prompt(item: &AnchorItem) -> String {
    let about = if item.subject.is_empty() {
        String::new()
    } else {
        format!(" about {}", item.subject.replace('_', " "))
    };
    let mut text = format!(
        "The following are multiple choice questions (with answers){about}.\n\n{}\n",
        item.question.trim()
    );
    for (k, choice) in item.choices.iter().enumerate() {
        text.push_str(&format!("{}. {}\n", (b'A' + k as u8) as char, choice.trim()));
    }
    text.push_str("Answer:");
    text
}

/// Accuracy and anchor-weighted accuracy of one benchmark under one configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capability {
    /// Share of items answered correctly.
    pub accuracy: f64,
    /// `Σ weight × correct`.
    pub weighted: f64,
    /// Items.
    pub n: usize,
}

/// Capability on a task, unsteered and under each of `steerings` at
/// `multiplier`: `[unsteered, steerings...]`. A steering acts as it is
/// defined (from the last prompt token on for most methods).
pub fn capability(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    task: &Task,
    steerings: &[Steering],
    multiplier: f32,
    batch: usize,
) -> Result<Vec<Capability>> {
    if task.spec.format != Format::AnchorMc {
        return Err(SuiteError::BadRequest(format!(
            "{} is not an anchor_mc task",
            task.id()
        )));
    }
    if steerings.is_empty() {
        return Err(SuiteError::BadRequest("capability needs at least one steering".into()));
    }
    let items = read_anchor_items(&task.file(&task.spec.test))?;
    let encode = |t: &str| tokenizer.encode(t, false).map_err(|e| SuiteError::Model(e.into()));
    let max_choices = items.iter().map(|i| i.choices.len()).max().unwrap_or(0);
    let letters: Vec<u32> = (0..max_choices)
        .map(|k| {
            let ids = encode(&format!(" {}", (b'A' + k as u8) as char))?;
            match ids.as_slice() {
                [id] => Ok(*id),
                _ => Err(SuiteError::BadRequest(
                    "the tokenizer does not encode an answer letter as one token".into(),
                )),
            }
        })
        .collect::<Result<_>>()?;
    let prompts: Vec<Vec<u32>> = items.iter().map(|it| encode(&prompt(it))).collect::<Result<_>>()?;
    let correct = |i: usize, row: &[f32]| -> f32 {
        let n = items[i].choices.len();
        let scores: Vec<f32> = letters[..n].iter().map(|&t| row[t as usize]).collect();
        if argmax(&scores) as usize == items[i].answer {
            1.0
        } else {
            0.0
        }
    };
    let scores = last_position_scores(model, &prompts, steerings, &[0.0, multiplier], batch, &correct)?;
    let summarise = |hits: &[f32]| Capability {
        accuracy: hits.iter().map(|h| *h as f64).sum::<f64>() / hits.len() as f64,
        weighted: hits.iter().zip(&items).map(|(h, it)| *h as f64 * it.weight).sum(),
        n: hits.len(),
    };
    let mut out = vec![summarise(&scores[0][0])];
    out.extend(scores.iter().map(|s| summarise(&s[1])));
    Ok(out)
}
