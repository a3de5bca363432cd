//! Criterion benchmarks on the default model: load time, batched forward
//! throughput and decode speed with and without a steering vector.
//!
//! Run with `cargo bench -p steer-model` after `cargo xtask setup`. The
//! backend is `STEERBENCH_BENCH_BACKEND` (cpu by default).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steer_model::weights::random_tokens;
use steer_model::{Backend, Edit, ForwardRequest, GenerateOptions, LoadedModel, LogitsMode, Positions, Sampling};

fn backend() -> Backend {
    std::env::var("STEERBENCH_BENCH_BACKEND")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .expect("STEERBENCH_BENCH_BACKEND names a backend of this build")
}

fn load() -> LoadedModel {
    let device = backend().device().expect("backend is usable");
    LoadedModel::load("default", &device).expect("the default model is installed (cargo xtask setup)")
}

fn bench_load(c: &mut Criterion) {
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

criterion_group!(benches, bench_load, bench_forward, bench_decode);
criterion_main!(benches);
