//! Unsteered damage measurements kept across the evaluations of one model.
//!
//! The unsteered perplexity of a text and the unsteered answers of a
//! likelihood-scored capability task depend on neither the method nor the
//! behaviour task, and each is computed in passes of its own (never beside
//! steered variants), so a kept value has exactly the bits a fresh
//! computation gives. A runner that evaluates many (method, task) units on one
//! model keeps one cache and measures each of them once; the cache belongs to
//! that model and must not be shared with another.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::Result;
use crate::spec::Task;

/// Unsteered results keyed by the damage task (its folder and whole spec).
#[derive(Debug, Default)]
pub struct UnsteeredCache {
    perplexity: Mutex<HashMap<String, (f64, usize)>>,
    hits: Mutex<HashMap<String, Vec<f32>>>,
}

impl UnsteeredCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many measurements are kept.
    pub fn len(&self) -> usize {
        self.perplexity.lock().map_or(0, |m| m.len()) + self.hits.lock().map_or(0, |m| m.len())
    }

    /// Whether nothing is kept yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unsteered `(perplexity, tokens)` of `task`, computed by `compute` the first time.
    pub(crate) fn perplexity(
        &self,
        task: &Task,
        compute: impl FnOnce() -> Result<(f64, usize)>,
    ) -> Result<(f64, usize)> {
        kept(&self.perplexity, task, compute)
    }

    /// The unsteered per-item hits of `task`, computed by `compute` the first time.
    pub(crate) fn hits(&self, task: &Task, compute: impl FnOnce() -> Result<Vec<f32>>) -> Result<Vec<f32>> {
        kept(&self.hits, task, compute)
    }
}

/// The value kept under `task`, or `compute`'s, which is then kept.
fn kept<T: Clone>(map: &Mutex<HashMap<String, T>>, task: &Task, compute: impl FnOnce() -> Result<T>) -> Result<T> {
    let key = format!("{task:?}");
    if let Some(v) = map.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(v);
    }
    let v = compute()?;
    if let Ok(mut m) = map.lock() {
        m.insert(key, v.clone());
    }
    Ok(v)
}
