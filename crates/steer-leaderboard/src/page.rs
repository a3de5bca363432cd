//! The leaderboard as one self-contained HTML page (`index.html`): what the
//! results were produced with (models, commits, dates), one sortable and
//! filterable table per suite, the plots inline, and per row a detail view
//! with the paired dose-response, the per-item distribution at the chosen
//! strength and the kept generations. The page needs no network; its script
//! is inline and its state (sort, filter, open row) lives in the URL's
//! fragment, so a link reopens the same view. Like every generated file it
//! is a pure function of the runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use steer_stats::{Paired, paired};

use crate::input::{ItemValue, Run};
use crate::paired::{RESAMPLES, same, values};
use crate::table::{Board, Cell, Tables, fixed};
use crate::{Error, Result};

/// The page, relative to the results folder.
pub const HTML_FILE: &str = "index.html";

/// Prompts of a run's kept generations that its detail view shows.
const PROMPTS_SHOWN: usize = 3;

/// Columns of the page's tables: heading and leaderboard column.
const COLUMNS: [(&str, &str); 14] = [
    ("model", "model"),
    ("method", "method"),
    ("task", "task"),
    ("metric", "metric"),
    ("verdict", "verdict"),
    ("layer", "chosen_layer"),
    ("strength", "relative_strength"),
    ("effect [paired 95 % CI]", "effect"),
    ("p (Holm)", "p_holm"),
    ("vs random", "effect_vs_random"),
    ("vs prompting", "effect_vs_prompting"),
    ("anti-steerable (random)", "anti_steerable_fraction"),
    ("perplexity ×", "perplexity_ratio"),
    ("Δ tinyBench accuracy", "delta_tinybench_accuracy"),
];

const STEERED: &str = "#1f77b4";
const RANDOM: &str = "#7f7f7f";
const CHOSEN: &str = "#ff7f0e";

/// Text made safe for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a unit's sidecar (`<task>.json`) says about how it was produced.
#[derive(Debug, Default)]
struct Provenance {
    commit: Option<String>,
    finished: Option<String>,
    backend: Option<String>,
    source: Vec<(String, String)>,
}

fn provenance(run: &Run) -> Result<Provenance> {
    let path = run.path.with_extension("json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Provenance::default()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(&path, Some(e.line() as u64), format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Error::input(&path, Some(1), "the sidecar is not a JSON object".into()));
    };
    let text = |key: &str| object.get(key).and_then(|v| v.as_str()).map(str::to_string);
    // A sidecar describes the rows beside it: where it says otherwise, one of them was swapped or edited.
    let choice = run.rows.iter().find(|r| r.variant == "choice" && r.metric == "chosen");
    if let Some(first) = choice.or(run.rows.first()) {
        let task = format!("{}/{}", first.suite, first.task);
        let claims = [
            ("method", text("method"), first.method.clone()),
            ("model_sha256", text("model_sha256"), first.model_sha256.clone()),
            ("task", text("task"), task),
        ];
        for (field, said, rows) in claims {
            if let Some(said) = said
                && said != rows
            {
                return Err(Error::input(
                    &path,
                    None,
                    format!(
                        "field `{field}` is `{said}` but the rows in {} say `{rows}`",
                        run.path.display()
                    ),
                ));
            }
        }
        if let Some(n) = object.get("rows").and_then(|v| v.as_u64())
            && n != run.rows.len() as u64
        {
            return Err(Error::input(
                &path,
                None,
                format!(
                    "field `rows` is {n} but {} holds {} rows",
                    run.path.display(),
                    run.rows.len()
                ),
            ));
        }
    }
    let source = object
        .get("method_source")
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Provenance {
        commit: text("git_commit"),
        finished: text("finished"),
        backend: text("backend"),
        source,
    })
}

/// One kept continuation.
#[derive(Debug)]
struct Generation {
    variant: String,
    multiplier: Option<f64>,
    text: String,
}

