//! `steerbench`: the command-line front end of the steering benchmark.

use steer_suites::ab;

mod bench;
mod demo;
mod perf;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use safetensors::tensor::{Dtype, TensorView};
use steer_model::{
    Backend, Capture, ChatMessage, Edit, ForwardRequest, GenerateOptions, LoadedModel, LogitsMode, ModelConfig,
    Positions, Sampling, Site, WeightSource,
};

/// mimalloc, keeping freed memory for the next pass (see `steer_model::allocator`).
#[global_allocator]
static ALLOCATOR: steer_model::allocator::Allocator = steer_model::allocator::Allocator;

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
        #[arg(long, requires = "layer", conflicts_with = "steering")]
        vector: Option<PathBuf>,
        /// Block (0-based) after which the vector is added.
        #[arg(long)]
        layer: Option<usize>,
        /// A steering applied at every layer it names: a llama.cpp control
        /// vector (GGUF), per-layer vectors in safetensors, or a file `train` wrote.
        #[arg(long)]
        steering: Option<PathBuf>,
        /// Strength of the vector or steering.
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
        /// The tinybench tasks that measure capability damage, comma-separated
        /// (default: those tagged `degradation`).
        #[arg(long, value_delimiter = ',')]
        capability: Option<Vec<String>>,
        /// The behaviour task (`suite/task`) a steering is fitted and chosen on
        /// when the selection holds only damage tasks (tinybench, perplexity).
        #[arg(long)]
        fit_on: Option<String>,
        /// Write greedy generations (sentiment continuations; open-ended
        /// behaviour prompts unsteered and at ± the chosen multiplier) to this JSON Lines file.
        #[arg(long)]
        generations: Option<PathBuf>,
        /// Open-ended behaviour prompts per task continued for `--generations`.
        #[arg(long, default_value_t = 10)]
        generation_prompts: usize,
        /// Most tokens of each open-ended generation.
        #[arg(long, default_value_t = 64)]
        generation_tokens: usize,
    },
    /// The benchmark in miniature: fit a method on the sentiment task, choose
    /// its layer and strength on validation, and report its test effect next
    /// to a random steering and prompting, with its damage and one opening
    /// continued unsteered, steered and with the random steering.
    Demo {
        /// The method shown.
        #[arg(long, default_value = "caa")]
        method: String,
        /// The sentiment task.
        #[arg(long, default_value = "sentiment/openings")]
        task: String,
        /// The model.
        #[arg(long, default_value = "default")]
        model: String,
        /// Openings per split (training, validation, test).
        #[arg(long, default_value_t = 12)]
        limit: usize,
        /// Layers of the validation sweep, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "6,12,18")]
        layers: Vec<usize>,
        /// The tinybench task whose accuracy measures damage.
        #[arg(long, default_value = "arc")]
        capability: String,
        /// Tokens of WikiText-2 whose perplexity measures damage.
        #[arg(long, default_value_t = 1024)]
        perplexity_tokens: usize,
        /// Seed of fitting, the random baseline and the bootstrap.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The suites folder (default: the one in this source tree).
        #[arg(long)]
        suites: Option<PathBuf>,
    },
    /// Run every (method, task) unit of a selection into a results folder:
    /// finished units are skipped, each unit's files are written atomically,
    /// and the leaderboard is rebuilt at the end.
    Bench {
        /// Method names, comma-separated, or `all`.
        #[arg(long, value_delimiter = ',')]
        method: Vec<String>,
        /// Suite name, tag, or `all`.
        #[arg(long)]
        suite: String,
        /// One task of the suite.
        #[arg(long)]
        task: Option<String>,
        /// The model.
        #[arg(long, default_value = "default")]
        model: String,
        /// `quick` (the selected tasks tagged `quick` — one per suite —
        /// unless `--task` names one; 24 items per split; layers 3, 6, …, the
        /// last multiple of 3 below the layer count; a 1024-token perplexity
        /// text), `standard` (the tasks tagged `standard`, sized to detect
        /// 0.1 logit on A/B tasks: 64 A/B items per split, every ICL and
        /// sentiment item; the quick layers and perplexity text; written to
        /// `results/standard` unless `--results` says otherwise) or `full`
        /// (every selected task, item and layer).
        #[arg(long, default_value = "full")]
        profile: String,
        /// Use at most N items of each split (overrides the profile).
        #[arg(long)]
        limit: Option<usize>,
        /// Layers of the validation sweep, comma-separated (overrides the profile).
        #[arg(long, value_delimiter = ',')]
        layers: Option<Vec<usize>>,
        /// Multiplier grid, comma-separated (default: each method's grid).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        multipliers: Option<Vec<f32>>,
        /// Seed of fitting, the random baseline and the bootstrap.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The results folder (default: `results`, and `results/standard` for the standard profile).
        #[arg(long)]
        results: Option<PathBuf>,
        /// The suites folder (default: the one in this source tree).
        #[arg(long)]
        suites: Option<PathBuf>,
        /// Skip the damage measurements.
        #[arg(long)]
        no_degradation: bool,
        /// Print every unit's full report.
        #[arg(long)]
        verbose: bool,
        /// Open-ended behaviour prompts per task continued greedily and kept.
        #[arg(long, default_value_t = 10)]
        generations: usize,
    },
    /// Rebuild `leaderboard.csv`, `LEADERBOARD.md` and the plots from every run in a results folder.
    Leaderboard {
        /// The results folder.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Only check that the committed leaderboard equals what the runs give (exit 1 if not).
        #[arg(long)]
        check: bool,
    },
    /// Time the validation sweep (every layer × every multiplier × every item,
    /// A-vs-B logit difference at the answer position) on seeded random weights
    /// of the default model's shapes, on every compiled backend, and check each
    /// against the CPU backend's numbers.
    SweepBench {
        /// Items (random prompts).
        #[arg(long, default_value_t = 50)]
        items: usize,
        /// Tokens per prompt.
        #[arg(long, default_value_t = 150)]
        seq: usize,
        /// Multipliers.
        #[arg(
            long,
            value_delimiter = ',',
            allow_hyphen_values = true,
            default_value = "-2,-1,0,1,2"
        )]
        multipliers: Vec<f32>,
        /// Timed repetitions (the median is reported) after one warm-up.
        #[arg(long, default_value_t = 2)]
        repeat: usize,
        /// Seed of weights, prompts and vectors.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Backends to run, comma-separated (default: every compiled one).
        #[arg(long, value_delimiter = ',')]
        backends: Option<Vec<String>>,
    },
    /// Time a fixed workload on a real model (forward, CAA fit at every layer,
    /// the validation sweep, steered and unsteered decoding); compare with
    /// `tools/perf_torch.py` through `--compare`.
    Perf {
        /// The model to time.
        #[arg(long, default_value = "default")]
        model: String,
        /// The suites folder (default: the one in this source tree).
        #[arg(long)]
        suites: Option<PathBuf>,
        /// Write this run's figures (and sweep margins) as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// A JSON report of the same workload from another implementation, to print ratios against.
        #[arg(long)]
        compare: Option<PathBuf>,
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
    steer_model::allocator::keep_freed_memory();
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

/// What the protocol evaluates: `loaded`, named `name` in results, with
/// unsteered measurements kept in `unsteered` when given.
fn subject<'a>(
    loaded: &'a LoadedModel,
    name: &str,
    unsteered: Option<&'a steer_suites::unsteered::UnsteeredCache>,
) -> Result<steer_suites::protocol::Subject<'a>> {
    Ok(steer_suites::protocol::Subject {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        name: name.to_string(),
        sha256: loaded.sha256()?,
        progress: None,
        unsteered,
    })
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
            steering,
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
                let cfg = model.model.config();
                if vector.len() != cfg.hidden_size {
                    bail!(
                        "{}: vector has {} values but the model's d_model is {}",
                        path.display(),
                        vector.len(),
                        cfg.hidden_size
                    );
                }
                if layer >= cfg.num_hidden_layers {
                    bail!(
                        "--layer {layer} is out of range: the model has {} layers (0..{})",
                        cfg.num_hidden_layers,
                        cfg.num_hidden_layers - 1
                    );
                }
                edits.push(Edit::AddVector {
                    layer,
                    vector: vector.iter().map(|v| v * multiplier).collect(),
                    positions: Positions::All,
                    multipliers: vec![],
                });
            }
            let mut ids = ids;
            if let Some(path) = &steering {
                let s = read_steering(path, &model)?;
                ids = s.prompt(&ids, multiplier);
                edits.extend(s.edits(multiplier));
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
                    // Both answer orders of every item, as the protocol fits: the contrast cannot be a letter.
                    let both = ab::both_orders(&items).with_context(|| format!("{}", path.display()))?;
                    (ab::training_set(&loaded.tokenizer, &both)?, path)
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
            let steerings = steering
                .iter()
                .map(|path| read_steering(path, &loaded))
                .collect::<Result<Vec<_>>>()?;
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
            let loaded = load(&model, &cli.backend)?;
            let s = read_steering(&steering, &loaded)?;
            let cfg = loaded.model.config();
            let gguf = s
                .to_control_vector(cfg.architecture.name(), cfg.num_hidden_layers, multiplier)
                .with_context(|| format!("{}", steering.display()))?;
            write_atomic(&out, &gguf)?;
            println!(
                "wrote {} (direction.N for layers {:?}: llama.cpp adds direction.N to block N's output, as steerbench's layer N; multiplier {multiplier})",
                out.display(),
                s.layers()
            );
        }
        Command::Demo {
            method,
            task,
            model,
            limit,
            layers,
            capability,
            perplexity_tokens,
            seed,
            suites,
        } => {
            let root = suites.unwrap_or_else(steer_suites::spec::default_root);
            let catalog = steer_suites::spec::Catalog::open(&root)?;
            find_method(&method)?;
            let loaded = load(&model, &cli.backend)?;
            let kept = steer_suites::unsteered::UnsteeredCache::new();
            let subject = subject(&loaded, &model, Some(&kept))?;
            let settings = demo::DemoSettings {
                method,
                task,
                limit,
                layers,
                capability,
                perplexity_tokens,
                seed,
            };
            demo::run(&subject, &catalog, &settings)?;
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
            capability,
            fit_on,
            generations,
            generation_prompts,
            generation_tokens,
        } => {
            use steer_suites::spec::Format;
            let fitter = find_method(&method)?;
            let root = suites.unwrap_or_else(steer_suites::spec::default_root);
            let catalog = steer_suites::spec::Catalog::open(&root)?;
            let selected = catalog.select(&suite, task.as_deref())?;
            let is_damage = |t: &&steer_suites::spec::Task| {
                matches!(t.spec.format, Format::RawText | Format::AnchorMc | Format::AnchorGen)
            };
            let mut tasks: Vec<&steer_suites::spec::Task> =
                selected.iter().copied().filter(|t| !is_damage(t)).collect();
            let damage_only = tasks.is_empty();
            if damage_only {
                let Some(fit_on) = &fit_on else {
                    bail!(
                        "'{suite}' selects only damage tasks (tinybench, perplexity); name the behaviour task to fit and choose a steering on with --fit-on SUITE/TASK"
                    );
                };
                let (s, t) = fit_on
                    .split_once('/')
                    .with_context(|| format!("--fit-on '{fit_on}' is not of the form SUITE/TASK"))?;
                tasks = catalog.select(s, Some(t))?;
                if tasks.iter().any(is_damage) {
                    bail!("--fit-on '{fit_on}' is a damage task, not a behaviour task");
                }
            }
            let (perplexity, capability) = if no_degradation {
                (None, Vec::new())
            } else if damage_only {
                let chosen: Vec<&steer_suites::spec::Task> = selected.iter().copied().filter(is_damage).collect();
                (
                    chosen
                        .iter()
                        .find(|t| t.spec.format == Format::RawText)
                        .map(|t| (*t).clone()),
                    chosen
                        .iter()
                        .filter(|t| t.spec.format != Format::RawText)
                        .map(|t| (*t).clone())
                        .collect(),
                )
            } else {
                let capability: Vec<steer_suites::spec::Task> = match &capability {
                    Some(names) => names
                        .iter()
                        .map(|n| Ok(catalog.select("tinybench", Some(n))?[0].clone()))
                        .collect::<Result<_>>()?,
                    None => catalog
                        .select("degradation", None)?
                        .into_iter()
                        .filter(|t| matches!(t.spec.format, Format::AnchorMc | Format::AnchorGen))
                        .cloned()
                        .collect(),
                };
                (
                    Some(catalog.select("perplexity", Some("wikitext2"))?[0].clone()),
                    capability,
                )
            };
            let loaded = load(&model, &cli.backend)?;
            // Several tasks share the unsteered damage measurements.
            let kept = steer_suites::unsteered::UnsteeredCache::new();
            let subject = subject(&loaded, &model, Some(&kept))?;
            let opts = steer_suites::protocol::EvalOptions {
                layers,
                multipliers,
                limit,
                seed,
                params: params.into_iter().collect(),
                open_ended: !no_open_ended,
                perplexity,
                capability,
                generations: if generations.is_some() { generation_prompts } else { 0 },
                generation_tokens,
                ..Default::default()
            };
            let mut rows = Vec::new();
            let mut kept = Vec::new();
            for task in tasks {
                let outcome = bench::evaluate(&subject, task, fitter.as_ref(), &opts, false, &|print| print())?;
                rows.extend(outcome.rows);
                kept.extend(outcome.generations);
            }
            if let Some(path) = out {
                write_atomic(&path, &steer_suites::rows::to_csv(&rows)?)?;
                println!("wrote {} rows to {}", rows.len(), path.display());
            }
            if let Some(path) = generations {
                let mut text = String::new();
                for g in &kept {
                    text.push_str(&serde_json::to_string(g)?);
                    text.push('\n');
                }
                write_atomic(&path, text.as_bytes())?;
                println!("wrote {} generations to {}", kept.len(), path.display());
            }
        }
        Command::Bench {
            method,
            suite,
            task,
            model,
            profile,
            limit,
            layers,
            multipliers,
            seed,
            results,
            suites,
            no_degradation,
            verbose,
            generations,
        } => {
            let root = suites.unwrap_or_else(steer_suites::spec::default_root);
            let catalog = steer_suites::spec::Catalog::open(&root)?;
            let methods: Vec<String> = if method.iter().any(|m| m == "all") {
                steer_methods::registry()
                    .iter()
                    .map(|m| m.info().name.to_string())
                    .collect()
            } else if method.is_empty() {
                bail!("--method needs a method name, a comma-separated list, or 'all'");
            } else {
                // Each name is looked up now, so a typo or a bad file fails before the model loads.
                for m in &method {
                    find_method(m)?;
                }
                method.clone()
            };
            let tasks: Vec<&steer_suites::spec::Task> = catalog
                .select(&suite, task.as_deref())?
                .into_iter()
                .filter(|t| {
                    !matches!(
                        t.spec.format,
                        steer_suites::spec::Format::RawText
                            | steer_suites::spec::Format::AnchorMc
                            | steer_suites::spec::Format::AnchorGen
                    )
                })
                .collect();
            if tasks.is_empty() {
                bail!("'{suite}' selects no behaviour task (damage tasks are measured with each unit)");
            }
            if !["quick", "standard", "full"].contains(&profile.as_str()) {
                bail!("unknown profile '{profile}' (quick, standard or full)");
            }
            // The quick and standard profiles run the selection's tasks tagged with their name.
            let tasks: Vec<&steer_suites::spec::Task> = if profile != "full" && task.is_none() {
                let tagged: Vec<_> = tasks.into_iter().filter(|t| t.spec.tags.contains(&profile)).collect();
                if tagged.is_empty() {
                    bail!("no task of '{suite}' is tagged {profile}; name one with --task or use --profile full");
                }
                tagged
            } else {
                tasks
            };
            let results = results.unwrap_or_else(|| match profile.as_str() {
                "standard" => PathBuf::from("results/standard"),
                _ => PathBuf::from("results"),
            });
            let loaded = load(&model, &cli.backend)?;
            let n_layers = loaded.model.config().num_hidden_layers;
            let every_third = || Some((1..n_layers / 3).map(|k| 3 * k).filter(|l| *l < n_layers).collect());
            let (limit, layers, ppl_tokens) = match profile.as_str() {
                "quick" => (limit.or(Some(24)), layers.or_else(every_third), Some(1024)),
                "standard" => (limit, layers.or_else(every_third), Some(1024)),
                _ => (limit, layers, None),
            };
            // Items per split of a standard unit, unless --limit says otherwise.
            let unit_limit = |t: &steer_suites::spec::Task| -> Option<Option<usize>> {
                (profile == "standard" && limit.is_none()).then(|| standard_limit(t.spec.format))
            };
            let (perplexity, capability) = if no_degradation {
                (None, Vec::new())
            } else {
                let mut ppl = catalog.select("perplexity", Some("wikitext2"))?[0].clone();
                if let Some(n) = ppl_tokens {
                    ppl.spec.max_tokens = Some(n);
                }
                let caps = catalog
                    .select("degradation", None)?
                    .into_iter()
                    .filter(|t| {
                        matches!(
                            t.spec.format,
                            steer_suites::spec::Format::AnchorMc | steer_suites::spec::Format::AnchorGen
                        )
                    })
                    .cloned()
                    .collect();
                (Some(ppl), caps)
            };
            let subject = subject(&loaded, &model, None)?;
            let settings = bench::BenchSettings {
                results: &results,
                model: &model,
                backend: &cli.backend,
                opts: steer_suites::protocol::EvalOptions {
                    layers,
                    multipliers,
                    limit,
                    seed,
                    perplexity,
                    capability,
                    generations,
                    ..Default::default()
                },
                verbose,
            };
            let mut units = Vec::new();
            for m in &methods {
                for t in &tasks {
                    units.push(bench::Unit {
                        method: find_method(m)?,
                        task: t,
                        limit: unit_limit(t),
                    });
                }
            }
            let started = std::time::Instant::now();
            let (done, skipped) = bench::run_units(&subject, &units, &settings)?;
            println!(
                "{done} units run, {skipped} already finished, in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            let summary = steer_leaderboard::build(&results)?;
            print_summary(&summary);
        }
        Command::Leaderboard { results, check } => {
            if check {
                if !steer_leaderboard::check(&results)? {
                    bail!(
                        "{}: the leaderboard is not what the runs give; run `cargo xtask leaderboard`",
                        results.join("leaderboard.csv").display()
                    );
                }
                println!("{}: up to date", results.join("leaderboard.csv").display());
            } else {
                let summary = steer_leaderboard::build(&results)?;
                print_summary(&summary);
            }
        }
        Command::SweepBench {
            items,
            seq,
            multipliers,
            repeat,
            seed,
            backends,
        } => sweep_bench(items, seq, &multipliers, repeat, seed, backends.as_deref())?,
        Command::Perf {
            model,
            suites,
            json,
            compare,
        } => perf::run(
            &model,
            &cli.backend,
            &suites.unwrap_or_else(steer_suites::spec::default_root),
            json.as_ref(),
            compare.as_ref(),
        )?,
        Command::Methods => {
            for m in steer_methods::registry() {
                let info = m.info();
                println!("{:<8} {}\n         {}", info.name, info.summary, info.paper);
                for h in info.hyperparameters {
                    println!("         --param {}=<{}>  {}", h.name, h.default, h.doc);
                }
            }
            println!(
                "external:<file>\n         a steering made elsewhere (llama.cpp control vector, per-layer safetensors, or a file `train` wrote), evaluated as read"
            );
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

/// A/B items per split of the standard profile. The largest spread of
/// paired headline differences in the quick units was 0.13 logit (0.17 at
/// the strongest grid point); 64 items detect a mean effect of 0.1 logit at
/// 80 % power for spreads up to 0.28 (`(2.80 · sd / 0.1)² ≤ 64`).
const STANDARD_AB_ITEMS: usize = 64;

/// Items per split of a standard-profile unit: [`STANDARD_AB_ITEMS`] for A/B
/// tasks, every item for the others, whose per-item spread (top-1 of 0 or
/// 1, sentiment log-probabilities) needs more items than the tasks hold.
fn standard_limit(format: steer_suites::spec::Format) -> Option<usize> {
    match format {
        steer_suites::spec::Format::CaaAb => Some(STANDARD_AB_ITEMS),
        _ => None,
    }
}

/// A registered method, or `external:<file>`: a steering made elsewhere (a
/// llama.cpp control vector, per-layer vectors in safetensors, or a steering
/// `train` wrote), evaluated as read.
fn find_method(name: &str) -> Result<Box<dyn steer_methods::SteeringMethod>> {
    if let Some(file) = name.strip_prefix("external:") {
        let path = Path::new(file);
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        let sha256 = steer_model::model::sha256_file(path)?;
        return Ok(Box::new(steer_methods::External::from_bytes(bytes, file, &sha256)?));
    }
    steer_methods::find(name).with_context(|| {
        let names: Vec<&str> = steer_methods::registry().iter().map(|m| m.info().name).collect();
        format!(
            "unknown method '{name}' (registered: {}; or external:<file>)",
            names.join(", ")
        )
    })
}

/// A steering file of any format steerbench reads, checked against `model`.
fn read_steering(path: &Path, model: &LoadedModel) -> Result<steer_methods::Steering> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let s = steer_methods::Steering::from_file_bytes(bytes, &path.display().to_string())?;
    let cfg = model.model.config();
    s.check_shape(cfg.hidden_size, cfg.num_hidden_layers)
        .with_context(|| format!("{}", path.display()))?;
    Ok(s)
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
    print_headline(&r.headline);
    if !r.ood.is_empty() {
        println!(
            "{:<15} {:>26} {:>36} {:>36}",
            "prompt shift", "unsteered logit diff", "effect vs unsteered [95% CI], p", "effect vs random [95% CI], p"
        );
        for o in &r.ood {
            let cell = |p: &steer_suites::stats::Paired| {
                format!(
                    "{:+.4} [{:+.4}, {:+.4}], {:.3}",
                    p.effect.mean, p.effect.low, p.effect.high, p.p
                )
            };
            println!(
                "{:<15} {:>9.4} [{:>7.4}, {:>7.4}] {:>36} {:>36}",
                o.shift,
                o.unsteered.mean,
                o.unsteered.low,
                o.unsteered.high,
                cell(&o.vs_unsteered),
                cell(&o.vs_random)
            );
        }
    }
    print_damage(r.perplexity, &r.capability);
}

/// Prints how the headline configuration was chosen and its paired effects.
fn print_headline(h: &steer_suites::protocol::Headline) {
    let layer = |l: Option<usize>| l.map_or("all".to_string(), |l| l.to_string());
    let sel = &h.selection;
    match (&sel.ratios, sel.constrained) {
        (Some(r), true) => println!(
            "headline: the best validation point within {}× the unsteered validation perplexity (ratio {:.3}); unconstrained choice: layer {}, multiplier {} (ratio {:.3})",
            steer_suites::fluency::FLUENCY_BOUND,
            r[sel.headline],
            layer(h.unconstrained.0),
            h.unconstrained.1,
            r[sel.unconstrained]
        ),
        (Some(r), false) => println!(
            "headline: no positive point stays within {}× the unsteered validation perplexity; the unconstrained choice is reported (ratio {:.3})",
            steer_suites::fluency::FLUENCY_BOUND,
            r[sel.unconstrained]
        ),
        (None, _) => println!("headline: the unconstrained choice (no perplexity task, so no fluency check)"),
    }
    if let Some(rel) = h.strength.relative {
        let raw = h.strength.raw_per_unit.map_or(String::new(), |r| {
            format!(" (the method's own vector × {r:.3} per unit)")
        });
        println!("strength: multiplier 1 = {rel:.3} of the mean residual-stream norm{raw}");
    }
    let show = |name: &str, p: &steer_suites::stats::Paired| {
        println!(
            "{name}: {:+.4} [{:+.4}, {:+.4}], sign-flip p = {:.4} ({} items)",
            p.effect.mean, p.effect.low, p.effect.high, p.p, p.effect.n
        )
    };
    show(&format!("paired effect on {} vs unsteered", h.metric), &h.vs_unsteered);
    println!(
        "minimum detectable effect (two-sided α = 0.05, 80 % power, these {} items): {:.4}",
        h.vs_unsteered.effect.n, h.vs_unsteered.min_detectable
    );
    show("paired effect vs the random steering", &h.vs_random);
    if let Some(p) = &h.unconstrained_vs_unsteered {
        show("unconstrained choice vs unsteered", p);
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
    print_headline(&r.headline);
    print_damage(r.perplexity, &r.capability);
}

/// Prints what a leaderboard build wrote and the leaderboard's main columns.
fn print_summary(summary: &steer_leaderboard::Summary) {
    println!(
        "leaderboard: {} runs, {} rows; wrote {} files, removed {}",
        summary.runs,
        summary.rows,
        summary.written.len(),
        summary.removed.len()
    );
    let Some(path) = summary.written.iter().find(|p| p.ends_with("leaderboard.csv")) else {
        return;
    };
    let Ok(mut reader) = csv::Reader::from_path(path) else {
        return;
    };
    let Ok(header) = reader.headers().cloned() else {
        return;
    };
    let columns = [
        "method",
        "suite",
        "task",
        "chosen_layer",
        "chosen_multiplier",
        "effect",
        "random_effect",
        "anti_steerable_fraction",
        "delta_perplexity",
        "delta_tinybench_accuracy",
    ];
    let index: Vec<Option<usize>> = columns.iter().map(|c| header.iter().position(|h| h == *c)).collect();
    println!(
        "{:<9} {:<34} {:>5} {:>6} {:>9} {:>9} {:>6} {:>10} {:>8}",
        "method", "task", "layer", "mult", "effect", "random", "anti", "Δppl", "Δacc"
    );
    for record in reader.records().flatten() {
        let cell = |k: usize| index[k].and_then(|i| record.get(i)).unwrap_or("");
        let num = |k: usize| cell(k).parse::<f64>().map_or("—".to_string(), |v| format!("{v:.3}"));
        println!(
            "{:<9} {:<34} {:>5} {:>6} {:>9} {:>9} {:>6} {:>10} {:>8}",
            cell(0),
            format!("{}/{}", cell(1), cell(2)),
            cell(3),
            cell(4),
            num(5),
            num(6),
            num(7),
            num(8),
            num(9)
        );
    }
}

/// Prints the damage of a chosen configuration: perplexity and capability.
fn print_damage(perplexity: Option<[f64; 3]>, capability: &[(String, [steer_suites::tinybench::Capability; 3])]) {
    if let Some([plain, steered, random]) = perplexity {
        println!(
            "perplexity (wikitext2): unsteered {plain:.3}, steered {steered:.3} (Δ {:+.3}), random {random:.3} (Δ {:+.3})",
            steered - plain,
            random - plain
        );
    }
    for (name, [plain, steered, random]) in capability {
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

/// Prints the choice, the likelihood table and the generations' scores of a sentiment evaluation.
fn print_sentiment_report(r: &steer_suites::sentiment::SentimentReport) {
    let layer = |l: Option<usize>| l.map_or("all".to_string(), |l| l.to_string());
    println!(
        "\n{} — {}: {} training, {} validation, {} test openings (fit {:.0} s, sweep {:.0} s, test {:.0} s)",
        r.task, r.method, r.sizes[0], r.sizes[1], r.sizes[2], r.seconds[0], r.seconds[1], r.seconds[2]
    );
    println!(
        "chosen on validation: layer {}, multiplier {}",
        layer(r.chosen_layer),
        r.chosen_multiplier
    );
    println!(
        "{:<10} {:>10} {:>34}",
        "variant", "multiplier", "log P(pos) − log P(neg) [95% CI]"
    );
    for (variant, m, e) in &r.test {
        println!(
            "{variant:<10} {m:>10} {:>14.4} [{:>7.4}, {:>7.4}]",
            e.mean, e.low, e.high
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
    println!(
        "{:<10} {:>10} {:>28} {:>9} {:>9} {:>12}",
        "generated", "multiplier", "VADER compound [95% CI]", "positive", "negative", "perplexity"
    );
    for g in &r.generations {
        println!(
            "{:<10} {:>10} {:>8.3} [{:>7.3}, {:>7.3}] {:>8.0}% {:>8.0}% {:>12.2}",
            g.variant,
            g.multiplier,
            g.compound.mean,
            g.compound.low,
            g.compound.high,
            100.0 * g.positive_fraction,
            100.0 * g.negative_fraction,
            g.perplexity
        );
    }
    if let Some(first) = r.openings.first() {
        for g in &r.generations {
            println!("  {:<9} {first}{}", g.variant, g.texts[0].replace('\n', " "));
        }
    }
    print_headline(&r.headline);
    print_damage(r.perplexity, &r.capability);
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

/// Times the sweep of `sweep-bench` on each backend (see its documentation).
fn sweep_bench(
    items: usize,
    seq: usize,
    multipliers: &[f32],
    repeat: usize,
    seed: u64,
    backends: Option<&[String]>,
) -> Result<()> {
    use steer_methods::{Steering, SteeringKind};
    if items == 0 || seq < 2 || multipliers.is_empty() || repeat == 0 {
        bail!("sweep-bench needs items > 0, seq > 1, at least one multiplier and repeat > 0");
    }
    let cfg = ModelConfig::smollm2_135m();
    let weights = WeightSource::random(&cfg, seed);
    let prompts = steer_model::weights::random_tokens(items, seq, cfg.vocab_size, seed ^ 1);
    // One random direction per layer, scaled like a CAA vector of the default model (norm 5).
    let steerings: Vec<Steering> = (0..cfg.num_hidden_layers)
        .map(|layer| {
            let v = steer_model::weights::random_tokens(1, cfg.hidden_size, 2001, seed ^ (layer as u64 + 7))
                .remove(0)
                .into_iter()
                .map(|t| t as f32 - 1000.0)
                .collect::<Vec<f32>>();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            Steering {
                method: "random".into(),
                kind: SteeringKind::Additive {
                    vectors: vec![(layer, v.iter().map(|x| 5.0 * x / norm).collect())],
                },
                positions: Positions::PromptEndOnward,
                params: Default::default(),
                metadata: Default::default(),
            }
        })
        .collect();
    let letters: Vec<(u32, u32)> = (0..items).map(|i| (65 + (i % 2) as u32, 66 - (i % 2) as u32)).collect();
    let chosen: Vec<Backend> = match backends {
        Some(names) => names.iter().map(|n| n.parse()).collect::<Result<_, _>>()?,
        None => Backend::available(),
    };
    let variants = steerings.len() * multipliers.len();
    println!(
        "sweep: {} layers × {} multipliers × {items} items of {seq} tokens ({} scores)",
        steerings.len(),
        multipliers.len(),
        variants * items
    );
    println!(
        "{:<8} {:>10} {:>12} {:>10}",
        "backend", "median s", "scores/s", "max|Δ| vs cpu"
    );
    let mut reference: Option<Vec<f32>> = None;
    let mut failed = false;
    for backend in chosen {
        let device = backend.device()?;
        let llama = steer_model::Llama::load(&cfg, &weights, &device)?;
        let run = || ab::letter_margins(&llama, &prompts, &letters, &steerings, multipliers, 8);
        let mut scores = run()?;
        let mut times = Vec::new();
        for _ in 0..repeat {
            let start = std::time::Instant::now();
            scores = run()?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let flat: Vec<f32> = scores.into_iter().flatten().flatten().collect();
        let diff = match &reference {
            None if backend == Backend::Cpu => {
                reference = Some(flat);
                Some(0.0)
            }
            None => None,
            Some(r) => Some(r.iter().zip(&flat).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))),
        };
        println!(
            "{:<8} {median:>10.3} {:>12.0} {:>10}",
            backend.to_string(),
            (variants * items) as f64 / median,
            diff.map_or("—".to_string(), |d| format!("{d:.2e}"))
        );
        failed |= diff.is_some_and(|d| d.is_nan() || d > 1e-2);
    }
    if failed {
        bail!("a backend's sweep differs from the CPU backend's by more than 1e-2");
    }
    Ok(())
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
