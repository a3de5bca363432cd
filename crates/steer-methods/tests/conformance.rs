//! The suite every registered method must pass, plus per-method checks on
//! synthetic activations with a planted direction.

use std::collections::{BTreeMap, HashSet};

use rand::{Rng, SeedableRng};
use steer_methods::direction::{DirectionMethod, norm};
use steer_methods::methods::{actadd::ActAdd, caa::Caa, pca::PcaDifferences, probe::Probe, random::RandomDirection};
use steer_methods::{ContrastPair, FitConfig, Steering, SteeringKind, TrainingSet, find, registry};
use steer_model::gguf::GgufFile;
use steer_model::{Architecture, Backend, Edit, ForwardRequest, Llama, LogitsMode, ModelConfig, WeightSource};

fn tiny_model() -> Llama {
    let cfg = ModelConfig::tiny(Architecture::Llama);
    Llama::load(&cfg, &WeightSource::random(&cfg, 5), &Backend::Cpu.device().unwrap()).unwrap()
}

/// Pairs that share a prompt and end in different "answer" tokens.
fn pairs() -> TrainingSet {
    TrainingSet {
        pairs: (0..12u32)
            .map(|i| ContrastPair {
                prompt: vec![1 + i % 7, 20 + i, 40 + (i * 3) % 11, 60],
                positive: vec![90 + i % 2],
                negative: vec![91 - i % 2],
            })
            .collect(),
        separator: vec![3],
        activations: None,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (norm(a) * norm(b))
}

#[test]
fn registry_is_tidy() {
    let mut names = HashSet::new();
    for method in registry() {
        let info = method.info();
        assert!(names.insert(info.name), "duplicate name {}", info.name);
        assert!(
            !info.name.is_empty()
                && info
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit())
        );
        assert!(info.paper.len() > 20, "{}: paper reference missing", info.name);
        assert!(!info.summary.is_empty(), "{}: summary missing", info.name);
        for h in info.hyperparameters {
            assert!(
                !h.doc.is_empty() && h.default.is_finite(),
                "{}: {} undocumented",
                info.name,
                h.name
            );
        }
        assert!(find(info.name).is_some());
        let grid = info.multipliers;
        assert!(
            grid.contains(&0.0) && grid.len() >= 3,
            "{}: grid needs 0 and both signs",
            info.name
        );
        assert!(
            grid.windows(2).all(|w| w[0] < w[1]),
            "{}: grid not increasing",
            info.name
        );
        assert!(
            grid.iter().all(|m| grid.contains(&-m)),
            "{}: grid not symmetric",
            info.name
        );
    }
    assert!(find("no-such-method").is_none());
}

