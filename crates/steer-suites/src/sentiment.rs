//! Sentiment transfer (the `sentiment` format): neutral text openings steered
//! towards positive or negative continuations.
//!
//! A method is fitted on contrast pairs `opening + " <positive word>"` vs
//! `opening + " <negative word>"` built from the training openings and the
//! training word pairs. Layer and multiplier are chosen on the validation
//! openings by the likelihood metric: per opening, the mean over four held-out
//! word pairs of `log P(" positive") − log P(" negative")`. On the test
//! openings steerbench reports that metric over the multiplier grid (with the
//! random baseline and per-item steerability), and greedy continuations
//! unsteered, steered towards positive (`+m`), towards negative (`−m`) and
//! with the random steering, each scored with VADER's compound score and with
//! its perplexity under the unsteered model (fluency).

use std::path::Path;
use std::time::Instant;

use steer_methods::{ContrastPair, Steering, SteeringMethod, TrainingSet};
use steer_model::{ChatTokenizer, Llama};

use crate::protocol::{
    EvalOptions, Headline, ItemValue, Phase, Phases, Steerability, Subject, capability_damage, damage, fit_sweep,
    headline_rows, push_damage_rows, push_items, random_like, select, steerability, sweep_settings,
};
use crate::rows::ResultRow;
use crate::scoring::{PrefixCache, continuation_sweep, continuations};
use crate::spec::{Format, Task};
use crate::stats::{Estimate, bootstrap, paired};
use crate::vader::Vader;
use crate::{Result, SuiteError, read_text, sha256_file};

/// Held-out word pairs each opening is scored with.
pub const PAIRS_PER_ITEM: usize = 4;

/// Word pairs of a sentiment task.
#[derive(Debug, Clone, PartialEq)]
pub struct Words {
    /// `(positive, negative)` pairs for fitting.
    pub train: Vec<(String, String)>,
    /// `(positive, negative)` pairs for scoring.
    pub eval: Vec<(String, String)>,
}

/// Reads openings, one per non-blank line.
pub fn read_prompts(path: &Path) -> Result<Vec<String>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.contains('\t') {
            return Err(SuiteError::data(path, i + 1, "an opening contains a tab"));
        }
        out.push(line.to_string());
    }
    if out.is_empty() {
        return Err(SuiteError::data(path, 1, "no openings"));
    }
    Ok(out)
}

/// Reads word pairs: a tab-separated file with the header
/// `positive<TAB>negative<TAB>split`, split `train` or `eval`.
pub fn read_words(path: &Path) -> Result<Words> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim_end() == "positive\tnegative\tsplit" => {}
        _ => {
            return Err(SuiteError::data(
                path,
                1,
                "the header must be 'positive<TAB>negative<TAB>split'",
            ));
        }
    }
    let mut words = Words {
        train: Vec::new(),
        eval: Vec::new(),
    };
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.trim_end().split('\t').collect();
        let [pos, neg, split] = cells.as_slice() else {
            return Err(SuiteError::data(
                path,
                i + 1,
                format!("expected 3 tab-separated cells, found {}", cells.len()),
            ));
        };
        if pos.trim().is_empty() || neg.trim().is_empty() || pos == neg {
            return Err(SuiteError::data(
                path,
                i + 1,
                "a pair needs two different, non-empty words",
            ));
        }
        let pair = (pos.trim().to_string(), neg.trim().to_string());
        match *split {
            "train" => words.train.push(pair),
            "eval" => words.eval.push(pair),
            other => {
                return Err(SuiteError::data(
                    path,
                    i + 1,
                    format!("split '{other}' is neither 'train' nor 'eval'"),
                ));
            }
        }
    }
    if words.train.is_empty() || words.eval.len() < PAIRS_PER_ITEM {
        return Err(SuiteError::data(
            path,
            0,
            format!("needs at least one train pair and {PAIRS_PER_ITEM} eval pairs"),
        ));
    }
    Ok(words)
}

fn encode(tokenizer: &ChatTokenizer, text: &str) -> Result<Vec<u32>> {
    tokenizer.encode(text, false).map_err(|e| SuiteError::Model(e.into()))
}

