//! Per-method checks beyond the shared conformance suite: the affine map
//! reaches its target statistics, erasure leaves a probe at chance, FV
//! attributes effects to the heads that can have them, ICV finds the
//! dominant shared direction, prompting builds its prefixes from the pairs.

use rand::{Rng, SeedableRng};
use steer_methods::linalg::{covariance, mean};
use steer_methods::methods::fv::{FunctionVector, head_effects, icl_prompts, top_heads};
use steer_methods::methods::icv::icv_direction;
use steer_methods::methods::leace::eraser;
use steer_methods::methods::mimic::transport_map;
use steer_methods::methods::prompting::Prompting;
use steer_methods::{ContrastPair, FitConfig, SteeringKind, SteeringMethod, TrainingSet};
use steer_model::{
    Architecture, Backend, Edit, ForwardRequest, HostTensor, Llama, LogitsMode, ModelConfig, Positions, WeightSource,
};

fn normal(rng: &mut rand::rngs::StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `n` samples of `μ + L z` with `z` standard normal and `L` lower-triangular (row-major).
fn gaussian(n: usize, mu: &[f64], l: &[f64], seed: u64) -> Vec<Vec<f32>> {
    let d = mu.len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let z: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
            (0..d)
                .map(|i| (mu[i] + (0..=i).map(|j| l[i * d + j] * z[j]).sum::<f64>()) as f32)
                .collect()
        })
        .collect()
}

fn apply(matrix: &[f32], bias: &[f32], rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let d = bias.len();
    rows.iter()
        .map(|x| {
            (0..d)
                .map(|i| (0..d).map(|j| matrix[i * d + j] * x[j]).sum::<f32>() + bias[i])
                .collect()
        })
        .collect()
}

fn lower(d: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            l[i * d + j] = if i == j {
                scale * (0.5 + rng.random::<f64>())
            } else {
                0.4 * normal(&mut rng)
            };
        }
    }
    l
}

#[test]
fn mimic_moves_means_and_covariances_to_the_target() {
    let d = 6;
    let mu_s = vec![1.0, -2.0, 0.5, 0.0, 3.0, -1.0];
    let mu_t = vec![-1.0, 0.0, 2.5, 1.0, 0.0, 1.0];
    let source = gaussian(20_000, &mu_s, &lower(d, 1, 1.0), 2);
    let target = gaussian(20_000, &mu_t, &lower(d, 3, 2.0), 4);
    let (a, b) = transport_map(&source, &target, 0.0).unwrap();
    let moved = apply(&a, &b, &source);
    let (m_moved, m_target) = (mean(&moved), mean(&target));
    let (c_moved, c_target) = (covariance(&moved, &m_moved), covariance(&target, &m_target));
    let scale = c_target.iter().cloned().fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 0..d {
        assert!(
            (m_moved[i] - m_target[i]).abs() < 1e-3,
            "mean {i}: {} vs {}",
            m_moved[i],
            m_target[i]
        );
    }
    for (x, y) in c_moved.iter().zip(&c_target) {
        assert!((x - y).abs() < 1e-3 * scale, "covariance {x} vs {y}");
    }
    // Before the map the source is far from the target.
    let c_source = covariance(&source, &mean(&source));
    assert!(c_source.iter().zip(&c_target).any(|(x, y)| (x - y).abs() > 0.3 * scale));
    assert!(transport_map(&source, &target, 1.5).is_err());
    assert!(transport_map(&source, &[vec![0.0; 3]], 0.1).is_err());
}

