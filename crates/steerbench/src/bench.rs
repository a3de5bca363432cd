//! The benchmark runner: every (method, task) unit of a selection, evaluated
//! once, written atomically under `results/runs/`, skipped when already
//! finished, and guarded by a lock so that two runs never write one folder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use steer_suites::generation::Generation;
use steer_suites::protocol::{EvalOptions, Subject};
use steer_suites::rows::ResultRow;
use steer_suites::spec::{Format, Task};

use crate::write_atomic;

/// What one evaluation of one method on one task produced.
pub struct Outcome {
    /// Result rows.
    pub rows: Vec<ResultRow>,
    /// Every test item's values under every variant.
    pub items: Vec<steer_suites::protocol::ItemValue>,
    /// Kept generations.
    pub generations: Vec<Generation>,
}

/// Evaluates `method` on `task` with the protocol its format calls for.
/// Unless `quiet`, the report is printed through `show` (which may hide
/// progress bars while it prints).
pub fn evaluate(
    subject: &Subject,
    task: &Task,
    method: &dyn steer_methods::SteeringMethod,
    opts: &EvalOptions,
    quiet: bool,
    show: &dyn Fn(&mut dyn FnMut()),
) -> Result<Outcome> {
    Ok(match task.spec.format {
        Format::IclPairs => {
            let report = steer_suites::protocol::evaluate_icl(subject, task, method, opts)?;
            if !quiet {
                show(&mut || crate::print_icl_report(&report));
            }
            Outcome {
                rows: report.rows,
                items: report.items,
                generations: Vec::new(),
            }
        }
        Format::Sentiment => {
            let report = steer_suites::sentiment::evaluate_sentiment(subject, task, method, opts)?;
            if !quiet {
                show(&mut || crate::print_sentiment_report(&report));
            }
            let mut generations = Vec::new();
            for g in &report.generations {
                for (opening, text) in report.openings.iter().zip(&g.texts) {
                    generations.push(Generation {
                        task: report.task.clone(),
                        method: report.method.clone(),
                        variant: g.variant.to_string(),
                        layer: report.chosen_layer,
                        multiplier: g.multiplier,
                        prompt: opening.clone(),
                        text: text.clone(),
                    });
                }
            }
            Outcome {
                items: report.items,
                rows: report.rows,
                generations,
            }
        }
        Format::CaaAb => {
            let report = steer_suites::protocol::evaluate_mcq(subject, task, method, opts)?;
            if !quiet {
                show(&mut || crate::print_report(&report));
            }
            Outcome {
                items: report.items,
                rows: report.rows,
                generations: report.generations,
            }
        }
        Format::RawText | Format::AnchorMc | Format::AnchorGen => {
            bail!("{} measures damage; it is not evaluated on its own", task.id())
        }
    })
}

/// A folder-safe name for a model argument: `default` becomes the default
/// model's name, a path its file or folder name, `org/name` `org--name`.
pub fn model_slug(model: &str) -> String {
    let name = if model == "default" {
        "SmolLM2-135M-Instruct".to_string()
    } else if Path::new(model).exists() {
        let p = Path::new(model);
        p.file_stem()
            .or_else(|| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| model.to_string())
    } else {
        model.replace('/', "--")
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An exclusive lock on a results folder, released when dropped.
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes `dir/.lock`, or fails naming the process that holds it. A lock
    /// left by a process that no longer runs is taken over.
    pub fn take(dir: &Path) -> Result<Lock> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        let path = dir.join(".lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).with_context(|| format!("{}", path.display()))?;
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let pid = holder.trim().parse::<u32>().ok();
                    let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                    if alive {
                        bail!(
                            "{}: another run (process {}) is writing these results",
                            path.display(),
                            holder.trim()
                        );
                    }
                    std::fs::remove_file(&path).with_context(|| format!("{}", path.display()))?;
                }
                Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
            }
        }
        bail!("{}: could not take the lock", path.display())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Provenance of one unit, written next to its rows once they are complete.
#[derive(Serialize)]
struct Sidecar<'a> {
    steerbench_version: &'a str,
    protocol: u32,
    git_commit: &'a str,
    /// The UTC date the unit finished (`YYYY-MM-DD`).
    finished: String,
    model: &'a str,
    model_sha256: &'a str,
    method: &'a str,
    method_hyperparameters: std::collections::BTreeMap<String, f64>,
    /// Where an external steering came from: its file, sha256, format and layers.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    method_source: std::collections::BTreeMap<String, String>,
    task: String,
    task_version: u32,
    data_sha256: String,
    backend: &'a str,
    seed: u64,
    limit: Option<usize>,
    layers: Option<Vec<usize>>,
    multipliers: Option<Vec<f32>>,
    rows: usize,
}

