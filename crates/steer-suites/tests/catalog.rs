//! The committed suites: every task opens, its data is what `SHA256SUMS`
//! lists, every item parses, and bad rows are one-line errors naming file and line.

use std::path::{Path, PathBuf};

use steer_suites::ab::read_items;
use steer_suites::spec::{Catalog, Task, default_root};
use steer_suites::{SuiteError, sha256_file};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steer-suites-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_task_opens_and_its_data_matches_the_checksums() {
    let root = default_root();
    let catalog = Catalog::open(&root).unwrap();
    assert!(catalog.tasks.len() >= 33);
    let tiny = catalog.select("tinybench", None).unwrap();
    assert_eq!(tiny.len(), 5);
    for task in tiny {
        let path = task.file(&task.spec.test);
        let weights: Vec<f64> = if task.spec.format == steer_suites::spec::Format::AnchorGen {
            let items = steer_suites::tinybench::read_gen_items(&path).unwrap();
            items.iter().map(|i| i.weight).collect()
        } else {
            let items = steer_suites::tinybench::read_anchor_items(&path).unwrap();
            items.iter().map(|i| i.weight).collect()
        };
        assert_eq!(weights.len(), 100, "{}", task.id());
        let total: f64 = weights.iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "{}: weights sum to {total}", task.id());
    }
    assert_eq!(catalog.select("mwe", None).unwrap().len(), 28);
    assert_eq!(catalog.select("persona", None).unwrap().len(), 12);
    let sentiment = catalog.select("sentiment", None).unwrap();
    assert_eq!(sentiment.len(), 1);
    let openings = steer_suites::sentiment::read_prompts(&sentiment[0].file(&sentiment[0].spec.test)).unwrap();
    assert!(openings.len() >= 200);
    let words = steer_suites::sentiment::read_words(&sentiment[0].file("words.tsv")).unwrap();
    let vader = steer_suites::vader::Vader::load(&root.join("sentiment/vader_lexicon.txt")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (pos, neg) in words.train.iter().chain(&words.eval) {
        // Every word carries VADER valence of its column's sign, and none repeats.
        assert!(vader.polarity_scores(pos).compound > 0.0, "{pos}");
        assert!(vader.polarity_scores(neg).compound < 0.0, "{neg}");
        assert!(
            seen.insert(pos.clone()) && seen.insert(neg.clone()),
            "{pos}/{neg} repeats"
        );
    }
    assert_eq!(catalog.select("icl", None).unwrap().len(), 6);
    let mut ids: Vec<String> = catalog.tasks.iter().map(Task::id).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "task ids are unique");
    let mut suites: Vec<&str> = catalog.tasks.iter().map(|t| t.spec.suite.as_str()).collect();
    suites.dedup();
    for suite in suites {
        let dir = root.join(suite);
        assert!(dir.join("LICENSE.upstream").is_file(), "{suite}: LICENSE.upstream");
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        for line in sums.lines() {
            let (sum, file) = line.split_once("  ").unwrap();
            assert_eq!(sha256_file(&dir.join(file)).unwrap(), sum, "{suite}/{file}");
        }
    }
    for task in &catalog.tasks {
        assert!(task.dir.join("README.md").is_file(), "{}: README", task.id());
        if task.spec.format == steer_suites::spec::Format::IclPairs {
            let pairs = steer_suites::icl::read_pairs(&task.file(&task.spec.test)).unwrap();
            assert!(pairs.len() >= 150, "{}", task.id());
        }
        if task.spec.format == steer_suites::spec::Format::CaaAb {
            let [train, val, test] = steer_suites::protocol::ab_splits(task).unwrap();
            assert!(
                train.len() >= 100 && val.len() >= 40 && test.len() >= 40,
                "{}",
                task.id()
            );
        }
    }
    // Selection by suite, tag, task and `all`.
    assert_eq!(catalog.select("mcq", Some("sycophancy")).unwrap().len(), 1);
    assert_eq!(catalog.select("caa", None).unwrap().len(), 7);
    assert!(catalog.select("all", None).unwrap().len() >= 7);
    // The standard profile: every CAA behaviour, eight persona and AI-risk
    // sets, three function tasks and sentiment; the quick tasks among them.
    let standard = catalog.select("standard", None).unwrap();
    let count = |suite: &str| standard.iter().filter(|t| t.spec.suite == suite).count();
    assert_eq!(
        [count("mcq"), count("mwe"), count("icl"), count("sentiment")],
        [7, 8, 3, 1]
    );
    for quick in catalog.select("quick", None).unwrap() {
        assert!(standard.iter().any(|t| t.id() == quick.id()), "{}", quick.id());
    }
    let err = catalog.select("mcq", Some("nope")).unwrap_err().to_string();
    assert!(err.contains("no task 'nope'") && err.contains("sycophancy"), "{err}");
    assert!(catalog.select("nope", None).unwrap_err().to_string().contains("mcq"));
}

