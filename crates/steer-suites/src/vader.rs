//! VADER sentiment scores (Hutto & Gilbert, "VADER: A Parsimonious Rule-based
//! Model for Sentiment Analysis of Social Media Text", ICWSM 2014), matching
//! the reference package `vaderSentiment` 3.3.2.
//!
//! Text is split on whitespace; each token loses its surrounding ASCII
//! punctuation unless that would leave two characters or fewer, which keeps
//! emoticons such as `:)` intact. Every token found in the lexicon gets its
//! valence, adjusted by the rules of the paper:
//!
//! - booster and dampener words up to three tokens before it add or subtract
//!   0.293 (scaled by 0.95 and 0.9 at distances two and three), plus 0.733
//!   when the booster is in capitals while the text mixes cases;
//! - a word in capitals in such a text gains 0.733 in magnitude;
//! - negations up to three tokens before it (`not`, `never`, words with
//!   `n't`, a preceding `no`, …) multiply it by −0.74, except in
//!   "never so/this …", which strengthens it by 1.25, and "without doubt";
//! - `least` before it negates it, unless preceded by `at` or `very`;
//! - the phrases the package knows ("the bomb", "kiss of death", "yeah
//!   right", …) replace it, and "kind of", "sort of" and "just enough"
//!   dampen it;
//! - after the first `but`, valences count 1.5 times and before it 0.5 times.
//!
//! The sum gains 0.292 per exclamation mark (at most four) and, from two
//! question marks on, 0.18 per question mark (0.96 from four on); the
//! compound score is the sum normalised by `x / sqrt(x² + 15)`. `pos`, `neg`
//! and `neu` are the shares of positive, negative and neutral tokens, each
//! sentiment token counted as one plus its magnitude. Scores are rounded like
//! the package: proportions to three decimals, compound to four.
//!
//! The package's quirks are kept on purpose, so that scores agree with it:
//! a preceding `so` or `this` strengthens a word by 1.25 even without
//! `never`, a zero valence in capitals moves to −0.733, and the `but`
//! weighting finds each value by equality, so with repeated valences the
//! first equal entry is reweighed instead of the one at hand.
//!
//! One step of the package is left out: it replaces emoji, and the symbols
//! its emoji lexicon lists (`©`, `®`, `™`, `‼`, arrows, …), by their English
//! descriptions before scoring. steerbench scores plain model-generated text;
//! such characters are treated as ordinary characters here.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::{Result, SuiteError, read_text};

/// Valence change of a booster word ("very"); dampeners subtract it.
const BOOST: f64 = 0.293;
/// Valence change of a word in capitals when the text mixes cases.
const CAPS_BOOST: f64 = 0.733;
/// Factor applied to a negated valence.
const NEGATION: f64 = -0.74;
/// Emphasis of each exclamation mark, counted up to [`MAX_EXCLAMATIONS`].
const EXCLAMATION: f64 = 0.292;
/// The most exclamation marks that add emphasis.
const MAX_EXCLAMATIONS: usize = 4;
/// Emphasis of each question mark when there are two or three.
const QUESTION: f64 = 0.18;
/// Emphasis of four or more question marks.
const MANY_QUESTIONS: f64 = 0.96;
/// Normalisation constant of the compound score, about the largest expected sum.
const ALPHA: f64 = 15.0;

/// Words that negate the valence of a word up to three tokens later (besides
/// any word containing "n't").
#[rustfmt::skip]
const NEGATIONS: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "ain't", "aren't", "can't", "couldn't",
    "daren't", "didn't", "doesn't", "dont", "hadnt", "hasnt", "havent", "isnt", "mightnt", "mustnt", "neither", "don't",
    "hadn't", "hasn't", "haven't", "isn't", "mightn't", "mustn't", "neednt", "needn't", "never", "none", "nope", "nor",
    "not", "nothing", "nowhere", "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent", "oughtn't", "shan't",
    "shouldn't", "uh-uh", "wasn't", "weren't", "without", "wont", "wouldnt", "won't", "wouldn't", "rarely", "seldom",
    "despite",
];

