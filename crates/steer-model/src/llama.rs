//! The Llama-family decoder (Llama 2/3, SmolLM2, TinyLlama, Mistral, Qwen2):
//! RMSNorm, RoPE, grouped-query attention, SwiGLU, with hooks at every block.
//!
//! `Llama::load` builds the model from a [`WeightSource`]; `Llama::forward`
//! runs a left-padded batch with captures and edits; generation with a KV
//! cache lives in `generate.rs` and uses [`Llama::step`].

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{ModelConfig, is_positive};
use crate::error::{ModelError, Result};
use crate::hooks::{Capture, CapturePositions, Edit, LogitsMode, Positions, Site};
use crate::host::HostTensor;
use crate::kernels::Kernels;
use crate::weights::WeightSource;

/// Additive attention-mask value for a masked key. Finite, so a row whose keys
/// are all masked (a padding query) gives a uniform softmax rather than NaN.
const MASKED: f32 = -1.0e9;

struct Block {
    attn_norm: Tensor<1>,
    // Projection weights are stored as `[in, out]`, so `x.matmul(w)` applies them.
    wq: Tensor<2>,
    wk: Tensor<2>,
    wv: Tensor<2>,
    bq: Option<Tensor<1>>,
    bk: Option<Tensor<1>>,
    bv: Option<Tensor<1>>,
    wo: Tensor<2>,
    mlp_norm: Tensor<1>,
    w_gate: Tensor<2>,
    w_up: Tensor<2>,
    w_down: Tensor<2>,
}

/// A Llama-family decoder on one burn device.
pub struct Llama {
    cfg: ModelConfig,
    device: Device,
    embed: Tensor<2>,
    blocks: Vec<Block>,
    norm: Tensor<1>,
    lm_head: Tensor<2>,
    inv_freq: Vec<f32>,
    o_proj_host: Vec<HostTensor>,
    kernels: Kernels,
}

/// What a forward pass should read, change and return.
#[derive(Debug, Clone, Copy)]
pub struct ForwardRequest<'a> {
    /// Activations to read.
    pub captures: &'a [Capture],
    /// Activations to change.
    pub edits: &'a [Edit],
    /// Which logits to return.
    pub logits: LogitsMode,
}

impl Default for ForwardRequest<'_> {
    fn default() -> Self {
        ForwardRequest {
            captures: &[],
            edits: &[],
            logits: LogitsMode::All,
        }
    }
}

/// The result of a forward pass.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// `[B, vocab]` for `LogitsMode::Last`, `[B, T, vocab]` for `LogitsMode::All`.
    pub logits: Option<HostTensor>,
    /// One entry per requested capture, in request order.
    pub captures: Vec<(Capture, HostTensor)>,
    /// Left padding of each row (the padded batch has `T = pad + len` columns).
    pub pads: Vec<usize>,
    /// Unpadded length of each row.
    pub lens: Vec<usize>,
}

impl ForwardOutput {
    /// The tensor captured for `capture`, if it was requested.
    pub fn capture(&self, capture: Capture) -> Option<&HostTensor> {
        self.captures.iter().find(|(c, _)| *c == capture).map(|(_, t)| t)
    }

    /// Column of the padded batch that holds position `pos` of `row`.
    pub fn padded_index(&self, row: usize, pos: usize) -> usize {
        self.pads[row] + pos
    }
}

/// Per-step input: tokens laid out `[B, T]` plus where each sits in its row.
pub(crate) struct StepInput<'a> {
    /// `B × T` token ids (padding slots hold any valid id).
    pub ids: &'a [u32],
    /// `B × T` unpadded positions; `None` marks a padding slot.
    pub positions: &'a [Option<usize>],
    /// Prompt length of each row (for position policies of edits).
    pub prompt_lens: &'a [usize],
    /// Batch size.
    pub batch: usize,
    /// Independent copies of each row's tokens laid side by side along the
    /// sequence axis (1 for an ordinary batch). With `v > 1`, the `T` slots of a
    /// row are `v` equal blocks; each block attends to the cache and to itself
    /// (causally) only, and edit multipliers are given per (row, block).
    pub variants: usize,
    /// A one-token decoding step, which may use kernels whose sums depend on
    /// the number of rows (`Kernels::for_decoding`); scoring passes never do.
    pub decoding: bool,
}

/// Logits (if asked for) and captures of one step.
pub(crate) type StepOutput = (Option<HostTensor>, Vec<(Capture, HostTensor)>);

/// Sequences left-padded to a common length, with each slot's unpadded position.
pub(crate) struct PaddedBatch {
    /// `B × T` token ids; padding slots hold 0.
    pub ids: Vec<u32>,
    /// `B × T` unpadded positions; `None` marks padding.
    pub positions: Vec<Option<usize>>,
    /// Unpadded length of each row.
    pub lens: Vec<usize>,
    /// Left padding of each row.
    pub pads: Vec<usize>,
}

