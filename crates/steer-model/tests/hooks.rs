//! Hooks on a tiny random model: batching, captures, every kind of edit, and
//! generation with the KV cache, each checked against a direct computation.

mod common;

use common::tiny::{max_diff, tiny_config, tiny_model};
use steer_model::{
    Architecture, Capture, Edit, ForwardOutput, ForwardRequest, GenerateOptions, HostTensor, LogitsMode, Positions,
    Sampling, Site,
};

fn rows() -> Vec<Vec<u32>> {
    vec![vec![5, 17, 3, 88, 41, 2, 9], vec![60, 1, 33], vec![12, 12, 70, 4, 96]]
}

fn all_logits(model: &steer_model::Llama, rows: &[Vec<u32>], edits: &[Edit]) -> steer_model::ForwardOutput {
    let req = ForwardRequest {
        captures: &[],
        edits,
        logits: LogitsMode::All,
    };
    model.forward(rows, &req).expect("forward")
}

#[test]
fn batch_matches_rows_one_by_one() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let model = tiny_model(arch, 1);
        let rows = rows();
        let capture = Capture::all(Site::ResidPost(1));
        let edit = Edit::AddVector {
            layer: 0,
            vector: (0..32).map(|i| (i as f32 * 0.37).sin()).collect(),
            positions: Positions::From(2),
            multipliers: vec![0.5, -1.0, 2.0],
        };
        let req = ForwardRequest {
            captures: &[capture],
            edits: std::slice::from_ref(&edit),
            logits: LogitsMode::All,
        };
        let batch = model.forward(&rows, &req).unwrap();
        let logits = batch.logits.as_ref().unwrap();
        let resid = batch.capture(capture).unwrap();
        for (r, row) in rows.iter().enumerate() {
            let single_edit = row_edit(&edit, r, None);
            let req1 = ForwardRequest {
                captures: &[capture],
                edits: &[single_edit],
                logits: LogitsMode::All,
            };
            let one = model.forward(std::slice::from_ref(row), &req1).unwrap();
            let one_logits = one.logits.as_ref().unwrap();
            let one_resid = one.capture(capture).unwrap();
            for pos in 0..row.len() {
                let col = batch.padded_index(r, pos);
                let d = max_diff(logits.row(&[r, col]), one_logits.row(&[0, pos]));
                assert!(d <= 1e-4, "{arch:?} row {r} pos {pos}: logits differ by {d}");
                let d = max_diff(resid.row(&[r, col]), one_resid.row(&[0, pos]));
                assert!(d <= 1e-4, "{arch:?} row {r} pos {pos}: residual differs by {d}");
            }
        }
    }
}

#[test]
fn zero_multiplier_is_identity_and_add_vector_adds_exactly() {
    let model = tiny_model(Architecture::Llama, 2);
    let rows = rows();
    let plain = all_logits(&model, &rows, &[]);
    let v: Vec<f32> = (0..32).map(|i| if i % 3 == 0 { 1.5 } else { -0.25 }).collect();
    let zero = Edit::AddVector {
        layer: 1,
        vector: v.clone(),
        positions: Positions::All,
        multipliers: vec![0.0; 3],
    };
    let out = all_logits(&model, &rows, &[zero]);
    assert_eq!(
        plain.logits.as_ref().unwrap().data,
        out.logits.as_ref().unwrap().data,
        "multiplier 0 changed logits"
    );

    // The residual after block 1 moves by exactly m·v at the selected positions and nowhere else.
    let cap = Capture::all(Site::ResidPost(1));
    let base = model
        .forward(
            &rows,
            &ForwardRequest {
                captures: &[cap],
                edits: &[],
                logits: LogitsMode::None,
            },
        )
        .unwrap();
    let edit = Edit::AddVector {
        layer: 1,
        vector: v.clone(),
        positions: Positions::At(vec![1, 2]),
        multipliers: vec![],
    };
    let req = ForwardRequest {
        captures: &[cap],
        edits: std::slice::from_ref(&edit),
        logits: LogitsMode::None,
    };
    let steered = model.forward(&rows, &req).unwrap();
    let (a, b) = (base.capture(cap).unwrap(), steered.capture(cap).unwrap());
    for (r, row) in rows.iter().enumerate() {
        for pos in 0..row.len() {
            let col = base.padded_index(r, pos);
            let expected: Vec<f32> = if pos == 1 || pos == 2 {
                a.row(&[r, col]).iter().zip(&v).map(|(x, y)| x + y).collect()
            } else {
                a.row(&[r, col]).to_vec()
            };
            assert!(max_diff(b.row(&[r, col]), &expected) < 1e-5, "row {r} pos {pos}");
        }
    }
    // A steered layer changes later logits.
    let out = all_logits(&model, &rows, &[edit]);
    assert!(max_diff(&plain.logits.unwrap().data, &out.logits.unwrap().data) > 1e-3);
}

