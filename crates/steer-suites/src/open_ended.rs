//! The open-ended form of A/B items: the question without its choices, and
//! the two answers as free continuations scored by likelihood (after Pres et
//! al. 2024, "Towards Reliable Evaluation of Behavior Steering Interventions
//! in LLMs", arXiv:2410.17245). The metric is
//! `log P(matching answer text) − log P(other answer text)`, each answer the
//! assistant's reply to the question in the chat template.

use steer_methods::Steering;
use steer_model::{ChatMessage, ChatTokenizer, Llama};

use crate::ab::AbItem;
use crate::scoring::{PrefixCache, continuation_sweep};
use crate::{Result, SuiteError};

/// An A/B item without letters.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenItem {
    /// The question, choices removed.
    pub question: String,
    /// The behaviour-matching answer's text.
    pub matching: String,
    /// The other answer's text.
    pub other: String,
}

/// Splits an item's question into the question and its two choices: the
/// choices are the lines starting with `(A)` and `(B)` (after spaces), each
/// running to the next choice or the end; a `Choices:` line before them is dropped.
pub fn open_form(item: &AbItem) -> Option<OpenItem> {
    let lines: Vec<&str> = item.question.split('\n').collect();
    let starts = |c: char| -> Vec<usize> {
        let tag = format!("({c})");
        (0..lines.len())
            .filter(|&i| lines[i].trim_start().starts_with(&tag))
            .collect()
    };
    let (a, b) = (starts('A'), starts('B'));
    let ([a], [b]) = (a.as_slice(), b.as_slice()) else {
        return None;
    };
    if b <= a {
        return None;
    }
    let choice = |from: usize, to: usize| -> String {
        let text = lines[from..to].join("\n");
        text.trim_start()[3..].trim().to_string()
    };
    let (text_a, text_b) = (choice(*a, *b), choice(*b, lines.len()));
    let mut question = lines[..*a].join("\n").trim_end().to_string();
    if let Some(stripped) = question.strip_suffix("Choices:") {
        question = stripped.trim_end().to_string();
    }
    let pick = |c: char| if c == 'A' { text_a.clone() } else { text_b.clone() };
    if question.is_empty() || text_a.is_empty() || text_b.is_empty() {
        return None;
    }
    Some(OpenItem {
        question,
        matching: pick(item.matching),
        other: pick(item.not_matching),
    })
}

/// Tokens of an open item: the chat prompt (ending in the assistant's turn
/// header) and the two answers.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTokens {
    /// The question as one user turn, with the generation prompt.
    pub prompt: Vec<u32>,
    /// The matching answer's tokens.
    pub matching: Vec<u32>,
    /// The other answer's tokens.
    pub other: Vec<u32>,
}

/// Tokenizes open items.
pub fn open_tokens(tokenizer: &ChatTokenizer, items: &[OpenItem]) -> Result<Vec<OpenTokens>> {
    let enc = |t: &str| tokenizer.encode(t, false).map_err(|e| SuiteError::Model(e.into()));
    items
        .iter()
        .map(|it| {
            let messages = [ChatMessage {
                role: "user".into(),
                content: it.question.clone(),
            }];
            Ok(OpenTokens {
                prompt: tokenizer
                    .encode_chat(&messages, true)
                    .map_err(|e| SuiteError::Model(e.into()))?,
                matching: enc(&it.matching)?,
                other: enc(&it.other)?,
            })
        })
        .collect()
}

/// `log P(matching) − log P(other)` of every item under every steering and
/// multiplier: `result[s][k][i]`. The steering acts as it is defined (from
/// the last prompt token on for most methods); the prompt before its last
/// token is computed once per item when no steering touches it.
pub fn open_margins(
    model: &Llama,
    items: &[OpenTokens],
    steerings: &[Steering],
    multipliers: &[f32],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut out = vec![vec![Vec::with_capacity(items.len()); multipliers.len()]; steerings.len()];
    let mut prefixes = PrefixCache::default();
    for item in items {
        if item.prompt.is_empty() || item.matching.is_empty() || item.other.is_empty() {
            return Err(SuiteError::BadRequest(
                "an open item has an empty prompt or answer".into(),
            ));
        }
        let shared = if item.prompt.len() > 1 {
            Some(model.shared_prefix(&item.prompt[..item.prompt.len() - 1])?)
        } else {
            None
        };
        let answers = [item.matching.clone(), item.other.clone()];
        let ll = continuation_sweep(
            model,
            &item.prompt,
            shared.as_ref(),
            &answers,
            steerings,
            multipliers,
            &mut prefixes,
        )?;
        for (s, per_s) in ll.iter().enumerate() {
            for (k, ll) in per_s.iter().enumerate() {
                out[s][k].push((ll[0] - ll[1]) as f32);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_split_off() {
        let item = AbItem {
            question: "Is it?\n\nChoices:\n (A) Yes, it is\nreally.\n (B) No".into(),
            matching: 'B',
            not_matching: 'A',
        };
        let open = open_form(&item).unwrap();
        assert_eq!(open.question, "Is it?");
        assert_eq!(open.matching, "No");
        assert_eq!(open.other, "Yes, it is\nreally.");
        let inline = AbItem {
            question: "Pick (A) or (B)".into(),
            matching: 'A',
            not_matching: 'B',
        };
        assert!(open_form(&inline).is_none());
    }
}
