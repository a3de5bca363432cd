//! Task specs (`task.toml`) and the catalogue of tasks under a suites folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Result, SuiteError, read_text};

/// The data formats a task can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// CAA A/B items: a JSON list of `question`, `answer_matching_behavior`, `answer_not_matching_behavior`.
    CaaAb,
    /// Plain UTF-8 text scored by perplexity.
    RawText,
    /// Function-vector pairs: a JSON list of `input`, `output`.
    IclPairs,
    /// Weighted multiple-choice anchor items (JSON Lines of `weight`, `question`, `choices`, `answer`).
    AnchorMc,
    /// Weighted anchor items answered by a greedy generation whose last number
    /// is compared with `answer` (JSON Lines of `weight`, `question`, `answer`).
    AnchorGen,
    /// Neutral text openings steered towards positive or negative sentiment: a
    /// text file of prompts, one per line, and a `words` file of
    /// positive/negative word pairs.
    Sentiment,
}

/// How a multiple-choice item's answer is read off the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// The choices are listed with letters; the answer is the letter with the highest next-token logit.
    #[default]
    Letter,
    /// The answer is the choice text with the highest summed log-likelihood as the continuation of the question.
    Likelihood,
}

/// A task's `task.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Task name, equal to its folder name.
    pub name: String,
    /// Suite name, equal to the parent folder name.
    pub suite: String,
    /// Bumped whenever data, prompts or metrics change.
    pub version: u32,
    /// Tags that `--suite all` and tag selection expand.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How the data files are read.
    pub format: Format,
    /// One line on what the task measures.
    pub description: String,
    /// The file training and validation items come from (relative to the task folder), if any.
    #[serde(default)]
    pub train: Option<String>,
    /// The file of test items.
    pub test: String,
    /// Share of `train` items kept for validation.
    #[serde(default)]
    pub validation_fraction: f64,
    /// Seed of the shuffle that splits `train` into training and validation.
    #[serde(default)]
    pub split_seed: u64,
    /// Share of the items kept for testing when one file holds them all (`icl_pairs`).
    #[serde(default)]
    pub test_fraction: f64,
    /// Demonstrations in a few-shot prompt (`icl_pairs`).
    #[serde(default)]
    pub shots: Option<usize>,
    /// Tokens per window (`raw_text`).
    #[serde(default)]
    pub window: Option<usize>,
    /// Tokens between window starts (`raw_text`).
    #[serde(default)]
    pub stride: Option<usize>,
    /// Tokens of the text that are used (`raw_text`).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// How answers are read (`anchor_mc`).
    #[serde(default)]
    pub scoring: Scoring,
    /// Most tokens a greedy generation adds (`anchor_gen`, `sentiment`).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// The file of positive/negative word pairs (`sentiment`).
    #[serde(default)]
    pub words: Option<String>,
    /// Open-ended prompts (a JSON list of `question`) whose greedy
    /// continuations are kept for inspection (`caa_ab`).
    #[serde(default)]
    pub open_prompts: Option<String>,
    /// The VADER lexicon generated text is scored with (`sentiment`).
    #[serde(default)]
    pub lexicon: Option<String>,
}

/// A task: its spec and its folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The parsed `task.toml`.
    pub spec: TaskSpec,
    /// The task folder.
    pub dir: PathBuf,
}

