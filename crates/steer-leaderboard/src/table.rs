//! The aggregation: every run's rows in one long frame, reduced to one
//! leaderboard row per model × method × task.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::input::Run;
use crate::{Error, Result};

/// Suites whose rows measure a run's side effects rather than its task.
pub const SIDE_SUITES: [&str; 3] = ["perplexity", "tinybench", "open_ended"];

/// The method whose effect every other method is compared with.
pub const PROMPTING: &str = "prompting";

/// Leading columns of the leaderboard, before the per-task capability columns.
pub const HEAD_COLUMNS: [&str; 44] = [
    "model",
    "method",
    "suite",
    "task",
    "metric",
    "verdict",
    "chosen_layer",
    "chosen_multiplier",
    "relative_strength",
    "raw_multiplier",
    "fluency_constrained",
    "unsteered",
    "steered",
    "steered_ci_low",
    "steered_ci_high",
    "effect",
    "effect_ci_low",
    "effect_ci_high",
    "p_unsteered",
    "p_holm",
    "min_detectable_effect",
    "random_effect",
    "effect_vs_random",
    "p_random",
    "effect_vs_prompting",
    "p_prompting",
    "anti_steerable_fraction",
    "random_anti_steerable_fraction",
    "steerability",
    "letter_bias",
    "delta_letter_bias",
    "unconstrained_layer",
    "unconstrained_multiplier",
    "unconstrained_effect",
    "mcq_minus_open_effect",
    "ood_effect_system_towards",
    "ood_effect_system_away",
    "ood_effect_user_towards",
    "ood_effect_user_away",
    "ood_effect_multi_turn",
    "ood_mean_effect",
    "delta_perplexity",
    "perplexity_ratio",
    "delta_tinybench_accuracy",
];

/// Trailing columns of the leaderboard, after the per-task capability columns.
pub const TAIL_COLUMNS: [&str; 4] = ["n_test", "seed", "task_version", "protocol"];

/// A leaderboard key: model, method, suite and task.
pub type RunKey = (String, String, String, String);

/// One cell of the leaderboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text (names).
    Text(String),
    /// A measured number.
    Num(f64),
    /// A count, seed, layer or version.
    Int(u64),
    /// A multiplier, written in its shortest exact form.
    Multiplier(f64),
    /// No value.
    Empty,
}

impl Cell {
    /// The number in the cell, if it holds a finite one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Num(x) | Cell::Multiplier(x) if x.is_finite() => Some(*x),
            Cell::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text in the cell (empty for non-text cells).
    pub fn text(&self) -> &str {
        match self {
            Cell::Text(s) => s,
            _ => "",
        }
    }

    /// The cell as the CSV writes it.
    pub fn csv(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(x) => fixed(*x, 6),
            Cell::Int(i) => i.to_string(),
            Cell::Multiplier(x) => format!("{x}"),
            Cell::Empty => String::new(),
        }
    }
}

/// `x` with `digits` decimals; never `-0`, and `NaN`, `inf`, `-inf` for non-finite values.
pub fn fixed(x: f64, digits: usize) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = format!("{x:.digits$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_string(),
        _ => s,
    }
}

/// The leaderboard in row form, sorted, with its column names.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, in leaderboard order.
    pub rows: Vec<Vec<Cell>>,
}

impl Board {
    /// Index of a column.
    pub fn index(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }

    /// The cell of `row` in `column` (`Empty` for an unknown column).
    pub fn cell<'a>(&self, row: &'a [Cell], column: &str) -> &'a Cell {
        self.index(column).and_then(|i| row.get(i)).unwrap_or(&Cell::Empty)
    }
}

