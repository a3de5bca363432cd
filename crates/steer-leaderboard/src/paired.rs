//! The protocol-2 columns of the leaderboard, computed from each run's
//! per-item file: the paired effect of the headline configuration against
//! the unsteered model, the random steering and prompting on the same items
//! (mean difference, bootstrap interval, sign-flip p-value), Holm's
//! adjustment across every row, the letter bias, the anti-steerable shares,
//! how the headline was chosen, and a verdict. Runs of protocol 1 (per-item
//! slopes only) get none of these, and the verdict says they must be rerun.

use std::collections::BTreeMap;
use std::path::Path;

use steer_stats::{FLUENCY_BOUND, Paired, holm, paired};

use crate::input::{ItemValue, Row, Run};
use crate::{Error, Result};

/// Significance level of every test, after Holm's adjustment for the effect.
pub const ALPHA: f64 = 0.05;

/// Largest drop of anchor-weighted tinyBenchmarks accuracy (mean over the
/// tasks) that the verdict "steers" allows.
pub const MAX_ACCURACY_DROP: f64 = 0.05;

/// Bootstrap resamples of the leaderboard's intervals (the protocol's default).
pub const RESAMPLES: usize = 1000;

/// The prompt shifts of A/B runs, as the protocol names them
/// (`steer_suites::ab::SHIFTS`): items metric `logit_diff_ood_<shift>`.
pub const SHIFTS: [&str; 5] = [
    "system_towards",
    "system_away",
    "user_towards",
    "user_away",
    "multi_turn",
];

/// The verdicts, in the order `results/README.md` defines them.
pub const VERDICTS: [&str; 6] = [
    "steers",
    "steers only with damage",
    "no better than random",
    "reverses",
    "no detectable effect",
    "rerun (protocol 1)",
];

/// The protocol-2 columns of one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunStats {
    /// 1 or 2.
    pub protocol: u64,
    /// The headline metric.
    pub metric: Option<String>,
    /// Headline minus unsteered.
    pub vs_unsteered: Option<Paired>,
    /// Headline minus the random steering at the same multiplier.
    pub vs_random: Option<Paired>,
    /// Headline minus prompting's headline on the same items.
    pub vs_prompting: Option<Paired>,
    /// Holm-adjusted `vs_unsteered` p-value across all rows.
    pub p_holm: Option<f64>,
    /// The smallest effect this row's items detect (α = 0.05, 80 % power).
    pub min_detectable_effect: Option<f64>,
    /// Headline minus unsteered under each prompt shift, in [`SHIFTS`] order
    /// (empty for runs without them).
    pub ood: Vec<Paired>,
    /// Mean unsteered letter bias (A/B tasks).
    pub letter_bias: Option<f64>,
    /// Mean change of the letter bias under the headline steering.
    pub delta_letter_bias: Option<f64>,
    /// Share of items with a negative slope under the random steering.
    pub random_anti_steerable: Option<f64>,
    /// Whether the headline stays within the fluency bound on validation.
    pub fluency_constrained: Option<bool>,
    /// Displacement at the headline strength over the mean residual-stream norm.
    pub relative_strength: Option<f64>,
    /// The method's own multiplier at the headline strength.
    pub raw_multiplier: Option<f64>,
    /// The unconstrained choice's layer.
    pub unconstrained_layer: Option<u64>,
    /// The unconstrained choice's multiplier.
    pub unconstrained_multiplier: Option<f64>,
    /// The unconstrained choice minus unsteered.
    pub unconstrained: Option<Paired>,
    /// Test perplexity steered over unsteered.
    pub perplexity_ratio: Option<f64>,
    /// Mean Δ anchor-weighted tinyBenchmarks accuracy.
    pub delta_accuracy: Option<f64>,
    /// The verdict.
    pub verdict: String,
}

/// The row of `run` with this variant and metric (first in file order).
fn row<'a>(run: &'a Run, variant: &str, metric: &str) -> Option<&'a Row> {
    run.rows.iter().find(|r| r.variant == variant && r.metric == metric)
}