/// Training accuracy of a logistic-regression probe (full-batch gradient descent, features standardised).
fn probe_accuracy(pos: &[Vec<f32>], neg: &[Vec<f32>]) -> f64 {
    let rows: Vec<(&Vec<f32>, f64)> = pos
        .iter()
        .map(|r| (r, 1.0))
        .chain(neg.iter().map(|r| (r, 0.0)))
        .collect();
    let d = pos[0].len();
    let all: Vec<Vec<f32>> = rows.iter().map(|(r, _)| (*r).clone()).collect();
    let mu = mean(&all);
    let cov = covariance(&all, &mu);
    let sd: Vec<f64> = (0..d).map(|i| cov[i * d + i].sqrt().max(1e-9)).collect();
    let x: Vec<Vec<f64>> = all
        .iter()
        .map(|r| (0..d).map(|i| (r[i] as f64 - mu[i]) / sd[i]).collect())
        .collect();
    let (mut w, mut b) = (vec![0.0f64; d], 0.0f64);
    for _ in 0..500 {
        let mut gw = vec![0.0; d];
        let mut gb = 0.0;
        for (xi, (_, y)) in x.iter().zip(&rows) {
            let z: f64 = xi.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>() + b;
            let err = 1.0 / (1.0 + (-z).exp()) - y;
            gw.iter_mut().zip(xi).for_each(|(g, a)| *g += err * a);
            gb += err;
        }
        let n = x.len() as f64;
        w.iter_mut().zip(&gw).for_each(|(wi, g)| *wi -= 0.5 * g / n);
        b -= 0.5 * gb / n;
    }
    let correct = x
        .iter()
        .zip(&rows)
        .filter(|(xi, (_, y))| {
            let z: f64 = xi.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>() + b;
            (z > 0.0) == (*y > 0.5)
        })
        .count();
    correct as f64 / x.len() as f64
}

#[test]
fn leace_leaves_a_probe_at_chance() {
    let d = 8;
    let l = lower(d, 5, 1.0);
    let mut mu_p = vec![0.0; d];
    mu_p[2] = 3.0;
    mu_p[5] = -2.0;
    let pos = gaussian(1000, &mu_p, &l, 6);
    let neg = gaussian(1000, &vec![0.0; d], &l, 7);
    let before = probe_accuracy(&pos, &neg);
    assert!(before > 0.8, "the concept is decodable before erasure ({before})");
    let (a, b) = eraser(&pos, &neg).unwrap();
    let (ep, en) = (apply(&a, &b, &pos), apply(&a, &b, &neg));
    let after = probe_accuracy(&ep, &en);
    assert!(after < 0.56, "probe accuracy after erasure {after}");
    // The class means coincide; the eraser moves points along one direction only.
    let (mp, mn) = (mean(&ep), mean(&en));
    assert!(mp.iter().zip(&mn).all(|(p, n)| (p - n).abs() < 1e-3));
    let moved: Vec<Vec<f32>> = pos
        .iter()
        .zip(&ep)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| q - p).collect())
        .collect();
    let c = covariance(&moved, &mean(&moved));
    let trace: f64 = (0..d).map(|i| c[i * d + i]).sum();
    let e = steer_methods::linalg::sym_eigen(&c, d).unwrap();
    let top = e.values.iter().cloned().fold(0.0f64, f64::max);
    assert!(top > 0.999 * trace, "the displacement is not rank one");
}

#[test]
fn icv_finds_the_shared_direction_across_layers() {
    let width = 3 * 16;
    let u: Vec<f64> = (0..width).map(|i| if i % 7 == 0 { 1.0 } else { 0.1 }).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let diffs: Vec<Vec<f64>> = (0..60)
        .map(|_| {
            let s = 0.5 + 2.0 * rng.random::<f64>();
            u.iter().map(|x| s * x + 0.05 * normal(&mut rng)).collect()
        })
        .collect();
    let v = icv_direction(&diffs, false).unwrap();
    let dot: f64 = v.iter().zip(&u).map(|(a, b)| a * b).sum();
    let cos = dot / (v.iter().map(|x| x * x).sum::<f64>().sqrt() * u.iter().map(|x| x * x).sum::<f64>().sqrt());
    assert!(cos > 0.99, "cos {cos}");
    // The reference code's variant adds the mean to the unit component.
    let with_mean = icv_direction(&diffs, true).unwrap();
    let m: Vec<f64> = (0..width)
        .map(|j| diffs.iter().map(|r| r[j]).sum::<f64>() / 60.0)
        .collect();
    let unit: Vec<f64> = with_mean.iter().zip(&m).map(|(a, b)| a - b).collect();
    assert!((unit.iter().map(|x| x * x).sum::<f64>().sqrt() - 1.0).abs() < 1e-9);
    assert!(icv_direction(&diffs[..1], false).is_err());
}

