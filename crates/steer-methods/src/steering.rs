//! `Steering`: what a fitted method produces, how it becomes model edits, and
//! its byte formats (safetensors with metadata; llama.cpp control vectors).

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, TensorView};
use steer_model::gguf::{GgufValue, GgufWriter};
use steer_model::{Edit, Positions};

use crate::{FitConfig, MethodError, MethodInfo, Result};

/// The form a steering takes.
#[derive(Debug, Clone, PartialEq)]
pub enum SteeringKind {
    /// Vectors added to the residual stream after the given blocks.
    Additive {
        /// `(layer, vector)` pairs in increasing layer order.
        vectors: Vec<(usize, Vec<f32>)>,
    },
    /// Vectors added to the residual stream after the given blocks, each
    /// position then rescaled to the norm it had before (ICV's norm-preserving addition).
    NormPreserving {
        /// `(layer, vector)` pairs in increasing layer order.
        vectors: Vec<(usize, Vec<f32>)>,
    },
    /// An affine map `h ← A h + b` of the residual stream after one block.
    Affine {
        /// The block.
        layer: usize,
        /// `A`, `d × d` row-major.
        matrix: Vec<f32>,
        /// `b`.
        bias: Vec<f32>,
    },
    /// A prompt transformation: tokens put in front of the prompt, the
    /// positive ones for a positive multiplier and the negative ones for a
    /// negative multiplier (its size does not matter); zero leaves the prompt alone.
    Prompt {
        /// Prefix that shows the behaviour.
        positive: Vec<u32>,
        /// Prefix that shows its opposite.
        negative: Vec<u32>,
    },
}

/// A fitted steering with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Steering {
    /// Registry name of the method that made it.
    pub method: String,
    /// Vectors or map.
    pub kind: SteeringKind,
    /// Where it applies.
    pub positions: Positions,
    /// Hyperparameters used (defaults filled in).
    pub params: BTreeMap<String, f64>,
    /// Free-form provenance (model sha256, data sha256, seed, ...).
    pub metadata: BTreeMap<String, String>,
}

impl Steering {
    /// A steering made by the method `info` under `config` from `n_pairs`
    /// pairs, with every hyperparameter (defaults filled in) and the seed recorded.
    pub fn fitted(
        info: &MethodInfo,
        config: &FitConfig,
        n_pairs: usize,
        kind: SteeringKind,
        positions: Positions,
    ) -> Result<Self> {
        let params: BTreeMap<String, f64> = info
            .hyperparameters
            .iter()
            .map(|h| Ok((h.name.to_string(), config.param(info, h.name)?)))
            .collect::<Result<_>>()?;
        let mut metadata = BTreeMap::new();
        metadata.insert("seed".to_string(), config.seed.to_string());
        metadata.insert("n_pairs".to_string(), n_pairs.to_string());
        Ok(Steering {
            method: info.name.to_string(),
            kind,
            positions,
            params,
            metadata,
        })
    }

    /// The model dimension the steering is for (0 for a prompt transformation).
    pub fn d_model(&self) -> usize {
        match &self.kind {
            SteeringKind::Additive { vectors } | SteeringKind::NormPreserving { vectors } => {
                vectors.first().map_or(0, |(_, v)| v.len())
            }
            SteeringKind::Affine { bias, .. } => bias.len(),
            SteeringKind::Prompt { .. } => 0,
        }
    }

    /// The layers it touches.
    pub fn layers(&self) -> Vec<usize> {
        match &self.kind {
            SteeringKind::Additive { vectors } | SteeringKind::NormPreserving { vectors } => {
                vectors.iter().map(|(l, _)| *l).collect()
            }
            SteeringKind::Affine { layer, .. } => vec![*layer],
            SteeringKind::Prompt { .. } => Vec::new(),
        }
    }

    /// The vectors of an additive or norm-preserving steering.
    pub fn vectors(&self) -> Option<&[(usize, Vec<f32>)]> {
        match &self.kind {
            SteeringKind::Additive { vectors } | SteeringKind::NormPreserving { vectors } => Some(vectors),
            _ => None,
        }
    }

    /// The prompt to run at strength `multiplier`: unchanged, except for a
    /// prompt transformation, which puts its prefix in front.
    pub fn prompt(&self, tokens: &[u32], multiplier: f32) -> Vec<u32> {
        match &self.kind {
            SteeringKind::Prompt { positive, negative } if multiplier != 0.0 => {
                let prefix = if multiplier > 0.0 { positive } else { negative };
                [prefix.as_slice(), tokens].concat()
            }
            _ => tokens.to_vec(),
        }
    }