/// One point of a dose curve: a test value of the primary metric.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// Model name.
    pub model: String,
    /// Method name.
    pub method: String,
    /// Suite name.
    pub suite: String,
    /// Task name.
    pub task: String,
    /// Metric name.
    pub metric: String,
    /// `unsteered`, `steered`, `random` or a task-specific variant.
    pub variant: String,
    /// Multiplier.
    pub multiplier: f64,
    /// Value.
    pub value: f64,
    /// Lower end of the interval.
    pub ci_low: Option<f64>,
    /// Upper end of the interval.
    pub ci_high: Option<f64>,
}

/// What the aggregation produces: the leaderboard and the dose curves.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    /// The leaderboard.
    pub board: Board,
    /// Test values of each run's primary metric, in run and file order.
    pub curves: Vec<CurvePoint>,
    /// For each leaderboard key (model, method, suite, task), the index of its run.
    pub run_of: BTreeMap<RunKey, usize>,
}

/// Checks each run's rows and returns the leaderboard key of every run.
fn keys(runs: &[Run]) -> Result<BTreeMap<RunKey, usize>> {
    let mut seen: BTreeMap<RunKey, usize> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let whole = |message: String| Error::input(&run.path, None, message);
        let Some(first) = run.rows.first() else {
            return Err(whole("the file has no rows".into()));
        };
        if let Some((line, r)) = run
            .rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.model != first.model || r.method != first.method)
        {
            return Err(Error::input(
                &run.path,
                Some(line as u64 + 2),
                format!(
                    "model/method `{}`/`{}` differs from the file's first row (`{}`/`{}`); a file holds one run",
                    r.model, r.method, first.model, first.method
                ),
            ));
        }
        let choices: Vec<_> = run
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.variant == "choice" && r.metric == "chosen")
            .collect();
        let (line, choice) = match choices.as_slice() {
            [one] => *one,
            [] => return Err(whole("no `choice` row (variant choice, metric chosen)".into())),
            [_, (second, _), ..] => {
                return Err(Error::input(
                    &run.path,
                    Some(*second as u64 + 2),
                    "a second `choice` row; a file holds one run".into(),
                ));
            }
        };
        if choice.multiplier.is_none() {
            return Err(Error::input(
                &run.path,
                Some(line as u64 + 2),
                "the `choice` row has no multiplier".into(),
            ));
        }
        if SIDE_SUITES.contains(&choice.suite.as_str()) {
            return Err(Error::input(
                &run.path,
                Some(line as u64 + 2),
                format!("the `choice` row names side-effect suite `{}`", choice.suite),
            ));
        }
        let key = (
            choice.model.clone(),
            choice.method.clone(),
            choice.suite.clone(),
            choice.task.clone(),
        );
        if let Some(other) = seen.insert(key.clone(), i) {
            return Err(whole(format!(
                "a second run of {} / {} on {}/{}; the first is {}",
                key.0,
                key.1,
                key.2,
                key.3,
                runs[other].path.display()
            )));
        }
    }
    Ok(seen)
}

/// All rows of all runs, with the run index (`file`) and the row's position in its file (`ord`).
fn long_frame(runs: &[Run]) -> Result<DataFrame> {
    let total: usize = runs.iter().map(|r| r.rows.len()).sum();
    let mut file = Vec::with_capacity(total);
    let mut ord = Vec::with_capacity(total);
    let mut text: [Vec<&str>; 7] = Default::default();
    let mut layer = Vec::with_capacity(total);
    let mut multiplier = Vec::with_capacity(total);
    let mut value = Vec::with_capacity(total);
    let mut ci_low = Vec::with_capacity(total);
    let mut ci_high = Vec::with_capacity(total);
    let mut n = Vec::with_capacity(total);
    let mut seed = Vec::with_capacity(total);
    let mut version = Vec::with_capacity(total);
    for (f, run) in runs.iter().enumerate() {
        for (i, r) in run.rows.iter().enumerate() {
            file.push(f as u32);
            ord.push(i as u32);
            for (col, s) in text
                .iter_mut()
                .zip([&r.model, &r.method, &r.variant, &r.suite, &r.task, &r.split, &r.metric])
            {
                col.push(s.as_str());
            }
            layer.push(r.layer);
            multiplier.push(r.multiplier);
            value.push(r.value);
            ci_low.push(r.ci_low);
            ci_high.push(r.ci_high);
            n.push(r.n);
            seed.push(r.seed);
            version.push(r.task_version);
        }
    }
    let mut columns = vec![Column::new("file".into(), file), Column::new("ord".into(), ord)];
    for (name, col) in ["model", "method", "variant", "suite", "task", "split", "metric"]
        .into_iter()
        .zip(text)
    {
        columns.push(Column::new(name.into(), col));
    }
    columns.extend([
        Column::new("layer".into(), layer),
        Column::new("multiplier".into(), multiplier),
        Column::new("value".into(), value),
        Column::new("ci_low".into(), ci_low),
        Column::new("ci_high".into(), ci_high),
        Column::new("n".into(), n),
        Column::new("seed".into(), seed),
        Column::new("task_version".into(), version),
    ]);
    Ok(DataFrame::new(total, columns)?)
}