fn tiny_config() -> ModelConfig {
    ModelConfig::tiny(Architecture::Llama)
}

/// Seeded random weights in which only the heads in `live` write to the residual stream.
fn model_with_live_heads(live: &[(usize, usize)]) -> Llama {
    let cfg = tiny_config();
    let WeightSource::Memory(mut map) = WeightSource::random(&cfg, 11) else {
        panic!("random weights are in memory");
    };
    let hd = cfg.head_dim();
    let width = cfg.num_attention_heads * hd;
    for l in 0..cfg.num_hidden_layers {
        let name = format!("model.layers.{l}.self_attn.o_proj.weight");
        let o = map.get_mut(&name).expect("o_proj");
        for h in 0..cfg.num_attention_heads {
            if live.contains(&(l, h)) {
                continue;
            }
            for row in 0..cfg.hidden_size {
                for j in h * hd..(h + 1) * hd {
                    o.data[row * width + j] = 0.0;
                }
            }
        }
        let _: &HostTensor = o;
    }
    Llama::load(&cfg, &WeightSource::Memory(map), &Backend::Cpu.device().unwrap()).unwrap()
}

fn icl_pairs() -> TrainingSet {
    // A "function": the answer token is the prompt's last token plus 40.
    TrainingSet {
        pairs: (0..10u32)
            .map(|i| ContrastPair {
                prompt: vec![2 + i, 30 + (i * 7) % 20, 5 + i],
                positive: vec![45 + i],
                negative: vec![80 - i],
            })
            .collect(),
        separator: vec![1],
        activations: None,
    }
}