    /// Model edits at strength `multiplier` for every batch row (0 leaves the model unchanged).
    pub fn edits(&self, multiplier: f32) -> Vec<Edit> {
        self.edits_per_row(&[multiplier])
    }

    /// Model edits with one multiplier per batch row (a single value applies to every row).
    pub fn edits_per_row(&self, multipliers: &[f32]) -> Vec<Edit> {
        let (one, per_row): (f32, Vec<f32>) = match multipliers {
            [m] => (*m, Vec::new()),
            many => (1.0, many.to_vec()),
        };
        match &self.kind {
            SteeringKind::Additive { vectors } => vectors
                .iter()
                .map(|(layer, v)| Edit::AddVector {
                    layer: *layer,
                    vector: v.iter().map(|x| x * one).collect(),
                    positions: self.positions.clone(),
                    multipliers: per_row.clone(),
                })
                .collect(),
            SteeringKind::NormPreserving { vectors } => vectors
                .iter()
                .map(|(layer, v)| Edit::AddKeepNorm {
                    layer: *layer,
                    vector: v.iter().map(|x| x * one).collect(),
                    positions: self.positions.clone(),
                    multipliers: per_row.clone(),
                })
                .collect(),
            SteeringKind::Prompt { .. } => Vec::new(),
            // One multiplier for all rows is folded into the map:
            // h + m((A h + b) − h) = (m A + (1 − m) I) h + m b.
            SteeringKind::Affine { layer, matrix, bias } if per_row.is_empty() => {
                let d = bias.len();
                vec![Edit::Affine {
                    layer: *layer,
                    matrix: matrix
                        .iter()
                        .enumerate()
                        .map(|(k, a)| one * a + if k / d == k % d { 1.0 - one } else { 0.0 })
                        .collect(),
                    bias: bias.iter().map(|b| one * b).collect(),
                    positions: self.positions.clone(),
                    multipliers: Vec::new(),
                }]
            }
            SteeringKind::Affine { layer, matrix, bias } => vec![Edit::Affine {
                layer: *layer,
                matrix: matrix.clone(),
                bias: bias.clone(),
                positions: self.positions.clone(),
                multipliers: per_row,
            }],
        }
    }

