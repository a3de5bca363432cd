//! The tokenizer built from the default model's GGUF metadata (SmolLM2-135M-Instruct)
//! against transformers' reference in `tests/fixtures/smollm2_reference.json`.
//!
//! These tests fail (never skip) when the model is not installed.

use std::path::PathBuf;

use serde_json::Value;
use steer_model::gguf::GgufFile;
use steer_model::tokenizer::{ChatMessage, ChatTokenizer};

/// The tokenizer of the default model; fails when the model is not installed.
fn tokenizer() -> ChatTokenizer {
    let path = steer_model::model::default_model_path();
    assert!(
        path.is_file(),
        "the default model is missing at {}: run `cargo xtask setup` (or `cargo xtask test`)",
        path.display()
    );
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    ChatTokenizer::from_gguf_metadata(&file.metadata, &path).unwrap_or_else(|e| panic!("{e}"))
}

/// The reference fixture written by transformers.
fn reference() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("a list of token ids")
        .iter()
        .map(|v| v.as_u64().and_then(|id| u32::try_from(id).ok()).expect("a token id"))
        .collect()
}

#[test]
fn prompts_render_and_encode_like_transformers() {
    let tok = tokenizer();
    let r = reference();
    let prompts = r["prompts"].as_array().expect("prompts");
    assert!(!prompts.is_empty());
    for p in prompts {
        let name = p["name"].as_str().unwrap_or("?");
        let text = p["text"].as_str().expect("text");
        let expected_ids = ids(&p["token_ids"]);
        let rendered = p["rendered"].as_str().expect("rendered");
        let ours = if p["chat"].as_bool().expect("chat") {
            let msgs = [ChatMessage {
                role: "user".into(),
                content: text.into(),
            }];
            let ours_rendered = tok.apply_chat_template(&msgs, true).unwrap();
            assert_eq!(ours_rendered, rendered, "{name}: rendered chat text differs");
            let ids = tok.encode_chat(&msgs, true).unwrap();
            assert_eq!(ids, tok.encode(&ours_rendered, false).unwrap(), "{name}: encode_chat");
            ids
        } else {
            assert_eq!(text, rendered, "{name}: a raw prompt is rendered as itself");
            let ids = tok.encode(text, true).unwrap();
            assert_eq!(
                tok.decode(&ids, false).unwrap(),
                text,
                "{name}: decode does not round-trip"
            );
            ids
        };
        assert_eq!(ours, expected_ids, "{name}: token ids differ from transformers");
        if let Some(tokens) = p["tokens"].as_array() {
            let ours: Vec<String> = ours
                .iter()
                .map(|&id| tok.inner().id_to_token(id).unwrap_or_default())
                .collect();
            let theirs: Vec<&str> = tokens.iter().map(|t| t.as_str().expect("token text")).collect();
            assert_eq!(ours, theirs, "{name}: token texts differ");
        }
    }
}

#[test]
fn special_tokens_match_transformers() {
    let tok = tokenizer();
    let r = reference();
    let bos = r["bos_token_id"].as_u64().expect("bos_token_id") as u32;
    let eos = r["eos_token_id"].as_u64().expect("eos_token_id") as u32;
    assert_eq!(tok.bos_id(), Some(bos));
    assert_eq!(tok.eos_ids().first(), Some(&eos), "EOS comes first in eos_ids");
    assert!(tok.is_eos(eos));
    assert_eq!(tok.token_to_id(r["bos_token"].as_str().expect("bos_token")), Some(bos));
    assert_eq!(tok.token_to_id(r["eos_token"].as_str().expect("eos_token")), Some(eos));
    assert_eq!(
        tok.add_bos(),
        r["raw_prompts_start_with_bos"]
            .as_bool()
            .expect("raw_prompts_start_with_bos")
    );
    assert_eq!(tok.chat_template(), r["chat_template"].as_str());
    assert_eq!(
        tok.vocab_size() as u64,
        r["config"]["vocab_size"].as_u64().expect("vocab_size")
    );

    // SmolLM2's GGUF: <|endoftext|> = 0, <|im_start|> = 1, <|im_end|> = 2 = pad.
    assert_eq!(tok.eos_ids(), &[2, 0]);
    assert_eq!(tok.pad_id(), 2);
    assert!(!tok.is_eos(1));
}

#[test]
fn special_tokens_in_text_are_single_ids_and_skippable() {
    let tok = tokenizer();
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", false).unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi");
    assert_eq!(tok.decode(&ids, false).unwrap(), "<|im_start|>user\nHi<|im_end|>");
}

#[test]
fn a_system_message_replaces_the_default_one() {
    let tok = tokenizer();
    let msgs = [
        ChatMessage {
            role: "system".into(),
            content: "Be brief.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        },
        ChatMessage {
            role: "assistant".into(),
            content: "Hello!".into(),
        },
    ];
    assert_eq!(
        tok.apply_chat_template(&msgs, false).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    );
}
