//! A steering made by another tool, evaluated as if it were a method.
//!
//! `external:<file>` on the command line: a llama.cpp control vector, per-layer
//! vectors in safetensors, or a steering steerbench saved. Nothing is fitted:
//! "fitting" checks the file's vectors against the model and returns them,
//! applied at all their layers at once as llama.cpp applies a control vector.
//! The protocol then treats the steering like any method's: a steering at one
//! layer is rescaled to the residual-stream norm and runs the relative grid;
//! one at several layers runs [`SEVERAL_LAYERS_GRID`] on the vectors as they
//! are, so that multiplier 1 is the file itself (llama.cpp's scale 1). The
//! caller reads the file; this type only sees its bytes.

use std::collections::BTreeMap;

use steer_model::Llama;

use crate::{FitConfig, MethodError, MethodInfo, Result, Steering, SteeringKind, SteeringMethod, TrainingSet};

/// The multiplier grid of an external steering at several layers, in units
/// of the file's own vectors.
pub const SEVERAL_LAYERS_GRID: &[f32] = &[-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0];

/// A steering read from a file.
pub struct External {
    steering: Steering,
    name: &'static str,
    paper: &'static str,
    provenance: BTreeMap<String, String>,
}

impl External {
    /// The steering in `bytes` (any format [`Steering::from_file_bytes`]
    /// reads), named `external-<stem>` after `file_name`, with `sha256` of the
    /// bytes kept for provenance.
    pub fn from_bytes(bytes: Vec<u8>, file_name: &str, sha256: &str) -> Result<Self> {
        let mut steering = Steering::from_file_bytes(bytes, file_name)?;
        let format = steering
            .metadata
            .get("format")
            .cloned()
            .unwrap_or_else(|| format!("steerbench steering ({})", steering.method));
        let stem: String = std::path::Path::new(file_name)
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' })
            .collect();
        let name = format!("external-{}", if stem.is_empty() { "file" } else { &stem });
        steering.method = name.clone();
        steering.metadata.insert("source".into(), file_name.to_string());
        steering.metadata.insert("source_sha256".into(), sha256.to_string());
        let provenance = BTreeMap::from([
            ("file".to_string(), file_name.to_string()),
            ("sha256".to_string(), sha256.to_string()),
            ("format".to_string(), format.clone()),
            ("layers".to_string(), format!("{:?}", steering.layers())),
        ]);
        // MethodInfo holds static strings; an External is made once per file per run.
        let paper = format!("{format} read from {file_name} (sha256 {sha256})");
        Ok(External {
            steering,
            name: Box::leak(name.into_boxed_str()),
            paper: Box::leak(paper.into_boxed_str()),
            provenance,
        })
    }

    /// The steering as read.
    pub fn steering(&self) -> &Steering {
        &self.steering
    }
}

impl SteeringMethod for External {
    fn info(&self) -> MethodInfo {
        let one_layer = matches!(&self.steering.kind, SteeringKind::Additive { vectors } if vectors.len() == 1);
        MethodInfo {
            name: self.name,
            paper: self.paper,
            summary: "a steering made elsewhere, applied as read",
            hyperparameters: &[],
            multipliers: if one_layer {
                crate::RELATIVE_GRID
            } else {
                SEVERAL_LAYERS_GRID
            },
        }
    }

    fn fit(&self, model: &Llama, _data: &TrainingSet, _config: &FitConfig) -> Result<Steering> {
        let cfg = model.config();
        self.steering
            .check_shape(cfg.hidden_size, cfg.num_hidden_layers)
            .map_err(|e| MethodError::BadInput(format!("{}: {e}", self.provenance["file"])))?;
        Ok(self.steering.clone())
    }

    /// The file says where its vectors act; a layer sweep does not move them.
    fn per_layer(&self) -> bool {
        false
    }

    fn provenance(&self) -> BTreeMap<String, String> {
        self.provenance.clone()
    }
}