/// Degree adverbs that strengthen the following sentiment word.
#[rustfmt::skip]
const BOOSTERS: &[&str] = &[
    "absolutely", "amazingly", "awfully", "completely", "considerable", "considerably", "decidedly", "deeply", "effing",
    "enormous", "enormously", "entirely", "especially", "exceptional", "exceptionally", "extreme", "extremely",
    "fabulously", "flipping", "flippin", "frackin", "fracking", "fricking", "frickin", "frigging", "friggin", "fully",
    "fuckin", "fucking", "fuggin", "fugging", "greatly", "hella", "highly", "hugely", "incredible", "incredibly",
    "intensely", "major", "majorly", "more", "most", "particularly", "purely", "quite", "really", "remarkably", "so",
    "substantially", "thoroughly", "total", "totally", "tremendous", "tremendously", "uber", "unbelievably",
    "unusually", "utter", "utterly", "very",
];

/// Degree adverbs that weaken the following sentiment word.
#[rustfmt::skip]
const DAMPENERS: &[&str] = &[
    "almost", "barely", "hardly", "kinda", "kindof", "kind-of", "less", "little", "marginal", "marginally",
    "occasional", "occasionally", "partly", "scarce", "scarcely", "slight", "slightly", "somewhat", "sorta", "sortof",
    "sort-of",
];

/// Two-word dampeners, recognised in the two tokens before a sentiment word
/// three or more tokens into the text.
const DAMPENER_PHRASES: &[&str] = &["just enough", "kind of", "sort of"];

/// Phrases whose valence replaces that of the sentiment word they contain.
/// (The package also lists the single word "badass", which its phrase
/// matching never reaches.)
const PHRASES: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.5),
];

/// Titlecase letters (Unicode category Lt), which make a word not all capitals.
const TITLECASE: &[char] = &[
    '\u{1C5}', '\u{1C8}', '\u{1CB}', '\u{1F2}', '\u{1F88}', '\u{1F89}', '\u{1F8A}', '\u{1F8B}', '\u{1F8C}', '\u{1F8D}',
    '\u{1F8E}', '\u{1F8F}', '\u{1F98}', '\u{1F99}', '\u{1F9A}', '\u{1F9B}', '\u{1F9C}', '\u{1F9D}', '\u{1F9E}',
    '\u{1F9F}', '\u{1FA8}', '\u{1FA9}', '\u{1FAA}', '\u{1FAB}', '\u{1FAC}', '\u{1FAD}', '\u{1FAE}', '\u{1FAF}',
    '\u{1FBC}', '\u{1FCC}', '\u{1FFC}',
];

/// The four VADER scores of a text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Share of negative sentiment, rounded to three decimals.
    pub neg: f64,
    /// Share of neutral tokens, rounded to three decimals.
    pub neu: f64,
    /// Share of positive sentiment, rounded to three decimals.
    pub pos: f64,
    /// Normalised sum of valences in [−1, 1], rounded to four decimals.
    pub compound: f64,
}

/// A malformed line of a VADER lexicon.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LexiconError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A VADER scorer: the lexicon of word valences and the rules around it.
#[derive(Debug, Clone)]
pub struct Vader {
    lexicon: HashMap<String, f64>,
}

