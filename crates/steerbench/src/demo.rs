//! `steerbench demo`: the benchmark in miniature. One method is fitted on the
//! sentiment task, its layer and strength are chosen on validation, and its
//! test effect is reported next to the random steering of the same size and
//! prompting, with the damage of the same configuration and one opening
//! continued unsteered, steered and with the random steering.

use anyhow::{Result, bail};
use steer_suites::protocol::{EvalOptions, Progress, Subject};
use steer_suites::sentiment::SentimentReport;
use steer_suites::spec::{Catalog, Format};
use steer_suites::stats::{Paired, paired};

/// What the demo runs.
pub struct DemoSettings {
    /// The method shown (prompting is run beside it as the baseline).
    pub method: String,
    /// The sentiment task, `suite/task`.
    pub task: String,
    /// Openings per split.
    pub limit: usize,
    /// Layers of the validation sweep.
    pub layers: Vec<usize>,
    /// The capability task measuring damage.
    pub capability: String,
    /// Tokens of WikiText-2 whose perplexity measures damage.
    pub perplexity_tokens: usize,
    /// Seed of fitting, the random baseline and the bootstrap.
    pub seed: u64,
}

/// A phase bar across both evaluations; its prefix names the method in flight.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn phase(&self, name: &str, index: usize, count: usize) {
        self.0.set_length(count as u64);
        self.0.set_position(index as u64);
        self.0.set_message(name.to_string());
    }
}

/// Runs the demo on `subject`'s model with the tasks of `catalog`.
pub fn run(subject: &Subject, catalog: &Catalog, settings: &DemoSettings) -> Result<()> {
    let (suite, name) = settings
        .task
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--task '{}' is not of the form SUITE/TASK", settings.task))?;
    let task = catalog.select(suite, Some(name))?[0];
    if task.spec.format != Format::Sentiment {
        bail!("--task {}: the demo runs a sentiment task", settings.task);
    }
    let method = crate::find_method(&settings.method)?;
    let prompting = crate::find_method("prompting")?;
    let mut wikitext = catalog.select("perplexity", Some("wikitext2"))?[0].clone();
    wikitext.spec.max_tokens = Some(settings.perplexity_tokens);
    let capability = catalog.select("tinybench", Some(&settings.capability))?[0].clone();
    let opts = EvalOptions {
        layers: Some(settings.layers.clone()),
        limit: Some(settings.limit),
        seed: settings.seed,
        perplexity: Some(wikitext),
        capability: vec![capability],
        open_ended: false,
        ..EvalOptions::default()
    };
    println!(
        "Fitting {} on {} ({} openings per split), choosing its layer (of {:?}) and strength on validation, \
         then testing it against the unsteered model, a random steering of the same size and prompting.",
        settings.method, settings.task, settings.limit, settings.layers
    );
    let bar = Bar(indicatif::ProgressBar::new(0));
    bar.0.set_style(
        indicatif::ProgressStyle::with_template("[{elapsed_precise}] {bar:30} phase {pos}/{len}: {prefix}: {msg}")
            .expect("a valid progress template"),
    );
    let shown = subject.with_progress(&bar);
    let evaluate = |m: &dyn steer_methods::SteeringMethod| -> Result<SentimentReport> {
        bar.0.set_prefix(m.info().name);
        Ok(steer_suites::sentiment::evaluate_sentiment(&shown, task, m, &opts)?)
    };
    let steered = evaluate(method.as_ref())?;
    let prompted = evaluate(prompting.as_ref())?;
    bar.0.finish_and_clear();
    print!("{}", summary(&steered, &prompted, settings.seed)?);
    println!(
        "\nThe full leaderboard (every method on one task per suite, with the same baselines and damage):\n  \
         cargo xtask bench --method all --suite all --profile quick\nthen open results/LEADERBOARD.md."
    );
    Ok(())
}

/// Per-item values of `variant` at `multiplier` for the report's primary metric, in item order.
fn item_values(r: &SentimentReport, variant: &str, multiplier: f32) -> Vec<f64> {
    let mut v: Vec<(usize, f64)> = r
        .items
        .iter()
        .filter(|i| i.variant == variant && i.metric == r.headline.metric && i.multiplier == Some(multiplier))
        .map(|i| (i.item, i.value))
        .collect();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, x)| x).collect()
}

