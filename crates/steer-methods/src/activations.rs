//! Activation collection for fitting: the residual stream at the last token.

use steer_model::{Capture, ForwardRequest, Llama, LogitsMode, Site};

use crate::{MethodError, Result, TrainingSet};

/// The residual stream after each block in `layers` at the last token of
/// every sequence: `rows[sequence][k]` holds `d_model` values for `layers[k]`,
/// sequences in input order. Sequences run `batch_size` at a time, batched in
/// order of length so that little work goes into padding.
pub fn last_token_resid_layers(
    model: &Llama,
    sequences: &[Vec<u32>],
    layers: &[usize],
    batch_size: usize,
) -> Result<Vec<Vec<Vec<f32>>>> {
    if sequences.is_empty() || layers.is_empty() {
        return Err(MethodError::BadInput(
            "no sequences or layers to read activations from".into(),
        ));
    }
    let captures: Vec<Capture> = layers.iter().map(|&l| Capture::last(Site::ResidPost(l))).collect();
    let req = ForwardRequest {
        captures: &captures,
        edits: &[],
        logits: LogitsMode::None,
    };
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| sequences[i].len());
    let mut rows: Vec<Vec<Vec<f32>>> = vec![Vec::new(); sequences.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| sequences[i].clone()).collect();
        let out = model.forward(&batch, &req)?;
        for capture in &captures {
            let resid = out
                .capture(*capture)
                .ok_or_else(|| MethodError::BadInput("the model returned no activations".into()))?;
            for (b, &i) in chunk.iter().enumerate() {
                rows[i].push(resid.row(&[b, 0]).to_vec());
            }
        }
    }
    Ok(rows)
}

/// The residual stream after block `layer` at the last token of every
/// sequence, one `d_model` row per sequence in input order.
pub fn last_token_resid(
    model: &Llama,
    sequences: &[Vec<u32>],
    layer: usize,
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    Ok(last_token_resid_layers(model, sequences, &[layer], batch_size)?
        .into_iter()
        .map(|mut r| r.swap_remove(0))
        .collect())
}

/// Rows read at several layers: `[sequence][layer index][d_model]`.
pub type LayerRows = Vec<Vec<Vec<f32>>>;

/// Rows read at one layer: `[sequence][d_model]`.
pub type Rows = Vec<Vec<f32>>;

/// The residual stream after each block in `layers` at the last token of
/// every pair's positive and negative sequence: `(positive, negative)`, each
/// indexed `[pair][k]` for `layers[k]`. Prompts run `batch_size` at a time
/// (in order of length), each computed once and shared by its pair's two
/// completions, which run together in the next pass; pairs without a prompt
/// run as whole sequences, `batch_size` at a time.
pub fn paired_resid_layers(
    model: &Llama,
    data: &TrainingSet,
    layers: &[usize],
    batch_size: usize,
) -> Result<(LayerRows, LayerRows)> {
    if let Some(cache) = &data.activations
        && let Some(found) = cache.select(layers, data.pairs.len(), model.config().hidden_size)
    {
        return Ok(found);
    }
    let pairs = &data.pairs;
    if pairs.is_empty() || layers.is_empty() {
        return Err(MethodError::BadInput(
            "no pairs or layers to read activations from".into(),
        ));
    }
    let mut positive = vec![Vec::new(); pairs.len()];
    let mut negative = vec![Vec::new(); pairs.len()];
    let captures: Vec<Capture> = layers.iter().map(|&l| Capture::last(Site::ResidPost(l))).collect();
    let req = ForwardRequest {
        captures: &captures,
        edits: &[],
        logits: LogitsMode::None,
    };
    let (mut prompted, whole): (Vec<usize>, Vec<usize>) = (0..pairs.len())
        .partition(|&i| !(pairs[i].prompt.is_empty() || pairs[i].positive.is_empty() || pairs[i].negative.is_empty()));
    prompted.sort_by_key(|&i| pairs[i].prompt.len());
    for chunk in prompted.chunks(batch_size.max(1)) {
        let prompts: Vec<Vec<u32>> = chunk.iter().map(|&i| pairs[i].prompt.clone()).collect();
        let shared = model.shared_prefixes(&prompts)?;
        // Rows 2k and 2k + 1 continue prompt k with its pair's two completions.
        let which: Vec<usize> = (0..chunk.len()).flat_map(|k| [k, k]).collect();
        let completions: Vec<Vec<u32>> = chunk
            .iter()
            .flat_map(|&i| [pairs[i].positive.clone(), pairs[i].negative.clone()])
            .collect();
        let out = model.forward_after_each(&shared, &which, &completions, &req)?;
        for capture in &captures {
            let resid = out
                .capture(*capture)
                .ok_or_else(|| MethodError::BadInput("the model returned no activations".into()))?;
            for (k, &i) in chunk.iter().enumerate() {
                positive[i].push(resid.row(&[2 * k, 0]).to_vec());
                negative[i].push(resid.row(&[2 * k + 1, 0]).to_vec());
            }
        }
    }
    if !whole.is_empty() {
        let pos: Vec<Vec<u32>> = whole.iter().map(|&i| pairs[i].positive_sequence()).collect();
        let neg: Vec<Vec<u32>> = whole.iter().map(|&i| pairs[i].negative_sequence()).collect();
        let pos = last_token_resid_layers(model, &pos, layers, batch_size)?;
        let neg = last_token_resid_layers(model, &neg, layers, batch_size)?;
        for ((&i, p), n) in whole.iter().zip(pos).zip(neg) {
            positive[i] = p;
            negative[i] = n;
        }
    }
    Ok((positive, negative))
}

/// The residual stream after block `layer` at the last token of every pair's
/// positive and negative sequence: `(positive rows, negative rows)`.
pub fn paired_resid(model: &Llama, data: &TrainingSet, layer: usize, batch_size: usize) -> Result<(Rows, Rows)> {
    let (pos, neg) = paired_resid_layers(model, data, &[layer], batch_size)?;
    let first = |rows: LayerRows| rows.into_iter().map(|mut r| r.swap_remove(0)).collect();
    Ok((first(pos), first(neg)))
}

/// Last-token residual streams of a training set's pairs, read once at
/// several layers and reused by every fit on that set (a layer sweep fits one
/// steering per layer). They belong to the model they were read from.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedActivations {
    layers: Vec<usize>,
    positive: LayerRows,
    negative: LayerRows,
}

impl CachedActivations {
    /// Reads the activations of `data`'s pairs after each block in `layers`.
    pub fn read(model: &Llama, data: &TrainingSet, layers: &[usize], batch_size: usize) -> Result<Self> {
        let plain = TrainingSet {
            activations: None,
            ..data.clone()
        };
        let (positive, negative) = paired_resid_layers(model, &plain, layers, batch_size)?;
        Ok(CachedActivations {
            layers: layers.to_vec(),
            positive,
            negative,
        })
    }

    /// The rows for `layers`, if all are cached and the shapes fit `pairs` pairs of width `d_model`.
    fn select(&self, layers: &[usize], pairs: usize, d_model: usize) -> Option<(LayerRows, LayerRows)> {
        let index: Vec<usize> = layers
            .iter()
            .map(|l| self.layers.iter().position(|c| c == l))
            .collect::<Option<_>>()?;
        if self.positive.len() != pairs || self.positive.first()?.first()?.len() != d_model {
            return None;
        }
        let pick = |rows: &LayerRows| {
            rows.iter()
                .map(|r| index.iter().map(|&k| r[k].clone()).collect())
                .collect()
        };
        Some((pick(&self.positive), pick(&self.negative)))
    }
}
