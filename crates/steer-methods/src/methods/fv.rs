//! FV — Function Vectors.
//!
//! Todd, Li, Sen Sharma, Mueller, Wallace, Bau, "Function Vectors in Large
//! Language Models", ICLR 2024 (arXiv:2310.15213). Few-shot prompts are built
//! from the training pairs (demonstrations answered with the behaviour, then a
//! query). Every attention head's output at the last token is averaged over
//! these prompts. A head's causal indirect effect is the gain in the
//! probability of the query's correct first answer token when that mean
//! output is patched into a prompt whose demonstration answers were shuffled;
//! its average over prompts (AIE) ranks the heads. The function vector is the
//! sum of the top-k heads' mean outputs projected through `o_proj`, added to
//! the residual stream after block L at the last prompt token.
//!
//! Scaled to the model as the paper suggests: k defaults to 10 heads per 448
//! (GPT-J has 28 × 16), so 6 for a 30 × 9 model; L is the caller's layer
//! (the paper uses |L|/3). The paper builds 10-shot prompts and averages over
//! more prompts than the defaults here, which are sized for A/B items of a
//! few hundred tokens on a CPU. Patching reuses the shared prefix of each
//! corrupted prompt, and all heads' patches run as copies of its last token
//! in one pass, so one head costs one token's work.

use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use steer_model::{Capture, Edit, ForwardRequest, Llama, LogitsMode, Positions, Site};

use crate::steering::{Steering, SteeringKind};
use crate::{FitConfig, HyperParam, MethodError, MethodInfo, Result, SteeringMethod, TrainingSet};

/// Function vectors from the heads with the largest average indirect effect.
pub struct FunctionVector;

static PARAMS: [HyperParam; 3] = [
    HyperParam {
        name: "heads",
        default: 0.0,
        doc: "number of top heads summed (0: 10 per 448 heads of the model, at least 1, as in the paper for GPT-J)",
    },
    HyperParam {
        name: "shots",
        default: 5.0,
        doc: "demonstrations per in-context prompt",
    },
    HyperParam {
        name: "prompts",
        default: 20.0,
        doc: "in-context prompts used for the mean head outputs and for the indirect effects",
    },
];

/// In-context prompts built from the pairs: each clean prompt, the same with
/// its demonstration answers shuffled, and the query's correct first answer token.
#[derive(Debug, Clone, PartialEq)]
pub struct IclPrompts {
    /// Demonstrations answered with the behaviour, then the query prompt.
    pub clean: Vec<Vec<u32>>,
    /// The same demonstrations with their answers permuted among them.
    pub corrupted: Vec<Vec<u32>>,
    /// First token of each query's behaviour-matching completion.
    pub answers: Vec<u32>,
}

