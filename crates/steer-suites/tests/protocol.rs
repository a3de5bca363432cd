//! The protocol on a small slice of a real task with the default model.

use steer_model::{Backend, LoadedModel};
use steer_suites::protocol::{EvalOptions, Subject, evaluate_mcq};
use steer_suites::spec::{Catalog, default_root};

fn default_model() -> LoadedModel {
    let path = steer_model::model::default_model_path();
    assert!(
        path.is_file(),
        "the default model is missing at {}: run `cargo xtask setup` (or `cargo xtask test`)",
        path.display()
    );
    LoadedModel::load("default", &Backend::Cpu.device().unwrap()).unwrap()
}

/// The default model as an evaluation subject.
fn subject(loaded: &LoadedModel) -> Subject<'_> {
    Subject {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        name: "default".into(),
        sha256: steer_model::model::DEFAULT_MODEL_SHA256.into(),
        progress: None,
        unsteered: None,
    }
}

/// Every phase an evaluation announces: (name, index, count).
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(String, usize, usize)>>);

impl steer_suites::protocol::Progress for Recorder {
    fn phase(&self, name: &str, index: usize, count: usize) {
        self.0.lock().unwrap().push((name.to_string(), index, count));
    }
}

#[test]
fn mcq_slice_with_the_default_model() {
    let loaded = default_model();
    let catalog = Catalog::open(&default_root()).unwrap();
    let task = catalog.select("mcq", Some("refusal")).unwrap()[0];
    let cache = steer_suites::unsteered::UnsteeredCache::new();
    let phases = Recorder::default();
    let subject = Subject {
        unsteered: Some(&cache),
        progress: Some(&phases),
        ..subject(&loaded)
    };
    let mut wikitext = catalog.select("perplexity", Some("wikitext2")).unwrap()[0].clone();
    wikitext.spec.max_tokens = Some(300);
    wikitext.spec.window = Some(160);
    wikitext.spec.stride = Some(120);
    let (arc_root, arc) = tiny_task("arc", 4, "");
    let opts = EvalOptions {
        layers: Some(vec![4, 12]),
        multipliers: Some(vec![-0.5, 0.0, 0.25, 0.5]),
        limit: Some(6),
        seed: 3,
        resamples: 200,
        open_ended: true,
        perplexity: Some(wikitext),
        capability: vec![arc],
        generations: 2,
        generation_tokens: 4,
        ..EvalOptions::default()
    };
    let method = steer_methods::find("caa").unwrap();
    let report = evaluate_mcq(&subject, task, method.as_ref(), &opts).unwrap();
    assert_eq!(report.sizes, [6, 6, 6]);
    assert_eq!(report.sweep.len(), 8);
    assert!(report.chosen_multiplier > 0.0);
    assert!(matches!(report.chosen_layer, Some(4) | Some(12)));
    // The unconstrained choice is the best positive validation point; the
    // headline is the best one within the fluency bound, when there is one.
    let sel = &report.headline.selection;
    let ratios = sel.ratios.as_ref().unwrap();
    let best_of = |ok: &dyn Fn(usize) -> bool| {
        (0..report.sweep.len())
            .filter(|&i| report.sweep[i].multiplier > 0.0 && ok(i))
            .map(|i| report.sweep[i].p_matching)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    assert_eq!(report.sweep[sel.unconstrained].p_matching, best_of(&|_| true));
    let within = best_of(&|i| ratios[i] <= steer_suites::fluency::FLUENCY_BOUND);
    if sel.constrained {
        assert_eq!(report.sweep[sel.headline].p_matching, within);
        assert!(ratios[sel.headline] <= steer_suites::fluency::FLUENCY_BOUND);
    } else {
        assert_eq!(within, f64::NEG_INFINITY);
        assert_eq!(sel.headline, sel.unconstrained);
    }
    let chosen = &report.sweep[sel.headline];
    assert_eq!(
        (chosen.layer, chosen.multiplier),
        (report.chosen_layer, report.chosen_multiplier)
    );
    // Each positive point has a measured ratio; negative ones are not measured.
    for (p, r) in report.sweep.iter().zip(ratios) {
        assert_eq!(
            p.multiplier > 0.0,
            r.is_finite() && *r > 0.0 && p.multiplier != 0.0,
            "{p:?} {r}"
        );
        assert_eq!(p.perplexity_ratio, (p.multiplier >= 0.0).then_some(*r));
    }
    // Additive vectors are rescaled to the residual stream: multiplier 1 is its mean norm.
    let strength = report.headline.strength;
    assert_eq!(strength.relative, Some(1.0));
    assert!(strength.raw_per_unit.unwrap() > 0.0 && strength.resid_norm.unwrap() > 0.0);
    // Per-item values: the order-controlled propensity is the mean of both orders,
    // and the headline's paired effect is the mean of per-item differences.
    let item_values = |variant: &str, metric: &str, m: Option<f32>| -> Vec<f64> {
        let v: Vec<_> = report
            .items
            .iter()
            .filter(|i| i.variant == variant && i.metric == metric && i.multiplier == m)
            .collect();
        assert!(v.iter().enumerate().all(|(k, i)| i.item == k), "{variant}/{metric}");
        v.iter().map(|i| i.value).collect()
    };
    let m_star = Some(report.chosen_multiplier);
    for (variant, m) in [("unsteered", Some(0.0)), ("steered", m_star), ("random", m_star)] {
        let given = item_values(variant, "logit_diff_given_order", m);
        let exchanged = item_values(variant, "logit_diff_exchanged_order", m);
        let controlled = item_values(variant, "logit_diff", m);
        assert_eq!(controlled.len(), 6);
        for i in 0..6 {
            assert!((controlled[i] - (given[i] + exchanged[i]) / 2.0).abs() < 1e-12);
        }
        assert_eq!(item_values(variant, "letter_bias", m).len(), 6);
    }
    let steered = item_values("steered", "logit_diff", m_star);
    let plain = item_values("unsteered", "logit_diff", Some(0.0));
    let diff: f64 = steered.iter().zip(&plain).map(|(a, b)| a - b).sum::<f64>() / 6.0;
    let h = &report.headline;
    assert!((h.vs_unsteered.effect.mean - diff).abs() < 1e-12);
    assert!(h.vs_unsteered.effect.low <= diff && diff <= h.vs_unsteered.effect.high);
    assert!((0.0..=1.0).contains(&h.vs_unsteered.p));
    assert_eq!(item_values("steered", "slope", None), report.steerability[0].1.per_item);
    // Under each prompt shift: the same six items, unsteered, steered and
    // random at the chosen multiplier; the effect is their paired difference,
    // and its rows carry the same numbers.
    let names: Vec<&str> = report.ood.iter().map(|o| o.shift).collect();
    assert_eq!(
        names,
        [
            "system_towards",
            "system_away",
            "user_towards",
            "user_away",
            "multi_turn"
        ]
    );
    let mut moved_by_shift = 0;
    for (o, shift) in report.ood.iter().zip(steer_suites::ab::SHIFTS) {
        let under = item_values("unsteered", shift.metric(), Some(0.0));
        let steered = item_values("steered", shift.metric(), m_star);
        assert_eq!((under.len(), steered.len()), (6, 6));
        assert_eq!(item_values("random", shift.metric(), m_star).len(), 6);
        let d = steered.iter().zip(&under).map(|(a, b)| a - b).sum::<f64>() / 6.0;
        assert!((o.vs_unsteered.effect.mean - d).abs() < 1e-12, "{}", o.shift);
        assert!((o.unsteered.mean - under.iter().sum::<f64>() / 6.0).abs() < 1e-12);
        moved_by_shift += under.iter().zip(&plain).filter(|(a, b)| (*a - *b).abs() > 1e-4).count();
        let row = |metric: String| {
            report
                .rows
                .iter()
                .find(|r| r.metric == metric && r.split == "test")
                .unwrap_or_else(|| panic!("no row {metric}"))
                .value
        };
        assert_eq!(row(format!("effect_ood_{}", o.shift)), o.vs_unsteered.effect.mean);
        assert_eq!(row(format!("p_effect_ood_{}", o.shift)), o.vs_unsteered.p);
        assert_eq!(
            row(format!("effect_vs_random_ood_{}", o.shift)),
            o.vs_random.effect.mean
        );
    }
    // The shifts change the prompts, so they change the unsteered model's margins.
    assert!(moved_by_shift > 0);
    assert_eq!(
        item_values("unsteered", "open_logprob_diff", Some(0.0)).len(),
        6,
        "every CAA item has an open-ended form"
    );
    // Multiplier 0 is the unsteered model for both variants; intervals bracket means.
    let at = |variant: &str, m: f32| {
        report
            .test
            .iter()
            .find(|t| t.variant == variant && t.multiplier == m)
            .unwrap()
    };
    assert_eq!(at("steered", 0.0).logit_diff, at("random", 0.0).logit_diff);
    for t in &report.test {
        assert!(t.logit_diff.low <= t.logit_diff.mean && t.logit_diff.mean <= t.logit_diff.high);
        assert!((0.0..=1.0).contains(&t.p_matching.mean));
        assert_eq!(t.logit_diff.n, 6);
    }
    let (_, s) = &report.steerability[0];
    assert_eq!(s.per_item.len(), 6);
    assert!((0.0..=1.0).contains(&s.anti_steerable));
    let p = report.predictors.as_ref().unwrap();
    assert!((-1.0..=1.0).contains(&p.difference_cosine) && (0.0..=1.0).contains(&p.separability));
    // Open-ended effects exist for every item (all CAA items have line-separated choices).
    let e = report.effects.as_ref().unwrap();
    assert_eq!(e.gap.n, 6);
    assert!((e.mcq.mean - e.open.mean - e.gap.mean).abs() < 1e-9);
    // Perplexity of real text under the unsteered model is plausible for a 135M model.
    let [plain, steered, random] = report.perplexity.unwrap();
    assert!((5.0..200.0).contains(&plain), "perplexity {plain}");
    assert!(steered.is_finite() && random.is_finite());
    // Rows carry provenance and the same numbers, and the run is deterministic.
    for r in &report.rows {
        let data_len = if r.suite == "perplexity" || r.suite == "tinybench" {
            64
        } else {
            129
        };
        assert!(r.model_sha256.len() == 64 && r.data_sha256.len() == data_len, "{r:?}");
    }
    assert!(
        report
            .rows
            .iter()
            .any(|r| r.suite == "open_ended" && r.metric == "mcq_minus_open_effect")
    );
    assert!(
        report
            .rows
            .iter()
            .any(|r| r.suite == "perplexity" && r.metric == "delta_perplexity")
    );
    // Damage rows describe the chosen configuration on the test split.
    let damage: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.suite == "perplexity" || r.suite == "tinybench")
        .collect();
    assert_eq!(damage.iter().filter(|r| r.suite == "tinybench").count(), 8);
    for r in damage {
        assert_eq!((r.split.as_str(), r.layer), ("test", report.chosen_layer), "{r:?}");
    }
    // Open-ended prompts are continued unsteered and at ± the chosen multiplier.
    let kept: Vec<(&str, f32)> = report
        .generations
        .iter()
        .map(|g| (g.variant.as_str(), g.multiplier))
        .collect();
    let m = report.chosen_multiplier;
    assert_eq!(
        kept,
        [
            ("unsteered", 0.0),
            ("unsteered", 0.0),
            ("positive", m),
            ("positive", m),
            ("negative", -m),
            ("negative", -m)
        ]
    );
    assert!(
        report
            .generations
            .iter()
            .all(|g| g.prompt == report.generations[0].prompt || g.prompt == report.generations[1].prompt)
    );
    // Every planned phase is announced once, in order, out of the planned count.
    let announced = phases.0.lock().unwrap().clone();
    let names: Vec<&str> = announced.iter().map(|(n, _, _)| n.as_str()).collect();
    let perplexity_id = opts.perplexity.as_ref().unwrap().id();
    let arc_id = opts.capability[0].id();
    assert_eq!(
        names,
        [
            "fit",
            "validation",
            "fluency",
            "test",
            "ood",
            "open-ended",
            "generations",
            &perplexity_id,
            &arc_id
        ]
    );
    for (i, (_, index, count)) in announced.iter().enumerate() {
        assert_eq!((*index, *count), (i, names.len()));
    }
    // A repeat gives the same rows while taking the unsteered perplexity
    // from the cache the first run filled.
    assert_eq!(cache.len(), 1);
    let again = evaluate_mcq(&subject, task, method.as_ref(), &opts).unwrap();
    assert_eq!(report.rows, again.rows);
    assert_eq!(cache.len(), 1);
    let csv = steer_suites::rows::to_csv(&report.rows).unwrap();
    assert_eq!(String::from_utf8(csv).unwrap().lines().count(), report.rows.len() + 1);
    std::fs::remove_dir_all(arc_root).unwrap();
}