/// The commit of the source tree, with `+dirty` when it has uncommitted
/// changes outside `results/`, or `unknown`.
pub fn git_commit() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(head) => {
            // `results/` is generated and changes while a run writes it: only the sources count.
            let dirty = run(&["status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{head}+dirty") } else { head }
        }
        None => "unknown".into(),
    }
}

/// The UTC calendar date of `t` as `YYYY-MM-DD` (proleptic Gregorian; 1970-01-01 before the epoch).
pub fn utc_date(t: std::time::SystemTime) -> String {
    let days = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Days since 1970-01-01 to a civil date, counting in 400-year eras from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The date a unit finishes: today in UTC, or the date of `$SOURCE_DATE_EPOCH`
/// (seconds since 1970) where it is set, so that reruns can be byte-identical.
fn finished_date() -> String {
    let pinned = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match pinned {
        Some(secs) => utc_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)),
        None => utc_date(std::time::SystemTime::now()),
    }
}

/// One unit of work.
pub struct Unit<'a> {
    /// The method.
    pub method: Box<dyn steer_methods::SteeringMethod>,
    /// The task.
    pub task: &'a Task,
    /// Items per split of this unit, where its profile sizes it (else the settings' limit).
    pub limit: Option<Option<usize>>,
}

/// Where a unit's files go.
pub fn unit_paths(results: &Path, model: &str, method: &str, task: &Task) -> [PathBuf; 4] {
    let dir = results
        .join("runs")
        .join(model_slug(model))
        .join(method)
        .join(&task.spec.suite);
    let name = &task.spec.name;
    [
        dir.join(format!("{name}.csv")),
        dir.join(format!("{name}.items.csv")),
        dir.join(format!("{name}.generations.jsonl")),
        dir.join(format!("{name}.json")),
    ]
}

/// How the runner was asked to run.
pub struct BenchSettings<'a> {
    /// The results folder.
    pub results: &'a Path,
    /// The model argument.
    pub model: &'a str,
    /// The backend name.
    pub backend: &'a str,
    /// Protocol options shared by every unit.
    pub opts: EvalOptions,
    /// Print every unit's full report.
    pub verbose: bool,
}

/// Draws the phases of the unit in flight as a second bar and keeps when each started.
struct PhaseBar {
    bar: indicatif::ProgressBar,
    started: std::sync::Mutex<Vec<(String, Instant)>>,
}

impl steer_suites::protocol::Progress for PhaseBar {
    fn phase(&self, name: &str, index: usize, count: usize) {
        self.bar.set_length(count as u64);
        self.bar.set_position(index as u64);
        self.bar.set_message(name.to_string());
        if let Ok(mut started) = self.started.lock() {
            started.push((name.to_string(), Instant::now()));
        }
    }
}