/// Whether two multipliers read from files are the same grid point.
pub(crate) fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Values of `variant`/`metric` at `multiplier`, indexed by item `0..n`;
/// a missing or repeated item is an error naming the file.
pub(crate) fn values(
    path: &Path,
    items: &[ItemValue],
    variant: &str,
    metric: &str,
    multiplier: Option<f64>,
    n: usize,
) -> Result<Vec<f64>> {
    let mut out = vec![None; n];
    for v in items.iter().filter(|v| {
        v.variant == variant
            && v.metric == metric
            && match (v.multiplier, multiplier) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            }
    }) {
        let slot = out.get_mut(v.item as usize).ok_or_else(|| {
            Error::input(
                path,
                None,
                format!("item {} of {variant}/{metric} is past the {n} test items", v.item),
            )
        })?;
        if slot.replace(v.value).is_some() {
            return Err(Error::input(
                path,
                None,
                format!("item {} of {variant}/{metric} appears twice", v.item),
            ));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| {
                let at = multiplier.map_or(String::new(), |m| format!(" at multiplier {m}"));
                Error::input(
                    path,
                    None,
                    format!("item {i} of {variant}/{metric}{at} is missing (truncated file?)"),
                )
            })
        })
        .collect()
}

/// The headline values of a protocol-2 run: `(metric, steered, unsteered, seed, n)`.
struct Headline {
    metric: String,
    steered: Vec<f64>,
    unsteered: Vec<f64>,
    seed: u64,
}

fn headline(run: &Run, items: &[ItemValue]) -> Result<Option<Headline>> {
    let Some(effect) = run.rows.iter().find(|r| {
        r.variant == "steered"
            && r.split == "test"
            && r.metric.starts_with("effect_")
            && !r.metric.starts_with("effect_vs_random")
            && !r.metric.starts_with("effect_ood_")
    }) else {
        return Ok(None);
    };
    let metric = effect.metric["effect_".len()..].to_string();
    let path = run.items_path.as_deref().ok_or_else(|| {
        Error::input(
            &run.path,
            None,
            "a protocol-2 run needs its per-item file beside it".into(),
        )
    })?;
    let choice = row(run, "choice", "chosen").and_then(|r| r.multiplier).unwrap_or(0.0);
    let n = effect.n as usize;
    Ok(Some(Headline {
        steered: values(path, items, "steered", &metric, Some(choice), n)?,
        unsteered: values(path, items, "unsteered", &metric, Some(0.0), n)?,
        metric,
        seed: effect.seed,
    }))
}

