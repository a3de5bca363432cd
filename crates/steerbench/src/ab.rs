//! A/B behaviour items in the CAA format: reading them, turning them into
//! contrast pairs, and the letter-logit difference the MCQ metric is built on.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use steer_methods::ContrastPair;
use steer_model::{ChatMessage, ChatTokenizer};

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

/// The chat prompt of an item followed by `(` and the given letter, as tokens;
/// the letter is the last token.
pub fn with_letter(tokenizer: &ChatTokenizer, item: &AbItem, answer: char) -> Result<Vec<u32>> {
    let mut ids = prompt(tokenizer, item)?;
    ids.extend(tokenizer.encode(&format!("({answer}"), false)?);
    Ok(ids)
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

/// Contrast pairs: behaviour-matching letter versus the other letter.
pub fn pairs(tokenizer: &ChatTokenizer, items: &[AbItem]) -> Result<Vec<ContrastPair>> {
    items
        .iter()
        .map(|it| {
            Ok(ContrastPair {
                positive: with_letter(tokenizer, it, it.matching)?,
                negative: with_letter(tokenizer, it, it.not_matching)?,
            })
        })
        .collect()
}
