//! Finding and loading a model from what users have: the default model, a GGUF
//! file, a Hugging Face directory, or a snapshot in the local Hugging Face cache.

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use sha2::{Digest, Sha256};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::llama::Llama;
use crate::tokenizer::ChatTokenizer;
use crate::weights::{SafetensorsShards, WeightSource};

/// File name of the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the default model file.
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// steerbench's data folder: `$STEERBENCH_HOME`, else `$XDG_CACHE_HOME/steerbench`,
/// else `~/.cache/steerbench`.
pub fn steerbench_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("STEERBENCH_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("steerbench");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("steerbench")
}

/// Where setup puts the default model.
pub fn default_model_path() -> PathBuf {
    steerbench_home().join("models").join(DEFAULT_MODEL_FILE)
}

/// The folder of the local Hugging Face hub cache.
pub fn hf_hub_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// The on-disk form of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFormat {
    /// One GGUF file.
    Gguf(PathBuf),
    /// A Hugging Face directory (`config.json`, safetensors, `tokenizer.json`).
    HfDir(PathBuf),
}

impl ModelFormat {
    /// The file or directory.
    pub fn path(&self) -> &Path {
        match self {
            ModelFormat::Gguf(p) | ModelFormat::HfDir(p) => p,
        }
    }
}

/// Resolves a `--model` argument: `default`, a `.gguf` path, a Hugging Face
/// directory, or `org/name` found in the local Hugging Face cache.
pub fn resolve(spec: &str) -> Result<ModelFormat> {
    if spec == "default" {
        let path = default_model_path();
        if !path.is_file() {
            return Err(ModelError::NotFound(format!(
                "the default model is not installed ({} is missing): run `cargo xtask setup`",
                path.display()
            )));
        }
        return Ok(ModelFormat::Gguf(path));
    }
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(ModelFormat::Gguf(path.to_path_buf()));
    }
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(ModelFormat::HfDir(path.to_path_buf()));
        }
        return Err(ModelError::NotFound(format!(
            "{spec}: a directory without config.json is not a model"
        )));
    }
    let parts: Vec<&str> = spec.split('/').collect();
    if parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != "..") {
        return resolve_hub_cache(parts[0], parts[1], &hf_hub_cache());
    }
    Err(ModelError::NotFound(format!(
        "{spec}: no such file or directory (give `default`, a .gguf file, a Hugging Face directory, or org/name)"
    )))
}

/// Finds `org/name` in a Hugging Face hub cache folder without any network access.
pub fn resolve_hub_cache(org: &str, name: &str, cache: &Path) -> Result<ModelFormat> {
    let repo = cache.join(format!("models--{org}--{name}"));
    let missing = || {
        ModelError::NotFound(format!(
            "{org}/{name} is not in the local Hugging Face cache ({}); steerbench never downloads models, \
             so fetch it first (e.g. `huggingface-cli download {org}/{name}`) or pass a path",
            repo.display()
        ))
    };
    if !repo.is_dir() {
        return Err(missing());
    }
    let snapshots = repo.join("snapshots");
    let by_ref = std::fs::read_to_string(repo.join("refs").join("main"))
        .ok()
        .map(|r| snapshots.join(r.trim()))
        .filter(|p| p.join("config.json").is_file());
    let snapshot = match by_ref {
        Some(p) => p,
        None => {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&snapshots)
                .map_err(|_| missing())?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("config.json").is_file())
                .collect();
            found.sort();
            found.pop().ok_or_else(missing)?
        }
    };
    Ok(ModelFormat::HfDir(snapshot))
}

/// A model ready to run: network, tokenizer and where it came from.
pub struct LoadedModel {
    /// The network.
    pub model: Llama,
    /// Its tokenizer and chat template.
    pub tokenizer: ChatTokenizer,
    /// The files it was loaded from.
    pub format: ModelFormat,
}

impl LoadedModel {
    /// Loads the model named by `spec` (see [`resolve`]) onto `device`.
    pub fn load(spec: &str, device: &Device) -> Result<Self> {
        let format = resolve(spec)?;
        Self::load_format(format, device)
    }

    /// Loads a resolved model onto `device`.
    pub fn load_format(format: ModelFormat, device: &Device) -> Result<Self> {
        let (cfg, weights, tokenizer) = match &format {
            ModelFormat::Gguf(path) => {
                let file = GgufFile::open(path)?;
                let cfg = ModelConfig::from_gguf(&file)?;
                let tokenizer = ChatTokenizer::from_gguf_metadata(&file.metadata, path)?;
                (cfg, WeightSource::Gguf(file), tokenizer)
            }
            ModelFormat::HfDir(dir) => {
                let cfg = ModelConfig::from_hf_json(&dir.join("config.json"))?;
                let tokenizer = ChatTokenizer::from_hf_dir(dir)?;
                (cfg, WeightSource::Safetensors(SafetensorsShards::open(dir)?), tokenizer)
            }
        };
        let model = Llama::load(&cfg, &weights, device)?;
        Ok(LoadedModel {
            model,
            tokenizer,
            format,
        })
    }

    /// sha256 of the model's files (for a directory: of its weight and config files in name order).
    pub fn sha256(&self) -> Result<String> {
        let files: Vec<PathBuf> = match &self.format {
            ModelFormat::Gguf(p) => vec![p.clone()],
            ModelFormat::HfDir(dir) => {
                let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|e| ModelError::io(dir, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        n.ends_with(".safetensors") || n == "config.json" || n == "tokenizer.json"
                    })
                    .collect();
                v.sort();
                v
            }
        };
        let mut hasher = Sha256::new();
        for path in files {
            sha256_into(&path, &mut hasher)?;
        }
        Ok(format!("{:x}", hasher.finalize()))
    }
}

/// Feeds a file's bytes into `hasher`.
fn sha256_into(path: &Path, hasher: &mut Sha256) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// sha256 of one file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    sha256_into(path, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}
