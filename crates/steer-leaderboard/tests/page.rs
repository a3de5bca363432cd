//! The leaderboard page in a real browser: the committed results rendered
//! to `index.html`, opened from disk by headless Chromium (Debian's
//! `chromium`, or the binary `$STEERBENCH_CHROMIUM` names), with its DOM
//! read back after the page's script ran.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The committed results folder of the quick profile.
fn committed_results() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results")
}

/// A fresh folder under the test target folder.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium() -> String {
    let name = std::env::var("STEERBENCH_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&name).arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "the page test needs a headless Chromium: `apt-get install chromium` (or set STEERBENCH_CHROMIUM); running `{name} --version` gave {found:?}"
    );
    name
}

/// Runs headless Chromium on `page` with `fragment` and `extra` arguments and returns its stdout.
fn browse(page: &Path, fragment: &str, extra: &[String], profile: &Path) -> String {
    let url = format!("file://{}{fragment}", page.display());
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// Decodes the entities the page writes into attribute values.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// One leaderboard row as the DOM holds it.
#[derive(Debug, Clone)]
struct DomRow {
    suite: String,
    key: String,
    hidden: bool,
    /// `data-v` of each cell.
    cells: Vec<String>,
}

/// Every `tr.row` of every board table, in DOM order.
fn rows(dom: &str) -> Vec<DomRow> {
    let mut out = Vec::new();
    for table in dom.split("<table class=\"board\"").skip(1) {
        let head = &table[..table.find('>').unwrap()];
        let suite = attribute(head, "data-suite").expect("a suite name");
        // Detail rows hold tables of their own: a board ends at the next heading.
        let body = &table[..table.find("<h2").unwrap_or(table.len())];
        for chunk in body.split("<tr class=\"row").skip(1) {
            let tag = &chunk[..chunk.find('>').unwrap()];
            let cells_html = &chunk[..chunk.find("</tr>").unwrap()];
            out.push(DomRow {
                suite: suite.clone(),
                key: attribute(tag, "data-key").expect("a row key"),
                hidden: tag.contains(" hidden"),
                cells: cells_html
                    .split("<td")
                    .skip(1)
                    .map(|td| attribute(&td[..td.find('>').unwrap()], "data-v").unwrap_or_default())
                    .collect(),
            });
        }
    }
    out
}

/// Index of the column `name` in the first board table's header.
fn column(dom: &str, name: &str) -> usize {
    let table = &dom[dom.find("<table class=\"board\"").unwrap()..];
    let header = &table[..table.find("</tr>").unwrap()];
    header
        .split("<th ")
        .skip(1)
        .position(|th| attribute(&format!(" {}", &th[..th.find('>').unwrap()]), "data-col").as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
fn the_page_holds_every_row_sorts_filters_and_renders() {
    let results = committed_results();
    let rendered = steer_leaderboard::render(&results).expect("rendering the committed results");
    let dir = scratch("committed");
    let (_, html) = rendered
        .files
        .iter()
        .find(|(p, _)| p == Path::new("index.html"))
        .expect("the page is rendered");
    let page = dir.join("index.html");
    std::fs::write(&page, html).unwrap();
    let profile = dir.join("profile");

    // Every leaderboard.csv row is on the page, once, and the script ran.
    let dom = browse(&page, "", &["--dump-dom".into()], &profile);
    assert!(dom.contains("data-ready=\"1\""), "the page's script did not finish");
    let csv = rendered
        .files
        .iter()
        .find(|(p, _)| p == Path::new("leaderboard.csv"))
        .map(|(_, b)| b.clone())
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let keys: Vec<String> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            format!(
                "{}/{}/{}/{}",
                &r[at("model")],
                &r[at("method")],
                &r[at("suite")],
                &r[at("task")]
            )
        })
        .collect();
    assert!(keys.len() >= 10, "the committed leaderboard has {} rows", keys.len());
    let plain = rows(&dom);
    assert_eq!(plain.len(), keys.len(), "one page row per leaderboard.csv row");
    for key in &keys {
        assert_eq!(plain.iter().filter(|r| &r.key == key).count(), 1, "{key}");
    }
    assert!(plain.iter().all(|r| !r.hidden), "no filter, nothing hidden");
    assert!(dom.contains(&format!("{} of {} rows shown", keys.len(), keys.len())));
    // Every plot is inline and the page fetches nothing.
    let plots = rendered.files.iter().filter(|(p, _)| p.starts_with("plots")).count();
    assert!(plots > 0);
    assert_eq!(dom.matches("<figure id=\"plot-").count(), plots);
    for remote in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.windows(remote.len()).any(|w| w == remote.as_bytes()), "{remote}");
    }

    // Sorting by the effect, descending, reorders the rows within each suite.
    let effect = column(&dom, "effect");
    let sorted = rows(&browse(
        &page,
        "#sort=effect&dir=desc",
        &["--dump-dom".into()],
        &profile,
    ));
    assert_eq!(sorted.len(), plain.len());
    let mut moved = false;
    for suite in plain
        .iter()
        .map(|r| r.suite.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let before: Vec<&DomRow> = plain.iter().filter(|r| r.suite == suite).collect();
        let after: Vec<&DomRow> = sorted.iter().filter(|r| r.suite == suite).collect();
        let mut a: Vec<&str> = before.iter().map(|r| r.key.as_str()).collect();
        let mut b: Vec<&str> = after.iter().map(|r| r.key.as_str()).collect();
        moved |= a != b;
        a.sort();
        b.sort();
        assert_eq!(a, b, "sorting keeps {suite}'s rows");
        let values: Vec<Option<f64>> = after.iter().map(|r| r.cells[effect].parse::<f64>().ok()).collect();
        let numbers: Vec<f64> = values.iter().flatten().copied().collect();
        assert!(
            numbers.windows(2).all(|w| w[0] >= w[1]),
            "{suite}: effects not descending: {numbers:?}"
        );
        let first_empty = values.iter().position(Option::is_none).unwrap_or(values.len());
        assert!(
            values[first_empty..].iter().all(Option::is_none),
            "{suite}: empty effects sort last"
        );
    }
    assert!(moved, "sorting by the effect changed no table's order");

    // A filter hides every row that does not mention it.
    let filtered = rows(&browse(&page, "#q=caa", &["--dump-dom".into()], &profile));
    let shown: Vec<&DomRow> = filtered.iter().filter(|r| !r.hidden).collect();
    assert!(!shown.is_empty() && shown.len() < filtered.len());
    assert!(shown.iter().all(|r| r.key.contains("/caa/")), "{shown:?}");
    assert_eq!(
        shown.len(),
        keys.iter().filter(|k| k.contains("/caa/")).count(),
        "every caa row stays shown"
    );

    // An opened row shows its detail: the paired dose-response and the per-item histogram.
    let dom = browse(&page, "#open=r1", &["--dump-dom".into()], &profile);
    let open = &dom[dom.find("id=\"r1\"").unwrap()..];
    let detail = &open[open.find("<tr class=\"detail\"").unwrap()..];
    let detail = &detail[..detail.find("</td></tr>").unwrap()];
    assert!(
        !detail[..detail.find('>').unwrap()].contains("hidden"),
        "the detail of r1 is shown"
    );
    assert!(detail.contains("paired effect by strength"), "{detail}");

    // A screenshot of the page as a reader sees it.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page/index.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &page,
        "#open=r1",
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1800".into(),
        ],
        &profile,
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}
