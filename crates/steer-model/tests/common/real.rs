//! Access to the default model and the reference fixtures for the real-model tests.

use std::path::PathBuf;

use steer_model::{Backend, LoadedModel};

/// Loads the default model on the CPU; fails (never skips) when it is not installed.
pub fn default_model() -> LoadedModel {
    let path = steer_model::model::default_model_path();
    assert!(
        path.is_file(),
        "the default model is missing at {}: run `cargo xtask setup` (or `cargo xtask test`)",
        path.display()
    );
    let device = Backend::Cpu.device().expect("CPU backend");
    LoadedModel::load("default", &device).expect("the default model loads")
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}