#[test]
fn resid_post_is_next_resid_pre_and_blocks_sum_up() {
    let model = tiny_model(Architecture::Qwen2, 3);
    let caps = [
        Capture::all(Site::ResidPre(1)),
        Capture::all(Site::AttnOut(1)),
        Capture::all(Site::MlpOut(1)),
        Capture::all(Site::ResidPost(1)),
        Capture::all(Site::ResidPre(2)),
        Capture::last(Site::ResidPost(1)),
        Capture::all(Site::HeadOut(1)),
    ];
    let out = model
        .forward(
            &rows(),
            &ForwardRequest {
                captures: &caps,
                edits: &[],
                logits: LogitsMode::None,
            },
        )
        .unwrap();
    let get = |i: usize| out.capture(caps[i]).unwrap();
    assert_eq!(get(3).data, get(4).data);
    let sum: Vec<f32> = (0..get(0).len())
        .map(|i| get(0).data[i] + get(1).data[i] + get(2).data[i])
        .collect();
    assert!(max_diff(&sum, &get(3).data) < 1e-5);
    let last = get(5);
    assert_eq!(last.shape, vec![3, 1, 32]);
    let t = get(3).shape[1];
    for r in 0..3 {
        assert_eq!(last.row(&[r, 0]), get(3).row(&[r, t - 1]));
    }
    assert_eq!(get(6).shape, vec![3, t, 4, 8]);
}

#[test]
fn affine_identity_and_constant_maps() {
    let model = tiny_model(Architecture::Llama, 4);
    let rows = rows();
    let d = 32;
    let mut identity = vec![0.0; d * d];
    for i in 0..d {
        identity[i * d + i] = 1.0;
    }
    let cap = Capture::all(Site::ResidPost(0));
    let id_edit = Edit::Affine {
        layer: 0,
        matrix: identity,
        bias: vec![0.0; d],
        positions: Positions::All,
        multipliers: vec![],
    };
    let plain = model
        .forward(
            &rows,
            &ForwardRequest {
                captures: &[cap],
                edits: &[],
                logits: LogitsMode::All,
            },
        )
        .unwrap();
    let ided = model
        .forward(
            &rows,
            &ForwardRequest {
                captures: &[cap],
                edits: &[id_edit],
                logits: LogitsMode::All,
            },
        )
        .unwrap();
    assert!(max_diff(&plain.logits.as_ref().unwrap().data, &ided.logits.unwrap().data) < 1e-4);
    // A = 0, b = c sends the stream to c at the last prompt token only.
    let c: Vec<f32> = (0..d).map(|i| i as f32 * 0.1).collect();
    let edit = Edit::Affine {
        layer: 0,
        matrix: vec![0.0; d * d],
        bias: c.clone(),
        positions: Positions::LastPrompt,
        multipliers: vec![],
    };
    let out = model
        .forward(
            &rows,
            &ForwardRequest {
                captures: &[cap],
                edits: &[edit],
                logits: LogitsMode::None,
            },
        )
        .unwrap();
    let (a, b) = (plain.capture(cap).unwrap(), out.capture(cap).unwrap());
    for (r, row) in rows.iter().enumerate() {
        let last = out.padded_index(r, row.len() - 1);
        assert!(max_diff(b.row(&[r, last]), &c) < 1e-5);
        let first = out.padded_index(r, 0);
        assert!(max_diff(b.row(&[r, first]), a.row(&[r, first])) < 1e-6);
    }
}

