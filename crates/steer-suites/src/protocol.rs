//! The evaluation protocol: fit on the training split, choose layer and
//! multiplier on the validation split, report the test split once, with the
//! unsteered model, a random vector of the same size, bootstrap intervals and
//! per-item steerability beside every steered number.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use steer_methods::{FitConfig, Steering, SteeringKind, SteeringMethod, TrainingSet};
use steer_model::{ChatTokenizer, Llama};

use crate::ab::{
    AbItem, SHIFTS, both_orders, letter_margins, order_controlled, prompts_and_letters, read_items,
    shifted_before_letter, training_set,
};
use crate::rows::ResultRow;
use crate::spec::{Format, Task};
use crate::split::train_validation;
use crate::stats::{Estimate, Paired, bootstrap, paired, sigmoid, slope, std_dev};
use crate::strength::Strength;
use crate::{Result, SuiteError, sha256_file};

/// Version of the evaluation protocol, recorded with every benchmark unit.
/// 2: both answer orders, relative strengths, the fluency-constrained
/// headline and per-item values of every variant.
pub const PROTOCOL_VERSION: u32 = 2;

/// How to run one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Layers of the validation sweep (`None`: every layer).
    pub layers: Option<Vec<usize>>,
    /// Multiplier grid (`None`: the method's default grid).
    pub multipliers: Option<Vec<f32>>,
    /// Use at most this many items of each split (training, validation, test).
    pub limit: Option<usize>,
    /// Seed of fitting, the random baseline and the bootstrap.
    pub seed: u64,
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Hyperparameter overrides of the method.
    pub params: BTreeMap<String, f64>,
    /// Bootstrap resamples per interval.
    pub resamples: usize,
    /// Score the test items' open-ended form at the chosen configuration.
    pub open_ended: bool,
    /// The `raw_text` task whose perplexity measures the chosen configuration's damage.
    pub perplexity: Option<Task>,
    /// The `anchor_mc` tasks whose accuracy measures the chosen configuration's damage.
    pub capability: Vec<Task>,
    /// Open-ended prompts of a task (its `open_prompts`) continued greedily
    /// unsteered and at `±` the chosen multiplier, kept for inspection.
    pub generations: usize,
    /// Most tokens of each kept generation.
    pub generation_tokens: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            layers: None,
            multipliers: None,
            limit: None,
            seed: 0,
            batch_size: 8,
            params: BTreeMap::new(),
            resamples: 1000,
            open_ended: true,
            perplexity: None,
            capability: Vec::new(),
            generations: 0,
            generation_tokens: 64,
        }
    }
}

/// The model an evaluation runs on, and how results name it.
pub struct Subject<'a> {
    /// The network.
    pub model: &'a Llama,
    /// Its tokenizer and chat template.
    pub tokenizer: &'a ChatTokenizer,
    /// The name results carry (`default`, a path, `org/name`).
    pub name: String,
    /// sha256 of its weights file.
    pub sha256: String,
    /// Told when each phase of an evaluation starts (`None`: nobody listens).
    pub progress: Option<&'a dyn Progress>,
    /// Unsteered damage measurements of this model kept across evaluations
    /// (`None`: each evaluation measures its own).
    pub unsteered: Option<&'a crate::unsteered::UnsteeredCache>,
}

impl Subject<'_> {
    /// The same model, name and kept measurements, with `progress` told of each phase.
    pub fn with_progress<'b>(&'b self, progress: &'b dyn Progress) -> Subject<'b> {
        Subject {
            model: self.model,
            tokenizer: self.tokenizer,
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            progress: Some(progress),
            unsteered: self.unsteered,
        }
    }
}

/// Listens to an evaluation's phases (fitting, sweeps, each damage
/// measurement); the runner draws them as a progress bar.
pub trait Progress: Sync {
    /// Phase `index` (0-based) of `count`, called `name`, starts.
    fn phase(&self, name: &str, index: usize, count: usize);
}

/// A step of an evaluation that the runner shows and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Fitting the steering on the training split.
    Fit,
    /// The validation sweep and the choice of layer and multiplier.
    Validation,
    /// Validation perplexity of every positive sweep point (the fluency-constrained choice).
    Fluency,
    /// The test split under the chosen configuration.
    Test,
    /// Open-ended (free-text) scoring of the behaviour.
    OpenEnded,
    /// The test items under prompt shifts ([`crate::ab::SHIFTS`]).
    Ood,
    /// Greedy continuations kept as examples.
    Generations,
    /// A damage measurement on the task with this id.
    Damage(String),
}

impl Phase {
    /// The name the runner shows and `timings.tsv` records.
    pub(crate) fn name(&self) -> &str {
        match self {
            Phase::Fit => "fit",
            Phase::Validation => "validation",
            Phase::Fluency => "fluency",
            Phase::Test => "test",
            Phase::OpenEnded => "open-ended",
            Phase::Ood => "ood",
            Phase::Generations => "generations",
            Phase::Damage(task) => task,
        }
    }
}

/// The phases of one evaluation, announced to the subject's listener.
pub(crate) struct Phases<'a> {
    progress: Option<&'a dyn Progress>,
    plan: Vec<Phase>,
}

impl<'a> Phases<'a> {
    /// The phases `steps`, then the damage measurements `opts` asks for.
    pub(crate) fn new(subject: &Subject<'a>, steps: &[Phase], opts: &EvalOptions) -> Phases<'a> {
        let mut plan = steps.to_vec();
        if opts.perplexity.is_some()
            && let Some(at) = plan.iter().position(|p| *p == Phase::Validation)
        {
            plan.insert(at + 1, Phase::Fluency);
        }
        if let Some(task) = &opts.perplexity {
            plan.push(Phase::Damage(task.id()));
        }
        plan.extend(opts.capability.iter().map(|t| Phase::Damage(t.id())));
        Phases {
            progress: subject.progress,
            plan,
        }
    }

    /// Announces that `phase` starts; it must be one of the planned phases.
    pub(crate) fn enter(&self, phase: Phase) {
        let index = self.plan.iter().position(|p| *p == phase);
        debug_assert!(index.is_some(), "phase {} was not planned", phase.name());
        if let Some(p) = self.progress {
            p.phase(phase.name(), index.unwrap_or(self.plan.len()), self.plan.len());
        }
    }
}

/// Mean validation numbers of one (layer, multiplier).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// Steered layer (`None` for a steering without a single layer).
    pub layer: Option<usize>,
    /// Multiplier.
    pub multiplier: f32,
    /// Mean probability of the matching letter (normalised over the two letters).
    pub p_matching: f64,
    /// Mean order-controlled logit(matching) − logit(other).
    pub logit_diff: f64,
    /// Mean letter bias: logit(A) − logit(B), averaged over both answer orders.
    pub letter_bias: f64,
    /// Validation perplexity over the unsteered model's (positive multipliers, when measured).
    pub perplexity_ratio: Option<f64>,
}

/// Test numbers of one variant at one multiplier.
#[derive(Debug, Clone, PartialEq)]
pub struct TestLine {
    /// `steered` or `random`.
    pub variant: &'static str,
    /// Multiplier.
    pub multiplier: f32,
    /// logit(matching) − logit(other) over items.
    pub logit_diff: Estimate,
    /// Probability of the matching letter over items.
    pub p_matching: Estimate,
    /// Letter bias logit(A) − logit(B) over items, both orders averaged.
    pub letter_bias: Estimate,
}

/// Per-item steerability: the slope of an item's logit difference against the multiplier.
#[derive(Debug, Clone, PartialEq)]
pub struct Steerability {
    /// Mean slope over items, with its interval.
    pub slope: Estimate,
    /// Standard deviation of the slopes.
    pub std: f64,
    /// Share of items whose slope is negative (they move against the steering).
    pub anti_steerable: f64,
    /// Every item's slope, in item order.
    pub per_item: Vec<f64>,
}

/// What predicts steerability at the chosen layer (Tan et al. 2024): how
/// consistent the training differences are and how separable the classes are.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictors {
    /// Mean pairwise cosine similarity of the training activation differences.
    pub difference_cosine: f64,
    /// Training accuracy of classifying matching vs non-matching activations
    /// by their projection on the mean difference, thresholded halfway between the class means.
    pub separability: f64,
}