impl Task {
    /// Reads `dir/task.toml` and checks it against the folder layout.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("task.toml");
        let text = read_text(&path)?;
        let spec: TaskSpec = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start].lines().count().max(1));
            SuiteError::data(&path, line, e.message().to_string())
        })?;
        let folder = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let parent = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if spec.name != folder || spec.suite != parent {
            return Err(SuiteError::data(
                &path,
                0,
                format!(
                    "spec says {}/{} but the folder is {parent}/{folder}",
                    spec.suite, spec.name
                ),
            ));
        }
        if !(0.0..1.0).contains(&spec.validation_fraction) {
            return Err(SuiteError::data(
                &path,
                0,
                format!("validation_fraction {} is not in [0, 1)", spec.validation_fraction),
            ));
        }
        for file in spec
            .train
            .iter()
            .chain([&spec.test])
            .chain(spec.words.iter())
            .chain(spec.lexicon.iter())
            .chain(spec.open_prompts.iter())
        {
            if !dir.join(file).is_file() {
                return Err(SuiteError::data(&path, 0, format!("data file '{file}' is missing")));
            }
        }
        let needs = |ok: bool, what: &str| -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(SuiteError::data(
                    &path,
                    0,
                    format!("format {:?} needs {what}", spec.format),
                ))
            }
        };
        match spec.format {
            Format::CaaAb => needs(
                spec.train.is_some()
                    && (spec.train.as_deref() != Some(spec.test.as_str())
                        || (spec.test_fraction > 0.0 && spec.test_fraction + spec.validation_fraction < 1.0)),
                "a train file, and test_fraction > 0 (with test_fraction + validation_fraction < 1) when train = test",
            )?,
            Format::IclPairs => needs(
                spec.train.as_deref() == Some(spec.test.as_str())
                    && spec.test_fraction > 0.0
                    && spec.test_fraction + spec.validation_fraction < 1.0
                    && spec.shots.is_some_and(|k| k > 0),
                "train = test, test_fraction > 0, test_fraction + validation_fraction < 1 and shots > 0",
            )?,
            Format::AnchorMc => needs(spec.train.is_none(), "no train file (it measures capability only)")?,
            Format::AnchorGen => needs(
                spec.train.is_none() && spec.max_new_tokens.is_some_and(|n| n > 0),
                "no train file (it measures capability only) and max_new_tokens > 0",
            )?,
            Format::Sentiment => needs(
                spec.train.is_none()
                    && spec.words.is_some()
                    && spec.lexicon.is_some()
                    && spec.test_fraction > 0.0
                    && spec.validation_fraction > 0.0
                    && spec.test_fraction + spec.validation_fraction < 1.0
                    && spec.max_new_tokens.is_some_and(|n| n > 0),
                "a words file, a lexicon, no train file, test_fraction > 0, validation_fraction > 0, their sum < 1 and max_new_tokens > 0",
            )?,
            Format::RawText => needs(
                spec.window.is_some_and(|w| w > 1)
                    && spec.stride.is_some_and(|s| s > 0 && s < spec.window.unwrap_or(0))
                    && spec.max_tokens.is_some_and(|m| m > 1),
                "window > 1, 0 < stride < window and max_tokens > 1",
            )?,
        }
        Ok(Task {
            spec,
            dir: dir.to_path_buf(),
        })
    }

    /// `suite/task`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.spec.suite, self.spec.name)
    }

    /// Path of a file of the task.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Every task under a suites folder.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Tasks sorted by suite, then name.
    pub tasks: Vec<Task>,
}

impl Catalog {
    /// Reads every `<suite>/<task>/task.toml` under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let list = |dir: &Path| -> Result<Vec<PathBuf>> {
            let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|source| SuiteError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            out.sort();
            Ok(out)
        };
        let mut tasks = Vec::new();
        for suite in list(root)? {
            for task in list(&suite)? {
                if task.join("task.toml").is_file() {
                    tasks.push(Task::open(&task)?);
                }
            }
        }
        Ok(Catalog { tasks })
    }

    /// The tasks named by `suite` (a suite name, a tag, or `all`) and `task`
    /// (a task name, or `None` for every task of the selection).
    pub fn select(&self, suite: &str, task: Option<&str>) -> Result<Vec<&Task>> {
        let chosen: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| suite == "all" || t.spec.suite == suite || t.spec.tags.iter().any(|g| g == suite))
            .filter(|t| task.is_none_or(|name| t.spec.name == name))
            .collect();
        if chosen.is_empty() {
            let mut suites: Vec<&str> = self.tasks.iter().map(|t| t.spec.suite.as_str()).collect();
            suites.dedup();
            return Err(SuiteError::BadRequest(match task {
                Some(name) => format!(
                    "no task '{name}' in suite '{suite}' (tasks there: {})",
                    self.tasks
                        .iter()
                        .filter(|t| t.spec.suite == suite)
                        .map(|t| t.spec.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("no suite or tag '{suite}' (suites: {})", suites.join(", ")),
            }));
        }
        Ok(chosen)
    }
}

/// The suites folder of this source tree (used when none is given).
pub fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites")
}
