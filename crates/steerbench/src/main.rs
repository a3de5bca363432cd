//! `steerbench`: the command-line front end of the steering benchmark.

use steer_suites::ab;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use safetensors::tensor::{Dtype, TensorView};
use steer_model::{
    Backend, Capture, ChatMessage, Edit, ForwardRequest, GenerateOptions, LoadedModel, LogitsMode, ModelConfig,
    Positions, Sampling, Site, WeightSource,
};

#[derive(Parser)]
#[command(name = "steerbench", version, about = "Benchmark suite for LLM steering methods")]
struct Cli {
    /// Compute backend: cpu (burn-flex) or wgpu.
    #[arg(long, global = true, default_value = "cpu")]
    backend: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ModelPrompt {
    /// `default`, a .gguf file, a Hugging Face directory, or org/name from the local HF cache.
    #[arg(long, default_value = "default")]
    model: String,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as one user turn with the model's chat template (generation prompt added).
    #[arg(long)]
    chat: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Write the logits at every position of a prompt to a safetensors file.
    Logits {
        #[command(flatten)]
        input: ModelPrompt,
        /// Output file (tensors `logits` [n_tokens, vocab] f32 and `token_ids` [n_tokens] i64).
        #[arg(long)]
        out: PathBuf,
    },
    /// Continue a prompt, optionally steered by a vector.
    Generate {
        #[command(flatten)]
        input: ModelPrompt,
        /// Most tokens to generate.
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// A safetensors file whose tensor `vector` ([d_model]) is added to the residual stream.
        #[arg(long, requires = "layer")]
        vector: Option<PathBuf>,
        /// Block (0-based) after which the vector is added.
        #[arg(long)]
        layer: Option<usize>,
        /// Strength of the vector.
        #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
        multiplier: f32,
        /// Sample with this temperature instead of greedy decoding.
        #[arg(long)]
        temperature: Option<f32>,
        /// Nucleus sampling threshold (with --temperature).
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Seed for sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write the residual stream after one block for every token of a prompt.
    Activations {
        #[command(flatten)]
        input: ModelPrompt,
        /// Block (0-based) whose output is read.
        #[arg(long)]
        layer: usize,
        /// Output file (tensor `resid` [n_tokens, d_model] f32, `token_ids` [n_tokens] i64).
        #[arg(long)]
        out: PathBuf,
    },
    /// Fit a steering method on A/B items (CAA format) and save the steering.
    Train {
        /// Registered method name (see `steerbench methods`).
        #[arg(long)]
        method: String,
        /// JSON list of items with `question`, `answer_matching_behavior`, `answer_not_matching_behavior`.
        #[arg(long, required_unless_present = "task", conflicts_with = "task")]
        data: Option<PathBuf>,
        /// A task, `suite/task`: fit on its training split.
        #[arg(long)]
        task: Option<String>,
        /// The suites folder for `--task` (default: the one in this source tree).
        #[arg(long)]
        suites: Option<PathBuf>,
        /// Block (0-based) whose output is read and steered.
        #[arg(long)]
        layer: usize,
        /// The model to fit on.
        #[arg(long, default_value = "default")]
        model: String,
        /// Use only the first N items.
        #[arg(long)]
        limit: Option<usize>,
        /// Seed for methods that draw random numbers.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Hyperparameter override, `name=value` (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, f64)>,
        /// Output file (safetensors; tensor `vector` [d_model] for one layer).
        #[arg(long)]
        out: PathBuf,
    },
    /// A/B preference under a steering: mean logit(matching letter) − logit(other letter) per multiplier.
    Ab {
        /// JSON list of A/B items (CAA format).
        #[arg(long)]
        data: PathBuf,
        /// Steerings written by `train` (repeatable; evaluated on the same items).
        #[arg(long, required = true)]
        steering: Vec<PathBuf>,
        /// Multipliers to try, comma-separated.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, default_value = "-1,0,1")]
        multipliers: Vec<f32>,
        /// The model.
        #[arg(long, default_value = "default")]
        model: String,
        /// Use only the first N items.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Write an additive steering as a llama.cpp control vector (GGUF) for `llama-cli --control-vector`.
    Export {
        /// A steering written by `train`.
        #[arg(long)]
        steering: PathBuf,
        /// Strength baked into the vectors (llama.cpp can scale them again with `--control-vector-scaled`).
        #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
        multiplier: f32,
        /// The model the steering was fitted on (gives the layer count and the model hint).
        #[arg(long, default_value = "default")]
        model: String,
        /// Output file (.gguf).
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate a method on tasks: fit on the training split, choose layer and
    /// multiplier on validation, report test with baselines, intervals and steerability.
    Eval {
        /// Registered method name.
        #[arg(long)]
        method: String,
        /// Suite name, tag, or `all`.
        #[arg(long)]
        suite: String,
        /// One task of the suite (default: every task of the selection).
        #[arg(long)]
        task: Option<String>,
        /// The model.
        #[arg(long, default_value = "default")]
        model: String,
        /// Use at most N items of each split.
        #[arg(long)]
        limit: Option<usize>,
        /// Layers of the validation sweep, comma-separated (default: every layer).
        #[arg(long, value_delimiter = ',')]
        layers: Option<Vec<usize>>,
        /// Multiplier grid, comma-separated (default: the method's grid).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        multipliers: Option<Vec<f32>>,
        /// Seed of fitting, the random baseline and the bootstrap.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Hyperparameter override, `name=value` (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, f64)>,
        /// The suites folder (default: the one in this source tree).
        #[arg(long)]
        suites: Option<PathBuf>,
        /// Write the result rows to this CSV file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Skip the damage measurements (perplexity and tinyBenchmarks accuracy of the chosen configuration).
        #[arg(long)]
        no_degradation: bool,
        /// Skip the open-ended scoring of the test items.
        #[arg(long)]
        no_open_ended: bool,
    },
    /// List the registered steering methods.
    Methods,
    /// Check every compiled backend against the CPU backend and time a batched forward pass.
    Backends {
        /// A model to load; without it, seeded random weights of the default model's shapes.
        #[arg(long)]
        model: Option<String>,
        /// Seed of the random weights and tokens.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Rows in the batch.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Tokens per row.
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// Timed repetitions (after one warm-up).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Largest |Δlogit| against the CPU backend that counts as agreement.
        #[arg(long, default_value_t = 1e-3)]
        tolerance: f32,
    },
    /// Print a model's configuration and special tokens.
    Info {
        /// The model to describe.
        #[arg(long, default_value = "default")]
        model: String,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("error: {}", one_line(&format!("{err:#}")));
        std::process::exit(1);
    }
}

/// Joins a possibly multi-line message into one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn load(spec: &str, backend: &str) -> Result<LoadedModel> {
    let backend: Backend = backend.parse()?;
    let device = backend.device()?;
    Ok(LoadedModel::load(spec, &device)?)
}

fn encode(model: &LoadedModel, input: &ModelPrompt) -> Result<Vec<u32>> {
    let ids = if input.chat {
        let messages = [ChatMessage {
            role: "user".into(),
            content: input.prompt.clone(),
        }];
        model.tokenizer.encode_chat(&messages, true)?
    } else {
        model.tokenizer.encode(&input.prompt, true)?
    };
    if ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    Ok(ids)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Logits { input, out } => {
            let model = load(&input.model, &cli.backend)?;
            let ids = encode(&model, &input)?;
            let req = ForwardRequest {
                captures: &[],
                edits: &[],
                logits: LogitsMode::All,
            };
            let output = model.model.forward(std::slice::from_ref(&ids), &req)?;
            let logits = output.logits.context("the model returned no logits")?;
            let (t, v) = (logits.shape[1], logits.shape[2]);
            write_safetensors(
                &out,
                &[
                    ("logits", f32_view(&logits.data, &[t, v])),
                    ("token_ids", ids_view(&ids)),
                ],
            )?;
            println!("wrote {} ({t} tokens × {v} logits)", out.display());
        }
        Command::Activations { input, layer, out } => {
            let model = load(&input.model, &cli.backend)?;
            let ids = encode(&model, &input)?;
            let capture = Capture::all(Site::ResidPost(layer));
            let req = ForwardRequest {
                captures: &[capture],
                edits: &[],
                logits: LogitsMode::None,
            };
            let output = model.model.forward(std::slice::from_ref(&ids), &req)?;
            let resid = output.capture(capture).context("the model returned no activations")?;
            let (t, d) = (resid.shape[1], resid.shape[2]);
            write_safetensors(
                &out,
                &[("resid", f32_view(&resid.data, &[t, d])), ("token_ids", ids_view(&ids))],
            )?;
            println!("wrote {} ({t} tokens × {d} values, after block {layer})", out.display());
        }
        Command::Generate {
            input,
            max_new_tokens,
            vector,
            layer,
            multiplier,
            temperature,
            top_p,
            seed,
        } => {
            // Read the vector before the model so a bad file fails fast.
            let steer = match (&vector, layer) {
                (Some(path), Some(layer)) => Some((read_vector(path)?, layer, path.clone())),
                (None, Some(_)) => bail!("--layer needs --vector"),
                _ => None,
            };
            let model = load(&input.model, &cli.backend)?;
            let ids = encode(&model, &input)?;
            let mut edits = Vec::new();
            if let Some((vector, layer, path)) = steer {
                let d = model.model.config().hidden_size;
                if vector.len() != d {
                    bail!(
                        "{}: vector has {} values but the model's d_model is {d}",
                        path.display(),
                        vector.len()
                    );
                }
                edits.push(Edit::AddVector {
                    layer,
                    vector: vector.iter().map(|v| v * multiplier).collect(),
                    positions: Positions::All,
                    multipliers: vec![],
                });
            }
            let sampling = match temperature {
                Some(temperature) => Sampling::Sample {
                    temperature,
                    top_p,
                    seed,
                },
                None => Sampling::Greedy,
            };
            let opts = GenerateOptions {
                max_new_tokens,
                sampling,
                eos_ids: model.tokenizer.eos_ids().to_vec(),
            };
            let new = model.model.generate(std::slice::from_ref(&ids), &edits, &opts)?;
            println!("{}", model.tokenizer.decode(&new[0], true)?);
        }
        Command::Backends {
            model,
            seed,
            batch,
            seq,
            repeat,
            tolerance,
        } => {
            backends(model.as_deref(), seed, batch, seq, repeat.max(1), tolerance)?;
        }
        Command::Train {
            method,
            data,
            task,
            suites,
            layer,
            model,
            limit,
            seed,
            params,
            out,
        } => {
            let fitter = find_method(&method)?;
            let loaded = load(&model, &cli.backend)?;
            let (data_set, data) = match (data, task) {
                (Some(path), _) => {
                    let mut items = ab::read_items(&path)?;
                    items.truncate(limit.unwrap_or(usize::MAX));
                    (ab::training_set(&loaded.tokenizer, &items)?, path)
                }
                (None, Some(id)) => {
                    let (suite, name) = id
                        .split_once('/')
                        .with_context(|| format!("--task '{id}' is not of the form suite/task"))?;
                    let catalog =
                        steer_suites::spec::Catalog::open(&suites.unwrap_or_else(steer_suites::spec::default_root))?;
                    let task = catalog.select(suite, Some(name))?[0];
                    steer_suites::protocol::task_training_set(task, &loaded.tokenizer, limit)?
                }
                (None, None) => bail!("give --data or --task"),
            };
            let config = steer_methods::FitConfig {
                layer,
                seed,
                batch_size: 8,
                params: params.into_iter().collect(),
            };
            let started = std::time::Instant::now();
            let mut steering = fitter.fit(&loaded.model, &data_set, &config)?;
            let seconds = started.elapsed().as_secs_f64();
            steering.metadata.insert("model".into(), model.clone());
            steering.metadata.insert("model_sha256".into(), loaded.sha256()?);
            steering.metadata.insert("data".into(), data.display().to_string());
            steering
                .metadata
                .insert("data_sha256".into(), steer_model::model::sha256_file(&data)?);
            write_atomic(&out, &steering.to_safetensors()?)?;
            println!(
                "{method} fitted on {} pairs in {seconds:.1} s; {}; wrote {}",
                data_set.pairs.len(),
                describe(&steering),
                out.display()
            );
        }
        Command::Ab {
            data,
            steering,
            multipliers,
            model,
            limit,
        } => {
            let mut items = ab::read_items(&data)?;
            items.truncate(limit.unwrap_or(usize::MAX));
            let loaded = load(&model, &cli.backend)?;
            let d_model = loaded.model.config().hidden_size;
            let mut steerings = Vec::with_capacity(steering.len());
            for path in &steering {
                let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
                let s = steer_methods::Steering::from_safetensors(&bytes, &path.display().to_string())?;
                if s.d_model() != 0 && s.d_model() != d_model {
                    bail!(
                        "{}: steering has {} values per vector but the model's d_model is {d_model}",
                        path.display(),
                        s.d_model()
                    );
                }
                if let Some(&l) = s
                    .layers()
                    .iter()
                    .find(|&&l| l >= loaded.model.config().num_hidden_layers)
                {
                    bail!(
                        "{}: steering acts on layer {l}, which the model does not have",
                        path.display()
                    );
                }
                steerings.push(s);
            }
            let (prompts, letters) = ab::prompts_and_letters(&loaded.tokenizer, &items)?;
            let started = std::time::Instant::now();
            let margins = ab::letter_margins(&loaded.model, &prompts, &letters, &steerings, &multipliers, 8)?;
            println!(
                "{} items, {} steerings × {} multipliers in {:.1} s",
                items.len(),
                steerings.len(),
                multipliers.len(),
                started.elapsed().as_secs_f64()
            );
            println!(
                "{:<40} {:>10} {:>12} {:>10}",
                "steering", "multiplier", "mean Δlogit", "matching"
            );
            for ((path, s), per_m) in steering.iter().zip(&steerings).zip(&margins) {
                let name = format!(
                    "{} {:?} ({})",
                    s.method,
                    s.layers(),
                    path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()
                );
                for (m, diffs) in multipliers.iter().zip(per_m) {
                    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
                    let preferred = diffs.iter().filter(|d| **d > 0.0).count() as f32 / diffs.len() as f32;
                    println!("{name:<40} {m:>10} {mean:>12.4} {:>9.1}%", preferred * 100.0);
                }
            }
        }
        Command::Export {
            steering,
            multiplier,
            model,
            out,
        } => {
            let bytes = std::fs::read(&steering).with_context(|| format!("{}", steering.display()))?;
            let s = steer_methods::Steering::from_safetensors(&bytes, &steering.display().to_string())?;
            let loaded = load(&model, &cli.backend)?;
            let cfg = loaded.model.config();
            if s.d_model() != cfg.hidden_size {
                bail!(
                    "{}: steering has {} values per vector but the model's d_model is {}",
                    steering.display(),
                    s.d_model(),
                    cfg.hidden_size
                );
            }
            let gguf = s
                .to_control_vector(cfg.architecture.name(), cfg.num_hidden_layers, multiplier)
                .with_context(|| format!("{}", steering.display()))?;
            write_atomic(&out, &gguf)?;
            println!(
                "wrote {} ({} layers as llama.cpp layers {:?}, multiplier {multiplier})",
                out.display(),
                s.layers().len(),
                s.layers().iter().map(|l| l + 1).collect::<Vec<_>>()
            );
        }
        Command::Eval {
            method,
            suite,
            task,
            model,
            limit,
            layers,
            multipliers,
            seed,
            params,
            suites,
            out,
            no_degradation,
            no_open_ended,
        } => {
            let fitter = find_method(&method)?;
            let root = suites.unwrap_or_else(steer_suites::spec::default_root);
            let catalog = steer_suites::spec::Catalog::open(&root)?;
            let tasks: Vec<&steer_suites::spec::Task> = catalog
                .select(&suite, task.as_deref())?
                .into_iter()
                .filter(|t| {
                    !matches!(
                        t.spec.format,
                        steer_suites::spec::Format::RawText | steer_suites::spec::Format::AnchorMc
                    )
                })
                .collect();
            if tasks.is_empty() {
                bail!("'{suite}' selects no task to fit and choose a steering on (perplexity is measured with each)");
            }
            let (perplexity, capability) = if no_degradation {
                (None, Vec::new())
            } else {
                (
                    Some(catalog.select("perplexity", Some("wikitext2"))?[0].clone()),
                    catalog.select("tinybench", None)?.into_iter().cloned().collect(),
                )
            };
            let loaded = load(&model, &cli.backend)?;
            let subject = steer_suites::protocol::Subject {
                model: &loaded.model,
                tokenizer: &loaded.tokenizer,
                name: model.clone(),
                sha256: loaded.sha256()?,
            };
            let opts = steer_suites::protocol::EvalOptions {
                layers,
                multipliers,
                limit,
                seed,
                params: params.into_iter().collect(),
                open_ended: !no_open_ended,
                perplexity,
                capability,
                ..Default::default()
            };
            let mut rows = Vec::new();
            for task in tasks {
                if task.spec.format == steer_suites::spec::Format::IclPairs {
                    let report = steer_suites::protocol::evaluate_icl(&subject, task, fitter.as_ref(), &opts)?;
                    print_icl_report(&report);
                    rows.extend(report.rows);
                } else {
                    let report = steer_suites::protocol::evaluate_mcq(&subject, task, fitter.as_ref(), &opts)?;
                    print_report(&report);
                    rows.extend(report.rows);
                }
            }
            if let Some(path) = out {
                write_atomic(&path, &steer_suites::rows::to_csv(&rows)?)?;
                println!("wrote {} rows to {}", rows.len(), path.display());
            }
        }
        Command::Methods => {
            for m in steer_methods::registry() {
                let info = m.info();
                println!("{:<8} {}\n         {}", info.name, info.summary, info.paper);
                for h in info.hyperparameters {
                    println!("         --param {}=<{}>  {}", h.name, h.default, h.doc);
                }
            }
        }
        Command::Info { model } => {
            let m = load(&model, &cli.backend)?;
            let cfg = m.model.config();
            println!("source: {}", m.format.path().display());
            println!("{}", serde_json::to_string_pretty(cfg)?);
            println!("bos: {:?}, eos: {:?}", m.tokenizer.bos_id(), m.tokenizer.eos_ids());
        }
    }
    Ok(())
}

/// The registered method `name`, or an error listing the registered ones.
fn find_method(name: &str) -> Result<Box<dyn steer_methods::SteeringMethod>> {
    steer_methods::find(name).with_context(|| {
        let names: Vec<&str> = steer_methods::registry().iter().map(|m| m.info().name).collect();
        format!("unknown method '{name}' (registered: {})", names.join(", "))
    })
}

/// Prints the validation choice, the test table and steerability of one evaluation.
fn print_report(r: &steer_suites::protocol::McqReport) {
    let layer = |l: Option<usize>| l.map_or("all".to_string(), |l| l.to_string());
    println!(
        "\n{} — {}: {} training, {} validation, {} test items (fit {:.0} s, sweep {:.0} s, test {:.0} s)",
        r.task, r.method, r.sizes[0], r.sizes[1], r.sizes[2], r.seconds[0], r.seconds[1], r.seconds[2]
    );
    // Best positive multiplier per layer on validation.
    let mut per_layer: Vec<&steer_suites::protocol::SweepPoint> = Vec::new();
    for p in r.sweep.iter().filter(|p| p.multiplier > 0.0) {
        match per_layer.iter_mut().find(|q| q.layer == p.layer) {
            Some(q) if q.p_matching < p.p_matching => *q = p,
            Some(_) => {}
            None => per_layer.push(p),
        }
    }
    let line: Vec<String> = per_layer
        .iter()
        .map(|p| format!("{}:{:.3}", layer(p.layer), p.p_matching))
        .collect();
    println!("validation, best P(matching) per layer: {}", line.join(" "));
    println!(
        "chosen on validation: layer {}, multiplier {}",
        layer(r.chosen_layer),
        r.chosen_multiplier
    );
    println!(
        "{:<10} {:>10} {:>28} {:>28}",
        "variant", "multiplier", "logit diff [95% CI]", "P(matching) [95% CI]"
    );
    for t in &r.test {
        if t.variant == "random" && t.multiplier == 0.0 {
            continue;
        }
        let variant = if t.multiplier == 0.0 { "unsteered" } else { t.variant };
        println!(
            "{variant:<10} {:>10} {:>9.4} [{:>7.4}, {:>7.4}] {:>9.4} [{:>7.4}, {:>7.4}]",
            t.multiplier,
            t.logit_diff.mean,
            t.logit_diff.low,
            t.logit_diff.high,
            t.p_matching.mean,
            t.p_matching.low,
            t.p_matching.high
        );
    }
    for (variant, s) in &r.steerability {
        println!(
            "steerability ({variant}): mean slope {:.4} [{:.4}, {:.4}], std {:.4}, anti-steerable {:.0}%",
            s.slope.mean,
            s.slope.low,
            s.slope.high,
            s.std,
            100.0 * s.anti_steerable
        );
    }
    if let Some(p) = &r.predictors {
        println!(
            "predictors at the chosen layer: difference cosine {:.3}, separability {:.3}",
            p.difference_cosine, p.separability
        );
    }
    if let Some(e) = &r.effects {
        println!(
            "effect at the chosen multiplier: A/B {:.4} [{:.4}, {:.4}], open-ended {:.4} [{:.4}, {:.4}], gap {:.4} [{:.4}, {:.4}] ({} items)",
            e.mcq.mean,
            e.mcq.low,
            e.mcq.high,
            e.open.mean,
            e.open.low,
            e.open.high,
            e.gap.mean,
            e.gap.low,
            e.gap.high,
            e.gap.n
        );
    }
    if let Some([plain, steered, random]) = r.perplexity {
        println!(
            "perplexity (wikitext2): unsteered {plain:.3}, steered {steered:.3} (Δ {:+.3}), random {random:.3} (Δ {:+.3})",
            steered - plain,
            random - plain
        );
    }
    for (name, [plain, steered, random]) in &r.capability {
        println!(
            "tinybench/{name} (anchor-weighted accuracy): unsteered {:.3}, steered {:.3} (Δ {:+.3}), random {:.3} (Δ {:+.3})",
            plain.weighted,
            steered.weighted,
            steered.weighted - plain.weighted,
            random.weighted,
            random.weighted - plain.weighted
        );
    }
}

/// Prints the choice and the test table of a function-task evaluation.
fn print_icl_report(r: &steer_suites::protocol::IclReport) {
    let layer = |l: Option<usize>| l.map_or("all".to_string(), |l| l.to_string());
    println!(
        "\n{} — {}: {} training, {} validation, {} test items (fit {:.0} s, sweep {:.0} s, test {:.0} s)",
        r.task, r.method, r.sizes[0], r.sizes[1], r.sizes[2], r.seconds[0], r.seconds[1], r.seconds[2]
    );
    let mut best: Vec<(Option<usize>, f64)> = Vec::new();
    for p in r.sweep.iter().filter(|p| p.multiplier > 0.0) {
        match best.iter_mut().find(|b| b.0 == p.layer) {
            Some(b) if b.1 < p.top1 => b.1 = p.top1,
            Some(_) => {}
            None => best.push((p.layer, p.top1)),
        }
    }
    let line: Vec<String> = best.iter().map(|(l, v)| format!("{}:{v:.2}", layer(*l))).collect();
    println!("validation, best zero-shot top-1 per layer: {}", line.join(" "));
    println!(
        "chosen on validation: layer {}, multiplier {}",
        layer(r.chosen_layer),
        r.chosen_multiplier
    );
    println!("{:<10} {:>10} {:>26}", "variant", "multiplier", "top-1 [95% CI]");
    for (variant, m, e) in &r.test {
        println!(
            "{variant:<10} {m:>10} {:>9.3} [{:>6.3}, {:>6.3}]",
            e.mean, e.low, e.high
        );
    }
    if let Some([plain, steered, random]) = r.perplexity {
        println!(
            "perplexity (wikitext2): unsteered {plain:.3}, steered {steered:.3} (Δ {:+.3}), random {random:.3} (Δ {:+.3})",
            steered - plain,
            random - plain
        );
    }
    for (name, [plain, steered, random]) in &r.capability {
        println!(
            "tinybench/{name} (anchor-weighted accuracy): unsteered {:.3}, steered {:.3} (Δ {:+.3}), random {:.3} (Δ {:+.3})",
            plain.weighted,
            steered.weighted,
            steered.weighted - plain.weighted,
            random.weighted,
            random.weighted - plain.weighted
        );
    }
}

/// One line on what a steering holds.
fn describe(steering: &steer_methods::Steering) -> String {
    use steer_methods::SteeringKind;
    let norms = |vectors: &[(usize, Vec<f32>)]| -> String {
        let n: Vec<String> = vectors
            .iter()
            .map(|(l, v)| format!("{l}: {:.3}", steer_methods::direction::norm(v)))
            .collect();
        n.join(", ")
    };
    match &steering.kind {
        SteeringKind::Additive { vectors } => format!("added vector, |v| at layer {}", norms(vectors)),
        SteeringKind::NormPreserving { vectors } => {
            format!("norm-preserving vectors, |v| at layers {}", norms(vectors))
        }
        SteeringKind::Affine { layer, .. } => format!("affine map at layer {layer}"),
        SteeringKind::Prompt { positive, negative } => format!(
            "prompt prefixes of {} (matching) and {} (non-matching) tokens",
            positive.len(),
            negative.len()
        ),
    }
}

/// Loads the same weights on every backend, compares logits with the CPU
/// backend's and reports the median forward time.
fn backends(model: Option<&str>, seed: u64, batch: usize, seq: usize, repeat: usize, tolerance: f32) -> Result<()> {
    let (cfg, weights) = match model {
        Some(spec) => {
            // Only the configuration and the weights are needed; the tokenizer is not.
            match steer_model::model::resolve(spec)? {
                steer_model::ModelFormat::Gguf(p) => {
                    let file = steer_model::gguf::GgufFile::open(&p)?;
                    (ModelConfig::from_gguf(&file)?, WeightSource::Gguf(file))
                }
                steer_model::ModelFormat::HfDir(d) => (
                    ModelConfig::from_hf_json(&d.join("config.json"))?,
                    WeightSource::Safetensors(steer_model::weights::SafetensorsShards::open(&d)?),
                ),
            }
        }
        None => {
            let cfg = ModelConfig::smollm2_135m();
            let weights = WeightSource::random(&cfg, seed);
            (cfg, weights)
        }
    };
    let rows = steer_model::weights::random_tokens(batch, seq, cfg.vocab_size, seed);
    let req = ForwardRequest {
        captures: &[],
        edits: &[],
        logits: LogitsMode::All,
    };
    println!(
        "{batch} × {seq} tokens, {} layers, d_model {}",
        cfg.num_hidden_layers, cfg.hidden_size
    );
    println!(
        "{:<8} {:>12} {:>12} {:>14} {:>10}",
        "backend", "load s", "forward s", "tokens/s", "max|Δ|"
    );
    let mut reference: Option<Vec<f32>> = None;
    let mut failed = Vec::new();
    for backend in Backend::available() {
        let device = match backend.device() {
            Ok(d) => d,
            Err(e) => {
                println!("{backend:<8} unavailable: {e}");
                failed.push(backend.to_string());
                continue;
            }
        };
        let start = std::time::Instant::now();
        let llama = steer_model::Llama::load(&cfg, &weights, &device)?;
        let load_s = start.elapsed().as_secs_f64();
        let mut logits = llama.forward(&rows, &req)?.logits.context("no logits")?;
        let mut times = Vec::new();
        for _ in 0..repeat {
            let start = std::time::Instant::now();
            logits = llama.forward(&rows, &req)?.logits.context("no logits")?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let diff = match &reference {
            None => {
                reference = Some(logits.data);
                0.0
            }
            Some(r) => r
                .iter()
                .zip(&logits.data)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs())),
        };
        let tokens = (batch * seq) as f64 / median;
        println!(
            "{:<8} {load_s:>12.3} {median:>12.4} {tokens:>14.1} {diff:>10.2e}",
            backend.to_string()
        );
        if diff > tolerance || !diff.is_finite() {
            failed.push(backend.to_string());
        }
    }
    if !failed.is_empty() {
        bail!(
            "backends failing the check (tolerance {tolerance}): {}",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Reads tensor `vector` (f32 or f16, one axis) from a safetensors file.
fn read_vector(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    let view = tensors
        .tensor("vector")
        .map_err(|_| anyhow::anyhow!("{}: no tensor named 'vector'", path.display()))?;
    if view.shape().len() != 1 {
        bail!(
            "{}: tensor 'vector' has shape {:?}; expected one axis",
            path.display(),
            view.shape()
        );
    }
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        other => bail!("{}: tensor 'vector' has dtype {other:?}; expected F32", path.display()),
    };
    if values.iter().any(|v| !v.is_finite()) {
        bail!("{}: tensor 'vector' holds NaN or infinite values", path.display());
    }
    Ok(values)
}

/// Owned little-endian bytes of a tensor, ready for a `TensorView`.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn f32_view(values: &[f32], shape: &[usize]) -> Bytes {
    Bytes {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn ids_view(ids: &[u32]) -> Bytes {
    Bytes {
        dtype: Dtype::I64,
        shape: vec![ids.len()],
        data: ids.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect(),
    }
}

/// Parses `name=value` for `--param`.
fn parse_param(s: &str) -> std::result::Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=value, got '{s}'"))?;
    let value: f64 = value.parse().map_err(|_| format!("'{value}' is not a number"))?;
    Ok((name.to_string(), value))
}

/// Writes `bytes` to `path` atomically: a temporary file renamed into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("output path has no file name")?;
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// Writes tensors to `path` atomically.
fn write_safetensors(path: &Path, tensors: &[(&str, Bytes)]) -> Result<()> {
    let mut views = HashMap::new();
    for (name, b) in tensors {
        let view = TensorView::new(b.dtype, b.shape.clone(), &b.data)
            .map_err(|e| anyhow::anyhow!("{}: cannot build tensor '{name}': {e}", path.display()))?;
        views.insert(name.to_string(), view);
    }
    let bytes = safetensors::serialize(&views, None)
        .map_err(|e| anyhow::anyhow!("{}: cannot serialise: {e}", path.display()))?;
    write_atomic(path, &bytes)
}