#[test]
fn patching_a_head_with_its_own_output_changes_nothing() {
    let model = tiny_model(Architecture::Llama, 5);
    let row = vec![vec![7u32, 8, 9, 10]];
    let cap = Capture::last(Site::HeadOut(2));
    let base = model
        .forward(
            &row,
            &ForwardRequest {
                captures: &[cap],
                edits: &[],
                logits: LogitsMode::All,
            },
        )
        .unwrap();
    let heads = base.capture(cap).unwrap(); // [1, 1, H, hd]
    let own = heads.row(&[0, 0, 3]).to_vec();
    let same = Edit::PatchHead {
        layer: 2,
        head: 3,
        value: own,
        positions: Positions::LastPrompt,
        multipliers: Vec::new(),
    };
    let out = model
        .forward(
            &row,
            &ForwardRequest {
                captures: &[cap],
                edits: &[same],
                logits: LogitsMode::All,
            },
        )
        .unwrap();
    assert!(max_diff(&base.logits.as_ref().unwrap().data, &out.logits.unwrap().data) < 1e-5);
    let other = Edit::PatchHead {
        layer: 2,
        head: 3,
        value: vec![3.0; 8],
        positions: Positions::LastPrompt,
        multipliers: Vec::new(),
    };
    let out = model
        .forward(
            &row,
            &ForwardRequest {
                captures: &[cap],
                edits: &[other],
                logits: LogitsMode::All,
            },
        )
        .unwrap();
    let patched = out.capture(cap).unwrap();
    assert_eq!(patched.row(&[0, 0, 3]), &[3.0; 8]);
    assert_eq!(patched.row(&[0, 0, 2]), heads.row(&[0, 0, 2]));
    // Only the last position's logits move.
    let (a, b) = (base.logits.unwrap(), out.logits.unwrap());
    assert!(max_diff(a.row(&[0, 0]), b.row(&[0, 0])) < 1e-6);
    assert!(max_diff(a.row(&[0, 3]), b.row(&[0, 3])) > 1e-4);
    // The head's contribution through o_proj is what the residual stream receives.
    let proj = model.project_head(2, 3, &[1.0; 8]).unwrap();
    assert_eq!(proj.len(), 32);
}