#[test]
fn fv_attributes_effects_only_to_heads_that_write() {
    let live = [(0, 1), (1, 3), (2, 0)];
    let model = model_with_live_heads(&live);
    let prompts = icl_prompts(&icl_pairs(), 3, 8, 1).unwrap();
    assert_eq!(prompts.clean.len(), 8);
    // Corrupted prompts keep the tokens but move the answers around.
    for (c, k) in prompts.clean.iter().zip(&prompts.corrupted) {
        assert_eq!(c.len(), k.len());
        let (mut a, mut b) = (c.clone(), k.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
    let effects = head_effects(&model, &prompts, 4).unwrap();
    let cfg = tiny_config();
    // A silent head's patched copy runs in the pass of the unpatched one: its effect is at most rounding.
    let (mut live_min, mut silent_max) = (f64::INFINITY, 0.0f64);
    for l in 0..cfg.num_hidden_layers {
        for h in 0..cfg.num_attention_heads {
            let e = effects.aie[l][h].abs();
            if live.contains(&(l, h)) {
                live_min = live_min.min(e);
            } else {
                silent_max = silent_max.max(e);
            }
        }
    }
    assert!(
        live_min > 1000.0 * silent_max,
        "live heads' smallest effect {live_min:e} is not far above silent heads' largest {silent_max:e}"
    );
    // Ranking by signed effect: the live heads with a positive effect come first.
    let positive: Vec<(usize, usize)> = live.iter().copied().filter(|&(l, h)| effects.aie[l][h] > 0.0).collect();
    let mut chosen = top_heads(&effects.aie, positive.len());
    chosen.sort();
    assert_eq!(chosen, positive);
    // The fitted vector sums only chosen heads' projected means.
    let mut config = FitConfig::at_layer(1);
    config.params.insert("heads".into(), 2.0);
    config.params.insert("shots".into(), 3.0);
    config.params.insert("prompts".into(), 8.0);
    config.seed = 1;
    let steering = FunctionVector.fit(&model, &icl_pairs(), &config).unwrap();
    let top2 = top_heads(&effects.aie, 2);
    let mut expected = vec![0.0f32; cfg.hidden_size];
    for &(l, h) in &top2 {
        for (e, x) in expected
            .iter_mut()
            .zip(model.project_head(l, h, &effects.means[l][h]).unwrap())
        {
            *e += x;
        }
    }
    let SteeringKind::Additive { vectors } = &steering.kind else {
        panic!("fv is additive");
    };
    let diff = vectors[0]
        .1
        .iter()
        .zip(&expected)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-5, "fv vector differs from the sum of its heads by {diff}");
    assert!(steering.metadata["heads"].split(' ').count() == 2);
}

/// The indirect effects measured in one pass of copies per prompt equal
/// those of patching one head at a time into the whole corrupted prompt.
#[test]
fn fv_effects_match_patching_whole_prompts_one_head_at_a_time() {
    let model = Llama::load(
        &tiny_config(),
        &WeightSource::random(&tiny_config(), 5),
        &Backend::Cpu.device().unwrap(),
    )
    .unwrap();
    let cfg = tiny_config();
    let prompts = icl_prompts(&icl_pairs(), 3, 4, 2).unwrap();
    let effects = head_effects(&model, &prompts, 3).unwrap();
    let probability = |prompt: &[u32], answer: u32, edits: &[Edit]| -> f64 {
        let req = ForwardRequest {
            captures: &[],
            edits,
            logits: LogitsMode::Last,
        };
        let logits = model.forward(&[prompt.to_vec()], &req).unwrap().logits.unwrap().data;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
        (logits[answer as usize] as f64 - max).exp() / z
    };
    // Effects of random heads are small (about 1e-9 here); compare them against the largest one.
    let (mut largest, mut worst) = (0.0f64, 0.0f64);
    for l in 0..cfg.num_hidden_layers {
        for h in 0..cfg.num_attention_heads {
            let mut aie = 0.0;
            for (prompt, &answer) in prompts.corrupted.iter().zip(&prompts.answers) {
                let patch = Edit::PatchHead {
                    layer: l,
                    head: h,
                    value: effects.means[l][h].clone(),
                    positions: Positions::LastPrompt,
                    multipliers: Vec::new(),
                };
                aie += probability(prompt, answer, &[patch]) - probability(prompt, answer, &[]);
            }
            aie /= prompts.corrupted.len() as f64;
            largest = largest.max(aie.abs());
            worst = worst.max((effects.aie[l][h] - aie).abs());
        }
    }
    assert!(largest > 0.0, "no head moved the answer's probability");
    assert!(
        worst <= 1e-3 * largest,
        "one pass of copies and whole prompts differ by {worst:e} (largest effect {largest:e})"
    );
}

#[test]
fn top_heads_ranks_by_effect() {
    let aie = vec![vec![0.1, -0.5, 0.3], vec![0.3, 0.9, 0.0]];
    assert_eq!(top_heads(&aie, 3), vec![(1, 1), (0, 2), (1, 0)]);
    assert_eq!(top_heads(&aie, 10).len(), 6);
}

#[test]
fn prompting_prefixes_are_demonstrations_of_each_side() {
    let cfg = tiny_config();
    let model = Llama::load(&cfg, &WeightSource::random(&cfg, 1), &Backend::Cpu.device().unwrap()).unwrap();
    let data = icl_pairs();
    let mut config = FitConfig::at_layer(0);
    config.params.insert("shots".into(), 2.0);
    let steering = Prompting.fit(&model, &data, &config).unwrap();
    let SteeringKind::Prompt { positive, negative } = &steering.kind else {
        panic!("prompting makes a prompt steering");
    };
    // Two demonstrations of 3 + 1 + 1 tokens each, answered per side.
    assert_eq!(positive.len(), 10);
    assert_eq!(negative.len(), 10);
    assert_eq!(&positive[..3], &negative[..3]);
    assert!(data.pairs.iter().any(|p| positive[3] == p.positive[0]));
    assert!(data.pairs.iter().any(|p| negative[3] == p.negative[0]));
    assert_eq!(positive[4], 1);
    assert_eq!(steering.prompt(&[7, 8], 2.0)[10..], [7, 8]);
    assert_eq!(steering.prompt(&[7, 8], -0.5)[..10], negative[..]);
    assert_eq!(steering.prompt(&[7, 8], 0.0), vec![7, 8]);
    config.params.insert("shots".into(), 11.0);
    assert!(Prompting.fit(&model, &data, &config).is_err());
}