/// The A/B effect, the open-ended effect and their gap on the same items.
#[derive(Debug, Clone, PartialEq)]
pub struct Effects {
    /// Mean change of logit(matching) − logit(other) at the chosen multiplier.
    pub mcq: Estimate,
    /// Mean change of log P(matching text) − log P(other text).
    pub open: Estimate,
    /// Mean per-item difference `mcq − open`.
    pub gap: Estimate,
}

/// Everything one task × method evaluation found.
#[derive(Debug, Clone)]
pub struct McqReport {
    /// `suite/task`.
    pub task: String,
    /// Method name.
    pub method: String,
    /// Items in the training, validation and test splits.
    pub sizes: [usize; 3],
    /// The validation sweep.
    pub sweep: Vec<SweepPoint>,
    /// Chosen layer (`None` for a steering without a single layer).
    pub chosen_layer: Option<usize>,
    /// Chosen multiplier (positive: towards the behaviour).
    pub chosen_multiplier: f32,
    /// The chosen steering at every multiplier of the grid, and the random baseline.
    pub test: Vec<TestLine>,
    /// Steerability of the method and of the random baseline on the test items.
    pub steerability: Vec<(&'static str, Steerability)>,
    /// Steerability predictors (for steerings at one layer).
    pub predictors: Option<Predictors>,
    /// Effects at the chosen multiplier (steered minus unsteered) on the test
    /// items: A/B logit difference, open-ended log-likelihood difference, and
    /// the per-item gap between them.
    pub effects: Option<Effects>,
    /// Perplexity unsteered, steered and with the random steering at the chosen multiplier.
    pub perplexity: Option<[f64; 3]>,
    /// Accuracy per capability task: unsteered, steered, random at the chosen multiplier.
    pub capability: Vec<(String, [crate::tinybench::Capability; 3])>,
    /// Greedy continuations of the task's open-ended prompts, when asked for.
    pub generations: Vec<crate::generation::Generation>,
    /// Seconds spent fitting, sweeping and testing.
    pub seconds: [f64; 3],
    /// The headline configuration and its paired effects.
    pub headline: Headline,
    /// The headline's effects under each prompt shift, in [`SHIFTS`] order.
    pub ood: Vec<OodEffect>,
    /// Every test item's values under every variant.
    pub items: Vec<ItemValue>,
    /// The result rows.
    pub rows: Vec<ResultRow>,
}

/// The headline configuration on the test items under one prompt shift
/// (order-controlled propensity, both answer orders).
#[derive(Debug, Clone, PartialEq)]
pub struct OodEffect {
    /// The shift's name ([`crate::ab::Shift::name`]).
    pub shift: &'static str,
    /// Mean propensity of the unsteered model under the shift.
    pub unsteered: Estimate,
    /// Steered minus unsteered under the shift, per item.
    pub vs_unsteered: Paired,
    /// Steered minus the random steering under the shift, per item.
    pub vs_random: Paired,
}

/// Greedy continuations of the first `opts.generations` open-ended prompts of
/// `task` in the chat template: unsteered, and with `chosen` at `+m` and `−m`.
pub fn open_generations(
    subject: &Subject,
    task: &Task,
    method: &str,
    chosen: &Steering,
    layer: Option<usize>,
    multiplier: f32,
    opts: &EvalOptions,
) -> Result<Vec<crate::generation::Generation>> {
    let Some(file) = task.spec.open_prompts.as_ref().filter(|_| opts.generations > 0) else {
        return Ok(Vec::new());
    };
    let mut texts = crate::generation::read_open_prompts(&task.file(file))?;
    texts.truncate(opts.generations);
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let messages = [steer_model::ChatMessage {
                role: "user".into(),
                content: t.clone(),
            }];
            subject
                .tokenizer
                .encode_chat(&messages, true)
                .map_err(|e| SuiteError::Model(e.into()))
        })
        .collect::<Result<_>>()?;
    let eos = subject.tokenizer.eos_ids().to_vec();
    let mut out = Vec::new();
    for (variant, m) in [("unsteered", 0.0), ("positive", multiplier), ("negative", -multiplier)] {
        let new = crate::generation::greedy(
            subject.model,
            &prompts,
            Some((chosen, m)),
            opts.generation_tokens,
            &eos,
            opts.batch_size,
        )?;
        for (prompt, tokens) in texts.iter().zip(&new) {
            out.push(crate::generation::Generation {
                task: task.id(),
                method: method.to_string(),
                variant: variant.to_string(),
                layer,
                multiplier: m,
                prompt: prompt.clone(),
                text: subject
                    .tokenizer
                    .decode(crate::generation::strip_eos(tokens, &eos), true)
                    .map_err(|e| SuiteError::Model(e.into()))?,
            });
        }
    }
    Ok(out)
}

/// A random steering the size of `steering`: additive and norm-preserving
/// vectors are replaced by random directions of the same norms; an affine map
/// by a random vector as long as the map's mean displacement of the training
/// activations at its layer; a prompt prefix by random tokens of the same length.
pub fn random_like(steering: &Steering, data: &TrainingSet, model: &Llama, seed: u64) -> Result<Steering> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x005E_ED0F_BA5E);
    let mut direction = |d: usize, norm: f64| -> Vec<f32> {
        let v: Vec<f64> = (0..d)
            .map(|_| {
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random::<f64>();
                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect();
        let len = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        v.iter().map(|x| (x * norm / len) as f32).collect()
    };
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
    let kind = match &steering.kind {
        SteeringKind::Additive { vectors } => SteeringKind::Additive {
            vectors: vectors.iter().map(|(l, v)| (*l, direction(v.len(), norm(v)))).collect(),
        },
        SteeringKind::NormPreserving { vectors } => SteeringKind::NormPreserving {
            vectors: vectors.iter().map(|(l, v)| (*l, direction(v.len(), norm(v)))).collect(),
        },
        SteeringKind::Affine { layer, matrix, bias } => {
            let (pos, neg) = steer_methods::activations::paired_resid(model, data, *layer, 8)?;
            let rows: Vec<Vec<f32>> = pos.into_iter().chain(neg).collect();
            let d = bias.len();
            let mean_shift = crate::strength::mean_displacement(matrix, bias, &rows);
            SteeringKind::Additive {
                vectors: vec![(*layer, direction(d, mean_shift))],
            }
        }
        SteeringKind::Prompt { positive, negative } => {
            let vocab = model.config().vocab_size as u32;
            let mut tokens = |n: usize| (0..n).map(|_| rng.random_range(0..vocab)).collect::<Vec<u32>>();
            SteeringKind::Prompt {
                positive: tokens(positive.len()),
                negative: tokens(negative.len()),
            }
        }
    };
    Ok(Steering {
        method: format!("random-like-{}", steering.method),
        kind,
        positions: steering.positions.clone(),
        params: BTreeMap::new(),
        metadata: BTreeMap::from([("seed".to_string(), seed.to_string())]),
    })
}

/// Steerability from the margins `per_m[k][i]` at `multipliers[k]`.
pub(crate) fn steerability(multipliers: &[f32], per_m: &[Vec<f64>], resamples: usize, seed: u64) -> Steerability {
    let xs: Vec<f64> = multipliers.iter().map(|m| *m as f64).collect();
    let items = per_m.first().map_or(0, Vec::len);
    let per_item: Vec<f64> = (0..items)
        .map(|i| {
            let ys: Vec<f64> = per_m.iter().map(|m| m[i]).collect();
            slope(&xs, &ys)
        })
        .collect();
    Steerability {
        slope: bootstrap(&per_item, resamples, seed),
        std: std_dev(&per_item),
        anti_steerable: per_item.iter().filter(|s| **s < 0.0).count() as f64 / items.max(1) as f64,
        per_item,
    }
}

fn predictors(data: &TrainingSet, model: &Llama, layer: usize) -> Result<Predictors> {
    let (pos, neg) = steer_methods::activations::paired_resid(model, data, layer, 8)?;
    let d = pos[0].len();
    let diffs: Vec<Vec<f64>> = pos
        .iter()
        .zip(&neg)
        .map(|(p, n)| p.iter().zip(n).map(|(a, b)| (a - b) as f64).collect())
        .collect();
    // Mean pairwise cosine of unit differences: (|Σ u|² − n) / (n (n − 1)).
    let n = diffs.len() as f64;
    let mut sum = vec![0.0f64; d];
    for v in &diffs {
        let len = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x / len);
    }
    let difference_cosine = if n > 1.0 {
        (sum.iter().map(|x| x * x).sum::<f64>() - n) / (n * (n - 1.0))
    } else {
        1.0
    };
    let mean_of = |rows: &[Vec<f32>]| -> Vec<f64> {
        (0..d)
            .map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / rows.len() as f64)
            .collect()
    };
    let (mp, mn) = (mean_of(&pos), mean_of(&neg));
    let dir: Vec<f64> = mp.iter().zip(&mn).map(|(a, b)| a - b).collect();
    let project = |r: &[f32]| -> f64 { r.iter().zip(&dir).map(|(a, b)| *a as f64 * b).sum() };
    let threshold = (mp.iter().zip(&dir).map(|(a, b)| a * b).sum::<f64>()
        + mn.iter().zip(&dir).map(|(a, b)| a * b).sum::<f64>())
        / 2.0;
    let correct =
        pos.iter().filter(|r| project(r) > threshold).count() + neg.iter().filter(|r| project(r) <= threshold).count();
    Ok(Predictors {
        difference_cosine,
        separability: correct as f64 / (pos.len() + neg.len()) as f64,
    })
}

