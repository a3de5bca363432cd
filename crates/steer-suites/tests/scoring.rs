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
    let prefix = model.shared_prefix(&[3]).unwrap();
    let after = row_log_likelihoods(&model, Some(&prefix), &[vec![9, 27, 81, 5]], &[1], &[]).unwrap();
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

#[test]
fn open_margins_steer_the_answer_tokens() {
    use std::collections::BTreeMap;
    use steer_methods::{Steering, SteeringKind};
    use steer_model::{Edit, Positions};
    use steer_suites::open_ended::{OpenTokens, open_margins};

    let model = tiny();
    let item = OpenTokens {
        prompt: vec![4, 8, 15, 16],
        matching: vec![23, 42, 7],
        other: vec![90, 3],
    };
    let vector: Vec<f32> = (0..32).map(|i| (i as f32 * 0.7).cos()).collect();
    let steering = Steering {
        method: "t".into(),
        kind: SteeringKind::Additive {
            vectors: vec![(1, vector.clone())],
        },
        positions: Positions::PromptEndOnward,
        params: BTreeMap::new(),
        metadata: BTreeMap::new(),
    };
    let got = open_margins(&model, std::slice::from_ref(&item), &[steering], &[0.0, 2.0]).unwrap();
    let direct = |m: f32, answer: &[u32]| -> f64 {
        let edit = Edit::AddVector {
            layer: 1,
            vector: vector.iter().map(|x| x * m).collect(),
            positions: Positions::From(item.prompt.len() - 1),
            multipliers: Vec::new(),
        };
        let row = [item.prompt.as_slice(), answer].concat();
        row_log_likelihoods(&model, None, &[row], &[item.prompt.len()], &[edit]).unwrap()[0]
    };
    for (k, m) in [0.0f32, 2.0].into_iter().enumerate() {
        let want = direct(m, &item.matching) - direct(m, &item.other);
        assert!(
            (got[0][k][0] as f64 - want).abs() < 1e-3,
            "m={m}: {} vs {want}",
            got[0][k][0]
        );
    }
    assert!(
        (got[0][1][0] - got[0][0][0]).abs() > 1e-3,
        "steering the answer changed nothing"
    );
}

#[test]
fn open_margins_handle_steerings_on_the_whole_prompt() {
    use std::collections::BTreeMap;
    use steer_methods::{Steering, SteeringKind};
    use steer_model::Positions;
    use steer_suites::open_ended::{OpenTokens, open_margins};

    let model = tiny();
    let item = OpenTokens {
        prompt: vec![4, 8, 15, 16],
        matching: vec![23, 42],
        other: vec![90, 3],
    };
    let everywhere = Steering {
        method: "t".into(),
        kind: SteeringKind::NormPreserving {
            vectors: vec![(0, vec![0.5; 32]), (2, vec![-0.25; 32])],
        },
        positions: Positions::All,
        params: BTreeMap::new(),
        metadata: BTreeMap::new(),
    };
    let prompt = Steering {
        kind: SteeringKind::Prompt {
            positive: vec![1, 2, 3],
            negative: vec![5],
        },
        ..everywhere.clone()
    };
    let got = open_margins(&model, &[item], &[everywhere, prompt], &[-1.0, 0.0, 1.0]).unwrap();
    for s in 0..2 {
        assert_eq!(got[s][1], got[0][1], "multiplier 0 is the same unsteered model");
        assert_ne!(got[s][0], got[s][1]);
        assert_ne!(got[s][2], got[s][1]);
    }
}