impl Vader {
    /// Reads a lexicon in the package's format: one entry a line, the token
    /// and its mean valence first among tab-separated fields (the others are
    /// ignored). Blank lines are skipped and a repeated token keeps its last
    /// valence.
    pub fn parse(text: &str) -> Result<Vader, LexiconError> {
        let mut lexicon = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let error = |message: String| LexiconError { line: n + 1, message };
            let mut fields = line.split('\t');
            let token = fields.next().unwrap_or_default();
            let Some(valence) = fields.next() else {
                return Err(error(format!(
                    "expected a token and a valence separated by a tab, got {line:?}"
                )));
            };
            let valence: f64 = match valence.trim().parse() {
                Ok(v) if f64::is_finite(v) => v,
                _ => return Err(error(format!("valence of {token:?} is not a number: {valence:?}"))),
            };
            lexicon.insert(token.to_string(), valence);
        }
        if lexicon.is_empty() {
            return Err(LexiconError {
                line: 0,
                message: "the lexicon has no entries".into(),
            });
        }
        Ok(Vader { lexicon })
    }

    /// Reads the lexicon file at `path`; errors name the file and line.
    pub fn load(path: &Path) -> Result<Vader> {
        Vader::parse(&read_text(path)?).map_err(|e| SuiteError::data(path, e.line, e.message))
    }

    /// Number of distinct tokens in the lexicon.
    pub fn len(&self) -> usize {
        self.lexicon.len()
    }

    /// Whether the lexicon is empty (never true for a parsed lexicon).
    pub fn is_empty(&self) -> bool {
        self.lexicon.is_empty()
    }

    /// The valence of a (lower-case) token, if the lexicon has it.
    pub fn valence(&self, token: &str) -> Option<f64> {
        self.lexicon.get(token).copied()
    }

    /// Scores `text`. Text without tokens scores zero everywhere.
    pub fn polarity_scores(&self, text: &str) -> Scores {
        let words = Words::new(text);
        let valences: Vec<f64> = (0..words.len()).map(|i| self.word_valence(&words, i)).collect();
        let valences = weigh_around_but(&words.lower, valences);
        summarise(&valences, text)
    }

    fn known(&self, word: &str) -> bool {
        self.lexicon.contains_key(word)
    }

    /// The valence of word `i` in its context; zero for words outside the
    /// lexicon and for degree adverbs, which act on the words after them.
    fn word_valence(&self, words: &Words, i: usize) -> f64 {
        let w = &words.lower;
        if is_degree_adverb(&w[i]) || (w[i] == "kind" && w.get(i + 1).is_some_and(|next| next == "of")) {
            return 0.0;
        }
        let Some(base) = self.valence(&w[i]) else {
            return 0.0;
        };
        let mut valence = base;
        // "no" before a sentiment word negates it rather than carrying its own valence.
        if w[i] == "no" && w.get(i + 1).is_some_and(|next| self.known(next)) {
            valence = 0.0;
        }
        let no_before = (i >= 1 && w[i - 1] == "no")
            || (i >= 2 && w[i - 2] == "no")
            || (i >= 3 && w[i - 3] == "no" && (w[i - 1] == "or" || w[i - 1] == "nor"));
        if no_before {
            valence = base * NEGATION;
        }
        if words.shouting && words.caps[i] {
            valence += if valence > 0.0 { CAPS_BOOST } else { -CAPS_BOOST };
        }
        for distance in 1..=3.min(i) {
            let j = i - distance;
            if self.known(&w[j]) {
                continue;
            }
            let damping = [1.0, 0.95, 0.9][distance - 1];
            valence += degree_shift(&w[j], words.shouting && words.caps[j], valence) * damping;
            valence = negate(valence, w, i, distance);
            if distance == 3 {
                valence = apply_phrases(valence, w, i);
            }
        }
        if i >= 1 && w[i - 1] == "least" && !self.known("least") && (i == 1 || (w[i - 2] != "at" && w[i - 2] != "very"))
        {
            valence *= NEGATION;
        }
        valence
    }
}

/// The tokens of a text with what the rules need to know about them.
struct Words {
    /// Lower-case tokens.
    lower: Vec<String>,
    /// Whether each token is in capitals.
    caps: Vec<bool>,
    /// Whether some but not all tokens are in capitals, which makes capitals emphasis.
    shouting: bool,
}

impl Words {
    fn new(text: &str) -> Words {
        let tokens: Vec<&str> = text
            .split(is_space)
            .filter(|t| !t.is_empty())
            .map(strip_punctuation)
            .collect();
        let caps: Vec<bool> = tokens.iter().map(|t| is_capitals(t)).collect();
        let n_caps = caps.iter().filter(|&&c| c).count();
        Words {
            lower: tokens.iter().map(|t| t.to_lowercase()).collect(),
            shouting: n_caps > 0 && n_caps < tokens.len(),
            caps,
        }
    }

    fn len(&self) -> usize {
        self.lower.len()
    }
}

/// Whitespace as the reference splits on: Unicode white space and the ASCII
/// information separators U+001C to U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

/// Removes surrounding ASCII punctuation unless at most two characters would
/// remain, which keeps short emoticons and the like whole.
fn strip_punctuation(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    if stripped.chars().count() <= 2 { token } else { stripped }
}