    /// Serialises to safetensors. One additive layer is stored as tensor
    /// `vector`; several as `vector.<layer>`; an affine map as `matrix` and
    /// `bias`. Everything else goes into the header metadata.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let ids = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        match &self.kind {
            SteeringKind::Additive { vectors } | SteeringKind::NormPreserving { vectors } if vectors.len() == 1 => {
                tensors.push((
                    "vector".into(),
                    Dtype::F32,
                    vec![vectors[0].1.len()],
                    bytes(&vectors[0].1),
                ));
            }
            SteeringKind::Additive { vectors } | SteeringKind::NormPreserving { vectors } => {
                for (l, v) in vectors {
                    tensors.push((format!("vector.{l}"), Dtype::F32, vec![v.len()], bytes(v)));
                }
            }
            SteeringKind::Affine { matrix, bias, .. } => {
                let d = bias.len();
                tensors.push(("matrix".into(), Dtype::F32, vec![d, d], bytes(matrix)));
                tensors.push(("bias".into(), Dtype::F32, vec![d], bytes(bias)));
            }
            SteeringKind::Prompt { positive, negative } => {
                tensors.push((
                    "prefix.positive".into(),
                    Dtype::U32,
                    vec![positive.len()],
                    ids(positive),
                ));
                tensors.push((
                    "prefix.negative".into(),
                    Dtype::U32,
                    vec![negative.len()],
                    ids(negative),
                ));
            }
        }
        let mut meta: HashMap<String, String> = HashMap::new();
        meta.insert("method".into(), self.method.clone());
        meta.insert(
            "kind".into(),
            match self.kind {
                SteeringKind::Additive { .. } => "additive".into(),
                SteeringKind::NormPreserving { .. } => "norm_preserving".into(),
                SteeringKind::Affine { .. } => "affine".into(),
                SteeringKind::Prompt { .. } => "prompt".into(),
            },
        );
        meta.insert(
            "layers".into(),
            serde_json::to_string(&self.layers()).unwrap_or_default(),
        );
        meta.insert(
            "positions".into(),
            serde_json::to_string(&self.positions).unwrap_or_default(),
        );
        meta.insert("params".into(), serde_json::to_string(&self.params).unwrap_or_default());
        meta.insert(
            "metadata".into(),
            serde_json::to_string(&self.metadata).unwrap_or_default(),
        );
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, dtype, shape, data)| {
                TensorView::new(*dtype, shape.clone(), data)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| MethodError::BadInput(format!("cannot store tensor '{n}': {e}")))
            })
            .collect::<Result<_>>()?;
        safetensors::serialize(views, Some(meta)).map_err(|e| MethodError::BadInput(format!("cannot serialise: {e}")))
    }

    /// Reads what [`Steering::to_safetensors`] wrote; `source_name` names the bytes in errors.
    pub fn from_safetensors(bytes: &[u8], source_name: &str) -> Result<Self> {
        let bad = |message: String| MethodError::Artefact {
            source_name: source_name.to_string(),
            message,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let tensors = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let field = |key: &str| {
            meta.get(key)
                .cloned()
                .ok_or_else(|| bad(format!("metadata has no '{key}'")))
        };
        let vector = |name: &str| -> Result<Vec<f32>> {
            let t = tensors
                .tensor(name)
                .map_err(|_| bad(format!("no tensor named '{name}'")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!("tensor '{name}' is {:?}, expected F32", t.dtype())));
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("tensor '{name}' holds NaN or infinite values")));
            }
            Ok(v)
        };
        let tokens = |name: &str| -> Result<Vec<u32>> {
            let t = tensors
                .tensor(name)
                .map_err(|_| bad(format!("no tensor named '{name}'")))?;
            if t.dtype() != Dtype::U32 {
                return Err(bad(format!("tensor '{name}' is {:?}, expected U32", t.dtype())));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let layers: Vec<usize> =
            serde_json::from_str(&field("layers")?).map_err(|e| bad(format!("metadata 'layers': {e}")))?;
        let read_vectors = || -> Result<Vec<(usize, Vec<f32>)>> {
            if layers.len() == 1 {
                return Ok(vec![(layers[0], vector("vector")?)]);
            }
            layers
                .iter()
                .map(|l| Ok((*l, vector(&format!("vector.{l}"))?)))
                .collect()
        };
        let kind = match field("kind")?.as_str() {
            "additive" if !layers.is_empty() => SteeringKind::Additive {
                vectors: read_vectors()?,
            },
            "norm_preserving" if !layers.is_empty() => SteeringKind::NormPreserving {
                vectors: read_vectors()?,
            },
            "prompt" if layers.is_empty() => SteeringKind::Prompt {
                positive: tokens("prefix.positive")?,
                negative: tokens("prefix.negative")?,
            },
            "affine" if layers.len() == 1 => {
                let bias = vector("bias")?;
                let matrix = vector("matrix")?;
                if matrix.len() != bias.len() * bias.len() {
                    return Err(bad(format!(
                        "matrix has {} values for a bias of {}",
                        matrix.len(),
                        bias.len()
                    )));
                }
                SteeringKind::Affine {
                    layer: layers[0],
                    matrix,
                    bias,
                }
            }
            other => return Err(bad(format!("unsupported kind '{other}' with layers {layers:?}"))),
        };
        if let SteeringKind::Additive { vectors } | SteeringKind::NormPreserving { vectors } = &kind
            && vectors.iter().any(|(_, v)| v.len() != vectors[0].1.len())
        {
            return Err(bad("vectors of different lengths".into()));
        }
        Ok(Steering {
            method: field("method")?,
            kind,
            positions: serde_json::from_str(&field("positions")?)
                .map_err(|e| bad(format!("metadata 'positions': {e}")))?,
            params: serde_json::from_str(&field("params")?).map_err(|e| bad(format!("metadata 'params': {e}")))?,
            metadata: serde_json::from_str(&field("metadata")?)
                .map_err(|e| bad(format!("metadata 'metadata': {e}")))?,
        })
    }

    /// A llama.cpp control vector (GGUF) for an additive steering at strength
    /// `multiplier`: `controlvector.model_hint`, `controlvector.layer_count`
    /// and one f32 `direction.<n>` per layer.
    ///
    /// llama.cpp adds `direction.<n>` to the output of block `n` (0-based):
    /// `llama_adapter_cvec::apply` stores it as the tensor of layer `n`, and
    /// each architecture's graph calls `build_cvec(cur, il)` on block `il`'s
    /// output. That is the block steerbench calls layer `n`, so the tensor
    /// keeps the layer's number. llama.cpp has no slot for block 0 (its
    /// numbering starts at 1), so a steering at layer 0 cannot be exported.
    pub fn to_control_vector(&self, model_hint: &str, n_layers: usize, multiplier: f32) -> Result<Vec<u8>> {
        let SteeringKind::Additive { vectors } = &self.kind else {
            return Err(MethodError::BadInput(
                "only additive steerings export as control vectors".into(),
            ));
        };
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", GgufValue::String("controlvector".into()));
        w.add_metadata("controlvector.model_hint", GgufValue::String(model_hint.into()));
        w.add_metadata("controlvector.layer_count", GgufValue::I32(n_layers as i32));
        for (layer, v) in vectors {
            if *layer >= n_layers {
                return Err(MethodError::BadInput(format!(
                    "layer {layer} is out of range for {n_layers} layers"
                )));
            }
            if *layer == 0 {
                return Err(MethodError::BadInput(
                    "layer 0 cannot be a llama.cpp control vector: llama.cpp steers the outputs of blocks 1 and up only".into(),
                ));
            }
            w.add_tensor_f32(
                format!("direction.{layer}"),
                &[v.len()],
                v.iter().map(|x| x * multiplier).collect(),
            );
        }
        w.to_bytes(std::path::Path::new("control vector"))
            .map_err(|e| MethodError::BadInput(format!("cannot write the control vector: {e}")))
    }

    /// Reads a llama.cpp control vector (from `llama-cvector-generator`,
    /// repeng's `export_gguf` or [`Steering::to_control_vector`]) as llama.cpp
    /// applies it: `direction.<n>` is added, at every position, to the output
    /// of block `n`. As in llama.cpp, every tensor must be a one-axis f32
    /// `direction.<n>` with `n ≥ 1`, all of one width. `source_name` names the
    /// bytes in errors.
    pub fn from_control_vector(bytes: Vec<u8>, source_name: &str) -> Result<Self> {
        let bad = |message: String| MethodError::Artefact {
            source_name: source_name.to_string(),
            message,
        };
        let file = steer_model::gguf::GgufFile::from_bytes(bytes, std::path::Path::new(source_name))
            .map_err(|e| MethodError::BadInput(e.to_string()))?;
        let architecture = file.get("general.architecture").and_then(|v| v.as_str());
        if let Some(arch) = architecture
            && arch != "controlvector"
        {
            return Err(bad(format!(
                "not a llama.cpp control vector: its general.architecture is '{arch}', not 'controlvector'"
            )));
        }
        if file.tensors.is_empty() {
            return Err(bad("a control vector without direction tensors".into()));
        }
        let mut vectors = Vec::with_capacity(file.tensors.len());
        for info in &file.tensors {
            let layer = info
                .name
                .strip_prefix("direction.")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    bad(format!(
                        "not a llama.cpp control vector: tensor '{}' is not named direction.<layer>",
                        info.name
                    ))
                })?;
            if layer == 0 {
                return Err(bad(
                    "tensor 'direction.0': llama.cpp numbers control-vector layers from 1".into(),
                ));
            }
            if info.ggml_type != steer_model::gguf::GgmlType::F32 {
                return Err(bad(format!(
                    "tensor '{}' is {}; llama.cpp reads only f32 control vectors",
                    info.name, info.ggml_type
                )));
            }
            if info.dims.len() != 1 {
                return Err(bad(format!(
                    "tensor '{}' has shape {:?}; a direction has one axis",
                    info.name,
                    info.shape()
                )));
            }
            let v = file
                .dequantize(&info.name)
                .map_err(|e| MethodError::BadInput(e.to_string()))?;
            vectors.push((layer, v));
        }
        vectors.sort_by_key(|(l, _)| *l);
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), "llama.cpp control vector".to_string());
        if let Some(hint) = file.get("controlvector.model_hint").and_then(|v| v.as_str()) {
            metadata.insert("model_hint".to_string(), hint.to_string());
        }
        Steering::external(vectors, metadata, &bad)
    }

    /// Reads per-layer vectors from a safetensors file written by another
    /// tool: one-axis tensors (f32, f16 or bf16) named `<n>`, `layer.<n>`,
    /// `layers.<n>`, `vector.<n>` or `direction.<n>`, each added at every
    /// position to the output of block `n` (0-based: the block whose output
    /// PyTorch's `model.model.layers[n]` returns, and llama.cpp's
    /// `direction.<n>`). A file written by [`Steering::to_safetensors`] is
    /// read as that instead.
    pub fn from_vectors_safetensors(bytes: &[u8], source_name: &str) -> Result<Self> {
        let bad = |message: String| MethodError::Artefact {
            source_name: source_name.to_string(),
            message,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        if header
            .metadata()
            .as_ref()
            .is_some_and(|m| m.contains_key("kind") && m.contains_key("method"))
        {
            return Steering::from_safetensors(bytes, source_name);
        }
        let tensors = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let mut vectors = Vec::new();
        for (name, t) in tensors.tensors() {
            let number = ["layer.", "layers.", "vector.", "direction."]
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .unwrap_or(&name);
            let layer = number.parse::<usize>().map_err(|_| {
                bad(format!(
                    "tensor '{name}' names no layer: per-layer vectors are named <n>, layer.<n>, layers.<n>, vector.<n> or direction.<n>"
                ))
            })?;
            if t.shape().len() != 1 {
                return Err(bad(format!(
                    "tensor '{name}' has shape {:?}; a vector has one axis",
                    t.shape()
                )));
            }
            let data = t.data();
            let v: Vec<f32> = match t.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(bad(format!(
                        "tensor '{name}' is {other:?}; vectors are F32, F16 or BF16"
                    )));
                }
            };
            if vectors.iter().any(|(l, _)| *l == layer) {
                return Err(bad(format!("two tensors for layer {layer}")));
            }
            vectors.push((layer, v));
        }
        if vectors.is_empty() {
            return Err(bad("no tensors".into()));
        }
        vectors.sort_by_key(|(l, _)| *l);
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), "safetensors per-layer vectors".to_string());
        Steering::external(vectors, metadata, &bad)
    }

    /// Reads a steering file of any format steerbench knows, told apart by
    /// their first bytes: a llama.cpp control vector (GGUF), a steering
    /// written by [`Steering::to_safetensors`], or per-layer vectors in
    /// safetensors ([`Steering::from_vectors_safetensors`]).
    pub fn from_file_bytes(bytes: Vec<u8>, source_name: &str) -> Result<Self> {
        if bytes.starts_with(b"GGUF") {
            Steering::from_control_vector(bytes, source_name)
        } else {
            Steering::from_vectors_safetensors(&bytes, source_name)
        }
    }

    /// An additive steering made elsewhere, checked for one width and finite values.
    fn external(
        vectors: Vec<(usize, Vec<f32>)>,
        metadata: BTreeMap<String, String>,
        bad: &dyn Fn(String) -> MethodError,
    ) -> Result<Self> {
        let width = vectors[0].1.len();
        if width == 0 {
            return Err(bad("vectors of width 0".into()));
        }
        if let Some((l, v)) = vectors.iter().find(|(_, v)| v.len() != width) {
            return Err(bad(format!(
                "the vector for layer {l} has {} values but the one for layer {} has {width}",
                v.len(),
                vectors[0].0
            )));
        }
        if let Some((l, _)) = vectors.iter().find(|(_, v)| v.iter().any(|x| !x.is_finite())) {
            return Err(bad(format!("the vector for layer {l} holds NaN or infinite values")));
        }
        Ok(Steering {
            method: "external".to_string(),
            kind: SteeringKind::Additive { vectors },
            positions: Positions::All,
            params: BTreeMap::new(),
            metadata,
        })
    }

    /// Fails unless every vector is `d_model` wide and every layer is a block of
    /// a model with `n_layers` blocks; the message names the layer.
    pub fn check_shape(&self, d_model: usize, n_layers: usize) -> Result<()> {
        let width = self.d_model();
        if width != 0 && width != d_model {
            return Err(MethodError::BadInput(format!(
                "its vectors have {width} values but the model's d_model is {d_model}"
            )));
        }
        if let Some(l) = self.layers().into_iter().find(|&l| l >= n_layers) {
            return Err(MethodError::BadInput(format!(
                "it steers layer {l}, which the model lacks (it has {n_layers} layers, 0..{})",
                n_layers.saturating_sub(1)
            )));
        }
        Ok(())
    }
}