/// The training and validation items of an A/B task, as the protocol splits them.
pub fn split_items(task: &Task) -> Result<(Vec<AbItem>, Vec<AbItem>)> {
    let [train, val, _] = ab_splits(task)?;
    Ok((train, val))
}

/// Training, validation and test items of an A/B task. With separate train
/// and test files, the train file is split into training and validation;
/// with one file, a seeded three-way split cuts all three from it.
pub fn ab_splits(task: &Task) -> Result<[Vec<AbItem>; 3]> {
    let spec = &task.spec;
    let train = spec
        .train
        .as_ref()
        .ok_or_else(|| SuiteError::BadRequest(format!("{} has no training data", task.id())))?;
    let pool = read_items(&task.file(train))?;
    let take = |idx: &[usize]| -> Vec<AbItem> { idx.iter().map(|&i| pool[i].clone()).collect() };
    if *train == spec.test {
        let [tr, va, te] = crate::split::three_way(
            pool.len(),
            spec.validation_fraction,
            spec.test_fraction,
            spec.split_seed,
        );
        return Ok([take(&tr), take(&va), take(&te)]);
    }
    let (tr, va) = train_validation(pool.len(), spec.validation_fraction, spec.split_seed);
    Ok([take(&tr), take(&va), read_items(&task.file(&spec.test))?])
}

/// The training split of a task as contrast pairs (A/B or function tasks),
/// at most `limit` items, and the file it came from.
pub fn task_training_set(
    task: &Task,
    tokenizer: &ChatTokenizer,
    limit: Option<usize>,
) -> Result<(TrainingSet, std::path::PathBuf)> {
    let limit = limit.unwrap_or(usize::MAX);
    match task.spec.format {
        Format::CaaAb => {
            let (mut train, _) = split_items(task)?;
            train.truncate(limit);
            let path = task.file(task.spec.train.as_deref().unwrap_or_default());
            // Both answer orders, as the protocol fits.
            Ok((training_set(tokenizer, &both_orders(&train)?)?, path))
        }
        Format::IclPairs => {
            let path = task.file(&task.spec.test);
            let pairs = crate::icl::read_pairs(&path)?;
            let spec = &task.spec;
            let [tr, _, _] = crate::split::three_way(
                pairs.len(),
                spec.validation_fraction,
                spec.test_fraction,
                spec.split_seed,
            );
            let train: Vec<_> = tr.iter().take(limit).map(|&i| pairs[i].clone()).collect();
            Ok((crate::icl::training_set(tokenizer, &train)?, path))
        }
        Format::Sentiment => {
            let path = task.file(&task.spec.test);
            let prompts = crate::sentiment::read_prompts(&path)?;
            let spec = &task.spec;
            let words_file = spec.words.as_deref().unwrap_or_default();
            let words = crate::sentiment::read_words(&task.file(words_file))?;
            let [tr, _, _] = crate::split::three_way(
                prompts.len(),
                spec.validation_fraction,
                spec.test_fraction,
                spec.split_seed,
            );
            let train: Vec<String> = tr.iter().take(limit).map(|&i| prompts[i].clone()).collect();
            Ok((crate::sentiment::training_set(tokenizer, &train, &words)?, path))
        }
        Format::RawText | Format::AnchorMc | Format::AnchorGen => Err(SuiteError::BadRequest(format!(
            "{} has no training data (it measures damage)",
            task.id()
        ))),
    }
}

/// Fits `method` at every layer of `layers` on `data` (activations read once),
/// or once when its steering does not live at one layer. Returns the
/// steerings and the layer each stands for (`None`: no single layer).
pub fn fit_sweep(
    model: &Llama,
    method: &dyn SteeringMethod,
    data: &mut TrainingSet,
    layers: &[usize],
    opts: &EvalOptions,
) -> Result<(Vec<Steering>, Vec<Option<usize>>)> {
    let config = FitConfig {
        layer: layers[0],
        seed: opts.seed,
        batch_size: opts.batch_size,
        params: opts.params.clone(),
    };
    if !method.per_layer() {
        return Ok((vec![method.fit(model, data, &config)?], vec![None]));
    }
    data.cache_activations(model, layers, opts.batch_size)?;
    let all = method.fit_layers(model, data, layers, &config)?;
    if let Some((s, layer)) = all.iter().zip(layers).find(|(s, l)| s.layers() != vec![**l]) {
        return Err(SuiteError::BadRequest(format!(
            "{} was fitted at layer {layer} but acts at layers {:?}; a method whose steering is not at the layer it is fitted at says so with per_layer",
            method.info().name,
            s.layers()
        )));
    }
    Ok((all, layers.iter().map(|&l| Some(l)).collect()))
}

/// Index of the chosen point of a sweep laid out `[steering][multiplier]`:
/// the highest score among positive multipliers; ties go to the earlier
/// steering and the smaller multiplier.
pub fn choose(scores: &[f64], grid: &[f32]) -> Result<usize> {
    let mut best: Option<usize> = None;
    for (i, score) in scores.iter().enumerate() {
        if grid[i % grid.len()] <= 0.0 {
            continue;
        }
        if best.is_none_or(|b| *score > scores[b]) {
            best = Some(i);
        }
    }
    best.ok_or_else(|| SuiteError::BadRequest("no positive multiplier to choose".into()))
}

/// Checks the sweep's layers and multiplier grid.
pub(crate) fn sweep_settings(
    model: &Llama,
    method: &dyn SteeringMethod,
    opts: &EvalOptions,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let n_layers = model.config().num_hidden_layers;
    let layers: Vec<usize> = opts.layers.clone().unwrap_or_else(|| (0..n_layers).collect());
    if let Some(bad) = layers.iter().find(|&&l| l >= n_layers) {
        return Err(SuiteError::BadRequest(format!(
            "layer {bad} is out of range: the model has {n_layers} layers"
        )));
    }
    if layers.is_empty() {
        return Err(SuiteError::BadRequest("no layers to sweep".into()));
    }
    let grid: Vec<f32> = opts
        .multipliers
        .clone()
        .unwrap_or_else(|| method.info().multipliers.to_vec());
    if !grid.iter().any(|m| *m > 0.0) || !grid.contains(&0.0) {
        return Err(SuiteError::BadRequest(format!(
            "the multiplier grid {grid:?} needs 0 and at least one positive value"
        )));
    }
    Ok((layers, grid))
}