/// The kept generations of `run`, grouped by prompt in file order (first [`PROMPTS_SHOWN`] prompts).
fn generations(run: &Run) -> Result<Vec<(String, Vec<Generation>)>> {
    let stem = run.path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let path: PathBuf = run.path.with_file_name(format!("{stem}.generations.jsonl"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut out: Vec<(String, Vec<Generation>)> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::input(&path, Some(i as u64 + 1), format!("not JSON: {e}")))?;
        let field = |key: &str| value.get(key).and_then(|v| v.as_str());
        let (Some(prompt), Some(variant), Some(text)) = (field("prompt"), field("variant"), field("text")) else {
            return Err(Error::input(
                &path,
                Some(i as u64 + 1),
                "a generation needs string fields `prompt`, `variant` and `text`".into(),
            ));
        };
        let g = Generation {
            variant: variant.to_string(),
            multiplier: value.get("multiplier").and_then(|v| v.as_f64()),
            text: text.to_string(),
        };
        if let Some(k) = out.iter().position(|(p, _)| p == prompt) {
            out[k].1.push(g);
        } else if out.len() < PROMPTS_SHOWN {
            out.push((prompt.to_string(), vec![g]));
        }
    }
    Ok(out)
}

/// One point of a paired dose-response: steered and random minus unsteered at a multiplier.
#[derive(Debug)]
struct DosePoint {
    multiplier: f64,
    steered: Paired,
    random: Option<Paired>,
}

/// The per-item values behind a row's detail view.
#[derive(Debug, Default)]
struct Detail {
    n: usize,
    dose: Vec<DosePoint>,
    /// Per-item steered − unsteered at the chosen multiplier.
    steered_diffs: Vec<f64>,
    /// Per-item random − unsteered at the chosen multiplier.
    random_diffs: Vec<f64>,
}

fn detail(run: &Run, metric: &str, chosen: Option<f64>, seed: u64) -> Result<Detail> {
    let items = run.items()?;
    let path = run.items_path.as_deref().unwrap_or(&run.path);
    let n = items
        .iter()
        .filter(|v| v.variant == "unsteered" && v.metric == metric)
        .map(|v| v.item as usize + 1)
        .max()
        .unwrap_or(0);
    if n == 0 {
        return Ok(Detail::default());
    }
    let unsteered = values(path, &items, "unsteered", metric, Some(0.0), n)?;
    let has = |variant: &str, m: f64| {
        items
            .iter()
            .any(|v: &ItemValue| v.variant == variant && v.metric == metric && v.multiplier.is_some_and(|x| same(x, m)))
    };
    let mut multipliers: Vec<f64> = items
        .iter()
        .filter(|v| v.variant == "steered" && v.metric == metric)
        .filter_map(|v| v.multiplier)
        .collect();
    multipliers.sort_by(f64::total_cmp);
    multipliers.dedup_by(|a, b| same(*a, *b));
    let diffs = |a: &[f64]| a.iter().zip(&unsteered).map(|(x, y)| x - y).collect::<Vec<f64>>();
    let mut out = Detail { n, ..Detail::default() };
    for m in multipliers {
        let steered = values(path, &items, "steered", metric, Some(m), n)?;
        let random = if has("random", m) {
            Some(values(path, &items, "random", metric, Some(m), n)?)
        } else {
            None
        };
        if chosen.is_some_and(|c| same(c, m)) {
            out.steered_diffs = diffs(&steered);
            out.random_diffs = random.as_deref().map(diffs).unwrap_or_default();
        }
        out.dose.push(DosePoint {
            multiplier: m,
            steered: paired(&steered, &unsteered, RESAMPLES, seed),
            random: random.map(|r| paired(&r, &unsteered, RESAMPLES, seed)),
        });
    }
    Ok(out)
}