#[test]
fn bad_requests_are_errors() {
    let model = tiny_model(Architecture::Llama, 6);
    let rows = rows();
    let cases = vec![
        (
            Edit::AddVector {
                layer: 0,
                vector: vec![0.0; 31],
                positions: Positions::All,
                multipliers: vec![],
            },
            "d_model is 32",
        ),
        (
            Edit::AddVector {
                layer: 3,
                vector: vec![0.0; 32],
                positions: Positions::All,
                multipliers: vec![],
            },
            "layer 3 is out of range",
        ),
        (
            Edit::AddVector {
                layer: 0,
                vector: vec![0.0; 32],
                positions: Positions::All,
                multipliers: vec![1.0],
            },
            "1 multipliers for a batch of 3",
        ),
        (
            Edit::Affine {
                layer: 0,
                matrix: vec![0.0; 10],
                bias: vec![0.0; 32],
                positions: Positions::All,
                multipliers: vec![],
            },
            "32×32 matrix",
        ),
        (
            Edit::PatchHead {
                layer: 0,
                head: 4,
                value: vec![0.0; 8],
                positions: Positions::All,
                multipliers: Vec::new(),
            },
            "4 heads",
        ),
    ];
    for (edit, needle) in cases {
        let err = model
            .forward(
                &rows,
                &ForwardRequest {
                    captures: &[],
                    edits: &[edit],
                    logits: LogitsMode::Last,
                },
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
    let err = model
        .forward(
            &rows,
            &ForwardRequest {
                captures: &[Capture::all(Site::MlpOut(9))],
                edits: &[],
                logits: LogitsMode::None,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("layer 9"));
    assert!(
        model
            .forward(&[vec![200]], &ForwardRequest::default())
            .unwrap_err()
            .to_string()
            .contains("token id 200")
    );
    assert!(model.forward(&[vec![]], &ForwardRequest::default()).is_err());
}

/// `edit` (an `AddVector`) as it applies to batch row `r` alone: that row's
/// multiplier, and `positions` instead of the edit's own when given.
fn row_edit(edit: &Edit, r: usize, positions: Option<Positions>) -> Edit {
    let Edit::AddVector {
        layer,
        vector,
        positions: own,
        multipliers,
    } = edit
    else {
        panic!("row_edit takes an AddVector edit");
    };
    Edit::AddVector {
        layer: *layer,
        vector: vector.clone(),
        positions: positions.unwrap_or_else(|| own.clone()),
        multipliers: vec![multipliers[r]],
    }
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        sampling: Sampling::Greedy,
        eos_ids: vec![],
    }
}

#[test]
fn cached_generation_matches_full_recomputation() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let model = tiny_model(arch, 7);
        let prompts = rows();
        let edit = Edit::AddVector {
            layer: 1,
            vector: (0..32).map(|i| (i as f32).cos()).collect(),
            positions: Positions::PromptEndOnward,
            multipliers: vec![1.0, 0.0, -2.0],
        };
        let generated = model
            .generate(&prompts, std::slice::from_ref(&edit), &greedy(6))
            .unwrap();
        for (r, prompt) in prompts.iter().enumerate() {
            assert_eq!(generated[r].len(), 6);
            // Re-run the whole sequence without a cache: each generated token must be
            // the argmax at the position before it, under the same edit.
            let mut full = prompt.clone();
            full.extend(&generated[r]);
            // In a plain forward the whole row counts as prompt, so spell the positions out.
            let one = row_edit(&edit, r, Some(Positions::From(prompt.len() - 1)));
            let out = model
                .forward(
                    &[full.clone()],
                    &ForwardRequest {
                        captures: &[],
                        edits: &[one],
                        logits: LogitsMode::All,
                    },
                )
                .unwrap();
            let logits = out.logits.unwrap();
            for (k, &tok) in generated[r].iter().enumerate() {
                let row = logits.row(&[0, prompt.len() - 1 + k]);
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
                assert_eq!(best as u32, tok, "{arch:?} row {r} step {k}");
            }
        }
        // Batched generation equals generation row by row.
        for (r, prompt) in prompts.iter().enumerate() {
            let one = row_edit(&edit, r, None);
            let alone = model
                .generate(std::slice::from_ref(prompt), &[one], &greedy(6))
                .unwrap();
            assert_eq!(alone[0], generated[r], "{arch:?} row {r}");
        }
    }
}

#[test]
fn generation_stops_at_eos_and_sampling_is_seeded() {
    let model = tiny_model(Architecture::Llama, 8);
    let prompts = vec![vec![1u32, 2, 3]];
    let free = model.generate(&prompts, &[], &greedy(5)).unwrap();
    let stop = free[0][1];
    let opts = GenerateOptions {
        max_new_tokens: 5,
        sampling: Sampling::Greedy,
        eos_ids: vec![stop],
    };
    let stopped = model.generate(&prompts, &[], &opts).unwrap();
    let first_stop = free[0].iter().position(|&t| t == stop).unwrap();
    assert_eq!(stopped[0], free[0][..=first_stop].to_vec());

    let sample = |seed| GenerateOptions {
        max_new_tokens: 8,
        sampling: Sampling::Sample {
            temperature: 1.5,
            top_p: 0.95,
            seed,
        },
        eos_ids: vec![],
    };
    let a = model.generate(&prompts, &[], &sample(11)).unwrap();
    let b = model.generate(&prompts, &[], &sample(11)).unwrap();
    let c = model.generate(&prompts, &[], &sample(12)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c, "different seeds gave the same 8 sampled tokens");
    let too_long = GenerateOptions {
        max_new_tokens: 300,
        sampling: Sampling::Greedy,
        eos_ids: vec![],
    };
    assert!(
        model
            .generate(&prompts, &[], &too_long)
            .unwrap_err()
            .to_string()
            .contains("context")
    );
    let _ = tiny_config(Architecture::Llama);
}

