//! SVG plots: dose curves and steerability histograms per task, and effect
//! against damage over all runs. Text is laid out with fixed estimates, so
//! the same input always gives the same bytes.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::input::Run;
use crate::table::{CurvePoint, Tables};
use crate::{Error, Result};

type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// A run of a task: model, method and the run.
type Member<'a> = (&'a str, &'a str, &'a Run);

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const FONT: &str = "sans-serif";
const GRID: RGBColor = RGBColor(232, 232, 232);

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A file-name-safe form of a suite or task name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Renders one SVG of `size` with `draw`.
fn svg(name: &str, size: (u32, u32), draw: impl FnOnce(&Area) -> Drawn) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(Into::into)
            .and_then(|_| draw(&root))
            .and_then(|_| root.present().map_err(Into::into));
        drawn.map_err(|e| Error::Plot {
            name: name.to_string(),
            message: e.to_string(),
        })?;
    }
    Ok(out)
}

/// How a key entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Line,
    Dot,
    Ring,
    Cross,
    Bar,
    Outline,
}

/// Draws a key (legend) of `entries` down the top of `area`.
fn key(area: &Area, entries: &[(Mark, RGBColor, String)]) -> Drawn {
    for (i, (mark, c, text)) in entries.iter().enumerate() {
        let (x, y) = (16, 60 + 24 * i as i32);
        match mark {
            Mark::Line => area.draw(&PathElement::new(vec![(x - 10, y), (x + 10, y)], c.stroke_width(2)))?,
            Mark::Dot => area.draw(&Circle::new((x, y), 6, c.filled()))?,
            Mark::Ring => area.draw(&Circle::new((x, y), 6, c.stroke_width(2)))?,
            Mark::Cross => area.draw(&Cross::new((x, y), 6, c.stroke_width(2)))?,
            Mark::Bar => area.draw(&Rectangle::new([(x - 8, y - 6), (x + 8, y + 6)], c.mix(0.7).filled()))?,
            Mark::Outline => area.draw(&Rectangle::new([(x - 8, y - 6), (x + 8, y + 6)], c.stroke_width(1)))?,
        }
        area.draw(&Text::new(text.clone(), (x + 18, y - 8), (FONT, 16)))?;
    }
    Ok(())
}

/// `lo..hi` widened by 5 % on each side, or by ±1 when it is a single value.
pub(crate) fn padded(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
    Some((lo - pad, hi + pad))
}

/// Every plot, by file name.
pub fn all(tables: &Tables, runs: &[Run]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut tasks: BTreeMap<(&str, &str), Vec<&CurvePoint>> = BTreeMap::new();
    for p in &tables.curves {
        tasks.entry((p.suite.as_str(), p.task.as_str())).or_default().push(p);
    }
    for ((suite, task), points) in &tasks {
        let name = format!("dose_{}_{}.svg", slug(suite), slug(task));
        if let Some(svg) = dose(&name, suite, task, points)? {
            out.push((name, svg));
        }
    }
    let mut by_task: BTreeMap<(&str, &str), Vec<Member>> = BTreeMap::new();
    for ((model, method, suite, task), &i) in &tables.run_of {
        by_task
            .entry((suite.as_str(), task.as_str()))
            .or_default()
            .push((model.as_str(), method.as_str(), &runs[i]));
    }
    for ((suite, task), members) in &by_task {
        let name = format!("steerability_{}_{}.svg", slug(suite), slug(task));
        if let Some(svg) = steerability(&name, suite, task, members)? {
            out.push((name, svg));
        }
    }
    // Effects in logit, accuracy and score units do not share an axis: one panel per metric.
    let board = &tables.board;
    let mut metrics: Vec<&str> = board.rows.iter().map(|r| board.cell(r, "metric").text()).collect();
    metrics.sort();
    metrics.dedup();
    for metric in metrics {
        let name = format!("pareto_{}.svg", slug(metric));
        if let Some(svg) = pareto(&name, tables, metric)? {
            out.push((name, svg));
        }
        let name = format!("behaviours_{}.svg", slug(metric));
        if let Some(svg) = behaviours(&name, tables, metric)? {
            out.push((name, svg));
        }
    }
    Ok(out)
}

/// Series label: the method alone when one model is shown, else `model: method`.
fn label(model: &str, method: &str, one_model: bool) -> String {
    if one_model {
        method.to_string()
    } else {
        format!("{model}: {method}")
    }
}

/// The unsteered and steered points of one method, by multiplier.
fn dose_line<'a>(points: &[&'a CurvePoint]) -> Vec<&'a CurvePoint> {
    let mut line: Vec<&CurvePoint> = points
        .iter()
        .copied()
        .filter(|p| matches!(p.variant.as_str(), "steered" | "unsteered"))
        .collect();
    line.sort_by(|a, b| a.multiplier.total_cmp(&b.multiplier));
    line
}