/// The demo's report: effects with intervals and p-values, damage, one opening's continuations.
pub fn summary(steered: &SentimentReport, prompted: &SentimentReport, seed: u64) -> Result<String> {
    use std::fmt::Write;
    let resamples = steer_suites::protocol::EvalOptions::default().resamples;
    let m = steered.chosen_multiplier;
    let plain = item_values(steered, "unsteered", 0.0);
    let random = item_values(steered, "random", m);
    let with_prompt = match prompted.chosen_multiplier {
        0.0 => item_values(prompted, "unsteered", 0.0),
        pm => item_values(prompted, "steered", pm),
    };
    let mine = item_values(steered, "steered", m);
    if plain.is_empty() || random.len() != plain.len() || with_prompt.len() != plain.len() || mine.len() != plain.len()
    {
        bail!("the evaluations did not keep every test item's values");
    }
    let mut out = String::new();
    let layer = steered
        .chosen_layer
        .map_or("every layer".to_string(), |l| format!("layer {l}"));
    let strength = steered
        .headline
        .strength
        .relative
        .map_or(format!("multiplier {m}"), |r| {
            format!("{:.3} of the residual-stream norm", r * m as f64)
        });
    writeln!(
        out,
        "\n{} on {}: {} test openings; chosen on validation: {layer}, {strength}{}",
        steered.method,
        steered.task,
        plain.len(),
        if steered.headline.selection.constrained {
            " (the best point within the fluency bound)"
        } else {
            " (no point stayed within the fluency bound)"
        }
    )?;
    writeln!(
        out,
        "effect on log P(positive word) − log P(negative word), per opening, paired with the unsteered model:"
    )?;
    let line = |out: &mut String, name: &str, p: &Paired| -> std::fmt::Result {
        writeln!(
            out,
            "  {name:<34} {:+8.3}  [{:+.3}, {:+.3}]  sign-flip p = {:.4}",
            p.effect.mean, p.effect.low, p.effect.high, p.p
        )
    };
    line(
        &mut out,
        &format!("{} (steered − unsteered)", steered.method),
        &steered.headline.vs_unsteered,
    )?;
    line(
        &mut out,
        "random steering, same size",
        &paired(&random, &plain, resamples, seed),
    )?;
    line(
        &mut out,
        "prompting (prompted − unsteered)",
        &paired(&with_prompt, &plain, resamples, seed),
    )?;
    line(
        &mut out,
        &format!("{} − random", steered.method),
        &steered.headline.vs_random,
    )?;
    line(
        &mut out,
        &format!("{} − prompting", steered.method),
        &paired(&mine, &with_prompt, resamples, seed),
    )?;
    let anti = steered
        .steerability
        .iter()
        .map(|(v, s)| format!("{v} {:.0} %", 100.0 * s.anti_steerable))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(out, "anti-steerable openings (negative per-item slope): {anti}")?;
    writeln!(out, "damage of this configuration:")?;
    if let Some([p0, p1, p2]) = steered.perplexity {
        writeln!(
            out,
            "  WikiText-2 perplexity: unsteered {p0:.2}, steered {p1:.2} (×{:.3}), random {p2:.2} (×{:.3})",
            p1 / p0,
            p2 / p0
        )?;
    }
    for (name, [c0, c1, c2]) in &steered.capability {
        writeln!(
            out,
            "  tinybench/{name} weighted accuracy ({} anchors): unsteered {:.3}, steered {:.3} (Δ {:+.3}), random {:.3} (Δ {:+.3})",
            c0.n,
            c0.weighted,
            c1.weighted,
            c1.weighted - c0.weighted,
            c2.weighted,
            c2.weighted - c0.weighted
        )?;
    }
    if let Some(opening) = steered.openings.first() {
        writeln!(out, "the first test opening, continued greedily: {opening:?}")?;
        for g in &steered.generations {
            if let Some(text) = g.texts.first() {
                writeln!(out, "  {:<10} ×{:<6} {text:?}", g.variant, g.multiplier)?;
            }
        }
    }
    Ok(out)
}
