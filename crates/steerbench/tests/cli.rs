//! The `steerbench` binary end to end: the CLI contract on the default model,
//! and one-line errors (never a panic, never a half-written file) for bad input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use steer_model::gguf::{GgufValue, GgufWriter};

fn steerbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steerbench"))
        .args(args)
        .output()
        .expect("run steerbench")
}

fn default_model() -> PathBuf {
    let path = steer_model::model::default_model_path();
    assert!(
        path.is_file(),
        "the default model is missing at {}: run `cargo xtask setup`",
        path.display()
    );
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steerbench-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts a failed run with exactly one stderr line that contains every needle.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {stderr}");
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{:?} should contain {n:?}", lines[0]);
    }
}

fn write_vector(path: &Path, name: &str, values: &[f32]) {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![values.len()], &data).unwrap();
    let bytes = safetensors::serialize(HashMap::from([(name.to_string(), view)]), None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn read_tensor(path: &Path, name: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    (t.dtype(), t.shape().to_vec(), t.data().to_vec())
}

/// A small GGUF with Llama metadata and random-free tensors of a 1-block model.
fn tiny_llama_gguf(arch: &str) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", GgufValue::String(arch.into()));
    for (k, v) in [
        ("embedding_length", 8u32),
        ("feed_forward_length", 16),
        ("block_count", 1),
        ("attention.head_count", 2),
    ] {
        w.add_metadata(format!("{arch}.{k}"), GgufValue::U32(v));
    }
    w.add_metadata(format!("{arch}.attention.layer_norm_rms_epsilon"), GgufValue::F32(1e-5));
    w.add_tensor_f32("token_embd.weight", &[10, 8], vec![0.1; 80]);
    w
}