#[test]
fn every_method_conforms() {
    let model = tiny_model();
    let pairs = pairs();
    let rows: Vec<Vec<u32>> = pairs.pairs.iter().take(3).map(|p| p.positive_sequence()).collect();
    let plain = model
        .forward(
            &rows,
            &ForwardRequest {
                captures: &[],
                edits: &[],
                logits: LogitsMode::All,
            },
        )
        .unwrap();
    let plain_last: Vec<f32> = (0..rows.len())
        .flat_map(|b| {
            plain
                .logits
                .as_ref()
                .unwrap()
                .row(&[b, rows[b].len() - 1 + plain.pads[b]])
                .to_vec()
        })
        .collect();
    for method in registry() {
        let name = method.info().name;
        let config = FitConfig {
            seed: 7,
            ..FitConfig::at_layer(1)
        };
        let a = method.fit(&model, &pairs, &config).unwrap();
        let b = method.fit(&model, &pairs, &config).unwrap();
        assert_eq!(a, b, "{name}: the same seed gave different artefacts");
        assert_eq!(a.method, name);
        // A per-layer method's steering acts at the layer it was fitted at, and a
        // layer sweep's fits equal separate ones.
        assert_eq!(
            method.per_layer(),
            a.layers() == vec![1],
            "{name}: per_layer() disagrees with the layers {:?} of a fit at layer 1",
            a.layers()
        );
        if method.per_layer() {
            let sweep = method.fit_layers(&model, &pairs, &[0, 1], &config).unwrap();
            assert_eq!(sweep.len(), 2, "{name}: one steering per layer");
            assert_eq!(
                sweep[0],
                method
                    .fit(
                        &model,
                        &pairs,
                        &FitConfig {
                            layer: 0,
                            ..config.clone()
                        }
                    )
                    .unwrap(),
                "{name}: layer 0 of a sweep"
            );
            assert_eq!(sweep[1], a, "{name}: layer 1 of a sweep");
        }
        match a.kind {
            SteeringKind::Prompt { .. } => assert_eq!(a.d_model(), 0),
            _ => assert_eq!(a.d_model(), 32),
        }

        // Multiplier 0 leaves the logits exactly as they were; a real multiplier changes them.
        let steered = |m: f32, logits: LogitsMode| {
            let edits = a.edits(m);
            let req = ForwardRequest {
                captures: &[],
                edits: &edits,
                logits,
            };
            let prompts: Vec<Vec<u32>> = rows.iter().map(|r| a.prompt(r, m)).collect();
            model.forward(&prompts, &req).unwrap().logits.unwrap().data
        };
        let plain_logits = &plain.logits.as_ref().unwrap().data;
        assert_eq!(
            &steered(0.0, LogitsMode::All),
            plain_logits,
            "{name}: multiplier 0 changed logits"
        );
        assert_ne!(
            steered(4.0, LogitsMode::Last),
            plain_last,
            "{name}: multiplier 4 did nothing"
        );
        assert_ne!(
            steered(-4.0, LogitsMode::Last),
            plain_last,
            "{name}: multiplier -4 did nothing"
        );
        // Per-row multipliers: rows at 0 are untouched, the row at 4 moves.
        if a.d_model() > 0 {
            let edits = a.edits_per_row(&[0.0, 4.0, 0.0]);
            let req = ForwardRequest {
                captures: &[],
                edits: &edits,
                logits: LogitsMode::Last,
            };
            let out = model.forward(&rows, &req).unwrap().logits.unwrap();
            let vocab = out.shape[1];
            assert_eq!(out.row(&[0]), &plain_last[..vocab], "{name}: row 0");
            assert_eq!(out.row(&[2]), &plain_last[2 * vocab..], "{name}: row 2");
            assert_ne!(out.row(&[1]), &plain_last[vocab..2 * vocab], "{name}: row 1");
        }

        // Save/load round trip.
        let bytes = a.to_safetensors().unwrap();
        assert_eq!(
            Steering::from_safetensors(&bytes, "x.safetensors").unwrap(),
            a,
            "{name}: round trip"
        );

        // Bad inputs are errors, not panics.
        assert!(
            method.fit(&model, &TrainingSet::default(), &config).is_err(),
            "{name}: empty data"
        );
        assert!(
            method
                .fit(&model, &pairs, &FitConfig::at_layer(3))
                .unwrap_err()
                .to_string()
                .contains("layer 3"),
            "{name}"
        );
        let mut typo = config.clone();
        typo.params = BTreeMap::from([("strenght".to_string(), 1.0)]);
        assert!(
            method
                .fit(&model, &pairs, &typo)
                .unwrap_err()
                .to_string()
                .contains("strenght"),
            "{name}"
        );
    }
}

#[test]
fn direction_methods_reject_mismatched_activations() {
    let config = FitConfig::at_layer(0);
    let methods: Vec<Box<dyn DirectionMethod>> =
        vec![Box::new(Caa), Box::new(PcaDifferences), Box::new(RandomDirection)];
    for m in methods {
        assert!(m.direction(&[vec![1.0; 4]], &[], &config).is_err());
        assert!(
            m.direction(&[vec![1.0; 4], vec![1.0; 3]], &[vec![0.0; 4], vec![0.0; 4]], &config)
                .is_err()
        );
        assert!(m.direction(&[], &[], &config).is_err());
    }
}

