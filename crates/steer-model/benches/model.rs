//! Criterion benchmarks on the default model: load time, batched forward
//! throughput, decode speed with and without a steering vector, and the
//! sweep kernel (shared prefixes, then every variant as a copy of the last
//! token in one pass).
//!
//! Run with `cargo bench --workspace --profile dev --bench model` after
//! `cargo xtask setup`: that reuses the test build, where `-p steer-model`
//! would resolve other features and rebuild burn. The backend is
//! `STEERBENCH_BENCH_BACKEND` (cpu by default).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steer_model::weights::random_tokens;
use steer_model::{Backend, Edit, ForwardRequest, GenerateOptions, LoadedModel, LogitsMode, Positions, Sampling};

/// The allocator the `steerbench` binary runs with.
#[global_allocator]
static ALLOCATOR: steer_model::allocator::Allocator = steer_model::allocator::Allocator;

fn backend() -> Backend {
    std::env::var("STEERBENCH_BENCH_BACKEND")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .expect("STEERBENCH_BENCH_BACKEND names a backend of this build")
}

fn load() -> LoadedModel {
    steer_model::allocator::keep_freed_memory();
    let device = backend().device().expect("backend is usable");
    LoadedModel::load("default", &device).expect("the default model is installed (cargo xtask setup)")
}

fn bench_load(c: &mut Criterion) {
    steer_model::allocator::keep_freed_memory();
    let device = backend().device().expect("backend is usable");
    let mut group = c.benchmark_group("load");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("default_model", |b| {
        b.iter(|| LoadedModel::load("default", &device).unwrap())
    });
    group.finish();
}

fn bench_forward(c: &mut Criterion) {
    let model = load();
    let batch = random_tokens(8, 128, model.model.config().vocab_size, 0);
    let mut group = c.benchmark_group("forward");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(8 * 128));
    let all = ForwardRequest {
        captures: &[],
        edits: &[],
        logits: LogitsMode::All,
    };
    group.bench_function("batch8x128_all_logits", |b| {
        b.iter(|| model.model.forward(&batch, &all).unwrap())
    });
    let last = ForwardRequest {
        captures: &[],
        edits: &[],
        logits: LogitsMode::Last,
    };
    group.bench_function("batch8x128_last_logits", |b| {
        b.iter(|| model.model.forward(&batch, &last).unwrap())
    });
    group.finish();
}

fn bench_decode(c: &mut Criterion) {
    let model = load();
    let prompt = random_tokens(1, 16, model.model.config().vocab_size, 1);
    let d = model.model.config().hidden_size;
    let opts = GenerateOptions {
        max_new_tokens: 64,
        sampling: Sampling::Greedy,
        eos_ids: vec![],
    };
    let steer = Edit::AddVector {
        layer: 15,
        vector: (0..d).map(|i| ((i * 7919) % 13) as f32 * 0.05 - 0.3).collect(),
        positions: Positions::All,
        multipliers: vec![],
    };
    let mut group = c.benchmark_group("decode");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(64));
    group.bench_function("greedy64_unsteered", |b| {
        b.iter(|| model.model.generate(&prompt, &[], &opts).unwrap())
    });
    group.bench_function("greedy64_steered", |b| {
        b.iter(|| {
            model
                .model
                .generate(&prompt, std::slice::from_ref(&steer), &opts)
                .unwrap()
        })
    });
    group.finish();
}

/// Four prompts of 150 tokens; 30 layers × 4 non-zero multipliers + 1 unsteered
/// = 121 copies of each prompt's last token, each with its own multiplier.
fn bench_sweep(c: &mut Criterion) {
    let model = load();
    let cfg = model.model.config().clone();
    let prompts = random_tokens(4, 150, cfg.vocab_size, 2);
    let rests: Vec<Vec<u32>> = prompts.iter().map(|p| p[..p.len() - 1].to_vec()).collect();
    let lasts: Vec<Vec<u32>> = prompts.iter().map(|p| vec![p[p.len() - 1]]).collect();
    let grid = [-2.0f32, -1.0, 1.0, 2.0];
    let variants = 1 + cfg.num_hidden_layers * grid.len();
    let edits: Vec<Edit> = (0..cfg.num_hidden_layers)
        .map(|layer| Edit::AddVector {
            layer,
            vector: (0..cfg.hidden_size)
                .map(|i| ((i * 31 + layer) % 17) as f32 * 0.02 - 0.16)
                .collect(),
            positions: Positions::PromptEndOnward,
            multipliers: (0..prompts.len())
                .flat_map(|_| {
                    (0..variants).map(move |v| match v {
                        0 => 0.0,
                        v if (v - 1) / grid.len() == layer => grid[(v - 1) % grid.len()],
                        _ => 0.0,
                    })
                })
                .collect(),
        })
        .collect();
    let req = ForwardRequest {
        captures: &[],
        edits: &edits,
        logits: LogitsMode::Last,
    };
    let mut group = c.benchmark_group("sweep");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements((prompts.len() * variants) as u64));
    group.bench_function("prefixes_4x149", |b| {
        b.iter(|| model.model.shared_prefixes(&rests).unwrap())
    });
    let prefix = model.model.shared_prefixes(&rests).unwrap();
    group.bench_function("variants_4x121", |b| {
        b.iter(|| model.model.forward_variants(&prefix, &lasts, variants, &req).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_load, bench_forward, bench_decode, bench_sweep);
criterion_main!(benches);