#[test]
fn shared_prefix_gives_the_numbers_of_the_whole_sequence() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let model = tiny_model(arch, 4);
        let prefix = vec![7u32, 19, 23, 5, 61];
        let continuations = vec![vec![3u32, 14, 15], vec![9], vec![26, 53]];
        let capture = Capture::all(Site::ResidPost(2));
        let edit = Edit::AddVector {
            layer: 1,
            vector: (0..32).map(|i| (i as f32 * 0.21).cos()).collect(),
            positions: Positions::LastPrompt,
            multipliers: vec![1.0, -2.0, 0.5],
        };
        let req = ForwardRequest {
            captures: &[capture],
            edits: std::slice::from_ref(&edit),
            logits: LogitsMode::All,
        };
        let shared = model.shared_prefix(&prefix).unwrap();
        assert_eq!(shared.len(), prefix.len());
        let after = model.forward_after(&shared, &continuations, &req).unwrap();
        let whole: Vec<Vec<u32>> = continuations.iter().map(|c| [prefix.as_slice(), c].concat()).collect();
        let full = model.forward(&whole, &req).unwrap();
        // Every continuation position after a prefix against the same position of
        // the whole rows, in one of their tensors (logits or a capture).
        let same_rows = |after: &ForwardOutput, full: &ForwardOutput, ta: &HostTensor, tf: &HostTensor, what: &str| {
            for (row, c) in continuations.iter().enumerate() {
                for i in 0..c.len() {
                    let a = after.padded_index(row, i);
                    let f = full.padded_index(row, prefix.len() + i);
                    assert!(
                        max_diff(ta.row(&[row, a]), tf.row(&[row, f])) < 1e-4,
                        "{arch:?} {what}, row {row} pos {i}"
                    );
                }
            }
        };
        let same_logits = |after: &ForwardOutput, full: &ForwardOutput, what: &str| {
            same_rows(
                after,
                full,
                after.logits.as_ref().unwrap(),
                full.logits.as_ref().unwrap(),
                what,
            )
        };
        same_logits(&after, &full, "logits");
        let (ca, cf) = (after.capture(capture).unwrap(), full.capture(capture).unwrap());
        same_rows(&after, &full, ca, cf, "resid");
        // An edit reaching into the shared prefix is refused.
        let everywhere = Edit::AddVector {
            layer: 0,
            vector: vec![1.0; 32],
            positions: Positions::All,
            multipliers: Vec::new(),
        };
        let bad = ForwardRequest {
            captures: &[],
            edits: std::slice::from_ref(&everywhere),
            logits: LogitsMode::Last,
        };
        let err = model
            .forward_after(&shared, &continuations, &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shared prefix"), "{err}");
        assert!(model.shared_prefix(&[]).is_err());
        assert!(model.forward_after(&shared, &[vec![]], &req).is_err());

        // A prefix extended in two steps gives the numbers of the whole sequence too.
        let first = model.shared_prefix(&prefix[..2]).unwrap();
        let extended = model.extend_prefix(&first, &prefix[2..]).unwrap();
        assert_eq!(extended.len(), prefix.len());
        let again = model.forward_after(&extended, &continuations, &req).unwrap();
        same_logits(&again, &full, "extended prefix");
        assert!(model.extend_prefix(&first, &[]).is_err());

        // A prefix steered at every position, continued under the same edits.
        let keep = Edit::AddKeepNorm {
            layer: 1,
            vector: (0..32).map(|i| (i as f32 * 0.4).sin()).collect(),
            positions: Positions::All,
            multipliers: Vec::new(),
        };
        let steered = ForwardRequest {
            captures: &[],
            edits: std::slice::from_ref(&keep),
            logits: LogitsMode::All,
        };
        let with = model.shared_prefix_with(&prefix, std::slice::from_ref(&keep)).unwrap();
        let after_steered = model.forward_after(&with, &continuations, &steered).unwrap();
        let full_steered = model.forward(&whole, &steered).unwrap();
        same_logits(&after_steered, &full_steered, "steered prefix");
        // Other edits after it, and edits placed relative to the prompt's end, are refused.
        assert!(model.forward_after(&with, &continuations, &req).is_err());
        assert!(
            model
                .forward_after(&with, &continuations, &ForwardRequest::default())
                .is_err()
        );
        assert!(model.shared_prefix_with(&prefix, std::slice::from_ref(&edit)).is_err());
        let two = model.shared_prefixes(&[vec![1, 2], vec![3]]).unwrap();
        assert!(model.extend_prefix(&two, &[4]).is_err());
    }
}