fn is(df: &DataFrame, column: &str, value: &str) -> Result<BooleanChunked> {
    Ok(df.column(column)?.str()?.equal(value))
}

/// Rows where each `(column, value)` of `tests` holds.
fn pick(df: &DataFrame, tests: &[(&str, &str)]) -> Result<DataFrame> {
    let mut mask = BooleanChunked::full("mask".into(), true, df.height());
    for (column, value) in tests {
        mask = &mask & &is(df, column, value)?;
    }
    Ok(df.filter(&mask)?)
}

/// Rows whose `multiplier` matches `target` (a column name, or `None` for zero).
fn at_multiplier(df: &DataFrame, target: Option<&str>) -> Result<DataFrame> {
    let m = df.column("multiplier")?.f64()?;
    let mask: BooleanChunked = match target {
        Some(column) => {
            let t = df.column(column)?.f64()?;
            m.iter()
                .zip(t.iter())
                .map(|(a, b)| matches!((a, b), (Some(a), Some(b)) if crate::paired::same(a, b)))
                .collect()
        }
        None => m.iter().map(|a| a.is_some_and(|a| a == 0.0)).collect(),
    };
    Ok(df.filter(&mask)?)
}

/// The first row of each run, keeping `file` and the columns `renames` names, renamed.
fn first_per_run(df: &DataFrame, renames: &[(&str, &str)]) -> Result<DataFrame> {
    let mut names = vec!["file"];
    names.extend(renames.iter().map(|(from, _)| *from));
    let mut out = df
        .select(names)?
        .unique_stable(Some(&["file".to_string()]), UniqueKeepStrategy::First, None)?;
    for (from, to) in renames {
        out.rename(from, (*to).into())?;
    }
    Ok(out)
}

/// The mean of `column` per run, named `to`.
fn mean_per_run(df: &DataFrame, column: &str, to: &str) -> Result<DataFrame> {
    // The eager aggregations are marked deprecated in favour of the lazy
    // engine, which would add several crates to an already long build.
    #[allow(deprecated)]
    let mut out = df.group_by_stable(["file"])?.select([column]).mean()?;
    out.rename(&format!("{column}_mean"), to.into())?;
    Ok(out)
}

fn join(left: &DataFrame, right: &DataFrame, on: &[&str], how: JoinType) -> Result<DataFrame> {
    let mut args = JoinArgs::new(how);
    args.maintain_order = MaintainOrderJoin::Left;
    Ok(left.join(right, on.iter().copied(), on.iter().copied(), args, None)?)
}

fn difference(df: &DataFrame, a: &str, b: &str, name: &str) -> Result<Column> {
    let x = df.column(a)?.f64()?;
    let y = df.column(b)?.f64()?;
    Ok((x - y).with_name(name.into()).into_column())
}

