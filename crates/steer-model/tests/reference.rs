//! The default model against numbers from an independent implementation
//! (Hugging Face transformers reading the same GGUF; see tools/make_reference.py).

mod common;

use std::collections::HashMap;

use common::real::{default_model, fixture};
use safetensors::SafeTensors;
use steer_model::{Capture, ChatMessage, ForwardRequest, GenerateOptions, HostTensor, LogitsMode, Sampling, Site};

struct Reference {
    json: serde_json::Value,
    tensors: HashMap<String, HostTensor>,
    ints: HashMap<String, Vec<i64>>,
}

fn reference() -> Reference {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("smollm2_reference.json")).unwrap()).unwrap();
    let bytes = std::fs::read(fixture("smollm2_reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = HashMap::new();
    let mut ints = HashMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        match view.dtype() {
            safetensors::Dtype::F32 => {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                tensors.insert(name, HostTensor::new(shape, data).unwrap());
            }
            safetensors::Dtype::I64 => {
                let data = view
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                ints.insert(name, data);
            }
            other => panic!("unexpected dtype {other:?} for {name}"),
        }
    }
    Reference { json, tensors, ints }
}

fn prompts(r: &Reference) -> Vec<serde_json::Value> {
    r.json["prompts"].as_array().expect("prompts array").clone()
}

#[test]
fn tokenization_and_chat_template_match() {
    let r = reference();
    let model = default_model();
    for p in prompts(&r) {
        let name = p["name"].as_str().unwrap();
        let text = p["text"].as_str().unwrap();
        let expected: Vec<u32> = r.ints[&format!("{name}.token_ids")].iter().map(|&v| v as u32).collect();
        let ids = if p["chat"].as_bool().unwrap() {
            let msgs = [ChatMessage {
                role: "user".into(),
                content: text.into(),
            }];
            let rendered = model.tokenizer.apply_chat_template(&msgs, true).unwrap();
            assert_eq!(rendered, p["rendered"].as_str().unwrap(), "{name}: chat template");
            model.tokenizer.encode_chat(&msgs, true).unwrap()
        } else {
            model.tokenizer.encode(text, true).unwrap()
        };
        assert_eq!(ids, expected, "{name}: token ids");
    }
}

#[test]
fn logits_and_residual_stream_match_transformers() {
    let r = reference();
    let model = default_model();
    let layers: Vec<usize> = (0..model.model.config().num_hidden_layers)
        .filter(|l| r.tensors.contains_key(&format!("p0.resid.{l}")))
        .collect();
    assert!(!layers.is_empty(), "fixture has no residual-stream entries");
    let captures: Vec<Capture> = layers.iter().map(|&l| Capture::all(Site::ResidPost(l))).collect();
    for p in prompts(&r) {
        let name = p["name"].as_str().unwrap();
        let ids: Vec<u32> = r.ints[&format!("{name}.token_ids")].iter().map(|&v| v as u32).collect();
        let out = model
            .model
            .forward(
                std::slice::from_ref(&ids),
                &ForwardRequest {
                    captures: &captures,
                    edits: &[],
                    logits: LogitsMode::All,
                },
            )
            .unwrap();
        let logits = out.logits.as_ref().unwrap();
        let top_idx = &r.ints[&format!("{name}.top_idx")];
        let top_val = &r.tensors[&format!("{name}.top_logits")];
        let k = top_val.shape[1];
        let mut worst = 0.0f32;
        for t in 0..ids.len() {
            let row = logits.row(&[0, t]);
            let argmax = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
            // Ties at the top are resolved by value: our argmax must carry the reference maximum.
            let ref_best = top_idx[t * k] as usize;
            assert!(
                argmax == ref_best || (row[argmax] - row[ref_best]).abs() < 1e-5,
                "{name} position {t}: argmax {argmax}, reference {ref_best}"
            );
            for j in 0..k {
                let idx = top_idx[t * k + j] as usize;
                worst = worst.max((row[idx] - top_val.data[t * k + j]).abs());
            }
        }
        eprintln!(
            "{name}: {} tokens, max |Δlogit| over the top-{k} = {worst:.2e}",
            ids.len()
        );
        assert!(worst <= 1e-3, "{name}: max |Δlogit| = {worst}");
        for (c, &l) in captures.iter().zip(&layers) {
            let ours = out.capture(*c).unwrap();
            let theirs = &r.tensors[&format!("{name}.resid.{l}")];
            let scale = theirs.max_abs().max(1.0);
            let diff = ours
                .data
                .iter()
                .zip(&theirs.data)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            eprintln!(
                "{name} block {l}: max |Δresid| = {diff:.2e} at scale {scale:.1} (relative {:.2e})",
                diff / scale
            );
            assert!(
                diff / scale <= 1e-3,
                "{name} layer {l}: residual max |Δ| {diff} at scale {scale}"
            );
        }
    }
}

#[test]
fn greedy_generation_matches_transformers_and_knows_paris() {
    let r = reference();
    let model = default_model();
    let prompt: Vec<u32> = r.ints["gen.prompt_ids"].iter().map(|&v| v as u32).collect();
    let expected: Vec<u32> = r.ints["gen.greedy_ids"].iter().map(|&v| v as u32).collect();
    let opts = GenerateOptions {
        max_new_tokens: expected.len(),
        sampling: Sampling::Greedy,
        eos_ids: model.tokenizer.eos_ids().to_vec(),
    };
    let got = model.model.generate(std::slice::from_ref(&prompt), &[], &opts).unwrap();
    assert_eq!(got[0], expected, "greedy tokens differ from transformers");
    // Past the end token too: 32 cached decode steps must follow transformers exactly.
    let full: Vec<u32> = r.ints["gen.greedy_ids_full"].iter().map(|&v| v as u32).collect();
    let no_stop = GenerateOptions {
        max_new_tokens: full.len(),
        eos_ids: vec![],
        ..opts.clone()
    };
    let got = model.model.generate(&[prompt], &[], &no_stop).unwrap();
    assert_eq!(
        got[0], full,
        "greedy tokens past the end token differ from transformers"
    );

    let msgs = [ChatMessage {
        role: "user".into(),
        content: "What is the capital of France?".into(),
    }];
    let ids = model.tokenizer.encode_chat(&msgs, true).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 24,
        ..opts
    };
    let answer = model.model.generate(&[ids], &[], &opts).unwrap();
    let text = model.tokenizer.decode(&answer[0], true).unwrap();
    assert!(text.contains("Paris"), "answer was {text:?}");
}