/// The protocol-2 columns of every run, in run order.
pub fn compute(runs: &[Run]) -> Result<Vec<RunStats>> {
    let mut out = Vec::with_capacity(runs.len());
    let mut heads = Vec::with_capacity(runs.len());
    for run in runs {
        let items = run.items()?;
        let head = headline(run, &items)?;
        let mut stats = RunStats {
            protocol: if head.is_some() { 2 } else { 1 },
            ..RunStats::default()
        };
        // Damage of the headline, from the rows.
        let ppl = |variant: &str| {
            run.rows
                .iter()
                .find(|r| r.suite == "perplexity" && r.variant == variant && r.metric == "perplexity")
                .map(|r| r.value)
        };
        if let (Some(s), Some(u)) = (ppl("steered"), ppl("unsteered")) {
            stats.perplexity_ratio = Some(s / u);
        }
        let deltas: Vec<f64> = run
            .rows
            .iter()
            .filter(|r| r.suite == "tinybench" && r.variant == "steered" && r.metric == "delta_accuracy_weighted")
            .map(|r| r.value)
            .collect();
        if !deltas.is_empty() {
            stats.delta_accuracy = Some(deltas.iter().sum::<f64>() / deltas.len() as f64);
        }
        if let Some(h) = &head {
            let path = run.items_path.as_deref().unwrap_or(&run.path);
            let n = h.steered.len();
            let m = row(run, "choice", "chosen").and_then(|r| r.multiplier).unwrap_or(0.0);
            stats.metric = Some(h.metric.clone());
            stats.vs_unsteered = Some(paired(&h.steered, &h.unsteered, RESAMPLES, h.seed));
            stats.min_detectable_effect = stats.vs_unsteered.map(|p| p.min_detectable).filter(|v| !v.is_nan());
            let random = values(path, &items, "random", &h.metric, Some(m), n)?;
            stats.vs_random = Some(paired(&h.steered, &random, RESAMPLES, h.seed));
            let has = |variant: &str, metric: &str| items.iter().any(|v| v.variant == variant && v.metric == metric);
            if has("unsteered", "letter_bias") {
                let plain = values(path, &items, "unsteered", "letter_bias", Some(0.0), n)?;
                let steered = values(path, &items, "steered", "letter_bias", Some(m), n)?;
                let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
                stats.letter_bias = Some(mean(&plain));
                stats.delta_letter_bias = Some(mean(&steered) - mean(&plain));
            }
            if has("unsteered", &format!("logit_diff_ood_{}", SHIFTS[0])) {
                for shift in SHIFTS {
                    let metric = format!("logit_diff_ood_{shift}");
                    let plain = values(path, &items, "unsteered", &metric, Some(0.0), n)?;
                    let steered = values(path, &items, "steered", &metric, Some(m), n)?;
                    stats.ood.push(paired(&steered, &plain, RESAMPLES, h.seed));
                }
            }
            if has("random", "slope") {
                let slopes = values(path, &items, "random", "slope", None, n)?;
                stats.random_anti_steerable =
                    Some(slopes.iter().filter(|s| **s < 0.0).count() as f64 / n.max(1) as f64);
            }
            stats.fluency_constrained = row(run, "choice", "fluency_constrained").map(|r| r.value == 1.0);
            stats.relative_strength = row(run, "choice", "relative_strength").map(|r| r.value);
            stats.raw_multiplier = row(run, "choice", "raw_multiplier").map(|r| r.value);
            if let Some(free) = row(run, "choice", "chosen_unconstrained") {
                stats.unconstrained_layer = free.layer;
                stats.unconstrained_multiplier = free.multiplier;
                let fm = free.multiplier.unwrap_or(0.0);
                stats.unconstrained = if same(fm, m) && has_same_layer(run, free) {
                    stats.vs_unsteered
                } else {
                    let v = values(path, &items, "unconstrained", &h.metric, Some(fm), n)?;
                    Some(paired(&v, &h.unsteered, RESAMPLES, h.seed))
                };
            }
        }
        heads.push(head);
        out.push(stats);
    }
    // Prompting's headline on the same items, per model and task.
    let mut prompting: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        if let (Some(first), Some(_)) = (run.rows.first(), &heads[i])
            && first.method == crate::table::PROMPTING
            && let Some(c) = row(run, "choice", "chosen")
        {
            prompting.insert((c.model.clone(), c.suite.clone(), c.task.clone()), i);
        }
    }
    for (i, run) in runs.iter().enumerate() {
        let (Some(h), Some(c)) = (&heads[i], row(run, "choice", "chosen")) else {
            continue;
        };
        if let Some(&j) = prompting.get(&(c.model.clone(), c.suite.clone(), c.task.clone()))
            && let Some(p) = &heads[j]
            && p.metric == h.metric
            && p.steered.len() == h.steered.len()
            && i != j
        {
            out[i].vs_prompting = Some(paired(&h.steered, &p.steered, RESAMPLES, h.seed));
        }
    }
    let raw: Vec<f64> = out.iter().map(|s| s.vs_unsteered.map_or(f64::NAN, |p| p.p)).collect();
    for (s, adjusted) in out.iter_mut().zip(holm(&raw)) {
        s.p_holm = (!adjusted.is_nan()).then_some(adjusted);
        s.verdict = verdict(s).to_string();
    }
    Ok(out)
}

fn has_same_layer(run: &Run, free: &Row) -> bool {
    row(run, "choice", "chosen").is_some_and(|c| c.layer == free.layer)
}

/// The verdict of one row (defined in `results/README.md`).
pub fn verdict(s: &RunStats) -> &'static str {
    let (Some(effect), Some(p)) = (s.vs_unsteered, s.p_holm) else {
        return VERDICTS[5];
    };
    if p >= ALPHA || effect.effect.mean == 0.0 {
        return VERDICTS[4];
    }
    if effect.effect.mean < 0.0 {
        return VERDICTS[3];
    }
    if s.vs_random.is_none_or(|r| r.p >= ALPHA || r.effect.mean <= 0.0) {
        return VERDICTS[2];
    }
    let damaged = s.fluency_constrained != Some(true)
        || s.perplexity_ratio.is_some_and(|r| r > FLUENCY_BOUND)
        || s.delta_accuracy.is_some_and(|d| d < -MAX_ACCURACY_DROP);
    if damaged { VERDICTS[1] } else { VERDICTS[0] }
}