/// Activations `base + s·u + noise` (positive, s > 0) and `base − s·u + noise` (negative).
fn planted(n: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let u: Vec<f32> = (0..d).map(|i| if i % 5 == 0 { 1.0 } else { -0.3 }).collect();
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    for _ in 0..n {
        let base: Vec<f32> = (0..d).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
        let s = 1.0 + rng.random::<f32>();
        pos.push(
            (0..d)
                .map(|j| base[j] + s * u[j] + 0.05 * (rng.random::<f32>() - 0.5))
                .collect(),
        );
        neg.push(
            (0..d)
                .map(|j| base[j] - s * u[j] + 0.05 * (rng.random::<f32>() - 0.5))
                .collect(),
        );
    }
    (u, pos, neg)
}

#[test]
fn directions_recover_a_planted_direction() {
    let (u, pos, neg) = planted(200, 48, 1);
    let config = FitConfig::at_layer(0);
    let caa = Caa.direction(&pos, &neg, &config).unwrap();
    assert!(cosine(&caa, &u) > 0.99, "caa cos {}", cosine(&caa, &u));
    let pca = PcaDifferences.direction(&pos, &neg, &config).unwrap();
    assert!(cosine(&pca, &u) > 0.99, "pca cos {}", cosine(&pca, &u));
    let probe = Probe.direction(&pos, &neg, &config).unwrap();
    assert!(cosine(&probe, &u) > 0.9, "probe cos {}", cosine(&probe, &u));
    // One pair already points roughly the right way, far less precisely than the mean.
    let actadd = ActAdd.direction(&pos, &neg, &config).unwrap();
    assert!(cosine(&actadd, &u) > 0.3, "actadd cos {}", cosine(&actadd, &u));
    let mut last = config.clone();
    last.params.insert("pair".into(), 199.0);
    assert_eq!(
        ActAdd.direction(&pos, &neg, &last).unwrap()[0],
        pos[199][0] - neg[199][0]
    );
    last.params.insert("pair".into(), 200.0);
    assert!(ActAdd.direction(&pos, &neg, &last).is_err());
    // Random keeps CAA's norm but not its direction.
    let random = RandomDirection.direction(&pos, &neg, &config).unwrap();
    assert!((norm(&random) - norm(&caa)).abs() < 1e-3 * norm(&caa));
    assert!(cosine(&random, &u).abs() < 0.5);
}

#[test]
fn caa_vector_is_the_unnormalised_mean_difference() {
    let pos = vec![vec![1.0, 2.0, 3.0], vec![3.0, 2.0, 1.0]];
    let neg = vec![vec![0.0, 0.0, 0.0], vec![1.0, 1.0, 1.0]];
    assert_eq!(
        Caa.direction(&pos, &neg, &FitConfig::at_layer(0)).unwrap(),
        vec![1.5, 1.5, 1.5]
    );
}

fn additive(vectors: Vec<(usize, Vec<f32>)>) -> Steering {
    Steering {
        method: "caa".into(),
        kind: SteeringKind::Additive { vectors },
        positions: steer_model::Positions::All,
        params: BTreeMap::new(),
        metadata: BTreeMap::new(),
    }
}

/// A GGUF with the given tensors and general.architecture, as another tool writes one.
fn gguf(architecture: &str, tensors: &[(&str, &[usize], Vec<f32>)]) -> Vec<u8> {
    let mut w = steer_model::gguf::GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        steer_model::gguf::GgufValue::String(architecture.into()),
    );
    for (name, shape, data) in tensors {
        w.add_tensor_f32(*name, shape, data.clone());
    }
    w.to_bytes(std::path::Path::new("x.gguf")).unwrap()
}

