//! Autoregressive generation with a KV cache; edits apply at every step.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::is_positive;
use crate::error::{ModelError, Result};
use crate::hooks::{Edit, LogitsMode};
use crate::llama::{ForwardRequest, KvCache, Llama, PaddedBatch, StepInput};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Sampling {
    /// Always the most likely token (the first one on ties).
    Greedy,
    /// Temperature and nucleus (top-p) sampling with a seeded generator per row.
    Sample {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Smallest set of tokens whose probability reaches `top_p` (0 < top_p <= 1).
        top_p: f32,
        /// Seed; row `i` of a batch draws from its own stream derived from it.
        seed: u64,
    },
}

/// Options of [`Llama::generate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    /// Most tokens to add to each row.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: Sampling,
    /// Token ids that end a row (the end token is kept in the output).
    pub eos_ids: Vec<u32>,
}

/// Picks the next token from one row of logits.
fn choose(logits: &[f32], sampling: Sampling, rng: Option<&mut rand::rngs::StdRng>) -> u32 {
    match (sampling, rng) {
        (Sampling::Sample { temperature, top_p, .. }, Some(rng)) => {
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut probs: Vec<(usize, f32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i, ((l - max) / temperature).exp()))
                .collect();
            let total: f32 = probs.iter().map(|p| p.1).sum();
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut kept = 0;
            let mut mass = 0.0;
            for p in &probs {
                kept += 1;
                mass += p.1 / total;
                if mass >= top_p {
                    break;
                }
            }
            let probs = &probs[..kept];
            let kept_total: f32 = probs.iter().map(|p| p.1).sum();
            let mut r = rng.random::<f32>() * kept_total;
            for p in probs {
                r -= p.1;
                if r <= 0.0 {
                    return p.0 as u32;
                }
            }
            probs[kept - 1].0 as u32
        }
        _ => {
            let mut best = 0;
            for (i, &v) in logits.iter().enumerate() {
                if v > logits[best] {
                    best = i;
                }
            }
            best as u32
        }
    }
}

impl Llama {
    /// Continues each prompt by up to `opts.max_new_tokens` tokens, applying
    /// `edits` at every step (prompt and generated tokens alike, as each edit's
    /// `Positions` says). Returns the new tokens of every row; a row stops after
    /// its first end token. Rows of one batch do not influence each other.
    pub fn generate(&self, prompts: &[Vec<u32>], edits: &[Edit], opts: &GenerateOptions) -> Result<Vec<Vec<u32>>> {
        if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
            return Err(ModelError::bad_request(
                "generation needs at least one non-empty prompt",
            ));
        }
        if let Sampling::Sample { temperature, top_p, .. } = opts.sampling
            && (!is_positive(temperature) || !is_positive(top_p) || top_p > 1.0)
        {
            return Err(ModelError::bad_request(format!(
                "temperature must be > 0 and top_p in (0, 1]; got {temperature} and {top_p}"
            )));
        }
        let b = prompts.len();
        let req = ForwardRequest {
            captures: &[],
            edits,
            logits: LogitsMode::Last,
        };
        self.validate_request(&req, b)?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if longest + opts.max_new_tokens > self.config().max_position_embeddings {
            return Err(ModelError::bad_request(format!(
                "prompt of {longest} tokens plus {} new tokens exceeds the model's context of {}",
                opts.max_new_tokens,
                self.config().max_position_embeddings
            )));
        }
        let mut rngs: Vec<Option<rand::rngs::StdRng>> = (0..b)
            .map(|row| match opts.sampling {
                Sampling::Sample { seed, .. } => Some(rand::rngs::StdRng::seed_from_u64(
                    seed ^ (row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                )),
                Sampling::Greedy => None,
            })
            .collect();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        if opts.max_new_tokens == 0 {
            return Ok(out);
        }

        // Prefill: the left-padded prompts.
        let prefill = PaddedBatch::new(prompts);
        let mut cache = KvCache::new();
        let input = prefill.input();
        let (mut logits, _) = self.step(&input, Some(&mut cache), &req)?;
        let mut done = vec![false; b];
        for step in 0..opts.max_new_tokens {
            let last = logits
                .take()
                .ok_or_else(|| ModelError::Backend("no logits returned".into()))?;
            let vocab = last.shape[1];
            let mut next = Vec::with_capacity(b);
            for row in 0..b {
                if done[row] {
                    // Finished rows keep feeding their end token; its output is ignored.
                    next.push(*out[row].last().unwrap_or(&0));
                    continue;
                }
                let token = choose(
                    &last.data[row * vocab..(row + 1) * vocab],
                    opts.sampling,
                    rngs[row].as_mut(),
                );
                out[row].push(token);
                if opts.eos_ids.contains(&token) {
                    done[row] = true;
                }
                next.push(token);
            }
            if done.iter().all(|&d| d) || step + 1 == opts.max_new_tokens {
                break;
            }
            let positions: Vec<Option<usize>> = (0..b).map(|row| Some(prefill.lens[row] + step)).collect();
            let input = StepInput {
                ids: &next,
                positions: &positions,
                prompt_lens: &prefill.lens,
                batch: b,
                variants: 1,
                decoding: true,
            };
            logits = self.step(&input, Some(&mut cache), &req)?.0;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_maximum() {
        assert_eq!(choose(&[0.0, 3.0, 3.0, 1.0], Sampling::Greedy, None), 1);
    }

    #[test]
    fn tiny_top_p_is_greedy() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = Sampling::Sample {
            temperature: 1.0,
            top_p: 1e-6,
            seed: 1,
        };
        for _ in 0..20 {
            assert_eq!(choose(&[0.0, 5.0, 1.0], s, Some(&mut rng)), 1);
        }
    }

    #[test]
    fn sampling_follows_probabilities() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let s = Sampling::Sample {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
        };
        // P(token 1) = e / (1 + e) ≈ 0.731.
        let hits = (0..4000)
            .filter(|_| choose(&[0.0, 1.0], s, Some(&mut rng)) == 1)
            .count();
        let frac = hits as f64 / 4000.0;
        assert!((frac - 0.731).abs() < 0.03, "fraction {frac}");
    }
}
