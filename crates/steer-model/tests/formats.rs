//! The same tiny model written as a GGUF file (in llama.cpp's layout) and as a
//! Hugging Face directory loads to the same network through every path.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::tiny::{max_diff, tiny_config};
use safetensors::tensor::{Dtype, TensorView};
use steer_model::gguf::{GgufFile, GgufValue, GgufWriter};
use steer_model::model::{ModelFormat, resolve_hub_cache};
use steer_model::{Architecture, Backend, ForwardRequest, HostTensor, Llama, LoadedModel, ModelConfig, WeightSource};

/// A fresh, empty directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steerbench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// llama.cpp's converter permutation of q/k rows (Hugging Face → GGUF layout).
fn permute_rows(t: &HostTensor, heads: usize) -> Vec<f32> {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let half = rows / heads / 2;
    let mut out = vec![0.0; t.data.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let src = h * 2 * half + j * half + i;
                let dst = h * 2 * half + 2 * i + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn tensors(cfg: &ModelConfig, seed: u64) -> HashMap<String, HostTensor> {
    match WeightSource::random(cfg, seed) {
        WeightSource::Memory(map) => map,
        _ => unreachable!(),
    }
}

/// Tokenizer metadata of the default model, so the tiny GGUF is complete.
fn tokenizer_metadata() -> Vec<(String, GgufValue)> {
    let file = GgufFile::open(&steer_model::model::default_model_path()).expect("default model (cargo xtask setup)");
    file.metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn write_gguf(cfg: &ModelConfig, weights: &HashMap<String, HostTensor>, path: &Path) {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", GgufValue::String("llama".into()));
    w.add_metadata("llama.embedding_length", GgufValue::U32(cfg.hidden_size as u32));
    w.add_metadata(
        "llama.feed_forward_length",
        GgufValue::U32(cfg.intermediate_size as u32),
    );
    w.add_metadata("llama.block_count", GgufValue::U32(cfg.num_hidden_layers as u32));
    w.add_metadata(
        "llama.attention.head_count",
        GgufValue::U32(cfg.num_attention_heads as u32),
    );
    w.add_metadata(
        "llama.attention.head_count_kv",
        GgufValue::U32(cfg.num_key_value_heads as u32),
    );
    w.add_metadata(
        "llama.attention.layer_norm_rms_epsilon",
        GgufValue::F32(cfg.rms_norm_eps),
    );
    w.add_metadata("llama.rope.freq_base", GgufValue::F32(cfg.rope_theta));
    w.add_metadata(
        "llama.context_length",
        GgufValue::U32(cfg.max_position_embeddings as u32),
    );
    for (k, v) in tokenizer_metadata() {
        w.add_metadata(k, v);
    }
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    for name in names {
        let t = &weights[name];
        let gguf_name = name
            .replace("model.embed_tokens.weight", "token_embd.weight")
            .replace("model.norm.weight", "output_norm.weight")
            .replace("rope_freqs", "rope_freqs.weight")
            .replace("model.layers.", "blk.")
            .replace("input_layernorm", "attn_norm")
            .replace("post_attention_layernorm", "ffn_norm")
            .replace("self_attn.q_proj", "attn_q")
            .replace("self_attn.k_proj", "attn_k")
            .replace("self_attn.v_proj", "attn_v")
            .replace("self_attn.o_proj", "attn_output")
            .replace("mlp.gate_proj", "ffn_gate")
            .replace("mlp.up_proj", "ffn_up")
            .replace("mlp.down_proj", "ffn_down");
        let data = if name.ends_with("q_proj.weight") {
            permute_rows(t, cfg.num_attention_heads)
        } else if name.ends_with("k_proj.weight") {
            permute_rows(t, cfg.num_key_value_heads)
        } else {
            t.data.clone()
        };
        w.add_tensor_f32(gguf_name, &t.shape, data);
    }
    w.write(path).unwrap();
}

fn write_hf_dir(cfg: &ModelConfig, weights: &HashMap<String, HostTensor>, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "model_type": "llama",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    write_safetensors(weights, &dir.join("model.safetensors"));
    let default = common::real::default_model();
    default
        .tokenizer
        .inner()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    let tok_config = serde_json::json!({
        "chat_template": default.tokenizer.chat_template(),
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
    });
    std::fs::write(dir.join("tokenizer_config.json"), tok_config.to_string()).unwrap();
}

fn write_safetensors(weights: &HashMap<String, HostTensor>, path: &Path) {
    let bytes: HashMap<String, (Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                (t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            )
        })
        .collect();
    let views: HashMap<String, TensorView> = bytes
        .iter()
        .map(|(k, (shape, data))| (k.clone(), TensorView::new(Dtype::F32, shape.clone(), data).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(&views, None).unwrap()).unwrap();
}

fn logits(model: &Llama) -> Vec<f32> {
    let rows = vec![vec![1u32, 5, 9, 44, 2, 70], vec![8, 3]];
    model
        .forward(&rows, &ForwardRequest::default())
        .unwrap()
        .logits
        .unwrap()
        .data
}

#[test]
fn gguf_hf_dir_and_hub_cache_load_the_same_network() {
    let cfg = tiny_config(Architecture::Llama);
    let weights = tensors(&cfg, 99);
    let device = Backend::Cpu.device().unwrap();
    let reference = logits(&Llama::load(&cfg, &WeightSource::Memory(weights.clone()), &device).unwrap());

    let dir = scratch("formats");
    let gguf = dir.join("tiny.gguf");
    write_gguf(&cfg, &weights, &gguf);
    let from_gguf = LoadedModel::load(gguf.to_str().unwrap(), &device).unwrap();
    assert_eq!(from_gguf.model.config(), &cfg);
    let d = max_diff(&reference, &logits(&from_gguf.model));
    assert!(d < 1e-5, "GGUF with llama.cpp's q/k layout differs by {d}");

    // RoPE divisors (`rope_freqs.weight`, Llama 3.1-style GGUFs): ones change nothing,
    // anything else changes the network, and a wrong length is an error.
    let half = cfg.head_dim() / 2;
    for (name, factors, same) in [("ones", vec![1.0f32; half], true), ("fours", vec![4.0f32; half], false)] {
        let mut with_freqs = weights.clone();
        with_freqs.insert("rope_freqs".into(), HostTensor::new(vec![half], factors).unwrap());
        let path = dir.join(format!("freqs-{name}.gguf"));
        write_gguf(&cfg, &with_freqs, &path);
        let loaded = LoadedModel::load(path.to_str().unwrap(), &device).unwrap();
        let d = max_diff(&reference, &logits(&loaded.model));
        assert_eq!(d < 1e-5, same, "rope_freqs {name}: logits differ by {d}");
    }
    let mut bad = weights.clone();
    bad.insert("rope_freqs".into(), HostTensor::new(vec![3], vec![1.0; 3]).unwrap());
    write_gguf(&cfg, &bad, &dir.join("freqs-bad.gguf"));
    let err = LoadedModel::load(dir.join("freqs-bad.gguf").to_str().unwrap(), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("freqs-bad.gguf") && err.contains("rope_freqs has 3 values"),
        "{err}"
    );

    let hf = dir.join("hf");
    write_hf_dir(&cfg, &weights, &hf);
    let from_dir = LoadedModel::load(hf.to_str().unwrap(), &device).unwrap();
    assert_eq!(from_dir.model.config(), &cfg);
    assert_eq!(max_diff(&reference, &logits(&from_dir.model)), 0.0);
    assert_eq!(
        from_dir.tokenizer.encode("The capital of France is", true).unwrap(),
        vec![504, 3575, 282, 4649, 314]
    );

    // The same weights split into two shards with an index.
    let sharded = dir.join("sharded");
    write_hf_dir(&cfg, &weights, &sharded);
    std::fs::remove_file(sharded.join("model.safetensors")).unwrap();
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in names.chunks(names.len() / 2 + 1).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let subset: HashMap<String, HostTensor> = part.iter().map(|n| ((*n).clone(), weights[*n].clone())).collect();
        write_safetensors(&subset, &sharded.join(&file));
        for n in part {
            weight_map.insert((*n).clone(), serde_json::Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let from_shards = LoadedModel::load(sharded.to_str().unwrap(), &device).unwrap();
    assert_eq!(max_diff(&reference, &logits(&from_shards.model)), 0.0);

    // The same directory as a snapshot in a Hugging Face hub cache.
    let hub = dir.join("hub");
    let snapshot = hub.join("models--acme--tiny").join("snapshots").join("0123abcd");
    std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
    std::fs::rename(&hf, &snapshot).unwrap();
    std::fs::create_dir_all(hub.join("models--acme--tiny").join("refs")).unwrap();
    std::fs::write(hub.join("models--acme--tiny").join("refs").join("main"), "0123abcd").unwrap();
    let found = resolve_hub_cache("acme", "tiny", &hub).unwrap();
    assert_eq!(found, ModelFormat::HfDir(snapshot.clone()));
    let from_cache = LoadedModel::load_format(found, &device).unwrap();
    assert_eq!(max_diff(&reference, &logits(&from_cache.model)), 0.0);
    let err = resolve_hub_cache("acme", "absent", &hub).unwrap_err().to_string();
    assert!(err.contains("not in the local Hugging Face cache"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