#[test]
fn control_vector_export_follows_llama_cpp() {
    let steering = additive(vec![(4, vec![0.5, -1.0, 2.0]), (7, vec![1.0, 0.0, -1.0])]);
    let bytes = steering.to_control_vector("llama", 30, 2.0).unwrap();
    let file = GgufFile::from_bytes(bytes.clone(), std::path::Path::new("cv.gguf")).unwrap();
    assert_eq!(file.get_str("general.architecture").unwrap(), "controlvector");
    assert_eq!(file.get_str("controlvector.model_hint").unwrap(), "llama");
    assert_eq!(file.get_u64("controlvector.layer_count").unwrap(), 30);
    // llama.cpp adds direction.N to block N's output (build_cvec(cur, il) with
    // tensors[il] = direction.il): steerbench's layer 4 is direction.4.
    assert_eq!(file.dequantize("direction.4").unwrap(), vec![1.0, -2.0, 4.0]);
    assert_eq!(file.dequantize("direction.7").unwrap(), vec![2.0, 0.0, -2.0]);
    assert!(file.tensor_info("direction.5").is_none());
    // A layer the model lacks, and block 0, which llama.cpp cannot steer.
    assert!(steering.to_control_vector("llama", 6, 1.0).is_err());
    let err = additive(vec![(0, vec![1.0, 2.0, 3.0])])
        .to_control_vector("llama", 30, 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 0"), "{err}");

    // Import reads the same convention: export then import is the identity.
    let back = Steering::from_control_vector(bytes, "cv.gguf").unwrap();
    assert_eq!(
        back.kind,
        SteeringKind::Additive {
            vectors: vec![(4, vec![1.0, -2.0, 4.0]), (7, vec![2.0, 0.0, -2.0])]
        }
    );
    assert_eq!(back.positions, steer_model::Positions::All);
    assert_eq!(back.edits(1.0), steering.edits(2.0));
    // Corrupt artefacts name their source.
    let err = Steering::from_safetensors(b"garbage", "bad.safetensors")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("bad.safetensors: "), "{err}");
}

#[test]
fn control_vector_import_refuses_what_llama_cpp_refuses() {
    let refusal = |bytes: Vec<u8>| Steering::from_file_bytes(bytes, "cv.gguf").unwrap_err().to_string();
    // A file as llama-cvector-generator writes it (tensors from direction.1, in any order) reads.
    let ok = gguf(
        "controlvector",
        &[
            ("direction.2", &[3], vec![1.0, 2.0, 3.0]),
            ("direction.1", &[3], vec![0.0; 3]),
        ],
    );
    assert_eq!(Steering::from_file_bytes(ok, "cv.gguf").unwrap().layers(), vec![1, 2]);
    // A model file is not a control vector.
    let err = refusal(gguf("llama", &[("token_embd.weight", &[2, 3], vec![0.0; 6])]));
    assert!(err.starts_with("cv.gguf: ") && err.contains("'llama'"), "{err}");
    let err = refusal(gguf("controlvector", &[("token_embd.weight", &[3], vec![0.0; 3])]));
    assert!(err.contains("not named direction.<layer>"), "{err}");
    let err = refusal(gguf("controlvector", &[("direction.0", &[3], vec![0.0; 3])]));
    assert!(err.contains("direction.0"), "{err}");
    let err = refusal(gguf("controlvector", &[("direction.3", &[2, 3], vec![0.0; 6])]));
    assert!(err.contains("one axis"), "{err}");
    let err = refusal(gguf(
        "controlvector",
        &[("direction.1", &[3], vec![0.0; 3]), ("direction.2", &[4], vec![0.0; 4])],
    ));
    assert!(err.contains("has 4 values"), "{err}");
    let err = refusal(gguf(
        "controlvector",
        &[("direction.1", &[3], vec![0.0, f32::NAN, 1.0])],
    ));
    assert!(err.contains("NaN"), "{err}");
    let err = refusal(gguf("controlvector", &[]));
    assert!(err.contains("without direction tensors"), "{err}");
    let err = refusal(b"GGUF\x03\x00\x00\x00".to_vec());
    assert!(err.starts_with("cv.gguf: "), "{err}");

    // Widths and layers are checked against the model.
    let s = Steering::from_file_bytes(
        gguf("controlvector", &[("direction.12", &[3], vec![1.0; 3])]),
        "cv.gguf",
    )
    .unwrap();
    assert!(s.check_shape(3, 30).is_ok());
    assert!(s.check_shape(4, 30).unwrap_err().to_string().contains("d_model is 4"));
    assert!(s.check_shape(3, 12).unwrap_err().to_string().contains("layer 12"));
}