/// One test item's value under one variant: what the items file stores, so
/// every paired statistic can be recomputed from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemValue {
    /// Index of the item in the test split.
    pub item: usize,
    /// `unsteered`, `steered`, `random`, or `unconstrained` (the best
    /// validation configuration regardless of fluency, where it is not the headline).
    pub variant: &'static str,
    /// Metric name (see `results/README.md`).
    pub metric: &'static str,
    /// Multiplier (`None` for per-item summaries such as slopes).
    pub multiplier: Option<f32>,
    /// The value.
    pub value: f64,
}

/// The validation choice of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Index (in the sweep, laid out `[steering][multiplier]`) of the headline configuration.
    pub headline: usize,
    /// Index of the best configuration regardless of fluency.
    pub unconstrained: usize,
    /// Whether the headline stays within the fluency bound. When no positive
    /// point does (or no perplexity task was given), the headline is the
    /// unconstrained choice and this is false.
    pub constrained: bool,
    /// Validation perplexity ratio of every sweep point (`None` without a perplexity task).
    pub ratios: Option<Vec<f64>>,
}

/// Chooses on validation: the best point regardless of fluency, and the best
/// point whose validation perplexity ratio stays within
/// [`crate::fluency::FLUENCY_BOUND`] (measured when `opts` names a perplexity task).
pub(crate) fn select(
    subject: &Subject,
    phases: &Phases,
    opts: &EvalOptions,
    steerings: &[Steering],
    grid: &[f32],
    scores: &[f64],
) -> Result<Selection> {
    let unconstrained = choose(scores, grid)?;
    let Some(task) = &opts.perplexity else {
        return Ok(Selection {
            headline: unconstrained,
            unconstrained,
            constrained: false,
            ratios: None,
        });
    };
    phases.enter(Phase::Fluency);
    let windows = crate::fluency::validation_windows(task, subject.tokenizer)?;
    let (_, ratios) = crate::fluency::ratios(subject.model, &windows, steerings, grid)?;
    let within = crate::fluency::choose_within(scores, grid, &ratios, crate::fluency::FLUENCY_BOUND);
    Ok(Selection {
        headline: within.unwrap_or(unconstrained),
        unconstrained,
        constrained: within.is_some(),
        ratios: Some(ratios),
    })
}

/// The headline of one evaluation: the configuration reported first, how it
/// was chosen, and its paired effects on the test items.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// The metric the effects are in.
    pub metric: &'static str,
    /// The validation choice.
    pub selection: Selection,
    /// The unconstrained choice's layer and multiplier.
    pub unconstrained: (Option<usize>, f32),
    /// Comparable strength of the chosen steering at multiplier 1.
    pub strength: Strength,
    /// Headline minus unsteered, per item.
    pub vs_unsteered: Paired,
    /// Headline minus the random steering at the same multiplier, per item.
    pub vs_random: Paired,
    /// The unconstrained choice minus unsteered, per item (`None`: it is the headline).
    pub unconstrained_vs_unsteered: Option<Paired>,
}

/// Builds one result row from (variant, split, layer, multiplier, metric, estimate).
pub(crate) type RowMaker<'a> = dyn Fn(&str, &str, Option<usize>, Option<f32>, &str, Estimate) -> ResultRow + 'a;

/// Result rows shared by every format: how the headline was chosen, its
/// strength and its paired effects, and each sweep point's validation
/// perplexity ratio.
pub(crate) fn headline_rows(
    h: &Headline,
    sweep: &[(Option<usize>, f32)],
    chosen: (Option<usize>, f32),
    n_val: usize,
    n_test: usize,
    row: &RowMaker,
) -> Vec<ResultRow> {
    let point = |v: f64, n: usize| Estimate {
        mean: v,
        low: v,
        high: v,
        n,
    };
    let (layer, m) = chosen;
    let mut rows = Vec::new();
    if let Some(ratios) = &h.selection.ratios {
        for ((l, k), r) in sweep.iter().zip(ratios) {
            if !r.is_nan() {
                rows.push(row(
                    "steered",
                    "validation",
                    *l,
                    Some(*k),
                    "perplexity_ratio",
                    point(*r, 1),
                ));
            }
        }
    }
    let (free_layer, free_m) = h.unconstrained;
    rows.push(row(
        "choice",
        "validation",
        free_layer,
        Some(free_m),
        "chosen_unconstrained",
        point(1.0, n_val),
    ));
    rows.push(row(
        "choice",
        "validation",
        layer,
        Some(m),
        "fluency_constrained",
        point(if h.selection.constrained { 1.0 } else { 0.0 }, n_val),
    ));
    if let Some(rel) = h.strength.relative {
        rows.push(row(
            "choice",
            "training",
            layer,
            Some(m),
            "relative_strength",
            point(rel * m as f64, 1),
        ));
    }
    if let Some(raw) = h.strength.raw_per_unit {
        rows.push(row(
            "choice",
            "training",
            layer,
            Some(m),
            "raw_multiplier",
            point(raw * m as f64, 1),
        ));
    }
    if let Some(norm) = h.strength.resid_norm {
        rows.push(row("choice", "training", layer, None, "resid_norm", point(norm, 1)));
    }
    let effect = format!("effect_{}", h.metric);
    for (variant, name, p) in [
        ("steered", effect.as_str(), &h.vs_unsteered),
        ("steered", "effect_vs_random", &h.vs_random),
    ] {
        rows.push(row(variant, "test", layer, None, name, p.effect));
        rows.push(row(
            variant,
            "test",
            layer,
            None,
            &format!("p_{name}"),
            point(p.p, n_test),
        ));
    }
    if let Some(p) = &h.unconstrained_vs_unsteered {
        rows.push(row("unconstrained", "test", free_layer, None, &effect, p.effect));
        rows.push(row(
            "unconstrained",
            "test",
            free_layer,
            None,
            &format!("p_{effect}"),
            point(p.p, n_test),
        ));
    }
    rows
}

/// Per-item values of one variant at one multiplier.
pub(crate) fn push_items(
    items: &mut Vec<ItemValue>,
    variant: &'static str,
    metric: &'static str,
    multiplier: Option<f32>,
    values: &[f64],
) {
    items.extend(values.iter().enumerate().map(|(item, &value)| ItemValue {
        item,
        variant,
        metric,
        multiplier,
        value,
    }));
}