#[test]
fn norm_preserving_addition_keeps_each_norm() {
    let model = tiny_model(Architecture::Llama, 2);
    let rows = rows();
    let capture = Capture::all(Site::ResidPost(1));
    let vector: Vec<f32> = (0..32).map(|i| (i as f32 * 0.5).sin() * 3.0).collect();
    let run = |m: f32| {
        let edit = Edit::AddKeepNorm {
            layer: 1,
            vector: vector.clone(),
            positions: Positions::From(1),
            multipliers: vec![m; 3],
        };
        let req = ForwardRequest {
            captures: &[capture],
            edits: std::slice::from_ref(&edit),
            logits: LogitsMode::All,
        };
        model.forward(&rows, &req).unwrap()
    };
    let plain = all_logits(&model, &rows, &[]);
    let zero = run(0.0);
    assert_eq!(zero.logits.unwrap().data, plain.logits.unwrap().data);
    let before = run(0.0).capture(capture).unwrap().clone();
    let after = run(2.0);
    let after = after.capture(capture).unwrap();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for (row, r) in rows.iter().enumerate() {
        let pad = zero_pad(&rows, row);
        for p in 0..r.len() {
            let (b, a) = (before.row(&[row, pad + p]), after.row(&[row, pad + p]));
            assert!(
                (norm(a) - norm(b)).abs() < 1e-4 * norm(b),
                "row {row} pos {p}: norm changed"
            );
            if p == 0 {
                assert!(max_diff(a, b) < 1e-6, "position 0 is outside the edit");
            } else {
                // The direction moved towards the vector.
                let cos =
                    |x: &[f32]| x.iter().zip(&vector).map(|(p, q)| p * q).sum::<f32>() / (norm(x) * norm(&vector));
                assert!(cos(a) > cos(b), "row {row} pos {p}: did not move towards the vector");
            }
        }
    }
}

fn zero_pad(rows: &[Vec<u32>], row: usize) -> usize {
    rows.iter().map(Vec::len).max().unwrap() - rows[row].len()
}

#[test]
fn per_row_head_patches_match_single_patches() {
    let model = tiny_model(Architecture::Llama, 6);
    let prompt = vec![4u32, 8, 15, 16, 23, 42];
    let value = vec![0.7f32; 8];
    let logits_of = |rows: &[Vec<u32>], edits: &[Edit]| {
        let req = ForwardRequest {
            captures: &[],
            edits,
            logits: LogitsMode::Last,
        };
        model.forward(rows, &req).unwrap().logits.unwrap()
    };
    let heads = 4;
    let rows = vec![prompt.clone(); heads];
    let edits: Vec<Edit> = (0..heads)
        .map(|h| Edit::PatchHead {
            layer: 1,
            head: h,
            value: value.clone(),
            positions: Positions::LastPrompt,
            multipliers: (0..heads).map(|r| if r == h { 1.0 } else { 0.0 }).collect(),
        })
        .collect();
    let batched = logits_of(&rows, &edits);
    for h in 0..heads {
        let single = Edit::PatchHead {
            layer: 1,
            head: h,
            value: value.clone(),
            positions: Positions::LastPrompt,
            multipliers: Vec::new(),
        };
        let one = logits_of(std::slice::from_ref(&prompt), std::slice::from_ref(&single));
        assert!(max_diff(batched.row(&[h]), one.row(&[0])) < 1e-4, "head {h}");
    }
}

