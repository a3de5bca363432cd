//! Criterion benchmarks of the matrix products a forward pass of the default
//! model is made of, on the CPU backend: the MLP's up and down projections
//! and the tied LM head, for a decode-sized, a scoring-sized and a
//! prefill-sized number of rows. Operands are burn tensors multiplied by
//! burn-flex's own `matmul` (the model's forward uses the fused kernels of
//! `kernels.rs` instead); weights are transposed views of `[out, in]`
//! tensors, the layout the tied LM head keeps.
//!
//! Throughput is reported in floating-point operations (a multiply-add counts
//! two). Run with `cargo bench --workspace --profile dev --bench matmul`;
//! docs/performance.md sets the figures beside gemm called directly and
//! OpenBLAS.

use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A `[rows, cols]` tensor of deterministic values in [-0.5, 0.5).
fn filled(rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

fn bench_products(c: &mut Criterion) {
    let device = Device::flex();
    // (name, in, out) of SmolLM2-135M's largest products.
    let products = [
        ("up_576x1536", 576, 1536),
        ("down_1536x576", 1536, 576),
        ("lm_head_576x49152", 576, 49152),
    ];
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, inp, out) in products {
        let weight = filled(out, inp, &device).transpose();
        for rows in [8usize, 96, 1024] {
            let x = filled(rows, inp, &device);
            group.throughput(Throughput::Elements((2 * rows * inp * out) as u64));
            group.bench_function(BenchmarkId::new(name, rows), |b| {
                b.iter(|| x.clone().matmul(weight.clone()).into_data())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_products);
criterion_main!(benches);
