//! Likelihood scoring on a tiny model, checked against a direct computation
//! from full logits; perplexity windows score every token exactly once.

use steer_model::{Architecture, Backend, ForwardRequest, Llama, LogitsMode, ModelConfig, WeightSource};
use steer_suites::scoring::{log_prob, row_log_likelihoods};

fn tiny() -> Llama {
    let cfg = ModelConfig::tiny(Architecture::Llama);
    Llama::load(&cfg, &WeightSource::random(&cfg, 8), &Backend::Cpu.device().unwrap()).unwrap()
}

#[test]
fn row_likelihoods_match_full_logits() {
    let model = tiny();
    let rows = vec![vec![3u32, 9, 27, 81, 5], vec![7, 11, 13]];
    let from = [2usize, 1];
    let got = row_log_likelihoods(&model, None, &rows, &from, &[]).unwrap();
    for (r, row) in rows.iter().enumerate() {
        let out = model
            .forward(
                std::slice::from_ref(row),
                &ForwardRequest {
                    captures: &[],
                    edits: &[],
                    logits: LogitsMode::All,
                },
            )
            .unwrap();
        let logits = out.logits.unwrap();
        let want: f64 = (from[r]..row.len())
            .map(|j| log_prob(logits.row(&[0, j - 1]), row[j]))
            .sum();
        assert!((got[r] - want).abs() < 1e-4, "row {r}: {} vs {want}", got[r]);
        assert!(want < 0.0);
    }
    // After a shared prefix the continuation is scored in its full context.
    let prefix = model.shared_prefix(&[3, 9]).unwrap();
    let after = row_log_likelihoods(&model, Some(&prefix), &[vec![27, 81, 5]], &[1], &[]).unwrap();
    assert!((after[0] - got[0]).abs() < 1e-4);
    assert!(row_log_likelihoods(&model, None, &rows, &[0, 1], &[]).is_err());
}

#[test]
fn log_prob_is_a_normalised_log_softmax() {
    let logits = [1.0f32, 2.0, 3.0];
    let total: f64 = (0..3).map(|t| log_prob(&logits, t).exp()).sum();
    assert!((total - 1.0).abs() < 1e-12);
    assert!(log_prob(&logits, 2) > log_prob(&logits, 0));
}