/// Evaluates `method` on an A/B task (see the module documentation).
///
/// Every item is asked in both answer orders ([`both_orders`]): the
/// behaviour is the mean of the two orders' `logit(matching) − logit(other)`
/// (the order-controlled propensity), and the mean of their
/// `logit(A) − logit(B)` is the item's letter bias, reported as its own
/// metric. The method is fitted on both orders of every training item, so
/// its contrast cannot be a letter.
pub fn evaluate_mcq(
    subject: &Subject,
    task: &Task,
    method: &dyn SteeringMethod,
    opts: &EvalOptions,
) -> Result<McqReport> {
    if task.spec.format != Format::CaaAb {
        return Err(SuiteError::BadRequest(format!(
            "{} is not an A/B task; methods are fitted and chosen on A/B tasks",
            task.id()
        )));
    }
    let info = method.info();
    let model = subject.model;
    let train_path = task.file(task.spec.train.as_deref().unwrap_or_default());
    let test_path = task.file(&task.spec.test);
    let [mut train, mut val, mut test_items] = ab_splits(task)?;
    let limit = opts.limit.unwrap_or(usize::MAX);
    train.truncate(limit);
    val.truncate(limit);
    test_items.truncate(limit);
    for (name, split) in [("training", &train), ("validation", &val), ("test", &test_items)] {
        if split.is_empty() {
            return Err(SuiteError::BadRequest(format!(
                "{}: the {name} split is empty",
                task.id()
            )));
        }
    }
    let (layers, grid) = sweep_settings(model, method, opts)?;
    let mut steps = vec![Phase::Fit, Phase::Validation, Phase::Test, Phase::Ood];
    if opts.open_ended {
        steps.push(Phase::OpenEnded);
    }
    if opts.generations > 0 && task.spec.open_prompts.is_some() {
        steps.push(Phase::Generations);
    }
    let phases = Phases::new(subject, &steps, opts);
    let bad_order = |split: &str, e: SuiteError| match e {
        SuiteError::BadRequest(m) => SuiteError::BadRequest(format!("{} ({split} split): {m}", task.id())),
        other => other,
    };

    // Fit on both answer orders of the training split, reading activations once for every layer.
    phases.enter(Phase::Fit);
    let started = Instant::now();
    let mut data = training_set(
        subject.tokenizer,
        &both_orders(&train).map_err(|e| bad_order("training", e))?,
    )?;
    let (mut steerings, sweep_layers) = fit_sweep(model, method, &mut data, &layers, opts)?;
    let strengths = crate::strength::normalise(model, &data, &mut steerings, opts.batch_size)?;
    let fit_seconds = started.elapsed().as_secs_f64();

    // Validation sweep (both orders) and the choices.
    phases.enter(Phase::Validation);
    let started = Instant::now();
    let val2 = both_orders(&val).map_err(|e| bad_order("validation", e))?;
    let (val_prompts, val_letters) = prompts_and_letters(subject.tokenizer, &val2)?;
    let margins = letter_margins(model, &val_prompts, &val_letters, &steerings, &grid, opts.batch_size)?;
    let nv = val.len();
    let mut sweep = Vec::new();
    for (s, layer) in sweep_layers.iter().enumerate() {
        for (k, &m) in grid.iter().enumerate() {
            let v = &margins[s][k];
            let ctl = order_controlled(&val, v);
            sweep.push(SweepPoint {
                layer: *layer,
                multiplier: m,
                p_matching: (0..nv)
                    .map(|i| (sigmoid(v[i] as f64) + sigmoid(v[i + nv] as f64)) / 2.0)
                    .sum::<f64>()
                    / nv as f64,
                logit_diff: ctl.iter().map(|c| c.0).sum::<f64>() / nv as f64,
                letter_bias: ctl.iter().map(|c| c.1).sum::<f64>() / nv as f64,
                perplexity_ratio: None,
            });
        }
    }
    let scores: Vec<f64> = sweep.iter().map(|p| p.p_matching).collect();
    let selection = select(subject, &phases, opts, &steerings, &grid, &scores)?;
    if let Some(ratios) = &selection.ratios {
        for (p, r) in sweep.iter_mut().zip(ratios) {
            p.perplexity_ratio = (!r.is_nan()).then_some(*r);
        }
    }
    let (chosen_layer, chosen_multiplier) = (sweep[selection.headline].layer, sweep[selection.headline].multiplier);
    let free = (
        sweep[selection.unconstrained].layer,
        sweep[selection.unconstrained].multiplier,
    );
    let chosen = steerings[selection.headline / grid.len()].clone();
    let strength = strengths[selection.headline / grid.len()];
    let val_seconds = started.elapsed().as_secs_f64();

    // Test (both orders): the chosen steering over the grid, a random steering of its size,
    // and the unconstrained choice at its own multiplier where it is not the headline.
    phases.enter(Phase::Test);
    let started = Instant::now();
    let random = random_like(&chosen, &data, model, opts.seed)?;
    let test2 = both_orders(&test_items).map_err(|e| bad_order("test", e))?;
    let (test_prompts, test_letters) = prompts_and_letters(subject.tokenizer, &test2)?;
    let test_margins = letter_margins(
        model,
        &test_prompts,
        &test_letters,
        &[chosen.clone(), random.clone()],
        &grid,
        opts.batch_size,
    )?;
    let n = test_items.len();
    let mut items = Vec::new();
    let mut test = Vec::new();
    let mut steer = Vec::new();
    // Order-controlled propensity `[variant][multiplier][item]`.
    let mut propensity: Vec<Vec<Vec<f64>>> = Vec::new();
    for (v, variant) in ["steered", "random"].into_iter().enumerate() {
        let mut per_k = Vec::new();
        for (k, &m) in grid.iter().enumerate() {
            let raw = &test_margins[v][k];
            let ctl = order_controlled(&test_items, raw);
            let values: Vec<f64> = ctl.iter().map(|c| c.0).collect();
            let bias: Vec<f64> = ctl.iter().map(|c| c.1).collect();
            let probs: Vec<f64> = (0..n)
                .map(|i| (sigmoid(raw[i] as f64) + sigmoid(raw[i + n] as f64)) / 2.0)
                .collect();
            test.push(TestLine {
                variant,
                multiplier: m,
                logit_diff: bootstrap(&values, opts.resamples, opts.seed),
                p_matching: bootstrap(&probs, opts.resamples, opts.seed),
                letter_bias: bootstrap(&bias, opts.resamples, opts.seed),
            });
            // Multiplier 0 is the unsteered model for both variants: stored once.
            if !(m == 0.0 && v == 1) {
                let name = if m == 0.0 { "unsteered" } else { variant };
                let given: Vec<f64> = raw[..n].iter().map(|x| *x as f64).collect();
                let exchanged: Vec<f64> = raw[n..].iter().map(|x| *x as f64).collect();
                push_items(&mut items, name, "logit_diff", Some(m), &values);
                push_items(&mut items, name, "letter_bias", Some(m), &bias);
                push_items(&mut items, name, "p_matching", Some(m), &probs);
                push_items(&mut items, name, "logit_diff_given_order", Some(m), &given);
                push_items(&mut items, name, "logit_diff_exchanged_order", Some(m), &exchanged);
            }
            per_k.push(values);
        }
        let s = steerability(&grid, &per_k, opts.resamples, opts.seed);
        push_items(&mut items, variant, "slope", None, &s.per_item);
        steer.push((variant, s));
        propensity.push(per_k);
    }
    let k_star = grid.iter().position(|m| *m == chosen_multiplier).unwrap_or(0);
    let k_zero = grid.iter().position(|m| *m == 0.0).unwrap_or(0);
    let unconstrained_vs_unsteered = if selection.unconstrained != selection.headline {
        let raw = letter_margins(
            model,
            &test_prompts,
            &test_letters,
            std::slice::from_ref(&steerings[selection.unconstrained / grid.len()]),
            &[free.1],
            opts.batch_size,
        )?;
        let ctl = order_controlled(&test_items, &raw[0][0]);
        let values: Vec<f64> = ctl.iter().map(|c| c.0).collect();
        let bias: Vec<f64> = ctl.iter().map(|c| c.1).collect();
        push_items(&mut items, "unconstrained", "logit_diff", Some(free.1), &values);
        push_items(&mut items, "unconstrained", "letter_bias", Some(free.1), &bias);
        Some(paired(&values, &propensity[0][k_zero], opts.resamples, opts.seed))
    } else {
        None
    };
    let headline = Headline {
        metric: "logit_diff",
        unconstrained: free,
        strength,
        vs_unsteered: paired(
            &propensity[0][k_star],
            &propensity[0][k_zero],
            opts.resamples,
            opts.seed,
        ),
        vs_random: paired(
            &propensity[0][k_star],
            &propensity[1][k_star],
            opts.resamples,
            opts.seed,
        ),
        unconstrained_vs_unsteered,
        selection,
    };
    let predictors = match chosen_layer {
        Some(l) => Some(predictors(&data, model, l)?),
        None => None,
    };

    // The same items in both orders under each prompt shift: unsteered, and
    // the headline and the random steering at the chosen multiplier.
    phases.enter(Phase::Ood);
    let mut ood = Vec::with_capacity(SHIFTS.len());
    for shift in SHIFTS {
        let prompts = test2
            .iter()
            .map(|it| shifted_before_letter(subject.tokenizer, it, shift, &task.spec.description))
            .collect::<Result<Vec<_>>>()?;
        let raw = letter_margins(
            model,
            &prompts,
            &test_letters,
            &[chosen.clone(), random.clone()],
            &[0.0, chosen_multiplier],
            opts.batch_size,
        )?;
        let controlled = |v: &[f32]| -> Vec<f64> { order_controlled(&test_items, v).iter().map(|c| c.0).collect() };
        let (plain, steered, rand) = (controlled(&raw[0][0]), controlled(&raw[0][1]), controlled(&raw[1][1]));
        push_items(&mut items, "unsteered", shift.metric(), Some(0.0), &plain);
        push_items(&mut items, "steered", shift.metric(), Some(chosen_multiplier), &steered);
        push_items(&mut items, "random", shift.metric(), Some(chosen_multiplier), &rand);
        ood.push(OodEffect {
            shift: shift.name(),
            unsteered: bootstrap(&plain, opts.resamples, opts.seed),
            vs_unsteered: paired(&steered, &plain, opts.resamples, opts.seed),
            vs_random: paired(&steered, &rand, opts.resamples, opts.seed),
        });
    }

    // The same items in open-ended form, at 0 and the chosen multiplier.
    let mut open_rows: Vec<(usize, [f32; 3])> = Vec::new();
    if opts.open_ended {
        phases.enter(Phase::OpenEnded);
        let forms: Vec<(usize, crate::open_ended::OpenItem)> = test_items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| crate::open_ended::open_form(it).map(|o| (i, o)))
            .collect();
        let open_items: Vec<_> = forms.iter().map(|(_, o)| o.clone()).collect();
        let tokens = crate::open_ended::open_tokens(subject.tokenizer, &open_items)?;
        let margins = crate::open_ended::open_margins(
            model,
            &tokens,
            &[chosen.clone(), random.clone()],
            &[0.0, chosen_multiplier],
        )?;
        for (j, (i, _)) in forms.iter().enumerate() {
            open_rows.push((*i, [margins[0][0][j], margins[0][1][j], margins[1][1][j]]));
        }
        for (variant, col, m) in [
            ("unsteered", 0, 0.0),
            ("steered", 1, chosen_multiplier),
            ("random", 2, chosen_multiplier),
        ] {
            items.extend(open_rows.iter().map(|(i, v)| ItemValue {
                item: *i,
                variant,
                metric: "open_logprob_diff",
                multiplier: Some(m),
                value: v[col] as f64,
            }));
        }
    }
    let effects = (!open_rows.is_empty()).then(|| {
        let mcq: Vec<f64> = open_rows
            .iter()
            .map(|(i, _)| propensity[0][k_star][*i] - propensity[0][k_zero][*i])
            .collect();
        let open: Vec<f64> = open_rows.iter().map(|(_, m)| (m[1] - m[0]) as f64).collect();
        let gap: Vec<f64> = mcq.iter().zip(&open).map(|(a, b)| a - b).collect();
        Effects {
            mcq: bootstrap(&mcq, opts.resamples, opts.seed),
            open: bootstrap(&open, opts.resamples, opts.seed),
            gap: bootstrap(&gap, opts.resamples, opts.seed),
        }
    });

    // Tasks without open prompts, or runs asking for none, plan no generations phase.
    if steps.contains(&Phase::Generations) {
        phases.enter(Phase::Generations);
    }
    let generations = open_generations(subject, task, info.name, &chosen, chosen_layer, chosen_multiplier, opts)?;

    // Damage: perplexity and capability with the chosen configuration applied everywhere.
    let damage = damage(subject, &phases, opts, &chosen, &random, chosen_multiplier)?;
    let perplexity = damage.map(|(p, _)| p);
    let caps = capability_damage(subject, &phases, opts, &chosen, &random, chosen_multiplier)?;
    let test_seconds = started.elapsed().as_secs_f64();

    // Rows.
    let data_sha256 = if train_path == test_path {
        sha256_file(&train_path)?
    } else {
        format!("{}+{}", sha256_file(&train_path)?, sha256_file(&test_path)?)
    };
    let row = |variant: &str, split: &str, layer: Option<usize>, m: Option<f32>, metric: &str, e: Estimate| {
        let ci = e.n > 1 && e.low != e.high;
        ResultRow {
            model: subject.name.clone(),
            method: info.name.to_string(),
            variant: variant.to_string(),
            suite: task.spec.suite.clone(),
            task: task.spec.name.clone(),
            split: split.to_string(),
            layer,
            multiplier: m,
            metric: metric.to_string(),
            value: e.mean,
            ci_low: ci.then_some(e.low),
            ci_high: ci.then_some(e.high),
            n: e.n,
            seed: opts.seed,
            task_version: task.spec.version,
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
    for p in &sweep {
        for (metric, v) in [
            ("p_matching", p.p_matching),
            ("logit_diff", p.logit_diff),
            ("letter_bias", p.letter_bias),
        ] {
            rows.push(row(
                "steered",
                "validation",
                p.layer,
                Some(p.multiplier),
                metric,
                point(v, nv),
            ));
        }
    }
    rows.push(row(
        "choice",
        "validation",
        chosen_layer,
        Some(chosen_multiplier),
        "chosen",
        point(1.0, val.len()),
    ));
    let points: Vec<(Option<usize>, f32)> = sweep.iter().map(|p| (p.layer, p.multiplier)).collect();
    rows.extend(headline_rows(
        &headline,
        &points,
        (chosen_layer, chosen_multiplier),
        nv,
        n,
        &row,
    ));
    for t in &test {
        let variant = if t.multiplier == 0.0 { "unsteered" } else { t.variant };
        if t.multiplier == 0.0 && t.variant == "random" {
            continue;
        }
        for (metric, e) in [
            ("logit_diff", t.logit_diff),
            ("p_matching", t.p_matching),
            ("letter_bias", t.letter_bias),
        ] {
            rows.push(row(variant, "test", chosen_layer, Some(t.multiplier), metric, e));
        }
    }
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
    if let Some(p) = &predictors {
        rows.push(row(
            "steered",
            "training",
            chosen_layer,
            None,
            "difference_cosine",
            point(p.difference_cosine, train.len()),
        ));
        rows.push(row(
            "steered",
            "training",
            chosen_layer,
            None,
            "separability",
            point(p.separability, train.len()),
        ));
    }
    for o in &ood {
        let metric = format!("logit_diff_ood_{}", o.shift);
        rows.push(row("unsteered", "test", chosen_layer, Some(0.0), &metric, o.unsteered));
        for (name, p) in [("effect_ood", &o.vs_unsteered), ("effect_vs_random_ood", &o.vs_random)] {
            let name = format!("{name}_{}", o.shift);
            rows.push(row("steered", "test", chosen_layer, None, &name, p.effect));
            rows.push(row(
                "steered",
                "test",
                chosen_layer,
                None,
                &format!("p_{name}"),
                point(p.p, n),
            ));
        }
    }
    let with_suite = |mut r: ResultRow, suite: &str| {
        r.suite = suite.to_string();
        r
    };
    if !open_rows.is_empty() {
        for (variant, col, m) in [
            ("unsteered", 0, 0.0),
            ("steered", 1, chosen_multiplier),
            ("random", 2, chosen_multiplier),
        ] {
            let values: Vec<f64> = open_rows.iter().map(|(_, v)| v[col] as f64).collect();
            let e = bootstrap(&values, opts.resamples, opts.seed);
            rows.push(with_suite(
                row(variant, "test", chosen_layer, Some(m), "logprob_diff", e),
                "open_ended",
            ));
        }
        if let Some(e) = &effects {
            for (metric, est) in [
                ("mcq_effect", e.mcq),
                ("open_effect", e.open),
                ("mcq_minus_open_effect", e.gap),
            ] {
                rows.push(with_suite(
                    row("steered", "test", chosen_layer, Some(chosen_multiplier), metric, est),
                    "open_ended",
                ));
            }
        }
    }
    push_damage_rows(&mut rows, damage.as_ref(), &caps, opts, chosen_layer, chosen_multiplier)?;
    Ok(McqReport {
        task: task.id(),
        method: info.name.to_string(),
        sizes: [train.len(), val.len(), test_items.len()],
        sweep,
        chosen_layer,
        chosen_multiplier,
        test,
        steerability: steer,
        predictors,
        effects,
        perplexity,
        capability: caps.into_iter().map(|(n, c, _)| (n, c)).collect(),
        generations,
        seconds: [fit_seconds, val_seconds, test_seconds],
        headline,
        ood,
        items,
        rows,
    })
}

/// Capability per `anchor_mc` task: `(task name, [unsteered, steered, random], task)`.
pub(crate) type CapabilityRows = Vec<(String, [crate::tinybench::Capability; 3], Task)>;

/// Accuracy on every capability task, unsteered, with `chosen` and with `random` at `multiplier`.
pub(crate) fn capability_damage(
    subject: &Subject,
    phases: &Phases,
    opts: &EvalOptions,
    chosen: &Steering,
    random: &Steering,
    multiplier: f32,
) -> Result<CapabilityRows> {
    opts.capability
        .iter()
        .map(|task| {
            phases.enter(Phase::Damage(task.id()));
            let c = crate::tinybench::capability(
                subject.model,
                subject.tokenizer,
                task,
                &[chosen.clone(), random.clone()],
                multiplier,
                opts.batch_size,
                subject.unsteered,
            )?;
            Ok((task.spec.name.clone(), [c[0], c[1], c[2]], task.clone()))
        })
        .collect()
}

/// Result rows of capability damage: test-split rows at the chosen `layer` and `multiplier`.
fn capability_rows(
    caps: &CapabilityRows,
    layer: Option<usize>,
    multiplier: f32,
    template: &ResultRow,
) -> Result<Vec<ResultRow>> {
    let mut rows = Vec::new();
    for (name, c, task) in caps {
        let sha = sha256_file(&task.file(&task.spec.test))?;
        let mut add = |variant: &str, m: f32, metric: &str, v: f64, n: usize| {
            let mut r = template.clone();
            r.variant = variant.into();
            r.suite = task.spec.suite.clone();
            r.task = name.clone();
            r.task_version = task.spec.version;
            r.data_sha256 = sha.clone();
            r.split = "test".into();
            r.layer = layer;
            r.multiplier = Some(m);
            r.metric = metric.into();
            r.value = v;
            r.ci_low = None;
            r.ci_high = None;
            r.n = n;
            rows.push(r);
        };
        for (variant, m, cap) in [
            ("unsteered", 0.0, c[0]),
            ("steered", multiplier, c[1]),
            ("random", multiplier, c[2]),
        ] {
            add(variant, m, "accuracy", cap.accuracy, cap.n);
            add(variant, m, "accuracy_weighted", cap.weighted, cap.n);
        }
        add(
            "steered",
            multiplier,
            "delta_accuracy_weighted",
            c[1].weighted - c[0].weighted,
            c[0].n,
        );
        add(
            "random",
            multiplier,
            "delta_accuracy_weighted",
            c[2].weighted - c[0].weighted,
            c[0].n,
        );
    }
    Ok(rows)
}

/// Appends the damage rows (perplexity, then capability) of the chosen
/// configuration to `rows`, taking model, method, seed and hashes from its
/// first row; nothing is appended to an empty list.
pub(crate) fn push_damage_rows(
    rows: &mut Vec<ResultRow>,
    perplexity: Option<&([f64; 3], usize)>,
    caps: &CapabilityRows,
    opts: &EvalOptions,
    layer: Option<usize>,
    multiplier: f32,
) -> Result<()> {
    let Some(first) = rows.first().cloned() else {
        return Ok(());
    };
    rows.extend(perplexity_rows(perplexity, opts, layer, multiplier, &first)?);
    rows.extend(capability_rows(caps, layer, multiplier, &first)?);
    Ok(())
}

/// Result rows of perplexity damage `[unsteered, steered, random]` over `n`
/// tokens at the chosen `layer` and `multiplier`; `template` gives model,
/// method, seed and model hash.
fn perplexity_rows(
    damage: Option<&([f64; 3], usize)>,
    opts: &EvalOptions,
    layer: Option<usize>,
    multiplier: f32,
    template: &ResultRow,
) -> Result<Vec<ResultRow>> {
    let (Some((p, n)), Some(task)) = (damage, &opts.perplexity) else {
        return Ok(Vec::new());
    };
    let sha = sha256_file(&task.file(&task.spec.test))?;
    Ok([
        ("unsteered", 0.0, "perplexity", p[0]),
        ("steered", multiplier, "perplexity", p[1]),
        ("random", multiplier, "perplexity", p[2]),
        ("steered", multiplier, "delta_perplexity", p[1] - p[0]),
        ("random", multiplier, "delta_perplexity", p[2] - p[0]),
    ]
    .into_iter()
    .map(|(variant, m, metric, v)| {
        let mut r = template.clone();
        r.variant = variant.into();
        r.suite = "perplexity".into();
        r.task = task.spec.name.clone();
        r.split = "test".into();
        r.layer = layer;
        r.multiplier = Some(m);
        r.metric = metric.into();
        r.value = v;
        r.ci_low = None;
        r.ci_high = None;
        r.n = *n;
        r.task_version = task.spec.version;
        r.data_sha256 = sha.clone();
        r
    })
    .collect())
}

/// Perplexity unsteered, with `chosen` and with `random`, both at `multiplier`.
pub(crate) fn damage(
    subject: &Subject,
    phases: &Phases,
    opts: &EvalOptions,
    chosen: &Steering,
    random: &Steering,
    multiplier: f32,
) -> Result<Option<([f64; 3], usize)>> {
    let Some(task) = &opts.perplexity else {
        return Ok(None);
    };
    phases.enter(Phase::Damage(task.id()));
    let windows = crate::perplexity::windows(task, subject.tokenizer)?;
    // One window per pass: a window's logits (512 positions × the vocabulary)
    // are about 100 MB for the default model.
    const WINDOWS_PER_PASS: usize = 1;
    let plain = || crate::perplexity::perplexity(subject.model, &windows, None, WINDOWS_PER_PASS);
    let (plain, n) = match subject.unsteered {
        Some(kept) => kept.perplexity(task, plain)?,
        None => plain()?,
    };
    let steered =
        crate::perplexity::perplexity(subject.model, &windows, Some((chosen, multiplier)), WINDOWS_PER_PASS)?.0;
    let rand = crate::perplexity::perplexity(subject.model, &windows, Some((random, multiplier)), WINDOWS_PER_PASS)?.0;
    Ok(Some(([plain, steered, rand], n)))
}

/// Validation top-1 accuracy of one (layer, multiplier) on a function task.
#[derive(Debug, Clone, PartialEq)]
pub struct IclSweepPoint {
    /// Steered layer (`None` for a steering without a single layer).
    pub layer: Option<usize>,
    /// Multiplier.
    pub multiplier: f32,
    /// Share of items whose first answer token is the top prediction.
    pub top1: f64,
}

/// Everything one function task × method evaluation found.
#[derive(Debug, Clone)]
pub struct IclReport {
    /// `suite/task`.
    pub task: String,
    /// Method name.
    pub method: String,
    /// Items in the training, validation and test splits.
    pub sizes: [usize; 3],
    /// The validation sweep (zero-shot, steered).
    pub sweep: Vec<IclSweepPoint>,
    /// Chosen layer.
    pub chosen_layer: Option<usize>,
    /// Chosen multiplier.
    pub chosen_multiplier: f32,
    /// Test top-1: `(variant, multiplier, estimate)` for the steered grid
    /// (multiplier 0 is zero-shot unsteered), the random steering at the chosen
    /// multiplier, and few-shot prompting (multiplier 0).
    pub test: Vec<(&'static str, f32, Estimate)>,
    /// Perplexity unsteered, steered and random at the chosen multiplier.
    pub perplexity: Option<[f64; 3]>,
    /// Accuracy per capability task: unsteered, steered, random at the chosen multiplier.
    pub capability: Vec<(String, [crate::tinybench::Capability; 3])>,
    /// Seconds spent fitting, sweeping and testing.
    pub seconds: [f64; 3],
    /// The headline configuration and its paired effects.
    pub headline: Headline,
    /// Every test item's values under every variant.
    pub items: Vec<ItemValue>,
    /// The result rows.
    pub rows: Vec<ResultRow>,
}

/// Evaluates `method` on a function-vector task: fit on training pairs,
/// choose layer and multiplier by zero-shot top-1 on validation, report test
/// zero-shot steered, unsteered, random and few-shot.
pub fn evaluate_icl(
    subject: &Subject,
    task: &Task,
    method: &dyn SteeringMethod,
    opts: &EvalOptions,
) -> Result<IclReport> {
    use crate::icl::{argmax, few_shot_prefix, prompts_and_answers, read_pairs};
    let spec = &task.spec;
    if spec.format != Format::IclPairs {
        return Err(SuiteError::BadRequest(format!(
            "{} is not a function-vector task",
            task.id()
        )));
    }
    let info = method.info();
    let model = subject.model;
    let path = task.file(&spec.test);
    let pairs = read_pairs(&path)?;
    let [tr, va, te] = crate::split::three_way(
        pairs.len(),
        spec.validation_fraction,
        spec.test_fraction,
        spec.split_seed,
    );
    let limit = opts.limit.unwrap_or(usize::MAX);
    let pick =
        |idx: &[usize]| -> Vec<crate::icl::IclPair> { idx.iter().take(limit).map(|&i| pairs[i].clone()).collect() };
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
    let phases = Phases::new(subject, &[Phase::Fit, Phase::Validation, Phase::Test], opts);

    phases.enter(Phase::Fit);
    let started = Instant::now();
    let mut data = crate::icl::training_set(subject.tokenizer, &train)?;
    let (mut steerings, sweep_layers) = fit_sweep(model, method, &mut data, &layers, opts)?;
    let strengths = crate::strength::normalise(model, &data, &mut steerings, opts.batch_size)?;
    let fit_seconds = started.elapsed().as_secs_f64();

    phases.enter(Phase::Validation);
    let started = Instant::now();
    let (val_prompts, val_answers) = prompts_and_answers(subject.tokenizer, &val)?;
    let hit = |answers: &[u32]| {
        let answers = answers.to_vec();
        move |i: usize, row: &[f32]| if argmax(row) == answers[i] { 1.0 } else { 0.0 }
    };
    let scores = crate::ab::last_position_scores(
        model,
        &val_prompts,
        &steerings,
        &grid,
        opts.batch_size,
        &hit(&val_answers),
    )?;
    let mut sweep = Vec::new();
    for (s, layer) in sweep_layers.iter().enumerate() {
        for (k, &m) in grid.iter().enumerate() {
            let v = &scores[s][k];
            sweep.push(IclSweepPoint {
                layer: *layer,
                multiplier: m,
                top1: v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64,
            });
        }
    }
    let top: Vec<f64> = sweep.iter().map(|p| p.top1).collect();
    let selection = select(subject, &phases, opts, &steerings, &grid, &top)?;
    let chosen_index = selection.headline;
    let (chosen_layer, chosen_multiplier) = (sweep[chosen_index].layer, sweep[chosen_index].multiplier);
    let free = (
        sweep[selection.unconstrained].layer,
        sweep[selection.unconstrained].multiplier,
    );
    let chosen = steerings[chosen_index / grid.len()].clone();
    let strength = strengths[chosen_index / grid.len()];
    let val_seconds = started.elapsed().as_secs_f64();

    phases.enter(Phase::Test);
    let started = Instant::now();
    let random = random_like(&chosen, &data, model, opts.seed)?;
    let (test_prompts, test_answers) = prompts_and_answers(subject.tokenizer, &test)?;
    let hits_of = hit(&test_answers);
    let steered = crate::ab::last_position_scores(
        model,
        &test_prompts,
        std::slice::from_ref(&chosen),
        &grid,
        opts.batch_size,
        &hits_of,
    )?;
    let rand = crate::ab::last_position_scores(
        model,
        &test_prompts,
        std::slice::from_ref(&random),
        &[chosen_multiplier],
        opts.batch_size,
        &hits_of,
    )?;
    // Few-shot prompting: `shots` training pairs chosen with the seed, in front of every test prompt.
    let shots = spec.shots.unwrap_or(5).min(train.len());
    let mut order: Vec<usize> = (0..train.len()).collect();
    {
        use rand::seq::SliceRandom;
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(opts.seed));
    }
    let demos: Vec<_> = order[..shots].iter().map(|&i| train[i].clone()).collect();
    let few_shot = Steering {
        method: "few-shot".into(),
        kind: SteeringKind::Prompt {
            positive: few_shot_prefix(subject.tokenizer, &demos)?,
            negative: Vec::new(),
        },
        positions: steer_model::Positions::All,
        params: BTreeMap::new(),
        metadata: BTreeMap::new(),
    };
    let few = crate::ab::last_position_scores(model, &test_prompts, &[few_shot], &[1.0], opts.batch_size, &hits_of)?;
    let est = |v: &[f32]| {
        bootstrap(
            &v.iter().map(|x| *x as f64).collect::<Vec<_>>(),
            opts.resamples,
            opts.seed,
        )
    };
    let mut test_lines: Vec<(&'static str, f32, Estimate)> = grid
        .iter()
        .enumerate()
        .map(|(k, &m)| (if m == 0.0 { "unsteered" } else { "steered" }, m, est(&steered[0][k])))
        .collect();
    test_lines.push(("random", chosen_multiplier, est(&rand[0][0])));
    test_lines.push(("few_shot", 0.0, est(&few[0][0])));
    let hits: Vec<Vec<f64>> = steered[0]
        .iter()
        .map(|v| v.iter().map(|x| *x as f64).collect())
        .collect();
    let as_f64 = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
    let mut items = Vec::new();
    for (k, &m) in grid.iter().enumerate() {
        push_items(
            &mut items,
            if m == 0.0 { "unsteered" } else { "steered" },
            "top1",
            Some(m),
            &hits[k],
        );
    }
    push_items(
        &mut items,
        "random",
        "top1",
        Some(chosen_multiplier),
        &as_f64(&rand[0][0]),
    );
    push_items(&mut items, "few_shot", "top1", Some(0.0), &as_f64(&few[0][0]));
    let k_star = grid.iter().position(|m| *m == chosen_multiplier).unwrap_or(0);
    let k_zero = grid.iter().position(|m| *m == 0.0).unwrap_or(0);
    let unconstrained_vs_unsteered = if selection.unconstrained != selection.headline {
        let free_hits = crate::ab::last_position_scores(
            model,
            &test_prompts,
            std::slice::from_ref(&steerings[selection.unconstrained / grid.len()]),
            &[free.1],
            opts.batch_size,
            &hits_of,
        )?;
        let values = as_f64(&free_hits[0][0]);
        push_items(&mut items, "unconstrained", "top1", Some(free.1), &values);
        Some(paired(&values, &hits[k_zero], opts.resamples, opts.seed))
    } else {
        None
    };
    let headline = Headline {
        metric: "top1",
        unconstrained: free,
        strength,
        vs_unsteered: paired(&hits[k_star], &hits[k_zero], opts.resamples, opts.seed),
        vs_random: paired(&hits[k_star], &as_f64(&rand[0][0]), opts.resamples, opts.seed),
        unconstrained_vs_unsteered,
        selection,
    };
    let ppl = damage(subject, &phases, opts, &chosen, &random, chosen_multiplier)?;
    let caps = capability_damage(subject, &phases, opts, &chosen, &random, chosen_multiplier)?;
    let test_seconds = started.elapsed().as_secs_f64();

    let data_sha256 = sha256_file(&path)?;
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
    for p in &sweep {
        rows.push(row(
            "steered",
            "validation",
            p.layer,
            Some(p.multiplier),
            "top1",
            point(p.top1, val.len()),
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
    let points: Vec<(Option<usize>, f32)> = sweep.iter().map(|p| (p.layer, p.multiplier)).collect();
    rows.extend(headline_rows(
        &headline,
        &points,
        (chosen_layer, chosen_multiplier),
        val.len(),
        test.len(),
        &row,
    ));
    for (variant, m, e) in &test_lines {
        rows.push(row(variant, "test", chosen_layer, Some(*m), "top1", *e));
    }
    push_damage_rows(&mut rows, ppl.as_ref(), &caps, opts, chosen_layer, chosen_multiplier)?;
    Ok(IclReport {
        task: task.id(),
        method: info.name.to_string(),
        sizes: [train.len(), val.len(), test.len()],
        sweep,
        chosen_layer,
        chosen_multiplier,
        test: test_lines,
        perplexity: ppl.map(|(p, _)| p),
        capability: caps.into_iter().map(|(n, c, _)| (n, c)).collect(),
        seconds: [fit_seconds, val_seconds, test_seconds],
        headline,
        items,
        rows,
    })
}
