//! The VADER scorer against the reference package's scores
//! (`tools/make_vader_reference.py`), the shipped lexicon's checksum, and the
//! errors of a malformed lexicon.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use steer_suites::vader::Vader;
use steer_suites::{SuiteError, sha256_file};

const TOLERANCE: f64 = 1e-4;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lexicon_path() -> PathBuf {
    repo_root().join("suites/sentiment/vader_lexicon.txt")
}

#[derive(Deserialize)]
struct Reference {
    package: String,
    lexicon_sha256: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    neg: f64,
    neu: f64,
    pos: f64,
    compound: f64,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vader_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn scores_match_reference_package() {
    let reference = reference();
    assert_eq!(reference.package, "vaderSentiment 3.3.2");
    assert!(reference.cases.len() >= 150, "{} cases", reference.cases.len());
    assert_eq!(reference.lexicon_sha256, sha256_file(&lexicon_path()).unwrap());
    let vader = Vader::load(&lexicon_path()).unwrap();

    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    for case in &reference.cases {
        let got = vader.polarity_scores(&case.text);
        let deltas = [
            (got.neg - case.neg).abs(),
            (got.neu - case.neu).abs(),
            (got.pos - case.pos).abs(),
            (got.compound - case.compound).abs(),
        ];
        let delta = deltas.into_iter().fold(0.0, f64::max);
        worst = worst.max(delta);
        if delta > TOLERANCE {
            failures.push(format!(
                "{:?}: got neg {} neu {} pos {} compound {}, want {} {} {} {}",
                case.text, got.neg, got.neu, got.pos, got.compound, case.neg, case.neu, case.pos, case.compound
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        reference.cases.len(),
        failures.join("\n")
    );
    println!("{} cases, max |delta| {worst:e}", reference.cases.len());
}

#[test]
fn shipped_lexicon_matches_checksum() {
    let sums = std::fs::read_to_string(repo_root().join("suites/sentiment/SHA256SUMS")).unwrap();
    let want = sums
        .lines()
        .find_map(|line| {
            let (sum, name) = line.split_once(char::is_whitespace)?;
            (name.trim_start_matches([' ', '*']) == "vader_lexicon.txt").then_some(sum)
        })
        .expect("SHA256SUMS lists vader_lexicon.txt");
    assert_eq!(sha256_file(&lexicon_path()).unwrap(), want);
    assert!(Vader::load(&lexicon_path()).unwrap().len() > 7000);
}

#[test]
fn malformed_lexicon_line_names_file_and_line() {
    let path = std::env::temp_dir().join(format!("steerbench-vader-{}.txt", std::process::id()));
    std::fs::write(&path, "good\t1.9\t0.9\t[2, 2]\n\nbad -2.5 0.7\n").unwrap();
    let err = Vader::load(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    match &err {
        SuiteError::Data { path: p, line, .. } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 3);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().starts_with(&format!("{}:3: ", path.display())), "{err}");

    let err = Vader::parse("good\t1.9\nbad\tworse\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.message.contains("worse"), "{}", err.message);
}

#[test]
fn missing_lexicon_is_an_io_error() {
    let err = Vader::load(Path::new("/nonexistent/vader_lexicon.txt")).unwrap_err();
    assert!(matches!(err, SuiteError::Io { .. }), "{err}");
}
