//! `steerbench perf`: a fixed workload on a real model, timed, for comparison
//! with `tools/perf_torch.py`, which runs the same workload with PyTorch,
//! transformers and the steering-vectors library.
//!
//! The workload:
//! 1. a forward pass over 8 rows of 128 WikiText-2 tokens, every logit returned;
//! 2. a CAA fit on the first 200 items of the sycophancy generate set, at every layer;
//! 3. the validation sweep: every layer × multipliers −2…2 × the first 20
//!    sycophancy A/B test items, the matching-minus-other letter logit
//!    difference at the answer position, and the (layer, multiplier) it chooses;
//! 4. greedy decoding of 64 tokens from a chat prompt, unsteered and with the
//!    layer-15 CAA vector (×2) added at every position.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use steer_methods::{Steering, SteeringKind};
use steer_model::{
    ChatMessage, Edit, ForwardRequest, GenerateOptions, LoadedModel, LogitsMode, ModelConfig, Positions, Sampling,
};
use steer_suites::ab;
use steer_suites::protocol::{EvalOptions, choose, fit_sweep};
use steer_suites::stats::sigmoid;

/// Rows and tokens per row of the forward pass.
pub const FORWARD_SHAPE: (usize, usize) = (8, 128);
/// Bytes of WikiText-2 read for the forward pass (cut back to a line end).
pub const FORWARD_TEXT_BYTES: usize = 16_000;
/// Items of the sycophancy generate set the CAA vectors are fitted on.
pub const FIT_ITEMS: usize = 200;
/// Sycophancy A/B test items of the sweep.
pub const SWEEP_ITEMS: usize = 20;
/// Multipliers of the sweep.
pub const SWEEP_MULTIPLIERS: [f32; 5] = [-2.0, -1.0, 0.0, 1.0, 2.0];
/// Tokens greedily decoded.
pub const DECODE_TOKENS: usize = 64;
/// Layer whose CAA vector steers the decode.
pub const DECODE_LAYER: usize = 15;
/// Multiplier of the decode's steering vector.
pub const DECODE_MULTIPLIER: f32 = 2.0;
/// The decode's chat prompt.
pub const DECODE_PROMPT: &str = "Give me three tips for staying focused while studying.";

/// The figures of one run, as both implementations write them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerfReport {
    /// Which implementation produced the figures.
    pub implementation: String,
    /// Worker threads.
    pub threads: usize,
    /// Model load time, seconds.
    pub load_s: f64,
    /// Median forward time, seconds.
    pub forward_s: f64,
    /// CAA fit time at every layer, seconds.
    pub fit_s: f64,
    /// Sweep time, seconds.
    pub sweep_s: f64,
    /// Greedy decode time, seconds.
    pub decode_s: f64,
    /// Steered greedy decode time, seconds.
    pub decode_steered_s: f64,
    /// Chosen layer of the sweep.
    pub chosen_layer: usize,
    /// Chosen multiplier of the sweep.
    pub chosen_multiplier: f32,
    /// Sweep margins `[layer][multiplier][item]`.
    pub margins: Vec<Vec<Vec<f32>>>,
    /// Norm of each layer's CAA vector.
    pub vector_norms: Vec<f32>,
}