fn dose(name: &str, suite: &str, task: &str, points: &[&CurvePoint]) -> Result<Option<String>> {
    let mut series: BTreeMap<(&str, &str), Vec<&CurvePoint>> = BTreeMap::new();
    for p in points {
        series.entry((p.model.as_str(), p.method.as_str())).or_default().push(p);
    }
    let shown = |p: &&&CurvePoint| matches!(p.variant.as_str(), "steered" | "unsteered" | "random");
    let xs = points.iter().filter(shown).map(|p| p.multiplier);
    let ys = points
        .iter()
        .filter(shown)
        .flat_map(|p| [Some(p.value), p.ci_low, p.ci_high])
        .flatten();
    let (Some(xr), Some(yr)) = (padded(xs), padded(ys)) else {
        return Ok(None);
    };
    let metric = points[0].metric.clone();
    let one_model = series.keys().all(|(m, _)| *m == points[0].model);
    let title = format!("{suite}/{task}: test {metric} by multiplier");
    let svg = svg(name, (1100, 560), |root| {
        let (plot, side) = root.split_horizontally(860);
        let mut entries = Vec::new();
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, (FONT, 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        chart
            .configure_mesh()
            .x_desc("multiplier")
            .y_desc(metric.as_str())
            .light_line_style(GRID)
            .bold_line_style(GRID)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        // Lines with intervals first, then the unsteered and random markers on top.
        for (i, ((model, method), pts)) in series.iter().enumerate() {
            let c = color(i);
            let line = dose_line(pts);
            chart.draw_series(LineSeries::new(
                line.iter().map(|p| (p.multiplier, p.value)),
                c.stroke_width(2),
            ))?;
            entries.push((Mark::Line, c, label(model, method, one_model)));
            chart.draw_series(line.iter().map(|p| Circle::new((p.multiplier, p.value), 3, c.filled())))?;
            chart.draw_series(line.iter().filter_map(|p| match (p.ci_low, p.ci_high) {
                (Some(lo), Some(hi)) => Some(ErrorBar::new_vertical(p.multiplier, lo, p.value, hi, c, 8)),
                _ => None,
            }))?;
        }
        let unsteered: Vec<&CurvePoint> = points.iter().copied().filter(|p| p.variant == "unsteered").collect();
        if !unsteered.is_empty() {
            chart.draw_series(
                unsteered
                    .iter()
                    .map(|p| Circle::new((p.multiplier, p.value), 7, BLACK.stroke_width(2))),
            )?;
            entries.push((Mark::Ring, BLACK, "unsteered".to_string()));
        }
        let random: Vec<(usize, &CurvePoint)> = series
            .values()
            .enumerate()
            .flat_map(|(i, pts)| pts.iter().filter(|p| p.variant == "random").map(move |p| (i, *p)))
            .collect();
        if !random.is_empty() {
            chart.draw_series(
                random
                    .iter()
                    .map(|(i, p)| Cross::new((p.multiplier, p.value), 6, color(*i).stroke_width(2))),
            )?;
            entries.push((Mark::Cross, BLACK, "random vector".to_string()));
        }
        key(&side, &entries)
    })?;
    Ok(Some(svg))
}

const BINS: usize = 20;

fn steerability(name: &str, suite: &str, task: &str, members: &[Member]) -> Result<Option<String>> {
    // (label, steered slopes, random slopes) per run with a per-item file.
    let one_model = members.iter().all(|(m, _, _)| *m == members[0].0);
    let mut panels: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for (model, method, run) in members {
        let items = run.items()?;
        let slopes = |variant: &str| -> Vec<f64> {
            items
                .iter()
                .filter(|v| v.variant == variant && v.metric == "slope" && v.value.is_finite())
                .map(|v| v.value)
                .collect()
        };
        let (steered, random) = (slopes("steered"), slopes("random"));
        if !steered.is_empty() || !random.is_empty() {
            panels.push((label(model, method, one_model), steered, random));
        }
    }
    let Some((lo, hi)) = padded(panels.iter().flat_map(|(_, s, r)| s.iter().chain(r).copied())) else {
        return Ok(None);
    };
    let width = (hi - lo) / BINS as f64;
    let counts = |values: &[f64]| -> Vec<usize> {
        let mut c = vec![0; BINS];
        for v in values {
            c[(((v - lo) / width) as usize).min(BINS - 1)] += 1;
        }
        c
    };
    let counted: Vec<(String, Vec<usize>, Vec<usize>, usize)> = panels
        .iter()
        .map(|(l, s, r)| (l.clone(), counts(s), counts(r), s.len()))
        .collect();
    let top = counted
        .iter()
        .flat_map(|(_, s, r, _)| s.iter().chain(r))
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let height = 80 + 220 * counted.len() as u32;
    let svg = svg(name, (1100, height), |root| {
        let root = root.titled(
            &format!("{suite}/{task}: per-item steerability (slope against the multiplier)"),
            (FONT, 24),
        )?;
        let (plots, side) = root.split_horizontally(860);
        let mut entries = Vec::new();
        let mut random_shown = false;
        for (i, (area, (lab, s, r, n))) in plots.split_evenly((counted.len(), 1)).iter().zip(&counted).enumerate() {
            let c = color(i);
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{lab} ({n} items)"), (FONT, 15))
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(50)
                .build_cartesian_2d(lo..hi, 0.0..top)?;
            chart
                .configure_mesh()
                .x_desc("slope")
                .y_desc("items")
                .light_line_style(GRID)
                .bold_line_style(GRID)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .draw()?;
            let bin = |k: usize| (lo + k as f64 * width, lo + (k + 1) as f64 * width);
            chart.draw_series(s.iter().enumerate().filter(|(_, n)| **n > 0).map(|(k, n)| {
                let (a, b) = bin(k);
                Rectangle::new([(a, 0.0), (b, *n as f64)], c.mix(0.7).filled())
            }))?;
            entries.push((Mark::Bar, c, lab.clone()));
            if r.iter().any(|n| *n > 0) {
                chart.draw_series(r.iter().enumerate().filter(|(_, n)| **n > 0).map(|(k, n)| {
                    let (a, b) = bin(k);
                    Rectangle::new([(a, 0.0), (b, *n as f64)], BLACK.stroke_width(1))
                }))?;
                random_shown = true;
            }
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (0.0, top)],
                BLACK.mix(0.5).stroke_width(1),
            )))?;
        }
        if random_shown {
            entries.push((Mark::Outline, BLACK, "random vector".to_string()));
        }
        key(&side, &entries)
    })?;
    Ok(Some(svg))
}

