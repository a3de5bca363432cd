//! A/B behaviour items in the CAA format: reading them, turning them into
//! contrast pairs, and the letter-logit difference the MCQ metric is built on.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use steer_methods::{ContrastPair, Steering, SteeringKind, TrainingSet};
use steer_model::{ChatMessage, ChatTokenizer, Edit, ForwardRequest, Llama, LogitsMode};

/// One A/B item: a question that lists its choices, and which letter shows the behaviour.
#[derive(Debug, Clone)]
pub struct AbItem {
    /// The question, choices included.
    pub question: String,
    /// Letter of the behaviour-matching answer.
    pub matching: char,
    /// Letter of the other answer.
    pub not_matching: char,
}

#[derive(Deserialize)]
struct RawItem {
    question: Option<String>,
    answer_matching_behavior: Option<String>,
    answer_not_matching_behavior: Option<String>,
}

/// The answer letter inside a string like `"(A)"` or `" (B)"`.
fn letter(answer: &str) -> Option<char> {
    let rest = answer.trim().strip_prefix('(')?;
    let c = rest.chars().next()?;
    (c.is_ascii_uppercase() && rest[c.len_utf8()..].starts_with(')')).then_some(c)
}

/// Reads a JSON list of CAA A/B items; an unusable item is an error naming the file and item.
pub fn read_items(path: &Path) -> Result<Vec<AbItem>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let raw: Vec<RawItem> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a JSON list of A/B items: {e}", path.display()))?;
    if raw.is_empty() {
        bail!("{}: no items", path.display());
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let missing = |f: &str| anyhow::anyhow!("{}: item {i}: missing field '{f}'", path.display());
            let question = r.question.ok_or_else(|| missing("question"))?;
            let m = r.answer_matching_behavior.ok_or_else(|| missing("answer_matching_behavior"))?;
            let n = r.answer_not_matching_behavior.ok_or_else(|| missing("answer_not_matching_behavior"))?;
            let (Some(matching), Some(not_matching)) = (letter(&m), letter(&n)) else {
                bail!("{}: item {i}: answers {m:?} / {n:?} are not of the form \"(A)\"", path.display());
            };
            if matching == not_matching || !question.contains(&format!("({matching})")) || !question.contains(&format!("({not_matching})")) {
                bail!("{}: item {i}: answer letters {matching}/{not_matching} are not two distinct choices of the question", path.display());
            }
            Ok(AbItem { question, matching, not_matching })
        })
        .collect()
}

/// The chat prompt of an item followed by `(`, ready for the letter to be predicted.
pub fn before_letter(tokenizer: &ChatTokenizer, item: &AbItem) -> Result<Vec<u32>> {
    let mut ids = prompt(tokenizer, item)?;
    ids.extend(tokenizer.encode("(", false)?);
    Ok(ids)
}

fn prompt(tokenizer: &ChatTokenizer, item: &AbItem) -> Result<Vec<u32>> {
    let messages = [ChatMessage {
        role: "user".into(),
        content: item.question.clone(),
    }];
    Ok(tokenizer.encode_chat(&messages, true)?)
}

/// The token id of an answer letter as it follows `(`.
pub fn letter_id(tokenizer: &ChatTokenizer, answer: char) -> Result<u32> {
    let with = tokenizer.encode(&format!("({answer}"), false)?;
    let without = tokenizer.encode("(", false)?;
    if with.len() != without.len() + 1 || with[..without.len()] != without[..] {
        bail!("the tokenizer does not split \"({answer}\" into \"(\" and one letter token");
    }
    Ok(with[with.len() - 1])
}