/// Runs `work` once untimed, then three times timed; the median seconds.
fn median_of_three(mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    work()?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        work()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// WikiText-2 test text cut to the last line end before `FORWARD_TEXT_BYTES`.
fn forward_text(suites: &Path) -> Result<String> {
    let path = suites.join("perplexity/wikitext2/wiki.test.raw");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let end = text[..FORWARD_TEXT_BYTES.min(text.len())]
        .rfind('\n')
        .with_context(|| {
            format!(
                "{}: no line end in the first {FORWARD_TEXT_BYTES} bytes",
                path.display()
            )
        })?;
    Ok(text[..end].to_string())
}

/// FLOPs of one token through the blocks with `context` keys in attention,
/// plus the LM head when `logits` is set (multiply-adds count two).
fn flops_per_token(cfg: &ModelConfig, context: usize, logits: bool) -> f64 {
    let d = cfg.hidden_size as f64;
    let hd = cfg.head_dim() as f64;
    let q = cfg.num_attention_heads as f64 * hd;
    let kv = cfg.num_key_value_heads as f64 * hd;
    let f = cfg.intermediate_size as f64;
    let linear = d * q + 2.0 * d * kv + q * d + 3.0 * d * f;
    let attention = 2.0 * q * context as f64;
    let blocks = cfg.num_hidden_layers as f64 * 2.0 * (linear + attention);
    blocks + if logits { 2.0 * d * cfg.vocab_size as f64 } else { 0.0 }
}

/// The machine's peak f32 rate for AVX2 FMA (two 8-wide FMA units per core), GFLOP/s, and its description.
fn peak_gflops(threads: usize) -> (f64, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let mhz: f64 = field("cpu MHz").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    (
        threads as f64 * mhz / 1000.0 * 32.0,
        format!("{model}, {threads} threads at {mhz:.0} MHz"),
    )
}

/// Runs the workload on `model_spec`, prints the table (against `compare`
/// when given) and writes the figures to `json` when given.
pub fn run(
    model_spec: &str,
    backend: &str,
    suites: &Path,
    json: Option<&PathBuf>,
    compare: Option<&PathBuf>,
) -> Result<()> {
    // A report to compare against is read first, so that a bad file fails before the workload runs.
    let other = match compare {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
            Some(
                serde_json::from_str::<PerfReport>(&text)
                    .with_context(|| format!("{}: not a perf report", path.display()))?,
            )
        }
        None => None,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let backend: steer_model::Backend = backend.parse()?;
    let device = backend.device()?;
    let started = Instant::now();
    let loaded = LoadedModel::load(model_spec, &device)?;
    let load_s = started.elapsed().as_secs_f64();
    let model = &loaded.model;
    let tokenizer = &loaded.tokenizer;
    let cfg = model.config().clone();
    if cfg.num_hidden_layers <= DECODE_LAYER {
        bail!(
            "the perf workload steers layer {DECODE_LAYER}; this model has {} layers",
            cfg.num_hidden_layers
        );
    }

    // 1. Forward.
    let (rows, seq) = FORWARD_SHAPE;
    let ids = tokenizer.encode(&forward_text(suites)?, false)?;
    if ids.len() < rows * seq {
        bail!("the forward text gives {} tokens; {} are needed", ids.len(), rows * seq);
    }
    let batch: Vec<Vec<u32>> = ids.chunks(seq).take(rows).map(<[u32]>::to_vec).collect();
    let req = ForwardRequest {
        captures: &[],
        edits: &[],
        logits: LogitsMode::All,
    };
    let forward_s = median_of_three(|| {
        model.forward(&batch, &req)?;
        Ok(())
    })?;
    eprintln!("forward {rows}×{seq}: {forward_s:.3} s");

    // 2. CAA fit at every layer.
    let mcq = suites.join("mcq/sycophancy");
    let mut train = ab::read_items(&mcq.join("generate_dataset.json"))?;
    train.truncate(FIT_ITEMS);
    let layers: Vec<usize> = (0..cfg.num_hidden_layers).collect();
    let caa = steer_methods::registry::find("caa").context("the caa method is not registered")?;
    let opts = EvalOptions::default();
    let start = Instant::now();
    let mut data = ab::training_set(tokenizer, &train)?;
    let (steerings, _) = fit_sweep(model, caa.as_ref(), &mut data, &layers, &opts)?;
    let fit_s = start.elapsed().as_secs_f64();
    eprintln!("CAA fit, {} items × {} layers: {fit_s:.2} s", train.len(), layers.len());
    let vector_of = |s: &Steering| -> Result<Vec<f32>> {
        match &s.kind {
            SteeringKind::Additive { vectors } if vectors.len() == 1 => Ok(vectors[0].1.clone()),
            _ => bail!("CAA gave a steering that is not one additive vector"),
        }
    };
    let vectors: Vec<Vec<f32>> = steerings.iter().map(vector_of).collect::<Result<_>>()?;
    let vector_norms = vectors
        .iter()
        .map(|v| v.iter().map(|x| x * x).sum::<f32>().sqrt())
        .collect();

    // 3. Sweep.
    let mut test = ab::read_items(&mcq.join("test_dataset_ab.json"))?;
    test.truncate(SWEEP_ITEMS);
    let (prompts, letters) = ab::prompts_and_letters(tokenizer, &test)?;
    let start = Instant::now();
    let margins = ab::letter_margins(
        model,
        &prompts,
        &letters,
        &steerings,
        &SWEEP_MULTIPLIERS,
        opts.batch_size,
    )?;
    let sweep_s = start.elapsed().as_secs_f64();
    let scores: Vec<f64> = margins
        .iter()
        .flat_map(|per_layer| {
            per_layer
                .iter()
                .map(|v| v.iter().map(|x| sigmoid(*x as f64)).sum::<f64>() / v.len() as f64)
        })
        .collect();
    let chosen = choose(&scores, &SWEEP_MULTIPLIERS)?;
    let (chosen_layer, chosen_multiplier) = (
        chosen / SWEEP_MULTIPLIERS.len(),
        SWEEP_MULTIPLIERS[chosen % SWEEP_MULTIPLIERS.len()],
    );
    eprintln!("sweep: {sweep_s:.2} s, chose layer {chosen_layer} × {chosen_multiplier}");

    // 4. Greedy decode, unsteered and steered.
    let messages = [ChatMessage {
        role: "user".into(),
        content: DECODE_PROMPT.into(),
    }];
    let prompt = tokenizer.encode_chat(&messages, true)?;
    let gen_opts = GenerateOptions {
        max_new_tokens: DECODE_TOKENS,
        sampling: Sampling::Greedy,
        eos_ids: Vec::new(),
    };
    let steer = [Edit::AddVector {
        layer: DECODE_LAYER,
        vector: vectors[DECODE_LAYER].iter().map(|x| x * DECODE_MULTIPLIER).collect(),
        positions: Positions::All,
        multipliers: Vec::new(),
    }];
    let decode = |edits: &[Edit]| -> Result<f64> {
        median_of_three(|| {
            let out = model.generate(std::slice::from_ref(&prompt), edits, &gen_opts)?;
            if out[0].len() != DECODE_TOKENS {
                bail!("decoding gave {} tokens, expected {DECODE_TOKENS}", out[0].len());
            }
            Ok(())
        })
    };
    let decode_s = decode(&[])?;
    let decode_steered_s = decode(&steer)?;

    let report = PerfReport {
        implementation: format!("steerbench {} ({backend})", env!("CARGO_PKG_VERSION")),
        threads,
        load_s,
        forward_s,
        fit_s,
        sweep_s,
        decode_s,
        decode_steered_s,
        chosen_layer,
        chosen_multiplier,
        margins,
        vector_norms,
    };
    if let Some(path) = json {
        let text = serde_json::to_string(&report)?;
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let sweep_lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
    print_table(&cfg, &report, other.as_ref(), prompt.len(), &sweep_lens)
}

/// Prints the figures, GFLOP/s against the machine's peak and, with a second report, the ratios.
fn print_table(
    cfg: &ModelConfig,
    ours: &PerfReport,
    other: Option<&PerfReport>,
    prompt_len: usize,
    sweep_lens: &[usize],
) -> Result<()> {
    let (rows, seq) = FORWARD_SHAPE;
    let forward_flops: f64 = rows as f64 * (1..=seq).map(|c| flops_per_token(cfg, c, true)).sum::<f64>();
    // The useful work of the sweep: each (layer, multiplier, item) scored once at the answer position.
    let sweep_flops: f64 = sweep_lens
        .iter()
        .map(|&n| (1..=n).map(|c| flops_per_token(cfg, c, c == n)).sum::<f64>())
        .sum::<f64>()
        * (cfg.num_hidden_layers * SWEEP_MULTIPLIERS.len()) as f64;
    let decode_flops: f64 = (prompt_len..prompt_len + DECODE_TOKENS)
        .map(|c| flops_per_token(cfg, c, true))
        .sum::<f64>()
        + (1..prompt_len).map(|c| flops_per_token(cfg, c, false)).sum::<f64>();
    let (peak, machine) = peak_gflops(ours.threads);
    println!("machine: {machine}; AVX2 FMA peak {peak:.0} GFLOP/s");
    println!("implementation: {}", ours.implementation);
    if let Some(o) = other {
        println!("compared with: {} ({} threads)", o.implementation, o.threads);
    }
    println!();
    println!(
        "{:<44} {:>10} {:>12} {:>9} {:>10} {:>8}",
        "workload", "seconds", "rate", "GFLOP/s", "other s", "speed-up"
    );
    let line = |name: &str, s: f64, rate: String, flops: Option<f64>, o: Option<f64>| {
        let gflops = flops.map_or("—".to_string(), |f| format!("{:.1}", f / s / 1e9));
        let (os, ratio) = match o {
            Some(o) => (format!("{o:.3}"), format!("{:.2}×", o / s)),
            None => ("—".into(), "—".into()),
        };
        println!("{name:<44} {s:>10.3} {rate:>12} {gflops:>9} {os:>10} {ratio:>8}");
    };
    line("model load", ours.load_s, String::new(), None, other.map(|o| o.load_s));
    line(
        &format!("1. forward {rows}×{seq}, all logits"),
        ours.forward_s,
        format!("{:.0} tok/s", (rows * seq) as f64 / ours.forward_s),
        Some(forward_flops),
        other.map(|o| o.forward_s),
    );
    line(
        &format!("2. CAA fit, {FIT_ITEMS} items, {} layers", cfg.num_hidden_layers),
        ours.fit_s,
        format!("{:.1} items/s", FIT_ITEMS as f64 / ours.fit_s),
        None,
        other.map(|o| o.fit_s),
    );
    let scores = cfg.num_hidden_layers * SWEEP_MULTIPLIERS.len() * sweep_lens.len();
    line(
        &format!(
            "3. sweep {}×{}×{}",
            cfg.num_hidden_layers,
            SWEEP_MULTIPLIERS.len(),
            sweep_lens.len()
        ),
        ours.sweep_s,
        format!("{:.0} scores/s", scores as f64 / ours.sweep_s),
        Some(sweep_flops),
        other.map(|o| o.sweep_s),
    );
    line(
        &format!("4. greedy decode {DECODE_TOKENS} tokens"),
        ours.decode_s,
        format!("{:.1} tok/s", DECODE_TOKENS as f64 / ours.decode_s),
        Some(decode_flops),
        other.map(|o| o.decode_s),
    );
    line(
        &format!("4. greedy decode {DECODE_TOKENS} tokens, steered"),
        ours.decode_steered_s,
        format!("{:.1} tok/s", DECODE_TOKENS as f64 / ours.decode_steered_s),
        Some(decode_flops),
        other.map(|o| o.decode_steered_s),
    );
    println!();
    println!(
        "steered decode costs {:+.1} % over unsteered",
        100.0 * (ours.decode_steered_s / ours.decode_s - 1.0)
    );
    println!(
        "sweep chose layer {} × {}{}",
        ours.chosen_layer,
        ours.chosen_multiplier,
        other.map_or(String::new(), |o| format!(
            "; the other implementation chose layer {} × {} ({})",
            o.chosen_layer,
            o.chosen_multiplier,
            if (o.chosen_layer, o.chosen_multiplier) == (ours.chosen_layer, ours.chosen_multiplier) {
                "the same"
            } else {
                "DIFFERENT"
            }
        ))
    );
    println!("sweep GFLOP/s counts the useful work of a naive loop (one full pass per score); prefix reuse does less.");
    if let Some(o) = other {
        let flat = |m: &Vec<Vec<Vec<f32>>>| m.iter().flatten().flatten().copied().collect::<Vec<f32>>();
        let (a, b) = (flat(&ours.margins), flat(&o.margins));
        if a.len() != b.len() {
            bail!("the two reports hold {} and {} sweep margins", a.len(), b.len());
        }
        let max = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        let norms = ours
            .vector_norms
            .iter()
            .zip(&o.vector_norms)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs() / y.abs().max(1e-6)));
        println!("largest |Δ margin| between the two: {max:.2e}; largest relative Δ of a CAA vector norm: {norms:.2e}");
    }
    Ok(())
}