/// The protocol-2 columns of every run ([`crate::paired`]) as a frame keyed by `file`.
fn paired_frame(runs: &[Run]) -> Result<DataFrame> {
    let stats = crate::paired::compute(runs)?;
    let f =
        |get: &dyn Fn(&crate::paired::RunStats) -> Option<f64>| -> Vec<Option<f64>> { stats.iter().map(get).collect() };
    let mut columns = vec![
        Column::new("file".into(), (0..runs.len() as u32).collect::<Vec<u32>>()),
        Column::new(
            "verdict".into(),
            stats.iter().map(|s| s.verdict.clone()).collect::<Vec<String>>(),
        ),
        Column::new(
            "protocol".into(),
            stats.iter().map(|s| s.protocol).collect::<Vec<u64>>(),
        ),
        Column::new("relative_strength".into(), f(&|s| s.relative_strength)),
        Column::new("raw_multiplier".into(), f(&|s| s.raw_multiplier)),
        Column::new(
            "fluency_constrained".into(),
            stats
                .iter()
                .map(|s| s.fluency_constrained.map(u64::from))
                .collect::<Vec<Option<u64>>>(),
        ),
        Column::new("effect_ci_low".into(), f(&|s| s.vs_unsteered.map(|p| p.effect.low))),
        Column::new("effect_ci_high".into(), f(&|s| s.vs_unsteered.map(|p| p.effect.high))),
        Column::new("p_unsteered".into(), f(&|s| s.vs_unsteered.map(|p| p.p))),
        Column::new("p_holm".into(), f(&|s| s.p_holm)),
        Column::new("min_detectable_effect".into(), f(&|s| s.min_detectable_effect)),
        Column::new("p_random".into(), f(&|s| s.vs_random.map(|p| p.p))),
        Column::new("p_prompting".into(), f(&|s| s.vs_prompting.map(|p| p.p))),
        Column::new("random_anti_steerable_fraction".into(), f(&|s| s.random_anti_steerable)),
        Column::new("letter_bias".into(), f(&|s| s.letter_bias)),
        Column::new("delta_letter_bias".into(), f(&|s| s.delta_letter_bias)),
        Column::new(
            "unconstrained_layer".into(),
            stats
                .iter()
                .map(|s| s.unconstrained_layer)
                .collect::<Vec<Option<u64>>>(),
        ),
        Column::new("unconstrained_multiplier".into(), f(&|s| s.unconstrained_multiplier)),
        Column::new(
            "unconstrained_effect".into(),
            f(&|s| s.unconstrained.map(|p| p.effect.mean)),
        ),
        Column::new("perplexity_ratio".into(), f(&|s| s.perplexity_ratio)),
    ];
    for (k, shift) in crate::paired::SHIFTS.iter().enumerate() {
        columns.push(Column::new(
            format!("ood_effect_{shift}").into(),
            f(&|s| s.ood.get(k).map(|p| p.effect.mean)),
        ));
    }
    columns.push(Column::new(
        "ood_mean_effect".into(),
        f(&|s| (!s.ood.is_empty()).then(|| s.ood.iter().map(|p| p.effect.mean).sum::<f64>() / s.ood.len() as f64)),
    ));
    Ok(DataFrame::new(runs.len(), columns)?)
}