/// Contrast pairs of the training openings: opening `i` with training word pair `i mod n`.
pub fn training_set(tokenizer: &ChatTokenizer, prompts: &[String], words: &Words) -> Result<TrainingSet> {
    let pairs = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (pos, neg) = &words.train[i % words.train.len()];
            Ok(ContrastPair {
                prompt: encode(tokenizer, p)?,
                positive: encode(tokenizer, &format!(" {pos}"))?,
                negative: encode(tokenizer, &format!(" {neg}"))?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(TrainingSet {
        pairs,
        separator: encode(tokenizer, ".\n")?,
        activations: None,
    })
}

/// One scored opening: its tokens and the continuations `[pos₀, neg₀, pos₁, neg₁, …]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredOpening {
    /// The opening's tokens.
    pub prompt: Vec<u32>,
    /// Positive and negative continuations, interleaved.
    pub continuations: Vec<Vec<u32>>,
}

/// Openings with the eval pairs `k·i … k·i + k − 1 (mod n)` each, `k` = [`PAIRS_PER_ITEM`].
pub fn scored_openings(tokenizer: &ChatTokenizer, prompts: &[String], words: &Words) -> Result<Vec<ScoredOpening>> {
    let n = words.eval.len();
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut conts = Vec::with_capacity(2 * PAIRS_PER_ITEM);
            for k in 0..PAIRS_PER_ITEM {
                let (pos, neg) = &words.eval[(PAIRS_PER_ITEM * i + k) % n];
                conts.push(encode(tokenizer, &format!(" {pos}"))?);
                conts.push(encode(tokenizer, &format!(" {neg}"))?);
            }
            Ok(ScoredOpening {
                prompt: encode(tokenizer, p)?,
                continuations: conts,
            })
        })
        .collect()
}

/// Per opening, the mean of `log P(positive) − log P(negative)` over its
/// pairs, under every steering and multiplier: `result[s][k][i]`.
pub fn sentiment_margins(
    model: &Llama,
    items: &[ScoredOpening],
    steerings: &[Steering],
    multipliers: &[f32],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut out = vec![vec![Vec::with_capacity(items.len()); multipliers.len()]; steerings.len()];
    let mut prefixes = PrefixCache::default();
    for item in items {
        let shared = if item.prompt.len() > 1 {
            Some(model.shared_prefix(&item.prompt[..item.prompt.len() - 1])?)
        } else {
            None
        };
        let ll = continuation_sweep(
            model,
            &item.prompt,
            shared.as_ref(),
            &item.continuations,
            steerings,
            multipliers,
            &mut prefixes,
        )?;
        for (s, per_s) in ll.iter().enumerate() {
            for (k, ll) in per_s.iter().enumerate() {
                let pairs = ll.len() / 2;
                let margin = (0..pairs).map(|j| ll[2 * j] - ll[2 * j + 1]).sum::<f64>() / pairs as f64;
                out[s][k].push(margin as f32);
            }
        }
    }
    Ok(out)
}

/// Greedy continuations of one configuration and their scores.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationLine {
    /// `unsteered`, `positive` (`+m`), `negative` (`−m`) or `random` (`+m`).
    pub variant: &'static str,
    /// Multiplier.
    pub multiplier: f32,
    /// VADER compound score of the continuations.
    pub compound: Estimate,
    /// Share of continuations with compound ≥ 0.05 (VADER's positive threshold).
    pub positive_fraction: f64,
    /// Share of continuations with compound ≤ −0.05.
    pub negative_fraction: f64,
    /// Perplexity of the continuations under the unsteered model, given their openings (tokens-weighted).
    pub perplexity: f64,
    /// The continuations' text, in test order.
    pub texts: Vec<String>,
}