/// Whether a token has an upper-case letter and neither lower-case nor
/// titlecase letters.
fn is_capitals(token: &str) -> bool {
    let mut upper = false;
    for c in token.chars() {
        if c.is_lowercase() || TITLECASE.contains(&c) {
            return false;
        }
        upper |= c.is_uppercase();
    }
    upper
}

fn is_degree_adverb(word: &str) -> bool {
    BOOSTERS.contains(&word) || DAMPENERS.contains(&word)
}

fn is_negation(word: &str) -> bool {
    NEGATIONS.contains(&word) || word.contains("n't")
}

/// The change a degree adverb makes to a following valence: towards larger
/// magnitude for boosters, smaller for dampeners, and a further 0.733 when
/// the adverb is shouted.
fn degree_shift(word: &str, shouted: bool, valence: f64) -> f64 {
    let mut shift = if BOOSTERS.contains(&word) {
        BOOST
    } else if DAMPENERS.contains(&word) {
        -BOOST
    } else {
        return 0.0;
    };
    if valence < 0.0 {
        shift = -shift;
    }
    if shouted {
        shift += if valence > 0.0 { CAPS_BOOST } else { -CAPS_BOOST };
    }
    shift
}

/// Applies negation by the word `distance` tokens before word `i`.
fn negate(valence: f64, w: &[String], i: usize, distance: usize) -> f64 {
    let so_or_this = |word: &str| word == "so" || word == "this";
    let strengthened = match distance {
        1 => false,
        2 => w[i - 2] == "never" && so_or_this(&w[i - 1]),
        _ => (w[i - 3] == "never" && so_or_this(&w[i - 2])) || so_or_this(&w[i - 1]),
    };
    let without_doubt = match distance {
        1 => false,
        2 => w[i - 2] == "without" && w[i - 1] == "doubt",
        _ => w[i - 3] == "without" && (w[i - 2] == "doubt" || w[i - 1] == "doubt"),
    };
    if strengthened {
        valence * 1.25
    } else if without_doubt {
        valence
    } else if is_negation(&w[i - distance]) {
        valence * NEGATION
    } else {
        valence
    }
}

/// The valence of a known phrase made of exactly `words`.
fn phrase_valence(words: &[String]) -> Option<f64> {
    PHRASES
        .iter()
        .find(|(phrase, _)| phrase.split(' ').eq(words.iter().map(String::as_str)))
        .map(|&(_, v)| v)
}

fn is_dampener_phrase(words: &[String]) -> bool {
    DAMPENER_PHRASES
        .iter()
        .any(|phrase| phrase.split(' ').eq(words.iter().map(String::as_str)))
}

/// Phrases around word `i` (which is at least the fourth word): a known
/// phrase ending at or just before it, or starting at it, sets its valence,
/// and a two-word dampener among the three words before it weakens it.
fn apply_phrases(mut valence: f64, w: &[String], i: usize) -> f64 {
    let before = [
        &w[i - 1..=i],
        &w[i - 2..=i],
        &w[i - 2..i],
        &w[i - 3..i],
        &w[i - 3..i - 1],
    ];
    if let Some(v) = before.iter().find_map(|words| phrase_valence(words)) {
        valence = v;
    }
    for end in [i + 2, i + 3] {
        if let Some(v) = w.get(i..end).and_then(phrase_valence) {
            valence = v;
        }
    }
    for words in [&w[i - 3..i - 1], &w[i - 2..i]] {
        if is_dampener_phrase(words) {
            valence -= BOOST;
        }
    }
    valence
}

/// Halves the valences before the first "but" and multiplies those after it by 1.5.
fn weigh_around_but(words: &[String], mut valences: Vec<f64>) -> Vec<f64> {
    let Some(but) = words.iter().position(|w| w == "but") else {
        return valences;
    };
    for k in 0..valences.len() {
        let v = valences[k];
        // The reference locates each value by equality, so a repeated value
        // reweighs its first occurrence; this is kept for agreement.
        let at = valences.iter().position(|&x| x == v).unwrap_or(k);
        match at.cmp(&but) {
            std::cmp::Ordering::Less => valences[at] = v * 0.5,
            std::cmp::Ordering::Greater => valences[at] = v * 1.5,
            std::cmp::Ordering::Equal => {}
        }
    }
    valences
}

