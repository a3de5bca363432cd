//! The leaderboard built from the fixture runs in `tests/fixtures/runs`:
//! values computed by hand, sorting, plots, determinism, `check` and errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use steer_leaderboard::{Error, build, check};

/// A fresh results folder named `name` holding a copy of the fixture runs.
fn results(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("leaderboard").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs"),
        &dir.join("runs"),
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir`, by path relative to it.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The leaderboard CSV as (header, rows of column → cell).
fn table(dir: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut reader = csv::Reader::from_path(dir.join("leaderboard.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect();
    (header, rows)
}

#[test]
fn columns_hold_the_hand_computed_values_in_leaderboard_order() {
    let dir = results("values");
    let summary = build(&dir).unwrap();
    assert_eq!(summary.runs, 6);
    assert_eq!(summary.rows, 6);
    let (header, rows) = table(&dir);
    assert_eq!(
        header,
        [
            "model",
            "method",
            "suite",
            "task",
            "metric",
            "verdict",
            "chosen_layer",
            "chosen_multiplier",
            "relative_strength",
            "raw_multiplier",
            "fluency_constrained",
            "unsteered",
            "steered",
            "steered_ci_low",
            "steered_ci_high",
            "effect",
            "effect_ci_low",
            "effect_ci_high",
            "p_unsteered",
            "p_holm",
            "min_detectable_effect",
            "random_effect",
            "effect_vs_random",
            "p_random",
            "effect_vs_prompting",
            "p_prompting",
            "anti_steerable_fraction",
            "random_anti_steerable_fraction",
            "steerability",
            "letter_bias",
            "delta_letter_bias",
            "unconstrained_layer",
            "unconstrained_multiplier",
            "unconstrained_effect",
            "mcq_minus_open_effect",
            "ood_effect_system_towards",
            "ood_effect_system_away",
            "ood_effect_user_towards",
            "ood_effect_user_away",
            "ood_effect_multi_turn",
            "ood_mean_effect",
            "delta_perplexity",
            "perplexity_ratio",
            "delta_tinybench_accuracy",
            "delta_acc_arc",
            "delta_acc_mmlu",
            "n_test",
            "seed",
            "task_version",
            "protocol",
        ]
    );
    let order: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["method"].as_str(), r["task"].as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("prompting", "antonym"),
            ("caa", "antonym"),
            ("probe", "refusal"),
            ("caa", "sycophancy"),
            ("prompting", "sycophancy"),
            ("caa", "positivity"),
        ]
    );
    let expect = |row: &BTreeMap<String, String>, cells: &[(&str, &str)]| {
        for (column, value) in cells {
            assert_eq!(row[*column], *value, "{column} of {} on {}", row["method"], row["task"]);
        }
    };
    // caa on sycophancy: logit_diff 0.5 unsteered, 2.0 steered at multiplier 1,
    // 0.75 with the random vector; prompting's effect there is 1.0 - 0.5.
    expect(
        &rows[3],
        &[
            ("model", "tiny"),
            ("suite", "mcq"),
            ("metric", "logit_diff"),
            ("chosen_layer", "3"),
            ("chosen_multiplier", "1"),
            ("unsteered", "0.500000"),
            ("steered", "2.000000"),
            ("steered_ci_low", "1.500000"),
            ("steered_ci_high", "2.500000"),
            ("effect", "1.500000"),
            ("random_effect", "0.250000"),
            ("effect_vs_random", "1.250000"),
            ("effect_vs_prompting", "1.000000"),
            ("anti_steerable_fraction", "0.100000"),
            ("steerability", "1.250000"),
            ("mcq_minus_open_effect", "1.125000"),
            ("delta_perplexity", "2.000000"),
            ("delta_tinybench_accuracy", "-0.030000"),
            ("delta_acc_arc", "-0.040000"),
            ("delta_acc_mmlu", "-0.020000"),
            ("n_test", "10"),
            ("seed", "7"),
            ("task_version", "2"),
            // A protocol-1 run: no paired columns, and a verdict that says so.
            ("protocol", "1"),
            ("verdict", "rerun (protocol 1)"),
            ("effect_ci_low", ""),
            ("p_unsteered", ""),
            ("letter_bias", ""),
            ("perplexity_ratio", "1.200000"),
        ],
    );
    // probe on refusal, a protocol-2 run: six items whose paired differences
    // against the unsteered model are 1, 0.5, 1.5, 2, 1, 0.5 and against the
    // random steering 0.75, 0.75, 1, 2, 0.75, 0.5 — all positive, so of the
    // 2^6 sign patterns only the observed one and its negation are as
    // extreme: p = 2/64 for both. It is the only row with a p-value, so Holm
    // leaves it alone, and it stays within the fluency bound: it steers.
    expect(
        &rows[2],
        &[
            ("verdict", "steers"),
            ("chosen_layer", "4"),
            ("chosen_multiplier", "0.5"),
            ("relative_strength", "0.500000"),
            ("raw_multiplier", "12.500000"),
            ("fluency_constrained", "1"),
            ("unsteered", "0.166667"),
            ("steered", "1.250000"),
            ("effect", "1.083333"),
            ("p_unsteered", "0.031250"),
            ("p_holm", "0.031250"),
            ("effect_vs_random", "0.958333"),
            ("p_random", "0.031250"),
            ("anti_steerable_fraction", "0.166667"),
            ("random_anti_steerable_fraction", "0.500000"),
            ("letter_bias", "0.500000"),
            ("delta_letter_bias", "0.100000"),
            ("unconstrained_layer", "4"),
            ("unconstrained_multiplier", "1"),
            ("unconstrained_effect", "2.000000"),
            // Under the five prompt shifts every item moves by 0.1, 0.2, …, 0.5.
            ("ood_effect_system_towards", "0.100000"),
            ("ood_effect_system_away", "0.200000"),
            ("ood_effect_user_towards", "0.300000"),
            ("ood_effect_user_away", "0.400000"),
            ("ood_effect_multi_turn", "0.500000"),
            ("ood_mean_effect", "0.300000"),
            ("perplexity_ratio", "1.100000"),
            ("delta_tinybench_accuracy", "-0.010000"),
            ("n_test", "6"),
            ("protocol", "2"),
        ],
    );
    // Its interval is the bootstrap of the six differences with the run's seed.
    let d = [1.0, 0.5, 1.5, 2.0, 1.0, 0.5];
    let e = steer_stats::bootstrap(&d, 1000, 5);
    assert_eq!(rows[2]["effect_ci_low"], format!("{:.6}", e.low));
    assert_eq!(rows[2]["effect_ci_high"], format!("{:.6}", e.high));
    assert!(0.5 <= e.low && e.low < e.mean && e.mean < e.high && e.high <= 2.0);
    // The smallest detectable effect: (z₀.₉₇₅ + z₀.₈) · sd / √6 of the same differences.
    assert_eq!(rows[2]["min_detectable_effect"], "0.668543");
    assert_eq!(
        rows[2]["min_detectable_effect"],
        format!("{:.6}", steer_stats::min_detectable_effect(&d))
    );
    // prompting on sycophancy: no single layer, no open-ended rows, one capability task.
    expect(
        &rows[4],
        &[
            ("chosen_layer", ""),
            ("chosen_multiplier", "1"),
            ("steered", "1.000000"),
            ("effect", "0.500000"),
            ("random_effect", "0.125000"),
            ("effect_vs_random", "0.375000"),
            ("effect_vs_prompting", "0.000000"),
            ("anti_steerable_fraction", "0.000000"),
            ("mcq_minus_open_effect", ""),
            ("delta_perplexity", "0.125000"),
            ("delta_tinybench_accuracy", "-0.010000"),
            ("delta_acc_arc", ""),
            ("delta_acc_mmlu", "-0.010000"),
        ],
    );
    // caa on antonym: top1, chosen multiplier 4; prompting's effect is 0.8 - 0.1.
    expect(
        &rows[1],
        &[
            ("metric", "top1"),
            ("chosen_layer", "2"),
            ("chosen_multiplier", "4"),
            ("unsteered", "0.100000"),
            ("steered", "0.700000"),
            ("steered_ci_low", "0.575000"),
            ("steered_ci_high", "0.825000"),
            ("effect", "0.600000"),
            ("random_effect", "0.050000"),
            ("effect_vs_random", "0.550000"),
            ("effect_vs_prompting", "-0.100000"),
            ("steerability", ""),
            ("delta_perplexity", "0.500000"),
            ("delta_tinybench_accuracy", ""),
            ("n_test", "20"),
            ("task_version", "1"),
        ],
    );
    expect(
        &rows[0],
        &[
            ("effect", "0.700000"),
            ("effect_vs_random", "0.700000"),
            ("delta_perplexity", ""),
        ],
    );
    // A suite with metrics of its own: the first steered test metric (logprob_diff), not
    // the unsteered vader_compound row before it; no prompting run, so no comparison.
    expect(
        &rows[5],
        &[
            ("suite", "sentiment"),
            ("metric", "logprob_diff"),
            ("chosen_multiplier", "2"),
            ("unsteered", "-0.250000"),
            ("steered", "0.875000"),
            ("effect", "1.125000"),
            ("random_effect", "0.250000"),
            ("effect_vs_random", "0.875000"),
            ("effect_vs_prompting", ""),
            ("anti_steerable_fraction", "0.250000"),
            ("steerability", "0.500000"),
            ("n_test", "16"),
        ],
    );
}

#[test]
fn markdown_and_plots_are_written() {
    let dir = results("outputs");
    let summary = build(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("LEADERBOARD.md")).unwrap();
    assert!(md.contains("[README.md](README.md)"), "{md}");
    let suites: Vec<&str> = md.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(suites, ["## icl", "## mcq", "## sentiment", "## Across rows"]);
    assert!(md.contains("| tiny | caa | sycophancy | logit_diff | rerun (protocol 1) | 3 | 1 | – | 0.500 | 1.500 | – | 1.250 | 1.000 | 0.100 | – | – | – | 1.200 | -0.030 |"), "{md}");
    assert!(
        md.contains("| tiny | probe | refusal | logit_diff | steers | 4 | 0.5 | 0.500 | 0.167 | 1.083 ["),
        "{md}"
    );
    // The summary across rows counts verdicts and compares ID and OOD effects
    // where a run has them (only the protocol-2 probe run: too few for r).
    let across = &md[md.find("## Across rows").expect("a summary section")..];
    assert!(across.contains("1 steers"), "{across}");
    assert!(across.contains("rerun (protocol 1)"), "{across}");
    assert!(
        across.contains("over 1 rows, Pearson's r between `effect` and `ood_mean_effect` is –; the two have the same sign in 1 of them."),
        "{across}"
    );

    let plots: Vec<String> = std::fs::read_dir(dir.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        plots,
        [
            "behaviours_logit_diff.svg",
            "dose_icl_antonym.svg",
            "dose_mcq_refusal.svg",
            "dose_mcq_sycophancy.svg",
            "dose_sentiment_positivity.svg",
            "pareto_logit_diff.svg",
            "pareto_top1.svg",
            "steerability_mcq_refusal.svg",
            "steerability_mcq_sycophancy.svg",
        ]
    );
    assert_eq!(summary.written.len(), plots.len() + 3);
    let dose = std::fs::read_to_string(dir.join("plots/dose_mcq_sycophancy.svg")).unwrap();
    assert!(dose.starts_with("<svg"));
    for label in ["caa", "prompting", "unsteered", "random vector"] {
        assert!(dose.contains(&format!("\n{label}\n</text>")), "{label}");
    }
    // One effect/damage plot per headline metric: logit differences and accuracies do not share an axis.
    let pareto = std::fs::read_to_string(dir.join("plots/pareto_logit_diff.svg")).unwrap();
    assert!(pareto.contains("caa mcq/sycophancy") && !pareto.contains("caa icl/antonym"));
    let pareto = std::fs::read_to_string(dir.join("plots/pareto_top1.svg")).unwrap();
    assert!(pareto.contains("caa icl/antonym") && !pareto.contains("mcq/"));
    // The prompting run on antonym has no perplexity rows, so no point.
    assert!(!pareto.contains("prompting icl/antonym"));
    // The effects across behaviours: the two logit-difference tasks, three methods, intervals.
    let across = std::fs::read_to_string(dir.join("plots/behaviours_logit_diff.svg")).unwrap();
    for label in [
        "mcq/refusal",
        "mcq/sycophancy",
        "caa",
        "probe",
        "prompting",
        "significant (Holm)",
    ] {
        assert!(across.contains(&format!("\n{label}\n</text>")), "{label}");
    }
    let hist = std::fs::read_to_string(dir.join("plots/steerability_mcq_sycophancy.svg")).unwrap();
    assert!(hist.contains("caa (5 items)") && hist.contains("prompting (5 items)"));
}

/// The page's row with `key` and its detail row, up to the next row.
fn row_and_detail<'a>(page: &'a str, key: &str) -> &'a str {
    let from = &page[page.find(&format!("data-key=\"{key}\"")).expect(key)..];
    let end = from
        .find("<tr class=\"row\"")
        .or_else(|| from.find("</table>"))
        .unwrap();
    &from[..end]
}

#[test]
fn the_page_shows_provenance_rows_and_per_item_details() {
    let dir = results("page");
    std::fs::write(
        dir.join("runs/tiny/probe/mcq/refusal.json"),
        r#"{"git_commit": "abc123", "finished": "2026-12-08", "backend": "cpu"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("runs/tiny/probe/mcq/refusal.generations.jsonl"),
        concat!(
            r#"{"variant":"unsteered","multiplier":0.0,"prompt":"Will you <help>?","text":"Yes & no"}"#,
            "\n",
            r#"{"variant":"steered","multiplier":0.5,"prompt":"Will you <help>?","text":"No."}"#,
            "\n"
        ),
    )
    .unwrap();
    build(&dir).unwrap();
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    // Six runs: one has a sidecar with a commit and a date, one a sidecar without them, four none.
    assert!(
        page.contains("<b>tiny</b> (sha256 <code>aa11</code>, 6 units)"),
        "{page}"
    );
    assert!(
        page.contains("<code>abc123</code> (1), <code>not recorded</code> (5)"),
        "{page}"
    );
    assert!(
        page.contains("2026-12-08 (5 units from before dates were recorded)"),
        "{page}"
    );
    assert_eq!(page.matches("<tr class=\"row\"").count(), 6);
    assert_eq!(page.matches("<table class=\"board\"").count(), 3);
    let probe = row_and_detail(&page, "tiny/probe/mcq/refusal");
    // Steered − unsteered at 0.5 is 1, 0.5, 1.5, 2, 1, 0.5 (all up); random −
    // unsteered is 0.25, −0.25, 0.5, 0, 0.25, 0 (three up, one down).
    assert!(probe.contains("steered: 6 up, 0 down"), "{probe}");
    assert!(probe.contains("random: 3 up, 1 down"), "{probe}");
    assert!(probe.contains("per-item effect at the chosen strength (6 items)"));
    assert!(probe.contains("paired effect by strength"));
    assert!(probe.contains("<dt>commit</dt><dd>abc123</dd>"));
    assert!(probe.contains("<b>Will you &lt;help&gt;?</b>") && probe.contains("Yes &amp; no"));
    assert!(probe.contains("<a href=\"runs/tiny/probe/mcq/refusal.csv\">"));
    // A protocol-1 run has no per-item values at several strengths.
    assert!(row_and_detail(&page, "tiny/caa/mcq/sycophancy").contains("rerun this unit with protocol 2"));
    // The page is part of what `check` compares.
    assert!(check(&dir).unwrap());
    std::fs::write(dir.join("index.html"), page.replace("abc123", "abc124")).unwrap();
    assert!(!check(&dir).unwrap());
}

#[test]
fn malformed_sidecars_and_generations_name_the_file() {
    let dir = results("bad-sidecar");
    let sidecar = dir.join("runs/tiny/probe/mcq/refusal.json");
    std::fs::write(&sidecar, "{\"git_commit\": ").unwrap();
    let (path, line, message) = input_error(&dir);
    assert_eq!((path, line), (sidecar.clone(), Some(1)));
    assert!(message.contains("not JSON"), "{message}");
    std::fs::write(&sidecar, "[1, 2]").unwrap();
    assert!(input_error(&dir).2.contains("not a JSON object"));
    std::fs::remove_file(&sidecar).unwrap();
    let generations = dir.join("runs/tiny/probe/mcq/refusal.generations.jsonl");
    std::fs::write(
        &generations,
        "{\"variant\":\"unsteered\",\"prompt\":\"p\",\"text\":\"t\"}\n{\"variant\": 3}\n",
    )
    .unwrap();
    let (path, line, message) = input_error(&dir);
    assert_eq!((path, line), (generations, Some(2)));
    assert!(message.contains("`prompt`, `variant` and `text`"), "{message}");
}

#[test]
fn non_finite_values_and_sidecars_that_contradict_their_rows_are_refused() {
    let dir = results("nan");
    let csv = dir.join("runs/tiny/probe/mcq/refusal.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    let (head, rest) = original.split_once('\n').unwrap();
    let (first, tail) = rest.split_once('\n').unwrap();
    let mut fields: Vec<&str> = first.split(',').collect();
    fields[9] = "NaN";
    std::fs::write(&csv, format!("{head}\n{}\n{tail}", fields.join(","))).unwrap();
    let (path, line, message) = input_error(&dir);
    assert_eq!((path, line), (csv.clone(), Some(2)));
    assert!(message.contains("`value` is NaN"), "{message}");
    std::fs::write(&csv, &original).unwrap();

    let items = dir.join("runs/tiny/probe/mcq/refusal.items.csv");
    let text = std::fs::read_to_string(&items).unwrap();
    std::fs::write(
        &items,
        text.replacen("0,unsteered,logit_diff,0,0.0", "0,unsteered,logit_diff,0,inf", 1),
    )
    .unwrap();
    let (path, line, message) = input_error(&dir);
    assert_eq!((path, line), (items.clone(), Some(2)));
    assert!(message.contains("`value` is inf"), "{message}");
    std::fs::write(&items, &text).unwrap();

    let sidecar = dir.join("runs/tiny/probe/mcq/refusal.json");
    for (json, field) in [
        (r#"{"method": "caa"}"#, "field `method` is `caa`"),
        (r#"{"task": "mcq/sycophancy"}"#, "field `task` is `mcq/sycophancy`"),
        (r#"{"model_sha256": "ffff"}"#, "field `model_sha256` is `ffff`"),
        (r#"{"rows": 3}"#, "field `rows` is 3"),
    ] {
        std::fs::write(&sidecar, json).unwrap();
        let (path, _, message) = input_error(&dir);
        assert_eq!(path, sidecar);
        assert!(message.contains(field) && message.contains("refusal.csv"), "{message}");
    }
    let rows = original.lines().count() - 1;
    std::fs::write(
        &sidecar,
        format!(r#"{{"method": "probe", "task": "mcq/refusal", "model_sha256": "aa11", "rows": {rows}}}"#),
    )
    .unwrap();
    build(&dir).unwrap();
}

#[test]
fn building_twice_gives_identical_bytes() {
    let a = results("twice-a");
    let b = results("twice-b");
    build(&a).unwrap();
    let first = snapshot(&a);
    build(&a).unwrap();
    assert_eq!(first, snapshot(&a));
    build(&b).unwrap();
    assert_eq!(first, snapshot(&b));
}

#[test]
fn check_notices_edits_missing_and_stale_files() {
    let dir = results("check");
    assert!(!check(&dir).unwrap(), "nothing built yet");
    build(&dir).unwrap();
    assert!(check(&dir).unwrap());

    let csv = dir.join("leaderboard.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(&csv, original.replace("1.250000", "1.250001")).unwrap();
    assert!(!check(&dir).unwrap(), "an edited number");
    std::fs::write(&csv, &original).unwrap();
    assert!(check(&dir).unwrap());

    std::fs::remove_file(dir.join("plots/pareto_top1.svg")).unwrap();
    assert!(!check(&dir).unwrap(), "a missing plot");
    build(&dir).unwrap();

    let stale = dir.join("plots/dose_mcq_gone.svg");
    std::fs::write(&stale, "<svg/>").unwrap();
    assert!(!check(&dir).unwrap(), "a plot no run produces");
    let summary = build(&dir).unwrap();
    assert_eq!(summary.removed, std::slice::from_ref(&stale));
    assert!(!stale.exists());
    assert!(check(&dir).unwrap());

    // A new run makes the committed files stale.
    std::fs::remove_file(dir.join("runs/tiny/caa/sentiment/positivity.csv")).unwrap();
    assert!(!check(&dir).unwrap(), "a removed run");
}

#[test]
fn no_runs_give_an_empty_leaderboard() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("leaderboard/empty");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let summary = build(&dir).unwrap();
    assert_eq!((summary.runs, summary.rows), (0, 0));
    let (header, rows) = table(&dir);
    assert_eq!(header.len(), 48);
    assert!(rows.is_empty());
    let md = std::fs::read_to_string(dir.join("LEADERBOARD.md")).unwrap();
    assert!(md.contains("No runs have been recorded yet."));
    assert!(check(&dir).unwrap());
}

fn input_error(dir: &Path) -> (PathBuf, Option<u64>, String) {
    match build(dir) {
        Err(Error::Input { path, line, message }) => (path, line, message),
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn a_malformed_value_names_file_line_and_column() {
    let dir = results("bad-value");
    let file = dir.join("runs/tiny/caa/icl/antonym.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = lines[1].replacen(",top1,0.1,", ",top1,one,", 1);
    assert!(lines[1].contains("one"), "{}", lines[1]);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (path, line, message) = input_error(&dir);
    assert_eq!(path, file);
    assert_eq!(line, Some(2));
    assert!(message.contains("`value`"), "{message}");
    let shown = build(&dir).unwrap_err().to_string();
    assert!(shown.contains("antonym.csv:2:"), "{shown}");
}

#[test]
fn a_wrong_header_or_short_row_names_the_file() {
    let dir = results("bad-header");
    let file = dir.join("runs/tiny/prompting/icl/antonym.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("ci_low,ci_high", "low,high", 1)).unwrap();
    let (path, line, message) = input_error(&dir);
    assert_eq!((path, line), (file.clone(), Some(1)));
    assert!(message.contains("header"), "{message}");

    let mut lines: Vec<&str> = text.lines().collect();
    lines[3] = "tiny,prompting,steered";
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (path, line, _) = input_error(&dir);
    assert_eq!((path, line), (file, Some(4)));
}

#[test]
fn a_malformed_items_file_names_the_file() {
    let dir = results("bad-items");
    let file = dir.join("runs/tiny/caa/mcq/sycophancy.items.csv");
    std::fs::write(&file, "item,variant,multiplier,value\n0,steered_slope,,fast\n").unwrap();
    let (path, line, message) = input_error(&dir);
    assert_eq!((path, line), (file, Some(2)));
    assert!(message.contains("`value`"), "{message}");
}

#[test]
fn runs_without_one_choice_or_repeated_are_refused() {
    let dir = results("no-choice");
    let file = dir.join("runs/tiny/prompting/icl/antonym.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains(",choice,")).collect();
    std::fs::write(&file, kept.join("\n") + "\n").unwrap();
    let (path, _, message) = input_error(&dir);
    assert_eq!(path, file);
    assert!(message.contains("choice"), "{message}");

    let dir = results("repeated");
    let copy = dir.join("runs/tiny/prompting/icl/antonym-again.csv");
    std::fs::copy(dir.join("runs/tiny/prompting/icl/antonym.csv"), &copy).unwrap();
    let (path, _, message) = input_error(&dir);
    // Runs are read in path order: the copy comes first, the original repeats it.
    assert_eq!(path, dir.join("runs/tiny/prompting/icl/antonym.csv"));
    assert!(message.contains(&copy.display().to_string()), "{message}");
}

#[test]
fn a_truncated_or_incomplete_items_file_is_refused() {
    let dir = results("truncated-items");
    let file = dir.join("runs/tiny/probe/mcq/refusal.items.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    // Cut in the middle of the last line.
    std::fs::write(&file, &text[..text.len() - 3]).unwrap();
    let (path, line, message) = input_error(&dir);
    assert_eq!((path, line), (file.clone(), Some(text.lines().count() as u64)));
    assert!(message.contains("truncated"), "{message}");
    // Cut at a line end: an item of a variant is missing.
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("5,steered,logit_diff"))
        .collect();
    std::fs::write(&file, kept.join("\n") + "\n").unwrap();
    let (path, _, message) = input_error(&dir);
    assert_eq!(path, file);
    assert!(
        message.contains("item 5 of steered/logit_diff at multiplier 0.5 is missing"),
        "{message}"
    );
    // A repeated item.
    std::fs::write(&file, text.clone() + "0,random,logit_diff,0.5,3\n").unwrap();
    let (_, _, message) = input_error(&dir);
    assert!(
        message.contains("item 0 of random/logit_diff appears twice"),
        "{message}"
    );
}

#[test]
fn a_run_without_a_random_baseline_sorts_last_in_its_task() {
    let dir = results("no-random");
    let file = dir.join("runs/tiny/prompting/icl/antonym.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains(",random,")).collect();
    std::fs::write(&file, kept.join("\n") + "\n").unwrap();
    build(&dir).unwrap();
    let (_, rows) = table(&dir);
    let antonym: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| r["task"] == "antonym")
        .map(|r| {
            (
                r["method"].as_str(),
                r["random_effect"].as_str(),
                r["effect_vs_random"].as_str(),
            )
        })
        .collect();
    assert_eq!(antonym, [("caa", "0.050000", "0.550000"), ("prompting", "", "")]);
}