fn pareto(name: &str, tables: &Tables, metric: &str) -> Result<Option<String>> {
    let board = &tables.board;
    let models: Vec<&str> = board.rows.iter().map(|r| board.cell(r, "model").text()).collect();
    let one_model = models.iter().all(|m| Some(m) == models.first());
    let mut methods: Vec<&str> = board.rows.iter().map(|r| board.cell(r, "method").text()).collect();
    methods.sort();
    methods.dedup();
    let mut points = Vec::new();
    for row in board.rows.iter().filter(|r| board.cell(r, "metric").text() == metric) {
        // Perplexity ratios span many orders of magnitude: the x axis is their logarithm.
        let (Some(x), Some(y)) = (
            board
                .cell(row, "perplexity_ratio")
                .number()
                .filter(|r| *r > 0.0)
                .map(f64::log10),
            board.cell(row, "effect_vs_random").number(),
        ) else {
            continue;
        };
        let method = board.cell(row, "method").text();
        let label = format!(
            "{} {}/{}",
            label(board.cell(row, "model").text(), method, one_model),
            board.cell(row, "suite").text(),
            board.cell(row, "task").text()
        );
        let c = methods.iter().position(|m| *m == method).unwrap_or(0);
        points.push((x, y, label, c));
    }
    if points.is_empty() {
        return Ok(None);
    }
    // The axes always show zero; the x axis leaves room on the right for labels.
    let (Some(xr), Some(yr)) = (
        padded(points.iter().map(|p| p.0).chain([0.0])),
        padded(points.iter().map(|p| p.1).chain([0.0])),
    ) else {
        return Ok(None);
    };
    let xr = (xr.0, xr.1 + 0.3 * (xr.1 - xr.0));
    let svg = svg(name, (1100, 700), |root| {
        let (plot, side) = root.split_horizontally(900);
        let mut entries = Vec::new();
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                format!("Effect beyond a random vector against perplexity damage: {metric}"),
                (FONT, 24),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        chart
            .configure_mesh()
            .x_desc("log10 perplexity ratio (steered / unsteered)")
            .y_desc(format!("effect vs random ({metric})"))
            .light_line_style(GRID)
            .bold_line_style(GRID)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(xr.0, 0.0), (xr.1, 0.0)],
            BLACK.mix(0.4).stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, yr.0), (0.0, yr.1)],
            BLACK.mix(0.4).stroke_width(1),
        )))?;
        for (i, method) in methods.iter().enumerate() {
            let c = color(i);
            let mine: Vec<_> = points.iter().filter(|p| p.3 == i).collect();
            if mine.is_empty() {
                continue;
            }
            chart.draw_series(mine.iter().map(|(x, y, text, _)| {
                EmptyElement::at((*x, *y))
                    + Circle::new((0, 0), 5, c.filled())
                    + Text::new(text.clone(), (7, -14), (FONT, 13))
            }))?;
            entries.push((Mark::Dot, c, method.to_string()));
        }
        key(&side, &entries)
    })?;
    Ok(Some(svg))
}

