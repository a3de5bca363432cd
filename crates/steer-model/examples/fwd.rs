use std::time::Instant;
use steer_model::{Backend, ForwardRequest, LoadedModel, LogitsMode};
fn main() {
    let backend: Backend = std::env::var("BACKEND").unwrap_or("cpu".into()).parse().unwrap();
    let dev = backend.device().unwrap();
    let m = LoadedModel::load("default", &dev).unwrap();
    let rows: Vec<Vec<u32>> = (0..8)
        .map(|r| (0..128).map(|i| ((i * 31 + r * 7) % 40000) as u32 + 100).collect())
        .collect();
    let req = ForwardRequest {
        captures: &[],
        edits: &[],
        logits: LogitsMode::Last,
    };
    for _ in 0..3 {
        let cpu0 = cpu();
        let t = Instant::now();
        m.model.forward(&rows, &req).unwrap();
        println!("{:.2} s wall, {:.2} s cpu", t.elapsed().as_secs_f64(), cpu() - cpu0);
    }
}

fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