#[test]
fn icl_slice_with_the_default_model() {
    let loaded = default_model();
    let catalog = Catalog::open(&default_root()).unwrap();
    let task = catalog.select("icl", Some("country-capital")).unwrap()[0];
    let subject = subject(&loaded);
    let opts = EvalOptions {
        layers: Some(vec![6]),
        multipliers: Some(vec![-1.0, 0.0, 1.0]),
        limit: Some(8),
        resamples: 100,
        ..EvalOptions::default()
    };
    let method = steer_methods::find("caa").unwrap();
    let report = steer_suites::protocol::evaluate_icl(&subject, task, method.as_ref(), &opts).unwrap();
    assert_eq!(report.sizes, [8, 8, 8]);
    assert_eq!((report.chosen_layer, report.chosen_multiplier), (Some(6), 1.0));
    let variants: Vec<&str> = report.test.iter().map(|t| t.0).collect();
    assert_eq!(variants, ["steered", "unsteered", "steered", "random", "few_shot"]);
    for (_, _, e) in &report.test {
        assert!((0.0..=1.0).contains(&e.mean) && e.n == 8);
        // Top-1 is a share of 8 items.
        assert!(((e.mean * 8.0).round() - e.mean * 8.0).abs() < 1e-9);
    }
    // Demonstrations help a 135M model name capitals: few-shot beats zero-shot.
    let few = report.test.iter().find(|t| t.0 == "few_shot").unwrap().2.mean;
    let zero = report.test.iter().find(|t| t.0 == "unsteered").unwrap().2.mean;
    assert!(few >= zero, "few-shot {few} vs zero-shot {zero}");
}