impl PaddedBatch {
    /// Left-pads `rows` to the longest one.
    pub(crate) fn new(rows: &[Vec<u32>]) -> Self {
        let t = rows.iter().map(Vec::len).max().unwrap_or(0);
        let lens: Vec<usize> = rows.iter().map(Vec::len).collect();
        let pads: Vec<usize> = lens.iter().map(|l| t - l).collect();
        let mut ids = Vec::with_capacity(rows.len() * t);
        let mut positions = Vec::with_capacity(rows.len() * t);
        for (row, &pad) in rows.iter().zip(&pads) {
            ids.extend(std::iter::repeat_n(0u32, pad));
            ids.extend_from_slice(row);
            positions.extend(std::iter::repeat_n(None, pad));
            positions.extend((0..row.len()).map(Some));
        }
        PaddedBatch {
            ids,
            positions,
            lens,
            pads,
        }
    }

    /// The step input for this batch, every row's whole sequence counting as its prompt.
    pub(crate) fn input(&self) -> StepInput<'_> {
        StepInput {
            ids: &self.ids,
            positions: &self.positions,
            prompt_lens: &self.lens,
            batch: self.lens.len(),
            variants: 1,
            decoding: false,
        }
    }
}

/// Keys and values of every block for the tokens seen so far. Cloning shares
/// the tensors; a pass appends by replacing them, never by writing into them.
#[derive(Clone)]
pub(crate) struct KvCache {
    keys: Vec<Tensor<4>>,
    values: Vec<Tensor<4>>,
    /// `B × len` flags: whether each cached key is a real token (not padding).
    valid: Vec<bool>,
    len: usize,
}

impl KvCache {
    pub(crate) fn new() -> Self {
        KvCache {
            keys: Vec::new(),
            values: Vec::new(),
            valid: Vec::new(),
            len: 0,
        }
    }

    /// A cache whose row `r` is a copy of row `rows[r]` of this one.
    fn select(&self, rows: &[usize], device: &Device) -> KvCache {
        let idx: Tensor<1, Int> = Tensor::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect::<Vec<_>>(), [rows.len()]),
            device,
        );
        let pick = |t: &Tensor<4>| t.clone().select(0, idx.clone());
        let mut valid = Vec::with_capacity(rows.len() * self.len);
        for &r in rows {
            valid.extend_from_slice(&self.valid[r * self.len..(r + 1) * self.len]);
        }
        KvCache {
            keys: self.keys.iter().map(pick).collect(),
            values: self.values.iter().map(pick).collect(),
            valid,
            len: self.len,
        }
    }
}

/// The keys and values of one or more token sequences, computed once and
/// shared by every continuation run after them (few-shot demonstrations, a
/// question whose answers are scored, a prompt patched many ways at its last
/// token).
pub struct SharedPrefix {
    /// One row per prefix, left-padded to the longest.
    cache: KvCache,
    /// Tokens in each prefix.
    lens: Vec<usize>,
    /// The edits the prefix was computed under (none for an unsteered prefix).
    edits: Vec<Edit>,
}

impl SharedPrefix {
    /// Number of tokens in the first (for [`Llama::shared_prefix`], the only) prefix.
    pub fn len(&self) -> usize {
        self.lens[0]
    }

    /// Whether the first prefix is empty (never true for a prefix the model built).
    pub fn is_empty(&self) -> bool {
        self.lens[0] == 0
    }

    /// Number of token sequences held.
    pub fn count(&self) -> usize {
        self.lens.len()
    }

    /// Tokens in each prefix.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }
}

fn to_tensor1(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

fn to_tensor2(t: &HostTensor, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(t.data.clone(), [t.shape[0], t.shape[1]]), device)
}

/// A `[rows, cols]` host matrix as a contiguous `[cols, rows]` device tensor.
/// Matrix products read a row-major right operand faster than a transposed view
/// (on the CPU, up to 5× at the few rows of decoding).
fn to_tensor2_transposed(t: &HostTensor, device: &Device) -> Tensor<2> {
    use rayon::prelude::*;
    const TILE: usize = 32;
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let mut out = vec![0.0f32; rows * cols];
    // Each task writes `TILE` output rows: `TILE` columns of every input row.
    out.par_chunks_mut(TILE * rows).enumerate().for_each(|(tile, block)| {
        let c0 = tile * TILE;
        let width = block.len() / rows;
        for r in 0..rows {
            for (c, &v) in t.data[r * cols + c0..][..width].iter().enumerate() {
                block[c * rows + r] = v;
            }
        }
    });
    Tensor::from_data(TensorData::new(out, [cols, rows]), device)
}

/// Reads a tensor back to main memory.
pub(crate) fn to_host<const D: usize>(t: Tensor<D>) -> Result<HostTensor> {
    let shape = t.dims().to_vec();
    // Moving the values out reuses the tensor's buffer when nothing else holds it.
    let data = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("reading a tensor back failed: {e:?}")))?;
    HostTensor::new(shape, data)
        .ok_or_else(|| ModelError::Backend("readback returned the wrong number of values".into()))
}