#[test]
fn per_layer_safetensors_read_under_every_documented_name() {
    use safetensors::tensor::{Dtype, TensorView};
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let bf16s = |v: &[f32]| {
        v.iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let a = f32s(&[1.0, 2.0]);
    let b = bf16s(&[0.5, -4.0]);
    let c = f32s(&[3.0, 3.0]);
    let d = f32s(&[-1.0, 0.25]);
    let views = vec![
        ("3", TensorView::new(Dtype::F32, vec![2], &a).unwrap()),
        ("layers.9", TensorView::new(Dtype::BF16, vec![2], &b).unwrap()),
        ("layer.5", TensorView::new(Dtype::F32, vec![2], &c).unwrap()),
        ("direction.1", TensorView::new(Dtype::F32, vec![2], &d).unwrap()),
    ];
    let bytes = safetensors::serialize(views, None).unwrap();
    let s = Steering::from_file_bytes(bytes, "v.safetensors").unwrap();
    assert_eq!(
        s.kind,
        SteeringKind::Additive {
            vectors: vec![
                (1, vec![-1.0, 0.25]),
                (3, vec![1.0, 2.0]),
                (5, vec![3.0, 3.0]),
                (9, vec![0.5, -4.0])
            ]
        }
    );
    // A name without a layer is refused with the names that work.
    let views = vec![("weight", TensorView::new(Dtype::F32, vec![2], &a).unwrap())];
    let err = Steering::from_file_bytes(safetensors::serialize(views, None).unwrap(), "v.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("v.safetensors: tensor 'weight' names no layer"),
        "{err}"
    );
    // A steering steerbench wrote reads as itself.
    let own = additive(vec![(2, vec![1.0, -1.0])]);
    let back = Steering::from_file_bytes(own.to_safetensors().unwrap(), "own.safetensors").unwrap();
    assert_eq!(back, own);
}

#[test]
fn an_external_steering_is_evaluated_as_read() {
    use steer_methods::{External, SteeringMethod};
    let model = tiny_model();
    let (d, n) = (model.config().hidden_size, model.config().num_hidden_layers);
    let v: Vec<f32> = (0..d).map(|i| i as f32 / d as f32).collect();
    let bytes = additive(vec![(1, v.clone())])
        .to_control_vector("llama", n, 1.0)
        .unwrap();
    let ext = External::from_bytes(bytes, "dir/My Vector.gguf", "abc123").unwrap();
    let info = ext.info();
    assert_eq!(info.name, "external-my-vector");
    assert!(!ext.per_layer());
    // One layer: the relative grid, as for every additive method.
    assert_eq!(info.multipliers, steer_methods::RELATIVE_GRID);
    assert_eq!(ext.provenance()["sha256"], "abc123");
    assert_eq!(ext.provenance()["format"], "llama.cpp control vector");
    let fitted = ext.fit(&model, &pairs(), &FitConfig::at_layer(0)).unwrap();
    assert_eq!(fitted.layers(), vec![1]);
    assert_eq!(fitted.vectors().unwrap()[0].1, v);
    assert_eq!(fitted.method, "external-my-vector");
    // Several layers keep the file's own scale.
    let two = additive(vec![(1, v.clone()), (2, v.clone())])
        .to_control_vector("llama", n, 1.0)
        .unwrap();
    let ext2 = External::from_bytes(two, "two.gguf", "x").unwrap();
    assert_eq!(ext2.info().multipliers, steer_methods::external::SEVERAL_LAYERS_GRID);
    // A vector of the wrong width fails at fit, naming the file.
    let wide = additive(vec![(1, vec![0.0; d + 1])])
        .to_control_vector("llama", n, 1.0)
        .unwrap();
    let err = External::from_bytes(wide, "wide.gguf", "x")
        .unwrap()
        .fit(&model, &pairs(), &FitConfig::at_layer(0))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("wide.gguf: ") && err.contains(&format!("d_model is {d}")),
        "{err}"
    );
}

