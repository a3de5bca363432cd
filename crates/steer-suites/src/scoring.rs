//! Log-likelihood of token continuations under a steering: the shared piece
//! of perplexity and open-ended scoring.

use steer_methods::{Steering, SteeringKind};
use steer_model::{Edit, ForwardOutput, ForwardRequest, Llama, LogitsMode, SharedPrefix};

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
    summed_log_likelihoods(&out, rows, score_from)
}

/// Row by row, the summed log-probability of the tokens from `score_from[r]` on.
fn summed_log_likelihoods(out: &ForwardOutput, rows: &[Vec<u32>], score_from: &[usize]) -> Result<Vec<f64>> {
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

/// A prompt scored after a prefix of a [`Llama::shared_prefixes`] pass:
/// `(prefix index, prompt, its continuations)`.
pub type PromptAfter<'a> = (usize, &'a [u32], &'a [Vec<u32>]);

/// [`continuations`] of several prompts in one pass: `prompts[k]` is
/// `(prefix, prompt, its continuations)`, where prefix `prefix` of `shared`
/// ([`Llama::shared_prefixes`]) holds the prompt without its last token.
/// The steering must leave every prompt alone before its last token; it acts
/// on each prompt's rows anchored at that prompt's own end. Returns the
/// summed log-likelihoods per prompt, per continuation.
pub fn continuations_after_each(
    model: &Llama,
    shared: &SharedPrefix,
    prompts: &[PromptAfter],
    steering: Option<(&Steering, f32)>,
) -> Result<Vec<Vec<f64>>> {
    let steering = steering.filter(|(_, m)| *m != 0.0);
    let mut rows = Vec::new();
    let mut which = Vec::new();
    for &(prefix, prompt, continuations) in prompts {
        rows.extend(rows_after_last(prompt, continuations)?);
        if steering.is_some_and(|(s, _)| touches_before_last(s, prompt.len())) {
            return Err(SuiteError::BadRequest(
                "a steering that changes a prompt before its last token cannot share its prefix".into(),
            ));
        }
        which.extend(std::iter::repeat_n(prefix, continuations.len()));
    }
    // Each prompt's edits carry its multiplier on its own rows and 0 on the others.
    let mut edits = Vec::new();
    if let Some((s, m)) = steering {
        let mut first = 0;
        for &(_, prompt, continuations) in prompts {
            let own = first..first + continuations.len();
            let per_row: Vec<f32> = (0..rows.len())
                .map(|r| if own.contains(&r) { m } else { 0.0 })
                .collect();
            edits.extend(anchored(s, prompt.len()).edits_per_row(&per_row));
            first = own.end;
        }
    }
    let req = ForwardRequest {
        captures: &[],
        edits: &edits,
        logits: LogitsMode::All,
    };
    let out = model.forward_after_each(shared, &which, &rows, &req)?;
    let mut all = summed_log_likelihoods(&out, &rows, &vec![1; rows.len()])?.into_iter();
    Ok(prompts
        .iter()
        .map(|(_, _, continuations)| all.by_ref().take(continuations.len()).collect())
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

/// Whether `steering` changes a prompt of `prompt_len` tokens before its last
/// token (a prompt prefix always does), so that the rest of the prompt cannot
/// be computed once, unsteered, and shared.
pub(crate) fn touches_before_last(steering: &Steering, prompt_len: usize) -> bool {
    matches!(steering.kind, SteeringKind::Prompt { .. })
        || (0..prompt_len.saturating_sub(1)).any(|pos| steering.positions.contains(pos, prompt_len))
}

/// One setting of a sweep: `None` is the unsteered model, `Some((s, k))`
/// steering `s` at multiplier `k`.
pub(crate) type Variant = Option<(usize, usize)>;

/// The settings of `steerings` (indices) over `multipliers`: the unsteered
/// model once when `unsteered` is set, then each steering at each non-zero multiplier.
pub(crate) fn sweep_variants(steerings: &[usize], multipliers: &[f32], unsteered: bool) -> Vec<Variant> {
    let steered = steerings.iter().flat_map(|&s| {
        (0..multipliers.len())
            .filter(|&k| multipliers[k] != 0.0)
            .map(move |k| Some((s, k)))
    });
    unsteered.then_some(None).into_iter().chain(steered).collect()
}

/// Edits that run every variant of `chunk` on rows of its own: the batch is
/// `outer` blocks of `chunk.len()` variants of `inner` rows each, and a
/// steering's edits carry its multiplier on its variants' rows and 0 elsewhere.
pub(crate) fn variant_edits(
    chunk: &[Variant],
    steerings: &[Steering],
    multipliers: &[f32],
    outer: usize,
    inner: usize,
) -> Vec<Edit> {
    let mut used: Vec<usize> = chunk.iter().filter_map(|v| v.map(|(s, _)| s)).collect();
    used.sort_unstable();
    used.dedup();
    let mut edits = Vec::new();
    for s in used {
        let per_row: Vec<f32> = (0..outer)
            .flat_map(|_| chunk.iter())
            .flat_map(|v| {
                let m = match v {
                    Some((vs, k)) if *vs == s => multipliers[*k],
                    _ => 0.0,
                };
                std::iter::repeat_n(m, inner)
            })
            .collect();
        edits.extend(steerings[s].edits_per_row(&per_row));
    }
    edits
}

/// Keys and values of prompt steerings' prefixes (few-shot demonstrations),
/// computed once and extended by every prompt scored after them.
#[derive(Default)]
pub struct PrefixCache {
    kept: Vec<(Vec<u32>, SharedPrefix)>,
}

impl PrefixCache {
    /// The shared prefix of `tokens`, computed on first use.
    fn get(&mut self, model: &Llama, tokens: &[u32]) -> Result<&SharedPrefix> {
        let at = match self.kept.iter().position(|(t, _)| t == tokens) {
            Some(at) => at,
            None => {
                self.kept.push((tokens.to_vec(), model.shared_prefix(tokens)?));
                self.kept.len() - 1
            }
        };
        Ok(&self.kept[at].1)
    }
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
    continuations_cached(
        model,
        prompt,
        shared,
        continuations,
        steering,
        &mut PrefixCache::default(),
    )
}

/// The rows scored after a prompt but its last token: that token followed by
/// each continuation. A prompt and every continuation need a token.
fn rows_after_last(prompt: &[u32], continuations: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
    let Some(&last) = prompt.last() else {
        return Err(SuiteError::BadRequest("a scored continuation needs a prompt".into()));
    };
    if continuations.iter().any(|c| c.is_empty()) {
        return Err(SuiteError::BadRequest("a scored continuation is empty".into()));
    }
    Ok(continuations.iter().map(|c| [&[last], c.as_slice()].concat()).collect())
}

/// [`continuations`], with a prompt steering's prefix taken from `prefixes`
/// (and kept there for the next prompt).
pub fn continuations_cached(
    model: &Llama,
    prompt: &[u32],
    shared: Option<&SharedPrefix>,
    continuations: &[Vec<u32>],
    steering: Option<(&Steering, f32)>,
    prefixes: &mut PrefixCache,
) -> Result<Vec<f64>> {
    let after_last = rows_after_last(prompt, continuations)?;
    let rest = &prompt[..prompt.len() - 1];
    let p = prompt.len();
    let steering = steering.filter(|(_, m)| *m != 0.0);
    let from = vec![1; continuations.len()];
    if !steering.is_some_and(|(s, _)| touches_before_last(s, p)) {
        let edits = steering.map_or_else(Vec::new, |(s, m)| anchored(s, p).edits(m));
        return match shared {
            Some(prefix) => row_log_likelihoods(model, Some(prefix), &after_last, &from, &edits),
            None if p == 1 => row_log_likelihoods(model, None, &after_last, &from, &edits),
            None => {
                let prefix = model.shared_prefix(rest)?;
                row_log_likelihoods(model, Some(&prefix), &after_last, &from, &edits)
            }
        };
    }
    let (s, m) = steering.expect("a steering touches the prefix");
    let demos = s.prompt(&[], m);
    let edits = anchored(s, demos.len() + p).edits(m);
    if demos.is_empty() {
        // Steered before its last token, the prompt is still the same for every continuation:
        // computed once, under the steering.
        return if rest.is_empty() {
            row_log_likelihoods(model, None, &after_last, &from, &edits)
        } else {
            let prefix = model.shared_prefix_with(rest, &edits)?;
            row_log_likelihoods(model, Some(&prefix), &after_last, &from, &edits)
        };
    }
    if edits.is_empty() {
        // Demonstrations alone: computed once, extended by the prompt, and shared by its continuations.
        let base = prefixes.get(model, &demos)?;
        let extended;
        let after = if rest.is_empty() {
            base
        } else {
            extended = model.extend_prefix(base, rest)?;
            &extended
        };
        return row_log_likelihoods(model, Some(after), &after_last, &from, &[]);
    }
    let rows: Vec<Vec<u32>> = continuations
        .iter()
        .map(|c| [demos.as_slice(), prompt, c].concat())
        .collect();
    let from = vec![demos.len() + p; rows.len()];
    row_log_likelihoods(model, None, &rows, &from, &edits)
}

/// Largest number of continuation rows run after one shared prompt at once.
const CONTINUATION_ROWS_PER_PASS: usize = 64;

/// [`continuations`] under every steering and multiplier at once:
/// `result[s][k][c]` is the summed log-likelihood of `continuations[c]` after
/// `prompt` with `steerings[s]` at `multipliers[k]`.
///
/// Multiplier 0 is the unsteered model whatever the steering, so it is scored
/// once. Steerings that leave the prompt before its last token alone share one
/// unsteered pass over it (`shared`, when given, must be that pass) and run
/// all their variants as rows of a few batched passes, each row carrying its
/// own multiplier; the others run variant by variant, prompt steerings with
/// their prefixes kept in `prefixes`.
pub fn continuation_sweep(
    model: &Llama,
    prompt: &[u32],
    shared: Option<&SharedPrefix>,
    continuations: &[Vec<u32>],
    steerings: &[Steering],
    multipliers: &[f32],
    prefixes: &mut PrefixCache,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let Some((&last, rest)) = prompt.split_last() else {
        return Err(SuiteError::BadRequest("a scored continuation needs a prompt".into()));
    };
    if continuations.is_empty() || continuations.iter().any(|c| c.is_empty()) {
        return Err(SuiteError::BadRequest("a scored continuation is empty".into()));
    }
    let p = prompt.len();
    let n = continuations.len();
    let mut out = vec![vec![Vec::new(); multipliers.len()]; steerings.len()];
    let (slow, fast): (Vec<usize>, Vec<usize>) =
        (0..steerings.len()).partition(|&s| touches_before_last(&steerings[s], p));
    for &s in &slow {
        for (k, &m) in multipliers.iter().enumerate() {
            if m != 0.0 {
                out[s][k] =
                    continuations_cached(model, prompt, None, continuations, Some((&steerings[s], m)), prefixes)?;
            }
        }
    }
    let with_unsteered = multipliers.contains(&0.0) && !steerings.is_empty();
    let variants = sweep_variants(&fast, multipliers, with_unsteered);
    let owned;
    let shared = match shared {
        Some(prefix) => Some(prefix),
        None if p > 1 && !variants.is_empty() => {
            owned = model.shared_prefix(rest)?;
            Some(&owned)
        }
        None => None,
    };
    let anchored_steerings: Vec<Steering> = steerings.iter().map(|s| anchored(s, p)).collect();
    let rows_of_one: Vec<Vec<u32>> = continuations.iter().map(|c| [&[last], c.as_slice()].concat()).collect();
    let per_pass = (CONTINUATION_ROWS_PER_PASS / n).max(1);
    let mut unsteered = Vec::new();
    for chunk in variants.chunks(per_pass) {
        let edits = variant_edits(chunk, &anchored_steerings, multipliers, 1, n);
        let rows: Vec<Vec<u32>> = (0..chunk.len()).flat_map(|_| rows_of_one.iter().cloned()).collect();
        let from = vec![1; rows.len()];
        let ll = row_log_likelihoods(model, shared, &rows, &from, &edits)?;
        for (j, v) in chunk.iter().enumerate() {
            let values = ll[j * n..(j + 1) * n].to_vec();
            match v {
                Some((s, k)) => out[*s][*k] = values,
                None => unsteered = values,
            }
        }
    }
    for (k, &m) in multipliers.iter().enumerate() {
        if m == 0.0 {
            for per_steering in out.iter_mut() {
                per_steering[k] = unsteered.clone();
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use steer_model::{Architecture, Positions};

    use super::*;
    use crate::test_support::{steering, tiny_model};

    #[test]
    fn a_batched_sweep_scores_what_each_variant_scores_alone() {
        let model = tiny_model(Architecture::Llama, 5);
        let v: Vec<f32> = (0..32).map(|i| (i as f32 * 0.7).cos()).collect();
        let steerings = vec![
            steering(
                SteeringKind::Additive {
                    vectors: vec![(1, v.clone())],
                },
                Positions::PromptEndOnward,
            ),
            steering(
                SteeringKind::NormPreserving {
                    vectors: vec![(2, v.clone())],
                },
                Positions::PromptEndOnward,
            ),
            steering(SteeringKind::Additive { vectors: vec![(0, v)] }, Positions::All),
            steering(
                SteeringKind::Prompt {
                    positive: vec![11, 12, 13],
                    negative: vec![21, 22],
                },
                Positions::All,
            ),
        ];
        let multipliers = [-1.0f32, 0.0, 2.0];
        let conts = vec![vec![4u32, 8], vec![15], vec![16, 23, 42]];
        let mut prefixes = PrefixCache::default();
        for prompt in [vec![3u32, 1, 4, 1, 5], vec![9u32]] {
            let got =
                continuation_sweep(&model, &prompt, None, &conts, &steerings, &multipliers, &mut prefixes).unwrap();
            for (s, steering) in steerings.iter().enumerate() {
                for (k, &m) in multipliers.iter().enumerate() {
                    let want = continuations(&model, &prompt, None, &conts, Some((steering, m))).unwrap();
                    for (a, b) in got[s][k].iter().zip(&want) {
                        assert!((a - b).abs() < 1e-3, "steering {s} × {m}: {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn several_prompts_in_one_pass_score_what_each_scores_alone() {
        let model = tiny_model(Architecture::Llama, 6);
        let v: Vec<f32> = (0..32).map(|i| (i as f32 * 0.45).sin()).collect();
        let d = 32;
        let matrix: Vec<f32> = (0..d * d)
            .map(|k| if k % (d + 1) == 0 { 0.5 } else { 0.01 * (k as f32).cos() })
            .collect();
        let steerings = [
            steering(
                SteeringKind::Additive {
                    vectors: vec![(1, v.clone())],
                },
                Positions::PromptEndOnward,
            ),
            steering(
                SteeringKind::NormPreserving {
                    vectors: vec![(2, v.clone())],
                },
                Positions::LastPrompt,
            ),
            steering(
                SteeringKind::Affine {
                    layer: 0,
                    matrix,
                    bias: v.clone(),
                },
                Positions::PromptEndOnward,
            ),
            steering(SteeringKind::Additive { vectors: vec![(0, v)] }, Positions::Generated),
        ];
        // Questions of different lengths, with different numbers and lengths of choices.
        let prompts: Vec<(Vec<u32>, Vec<Vec<u32>>)> = vec![
            (vec![3, 1, 4, 1, 5, 9, 2], vec![vec![4, 8], vec![15], vec![16, 23, 42]]),
            (vec![9, 30], vec![vec![7, 7, 7, 7], vec![12]]),
            (vec![2, 7, 18, 28], vec![vec![40], vec![41], vec![42, 43], vec![44]]),
        ];
        let questions: Vec<Vec<u32>> = prompts.iter().map(|(p, _)| p[..p.len() - 1].to_vec()).collect();
        let shared = model.shared_prefixes(&questions).unwrap();
        let batch: Vec<PromptAfter> = prompts
            .iter()
            .enumerate()
            .map(|(k, (p, c))| (k, p.as_slice(), c.as_slice()))
            .collect();
        let configs: Vec<Option<(&Steering, f32)>> = std::iter::once(None)
            .chain(steerings.iter().flat_map(|s| [Some((s, 1.5f32)), Some((s, -2.0f32))]))
            .collect();
        for config in configs {
            let got = continuations_after_each(&model, &shared, &batch, config).unwrap();
            for (k, (prompt, choices)) in prompts.iter().enumerate() {
                let alone = continuations(&model, prompt, None, choices, config).unwrap();
                assert_eq!(got[k].len(), choices.len());
                for (a, b) in got[k].iter().zip(&alone) {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "prompt {k} under {:?}: {a} in one pass, {b} alone",
                        config.map(|c| c.1)
                    );
                }
            }
        }
        // A steering that changes the questions cannot share their prefixes.
        let everywhere = steering(
            SteeringKind::Additive {
                vectors: vec![(1, vec![1.0; 32])],
            },
            Positions::All,
        );
        assert!(continuations_after_each(&model, &shared, &batch, Some((&everywhere, 1.0))).is_err());
    }

    #[test]
    fn a_steering_of_the_whole_prompt_scores_what_the_whole_sequence_scores() {
        let model = tiny_model(Architecture::Qwen2, 8);
        let v: Vec<f32> = (0..32).map(|i| (i as f32 * 0.3).sin()).collect();
        let steerings = [
            steering(
                SteeringKind::Prompt {
                    positive: vec![31, 7, 44, 2, 9, 60],
                    negative: vec![5, 5, 17],
                },
                Positions::All,
            ),
            steering(
                SteeringKind::NormPreserving {
                    vectors: vec![(0, v.clone()), (2, v.clone())],
                },
                Positions::All,
            ),
            steering(SteeringKind::Additive { vectors: vec![(1, v)] }, Positions::From(1)),
        ];
        let conts = vec![vec![4u32, 8], vec![15], vec![16, 23, 42]];
        // One cache serves every prompt and both demonstration prefixes.
        let mut prefixes = PrefixCache::default();
        for (k, s) in steerings.iter().enumerate() {
            for prompt in [vec![3u32, 1, 4, 1, 5], vec![9u32], vec![2u32, 7]] {
                for m in [1.0f32, -1.5] {
                    let got = continuations_cached(&model, &prompt, None, &conts, Some((s, m)), &mut prefixes).unwrap();
                    // The whole sequence, every token run in one pass.
                    let demos = s.prompt(&[], m);
                    let edits = anchored(s, demos.len() + prompt.len()).edits(m);
                    let rows: Vec<Vec<u32>> = conts.iter().map(|c| [demos.as_slice(), &prompt, c].concat()).collect();
                    let from = vec![demos.len() + prompt.len(); rows.len()];
                    let want = row_log_likelihoods(&model, None, &rows, &from, &edits).unwrap();
                    let plain = continuations(&model, &prompt, None, &conts, None).unwrap();
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "steering {k}, prompt {prompt:?} × {m}: {a} vs {b}"
                        );
                    }
                    let moved = got.iter().zip(&plain).any(|(a, u)| (a - u).abs() > 1e-3);
                    assert!(moved, "steering {k}, prompt {prompt:?} × {m} changed nothing");
                }
            }
        }
        assert_eq!(prefixes.kept.len(), 2);
    }
}