/// The paired effect of every method on every task sharing `metric`, with its
/// 95 % interval: a forest plot, one band per task and one line per method
/// (filled where the effect is significant after Holm's adjustment). `None`
/// for fewer than two tasks.
fn behaviours(name: &str, tables: &Tables, metric: &str) -> Result<Option<String>> {
    let board = &tables.board;
    let rows: Vec<&Vec<crate::table::Cell>> = board
        .rows
        .iter()
        .filter(|r| board.cell(r, "metric").text() == metric && board.cell(r, "effect").number().is_some())
        .collect();
    let models: Vec<&str> = rows.iter().map(|r| board.cell(r, "model").text()).collect();
    let one_model = models.iter().all(|m| Some(m) == models.first());
    let mut tasks: Vec<String> = rows
        .iter()
        .map(|r| format!("{}/{}", board.cell(r, "suite").text(), board.cell(r, "task").text()))
        .collect();
    tasks.sort();
    tasks.dedup();
    let mut methods: Vec<String> = rows
        .iter()
        .map(|r| label(board.cell(r, "model").text(), board.cell(r, "method").text(), one_model))
        .collect();
    methods.sort();
    methods.dedup();
    if tasks.len() < 2 {
        return Ok(None);
    }
    let band = methods.len() + 1;
    let mut points = Vec::new();
    for r in &rows {
        let task = format!("{}/{}", board.cell(r, "suite").text(), board.cell(r, "task").text());
        let method = label(board.cell(r, "model").text(), board.cell(r, "method").text(), one_model);
        let (Some(t), Some(m), Some(e)) = (
            tasks.iter().position(|x| *x == task),
            methods.iter().position(|x| *x == method),
            board.cell(r, "effect").number(),
        ) else {
            continue;
        };
        let lo = board.cell(r, "effect_ci_low").number().unwrap_or(e);
        let hi = board.cell(r, "effect_ci_high").number().unwrap_or(e);
        let significant = board
            .cell(r, "p_holm")
            .number()
            .is_some_and(|p| p < crate::paired::ALPHA);
        // Task 0 at the top: y counts down from the first band.
        let y = ((tasks.len() - t) * band - m - 1) as f64;
        points.push((y, lo, e, hi, m, significant));
    }
    let Some(xr) = padded(points.iter().flat_map(|p| [p.1, p.3]).chain([0.0])) else {
        return Ok(None);
    };
    // Room on the left for the task names.
    let xr = (xr.0 - 0.45 * (xr.1 - xr.0), xr.1);
    let height = (160 + 16 * tasks.len() * band) as u32;
    let yr = (0.0, (tasks.len() * band) as f64);
    let svg = svg(name, (1100, height), |root| {
        let (plot, side) = root.split_horizontally(860);
        let mut chart = ChartBuilder::on(&plot)
            .caption(format!("Effect on each task: {metric} (paired 95 % CI)"), (FONT, 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(8)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc(format!("effect ({metric}, steered − unsteered)"))
            .light_line_style(GRID)
            .bold_line_style(GRID)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, yr.0), (0.0, yr.1)],
            BLACK.mix(0.5).stroke_width(1),
        )))?;
        for (t, task) in tasks.iter().enumerate() {
            let top = ((tasks.len() - t) * band) as f64;
            chart.draw_series(std::iter::once(Text::new(
                task.clone(),
                (xr.0, top - band as f64 / 2.0),
                (FONT, 13),
            )))?;
            if t > 0 {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(xr.0, top), (xr.1, top)],
                    GRID.stroke_width(1),
                )))?;
            }
        }
        for (y, lo, e, hi, m, significant) in &points {
            let c = color(*m);
            chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                *y,
                *lo,
                *e,
                *hi,
                c.stroke_width(2),
                6,
            )))?;
            let dot = if *significant {
                Circle::new((*e, *y), 4, c.filled())
            } else {
                Circle::new((*e, *y), 4, WHITE.filled())
            };
            chart.draw_series(std::iter::once(dot))?;
            chart.draw_series(std::iter::once(Circle::new((*e, *y), 4, c.stroke_width(2))))?;
        }
        let mut entries: Vec<(Mark, RGBColor, String)> = methods
            .iter()
            .enumerate()
            .map(|(i, m)| (Mark::Line, color(i), m.clone()))
            .collect();
        entries.push((Mark::Dot, BLACK, "significant (Holm)".into()));
        entries.push((Mark::Ring, BLACK, "not significant".into()));
        key(&side, &entries)
    })?;
    Ok(Some(svg))
}
