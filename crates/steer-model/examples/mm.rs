use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;
fn main() {
    let dev = Device::flex();
    let x: Tensor<2> = Tensor::random([1024, 576], Distribution::Default, &dev);
    let w: Tensor<2> = Tensor::random([576, 1536], Distribution::Default, &dev);
    let wt: Tensor<2> = Tensor::random([1536, 576], Distribution::Default, &dev).transpose();
    for (name, w) in [("contig", w.clone()), ("transposed", wt.clone())] {
        let _ = x.clone().matmul(w.clone()).into_data();
        let t = Instant::now();
        for _ in 0..10 {
            let _ = x.clone().matmul(w.clone()).into_data();
        }
        let s = t.elapsed().as_secs_f64() / 10.0;
        println!(
            "{name}: {:.1} ms, {:.1} GFLOP/s",
            s * 1e3,
            2.0 * 1024.0 * 576.0 * 1536.0 / s / 1e9
        );
    }
    let q: Tensor<4> = Tensor::random([8, 3, 384, 64], Distribution::Default, &dev);
    let k: Tensor<4> = Tensor::random([8, 3, 128, 64], Distribution::Default, &dev);
    let t = Instant::now();
    for _ in 0..10 {
        let _ = q.clone().matmul(k.clone().swap_dims(2, 3)).into_data();
    }
    println!("attn scores: {:.1} ms", t.elapsed().as_secs_f64() * 100.0);
    let e: Tensor<2> = Tensor::random([49152, 576], Distribution::Default, &dev);
    let x2: Tensor<2> = Tensor::random([1024, 576], Distribution::Default, &dev);
    let t = Instant::now();
    for _ in 0..3 {
        let _ = x2.clone().matmul(e.clone().transpose()).into_data();
    }
    let s = t.elapsed().as_secs_f64() / 3.0;
    println!(
        "lm_head: {:.1} ms, {:.1} GFLOP/s",
        s * 1e3,
        2.0 * 1024.0 * 576.0 * 49152.0 / s / 1e9
    );
}