/// A plot area: the pixel box and the data ranges it maps.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn new(x: (f64, f64), y: (f64, f64)) -> Frame {
        Frame {
            width: 460.0,
            height: 250.0,
            left: 58.0,
            right: 12.0,
            top: 28.0,
            bottom: 40.0,
            x,
            y,
        }
    }

    fn px(&self, x: f64) -> f64 {
        let span = (self.x.1 - self.x.0).max(f64::MIN_POSITIVE);
        self.left + (x - self.x.0) / span * (self.width - self.left - self.right)
    }

    fn py(&self, y: f64) -> f64 {
        let span = (self.y.1 - self.y.0).max(f64::MIN_POSITIVE);
        self.height - self.bottom - (y - self.y.0) / span * (self.height - self.top - self.bottom)
    }

    /// The opening tag, title, axes and the labels of both ranges' ends.
    fn open(&self, title: &str, x_label: &str, y_label: &str) -> String {
        let (x0, x1, y0, y1) = (self.left, self.width - self.right, self.top, self.height - self.bottom);
        let mut s = format!(
            "<svg class=\"mini\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" font-size=\"11\">\
             <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
             <text x=\"{cx:.1}\" y=\"16\" text-anchor=\"middle\" font-size=\"12\">{title}</text>\
             <path d=\"M{x0:.1} {y0:.1}V{y1:.1}H{x1:.1}\" fill=\"none\" stroke=\"#333\"/>",
            w = self.width,
            h = self.height,
            cx = self.width / 2.0,
            title = esc(title),
        );
        let _ = write!(
            s,
            "<text x=\"{x0:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{a}</text>\
             <text x=\"{x1:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{b}</text>\
             <text x=\"{cx:.1}\" y=\"{ld:.1}\" text-anchor=\"middle\">{xl}</text>\
             <text x=\"{yx:.1}\" y=\"{y1:.1}\" text-anchor=\"end\">{c}</text>\
             <text x=\"{yx:.1}\" y=\"{y0t:.1}\" text-anchor=\"end\">{d}</text>\
             <text transform=\"translate(12 {cy:.1}) rotate(-90)\" text-anchor=\"middle\">{yl}</text>",
            ly = y1 + 14.0,
            ld = y1 + 30.0,
            cx = (x0 + x1) / 2.0,
            cy = (y0 + y1) / 2.0,
            yx = x0 - 4.0,
            y0t = y0 + 8.0,
            a = esc(&short(self.x.0)),
            b = esc(&short(self.x.1)),
            c = esc(&short(self.y.0)),
            d = esc(&short(self.y.1)),
            xl = esc(x_label),
            yl = esc(y_label),
        );
        s
    }

    /// A dashed line at y = 0 (or x = 0 with `vertical`) when 0 is in range.
    fn zero(&self, vertical: bool) -> String {
        if vertical && self.x.0 < 0.0 && self.x.1 > 0.0 {
            let x = self.px(0.0);
            format!(
                "<path d=\"M{x:.1} {:.1}V{:.1}\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>",
                self.top,
                self.height - self.bottom
            )
        } else if !vertical && self.y.0 < 0.0 && self.y.1 > 0.0 {
            let y = self.py(0.0);
            format!(
                "<path d=\"M{:.1} {y:.1}H{:.1}\" stroke=\"#000\" stroke-dasharray=\"2 3\"/>",
                self.left,
                self.width - self.right
            )
        } else {
            String::new()
        }
    }
}

/// A number for an axis label: three significant figures.
fn short(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return fixed(x, 0);
    }
    let digits = (2 - x.abs().log10().floor() as i64).clamp(0, 6) as usize;
    fixed(x, digits)
}

/// The range of `values` and 0, widened as the plots widen theirs.
fn range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    crate::plots::padded(values.into_iter().chain([0.0]))
}