/// Everything one sentiment evaluation found.
#[derive(Debug, Clone)]
pub struct SentimentReport {
    /// `suite/task`.
    pub task: String,
    /// Method name.
    pub method: String,
    /// Openings in the training, validation and test splits.
    pub sizes: [usize; 3],
    /// Validation: `(layer, multiplier, mean margin)`.
    pub sweep: Vec<(Option<usize>, f32, f64)>,
    /// Chosen layer.
    pub chosen_layer: Option<usize>,
    /// Chosen multiplier.
    pub chosen_multiplier: f32,
    /// Test likelihood margins: `(variant, multiplier, estimate)` over the grid, and random at the chosen multiplier.
    pub test: Vec<(&'static str, f32, Estimate)>,
    /// Steerability of the method and of the random steering.
    pub steerability: Vec<(&'static str, Steerability)>,
    /// Greedy continuations of the test openings.
    pub generations: Vec<GenerationLine>,
    /// The test openings, in order.
    pub openings: Vec<String>,
    /// Perplexity unsteered, steered and random at the chosen multiplier.
    pub perplexity: Option<[f64; 3]>,
    /// Accuracy per capability task: unsteered, steered, random at the chosen multiplier.
    pub capability: Vec<(String, [crate::tinybench::Capability; 3])>,
    /// Seconds spent fitting, sweeping and testing.
    pub seconds: [f64; 3],
    /// The headline configuration and its paired effects.
    pub headline: Headline,
    /// Every test opening's values under every variant.
    pub items: Vec<ItemValue>,
    /// The result rows.
    pub rows: Vec<ResultRow>,
}

/// Evaluates `method` on a sentiment task (see the module documentation).
pub fn evaluate_sentiment(
    subject: &Subject,
    task: &Task,
    method: &dyn SteeringMethod,
    opts: &EvalOptions,
) -> Result<SentimentReport> {
    let spec = &task.spec;
    let (Format::Sentiment, Some(words_file), Some(lexicon_file), Some(max_new)) =
        (spec.format, &spec.words, &spec.lexicon, spec.max_new_tokens)
    else {
        return Err(SuiteError::BadRequest(format!("{} is not a sentiment task", task.id())));
    };
    let info = method.info();
    let model = subject.model;
    let tokenizer = subject.tokenizer;
    let prompts_path = task.file(&spec.test);
    let words_path = task.file(words_file);
    let prompts = read_prompts(&prompts_path)?;
    let words = read_words(&words_path)?;
    let vader = Vader::load(&task.file(lexicon_file))?;
    let [tr, va, te] = crate::split::three_way(
        prompts.len(),
        spec.validation_fraction,
        spec.test_fraction,
        spec.split_seed,
    );
    let limit = opts.limit.unwrap_or(usize::MAX);
    let pick = |idx: &[usize]| -> Vec<String> { idx.iter().take(limit).map(|&i| prompts[i].clone()).collect() };
    let (train, val, test) = (pick(&tr), pick(&va), pick(&te));
    for (name, split) in [("training", &train), ("validation", &val), ("test", &test)] {
        if split.is_empty() {
            return Err(SuiteError::BadRequest(format!(
                "{}: the {name} split is empty",
                task.id()
            )));
        }
    }
    let (layers, grid) = sweep_settings(model, method, opts)?;
    let phases = Phases::new(
        subject,
        &[Phase::Fit, Phase::Validation, Phase::Test, Phase::Generations],
        opts,
    );

    phases.enter(Phase::Fit);
    let started = Instant::now();
    let mut data = training_set(tokenizer, &train, &words)?;
    let (mut steerings, sweep_layers) = fit_sweep(model, method, &mut data, &layers, opts)?;
    let strengths = crate::strength::normalise(model, &data, &mut steerings, opts.batch_size)?;
    let fit_seconds = started.elapsed().as_secs_f64();

    phases.enter(Phase::Validation);
    let started = Instant::now();
    let val_items = scored_openings(tokenizer, &val, &words)?;
    let margins = sentiment_margins(model, &val_items, &steerings, &grid)?;
    let mut sweep = Vec::new();
    for (s, layer) in sweep_layers.iter().enumerate() {
        for (k, &m) in grid.iter().enumerate() {
            let v = &margins[s][k];
            sweep.push((*layer, m, v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64));
        }
    }
    let scores: Vec<f64> = sweep.iter().map(|p| p.2).collect();
    let selection = select(subject, &phases, opts, &steerings, &grid, &scores)?;
    let chosen_index = selection.headline;
    let (chosen_layer, chosen_multiplier) = (sweep[chosen_index].0, sweep[chosen_index].1);
    let free = (sweep[selection.unconstrained].0, sweep[selection.unconstrained].1);
    let chosen = steerings[chosen_index / grid.len()].clone();
    let strength = strengths[chosen_index / grid.len()];
    let val_seconds = started.elapsed().as_secs_f64();

    phases.enter(Phase::Test);
    let started = Instant::now();
    let random = random_like(&chosen, &data, model, opts.seed)?;
    let test_items = scored_openings(tokenizer, &test, &words)?;
    let test_margins = sentiment_margins(model, &test_items, &[chosen.clone(), random.clone()], &grid)?;
    let k_star = grid.iter().position(|m| *m == chosen_multiplier).unwrap_or(0);
    let as_f64 = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
    let mut test_lines: Vec<(&'static str, f32, Estimate)> = grid
        .iter()
        .enumerate()
        .map(|(k, &m)| {
            (
                if m == 0.0 { "unsteered" } else { "steered" },
                m,
                bootstrap(&as_f64(&test_margins[0][k]), opts.resamples, opts.seed),
            )
        })
        .collect();
    test_lines.push((
        "random",
        chosen_multiplier,
        bootstrap(&as_f64(&test_margins[1][k_star]), opts.resamples, opts.seed),
    ));
    let margins_f64: Vec<Vec<Vec<f64>>> = test_margins
        .iter()
        .map(|per_k| per_k.iter().map(|v| as_f64(v)).collect())
        .collect();
    let mut items = Vec::new();
    let mut steer = Vec::new();
    for (v, variant) in ["steered", "random"].into_iter().enumerate() {
        for (k, &m) in grid.iter().enumerate() {
            if !(m == 0.0 && v == 1) {
                let name = if m == 0.0 { "unsteered" } else { variant };
                push_items(&mut items, name, "logprob_diff", Some(m), &margins_f64[v][k]);
            }
        }
        let s = steerability(&grid, &margins_f64[v], opts.resamples, opts.seed);
        push_items(&mut items, variant, "slope", None, &s.per_item);
        steer.push((variant, s));
    }
    let k_zero = grid.iter().position(|m| *m == 0.0).unwrap_or(0);
    let unconstrained_vs_unsteered = if selection.unconstrained != selection.headline {
        let free_margins = sentiment_margins(
            model,
            &test_items,
            std::slice::from_ref(&steerings[selection.unconstrained / grid.len()]),
            &[free.1],
        )?;
        let values = as_f64(&free_margins[0][0]);
        push_items(&mut items, "unconstrained", "logprob_diff", Some(free.1), &values);
        Some(paired(&values, &margins_f64[0][k_zero], opts.resamples, opts.seed))
    } else {
        None
    };
    let headline = Headline {
        metric: "logprob_diff",
        unconstrained: free,
        strength,
        vs_unsteered: paired(
            &margins_f64[0][k_star],
            &margins_f64[0][k_zero],
            opts.resamples,
            opts.seed,
        ),
        vs_random: paired(
            &margins_f64[0][k_star],
            &margins_f64[1][k_star],
            opts.resamples,
            opts.seed,
        ),
        unconstrained_vs_unsteered,
        selection,
    };

    // Greedy continuations, scored by VADER and by their unsteered perplexity.
    phases.enter(Phase::Generations);
    let prompt_tokens: Vec<Vec<u32>> = test_items.iter().map(|t| t.prompt.clone()).collect();
    let eos = tokenizer.eos_ids().to_vec();
    let mut generations = Vec::new();
    for (variant, steering, m) in [
        ("unsteered", None, 0.0),
        ("positive", Some(&chosen), chosen_multiplier),
        ("negative", Some(&chosen), -chosen_multiplier),
        ("random", Some(&random), chosen_multiplier),
    ] {
        let new = crate::generation::greedy(
            model,
            &prompt_tokens,
            steering.map(|s| (s, m)),
            max_new,
            &eos,
            opts.batch_size,
        )?;
        let mut texts = Vec::with_capacity(new.len());
        let mut compounds = Vec::with_capacity(new.len());
        let (mut nll, mut count) = (0.0f64, 0usize);
        for (prompt, tokens) in prompt_tokens.iter().zip(&new) {
            let kept = crate::generation::strip_eos(tokens, &eos);
            let text = tokenizer.decode(kept, true).map_err(|e| SuiteError::Model(e.into()))?;
            compounds.push(vader.polarity_scores(&text).compound);
            texts.push(text);
            if !kept.is_empty() {
                let ll = continuations(model, prompt, None, &[kept.to_vec()], None)?;
                nll -= ll[0];
                count += kept.len();
            }
        }
        let n = compounds.len().max(1) as f64;
        push_items(&mut items, variant, "vader_compound", Some(m), &compounds);
        generations.push(GenerationLine {
            variant,
            multiplier: m,
            compound: bootstrap(&compounds, opts.resamples, opts.seed),
            positive_fraction: compounds.iter().filter(|c| **c >= 0.05).count() as f64 / n,
            negative_fraction: compounds.iter().filter(|c| **c <= -0.05).count() as f64 / n,
            perplexity: if count > 0 {
                (nll / count as f64).exp()
            } else {
                f64::NAN
            },
            texts,
        });
    }
    let ppl = damage(subject, &phases, opts, &chosen, &random, chosen_multiplier)?;
    let caps = capability_damage(subject, &phases, opts, &chosen, &random, chosen_multiplier)?;
    let test_seconds = started.elapsed().as_secs_f64();

    // Rows.
    let data_sha256 = format!("{}+{}", sha256_file(&prompts_path)?, sha256_file(&words_path)?);
    let row = |variant: &str, split: &str, layer: Option<usize>, m: Option<f32>, metric: &str, e: Estimate| {
        let ci = e.n > 1 && e.low != e.high;
        ResultRow {
            model: subject.name.clone(),
            method: info.name.to_string(),
            variant: variant.to_string(),
            suite: spec.suite.clone(),
            task: spec.name.clone(),
            split: split.to_string(),
            layer,
            multiplier: m,
            metric: metric.to_string(),
            value: e.mean,
            ci_low: ci.then_some(e.low),
            ci_high: ci.then_some(e.high),
            n: e.n,
            seed: opts.seed,
            task_version: spec.version,
            model_sha256: subject.sha256.clone(),
            data_sha256: data_sha256.clone(),
        }
    };
    let point = |v: f64, n: usize| Estimate {
        mean: v,
        low: v,
        high: v,
        n,
    };
    let mut rows = Vec::new();
    for (variant, m, e) in &test_lines {
        rows.push(row(variant, "test", chosen_layer, Some(*m), "logprob_diff", *e));
    }
    for (layer, m, v) in &sweep {
        rows.push(row(
            "steered",
            "validation",
            *layer,
            Some(*m),
            "logprob_diff",
            point(*v, val.len()),
        ));
    }
    rows.push(row(
        "choice",
        "validation",
        chosen_layer,
        Some(chosen_multiplier),
        "chosen",
        point(1.0, val.len()),
    ));
    let points: Vec<(Option<usize>, f32)> = sweep.iter().map(|p| (p.0, p.1)).collect();
    rows.extend(headline_rows(
        &headline,
        &points,
        (chosen_layer, chosen_multiplier),
        val.len(),
        test.len(),
        &row,
    ));
    for (variant, s) in &steer {
        rows.push(row(variant, "test", chosen_layer, None, "steerability", s.slope));
        rows.push(row(
            variant,
            "test",
            chosen_layer,
            None,
            "steerability_std",
            point(s.std, s.per_item.len()),
        ));
        rows.push(row(
            variant,
            "test",
            chosen_layer,
            None,
            "anti_steerable_fraction",
            point(s.anti_steerable, s.per_item.len()),
        ));
    }
    for g in &generations {
        let variant = match g.variant {
            "positive" | "negative" => "steered",
            other => other,
        };
        let n = g.texts.len();
        rows.push(row(
            variant,
            "test",
            chosen_layer,
            Some(g.multiplier),
            "vader_compound",
            g.compound,
        ));
        rows.push(row(
            variant,
            "test",
            chosen_layer,
            Some(g.multiplier),
            "vader_positive_fraction",
            point(g.positive_fraction, n),
        ));
        rows.push(row(
            variant,
            "test",
            chosen_layer,
            Some(g.multiplier),
            "vader_negative_fraction",
            point(g.negative_fraction, n),
        ));
        rows.push(row(
            variant,
            "test",
            chosen_layer,
            Some(g.multiplier),
            "generation_perplexity",
            point(g.perplexity, n),
        ));
    }
    push_damage_rows(&mut rows, ppl.as_ref(), &caps, opts, chosen_layer, chosen_multiplier)?;
    Ok(SentimentReport {
        task: task.id(),
        method: info.name.to_string(),
        sizes: [train.len(), val.len(), test.len()],
        sweep,
        chosen_layer,
        chosen_multiplier,
        test: test_lines,
        steerability: steer,
        generations,
        openings: test,
        perplexity: ppl.map(|(p, _)| p),
        capability: caps.into_iter().map(|(n, c, _)| (n, c)).collect(),
        seconds: [fit_seconds, val_seconds, test_seconds],
        headline,
        items,
        rows,
    })
}