/// Emphasis from exclamation and question marks.
fn punctuation_emphasis(text: &str) -> f64 {
    let exclamations = text.matches('!').count().min(MAX_EXCLAMATIONS);
    let questions = text.matches('?').count();
    let question_emphasis = match questions {
        0 | 1 => 0.0,
        2 | 3 => questions as f64 * QUESTION,
        _ => MANY_QUESTIONS,
    };
    exclamations as f64 * EXCLAMATION + question_emphasis
}

/// Combines the word valences of `text` into its scores.
fn summarise(valences: &[f64], text: &str) -> Scores {
    if valences.is_empty() {
        return Scores {
            neg: 0.0,
            neu: 0.0,
            pos: 0.0,
            compound: 0.0,
        };
    }
    let emphasis = punctuation_emphasis(text);
    let mut sum: f64 = valences.iter().sum();
    if sum > 0.0 {
        sum += emphasis;
    } else if sum < 0.0 {
        sum -= emphasis;
    }
    let compound = (sum / (sum * sum + ALPHA).sqrt()).clamp(-1.0, 1.0);

    // Sentiment words count as one plus their magnitude, neutral words as one.
    let mut pos = 0.0;
    let mut neg = 0.0;
    let mut neutral = 0usize;
    for &v in valences {
        if v > 0.0 {
            pos += v + 1.0;
        } else if v < 0.0 {
            neg += v - 1.0;
        } else {
            neutral += 1;
        }
    }
    if pos > neg.abs() {
        pos += emphasis;
    } else if pos < neg.abs() {
        neg -= emphasis;
    }
    let total = pos + neg.abs() + neutral as f64;
    Scores {
        neg: round(neg.abs() / total, 3),
        neu: round(neutral as f64 / total, 3),
        pos: round(pos / total, 3),
        compound: round(compound, 4),
    }
}

/// Rounds to `digits` decimals, halves to even on the exact binary value as
/// Python's `round` does; Rust's fixed-precision formatting rounds the same way.
fn round(x: f64, digits: usize) -> f64 {
    format!("{x:.digits$}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<&str> {
        text.split(is_space)
            .filter(|t| !t.is_empty())
            .map(strip_punctuation)
            .collect()
    }

    #[test]
    fn tokens_keep_short_punctuated_forms() {
        assert_eq!(
            words("Good, :) no. \"great!\" ok! ..."),
            ["Good", ":)", "no.", "great", "ok!", "..."]
        );
        assert_eq!(words("a\u{1F}b\u{A0}c"), ["a", "b", "c"]);
    }

    #[test]
    fn capitals_follow_cased_letters() {
        assert!(is_capitals("GREAT!"));
        assert!(is_capitals("ÉNORME"));
        assert!(!is_capitals("123"));
        assert!(!is_capitals("Great"));
        assert!(!is_capitals("\u{1C5}A"));
    }

    #[test]
    fn rounding_halves_to_even() {
        assert_eq!(round(0.5625, 3), 0.562);
        assert_eq!(round(0.1875, 3), 0.188);
        assert_eq!(round(2.675, 2), 2.67);
    }

    #[test]
    fn but_reweighs_first_equal_value() {
        let w: Vec<String> = ["x", "y", "but", "z", "w"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            weigh_around_but(&w, vec![2.0, 1.0, 0.0, 3.0, 4.0]),
            vec![0.5, 1.0, 0.0, 4.5, 6.0]
        );
    }

    #[test]
    fn malformed_lines_are_reported() {
        assert_eq!(Vader::parse("good\t1.9\n\nbad 2\n").unwrap_err().line, 3);
        assert_eq!(Vader::parse("good\tx\n").unwrap_err().line, 1);
        assert!(Vader::parse("\n").is_err());
        let v = Vader::parse("good\t1.9\t0.9\t[2, 2]\ngood\t2.0\n").unwrap();
        assert_eq!((v.len(), v.valence("good")), (1, Some(2.0)));
    }
}