/// Aggregates `runs` into the leaderboard and the dose curves.
pub fn aggregate(runs: &[Run]) -> Result<Tables> {
    let run_of = keys(runs)?;
    let long = long_frame(runs)?;
    let paired = paired_frame(runs)?;

    // The chosen configuration names each run's task.
    let mut choice = pick(&long, &[("variant", "choice"), ("metric", "chosen")])?.select([
        "file",
        "model",
        "method",
        "suite",
        "task",
        "layer",
        "multiplier",
        "seed",
        "task_version",
    ])?;
    choice.rename("layer", "chosen_layer".into())?;
    choice.rename("multiplier", "chosen_multiplier".into())?;

    // Rows of each run's own task, with its chosen multiplier beside them.
    let own = join(
        &long,
        &choice.select(["file", "suite", "task", "chosen_multiplier"])?,
        &["file", "suite", "task"],
        JoinType::Inner,
    )?;
    let test = pick(&own, &[("split", "test")])?;

    // Primary metric: logit_diff, else top1, else the first steered metric at a multiplier.
    let priority: Vec<u32> = {
        let metric = test.column("metric")?.str()?;
        let variant = test.column("variant")?.str()?;
        let multiplier = test.column("multiplier")?.f64()?;
        metric
            .iter()
            .zip(variant.iter())
            .zip(multiplier.iter())
            .map(|((m, v), x)| match (m, v, x) {
                (Some("logit_diff"), _, _) => 0,
                (Some("top1"), _, _) => 1,
                (_, Some("steered"), Some(_)) => 2,
                _ => 3,
            })
            .collect()
    };
    let mut ranked = test.clone();
    ranked.with_column(Column::new("priority".into(), priority))?;
    let keep = ranked.column("priority")?.u32()?.lt(3);
    let ranked = ranked
        .filter(&keep)?
        .sort(["file", "priority", "ord"], SortMultipleOptions::default())?;
    let metric = first_per_run(&ranked, &[("metric", "metric")])?;
    let curves = join(&test, &metric, &["file", "metric"], JoinType::Inner)?;

    let unsteered = first_per_run(
        &at_multiplier(&pick(&curves, &[("variant", "unsteered")])?, None)?,
        &[("value", "unsteered")],
    )?;
    let steered = first_per_run(
        &at_multiplier(&pick(&curves, &[("variant", "steered")])?, Some("chosen_multiplier"))?,
        &[
            ("value", "steered"),
            ("ci_low", "steered_ci_low"),
            ("ci_high", "steered_ci_high"),
            ("n", "n_test"),
        ],
    )?;
    let random = first_per_run(
        &at_multiplier(&pick(&curves, &[("variant", "random")])?, Some("chosen_multiplier"))?,
        &[("value", "random")],
    )?;
    let steerability = first_per_run(
        &pick(&test, &[("variant", "steered"), ("metric", "steerability")])?,
        &[("value", "steerability")],
    )?;
    let anti = first_per_run(
        &pick(&test, &[("variant", "steered"), ("metric", "anti_steerable_fraction")])?,
        &[("value", "anti_steerable_fraction")],
    )?;
    let open = first_per_run(
        &pick(
            &long,
            &[
                ("suite", "open_ended"),
                ("variant", "steered"),
                ("metric", "mcq_minus_open_effect"),
            ],
        )?,
        &[("value", "mcq_minus_open_effect")],
    )?;
    let perplexity = mean_per_run(
        &pick(
            &long,
            &[
                ("suite", "perplexity"),
                ("variant", "steered"),
                ("metric", "delta_perplexity"),
            ],
        )?,
        "value",
        "delta_perplexity",
    )?;
    let tiny = pick(
        &long,
        &[
            ("suite", "tinybench"),
            ("variant", "steered"),
            ("metric", "delta_accuracy_weighted"),
        ],
    )?;
    let tiny_mean = mean_per_run(&tiny, "value", "delta_tinybench_accuracy")?;
    let tiny_tasks: Vec<String> = {
        let mut t: Vec<String> = tiny
            .column("task")?
            .str()?
            .iter()
            .flatten()
            .map(str::to_string)
            .collect();
        t.sort();
        t.dedup();
        t
    };

    let mut board = choice;
    for part in [
        &metric,
        &unsteered,
        &steered,
        &random,
        &steerability,
        &anti,
        &open,
        &perplexity,
        &tiny_mean,
        &paired,
    ] {
        board = join(&board, part, &["file"], JoinType::Left)?;
    }
    let mut tiny_columns = Vec::new();
    for task in &tiny_tasks {
        let name = format!("delta_acc_{task}");
        let part = first_per_run(&pick(&tiny, &[("task", task)])?, &[("value", &name)])?;
        board = join(&board, &part, &["file"], JoinType::Left)?;
        tiny_columns.push(name);
    }
    let effect = difference(&board, "steered", "unsteered", "effect")?;
    board.with_column(effect)?;
    let random_effect = difference(&board, "random", "unsteered", "random_effect")?;
    board.with_column(random_effect)?;
    let versus = difference(&board, "effect", "random_effect", "effect_vs_random")?;
    board.with_column(versus)?;

    let mut prompting = pick(&board, &[("method", PROMPTING)])?.select(["model", "suite", "task", "effect"])?;
    prompting.rename("effect", "prompting_effect".into())?;
    board = join(&board, &prompting, &["model", "suite", "task"], JoinType::Left)?;
    let versus = difference(&board, "effect", "prompting_effect", "effect_vs_prompting")?;
    board.with_column(versus)?;

    let board = board.sort(
        ["suite", "task", "effect_vs_random", "model", "method"],
        SortMultipleOptions::default()
            .with_order_descending_multi([false, false, true, false, false])
            .with_nulls_last(true)
            .with_maintain_order(true),
    )?;
    let mut columns: Vec<String> = HEAD_COLUMNS.iter().map(|c| c.to_string()).collect();
    columns.extend(tiny_columns);
    columns.extend(TAIL_COLUMNS.iter().map(|c| c.to_string()));
    let board = board.select(columns.iter().map(String::as_str))?;

    Ok(Tables {
        board: to_board(&board)?,
        curves: to_curves(&curves)?,
        run_of,
    })
}