/// Contrast pairs: the prompt up to `(`, then the behaviour-matching letter
/// versus the other letter; the separator closes an answered turn (`)` and the
/// chat template's end of turn), for methods that build few-shot prompts.
pub fn training_set(tokenizer: &ChatTokenizer, items: &[AbItem]) -> Result<TrainingSet> {
    let pairs = items
        .iter()
        .map(|it| {
            Ok(ContrastPair {
                prompt: before_letter(tokenizer, it)?,
                positive: vec![letter_id(tokenizer, it.matching)?],
                negative: vec![letter_id(tokenizer, it.not_matching)?],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TrainingSet {
        pairs,
        separator: answer_close(tokenizer)?,
        activations: None,
    })
}

/// The tokens the chat template puts after an assistant answer `(A` to close it: `)`, then the end of the turn.
fn answer_close(tokenizer: &ChatTokenizer) -> Result<Vec<u32>> {
    let marker = "(A)";
    let messages = [
        ChatMessage {
            role: "user".into(),
            content: "Q".into(),
        },
        ChatMessage {
            role: "assistant".into(),
            content: marker.into(),
        },
    ];
    let text = tokenizer.apply_chat_template(&messages, false)?;
    let at = text
        .rfind(marker)
        .context("the chat template does not write the assistant's answer")?;
    Ok(tokenizer.encode(&text[at + marker.len() - 1..], false)?)
}

/// The letter-logit difference `logit(matching) − logit(other)` of every item
/// under every steering and multiplier: `result[s][k][i]` for steering `s`,
/// multiplier `multipliers[k]` and item `i`. `prompts[i]` ends where the letter
/// is predicted; `letters[i]` is `(matching, other)`.
///
/// Steerings that leave every prompt token but the last untouched share one
/// unsteered pass over the rest of each prompt: all of their (steering,
/// multiplier) variants run as one-token rows after it. Other steerings (those
/// acting on the whole prompt, and prompt transformations) run whole prompts,
/// `batch` at a time.
pub fn letter_margins(
    model: &Llama,
    prompts: &[Vec<u32>],
    letters: &[(u32, u32)],
    steerings: &[Steering],
    multipliers: &[f32],
    batch: usize,
) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut out = vec![vec![Vec::with_capacity(prompts.len()); multipliers.len()]; steerings.len()];
    let last_only = |s: &Steering| {
        !matches!(s.kind, SteeringKind::Prompt { .. })
            && prompts
                .iter()
                .all(|p| (0..p.len() - 1).all(|pos| !s.positions.contains(pos, p.len())))
    };
    let (fast, slow): (Vec<usize>, Vec<usize>) = (0..steerings.len()).partition(|&s| last_only(&steerings[s]));
    let margin = |row: &[f32], (yes, no): (u32, u32)| row[yes as usize] - row[no as usize];

    if !fast.is_empty() {
        // Rows: every (steering, multiplier) pair; each steering's edits carry
        // its multiplier on its own rows and 0 elsewhere.
        let variants: Vec<(usize, usize)> = fast
            .iter()
            .flat_map(|&s| (0..multipliers.len()).map(move |k| (s, k)))
            .collect();
        let edits: Vec<Edit> = fast
            .iter()
            .flat_map(|&s| {
                let per_row: Vec<f32> = variants
                    .iter()
                    .map(|&(vs, k)| if vs == s { multipliers[k] } else { 0.0 })
                    .collect();
                steerings[s].edits_per_row(&per_row)
            })
            .collect();
        let req = ForwardRequest {
            captures: &[],
            edits: &edits,
            logits: LogitsMode::Last,
        };
        for (prompt, &ids) in prompts.iter().zip(letters) {
            let (last, rest) = prompt.split_last().context("empty prompt")?;
            let logits = if rest.is_empty() {
                model.forward(&vec![vec![*last]; variants.len()], &req)?
            } else {
                let shared = model.shared_prefix(rest)?;
                model.forward_after(&shared, &vec![vec![*last]; variants.len()], &req)?
            }
            .logits
            .context("the model returned no logits")?;
            for (row, &(s, k)) in variants.iter().enumerate() {
                out[s][k].push(margin(logits.row(&[row]), ids));
            }
        }
    }
    for &s in &slow {
        for (k, &m) in multipliers.iter().enumerate() {
            let edits = steerings[s].edits(m);
            let req = ForwardRequest {
                captures: &[],
                edits: &edits,
                logits: LogitsMode::Last,
            };
            // A prompt transformation's prefix is the same for every item: compute it once.
            let prefix = steerings[s].prompt(&[], m);
            let shared = if prefix.is_empty() {
                None
            } else {
                Some(model.shared_prefix(&prefix)?)
            };
            for (chunk, ids) in prompts.chunks(batch.max(1)).zip(letters.chunks(batch.max(1))) {
                let result = match &shared {
                    Some(p) => model.forward_after(p, chunk, &req)?,
                    None => model.forward(chunk, &req)?,
                };
                let logits = result.logits.context("the model returned no logits")?;
                for (b, &pair) in ids.iter().enumerate() {
                    out[s][k].push(margin(logits.row(&[b]), pair));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use steer_model::{Architecture, Backend, ModelConfig, Positions, WeightSource};

    use super::*;

    #[test]
    fn shared_pass_gives_the_margins_of_whole_prompts() {
        let cfg = ModelConfig::tiny(Architecture::Llama);
        let model = Llama::load(&cfg, &WeightSource::random(&cfg, 3), &Backend::Cpu.device().unwrap()).unwrap();
        let prompts = vec![vec![5u32, 9, 14, 2], vec![7, 3], vec![11, 12, 13, 14, 15, 16]];
        let letters = vec![(20u32, 21u32), (21, 20), (20, 21)];
        let steering = |kind: SteeringKind, positions: Positions| Steering {
            method: "test".into(),
            kind,
            positions,
            params: BTreeMap::new(),
            metadata: BTreeMap::new(),
        };
        let v: Vec<f32> = (0..32).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut a = vec![0.0f32; 32 * 32];
        (0..32).for_each(|i| a[i * 32 + (i + 1) % 32] = 1.0);
        let steerings = vec![
            steering(
                SteeringKind::Additive {
                    vectors: vec![(1, v.clone())],
                },
                Positions::PromptEndOnward,
            ),
            steering(
                SteeringKind::Affine {
                    layer: 0,
                    matrix: a,
                    bias: v.clone(),
                },
                Positions::LastPrompt,
            ),
            steering(
                SteeringKind::NormPreserving {
                    vectors: vec![(0, v.clone()), (2, v)],
                },
                Positions::All,
            ),
            steering(
                SteeringKind::Prompt {
                    positive: vec![30, 31],
                    negative: vec![40],
                },
                Positions::All,
            ),
        ];
        let multipliers = [-2.0f32, 0.0, 1.5];
        let got = letter_margins(&model, &prompts, &letters, &steerings, &multipliers, 2).unwrap();
        for (s, steering) in steerings.iter().enumerate() {
            for (k, &m) in multipliers.iter().enumerate() {
                for (i, prompt) in prompts.iter().enumerate() {
                    let edits = steering.edits(m);
                    let req = ForwardRequest {
                        captures: &[],
                        edits: &edits,
                        logits: LogitsMode::Last,
                    };
                    let out = model.forward(&[steering.prompt(prompt, m)], &req).unwrap();
                    let row = out.logits.unwrap().data;
                    let want = row[letters[i].0 as usize] - row[letters[i].1 as usize];
                    assert!(
                        (got[s][k][i] - want).abs() < 1e-4,
                        "steering {s}, multiplier {m}, item {i}: {} vs {want}",
                        got[s][k][i]
                    );
                }
            }
        }
    }
}