/// The paired dose-response: effect over unsteered by multiplier, steered and random, with intervals.
fn dose_svg(d: &Detail, chosen: Option<f64>, metric: &str) -> Option<String> {
    if d.dose.is_empty() {
        return None;
    }
    let xs = range(d.dose.iter().map(|p| p.multiplier))?;
    let ys = range(d.dose.iter().flat_map(|p| {
        let mut v = vec![p.steered.effect.low, p.steered.effect.high];
        if let Some(r) = p.random {
            v.extend([r.effect.low, r.effect.high]);
        }
        v
    }))?;
    let f = Frame::new(xs, ys);
    let mut s = f.open(
        "paired effect by strength (test, 95 % CI)",
        "multiplier",
        &format!("Δ {metric}"),
    );
    s.push_str(&f.zero(false));
    if let Some(c) = chosen {
        let x = f.px(c);
        let _ = write!(
            s,
            "<path d=\"M{x:.1} {:.1}V{:.1}\" stroke=\"{CHOSEN}\" stroke-dasharray=\"4 3\"/>",
            f.top,
            f.height - f.bottom
        );
    }
    let mut series = |pick: &dyn Fn(&DosePoint) -> Option<Paired>, color: &str, dash: &str| {
        let pts: Vec<(f64, Paired)> = d.dose.iter().filter_map(|p| Some((p.multiplier, pick(p)?))).collect();
        if pts.is_empty() {
            return;
        }
        let line: Vec<String> = pts
            .iter()
            .map(|(m, p)| format!("{:.1},{:.1}", f.px(*m), f.py(p.effect.mean)))
            .collect();
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"{dash}/>",
            line.join(" ")
        );
        for (m, p) in &pts {
            let x = f.px(*m);
            let _ = write!(
                s,
                "<path d=\"M{x:.1} {:.1}V{:.1}\" stroke=\"{color}\"/><circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
                f.py(p.effect.low),
                f.py(p.effect.high),
                f.py(p.effect.mean)
            );
        }
    };
    series(&|p| Some(p.steered), STEERED, "");
    series(&|p| p.random, RANDOM, " stroke-dasharray=\"5 3\"");
    let _ = write!(
        s,
        "<g text-anchor=\"end\"><text x=\"{x:.1}\" y=\"40\" fill=\"{STEERED}\">steered</text><text x=\"{x:.1}\" y=\"53\" fill=\"{RANDOM}\">random</text>\
         <text x=\"{x:.1}\" y=\"66\" fill=\"{CHOSEN}\">chosen</text></g></svg>",
        x = f.width - f.right - 4.0
    );
    Some(s)
}

/// Bins of the per-item histogram.
const BINS: usize = 15;

/// Per-item paired effects at the chosen strength, steered and random, as a histogram.
fn items_svg(d: &Detail, metric: &str) -> Option<String> {
    if d.steered_diffs.is_empty() {
        return None;
    }
    let (lo, hi) = range(d.steered_diffs.iter().chain(&d.random_diffs).copied())?;
    let width = (hi - lo) / BINS as f64;
    let count = |v: &[f64]| {
        let mut c = [0usize; BINS];
        for x in v.iter().filter(|x| x.is_finite()) {
            c[(((x - lo) / width) as usize).min(BINS - 1)] += 1;
        }
        c
    };
    let (cs, cr) = (count(&d.steered_diffs), count(&d.random_diffs));
    let top = cs.iter().chain(&cr).copied().max().unwrap_or(1).max(1) as f64;
    let f = Frame::new((lo, hi), (0.0, top));
    let mut s = f.open(
        &format!("per-item effect at the chosen strength ({} items)", d.n),
        &format!("Δ {metric} (steered − unsteered)"),
        "items",
    );
    for (k, (a, b)) in cs.iter().zip(&cr).enumerate() {
        let x0 = f.px(lo + k as f64 * width);
        let x1 = f.px(lo + (k + 1) as f64 * width);
        let half = (x1 - x0) / 2.0;
        for (count, x, fill) in [(*a, x0, STEERED), (*b, x0 + half, RANDOM)] {
            if count > 0 {
                let y = f.py(count as f64);
                let _ = write!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" fill-opacity=\"0.8\"/>",
                    (half - 0.5).max(0.5),
                    f.py(0.0) - y
                );
            }
        }
    }
    s.push_str(&f.zero(true));
    let moved = |v: &[f64]| {
        (
            v.iter().filter(|x| **x > 0.0).count(),
            v.iter().filter(|x| **x < 0.0).count(),
        )
    };
    let (up, down) = moved(&d.steered_diffs);
    let _ = write!(
        s,
        "<text x=\"{x:.1}\" y=\"40\" text-anchor=\"end\" fill=\"{STEERED}\">steered: {up} up, {down} down</text>",
        x = f.width - f.right - 4.0
    );
    if !d.random_diffs.is_empty() {
        let (up, down) = moved(&d.random_diffs);
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"53\" text-anchor=\"end\" fill=\"{RANDOM}\">random: {up} up, {down} down</text>",
            x = f.width - f.right - 4.0
        );
    }
    s.push_str("</svg>");
    Some(s)
}

