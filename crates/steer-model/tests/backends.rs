//! Every compiled backend gives the CPU backend's numbers on the same weights.

mod common;

use common::tiny::{max_diff, tiny_config};
use steer_model::{
    Architecture, Backend, Capture, Edit, ForwardRequest, GenerateOptions, Llama, LogitsMode, Positions, Sampling,
    Site, WeightSource,
};

fn load(backend: Backend, arch: Architecture) -> Llama {
    let cfg = tiny_config(arch);
    let device = backend.device().unwrap_or_else(|e| {
        panic!("{e} (the wgpu tests need a Vulkan driver; without a GPU install mesa-vulkan-drivers and libvulkan1)")
    });
    Llama::load(&cfg, &WeightSource::random(&cfg, 42), &device).unwrap()
}

#[test]
fn backends_agree_on_logits_captures_and_generation() {
    let rows = vec![vec![3u32, 14, 15, 92, 65, 35], vec![89, 79, 32]];
    let edit = Edit::AddVector {
        layer: 1,
        vector: (0..32).map(|i| (i as f32 * 0.3).sin()).collect(),
        positions: Positions::All,
        multipliers: vec![1.0, -2.0],
    };
    let caps = [Capture::all(Site::ResidPost(0)), Capture::last(Site::HeadOut(2))];
    let req = ForwardRequest {
        captures: &caps,
        edits: std::slice::from_ref(&edit),
        logits: LogitsMode::All,
    };
    let opts = GenerateOptions {
        max_new_tokens: 5,
        sampling: Sampling::Greedy,
        eos_ids: vec![],
    };
    let others: Vec<Backend> = Backend::available()
        .into_iter()
        .filter(|b| *b != Backend::Cpu)
        .collect();
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let cpu = load(Backend::Cpu, arch);
        let reference = cpu.forward(&rows, &req).unwrap();
        let ref_gen = cpu.generate(&rows, std::slice::from_ref(&edit), &opts).unwrap();
        for &backend in &others {
            let model = load(backend, arch);
            let out = model.forward(&rows, &req).unwrap();
            let d = max_diff(
                &reference.logits.as_ref().unwrap().data,
                &out.logits.as_ref().unwrap().data,
            );
            assert!(d <= 1e-3, "{backend} {arch:?}: logits differ from cpu by {d}");
            for c in caps {
                let d = max_diff(&reference.capture(c).unwrap().data, &out.capture(c).unwrap().data);
                assert!(d <= 1e-3, "{backend} {arch:?}: capture {c:?} differs from cpu by {d}");
            }
            let got = model.generate(&rows, std::slice::from_ref(&edit), &opts).unwrap();
            assert_eq!(got, ref_gen, "{backend} {arch:?}: greedy generation differs from cpu");
            // Several prefixes, each continued by variant copies with their own multipliers.
            let variants = |m: &Llama| {
                let prefix = m.shared_prefixes(&rows).unwrap();
                let per_copy = Edit::AddVector {
                    layer: 1,
                    vector: (0..32).map(|i| (i as f32 * 0.3).sin()).collect(),
                    positions: Positions::PromptEndOnward,
                    multipliers: vec![0.0, 1.0, -2.0, 0.5, 3.0, -1.0],
                };
                let req = ForwardRequest {
                    captures: &[],
                    edits: std::slice::from_ref(&per_copy),
                    logits: LogitsMode::Last,
                };
                let lasts = vec![vec![7u32], vec![8u32]];
                let copies = m.forward_variants(&prefix, &lasts, 3, &req).unwrap().unwrap();
                let each = m
                    .forward_after_each(
                        &prefix,
                        &[1, 0, 1],
                        &[vec![5u32, 6], vec![2], vec![9]],
                        &ForwardRequest::default(),
                    )
                    .unwrap();
                (copies.data, each.logits.unwrap().data)
            };
            let (want_copies, want_each) = variants(&cpu);
            let (got_copies, got_each) = variants(&model);
            let d = max_diff(&want_copies, &got_copies).max(max_diff(&want_each, &got_each));
            assert!(
                d <= 1e-3,
                "{backend} {arch:?}: prefix continuations differ from cpu by {d}"
            );
        }
    }
}