/// Builds `count` seeded in-context prompts of `shots` demonstrations each.
pub fn icl_prompts(data: &TrainingSet, shots: usize, count: usize, seed: u64) -> Result<IclPrompts> {
    let n = data.pairs.len();
    if shots == 0 || n < shots + 1 || count == 0 {
        return Err(MethodError::BadInput(format!(
            "fv: {count} prompts of {shots} demonstrations need at least {} training pairs (got {n})",
            shots + 1
        )));
    }
    if let Some(i) = data.pairs.iter().position(|p| p.prompt.is_empty() || p.positive.is_empty()) {
        return Err(MethodError::BadInput(format!(
            "fv: training pair {i} has no prompt or no behaviour-matching completion"
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let all: Vec<usize> = (0..n).collect();
    let mut out = IclPrompts {
        clean: Vec::new(),
        corrupted: Vec::new(),
        answers: Vec::new(),
    };
    for p in 0..count {
        let query = p % n;
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != query).collect();
        let demos: Vec<usize> = others.choose_multiple(&mut rng, shots).copied().collect();
        let mut shuffled = demos.clone();
        shuffled.shuffle(&mut rng);
        let build = |answers: &[usize]| -> Vec<u32> {
            let mut tokens = Vec::new();
            for (&d, &a) in demos.iter().zip(answers) {
                tokens.extend(&data.pairs[d].prompt);
                tokens.extend(&data.pairs[a].positive);
                tokens.extend(&data.separator);
            }
            tokens.extend(&data.pairs[query].prompt);
            tokens
        };
        out.clean.push(build(&demos));
        out.corrupted.push(build(&shuffled));
        out.answers.push(data.pairs[query].positive[0]);
    }
    Ok(out)
}

/// Mean head outputs and average indirect effects, `[layer][head]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadEffects {
    /// Mean output (`head_dim` values) of every head at the last token of the clean prompts.
    pub means: Vec<Vec<Vec<f32>>>,
    /// Average gain in the correct answer's probability from patching the mean into corrupted prompts.
    pub aie: Vec<Vec<f64>>,
}

/// Measures every head's mean output over `prompts.clean` and its average
/// indirect effect over `prompts.corrupted`.
pub fn head_effects(model: &Llama, prompts: &IclPrompts, batch_size: usize) -> Result<HeadEffects> {
    let cfg = model.config();
    let (layers, heads, hd) = (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim());
    let captures: Vec<Capture> = (0..layers).map(|l| Capture::last(Site::HeadOut(l))).collect();
    let req = ForwardRequest {
        captures: &captures,
        edits: &[],
        logits: LogitsMode::None,
    };
    let mut means = vec![vec![vec![0.0f64; hd]; heads]; layers];
    let mut order: Vec<usize> = (0..prompts.clean.len()).collect();
    order.sort_by_key(|&i| prompts.clean[i].len());
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts.clean[i].clone()).collect();
        let out = model.forward(&batch, &req)?;
        for (l, c) in captures.iter().enumerate() {
            let t = out
                .capture(*c)
                .ok_or_else(|| MethodError::BadInput("the model returned no head outputs".into()))?;
            for b in 0..chunk.len() {
                for (h, acc) in means[l].iter_mut().enumerate() {
                    for (a, v) in acc.iter_mut().zip(t.row(&[b, 0, h])) {
                        *a += *v as f64;
                    }
                }
            }
        }
    }
    let n = prompts.clean.len() as f64;
    let means: Vec<Vec<Vec<f32>>> = means
        .into_iter()
        .map(|l| l.into_iter().map(|h| h.into_iter().map(|v| (v / n) as f32).collect()).collect())
        .collect();

    let mut aie = vec![vec![0.0f64; heads]; layers];
    let probability = |logits: &[f32], token: u32| -> f64 {
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
        (logits[token as usize] as f64 - max).exp() / z
    };
    // One pass per prompt runs every patch as a copy of the last token after
    // the shared prefix: copy 0 is unpatched, copy 1 + l·heads + h patches
    // head h of block l (its multiplier is 1 there and 0 in every other copy).
    let copies = 1 + layers * heads;
    let edits: Vec<Edit> = (0..layers)
        .flat_map(|l| (0..heads).map(move |h| (l, h)))
        .enumerate()
        .map(|(i, (l, h))| Edit::PatchHead {
            layer: l,
            head: h,
            value: means[l][h].clone(),
            positions: Positions::LastPrompt,
            multipliers: (0..copies).map(|c| if c == i + 1 { 1.0 } else { 0.0 }).collect(),
        })
        .collect();
    let req = ForwardRequest {
        captures: &[],
        edits: &edits,
        logits: LogitsMode::Last,
    };
    for (prompt, &answer) in prompts.corrupted.iter().zip(&prompts.answers) {
        let (last, prefix) = prompt
            .split_last()
            .ok_or_else(|| MethodError::BadInput("fv: empty in-context prompt".into()))?;
        if prefix.is_empty() {
            return Err(MethodError::BadInput("fv: in-context prompts need at least two tokens".into()));
        }
        let shared = model.shared_prefix(prefix)?;
        let logits = model
            .forward_variants(&shared, &[vec![*last]], copies, &req)?
            .ok_or_else(|| MethodError::BadInput("the model returned no logits".into()))?;
        let vocab = logits.shape[1];
        let p = |copy: usize| probability(&logits.data[copy * vocab..(copy + 1) * vocab], answer);
        let base = p(0);
        for (i, effect) in aie.iter_mut().flatten().enumerate() {
            *effect += p(i + 1) - base;
        }
    }
    let m = prompts.corrupted.len() as f64;
    aie.iter_mut().flatten().for_each(|v| *v /= m);
    Ok(HeadEffects { means, aie })
}