#[test]
fn tinybench_capability_with_the_default_model() {
    use std::collections::BTreeMap;
    use steer_methods::{Steering, SteeringKind};

    let loaded = default_model();
    // A task of the first 16 MMLU anchor items, in a scratch suites folder.
    let root = std::env::temp_dir().join(format!("steer-suites-tiny-{}", std::process::id()));
    let dir = root.join("tinybench").join("mini");
    std::fs::create_dir_all(&dir).unwrap();
    let full = default_root().join("tinybench/mmlu/anchors.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(full)
        .unwrap()
        .lines()
        .take(16)
        .map(String::from)
        .collect();
    std::fs::write(dir.join("anchors.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("task.toml"),
        "name = \"mini\"\nsuite = \"tinybench\"\nversion = 1\nformat = \"anchor_mc\"\ndescription = \"d\"\ntest = \"anchors.jsonl\"\n",
    )
    .unwrap();
    let task = steer_suites::spec::Task::open(&dir).unwrap();
    let steering = |vector: Vec<f32>| Steering {
        method: "t".into(),
        kind: SteeringKind::Additive {
            vectors: vec![(10, vector)],
        },
        positions: steer_model::Positions::PromptEndOnward,
        params: BTreeMap::new(),
        metadata: BTreeMap::new(),
    };
    let zero = steering(vec![0.0; 576]);
    let huge = steering((0..576).map(|i| if i % 2 == 0 { 400.0 } else { -400.0 }).collect());
    let c = steer_suites::tinybench::capability(&loaded.model, &loaded.tokenizer, &task, &[zero, huge], 1.0, 8, None)
        .unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(c[0], c[1], "a zero vector leaves accuracy unchanged");
    for x in &c {
        assert_eq!(x.n, 16);
        assert!((0.0..=1.0).contains(&x.accuracy) && (0.0..=1.0).contains(&x.weighted));
        assert!(((x.accuracy * 16.0).round() - x.accuracy * 16.0).abs() < 1e-9);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn sentiment_slice_with_the_default_model() {
    let loaded = default_model();
    let catalog = Catalog::open(&default_root()).unwrap();
    let mut task = catalog.select("sentiment", Some("openings")).unwrap()[0].clone();
    task.spec.max_new_tokens = Some(6);
    let subject = subject(&loaded);
    let opts = EvalOptions {
        layers: Some(vec![6]),
        multipliers: Some(vec![-4.0, 0.0, 4.0]),
        limit: Some(6),
        resamples: 100,
        ..EvalOptions::default()
    };
    let method = steer_methods::find("caa").unwrap();
    let report = steer_suites::sentiment::evaluate_sentiment(&subject, &task, method.as_ref(), &opts).unwrap();
    assert_eq!(report.sizes, [6, 6, 6]);
    assert_eq!((report.chosen_layer, report.chosen_multiplier), (Some(6), 4.0));
    let at = |m: f32| report.test.iter().find(|t| t.0 != "random" && t.1 == m).unwrap().2;
    // The mean-difference vector of positive vs negative adjectives favours
    // held-out positive words over negative ones more at +4 than unsteered
    // and than at −4. (At layer 6 with six pairs, −4 also raises the margin a
    // little, as a random vector does: the response is not symmetric.)
    assert!(
        at(4.0).mean > at(0.0).mean && at(4.0).mean > at(-4.0).mean,
        "{:?}",
        report.test
    );
    let variants: Vec<&str> = report.generations.iter().map(|g| g.variant).collect();
    assert_eq!(variants, ["unsteered", "positive", "negative", "random"]);
    for g in &report.generations {
        assert_eq!(g.texts.len(), 6);
        assert!((-1.0..=1.0).contains(&g.compound.mean));
        assert!(g.perplexity.is_finite() && g.perplexity > 1.0, "{g:?}");
        assert!(g.positive_fraction + g.negative_fraction <= 1.0);
    }
    // The unsteered continuation is what plain greedy decoding gives.
    let prompt = loaded.tokenizer.encode(&report.openings[0], false).unwrap();
    let plain = loaded
        .model
        .generate(
            &[prompt],
            &[],
            &steer_model::GenerateOptions {
                max_new_tokens: 6,
                sampling: steer_model::Sampling::Greedy,
                eos_ids: loaded.tokenizer.eos_ids().to_vec(),
            },
        )
        .unwrap();
    let eos = loaded.tokenizer.eos_ids();
    let text = loaded
        .tokenizer
        .decode(steer_suites::generation::strip_eos(&plain[0], eos), true)
        .unwrap();
    assert_eq!(report.generations[0].texts[0], text);
    for metric in [
        "logprob_diff",
        "vader_compound",
        "generation_perplexity",
        "anti_steerable_fraction",
    ] {
        assert!(report.rows.iter().any(|r| r.metric == metric), "{metric}");
    }
    assert!(
        report
            .rows
            .iter()
            .any(|r| r.metric == "vader_compound" && r.multiplier == Some(-4.0))
    );
}

/// A tinybench task of the first `n` items of `bench`, in a scratch suites folder.
fn tiny_task(bench: &str, n: usize, extra: &str) -> (std::path::PathBuf, steer_suites::spec::Task) {
    let root = std::env::temp_dir().join(format!("steer-suites-{bench}-{}", std::process::id()));
    let dir = root.join("tinybench").join("mini");
    std::fs::create_dir_all(&dir).unwrap();
    let full = default_root().join(format!("tinybench/{bench}/anchors.jsonl"));
    let lines: Vec<String> = std::fs::read_to_string(full)
        .unwrap()
        .lines()
        .take(n)
        .map(String::from)
        .collect();
    std::fs::write(dir.join("anchors.jsonl"), lines.join("\n") + "\n").unwrap();
    let spec = std::fs::read_to_string(default_root().join(format!("tinybench/{bench}/task.toml")))
        .unwrap()
        .replace(&format!("name = \"{bench}\""), "name = \"mini\"");
    std::fs::write(dir.join("task.toml"), format!("{spec}{extra}")).unwrap();
    (root, steer_suites::spec::Task::open(&dir).unwrap())
}

#[test]
fn likelihood_and_generation_capability_with_the_default_model() {
    use std::collections::BTreeMap;
    use steer_methods::{Steering, SteeringKind};

    let loaded = default_model();
    let steering = |vector: Vec<f32>| Steering {
        method: "t".into(),
        kind: SteeringKind::Additive {
            vectors: vec![(10, vector)],
        },
        positions: steer_model::Positions::PromptEndOnward,
        params: BTreeMap::new(),
        metadata: BTreeMap::new(),
    };
    let zero = steering(vec![0.0; 576]);
    let huge = steering((0..576).map(|i| if i % 2 == 0 { 400.0 } else { -400.0 }).collect());

    // TruthfulQA by likelihood: the unsteered answers equal an independent
    // scoring of each whole sequence (no shared prompt pass).
    let (root, task) = tiny_task("truthfulqa", 6, "");
    let measure = |kept: Option<&steer_suites::unsteered::UnsteeredCache>| {
        steer_suites::tinybench::capability(
            &loaded.model,
            &loaded.tokenizer,
            &task,
            &[zero.clone(), huge.clone()],
            1.0,
            8,
            kept,
        )
        .unwrap()
    };
    let c = measure(None);
    assert_eq!(c[0], c[1], "a zero vector leaves accuracy unchanged");
    // Kept unsteered answers are measured once and give the same numbers.
    let kept = steer_suites::unsteered::UnsteeredCache::new();
    for _ in 0..2 {
        assert_eq!(measure(Some(&kept)), c);
        assert_eq!(kept.len(), 1);
    }
    let items = steer_suites::tinybench::read_anchor_items(&task.file("anchors.jsonl")).unwrap();
    let mut right = 0;
    for item in &items {
        let prompt = loaded
            .tokenizer
            .encode(&steer_suites::tinybench::question_prompt(&item.question), false)
            .unwrap();
        let scores: Vec<f64> = item
            .choices
            .iter()
            .map(|choice| {
                let cont = loaded.tokenizer.encode(&format!(" {}", choice.trim()), false).unwrap();
                let row = [prompt.clone(), cont].concat();
                steer_suites::scoring::row_log_likelihoods(&loaded.model, None, &[row], &[prompt.len()], &[]).unwrap()
                    [0]
            })
            .collect();
        let best = (0..scores.len()).fold(0, |b, k| if scores[k] > scores[b] { k } else { b });
        right += usize::from(best == item.answer);
    }
    assert_eq!(c[0].accuracy, right as f64 / items.len() as f64);
    std::fs::remove_dir_all(&root).unwrap();

    // GSM8K by generation, with short answers: the pipeline runs and counts.
    let (root, task) = tiny_task("gsm8k", 3, "");
    let mut task = task;
    task.spec.max_new_tokens = Some(4);
    let c = steer_suites::tinybench::capability(&loaded.model, &loaded.tokenizer, &task, &[zero, huge], 1.0, 8, None)
        .unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(c[0], c[1]);
    for x in &c {
        assert_eq!(x.n, 3);
        assert!((0.0..=1.0).contains(&x.accuracy));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn mwe_persona_slice_with_the_default_model() {
    let loaded = default_model();
    let catalog = Catalog::open(&default_root()).unwrap();
    let task = catalog.select("mwe", Some("narcissism")).unwrap()[0];
    let subject = subject(&loaded);
    let opts = EvalOptions {
        layers: Some(vec![8]),
        multipliers: Some(vec![-2.0, 0.0, 2.0]),
        limit: Some(4),
        resamples: 100,
        ..EvalOptions::default()
    };
    let method = steer_methods::find("caa").unwrap();
    let report = evaluate_mcq(&subject, task, method.as_ref(), &opts).unwrap();
    assert_eq!(report.sizes, [4, 4, 4]);
    assert_eq!((report.chosen_layer, report.chosen_multiplier), (Some(8), 2.0));
    // Yes/No statements asked as A/B items have an open-ended form: " Yes" vs " No" as the reply.
    let e = report.effects.as_ref().unwrap();
    assert_eq!(e.open.n, 4);
    for t in &report.test {
        assert!((0.0..=1.0).contains(&t.p_matching.mean) && t.logit_diff.n == 4);
    }
    assert!(report.rows.iter().all(|r| r.task == "narcissism" || r.suite != "mwe"));
}