#[test]
fn several_prefixes_and_variant_copies_give_the_numbers_of_whole_sequences() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let model = tiny_model(arch, 6);
        let prefixes = vec![vec![7u32, 19, 23, 5, 61], vec![40u32, 2], vec![11u32, 8, 90, 31]];
        let lasts = vec![vec![3u32, 14], vec![9, 9], vec![26, 53]];
        let shared = model.shared_prefixes(&prefixes).unwrap();
        assert_eq!(shared.count(), 3);
        assert_eq!(shared.lens(), &[5, 2, 4]);
        let vector: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin()).collect();
        let other: Vec<f32> = (0..32).map(|i| (i as f32 * 0.11).cos()).collect();
        // Three copies per prefix: unsteered, one vector at layer 1, another at layer 2.
        let per_copy = |which: usize, m: f32| -> Vec<f32> {
            (0..3)
                .flat_map(|_| (0..3).map(move |v| if v == which { m } else { 0.0 }))
                .collect()
        };
        let edits = vec![
            Edit::AddVector {
                layer: 1,
                vector: vector.clone(),
                positions: Positions::PromptEndOnward,
                multipliers: per_copy(1, 1.5),
            },
            Edit::AddVector {
                layer: 2,
                vector: other.clone(),
                positions: Positions::PromptEndOnward,
                multipliers: per_copy(2, -2.0),
            },
        ];
        let req = ForwardRequest {
            captures: &[],
            edits: &edits,
            logits: LogitsMode::All,
        };
        let copies = model.forward_variants(&shared, &lasts, 3, &req).unwrap().unwrap();
        assert_eq!(copies.shape, vec![9, 2, 97]);
        let last = ForwardRequest {
            logits: LogitsMode::Last,
            ..req
        };
        let copies_last = model.forward_variants(&shared, &lasts, 3, &last).unwrap().unwrap();
        assert_eq!(copies_last.shape, vec![9, 97]);
        for (r, (p, c)) in prefixes.iter().zip(&lasts).enumerate() {
            let whole = [p.as_slice(), c].concat();
            let single = |layer: usize, v: &[f32], m: f32| Edit::AddVector {
                layer,
                vector: v.to_vec(),
                positions: Positions::From(whole.len() - 1),
                multipliers: vec![m],
            };
            for (v, e) in [Vec::new(), vec![single(1, &vector, 1.5)], vec![single(2, &other, -2.0)]]
                .into_iter()
                .enumerate()
            {
                let direct = all_logits(&model, std::slice::from_ref(&whole), &e);
                let direct = direct.logits.unwrap();
                for j in 0..c.len() {
                    let got = copies.row(&[r * 3 + v, j]);
                    assert!(
                        max_diff(got, direct.row(&[0, p.len() + j])) < 1e-4,
                        "{arch:?} prefix {r} copy {v} token {j}"
                    );
                }
                assert!(max_diff(copies_last.row(&[r * 3 + v]), direct.row(&[0, whole.len() - 1])) < 1e-4);
            }
        }
        // Continuation r after prefix which[r], with row edits, equals the whole sequence.
        let which = [2usize, 0, 0, 1];
        let conts = vec![vec![5u32], vec![6, 7, 8], vec![1], vec![4, 4]];
        let row_edit = Edit::AddVector {
            layer: 0,
            vector: vector.clone(),
            positions: Positions::PromptEndOnward,
            multipliers: vec![1.0, 0.0, -1.0, 2.0],
        };
        let req = ForwardRequest {
            captures: &[],
            edits: std::slice::from_ref(&row_edit),
            logits: LogitsMode::All,
        };
        let each = model.forward_after_each(&shared, &which, &conts, &req).unwrap();
        let le = each.logits.as_ref().unwrap();
        for (row, c) in conts.iter().enumerate() {
            let p = &prefixes[which[row]];
            let whole = [p.as_slice(), c].concat();
            let e = Edit::AddVector {
                layer: 0,
                vector: vector.clone(),
                positions: Positions::From(whole.len() - 1),
                multipliers: vec![[1.0, 0.0, -1.0, 2.0][row]],
            };
            let direct = all_logits(&model, std::slice::from_ref(&whole), &[e]);
            let direct = direct.logits.unwrap();
            for j in 0..c.len() {
                assert!(
                    max_diff(le.row(&[row, each.padded_index(row, j)]), direct.row(&[0, p.len() + j])) < 1e-4,
                    "{arch:?} continuation {row} token {j}"
                );
            }
        }
        // Misuse is an error, not a panic.
        assert!(model.forward_after(&shared, &conts, &req).is_err());
        assert!(
            model
                .forward_after_each(&shared, &[3], &[vec![1]], &ForwardRequest::default())
                .is_err()
        );
        assert!(
            model
                .forward_variants(&shared, &lasts[..2], 3, &ForwardRequest::default())
                .is_err()
        );
        let uneven = vec![vec![1u32], vec![2, 3], vec![4]];
        assert!(
            model
                .forward_variants(&shared, &uneven, 2, &ForwardRequest::default())
                .is_err()
        );
        assert!(model.shared_prefixes(&[vec![1], vec![]]).is_err());
    }
}