#[test]
fn activation_rows_follow_input_order_whatever_the_batching() {
    let model = tiny_model();
    let seqs: Vec<Vec<u32>> = vec![vec![5, 6, 7, 8, 9, 10], vec![1], vec![2, 3, 4], vec![11, 12]];
    let one_by_one: Vec<Vec<f32>> = seqs
        .iter()
        .map(|s| {
            steer_methods::activations::last_token_resid(&model, std::slice::from_ref(s), 1, 1)
                .unwrap()
                .remove(0)
        })
        .collect();
    let batched = steer_methods::activations::last_token_resid(&model, &seqs, 1, 3).unwrap();
    for (a, b) in one_by_one.iter().zip(&batched) {
        let d = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 1e-4, "rows differ by {d}");
    }
}

#[test]
fn paired_activations_share_the_prompt_without_changing_numbers() {
    let model = tiny_model();
    let data = pairs();
    let (pos, neg) = steer_methods::activations::paired_resid(&model, &data, 2, 4).unwrap();
    let whole: Vec<Vec<u32>> = data.pairs.iter().map(ContrastPair::negative_sequence).collect();
    let direct = steer_methods::activations::last_token_resid(&model, &whole, 2, 5).unwrap();
    for (a, b) in neg.iter().zip(&direct) {
        let d = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 1e-4, "negative rows differ by {d}");
    }
    let whole: Vec<Vec<u32>> = data.pairs.iter().map(ContrastPair::positive_sequence).collect();
    let direct = steer_methods::activations::last_token_resid(&model, &whole, 2, 3).unwrap();
    for (a, b) in pos.iter().zip(&direct) {
        let d = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 1e-4, "positive rows differ by {d}");
    }
}

#[test]
fn cached_activations_give_the_same_fits() {
    let model = tiny_model();
    let plain = pairs();
    let mut cached = pairs();
    cached.cache_activations(&model, &[0, 1, 2], 4).unwrap();
    for name in ["caa", "pca", "mimic", "leace", "icv"] {
        let method = find(name).unwrap();
        for layer in [0, 2] {
            let config = FitConfig::at_layer(layer);
            let a = method.fit(&model, &plain, &config).unwrap();
            let b = method.fit(&model, &cached, &config).unwrap();
            let (ea, eb) = (a.edits(1.0), b.edits(1.0));
            assert_eq!(ea.len(), eb.len());
            for (x, y) in ea.iter().zip(&eb) {
                let (
                    Edit::AddVector { vector: p, .. } | Edit::AddKeepNorm { vector: p, .. },
                    Edit::AddVector { vector: q, .. } | Edit::AddKeepNorm { vector: q, .. },
                ) = (x, y)
                else {
                    if let (Edit::Affine { matrix: p, .. }, Edit::Affine { matrix: q, .. }) = (x, y) {
                        let d = p.iter().zip(q).fold(0.0f32, |m, (u, v)| m.max((u - v).abs()));
                        assert!(d < 1e-3, "{name} layer {layer}: maps differ by {d}");
                        continue;
                    }
                    panic!("{name}: edit kinds differ");
                };
                let d = p.iter().zip(q).fold(0.0f32, |m, (u, v)| m.max((u - v).abs()));
                assert!(
                    d < 1e-3 * norm(p).max(1.0),
                    "{name} layer {layer}: vectors differ by {d}"
                );
            }
        }
    }
}