impl Llama {
    /// Builds the model from `weights` on `device`.
    pub fn load(cfg: &ModelConfig, weights: &WeightSource, device: &Device) -> Result<Self> {
        let d = cfg.hidden_size;
        let hd = cfg.head_dim();
        let q_out = cfg.num_attention_heads * hd;
        let kv_out = cfg.num_key_value_heads * hd;
        let f = cfg.intermediate_size;
        let get = |name: &str, shape: &[usize]| weights.require(name, shape, cfg);
        // A `[out, in]` Hugging Face weight becomes an `[in, out]` device tensor.
        let linear = |name: &str, out: usize, inp: usize| -> Result<Tensor<2>> {
            let t = get(name, &[out, inp])?;
            Ok(to_tensor2_transposed(&t, device))
        };
        let vector = |name: &str, n: usize| -> Result<Tensor<1>> { Ok(to_tensor1(&get(name, &[n])?.data, device)) };
        let embed_host = get("model.embed_tokens.weight", &[cfg.vocab_size, d])?;
        let embed = to_tensor2(&embed_host, device);
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone().transpose()
        } else {
            linear("lm_head.weight", cfg.vocab_size, d)?
        };
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        let mut o_proj_host = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let bias = |name: &str, n: usize| -> Result<Option<Tensor<1>>> {
                if cfg.attention_bias {
                    vector(&format!("{p}.self_attn.{name}.bias"), n).map(Some)
                } else {
                    Ok(None)
                }
            };
            let o = get(&format!("{p}.self_attn.o_proj.weight"), &[d, q_out])?;
            blocks.push(Block {
                attn_norm: vector(&format!("{p}.input_layernorm.weight"), d)?,
                wq: linear(&format!("{p}.self_attn.q_proj.weight"), q_out, d)?,
                wk: linear(&format!("{p}.self_attn.k_proj.weight"), kv_out, d)?,
                wv: linear(&format!("{p}.self_attn.v_proj.weight"), kv_out, d)?,
                bq: bias("q_proj", q_out)?,
                bk: bias("k_proj", kv_out)?,
                bv: bias("v_proj", kv_out)?,
                wo: to_tensor2_transposed(&o, device),
                mlp_norm: vector(&format!("{p}.post_attention_layernorm.weight"), d)?,
                w_gate: linear(&format!("{p}.mlp.gate_proj.weight"), f, d)?,
                w_up: linear(&format!("{p}.mlp.up_proj.weight"), f, d)?,
                w_down: linear(&format!("{p}.mlp.down_proj.weight"), d, f)?,
            });
            o_proj_host.push(o);
        }
        let norm = vector("model.norm.weight", d)?;
        let mut inv_freq = rope_inv_freq(cfg);
        // A GGUF of a Llama-3.1-style model carries its RoPE scaling as one divisor per frequency.
        if let Some(factors) = weights.get("rope_freqs", cfg)? {
            if factors.data.len() != inv_freq.len() || factors.data.iter().any(|f| !is_positive(*f)) {
                return Err(ModelError::invalid(
                    weights.path(),
                    format!(
                        "rope_freqs has {} values; expected {} positive ones",
                        factors.data.len(),
                        inv_freq.len()
                    ),
                ));
            }
            for (f, k) in inv_freq.iter_mut().zip(&factors.data) {
                *f /= k;
            }
        }
        Ok(Llama {
            cfg: cfg.clone(),
            device: device.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq,
            o_proj_host,
            kernels: Kernels::for_device(device),
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Projects one head's output (`head_dim` values) through block `layer`'s
    /// `o_proj`, giving its contribution to the residual stream (`d_model` values).
    pub fn project_head(&self, layer: usize, head: usize, value: &[f32]) -> Result<Vec<f32>> {
        let hd = self.cfg.head_dim();
        self.check_layer(layer)?;
        if head >= self.cfg.num_attention_heads || value.len() != hd {
            return Err(ModelError::bad_request(format!(
                "head {head} with {} values: the model has {} heads of {hd} values",
                value.len(),
                self.cfg.num_attention_heads
            )));
        }
        let o = &self.o_proj_host[layer];
        let cols = o.shape[1];
        Ok((0..o.shape[0])
            .map(|i| (0..hd).map(|j| o.data[i * cols + head * hd + j] * value[j]).sum())
            .collect())
    }

    fn check_layer(&self, layer: usize) -> Result<()> {
        if layer >= self.cfg.num_hidden_layers {
            return Err(ModelError::bad_request(format!(
                "layer {layer} is out of range: the model has {} layers (0..{})",
                self.cfg.num_hidden_layers,
                self.cfg.num_hidden_layers - 1
            )));
        }
        Ok(())
    }

    /// Checks edits and captures against the model's shapes and the batch size.
    pub fn validate_request(&self, req: &ForwardRequest, batch: usize) -> Result<()> {
        let d = self.cfg.hidden_size;
        let hd = self.cfg.head_dim();
        for c in req.captures {
            self.check_layer(c.site.layer())?;
        }
        for e in req.edits {
            self.check_layer(e.layer())?;
            let m = e.multipliers().len();
            if m != 0 && m != batch {
                return Err(ModelError::bad_request(format!(
                    "{m} multipliers for a batch of {batch} rows (give one per row, or none)"
                )));
            }
            match e {
                Edit::AddVector { vector, .. } | Edit::AddKeepNorm { vector, .. } if vector.len() != d => {
                    return Err(ModelError::bad_request(format!(
                        "steering vector has {} values but the model's d_model is {d}",
                        vector.len()
                    )));
                }
                Edit::Affine { matrix, bias, .. } if matrix.len() != d * d || bias.len() != d => {
                    return Err(ModelError::bad_request(format!(
                        "affine edit needs a {d}×{d} matrix and {d} biases, got {} and {} values",
                        matrix.len(),
                        bias.len()
                    )));
                }
                Edit::PatchHead { head, value, .. } if *head >= self.cfg.num_attention_heads || value.len() != hd => {
                    return Err(ModelError::bad_request(format!(
                        "head patch of head {head} with {} values: the model has {} heads of {hd} values",
                        value.len(),
                        self.cfg.num_attention_heads
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs a batch of token sequences (left-padded internally) through the model.
    pub fn forward(&self, rows: &[Vec<u32>], req: &ForwardRequest) -> Result<ForwardOutput> {
        if rows.is_empty() || rows.iter().any(|r| r.is_empty()) {
            return Err(ModelError::bad_request("forward needs at least one non-empty sequence"));
        }
        self.validate_request(req, rows.len())?;
        let batch = PaddedBatch::new(rows);
        let input = batch.input();
        let (logits, captures) = self.step(&input, None, req)?;
        Ok(ForwardOutput {
            logits,
            captures,
            pads: batch.pads,
            lens: batch.lens,
        })
    }

    /// Computes the keys and values of `prefix` once, unsteered, for
    /// [`Llama::forward_after`].
    pub fn shared_prefix(&self, prefix: &[u32]) -> Result<SharedPrefix> {
        self.shared_prefixes(&[prefix.to_vec()])
    }

    /// Computes the keys and values of several prefixes in one unsteered pass,
    /// for [`Llama::forward_after_each`] and [`Llama::forward_variants`].
    pub fn shared_prefixes(&self, prefixes: &[Vec<u32>]) -> Result<SharedPrefix> {
        self.prefix_pass(prefixes, &[])
    }

    /// One pass over `prefixes` under `edits`, keeping their keys and values.
    fn prefix_pass(&self, prefixes: &[Vec<u32>], edits: &[Edit]) -> Result<SharedPrefix> {
        if prefixes.is_empty() || prefixes.iter().any(Vec::is_empty) {
            return Err(ModelError::bad_request("a shared prefix needs at least one token"));
        }
        let req = ForwardRequest {
            captures: &[],
            edits,
            logits: LogitsMode::None,
        };
        self.validate_request(&req, prefixes.len())?;
        let mut cache = KvCache::new();
        let batch = PaddedBatch::new(prefixes);
        self.step(&batch.input(), Some(&mut cache), &req)?;
        Ok(SharedPrefix {
            cache,
            lens: batch.lens,
            edits: edits.to_vec(),
        })
    }

    /// Computes the keys and values of `prefix` once under `edits`, for
    /// [`Llama::forward_after`] under the same edits: a prompt steered at every
    /// position is computed once for all the continuations scored after it.
    /// The edits' positions must not depend on where the prompt ends
    /// (`All`, `From`, `At`, `Generated`), and they carry one multiplier for all rows.
    pub fn shared_prefix_with(&self, prefix: &[u32], edits: &[Edit]) -> Result<SharedPrefix> {
        for e in edits {
            if matches!(e.positions(), Positions::LastPrompt | Positions::PromptEndOnward) {
                return Err(ModelError::bad_request(format!(
                    "an edit at layer {} is placed relative to the prompt's end, which a steered prefix does not know",
                    e.layer()
                )));
            }
            if !e.multipliers().is_empty() {
                return Err(ModelError::bad_request(
                    "a steered prefix needs edits with one multiplier for all rows",
                ));
            }
        }
        self.prefix_pass(&[prefix.to_vec()], edits)
    }

    /// `prefix` followed by `tokens` as one shared prefix, under the prefix's
    /// edits: only the keys and values of `tokens` are computed, so
    /// demonstrations put in front of many prompts are computed once and
    /// extended by each prompt.
    pub fn extend_prefix(&self, prefix: &SharedPrefix, tokens: &[u32]) -> Result<SharedPrefix> {
        if prefix.count() != 1 || tokens.is_empty() {
            return Err(ModelError::bad_request(
                "extend_prefix needs a single prefix and at least one more token",
            ));
        }
        let len = prefix.len() + tokens.len();
        if len > self.cfg.max_position_embeddings {
            return Err(ModelError::bad_request(format!(
                "an extended prefix runs to {len} tokens, past the model's context of {}",
                self.cfg.max_position_embeddings
            )));
        }
        let positions: Vec<Option<usize>> = (prefix.len()..len).map(Some).collect();
        let input = StepInput {
            ids: tokens,
            positions: &positions,
            prompt_lens: &[len],
            batch: 1,
            variants: 1,
            decoding: false,
        };
        let req = ForwardRequest {
            captures: &[],
            edits: &prefix.edits,
            logits: LogitsMode::None,
        };
        let mut cache = prefix.cache.clone();
        self.step(&input, Some(&mut cache), &req)?;
        Ok(SharedPrefix {
            cache,
            lens: vec![len],
            edits: prefix.edits.clone(),
        })
    }

    /// Runs each of `continuations` after `prefix`, giving the numbers
    /// [`Llama::forward`] gives for `prefix ++ continuation`, without
    /// recomputing the prefix. Captures and logits cover the continuation
    /// tokens only (`pads` and `lens` of the output describe them). Positions
    /// of edits count from the start of the prefix; an edit that would touch a
    /// prefix token of a row it carries at a non-zero multiplier is an error,
    /// since the prefix is shared and unsteered.
    pub fn forward_after(
        &self,
        prefix: &SharedPrefix,
        continuations: &[Vec<u32>],
        req: &ForwardRequest,
    ) -> Result<ForwardOutput> {
        if prefix.count() != 1 {
            return Err(ModelError::bad_request(
                "forward_after needs a single prefix; use forward_after_each for several",
            ));
        }
        self.forward_after_each(prefix, &vec![0; continuations.len()], continuations, req)
    }

    /// Like [`Llama::forward_after`], with continuation `r` run after prefix
    /// `which[r]` of a [`Llama::shared_prefixes`] pass.
    pub fn forward_after_each(
        &self,
        prefix: &SharedPrefix,
        which: &[usize],
        continuations: &[Vec<u32>],
        req: &ForwardRequest,
    ) -> Result<ForwardOutput> {
        if continuations.is_empty() || continuations.iter().any(|r| r.is_empty()) {
            return Err(ModelError::bad_request(
                "forward_after needs at least one non-empty continuation",
            ));
        }
        if which.len() != continuations.len() || which.iter().any(|&w| w >= prefix.count()) {
            return Err(ModelError::bad_request(format!(
                "{} continuations name prefixes {:?} of {}",
                continuations.len(),
                which,
                prefix.count()
            )));
        }
        let b = continuations.len();
        self.validate_request(req, b)?;
        let batch = PaddedBatch::new(continuations);
        let starts: Vec<usize> = which.iter().map(|&w| prefix.lens[w]).collect();
        let prompt_lens: Vec<usize> = batch.lens.iter().zip(&starts).map(|(l, p)| l + p).collect();
        self.check_after(req, prefix, &starts, &prompt_lens)?;
        let t = batch.lens.iter().max().copied().unwrap_or(0);
        let positions: Vec<Option<usize>> = batch
            .positions
            .iter()
            .enumerate()
            .map(|(slot, q)| q.map(|q| q + starts[slot / t]))
            .collect();
        let input = StepInput {
            ids: &batch.ids,
            positions: &positions,
            prompt_lens: &prompt_lens,
            batch: b,
            variants: 1,
            decoding: false,
        };
        let mut cache = prefix.cache.select(which, &self.device);
        let (logits, captures) = self.step(&input, Some(&mut cache), req)?;
        Ok(ForwardOutput {
            logits,
            captures,
            pads: batch.pads,
            lens: batch.lens,
        })
    }

    /// Runs `variants` independent copies of each prefix's continuation in one
    /// pass, without copying the prefixes' keys and values: copy `v` of
    /// `continuations[r]` (all of one length) sees prefix `r` and its own
    /// tokens only, so it gives the numbers [`Llama::forward_after`] gives for
    /// that continuation alone under the same edits. Edit multipliers are
    /// given per copy, `multipliers[r * variants + v]` (or none: the same for
    /// every copy). Logits come back as `[R · variants, vocab]` for
    /// `LogitsMode::Last` (the last token of each copy) and
    /// `[R · variants, len, vocab]` for `LogitsMode::All`; captures are not
    /// supported here.
    pub fn forward_variants(
        &self,
        prefix: &SharedPrefix,
        continuations: &[Vec<u32>],
        variants: usize,
        req: &ForwardRequest,
    ) -> Result<Option<HostTensor>> {
        let r = continuations.len();
        if r != prefix.count() || variants == 0 {
            return Err(ModelError::bad_request(format!(
                "forward_variants needs one continuation per prefix ({} for {}) and at least one variant",
                r,
                prefix.count()
            )));
        }
        let c = continuations[0].len();
        if c == 0 || continuations.iter().any(|x| x.len() != c) {
            return Err(ModelError::bad_request(
                "forward_variants needs non-empty continuations of one length",
            ));
        }
        if !req.captures.is_empty() {
            return Err(ModelError::bad_request("forward_variants returns no captures"));
        }
        self.validate_request(req, r * variants)?;
        let prompt_lens: Vec<usize> = prefix.lens.iter().map(|p| p + c).collect();
        self.check_after(req, prefix, &prefix.lens, &prompt_lens)?;
        let tq = variants * c;
        let mut ids = Vec::with_capacity(r * tq);
        let mut positions = Vec::with_capacity(r * tq);
        for (row, cont) in continuations.iter().enumerate() {
            for _ in 0..variants {
                ids.extend_from_slice(cont);
                positions.extend((0..c).map(|j| Some(prefix.lens[row] + j)));
            }
        }
        let input = StepInput {
            ids: &ids,
            positions: &positions,
            prompt_lens: &prompt_lens,
            batch: r,
            variants,
            decoding: false,
        };
        let (logits, _) = self.step(&input, Some(&mut prefix.cache.clone()), req)?;
        Ok(logits)
    }

    /// Refuses edits that would touch an unsteered shared prefix (rows start
    /// at `starts[row]`), other edits than a steered prefix's own, and
    /// continuations that run past the context.
    fn check_after(
        &self,
        req: &ForwardRequest,
        prefix: &SharedPrefix,
        starts: &[usize],
        prompt_lens: &[usize],
    ) -> Result<()> {
        if !prefix.edits.is_empty() {
            // The prefix's positions were computed under these very edits.
            if req.edits != prefix.edits.as_slice() {
                return Err(ModelError::bad_request(
                    "a steered prefix is continued only under the edits it was computed with",
                ));
            }
        } else {
            for e in req.edits {
                // A row the edit carries at multiplier 0 is left exactly as it is.
                let carried = |row: usize| e.multipliers().get(row).is_none_or(|&m| m != 0.0);
                if let Some(row) = (0..starts.len()).find(|&row| {
                    carried(row) && (0..starts[row]).any(|pos| e.positions().contains(pos, prompt_lens[row]))
                }) {
                    return Err(ModelError::bad_request(format!(
                        "an edit at layer {} touches the shared prefix of row {row}; prefixes are computed unsteered",
                        e.layer()
                    )));
                }
            }
        }
        if let Some(&longest) = prompt_lens.iter().max()
            && longest > self.cfg.max_position_embeddings
        {
            return Err(ModelError::bad_request(format!(
                "a prefix plus its continuation runs to {longest} tokens, past the model's context of {}",
                self.cfg.max_position_embeddings
            )));
        }
        Ok(())
    }

    /// One pass over `input`, appending to `cache` when given. Used for the
    /// plain forward (no cache), and for prefill and decode during generation.
    pub(crate) fn step(
        &self,
        input: &StepInput,
        mut cache: Option<&mut KvCache>,
        req: &ForwardRequest,
    ) -> Result<StepOutput> {
        let cfg = &self.cfg;
        let dev = &self.device;
        let b = input.batch;
        let tq = input.ids.len() / b;
        let d = cfg.hidden_size;
        let hd = cfg.head_dim();
        let n_heads = cfg.num_attention_heads;
        let n_kv = cfg.num_key_value_heads;
        if let Some(&bad) = input.ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(ModelError::bad_request(format!(
                "token id {bad} is out of range for a vocabulary of {}",
                cfg.vocab_size
            )));
        }

        if input.variants == 0 || !tq.is_multiple_of(input.variants) {
            return Err(ModelError::bad_request(format!(
                "{tq} slots per row do not split into {} equal variants",
                input.variants
            )));
        }

        // Key validity and the additive mask [B, Tq, Tk].
        let past = cache.as_ref().map_or(0, |c| c.len);
        let tk = past + tq;
        let mut valid = Vec::with_capacity(b * tk);
        for row in 0..b {
            if let Some(c) = cache.as_ref() {
                valid.extend_from_slice(&c.valid[row * past..(row + 1) * past]);
            }
            valid.extend((0..tq).map(|i| input.positions[row * tq + i].is_some()));
        }
        // Slots attend to every valid cached key, and causally to the new keys of their own block.
        let variants = input.variants;
        let block = tq / variants;
        let mut mask = vec![0.0f32; b * tq * tk];
        for row in 0..b {
            for i in 0..tq {
                for j in 0..tk {
                    let causal = j < past || (j - past <= i && (j - past) / block == i / block);
                    if !(causal && valid[row * tk + j]) {
                        mask[(row * tq + i) * tk + j] = MASKED;
                    }
                }
            }
        }

        // RoPE tables for each slot's position: [B · Tq, hd], halves repeated.
        let half = hd / 2;
        let mut cos = vec![0.0f32; b * tq * hd];
        let mut sin = vec![0.0f32; b * tq * hd];
        for (slot, pos) in input.positions.iter().enumerate() {
            let p = pos.unwrap_or(0) as f32;
            for (i, f) in self.inv_freq.iter().enumerate() {
                let angle = p * f;
                let (s, c) = angle.sin_cos();
                cos[slot * hd + i] = c;
                cos[slot * hd + half + i] = c;
                sin[slot * hd + i] = -s;
                sin[slot * hd + half + i] = s;
            }
        }

        // Per-edit coefficients [B, Tq, 1]: position mask times the row's multiplier.
        let coef = |edit: &Edit| -> Vec<f32> {
            let mult = edit.multipliers();
            let mut out = vec![0.0f32; b * tq];
            for row in 0..b {
                for i in 0..tq {
                    let m = match mult.len() {
                        0 => 1.0,
                        _ if variants > 1 => mult[row * variants + i / block],
                        _ => mult[row],
                    };
                    if let Some(p) = input.positions[row * tq + i]
                        && edit.positions().contains(p, input.prompt_lens[row])
                    {
                        out[row * tq + i] = m;
                    }
                }
            }
            out
        };

        let ids_t: Tensor<1, Int> = Tensor::from_data(
            TensorData::new(input.ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [b * tq]),
            dev,
        );
        let mut x: Tensor<3> = self.embed.clone().select(0, ids_t).reshape([b, tq, d]);
        let mut captures: Vec<(Capture, HostTensor)> = Vec::new();
        let wants = |site: Site| req.captures.iter().filter(move |c| c.site == site);
        let record = |site: Site, t: Tensor<3>, out: &mut Vec<(Capture, HostTensor)>| -> Result<()> {
            for c in wants(site) {
                let kept = match c.positions {
                    CapturePositions::All => t.clone(),
                    CapturePositions::Last => t.clone().narrow(1, tq - 1, 1),
                };
                out.push((*c, to_host(kept)?));
            }
            Ok(())
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let kernels = if input.decoding {
            self.kernels.for_decoding()
        } else {
            self.kernels
        };
        let tables = kernels.tables((cos, sin, hd), mask, [b, tq, tk], dev);

        for (l, blk) in self.blocks.iter().enumerate() {
            record(Site::ResidPre(l), x.clone(), &mut captures)?;
            let h = kernels
                .rms_norm(x.clone(), &blk.attn_norm, cfg.rms_norm_eps)
                .reshape([b * tq, d]);
            let proj = |w: &Tensor<2>, bias: &Option<Tensor<1>>| {
                let y = kernels.linear(h.clone(), w);
                match bias {
                    Some(bv) => y + bv.clone().unsqueeze::<2>(),
                    None => y,
                }
            };
            let q = kernels
                .rope(proj(&blk.wq, &blk.bq), n_heads, &tables)
                .reshape([b, tq, n_heads, hd]);
            let mut k = kernels
                .rope(proj(&blk.wk, &blk.bk), n_kv, &tables)
                .reshape([b, tq, n_kv, hd])
                .swap_dims(1, 2);
            let mut v = proj(&blk.wv, &blk.bv).reshape([b, tq, n_kv, hd]).swap_dims(1, 2);
            if let Some(c) = cache.as_deref_mut() {
                if c.keys.len() > l {
                    k = Tensor::cat(vec![c.keys[l].clone(), k], 2);
                    v = Tensor::cat(vec![c.values[l].clone(), v], 2);
                    c.keys[l] = k.clone();
                    c.values[l] = v.clone();
                } else {
                    c.keys.push(k.clone());
                    c.values.push(v.clone());
                }
            }
            let mut heads = kernels.attention(q, k, v, &tables, scale); // [B, Tq, H, hd]
            for e in req.edits.iter().filter(|e| e.layer() == l) {
                if let Edit::PatchHead { head, value, .. } = e {
                    // Rows and positions the patch does not touch keep their output exactly.
                    let c: Tensor<4> = Tensor::from_data(TensorData::new(coef(e), [b, tq, 1, 1]), dev);
                    let val: Tensor<4> = Tensor::from_data(TensorData::new(value.clone(), [1, 1, 1, hd]), dev);
                    let cur = heads.clone().narrow(2, *head, 1);
                    let patched = cur.clone() + c * (val - cur);
                    heads = heads.slice_assign([0..b, 0..tq, *head..*head + 1, 0..hd], patched);
                }
            }
            for c in wants(Site::HeadOut(l)) {
                let kept = match c.positions {
                    CapturePositions::All => heads.clone(),
                    CapturePositions::Last => heads.clone().narrow(1, tq - 1, 1),
                };
                captures.push((*c, to_host(kept)?));
            }
            let attn = kernels
                .linear(heads.reshape([b * tq, n_heads * hd]), &blk.wo)
                .reshape([b, tq, d]);
            record(Site::AttnOut(l), attn.clone(), &mut captures)?;
            x = x + attn;
            let h = kernels
                .rms_norm(x.clone(), &blk.mlp_norm, cfg.rms_norm_eps)
                .reshape([b * tq, d]);
            let mlp = kernels.mlp(h, &blk.w_gate, &blk.w_up, &blk.w_down).reshape([b, tq, d]);
            record(Site::MlpOut(l), mlp.clone(), &mut captures)?;
            x = x + mlp;
            for e in req.edits.iter().filter(|e| e.layer() == l) {
                match e {
                    Edit::AddVector { vector, .. } => {
                        let c: Tensor<3> = Tensor::from_data(TensorData::new(coef(e), [b, tq, 1]), dev);
                        let v: Tensor<3> = Tensor::from_data(TensorData::new(vector.clone(), [1, 1, d]), dev);
                        x = x + c * v;
                    }
                    Edit::AddKeepNorm { vector, .. } => {
                        let c: Tensor<3> = Tensor::from_data(TensorData::new(coef(e), [b, tq, 1]), dev);
                        let v: Tensor<3> = Tensor::from_data(TensorData::new(vector.clone(), [1, 1, d]), dev);
                        let before = x.clone().square().sum_dim(2).sqrt();
                        let moved = x + c * v;
                        let after = moved.clone().square().sum_dim(2).sqrt().clamp_min(f32::MIN_POSITIVE);
                        x = moved * (before / after);
                    }
                    Edit::Affine { matrix, bias, .. } => {
                        let c: Tensor<3> = Tensor::from_data(TensorData::new(coef(e), [b, tq, 1]), dev);
                        let a_t: Tensor<2> =
                            Tensor::from_data(TensorData::new(matrix.clone(), [d, d]), dev).transpose();
                        let bias: Tensor<3> = Tensor::from_data(TensorData::new(bias.clone(), [1, 1, d]), dev);
                        let mapped = x.clone().reshape([b * tq, d]).matmul(a_t).reshape([b, tq, d]) + bias;
                        x = x.clone() + c * (mapped - x);
                    }
                    Edit::PatchHead { .. } => {}
                }
            }
            record(Site::ResidPost(l), x.clone(), &mut captures)?;
        }
        if let Some(c) = cache {
            c.valid = valid;
            c.len = tk;
        }

        // Captures come back in request order, whatever order the blocks produced them.
        let mut ordered = Vec::with_capacity(req.captures.len());
        for c in req.captures {
            if let Some(pos) = captures.iter().position(|(k, _)| k == c) {
                ordered.push(captures.swap_remove(pos));
            }
        }

        let logits = match req.logits {
            LogitsMode::None => None,
            // With variants, each block of a row is a sequence of its own.
            LogitsMode::Last => {
                let last = x
                    .reshape([b * variants, block, d])
                    .narrow(1, block - 1, 1)
                    .reshape([b * variants, d]);
                let h = kernels.rms_norm(last, &self.norm, cfg.rms_norm_eps);
                Some(to_host(kernels.linear(h, &self.lm_head))?)
            }
            LogitsMode::All => {
                let h = kernels.rms_norm(x, &self.norm, cfg.rms_norm_eps).reshape([b * tq, d]);
                let logits = kernels
                    .linear(h, &self.lm_head)
                    .reshape([b * variants, block, cfg.vocab_size]);
                Some(to_host(logits)?)
            }
        };
        Ok((logits, ordered))
    }
}

/// RoPE inverse frequencies, with Llama-3 scaling when configured.
fn rope_inv_freq(cfg: &ModelConfig) -> Vec<f32> {
    let hd = cfg.head_dim();
    let base = cfg.rope_theta as f64;
    let mut freqs: Vec<f64> = (0..hd / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f64 / hd as f64))
        .collect();
    if let Some(s) = cfg.rope_scaling {
        let old_ctx = s.original_max_position_embeddings as f64;
        let low_wavelen = old_ctx / s.low_freq_factor as f64;
        let high_wavelen = old_ctx / s.high_freq_factor as f64;
        for f in freqs.iter_mut() {
            let wavelen = 2.0 * std::f64::consts::PI / *f;
            if wavelen > low_wavelen {
                *f /= s.factor as f64;
            } else if wavelen >= high_wavelen {
                let smooth = (old_ctx / wavelen - s.low_freq_factor as f64)
                    / (s.high_freq_factor as f64 - s.low_freq_factor as f64);
                *f = (1.0 - smooth) * *f / s.factor as f64 + smooth * *f;
            }
        }
    }
    freqs.into_iter().map(|f| f as f32).collect()
}
