//! Criterion benchmarks of the affine methods' linear algebra at the default
//! model's width (576): the symmetric eigendecomposition, the matrix square
//! root and its inverse, the product, and MiMiC's whole transport map from
//! 600 rows per class (the size of a task's training split).
//!
//! Run with `cargo bench --workspace --profile dev --bench linalg`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use steer_methods::linalg::{covariance, matmul, mean, shrink, sqrt_and_inv_sqrt, sym_eigen};
use steer_methods::methods::mimic::transport_map;

const D: usize = 576;

/// Seeded rows with correlated columns, like residual-stream activations.
fn rows(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
    };
    let mix: Vec<f32> = (0..16 * D).map(|_| next()).collect();
    (0..n)
        .map(|_| {
            let z: Vec<f32> = (0..16).map(|_| next()).collect();
            (0..D)
                .map(|j| next() * 0.3 + (0..16).map(|k| z[k] * mix[k * D + j]).sum::<f32>())
                .collect()
        })
        .collect()
}

fn bench_linalg(c: &mut Criterion) {
    let source = rows(600, 1);
    let target = rows(600, 2);
    let mut cov = covariance(&source, &mean(&source));
    shrink(&mut cov, D, 0.1);
    let mut group = c.benchmark_group("linalg");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("sym_eigen_576", |b| b.iter(|| sym_eigen(&cov, D).unwrap()));
    group.bench_function("sqrt_and_inv_sqrt_576", |b| {
        b.iter(|| sqrt_and_inv_sqrt(&cov, D).unwrap())
    });
    group.bench_function("matmul_576", |b| b.iter(|| matmul(&cov, &cov, D)));
    group.bench_function("covariance_600x576", |b| b.iter(|| covariance(&source, &mean(&source))));
    group.bench_function("mimic_transport_map_600x576", |b| {
        b.iter(|| transport_map(&source, &target, 0.1).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_linalg);
criterion_main!(benches);
