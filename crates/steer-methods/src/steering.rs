//! `Steering`: what a fitted method produces, how it becomes model edits, and
//! its byte formats (safetensors with metadata; llama.cpp control vectors).

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, TensorView};
use steer_model::gguf::{GgufValue, GgufWriter};
use steer_model::{Edit, Positions};

use crate::{MethodError, Result};

/// The form a steering takes.
#[derive(Debug, Clone, PartialEq)]
pub enum SteeringKind {
    /// Vectors added to the residual stream after the given blocks.
    Additive {
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
    /// The model dimension the steering is for.
    pub fn d_model(&self) -> usize {
        match &self.kind {
            SteeringKind::Additive { vectors } => vectors.first().map_or(0, |(_, v)| v.len()),
            SteeringKind::Affine { bias, .. } => bias.len(),
        }
    }

    /// The layers it touches.
    pub fn layers(&self) -> Vec<usize> {
        match &self.kind {
            SteeringKind::Additive { vectors } => vectors.iter().map(|(l, _)| *l).collect(),
            SteeringKind::Affine { layer, .. } => vec![*layer],
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
            SteeringKind::Affine { layer, matrix, bias } => vec![Edit::Affine {
                layer: *layer,
                matrix: matrix.clone(),
                bias: bias.clone(),
                positions: self.positions.clone(),
                multipliers: if per_row.is_empty() { vec![one] } else { per_row },
            }],
        }
    }

    /// Serialises to safetensors. One additive layer is stored as tensor
    /// `vector`; several as `vector.<layer>`; an affine map as `matrix` and
    /// `bias`. Everything else goes into the header metadata.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        match &self.kind {
            SteeringKind::Additive { vectors } if vectors.len() == 1 => {
                tensors.push(("vector".into(), vec![vectors[0].1.len()], bytes(&vectors[0].1)));
            }
            SteeringKind::Additive { vectors } => {
                for (l, v) in vectors {
                    tensors.push((format!("vector.{l}"), vec![v.len()], bytes(v)));
                }
            }
            SteeringKind::Affine { matrix, bias, .. } => {
                let d = bias.len();
                tensors.push(("matrix".into(), vec![d, d], bytes(matrix)));
                tensors.push(("bias".into(), vec![d], bytes(bias)));
            }
        }
        let mut meta: HashMap<String, String> = HashMap::new();
        meta.insert("method".into(), self.method.clone());
        meta.insert(
            "kind".into(),
            match self.kind {
                SteeringKind::Additive { .. } => "additive".into(),
                SteeringKind::Affine { .. } => "affine".into(),
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
            .map(|(n, shape, data)| {
                TensorView::new(Dtype::F32, shape.clone(), data)
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
        let layers: Vec<usize> =
            serde_json::from_str(&field("layers")?).map_err(|e| bad(format!("metadata 'layers': {e}")))?;
        let kind = match field("kind")?.as_str() {
            "additive" if layers.len() == 1 => SteeringKind::Additive {
                vectors: vec![(layers[0], vector("vector")?)],
            },
            "additive" if !layers.is_empty() => SteeringKind::Additive {
                vectors: layers
                    .iter()
                    .map(|l| Ok((*l, vector(&format!("vector.{l}"))?)))
                    .collect::<Result<_>>()?,
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
        if let SteeringKind::Additive { vectors } = &kind
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
    /// and one f32 `direction.<n>` per layer, where llama.cpp's layer `n` is
    /// the output of block `n - 1` (its numbering starts at 1).
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
            w.add_tensor_f32(
                format!("direction.{}", layer + 1),
                &[v.len()],
                v.iter().map(|x| x * multiplier).collect(),
            );
        }
        w.to_bytes(std::path::Path::new("control vector"))
            .map_err(|e| MethodError::BadInput(format!("cannot write the control vector: {e}")))
    }
}