/// A cell's sort key (`data-v`) and its shown text.
fn cell_html(board: &Board, row: &[Cell], column: &str) -> (String, String) {
    let cell = board.cell(row, column);
    let key = match cell {
        Cell::Text(t) => t.clone(),
        c => c.number().map(|x| fixed(x, 6)).unwrap_or_default(),
    };
    (key, crate::render::shown(board, row, column))
}

/// Rows of a detail view's "how it was chosen" list.
fn facts(board: &Board, row: &[Cell], p: &Provenance) -> Vec<(String, String)> {
    let text = |column: &str| {
        let c = board.cell(row, column);
        match c {
            Cell::Empty => None,
            Cell::Num(x) => Some(fixed(*x, 4)),
            other => Some(other.csv()),
        }
    };
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push((name.to_string(), v));
        }
    };
    push("chosen layer", text("chosen_layer"));
    push("chosen multiplier", text("chosen_multiplier"));
    push("relative strength", text("relative_strength"));
    push(
        "within the fluency bound on validation",
        text("fluency_constrained").map(|v| if v == "1" { "yes".into() } else { "no".into() }),
    );
    push(
        "unconstrained choice (layer, multiplier, effect)",
        match (
            text("unconstrained_layer"),
            text("unconstrained_multiplier"),
            text("unconstrained_effect"),
        ) {
            (l, Some(m), Some(e)) => Some(format!("{}, {m}, {e}", l.unwrap_or_else(|| "–".into()))),
            _ => None,
        },
    );
    push("unsteered", text("unsteered"));
    push("p (unsteered, raw)", text("p_unsteered"));
    push("p vs random", text("p_random"));
    push("p vs prompting", text("p_prompting"));
    push("minimum detectable effect", text("min_detectable_effect"));
    push(
        "letter bias (Δ under steering)",
        match (text("letter_bias"), text("delta_letter_bias")) {
            (Some(b), Some(d)) => Some(format!("{b} ({d})")),
            _ => None,
        },
    );
    push("OOD effect, mean of the prompt shifts", text("ood_mean_effect"));
    push("Δ perplexity", text("delta_perplexity"));
    push("test items", text("n_test"));
    push("commit", p.commit.clone());
    push("finished", p.finished.clone());
    push("backend", p.backend.clone());
    for (k, v) in &p.source {
        out.push((format!("source {k}"), v.clone()));
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{margin:0 0 .3em}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}\
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#f4f4f4;cursor:pointer;user-select:none;white-space:nowrap}\
th[aria-sort=ascending]::after{content:' ▲'}th[aria-sort=descending]::after{content:' ▼'}\
tr.row{cursor:pointer}tr.row:hover{background:#f7fbff}tr.row.open{background:#eef5fc}\
td:nth-child(5){white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.detail>td{background:#fafafa}.plots{display:flex;flex-wrap:wrap;gap:12px}\
dl{display:grid;grid-template-columns:max-content auto;gap:0 12px;margin:.3em 0}dt{color:#555}dd{margin:0}\
.gen td{max-width:60em}figure{margin:0 0 1.5em}figure svg{max-width:100%;height:auto}\
#controls{margin:.8em 0;display:flex;gap:1em;align-items:center}#shown{color:#555}";

const SCRIPT: &str = r#"(function(){
const tables=[...document.querySelectorAll('table.board')];
const q=document.getElementById('filter'),verdict=document.getElementById('verdict'),shown=document.getElementById('shown');
const state={sort:null,dir:'asc',q:'',verdict:'',open:''};
function key(td){const v=td.dataset.v;if(v===undefined||v==='')return null;const x=Number(v);return Number.isNaN(x)?v.toLowerCase():x;}
function cmp(x,y){if(x===null&&y===null)return 0;if(x===null)return 1;if(y===null)return -1;
 if(typeof x!==typeof y)return typeof x==='number'?-1:1;return x<y?-1:x>y?1:0;}
function sort(t){const head=[...t.tHead.rows[0].cells];head.forEach(th=>th.removeAttribute('aria-sort'));
 const i=head.findIndex(th=>th.dataset.col===state.sort);if(i<0)return;
 head[i].setAttribute('aria-sort',state.dir==='desc'?'descending':'ascending');
 const body=t.tBodies[0],pairs=[...body.querySelectorAll('tr.row')].map(r=>[r,r.nextElementSibling]);
 pairs.sort((a,b)=>{const c=cmp(key(a[0].cells[i]),key(b[0].cells[i]));return state.dir==='desc'&&key(a[0].cells[i])!==null&&key(b[0].cells[i])!==null?-c:c;});
 for(const [r,d] of pairs){body.appendChild(r);body.appendChild(d);}}
function filter(){const words=state.q.toLowerCase().split(/\s+/).filter(Boolean);let n=0,all=0;
 for(const r of document.querySelectorAll('tr.row')){all++;const text=r.textContent.toLowerCase();
  const ok=words.every(w=>text.includes(w))&&(!state.verdict||r.dataset.verdict===state.verdict);
  r.hidden=!ok;const open=ok&&state.open.split(',').includes(r.id);r.classList.toggle('open',open);
  r.nextElementSibling.hidden=!open;if(ok)n++;}
 shown.textContent=n+' of '+all+' rows shown';}
function save(){const p=new URLSearchParams();for(const k of ['sort','dir','q','verdict','open'])if(state[k])p.set(k,state[k]);
 history.replaceState(null,'','#'+p.toString());}
function load(){const p=new URLSearchParams(location.hash.slice(1));for(const k of ['sort','dir','q','verdict','open'])state[k]=p.get(k)||'';
 if(!state.dir)state.dir='asc';q.value=state.q;verdict.value=state.verdict;}
function apply(){if(state.sort)tables.forEach(sort);filter();}
for(const t of tables)for(const th of t.tHead.rows[0].cells)th.addEventListener('click',()=>{
 state.dir=state.sort===th.dataset.col&&state.dir==='asc'?'desc':'asc';state.sort=th.dataset.col;apply();save();});
for(const r of document.querySelectorAll('tr.row'))r.addEventListener('click',()=>{
 const open=state.open.split(',').filter(Boolean),i=open.indexOf(r.id);if(i<0)open.push(r.id);else open.splice(i,1);
 state.open=open.join(',');filter();save();});
q.addEventListener('input',()=>{state.q=q.value;filter();save();});
verdict.addEventListener('change',()=>{state.verdict=verdict.value;filter();save();});
window.addEventListener('hashchange',()=>{load();apply();});
load();apply();document.body.dataset.ready='1';
})();"#;

/// The page for `tables` built from the `runs` under `results_dir`, with `plots` (file name, SVG) inline.
pub fn html(results_dir: &Path, tables: &Tables, runs: &[Run], plots: &[(String, String)]) -> Result<String> {
    let board = &tables.board;
    let mut provenances: BTreeMap<usize, Provenance> = BTreeMap::new();
    for &i in tables.run_of.values() {
        provenances.insert(i, provenance(&runs[i])?);
    }
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>steerbench leaderboard</title>\n",
    );
    let _ = writeln!(
        out,
        "<style>{STYLE}</style>\n</head>\n<body>\n<h1>steerbench leaderboard</h1>"
    );
    out.push_str(
        "<p>Generated by <code>steerbench leaderboard</code> from the runs under <code>runs/</code>, with \
         <a href=\"leaderboard.csv\">leaderboard.csv</a> and <a href=\"LEADERBOARD.md\">LEADERBOARD.md</a>; \
         the columns and verdicts are defined in <a href=\"README.md\">README.md</a>. Click a column to sort, \
         a row for its dose-response, per-item distribution and generations.</p>\n",
    );
    out.push_str(&produced_with(board, tables, runs, &provenances));
    if board.rows.is_empty() {
        out.push_str("<p>No runs have been recorded yet.</p>\n</body>\n</html>\n");
        return Ok(out);
    }
    let mut verdicts: Vec<&str> = board.rows.iter().map(|r| board.cell(r, "verdict").text()).collect();
    verdicts.sort();
    verdicts.dedup();
    out.push_str(
        "<div id=\"controls\"><label>Filter <input id=\"filter\" type=\"search\" placeholder=\"method, task, …\"></label>\
         <label>Verdict <select id=\"verdict\"><option value=\"\">any</option>",
    );
    for v in &verdicts {
        let _ = write!(out, "<option>{}</option>", esc(v));
    }
    out.push_str("</select></label><span id=\"shown\"></span></div>\n");
    let mut suites: Vec<&str> = board.rows.iter().map(|r| board.cell(r, "suite").text()).collect();
    suites.dedup();
    let mut index = 0usize;
    for suite in suites {
        let _ = writeln!(
            out,
            "<h2 id=\"suite-{0}\">{0}</h2>\n<table class=\"board\" data-suite=\"{0}\">\n<thead><tr>",
            esc(suite)
        );
        for (heading, column) in COLUMNS {
            let _ = write!(out, "<th data-col=\"{column}\">{}</th>", esc(heading));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in board.rows.iter().filter(|r| board.cell(r, "suite").text() == suite) {
            index += 1;
            out.push_str(&row_html(results_dir, board, row, index, tables, runs, &provenances)?);
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("<h2 id=\"plots\">Plots</h2>\n");
    for (name, svg) in plots {
        let _ = writeln!(
            out,
            "<figure id=\"plot-{0}\">{1}<figcaption>{0}</figcaption></figure>",
            esc(name),
            svg.trim()
        );
    }
    let _ = write!(out, "<script>\n{SCRIPT}\n</script>\n</body>\n</html>\n");
    Ok(out)
}

/// The models, commits and dates the rows were produced with.
fn produced_with(board: &Board, tables: &Tables, runs: &[Run], provenances: &BTreeMap<usize, Provenance>) -> String {
    let mut models: BTreeMap<(String, String), usize> = BTreeMap::new();
    for &i in tables.run_of.values() {
        if let Some(first) = runs[i].rows.first() {
            *models
                .entry((first.model.clone(), first.model_sha256.clone()))
                .or_default() += 1;
        }
    }
    let mut commits: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dates: Vec<&str> = Vec::new();
    let mut undated = 0;
    for p in provenances.values() {
        *commits
            .entry(p.commit.as_deref().unwrap_or("not recorded"))
            .or_default() += 1;
        match &p.finished {
            Some(d) => dates.push(d),
            None => undated += 1,
        }
    }
    dates.sort();
    let mut s = String::from("<dl id=\"produced\">");
    for ((name, sha), n) in &models {
        let _ = write!(
            s,
            "<dt>model</dt><dd><b>{}</b> (sha256 <code>{}</code>, {n} units)</dd>",
            esc(name),
            esc(sha)
        );
    }
    let list: Vec<String> = commits
        .iter()
        .map(|(c, n)| format!("<code>{}</code> ({n})", esc(c)))
        .collect();
    let _ = write!(s, "<dt>commits (units)</dt><dd>{}</dd>", list.join(", "));
    let when = match (dates.first(), dates.last()) {
        (Some(a), Some(b)) if a == b => esc(a),
        (Some(a), Some(b)) => format!("{} to {}", esc(a), esc(b)),
        _ => "not recorded".into(),
    };
    let note = if undated > 0 && !dates.is_empty() {
        format!(" ({undated} units from before dates were recorded)")
    } else {
        String::new()
    };
    let _ = write!(s, "<dt>units finished</dt><dd>{when}{note}</dd>");
    let _ = writeln!(s, "<dt>rows</dt><dd>{}</dd></dl>", board.rows.len());
    s
}

fn row_html(
    results_dir: &Path,
    board: &Board,
    row: &[Cell],
    index: usize,
    tables: &Tables,
    runs: &[Run],
    provenances: &BTreeMap<usize, Provenance>,
) -> Result<String> {
    let name = |c: &str| board.cell(row, c).text().to_string();
    let key = (name("model"), name("method"), name("suite"), name("task"));
    let run_index = tables.run_of.get(&key).copied();
    let mut s = format!(
        "<tr class=\"row\" id=\"r{index}\" data-key=\"{}\" data-verdict=\"{}\">",
        esc(&format!("{}/{}/{}/{}", key.0, key.1, key.2, key.3)),
        esc(&name("verdict"))
    );
    for (_, column) in COLUMNS {
        let (v, shown) = cell_html(board, row, column);
        let class = if matches!(board.cell(row, column), Cell::Text(_)) {
            ""
        } else {
            " class=\"num\""
        };
        let _ = write!(s, "<td{class} data-v=\"{}\">{}</td>", esc(&v), esc(&shown));
    }
    s.push_str("</tr>\n");
    let _ = write!(s, "<tr class=\"detail\" hidden><td colspan=\"{}\">", COLUMNS.len());
    let default = Provenance::default();
    let p = run_index.and_then(|i| provenances.get(&i)).unwrap_or(&default);
    s.push_str("<dl>");
    for (k, v) in facts(board, row, p) {
        let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", esc(&k), esc(&v));
    }
    s.push_str("</dl>");
    if let Some(i) = run_index {
        let run = &runs[i];
        let metric = name("metric");
        let chosen = board.cell(row, "chosen_multiplier").number();
        let seed = board.cell(row, "seed").number().unwrap_or(0.0) as u64;
        let d = detail(run, &metric, chosen, seed)?;
        let plots: Vec<String> = [dose_svg(&d, chosen, &metric), items_svg(&d, &metric)]
            .into_iter()
            .flatten()
            .collect();
        if plots.is_empty() {
            s.push_str("<p>No per-item values at several strengths: rerun this unit with protocol 2.</p>");
        } else {
            let _ = write!(s, "<div class=\"plots\">{}</div>", plots.join(""));
        }
        let gens = generations(run)?;
        if !gens.is_empty() {
            s.push_str("<table class=\"gen\"><thead><tr><th>variant</th><th>multiplier</th><th>continuation</th></tr></thead><tbody>");
            for (prompt, list) in gens {
                let _ = write!(s, "<tr><td colspan=\"3\"><b>{}</b></td></tr>", esc(&prompt));
                for g in list {
                    let _ = write!(
                        s,
                        "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                        esc(&g.variant),
                        g.multiplier.map(|m| format!("{m}")).unwrap_or_else(|| "–".into()),
                        esc(&g.text)
                    );
                }
            }
            s.push_str("</tbody></table>");
        }
        let rel = run.path.strip_prefix(results_dir).unwrap_or(&run.path);
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let rel = rel.join("/");
        let _ = write!(s, "<p>Rows: <a href=\"{0}\">{0}</a></p>", esc(&rel));
    }
    s.push_str("</td></tr>\n");
    Ok(s)
}
