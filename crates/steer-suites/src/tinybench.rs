//! tinyBenchmarks anchor items: capability under steering, with the anchor
//! weights' estimate of full-set accuracy. `anchor_mc` items are
//! multiple-choice, read by the answer letter or by the likelihood of each
//! choice's text; `anchor_gen` items (GSM8K) are answered by the last number
//! of a greedy generation.

use std::path::Path;

use serde::Deserialize;
use steer_methods::Steering;
use steer_model::{ChatTokenizer, Llama};

use crate::ab::last_position_scores;
use crate::icl::argmax;
use crate::spec::{Format, Scoring, Task};
use crate::unsteered::UnsteeredCache;
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

/// One anchor item answered by generation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GenItem {
    /// Anchor weight (the weights of a benchmark sum to 1).
    pub weight: f64,
    /// The question.
    pub question: String,
    /// The expected final number, as text.
    pub answer: String,
}

/// Reads generation anchor items (JSON Lines); an unusable line is an error naming file and line.
pub fn read_gen_items(path: &Path) -> Result<Vec<GenItem>> {
    let text = read_text(path)?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item: GenItem = serde_json::from_str(line)
            .map_err(|e| SuiteError::data(path, i + 1, format!("not an anchor item: {e}")))?;
        if parse_number(&item.answer).is_none() {
            return Err(SuiteError::data(
                path,
                i + 1,
                format!("answer {:?} is not a number", item.answer),
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

/// A number written with optional sign, thousands commas and decimals.
pub fn parse_number(text: &str) -> Option<f64> {
    let cleaned: String = text
        .trim()
        .trim_end_matches('.')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The last number in a generated answer, read up to the point where the
/// model starts a new question.
pub fn final_number(generated: &str) -> Option<f64> {
    let answer = generated.split("Question:").next().unwrap_or_default();
    let mut last = None;
    let chars: Vec<char> = answer.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = if i > 0 && chars[i - 1] == '-' { i - 1 } else { i };
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || ((chars[j] == ',' || chars[j] == '.') && chars.get(j + 1).is_some_and(|c| c.is_ascii_digit())))
            {
                j += 1;
            }
            last = parse_number(&chars[start..j].iter().collect::<String>());
            i = j;
        } else {
            i += 1;
        }
    }
    last
}

/// The prompt of a question answered by likelihood or generation.
pub fn question_prompt(question: &str) -> String {
    format!("Question: {}\nAnswer:", question.trim())
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
/// defined (from the last prompt token on for most methods). With `kept`,
/// unsteered answers scored by likelihood are taken from it when it holds them.
pub fn capability(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    task: &Task,
    steerings: &[Steering],
    multiplier: f32,
    batch: usize,
    kept: Option<&UnsteeredCache>,
) -> Result<Vec<Capability>> {
    if steerings.is_empty() {
        return Err(SuiteError::BadRequest("capability needs at least one steering".into()));
    }
    match (task.spec.format, task.spec.scoring) {
        (Format::AnchorMc, Scoring::Letter) => by_letter(model, tokenizer, task, steerings, multiplier, batch),
        (Format::AnchorMc, Scoring::Likelihood) => by_likelihood(model, tokenizer, task, steerings, multiplier, kept),
        (Format::AnchorGen, _) => by_generation(model, tokenizer, task, steerings, multiplier, batch),
        _ => Err(SuiteError::BadRequest(format!(
            "{} is not a capability task",
            task.id()
        ))),
    }
}

fn summarise(hits: &[f32], weights: &[f64]) -> Capability {
    Capability {
        accuracy: hits.iter().map(|h| *h as f64).sum::<f64>() / hits.len() as f64,
        weighted: hits.iter().zip(weights).map(|(h, w)| *h as f64 * w).sum(),
        n: hits.len(),
    }
}

/// Answers read from the letter logits after `Answer:`.
fn by_letter(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    task: &Task,
    steerings: &[Steering],
    multiplier: f32,
    batch: usize,
) -> Result<Vec<Capability>> {
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
    let weights: Vec<f64> = items.iter().map(|it| it.weight).collect();
    let mut out = vec![summarise(&scores[0][0], &weights)];
    out.extend(scores.iter().map(|s| summarise(&s[1], &weights)));
    Ok(out)
}

/// Answers read as the choice text with the highest summed log-likelihood
/// after `Question: …\nAnswer:` (the evaluation harness's `acc`).
fn by_likelihood(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    task: &Task,
    steerings: &[Steering],
    multiplier: f32,
    kept: Option<&UnsteeredCache>,
) -> Result<Vec<Capability>> {
    let items = read_anchor_items(&task.file(&task.spec.test))?;
    let encode = |t: &str| tokenizer.encode(t, false).map_err(|e| SuiteError::Model(e.into()));
    let mut encoded = Vec::with_capacity(items.len());
    for item in &items {
        let prompt = encode(&question_prompt(&item.question))?;
        let choices: Vec<Vec<u32>> = item
            .choices
            .iter()
            .map(|c| encode(&format!(" {}", c.trim())))
            .collect::<Result<_>>()?;
        encoded.push((prompt, choices, item.answer));
    }
    let steered: Vec<Option<(&Steering, f32)>> = steerings.iter().map(|s| Some((s, multiplier))).collect();
    let hits = match kept {
        // The unsteered answers are measured alone the first time, then kept.
        Some(cache) => {
            let unsteered = cache.hits(task, || Ok(likelihood_hits(model, &encoded, &[None])?.remove(0)))?;
            std::iter::once(unsteered)
                .chain(likelihood_hits(model, &encoded, &steered)?)
                .collect()
        }
        None => likelihood_hits(model, &encoded, &[vec![None], steered].concat())?,
    };
    let weights: Vec<f64> = items.iter().map(|it| it.weight).collect();
    Ok(hits.iter().map(|h| summarise(h, &weights)).collect())
}

/// An item's prompt tokens, the tokens of each choice, and the right choice.
type EncodedItem = (Vec<u32>, Vec<Vec<u32>>, usize);

/// Most items whose choices are scored in one pass (their questions in one pass before).
const ITEMS_PER_PASS: usize = 8;

/// Most padded choice slots (rows × longest row) in one pass: every slot's
/// logits are kept, about 200 kB each for the default model.
const SLOTS_PER_PASS: usize = 512;

/// Per config, 1 for every item whose answer has the highest summed
/// log-likelihood under that config, else 0. Items run in groups (in order
/// of question length, at most `ITEMS_PER_PASS` items and `SLOTS_PER_PASS`
/// choice slots): the questions but their last token in
/// one unsteered pass, then, per configuration that leaves them alone, every
/// choice of every item in one pass; other items and configurations are
/// scored item by item.
fn likelihood_hits(
    model: &Llama,
    items: &[EncodedItem],
    configs: &[Option<(&Steering, f32)>],
) -> Result<Vec<Vec<f32>>> {
    let mut hits = vec![vec![0.0f32; items.len()]; configs.len()];
    let mut record = |c: usize, i: usize, ll: &[f64]| {
        let best = (0..ll.len()).fold(0, |b, k| if ll[k] > ll[b] { k } else { b });
        hits[c][i] = if best == items[i].2 { 1.0 } else { 0.0 };
    };
    // Whether a configuration leaves a question alone before its last token.
    let plain = |c: &Option<(&Steering, f32)>, prompt: &[u32]| {
        prompt.len() > 1 && !c.is_some_and(|(s, m)| m != 0.0 && crate::scoring::touches_before_last(s, prompt.len()))
    };
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].0.len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let (mut rows, mut longest) = (0, 0);
    for &i in &order {
        let (n, len) = (items[i].1.len(), 1 + items[i].1.iter().map(Vec::len).max().unwrap_or(0));
        match groups.last_mut() {
            Some(g) if g.len() < ITEMS_PER_PASS && (rows + n) * longest.max(len) <= SLOTS_PER_PASS => {
                g.push(i);
                rows += n;
                longest = longest.max(len);
            }
            _ => {
                groups.push(vec![i]);
                (rows, longest) = (n, len);
            }
        }
    }
    let mut prefixes = crate::scoring::PrefixCache::default();
    for chunk in &groups {
        let shared_items: Vec<usize> = chunk
            .iter()
            .copied()
            .filter(|&i| configs.iter().any(|c| plain(c, &items[i].0)))
            .collect();
        let shared = if shared_items.is_empty() {
            None
        } else {
            let questions: Vec<Vec<u32>> = shared_items
                .iter()
                .map(|&i| items[i].0[..items[i].0.len() - 1].to_vec())
                .collect();
            Some(model.shared_prefixes(&questions)?)
        };
        for (c, config) in configs.iter().enumerate() {
            let together: Vec<(usize, usize)> = shared_items
                .iter()
                .enumerate()
                .filter(|&(_, &i)| plain(config, &items[i].0))
                .map(|(k, &i)| (k, i))
                .collect();
            if let Some(shared) = &shared
                && !together.is_empty()
            {
                let prompts: Vec<crate::scoring::PromptAfter> = together
                    .iter()
                    .map(|&(k, i)| (k, items[i].0.as_slice(), items[i].1.as_slice()))
                    .collect();
                let lls = crate::scoring::continuations_after_each(model, shared, &prompts, *config)?;
                for (&(_, i), ll) in together.iter().zip(&lls) {
                    record(c, i, ll);
                }
            }
            for &i in chunk.iter().filter(|&&i| !together.iter().any(|&(_, j)| j == i)) {
                let (prompt, choices, _) = &items[i];
                let ll = crate::scoring::continuations_cached(model, prompt, None, choices, *config, &mut prefixes)?;
                record(c, i, &ll);
            }
        }
    }
    Ok(hits)
}

/// Answers read as the last number of a greedy generation after
/// `Question: …\nAnswer:`.
fn by_generation(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    task: &Task,
    steerings: &[Steering],
    multiplier: f32,
    batch: usize,
) -> Result<Vec<Capability>> {
    let items = read_gen_items(&task.file(&task.spec.test))?;
    let max_new = task.spec.max_new_tokens.unwrap_or(256);
    let prompts: Vec<Vec<u32>> = items
        .iter()
        .map(|it| {
            tokenizer
                .encode(&question_prompt(&it.question), false)
                .map_err(|e| SuiteError::Model(e.into()))
        })
        .collect::<Result<_>>()?;
    let eos = tokenizer.eos_ids().to_vec();
    let weights: Vec<f64> = items.iter().map(|it| it.weight).collect();
    let configs = std::iter::once(None).chain(steerings.iter().map(|s| Some((s, multiplier))));
    let mut out = Vec::new();
    for config in configs {
        let generated = crate::generation::greedy(model, &prompts, config, max_new, &eos, batch)?;
        let hits: Vec<f32> = generated
            .iter()
            .zip(&items)
            .map(|(tokens, item)| {
                let text = tokenizer
                    .decode(crate::generation::strip_eos(tokens, &eos), true)
                    .map_err(|e| SuiteError::Model(e.into()))?;
                let right = match (final_number(&text), parse_number(&item.answer)) {
                    (Some(got), Some(want)) => (got - want).abs() < 1e-6,
                    _ => false,
                };
                Ok(if right { 1.0 } else { 0.0 })
            })
            .collect::<Result<_>>()?;
        out.push(summarise(&hits, &weights));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_numbers_are_read_like_the_harness() {
        assert_eq!(final_number("She has 3 apples, then 4, so 7."), Some(7.0));
        assert_eq!(final_number("It costs $1,250.50 in total"), Some(1250.5));
        assert_eq!(final_number("The answer is -12.\n\nQuestion: 99 ducks"), Some(-12.0));
        assert_eq!(final_number("#### 18"), Some(18.0));
        assert_eq!(final_number("no digits here"), None);
        assert_eq!(parse_number("1,000"), Some(1000.0));
        assert_eq!(parse_number("x"), None);
    }
}