fn to_board(df: &DataFrame) -> Result<Board> {
    let columns: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
    let mut rows = vec![Vec::with_capacity(columns.len()); df.height()];
    for (name, column) in columns.iter().zip(df.columns()) {
        let cells: Vec<Cell> = match column.dtype() {
            DataType::String => column
                .str()?
                .iter()
                .map(|s| s.map_or(Cell::Empty, |s| Cell::Text(s.to_string())))
                .collect(),
            DataType::Float64 if name == "chosen_multiplier" || name == "unconstrained_multiplier" => column
                .f64()?
                .iter()
                .map(|x| x.map_or(Cell::Empty, Cell::Multiplier))
                .collect(),
            DataType::Float64 => column.f64()?.iter().map(|x| x.map_or(Cell::Empty, Cell::Num)).collect(),
            DataType::UInt64 => column.u64()?.iter().map(|x| x.map_or(Cell::Empty, Cell::Int)).collect(),
            other => {
                return Err(Error::Frame(PolarsError::ComputeError(
                    format!("column {name} has unexpected type {other}").into(),
                )));
            }
        };
        for (row, cell) in rows.iter_mut().zip(cells) {
            row.push(cell);
        }
    }
    Ok(Board { columns, rows })
}

fn to_curves(df: &DataFrame) -> Result<Vec<CurvePoint>> {
    let text = |name: &str| -> Result<Vec<String>> {
        Ok(df
            .column(name)?
            .str()?
            .iter()
            .map(|s| s.unwrap_or_default().to_string())
            .collect())
    };
    let (model, method, suite, task, metric, variant) = (
        text("model")?,
        text("method")?,
        text("suite")?,
        text("task")?,
        text("metric")?,
        text("variant")?,
    );
    let multiplier = df.column("multiplier")?.f64()?;
    let value = df.column("value")?.f64()?;
    let low = df.column("ci_low")?.f64()?;
    let high = df.column("ci_high")?.f64()?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let (Some(m), Some(v)) = (multiplier.get(i), value.get(i)) else {
            continue;
        };
        out.push(CurvePoint {
            model: model[i].clone(),
            method: method[i].clone(),
            suite: suite[i].clone(),
            task: task[i].clone(),
            metric: metric[i].clone(),
            variant: variant[i].clone(),
            multiplier: m,
            value: v,
            ci_low: low.get(i),
            ci_high: high.get(i),
        });
    }
    Ok(out)
}