impl PhaseBar {
    /// `name=seconds` of every phase since the last call, space-separated.
    fn take_times(&self) -> String {
        let Ok(mut started) = self.started.lock() else {
            return String::new();
        };
        let now = Instant::now();
        let ends: Vec<Instant> = started.iter().skip(1).map(|(_, t)| *t).chain([now]).collect();
        let text = started
            .iter()
            .zip(ends)
            .map(|((name, t), end)| format!("{name}={:.1}", (end - *t).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ");
        started.clear();
        text
    }
}

/// Runs every unit not finished yet. Returns `(done now, skipped)`.
pub fn run_units(subject: &Subject, units: &[Unit], settings: &BenchSettings) -> Result<(usize, usize)> {
    let _lock = Lock::take(&settings.results.join("runs"))?;
    let commit = git_commit();
    let todo: Vec<&Unit> = units
        .iter()
        .filter(|u| !unit_paths(settings.results, settings.model, u.method.info().name, u.task)[3].is_file())
        .collect();
    let skipped = units.len() - todo.len();
    if skipped > 0 {
        println!("{skipped} of {} units are already finished; skipping them", units.len());
    }
    let bars = indicatif::MultiProgress::new();
    let bar = bars.add(indicatif::ProgressBar::new(todo.len() as u64));
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} units, ETA {eta} — {msg}")
            .expect("a valid progress template"),
    );
    let phases = PhaseBar {
        bar: bars.add(indicatif::ProgressBar::new(0)),
        started: std::sync::Mutex::new(Vec::new()),
    };
    phases.bar.set_style(
        indicatif::ProgressStyle::with_template("           {bar:30} phase {pos}/{len}: {msg} ({elapsed})")
            .expect("a valid progress template"),
    );
    // Unsteered damage measurements are the same for every unit: each is made once.
    let kept = steer_suites::unsteered::UnsteeredCache::new();
    let mut unit_subject = subject.with_progress(&phases);
    unit_subject.unsteered = Some(&kept);
    for unit in &todo {
        let info = unit.method.info();
        bar.set_message(format!("{} on {}", info.name, unit.task.id()));
        phases.bar.reset_elapsed();
        let started = Instant::now();
        let mut opts = settings.opts.clone();
        if let Some(limit) = unit.limit {
            opts.limit = limit;
        }
        let outcome = evaluate(
            &unit_subject,
            unit.task,
            unit.method.as_ref(),
            &opts,
            !settings.verbose,
            &|print| bars.suspend(&mut *print),
        )?;
        let [csv, items, generations, sidecar] = unit_paths(settings.results, settings.model, info.name, unit.task);
        if let Some(dir) = csv.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        write_atomic(&csv, &steer_suites::rows::to_csv(&outcome.rows)?)?;
        write_atomic(&items, items_csv(&outcome.items).as_bytes())?;
        let mut text = String::new();
        for g in &outcome.generations {
            text.push_str(&serde_json::to_string(g)?);
            text.push('\n');
        }
        write_atomic(&generations, text.as_bytes())?;
        let first = outcome.rows.first();
        let side = Sidecar {
            steerbench_version: env!("CARGO_PKG_VERSION"),
            protocol: steer_suites::protocol::PROTOCOL_VERSION,
            git_commit: &commit,
            finished: finished_date(),
            model: settings.model,
            model_sha256: &subject.sha256,
            method: info.name,
            method_hyperparameters: info
                .hyperparameters
                .iter()
                .map(|h| {
                    let v = settings.opts.params.get(h.name).copied().unwrap_or(h.default);
                    (h.name.to_string(), v)
                })
                .collect(),
            method_source: unit.method.provenance(),
            task: unit.task.id(),
            task_version: unit.task.spec.version,
            data_sha256: first.map(|r| r.data_sha256.clone()).unwrap_or_default(),
            backend: settings.backend,
            seed: settings.opts.seed,
            limit: opts.limit,
            layers: settings.opts.layers.clone(),
            multipliers: settings.opts.multipliers.clone(),
            rows: outcome.rows.len(),
        };
        // The sidecar is written last: its presence marks the unit finished.
        write_atomic(&sidecar, (serde_json::to_string_pretty(&side)? + "\n").as_bytes())?;
        let seconds = started.elapsed().as_secs_f64();
        append_timing(
            settings.results,
            &format!(
                "{}\t{}\t{seconds:.1}\t{}",
                info.name,
                unit.task.id(),
                phases.take_times()
            ),
        )?;
        // A hidden bar (output not a terminal) prints nothing, so logs get plain lines.
        let line = format!(
            "finished {} on {} in {seconds:.0} s ({}/{})",
            info.name,
            unit.task.id(),
            bar.position() + 1,
            todo.len()
        );
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
        bar.inc(1);
    }
    phases.bar.finish_and_clear();
    bar.finish_and_clear();
    Ok((todo.len(), skipped))
}

/// The per-item file: a header, then `item,variant,metric,multiplier,value`
/// per value (values in their shortest exact form, so they read back bit for bit).
pub fn items_csv(items: &[steer_suites::protocol::ItemValue]) -> String {
    let mut text = String::from("item,variant,metric,multiplier,value\n");
    for it in items {
        text.push_str(&format!(
            "{},{},{},{},{}\n",
            it.item,
            it.variant,
            it.metric,
            it.multiplier.map_or(String::new(), |m| m.to_string()),
            it.value
        ));
    }
    text
}

/// Appends a line to `results/runs/timings.tsv`, the one file that differs
/// between runs (wall times are not reproducible).
fn append_timing(results: &Path, line: &str) -> Result<()> {
    let path = results.join("runs").join("timings.tsv");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("{}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::utc_date;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn utc_dates_match_python_datetime() {
        // Values from Python's datetime.utcfromtimestamp, leap days and a century included.
        for (secs, date) in [
            (0, "1970-01-01"),
            (951_782_400, "2000-02-29"),
            (1_709_164_800, "2024-02-29"),
            (1_796_688_000, "2026-12-08"),
            (4_102_444_800, "2100-01-01"),
            (4_102_444_799, "2099-12-31"),
        ] {
            assert_eq!(utc_date(UNIX_EPOCH + Duration::from_secs(secs)), date, "{secs}");
        }
    }
}