#[test]
fn persona_statements_become_balanced_ab_items() {
    let root = default_root();
    let path = root.join("mwe/narcissism/narcissism.jsonl");
    let items = read_items(&path).unwrap();
    let raw: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), raw.len());
    let mut first = 0;
    for (item, r) in items.iter().zip(&raw) {
        let open = steer_suites::open_ended::open_form(item).unwrap();
        assert_eq!(open.question, r["question"].as_str().unwrap().trim_end());
        assert_eq!(open.matching, r["answer_matching_behavior"].as_str().unwrap().trim());
        assert_eq!(open.other, r["answer_not_matching_behavior"].as_str().unwrap().trim());
        assert!(item.question.contains("\n\nChoices:\n (A) "));
        first += usize::from(item.matching == 'A');
    }
    // The letter of the matching answer is close to a coin flip over 1000 items.
    assert!(
        (400..=600).contains(&first),
        "{first} of {} matching answers are (A)",
        items.len()
    );
}

#[test]
fn malformed_sentiment_and_generation_files_name_file_and_line() {
    use steer_suites::sentiment::{read_prompts, read_words};
    let dir = scratch("bad-sentiment");
    let header = "positive\tnegative\tsplit\n";
    let eval = "a\tb\teval\nc\td\teval\ne\tf\teval\ng\th\teval\n";
    let cases: Vec<(&str, String, usize, &str)> = vec![
        ("header.tsv", format!("pos\tneg\n{eval}"), 1, "header"),
        (
            "cells.tsv",
            format!("{header}good\tbad\ttrain\nonly\ttwo\n"),
            3,
            "3 tab-separated cells",
        ),
        (
            "split.tsv",
            format!("{header}good\tbad\ttest\n"),
            2,
            "neither 'train' nor 'eval'",
        ),
        (
            "same.tsv",
            format!("{header}{eval}good\tgood\ttrain\n"),
            6,
            "two different",
        ),
        (
            "few.tsv",
            format!("{header}good\tbad\ttrain\na\tb\teval\n"),
            0,
            "eval pairs",
        ),
    ];
    for (name, text, line, needle) in cases {
        let path = write(&dir, name, &text);
        let msg = read_words(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}:{line}: ", path.display())),
            "{name}: {msg}"
        );
        assert!(msg.contains(needle) && !msg.contains('\n'), "{name}: {msg}");
    }
    let path = write(&dir, "prompts.txt", "The day was\nThe\tnight was\n");
    let msg = read_prompts(&path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:2: ", path.display())) && msg.contains("tab"),
        "{msg}"
    );
    let path = write(&dir, "empty.txt", "\n\n");
    assert!(read_prompts(&path).unwrap_err().to_string().contains("no openings"));
    let path = write(
        &dir,
        "gen.jsonl",
        "{\"weight\": 0.5, \"question\": \"q\", \"answer\": \"12\"}\n{\"weight\": 0.5, \"question\": \"q\", \"answer\": \"twelve\"}\n",
    );
    let msg = steer_suites::tinybench::read_gen_items(&path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:2: ", path.display())) && msg.contains("not a number"),
        "{msg}"
    );
    let path = write(&dir, "open.json", "[{\"question\": \"q\"}, {\"text\": 1}]");
    let msg = steer_suites::generation::read_open_prompts(&path)
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with(&format!("{}:1: ", path.display())), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn malformed_items_name_file_and_line() {
    let dir = scratch("bad-items");
    let good = r#"{"question": "Q?\n (A) yes\n (B) no", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}"#;
    let cases = [
        (
            "missing.json",
            format!("[\n  {good},\n  {{\"question\": \"Q (A) (B)\", \"answer_matching_behavior\": \"(A)\"}}\n]"),
            3,
            "answer_not_matching_behavior",
        ),
        (
            "letters.json",
            format!(
                "[\n{good},\n{good},\n  {{\"question\": \"Q (A) (B)\",\n \"answer_matching_behavior\": \"A\", \"answer_not_matching_behavior\": \"(B)\"}}]"
            ),
            4,
            "not of the form",
        ),
        (
            "choice.json",
            format!(
                "[{good},\n  {{\"question\": \"Q (A) (B)\", \"answer_matching_behavior\": \"(C)\", \"answer_not_matching_behavior\": \"(B)\"}}]"
            ),
            2,
            "not two distinct choices",
        ),
        ("empty.json", "[]".to_string(), 1, "no items"),
        (
            "syntax.json",
            format!("[\n{good},\n{{\"question\": ]"),
            3,
            "not a JSON list",
        ),
        ("type.json", "[\n 3\n]".to_string(), 2, "not an A/B item"),
    ];
    for (name, text, line, needle) in cases {
        let path = write(&dir, name, &text);
        let err = read_items(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SuiteError::Data { .. }), "{name}: {msg}");
        assert!(
            msg.starts_with(&format!("{}:{line}: ", path.display())),
            "{name}: {msg}"
        );
        assert!(msg.contains(needle) && !msg.contains('\n'), "{name}: {msg}");
    }
    assert_eq!(
        read_items(&write(&dir, "ok.json", &format!("[{good}]"))).unwrap().len(),
        1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_specs_are_errors() {
    let root = scratch("bad-spec");
    let task = root.join("mcq").join("t");
    std::fs::create_dir_all(&task).unwrap();
    std::fs::write(task.join("a.json"), "[]").unwrap();
    std::fs::write(task.join("b.json"), "[]").unwrap();
    let spec = |extra: &str| {
        format!(
            "name = \"t\"\nsuite = \"mcq\"\nversion = 1\nformat = \"caa_ab\"\ndescription = \"d\"\ntrain = \"a.json\"\ntest = \"b.json\"\nvalidation_fraction = 0.2\nsplit_seed = 1\n{extra}"
        )
    };
    std::fs::write(task.join("task.toml"), spec("")).unwrap();
    assert!(Task::open(&task).is_ok());
    for (text, needle) in [
        (spec("colour = 1"), "colour"),
        (spec("").replace("caa_ab", "nope"), "nope"),
        (spec("").replace("\"t\"", "\"u\""), "folder"),
        (spec("").replace("0.2", "1.5"), "validation_fraction"),
        (spec("").replace("train = \"a.json\"", "train = \"c.json\""), "missing"),
        (
            spec("").replace("test = \"b.json\"", "test = \"a.json\""),
            "test_fraction",
        ),
        (spec("").replace("train = \"a.json\"\n", ""), "needs a train file"),
        (spec("").replace("caa_ab", "raw_text"), "window"),
    ] {
        std::fs::write(task.join("task.toml"), &text).unwrap();
        let msg = Task::open(&task).unwrap_err().to_string();
        assert!(msg.contains("task.toml") && msg.contains(needle), "{msg}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn malformed_icl_pairs_name_file_and_line() {
    let dir = scratch("bad-icl");
    for (name, text, line, needle) in [
        (
            "missing.json",
            "[\n {\"input\": \"a\", \"output\": \"b\"},\n {\"input\": \"c\"}\n]",
            3,
            "missing field",
        ),
        (
            "empty.json",
            "[{\"input\": \"a\",\n \"output\": \" \"}]",
            1,
            "empty input or output",
        ),
        (
            "extra.json",
            "[\n\n{\"input\": \"a\", \"output\": \"b\", \"x\": 1}]",
            3,
            "unknown field",
        ),
        ("none.json", "[]", 1, "no items"),
    ] {
        let path = write(&dir, name, text);
        let msg = steer_suites::icl::read_pairs(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}:{line}: ", path.display())),
            "{name}: {msg}"
        );
        assert!(msg.contains(needle), "{name}: {msg}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_anchor_items_name_file_and_line() {
    let dir = scratch("bad-anchor");
    let good = r#"{"weight": 0.5, "question": "Q", "choices": ["a", "b"], "answer": 1}"#;
    for (name, text, line, needle) in [
        (
            "answer.jsonl",
            format!("{good}\n{{\"weight\": 0.5, \"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}}\n"),
            2,
            "not one of 2 choices",
        ),
        (
            "weight.jsonl",
            "\n{\"weight\": -1, \"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n".to_string(),
            2,
            "weight",
        ),
        (
            "field.jsonl",
            format!("{good}\n{good}\n{{\"question\": \"Q\"}}\n"),
            3,
            "not an anchor item",
        ),
        ("empty.jsonl", String::new(), 1, "no items"),
    ] {
        let path = write(&dir, name, &text);
        let msg = steer_suites::tinybench::read_anchor_items(&path)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!("{}:{line}: ", path.display())) && msg.contains(needle),
            "{name}: {msg}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