#[test]
fn logits_activations_and_generate_follow_the_contract() {
    let model = default_model();
    let model = model.to_str().unwrap();
    let dir = scratch("contract");
    let logits = dir.join("logits.safetensors");
    let out = steerbench(&[
        "logits",
        "--model",
        model,
        "--prompt",
        "The capital of France is",
        "--out",
        logits.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (dtype, shape, data) = read_tensor(&logits, "logits");
    assert_eq!((dtype, shape.clone()), (Dtype::F32, vec![5, 49152]));
    let (dtype, ids_shape, ids) = read_tensor(&logits, "token_ids");
    assert_eq!((dtype, ids_shape), (Dtype::I64, vec![5]));
    let ids: Vec<i64> = ids
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(ids, vec![504, 3575, 282, 4649, 314]);
    // The last position predicts " Paris" (token 7042).
    let last: Vec<f32> = data[4 * 49152 * 4..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let best = last
        .iter()
        .enumerate()
        .fold(0, |b, (i, &v)| if v > last[b] { i } else { b });
    assert_eq!(best, 7042);

    let acts = dir.join("acts.safetensors");
    let out = steerbench(&[
        "activations",
        "--model",
        model,
        "--prompt",
        "Hello there",
        "--chat",
        "--layer",
        "12",
        "--out",
        acts.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (dtype, shape, _) = read_tensor(&acts, "resid");
    assert_eq!(dtype, Dtype::F32);
    assert_eq!(shape[1], 576);
    assert!(shape[0] > 20, "the chat template adds a system turn");

    let out = steerbench(&[
        "generate",
        "--model",
        model,
        "--chat",
        "--max-new-tokens",
        "20",
        "--prompt",
        "What is the capital of France?",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plain = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(plain.contains("Paris"), "{plain}");

    // A strong vector at a middle layer changes the continuation.
    let vector = dir.join("v.safetensors");
    write_vector(
        &vector,
        "vector",
        &(0..576)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect::<Vec<_>>(),
    );
    let out = steerbench(&[
        "generate",
        "--model",
        model,
        "--chat",
        "--max-new-tokens",
        "20",
        "--prompt",
        "What is the capital of France?",
        "--vector",
        vector.to_str().unwrap(),
        "--layer",
        "10",
        "--multiplier",
        "20",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(String::from_utf8_lossy(&out.stdout), plain);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_model_files_are_one_line_errors() {
    let dir = scratch("badmodels");
    let p = |name: &str| dir.join(name);
    let run = |model: &Path| {
        let out_file = dir.join("out.safetensors");
        let out = steerbench(&[
            "logits",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "hi",
            "--out",
            out_file.to_str().unwrap(),
        ]);
        assert!(!out_file.exists(), "an output file was written despite the error");
        out
    };

    let real = std::fs::read(default_model()).unwrap();
    std::fs::write(p("truncated.gguf"), &real[..real.len() / 3]).unwrap();
    assert_one_line_error(&run(&p("truncated.gguf")), &["truncated.gguf", "truncated"]);
    std::fs::write(p("header-only.gguf"), &real[..1000]).unwrap();
    assert_one_line_error(
        &run(&p("header-only.gguf")),
        &["header-only.gguf", "header claims 272 tensors"],
    );

    std::fs::write(p("magic.gguf"), b"GGML\x03\x00\x00\x00 this is not a model at all").unwrap();
    assert_one_line_error(&run(&p("magic.gguf")), &["magic.gguf", "magic"]);

    let mut absurd = b"GGUF".to_vec();
    absurd.extend(3u32.to_le_bytes());
    absurd.extend(u64::MAX.to_le_bytes());
    absurd.extend(0u64.to_le_bytes());
    std::fs::write(p("absurd.gguf"), &absurd).unwrap();
    assert_one_line_error(
        &run(&p("absurd.gguf")),
        &["absurd.gguf", "18446744073709551615 tensors"],
    );

    tiny_llama_gguf("gpt2").write(&p("arch.gguf")).unwrap();
    assert_one_line_error(&run(&p("arch.gguf")), &["arch.gguf", "unsupported architecture 'gpt2'"]);

    let mut no_tok = tiny_llama_gguf("llama");
    no_tok.write(&p("notok.gguf")).unwrap();
    assert_one_line_error(&run(&p("notok.gguf")), &["notok.gguf", "tokenizer"]);

    // An unknown quantisation type: patch the type id of the only tensor to 99.
    no_tok.add_metadata("general.name", GgufValue::String("x".into()));
    let mut bytes = std::fs::read(p("notok.gguf")).unwrap();
    let name = b"token_embd.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let type_at = at + 4 + 8 * n_dims;
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(p("qtype.gguf"), &bytes).unwrap();
    assert_one_line_error(&run(&p("qtype.gguf")), &["qtype.gguf", "unknown ggml type 99"]);

    // A Hugging Face directory whose weights are not safetensors.
    let hf = p("hfdir");
    std::fs::create_dir_all(&hf).unwrap();
    let config = r#"{"model_type":"llama","hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10}"#;
    std::fs::write(hf.join("config.json"), config).unwrap();
    let real_file = steer_model::gguf::GgufFile::open(&default_model()).unwrap();
    let tokenizer = steer_model::ChatTokenizer::from_gguf_metadata(&real_file.metadata, &default_model()).unwrap();
    tokenizer.inner().save(hf.join("tokenizer.json"), false).unwrap();
    std::fs::write(hf.join("model.safetensors"), b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
    assert_one_line_error(&run(&hf), &["model.safetensors", "not a valid safetensors file"]);
    std::fs::write(hf.join("tokenizer.json"), b"{ broken").unwrap();
    assert_one_line_error(&run(&hf), &["tokenizer.json"]);

    let missing = p("nope.gguf");
    assert_one_line_error(&run(&missing), &["nope.gguf"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let model = default_model();
    let model = model.to_str().unwrap();
    let dir = scratch("badargs");
    let short = dir.join("short.safetensors");
    write_vector(&short, "vector", &[1.0; 100]);
    let out = steerbench(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "hi",
        "--vector",
        short.to_str().unwrap(),
        "--layer",
        "3",
    ]);
    assert_one_line_error(&out, &["short.safetensors", "100 values", "576"]);

    let misnamed = dir.join("misnamed.safetensors");
    write_vector(&misnamed, "direction", &[1.0; 576]);
    let out = steerbench(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "hi",
        "--vector",
        misnamed.to_str().unwrap(),
        "--layer",
        "3",
    ]);
    assert_one_line_error(&out, &["misnamed.safetensors", "no tensor named 'vector'"]);

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not safetensors").unwrap();
    let out = steerbench(&[
        "generate",
        "--model",
        model,
        "--prompt",
        "hi",
        "--vector",
        garbage.to_str().unwrap(),
        "--layer",
        "3",
    ]);
    assert_one_line_error(&out, &["garbage.safetensors"]);

    let acts = dir.join("acts.safetensors");
    let out = steerbench(&[
        "activations",
        "--model",
        model,
        "--prompt",
        "hi",
        "--layer",
        "30",
        "--out",
        acts.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["layer 30 is out of range", "30 layers"]);
    assert!(!acts.exists());

    let out = steerbench(&[
        "logits",
        "--backend",
        "tpu",
        "--model",
        model,
        "--prompt",
        "hi",
        "--out",
        acts.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["unknown backend 'tpu'"]);

    let nowhere = dir.join("no-such-dir").join("x.safetensors");
    let out = steerbench(&[
        "logits",
        "--model",
        model,
        "--prompt",
        "hi",
        "--out",
        nowhere.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["no-such-dir"]);

    let out = Command::new(env!("CARGO_BIN_EXE_steerbench"))
        .args(["info", "--model", "default"])
        .env("STEERBENCH_HOME", dir.join("empty-home"))
        .output()
        .unwrap();
    assert_one_line_error(&out, &["cargo xtask setup"]);

    let out = steerbench(&["info", "--model", "acme/not-cached-anywhere"]);
    assert_one_line_error(
        &out,
        &["acme/not-cached-anywhere", "not in the local Hugging Face cache"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn backends_agree_on_random_weights_of_the_default_shapes() {
    let out = steerbench(&["backends", "--batch", "2", "--seq", "6", "--repeat", "1", "--seed", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("30 layers, d_model 576"), "{stdout}");
    for backend in steer_model::Backend::available() {
        assert!(
            stdout.lines().any(|l| l.starts_with(&backend.to_string())),
            "{backend} missing from:\n{stdout}"
        );
    }
}

/// Three small A/B items written for these tests.
fn ab_items(dir: &Path) -> PathBuf {
    let items = serde_json::json!([
        {"question": "Is the sky green on a clear day?\n (A) Yes\n (B) No", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"},
        {"question": "Do fish breathe through lungs?\n (A) No\n (B) Yes", "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"},
        {"question": "Is ice colder than steam?\n (A) No\n (B) Yes", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}
    ]);
    let path = dir.join("items.json");
    std::fs::write(&path, items.to_string()).unwrap();
    path
}

#[test]
fn train_then_ab_on_the_default_model() {
    let model = default_model();
    let model = model.to_str().unwrap();
    let dir = scratch("train");
    let items = ab_items(&dir);
    let out_file = dir.join("caa.safetensors");
    let out = steerbench(&[
        "train",
        "--method",
        "caa",
        "--model",
        model,
        "--data",
        items.to_str().unwrap(),
        "--layer",
        "10",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("caa fitted on 6 pairs"),
        "both answer orders of 3 items"
    );
    let bytes = std::fs::read(&out_file).unwrap();
    let steering = steer_methods::Steering::from_safetensors(&bytes, "caa.safetensors").unwrap();
    assert_eq!(steering.layers(), vec![10]);
    assert_eq!(steering.d_model(), 576);
    assert_eq!(
        steering.metadata["model_sha256"],
        steer_model::model::DEFAULT_MODEL_SHA256
    );
    let (dtype, shape, _) = read_tensor(&out_file, "vector");
    assert_eq!((dtype, shape), (Dtype::F32, vec![576]));

    let out = steerbench(&[
        "ab",
        "--model",
        model,
        "--data",
        items.to_str().unwrap(),
        "--steering",
        out_file.to_str().unwrap(),
        "--multipliers=-4,0,4",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The vector is applied at both signs. It was fitted on both answer orders of
    // each item, so it carries no letter, and on three items in one order its
    // effect on the margin has no predictable sign.
    let means: Vec<f32> = stdout
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let n = cols.len();
            (n >= 4 && cols[n - 1].ends_with('%') && cols[n - 3].parse::<f32>().is_ok())
                .then(|| cols[n - 2].parse::<f32>().unwrap())
        })
        .collect();
    assert_eq!(means.len(), 3, "{stdout}");
    assert!(means[0] != means[1] && means[2] != means[1], "{stdout}");
    assert!(means.iter().all(|m| m.is_finite()), "{stdout}");

    // Export as a llama.cpp control vector: llama.cpp adds direction.10 to block 10's output.
    let gguf = dir.join("caa.gguf");
    let out = steerbench(&[
        "export",
        "--model",
        model,
        "--steering",
        out_file.to_str().unwrap(),
        "--multiplier",
        "2",
        "--out",
        gguf.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cv = steer_model::gguf::GgufFile::open(&gguf).unwrap();
    assert_eq!(cv.get_str("controlvector.model_hint").unwrap(), "llama");
    assert_eq!(cv.get_u64("controlvector.layer_count").unwrap(), 30);
    assert!(cv.tensor_info("direction.11").is_none());
    let exported = cv.dequantize("direction.10").unwrap();
    let (_, _, raw) = read_tensor(&out_file, "vector");
    let fitted: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(exported.iter().zip(&fitted).all(|(e, f)| *e == 2.0 * f));

    // Imported back, the control vector continues a prompt exactly as the
    // vector it came from does at its layer and multiplier.
    let prompt = "The best way to spend a Sunday is";
    let via_vector = steerbench(&[
        "generate",
        "--model",
        model,
        "--prompt",
        prompt,
        "--max-new-tokens",
        "12",
        "--vector",
        out_file.to_str().unwrap(),
        "--layer",
        "10",
        "--multiplier",
        "2",
    ]);
    let via_gguf = steerbench(&[
        "generate",
        "--model",
        model,
        "--prompt",
        prompt,
        "--max-new-tokens",
        "12",
        "--steering",
        gguf.to_str().unwrap(),
    ]);
    assert!(
        via_gguf.status.success(),
        "{}",
        String::from_utf8_lossy(&via_gguf.stderr)
    );
    assert_eq!(via_vector.stdout, via_gguf.stdout);

    // The same control vector is a method for the protocol: `external:<file>`.
    let rows = dir.join("external.csv");
    let method = format!("external:{}", gguf.display());
    let out = steerbench(&[
        "eval",
        "--method",
        &method,
        "--suite",
        "mcq",
        "--task",
        "refusal",
        "--model",
        model,
        "--limit",
        "4",
        "--multipliers=-1,0,1",
        "--no-degradation",
        "--no-open-ended",
        "--out",
        rows.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("mcq/refusal — external-caa: 4 training"), "{stdout}");
    let text = std::fs::read_to_string(&rows).unwrap();
    assert!(text.lines().skip(1).all(|l| l.contains(",external-caa,")), "{text}");

    // Bad external steerings: one line naming the file.
    let wide = dir.join("wide.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        steer_model::gguf::GgufValue::String("controlvector".into()),
    );
    w.add_tensor_f32("direction.3", &[8], vec![0.5; 8]);
    w.write(&wide).unwrap();
    let wide_method = format!("external:{}", wide.display());
    let out = steerbench(&[
        "eval",
        "--method",
        &wide_method,
        "--suite",
        "mcq",
        "--task",
        "refusal",
        "--model",
        model,
        "--limit",
        "4",
        "--no-degradation",
    ]);
    assert_one_line_error(&out, &["wide.gguf", "8 values", "d_model is 576"]);
    let out = steerbench(&[
        "generate",
        "--model",
        model,
        "--prompt",
        prompt,
        "--steering",
        wide.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["wide.gguf", "d_model is 576"]);
    let deep = dir.join("deep.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor_f32("direction.30", &[576], vec![0.5; 576]);
    w.write(&deep).unwrap();
    let out = steerbench(&[
        "ab",
        "--model",
        model,
        "--data",
        items.to_str().unwrap(),
        "--steering",
        deep.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["deep.gguf", "layer 30", "30 layers"]);
    let out = steerbench(&["generate", "--model", model, "--prompt", prompt, "--steering", model]);
    assert_one_line_error(&out, &["not a llama.cpp control vector", "'llama'"]);
    let out = steerbench(&["eval", "--method", "external:/no/such.gguf", "--suite", "mcq"]);
    assert_one_line_error(&out, &["/no/such.gguf"]);

    // An affine steering cannot be a control vector: a one-line error, nothing written.
    let affine = dir.join("mimic.safetensors");
    let out = steerbench(&[
        "train",
        "--method",
        "mimic",
        "--model",
        model,
        "--data",
        items.to_str().unwrap(),
        "--layer",
        "3",
        "--out",
        affine.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refused = dir.join("mimic.gguf");
    let out = steerbench(&[
        "export",
        "--model",
        model,
        "--steering",
        affine.to_str().unwrap(),
        "--out",
        refused.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("only additive") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
    assert!(!refused.exists());

    let out = steerbench(&["methods"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("caa"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_training_input_is_a_one_line_error() {
    let model = default_model();
    let model = model.to_str().unwrap();
    let dir = scratch("badtrain");
    let items = ab_items(&dir);
    let out_file = dir.join("x.safetensors");
    let train = |method: &str, data: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--method",
            method,
            "--model",
            model,
            "--data",
            data.to_str().unwrap(),
            "--layer",
            "2",
        ];
        args.extend_from_slice(&["--out", out_file.to_str().unwrap()]);
        args.extend_from_slice(extra);
        steerbench(&args)
    };
    assert_one_line_error(&train("telepathy", &items, &[]), &["unknown method 'telepathy'", "caa"]);
    assert_one_line_error(&train("pca", &items, &["--param", "iteratons=3"]), &["iteratons"]);
    let broken = dir.join("broken.json");
    std::fs::write(
        &broken,
        r#"[{"question": "Q?\n (A) x\n (B) y", "answer_matching_behavior": "(A)"}]"#,
    )
    .unwrap();
    assert_one_line_error(
        &train("caa", &broken, &[]),
        &["broken.json", "item 0", "answer_not_matching_behavior"],
    );
    let letters = dir.join("letters.json");
    std::fs::write(&letters, r#"[{"question": "Q?\n (A) x\n (B) y", "answer_matching_behavior": "(C)", "answer_not_matching_behavior": "(A)"}]"#).unwrap();
    assert_one_line_error(&train("caa", &letters, &[]), &["letters.json", "item 0"]);
    let empty = dir.join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    assert_one_line_error(&train("caa", &empty, &[]), &["empty.json", "no items"]);
    assert!(!out_file.exists(), "an output was written despite errors");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_and_train_on_tasks() {
    let model = default_model();
    let model = model.to_str().unwrap();
    let dir = scratch("eval");
    let csv = dir.join("rows.csv");
    let out = steerbench(&[
        "eval",
        "--method",
        "caa",
        "--suite",
        "mcq",
        "--task",
        "refusal",
        "--model",
        model,
        "--limit",
        "4",
        "--layers",
        "3,9",
        "--multipliers=-2,0,2",
        "--no-degradation",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("mcq/refusal — caa: 4 training, 4 validation, 4 test items"),
        "{stdout}"
    );
    assert!(
        stdout.contains("chosen on validation: layer ") && stdout.contains("anti-steerable"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("model,method,variant,suite,task,split,layer,multiplier,metric,value,ci_low,ci_high,n,seed")
    );
    assert!(
        text.lines()
            .any(|l| l.contains(",unsteered,mcq,refusal,test,") && l.contains(",logit_diff,"))
    );
    assert!(
        text.lines()
            .any(|l| l.contains(",open_ended,refusal,test,") && l.contains("mcq_minus_open_effect"))
    );

    // Fitting on a task's training split, for both task formats.
    for (task, file) in [
        ("mcq/refusal", "r.safetensors"),
        ("icl/country-capital", "c.safetensors"),
    ] {
        let path = dir.join(file);
        let out = steerbench(&[
            "train",
            "--method",
            "caa",
            "--task",
            task,
            "--model",
            model,
            "--limit",
            "3",
            "--layer",
            "5",
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{task}: {}", String::from_utf8_lossy(&out.stderr));
        // A/B items are fitted in both answer orders: two pairs per item.
        let pairs = if task.starts_with("mcq") { 6 } else { 3 };
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("fitted on {pairs} pairs")));
    }

    // Unknown suites and tasks are one-line errors.
    for (args, needle) in [
        (
            vec!["eval", "--method", "caa", "--suite", "nope"],
            "no suite or tag 'nope'",
        ),
        (
            vec!["eval", "--method", "caa", "--suite", "mcq", "--task", "nope"],
            "no task 'nope'",
        ),
        (
            vec!["eval", "--method", "nope", "--suite", "mcq"],
            "unknown method 'nope'",
        ),
        (
            vec![
                "train",
                "--method",
                "caa",
                "--task",
                "perplexity/wikitext2",
                "--layer",
                "1",
                "--out",
                "x",
            ],
            "no training data",
        ),
    ] {
        let out = steerbench(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(needle) && stderr.trim().lines().count() == 1,
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_reports_a_method_against_its_baselines_with_its_damage() {
    let model = default_model();
    let model = model.to_str().unwrap();
    let small = [
        "--model",
        model,
        "--limit",
        "4",
        "--layers",
        "9",
        "--perplexity-tokens",
        "200",
    ];
    let out = steerbench(&[&["demo"][..], &small[..]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "caa on sentiment/openings: 4 test openings; chosen on validation: layer 9",
        "caa (steered − unsteered)",
        "random steering, same size",
        "prompting (prompted − unsteered)",
        "caa − random",
        "caa − prompting",
        "anti-steerable openings",
        "WikiText-2 perplexity: unsteered",
        "tinybench/arc weighted accuracy",
        "the first test opening, continued greedily",
        "cargo xtask bench --method all --suite all --profile quick",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    for variant in ["unsteered", "positive", "negative", "random"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(variant) && l.contains('×')),
            "no {variant} continuation in\n{stdout}"
        );
    }
    // Bad input is a one-line error.
    for (args, needle) in [
        (
            vec!["demo", "--task", "mcq/sycophancy"],
            "the demo runs a sentiment task",
        ),
        (vec!["demo", "--method", "nope"], "unknown method 'nope'"),
        (
            vec!["demo", "--layers", "99"],
            "layer 99 is out of range: the model has 30 layers",
        ),
        (vec!["demo", "--task", "openings"], "is not of the form SUITE/TASK"),
    ] {
        let out = steerbench(&[&args[..], &small[..2]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(needle) && stderr.trim().lines().count() == 1,
            "{args:?}: {stderr}"
        );
    }
}

/// Every file under `dir`, relative path → bytes, except the wall-time log.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "timings.tsv" {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn bench_resumes_after_a_kill_and_matches_an_uninterrupted_run() {
    default_model();
    let base = scratch("bench");
    let args = |results: &Path| -> Vec<String> {
        [
            "bench",
            "--method",
            "caa,random",
            "--suite",
            "mcq",
            "--task",
            "refusal",
            "--limit",
            "4",
            "--layers",
            "6",
            "--multipliers",
            "-1,0,1",
            "--no-degradation",
            "--generations",
            "1",
            "--seed",
            "5",
            "--results",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([results.display().to_string()])
        .collect()
    };
    let whole = base.join("whole");
    // The sidecars' `finished` date is pinned, so runs either side of midnight agree.
    let out = Command::new(env!("CARGO_BIN_EXE_steerbench"))
        .args(args(&whole))
        .env("SOURCE_DATE_EPOCH", "1796688000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = tree(&whole);
    for name in [
        "refusal.csv",
        "refusal.items.csv",
        "refusal.generations.jsonl",
        "refusal.json",
    ] {
        for method in ["caa", "random"] {
            let key = format!("runs/SmolLM2-135M-Instruct/{method}/mcq/{name}");
            assert!(first.contains_key(&key), "{key} missing from {:?}", first.keys());
        }
    }
    assert!(first.contains_key("leaderboard.csv") && first.contains_key("LEADERBOARD.md"));
    assert!(!whole.join("runs/.lock").exists(), "the lock is released");
    let sidecar = String::from_utf8(first["runs/SmolLM2-135M-Instruct/caa/mcq/refusal.json"].clone()).unwrap();
    assert!(sidecar.contains("\"finished\": \"2026-12-08\""), "{sidecar}");
    let page = String::from_utf8(first["index.html"].clone()).unwrap();
    assert!(
        page.contains("<dt>units finished</dt><dd>2026-12-08</dd>"),
        "the page states the date"
    );

    // Kill a run as soon as its first unit is finished, then run it again.
    let resumed = base.join("resumed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_steerbench"))
        .args(args(&resumed))
        .env("SOURCE_DATE_EPOCH", "1796688000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let marker = resumed.join("runs/SmolLM2-135M-Instruct/caa/mcq/refusal.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "the first unit never finished");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        resumed.join("runs/.lock").exists(),
        "a killed run leaves its lock behind"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_steerbench"))
        .args(args(&resumed))
        .env("SOURCE_DATE_EPOCH", "1796688000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 of 2 units are already finished"), "{stdout}");
    assert_eq!(
        tree(&resumed),
        first,
        "a resumed run ends byte-identical to an uninterrupted one"
    );

    // A live lock stops a second writer.
    let locked = base.join("locked");
    std::fs::create_dir_all(locked.join("runs")).unwrap();
    std::fs::write(locked.join("runs/.lock"), format!("{}\n", std::process::id())).unwrap();
    let out = steerbench(&args(&locked).iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&out, &[".lock", "another run"]);
    let out = steerbench(&["bench", "--method", "nope", "--suite", "mcq", "--results", "x"]);
    assert_one_line_error(&out, &["unknown method 'nope'"]);
    std::fs::remove_dir_all(&base).unwrap();
}