/// The `k` heads with the largest average indirect effect, best first, as `(layer, head)`.
pub fn top_heads(aie: &[Vec<f64>], k: usize) -> Vec<(usize, usize)> {
    let mut all: Vec<(usize, usize)> = aie
        .iter()
        .enumerate()
        .flat_map(|(l, row)| (0..row.len()).map(move |h| (l, h)))
        .collect();
    // Ties keep (layer, head) order, so the choice is deterministic.
    all.sort_by(|a, b| aie[b.0][b.1].total_cmp(&aie[a.0][a.1]).then(a.cmp(b)));
    all.truncate(k);
    all
}

impl SteeringMethod for FunctionVector {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "fv",
            paper: "Todd et al. 2023, Function Vectors in Large Language Models, arXiv:2310.15213",
            summary: "sum of the o_proj-projected mean outputs of the heads with the largest average indirect effect",
            hyperparameters: &PARAMS,
            multipliers: crate::RELATIVE_GRID,
        }
    }

    fn fit(&self, model: &Llama, data: &TrainingSet, config: &FitConfig) -> Result<Steering> {
        Ok(self.fit_layers(model, data, &[config.layer], config)?.remove(0))
    }

    /// Head effects do not depend on where the vector is added: they are measured once for all layers.
    fn fit_layers(
        &self,
        model: &Llama,
        data: &TrainingSet,
        layers: &[usize],
        config: &FitConfig,
    ) -> Result<Vec<Steering>> {
        let info = self.info();
        config.check_params(&info)?;
        for &layer in layers {
            FitConfig { layer, ..config.clone() }.check_layer(model)?;
        }
        data.check(info.name)?;
        let cfg = model.config();
        let whole = |name: &str| -> Result<usize> {
            let v = config.param(&info, name)?;
            if v < 0.0 || v.fract() != 0.0 {
                return Err(MethodError::BadInput(format!("fv: {name} = {v} is not a whole number")));
            }
            Ok(v as usize)
        };
        let total = cfg.num_hidden_layers * cfg.num_attention_heads;
        let k = match whole("heads")? {
            0 => ((10 * total) as f64 / 448.0).round().max(1.0) as usize,
            k => k.min(total),
        };
        let prompts = icl_prompts(data, whole("shots")?, whole("prompts")?, config.seed)?;
        let effects = head_effects(model, &prompts, config.batch_size)?;
        let chosen = top_heads(&effects.aie, k);
        let mut vector = vec![0.0f32; cfg.hidden_size];
        for &(l, h) in &chosen {
            for (v, x) in vector.iter_mut().zip(model.project_head(l, h, &effects.means[l][h])?) {
                *v += x;
            }
        }
        let listed: Vec<String> = chosen
            .iter()
            .map(|&(l, h)| format!("{l}.{h}:{:.3e}", effects.aie[l][h]))
            .collect();
        layers
            .iter()
            .map(|&layer| {
                let config = FitConfig { layer, ..config.clone() };
                let mut steering = Steering::fitted(
                    &info,
                    &config,
                    data.pairs.len(),
                    SteeringKind::Additive {
                        vectors: vec![(layer, vector.clone())],
                    },
                    Positions::LastPrompt,
                )?;
                steering.metadata.insert("heads".into(), listed.join(" "));
                Ok(steering)
            })
            .collect()
    }
}
