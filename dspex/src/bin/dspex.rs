//! The `dspex` command-line tool.

use clap::{Args, Parser, Subcommand};
use dspex::runtime::adapter::{Adapter, AdapterError, ChatAdapter, JSONAdapter, XMLAdapter};
use dspex::testing::{Fault, FaultWhen, Latency, MockLm, MockLmBuilder, Rule};
use dspex::{DynSignature, Example, FieldSpec, TypeSpec};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// DSPy-style declarative language-model programming for Rust.
#[derive(Parser)]
#[command(name = "dspex", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse a signature string and print it as JSON (instructions, fields, types, prefixes).
    ///
    /// Types may be written the Rust way (`Vec<String>`) or the DSPy way (`list[str]`).
    /// A bad string exits with status 2 and names the position and the reason.
    Signature {
        /// The signature, e.g. "question: str, context: list[str] -> answer".
        signature: String,
        /// Instructions to use instead of DSPy's default.
        #[arg(long)]
        instructions: Option<String>,
    },
    /// Run the mock OpenAI-compatible LM server on 127.0.0.1 until SIGINT or SIGTERM.
    ///
    /// Serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /stats and
    /// /health. DSPy prompts get well-formed, deterministic answers for every output field. The
    /// first line on stdout is `listening on http://127.0.0.1:PORT`.
    MockLm(MockLmArgs),
    /// Print the chat messages DSPy's adapter would send, as a JSON array of {role, content}.
    ///
    /// FILE is JSON in the layout of the `format` fixtures: `adapter` ("chat", "json" or "xml",
    /// default "chat"), `signature` ({instructions, inputs, outputs}), `demos` (a list of
    /// objects, optional), `inputs` (an object) and optionally `module: "ChainOfThought"`.
    /// Values of DSPy's own types are tagged as in the `call` fixtures ({"$type": "Image",
    /// "url": ...}). Exits 1 when the values cannot be formatted, 2 when the file is missing or
    /// malformed.
    Prompt {
        /// The JSON file to read.
        file: PathBuf,
    },
    /// Parse a completion into output fields as DSPy's adapter does.
    ///
    /// FILE is JSON in the layout of the `parse` fixtures: `adapter` ("chat", "json" or "xml",
    /// default "chat"), `signature`, `completion` (a string) and optionally
    /// `module: "ChainOfThought"`. Prints {"ok": {field: value}} and exits 0, or prints
    /// {"error": "AdapterParseError"} (the reason on stderr) and exits 1; exits 2 when the file is
    /// missing or malformed.
    Parse {
        /// The JSON file to read.
        file: PathBuf,
    },
    /// Replay a DSPy `call` fixture through dspex with a scripted LM answering its `replies`.
    ///
    /// Prints one JSON object: {"requests": [{"messages", "options"}...], "extraction_requests":
    /// [...], "outputs": {field: value}} and exits 0, or the same with "error": "ClassName" (the
    /// class DSPy raises, e.g. AdapterParseError) in place of "outputs" and exits 1. Values of
    /// DSPy's own types are tagged {"$type": "Image", ...} as in the fixtures. Exits 2 when the
    /// file is missing, is not a call fixture, or needs something dspex cannot replay yet.
    Replay {
        /// The fixture to replay.
        file: PathBuf,
    },
    /// Build or search an embedded BM25 index (tantivy; scored as the `bm25s` package scores).
    #[command(subcommand)]
    Index(IndexCommand),
    /// Write the report of an optimization run: one self-contained HTML page (no script, no
    /// network) with the score per trial and the running best, the LM budget over time, GEPA's
    /// Pareto front and candidate lineage, the program before and after, and per-example
    /// changes.
    ///
    /// LOG is a job's JSONL log (`Optimizer::spawn(…, Some(path))`), a folder holding one, or
    /// a GEPA `log_dir` (its `gepa_state.json`: candidates, lineage and Pareto front). Exits 2
    /// when the log is missing, malformed or holds no trial.
    Report {
        /// The log, or the run folder.
        log: PathBuf,
        /// Where to write the page.
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
    },
}

/// `dspex index …`.
#[derive(Subcommand)]
enum IndexCommand {
    /// Build an index from a JSONL corpus, one {"id", "text", …} object per line, on every core.
    ///
    /// The index is written beside OUT and moved into place when complete. A line that is not a
    /// document stops the build (exit 1, naming the file and line) unless --skip-bad-lines is
    /// given, in which case each is reported on stderr and the build goes on. Prints a summary.
    Build {
        /// The JSONL corpus.
        corpus: PathBuf,
        /// The index directory to create.
        #[arg(long)]
        out: PathBuf,
        /// Skip lines that are not documents (each is reported) instead of stopping.
        #[arg(long)]
        skip_bad_lines: bool,
        /// Replace an existing index at OUT.
        #[arg(long)]
        force: bool,
        /// Threads for tokenizing and indexing (0: every core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// BM25's term-frequency saturation.
        #[arg(long, default_value_t = 1.5)]
        k1: f32,
        /// BM25's length normalisation (0 to 1).
        #[arg(long, default_value_t = 0.75)]
        b: f32,
    },
    /// Search an index; prints the best passages as JSON lines: {"id", "score", "text"}.
    Search {
        /// The index directory.
        dir: PathBuf,
        /// The query.
        query: String,
        /// How many passages.
        #[arg(short, long, default_value_t = 5)]
        k: usize,
    },
}

/// Options of `dspex mock-lm`.
#[derive(Args)]
struct MockLmArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// Uniform jitter around --latency-ms: each answer waits between latency-jitter and
    /// latency+jitter milliseconds (never below 0).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_jitter_ms: u64,
    /// Seed for latency jitter and fault rates (reproducible runs).
    #[arg(long)]
    seed: Option<u64>,
    /// A fault to inject: a status code (500, 503, 529, ...), 429, hang, reset, malformed, empty,
    /// truncate or stream_error[_STATUS] (an error mid-stream). Repeatable; each pairs with the --fault-rate at the same position (one rate
    /// applies to all; no rate means every request).
    #[arg(long = "fault", value_name = "KIND", value_parser = parse_fault)]
    faults: Vec<Fault>,
    /// Fraction of requests (0.0-1.0) that get the matching --fault.
    #[arg(long = "fault-rate", value_name = "RATE", value_parser = parse_rate)]
    fault_rates: Vec<f64>,
    /// How long a `hang` fault sleeps, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    hang_ms: u64,
    /// The Retry-After a `429` fault sends, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1_000)]
    retry_after_ms: u64,
    /// Dimension of embedding vectors.
    #[arg(long, value_name = "N", default_value_t = 64)]
    embedding_dim: usize,
    /// Canned answers: a JSON-lines file of {"match": "regex", "completion": "text"}.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Answer every prompt with `mock completion <hash>` instead of DSPy-formatted fields.
    #[arg(long)]
    no_dspy: bool,
    /// Runtime worker threads (0: one per core). One thread avoids cross-thread wake-ups and
    /// is the most CPU-efficient when the server shares a small machine with its clients.
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Signature {
            signature,
            instructions,
        } => signature_command(&signature, instructions.as_deref()),
        Command::Prompt { file } => prompt_command(&file),
        Command::Parse { file } => parse_command(&file),
        Command::Replay { file } => replay_command(&file),
        Command::Index(command) => index_command(command),
        Command::Report { log, output } => report_command(&log, &output),
        Command::MockLm(args) => {
            let runtime = match args.threads {
                1 => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                0 => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build(),
                n => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .enable_all()
                    .build(),
            };
            match runtime {
                Ok(runtime) => runtime.block_on(mock_lm_command(args)),
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn parse_fault(text: &str) -> Result<Fault, String> {
    text.parse::<Fault>().map_err(|e| e.to_string())
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("`{text}` is not a rate between 0.0 and 1.0")),
    }
}

/// The server configuration the options describe; `Err` is a usage error.
fn mock_lm_builder(args: &MockLmArgs) -> Result<MockLmBuilder, String> {
    let mut builder = MockLm::builder()
        .port(args.port)
        .embedding_dim(args.embedding_dim)
        .dspy_aware(!args.no_dspy);
    if let Some(seed) = args.seed {
        builder = builder.seed(seed);
    }
    let base = Duration::from_millis(args.latency_ms);
    let jitter = Duration::from_millis(args.latency_jitter_ms);
    builder = builder.latency(match (args.latency_ms, args.latency_jitter_ms) {
        (0, 0) => Latency::None,
        (_, 0) => Latency::Fixed(base),
        _ => Latency::Uniform {
            min: base.saturating_sub(jitter),
            max: base + jitter,
        },
    });
    let rates = &args.fault_rates;
    if rates.len() > 1 && rates.len() != args.faults.len() {
        return Err(format!(
            "{} --fault-rate values for {} --fault values (give one rate, or one per fault)",
            rates.len(),
            args.faults.len()
        ));
    }
    if args.faults.is_empty() && !rates.is_empty() {
        return Err("--fault-rate needs a --fault".to_owned());
    }
    for (i, fault) in args.faults.iter().enumerate() {
        let fault = match fault {
            Fault::Hang(_) => Fault::Hang(Duration::from_millis(args.hang_ms)),
            Fault::RateLimited { .. } => Fault::RateLimited {
                retry_after: Duration::from_millis(args.retry_after_ms),
            },
            other => other.clone(),
        };
        let when = match rates.get(i).or(rates.first()) {
            Some(rate) => FaultWhen::Rate(*rate),
            None => FaultWhen::Always,
        };
        builder = builder.fault(fault, when);
    }
    if let Some(path) = &args.rules {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let rules =
            Rule::parse_json_lines(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        builder = builder.rules(rules);
    }
    Ok(builder)
}

async fn mock_lm_command(args: MockLmArgs) -> ExitCode {
    let builder = match mock_lm_builder(&args) {
        Ok(builder) => builder,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let server = match builder.start().await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    // If stdout is gone there is nobody to tell the port to; keep serving regardless.
    let _ = writeln!(stdout, "listening on {}", server.url());
    let _ = stdout.flush();
    if let Err(e) = shutdown_signal().await {
        eprintln!("error: cannot wait for a shutdown signal: {e}");
    }
    let stats = server.stats();
    server.shutdown().await;
    if let Ok(json) = serde_json::to_string(&stats) {
        eprintln!("mock-lm stats: {json}");
    }
    ExitCode::SUCCESS
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

fn signature_command(text: &str, instructions: Option<&str>) -> ExitCode {
    match DynSignature::parse(text) {
        Ok(sig) => {
            let sig = match instructions {
                Some(i) => sig.with_instructions(i),
                None => sig,
            };
            match serde_json::to_string_pretty(&sig) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot print the signature as JSON: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            for e in err.parse_errors() {
                // Point at each mistake under the string.
                let width = text.chars().count().max(1);
                let start = (e.column - 1).min(width);
                let len = text
                    .get(e.span.start.min(text.len())..e.span.end.min(text.len()))
                    .map_or(1, |s| s.chars().count().max(1));
                eprintln!("  {text}");
                eprintln!("  {}{} {}", " ".repeat(start), "^".repeat(len), e.message);
            }
            ExitCode::from(2)
        }
    }
}

/// A usage error about an input file: the message names the file and what is wrong; exit 2.
fn bad_file(path: &std::path::Path, what: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {}: {what}", path.display());
    ExitCode::from(2)
}

/// Reads a JSON object from `path`.
fn read_object(path: &std::path::Path) -> Result<Map<String, Value>, ExitCode> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_file(path, format!("cannot read the file: {e}")))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(bad_file(
            path,
            format!("expected a JSON object, found {}", json_kind(&other)),
        )),
        Err(e) => Err(bad_file(path, format!("not valid JSON: {e}"))),
    }
}

/// When a file says which fixture kind it is, a pointer to the command that reads it.
fn kind_hint(doc: &Map<String, Value>) -> String {
    match doc.get("kind").and_then(Value::as_str) {
        Some("format") => "; this is a `format` file, which `dspex prompt` reads".to_string(),
        Some("parse") => "; this is a `parse` file, which `dspex parse` reads".to_string(),
        Some(kind) => format!(
            "; this is a `{kind}` file, but `dspex prompt` reads `format` files and `dspex parse` reads `parse` files"
        ),
        None => String::new(),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The adapter, signature (with `reasoning` for ChainOfThought) of a fixture-layout file.
fn adapter_and_signature(
    path: &std::path::Path,
    doc: &Map<String, Value>,
) -> Result<(&'static dyn Adapter, DynSignature), ExitCode> {
    static CHAT: ChatAdapter = ChatAdapter;
    static JSON: JSONAdapter = JSONAdapter;
    static XML: XMLAdapter = XMLAdapter;
    let adapter: &'static dyn Adapter = match doc.get("adapter") {
        None => &CHAT,
        Some(Value::String(a)) if a == "chat" => &CHAT,
        Some(Value::String(a)) if a == "json" => &JSON,
        Some(Value::String(a)) if a == "xml" => &XML,
        Some(other) => {
            return Err(bad_file(
                path,
                format!("`adapter` must be \"chat\", \"json\" or \"xml\", not {other}"),
            ));
        }
    };
    let signature = match doc.get("signature") {
        Some(v @ Value::Object(_)) => serde_json::from_value::<DynSignature>(v.clone())
            .map_err(|e| bad_file(path, format!("`signature` does not load: {e}")))?,
        Some(other) => {
            return Err(bad_file(
                path,
                format!("`signature` must be an object, found {}", json_kind(other)),
            ));
        }
        None => {
            return Err(bad_file(
                path,
                format!(
                    "missing `signature` (an object with instructions, inputs, outputs){}",
                    kind_hint(doc)
                ),
            ));
        }
    };
    let signature = match doc.get("module") {
        None => signature,
        Some(Value::String(m)) if m == "Predict" => signature,
        Some(Value::String(m)) if m == "ChainOfThought" => signature
            .prepend(FieldSpec::output("reasoning", TypeSpec::Str))
            .map_err(|e| {
                bad_file(
                    path,
                    format!("cannot add ChainOfThought's `reasoning`: {e}"),
                )
            })?,
        Some(other) => {
            return Err(bad_file(
                path,
                format!("`module` must be \"Predict\" or \"ChainOfThought\", not {other}"),
            ));
        }
    };
    Ok((adapter, signature))
}

fn prompt_command(path: &std::path::Path) -> ExitCode {
    let doc = match read_object(path) {
        Ok(doc) => doc,
        Err(code) => return code,
    };
    let (adapter, signature) = match adapter_and_signature(path, &doc) {
        Ok(x) => x,
        Err(code) => return code,
    };
    // Values of DSPy's own types come tagged, as in the `call` fixtures: {"$type": "Image", …}.
    let decode =
        |map: &Map<String, Value>| match dspex::replay::decode_value(&Value::Object(map.clone())) {
            Ok(Value::Object(decoded)) => Ok(Example::from_map(decoded)),
            Ok(_) => Ok(Example::from_map(map.clone())),
            Err(e) => Err(e),
        };
    let inputs = match doc.get("inputs") {
        Some(Value::Object(map)) => match decode(map) {
            Ok(inputs) => inputs,
            Err(e) => return bad_file(path, format!("`inputs`: {e}")),
        },
        Some(other) => {
            return bad_file(
                path,
                format!("`inputs` must be an object, found {}", json_kind(other)),
            );
        }
        None => {
            return bad_file(
                path,
                format!(
                    "missing `inputs` (an object of input field values){}",
                    kind_hint(&doc)
                ),
            );
        }
    };
    let demos = match doc.get("demos") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut demos = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Object(map) => match decode(map) {
                        Ok(demo) => demos.push(demo),
                        Err(e) => return bad_file(path, format!("`demos[{i}]`: {e}")),
                    },
                    other => {
                        return bad_file(
                            path,
                            format!("`demos[{i}]` must be an object, found {}", json_kind(other)),
                        );
                    }
                }
            }
            demos
        }
        Some(other) => {
            return bad_file(
                path,
                format!(
                    "`demos` must be a list of objects, found {}",
                    json_kind(other)
                ),
            );
        }
    };
    // A module call formats what its request sends: with native function calling (DSPy's
    // `_call_preprocess`, the LM supporting it as the fixtures' LM does) the tool fields leave
    // the prompt.
    let signature = if doc.get("kind").and_then(Value::as_str) == Some("call") {
        let options = doc.get("adapter_options");
        let flag = |name: &str| options.and_then(|o| o.get(name)).and_then(Value::as_bool);
        let native = dspex::adapter::native::NativeToolCalling {
            enabled: flag("use_native_function_calling")
                .unwrap_or(adapter.native_tool_calling().enabled),
            parallel_tool_calls: flag("parallel_tool_calls"),
        };
        match dspex::adapter::native::prepare(native, &signature, &inputs, true, &mut Map::new()) {
            Ok(prompt) => prompt.into_owned(),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    } else {
        signature
    };
    match adapter.format(&signature, &demos, &inputs) {
        Ok(messages) => {
            let list: Vec<Value> = messages
                .iter()
                .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                .collect();
            match serde_json::to_string_pretty(&list) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot print the messages as JSON: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn report_command(log: &std::path::Path, output: &std::path::Path) -> ExitCode {
    match dspex::optimize::write_report(log, output) {
        Ok(()) => {
            println!("wrote {}", output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn replay_command(path: &std::path::Path) -> ExitCode {
    let doc = match read_object(path) {
        Ok(doc) => Value::Object(doc),
        Err(code) => return code,
    };
    match dspex::replay::replay(&doc) {
        Ok(run) => {
            println!("{}", run.to_json());
            if run.outcome.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => bad_file(path, e),
    }
}

fn parse_command(path: &std::path::Path) -> ExitCode {
    let doc = match read_object(path) {
        Ok(doc) => doc,
        Err(code) => return code,
    };
    let (adapter, signature) = match adapter_and_signature(path, &doc) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let completion = match doc.get("completion") {
        Some(Value::String(text)) => text,
        Some(other) => {
            return bad_file(
                path,
                format!("`completion` must be a string, found {}", json_kind(other)),
            );
        }
        None => {
            return bad_file(
                path,
                format!("missing `completion` (the LM's text){}", kind_hint(&doc)),
            );
        }
    };
    match adapter.parse(&signature, completion) {
        Ok(fields) => {
            println!("{}", json!({ "ok": fields }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let kind = match e {
                AdapterError::Parse { .. } => "AdapterParseError",
                _ => "AdapterError",
            };
            println!("{}", json!({ "error": kind }));
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reported skipped lines, at most; the rest are counted.
const SHOWN_BAD_LINES: usize = 20;

fn index_command(command: IndexCommand) -> ExitCode {
    use dspex::retrieve::{Bm25Index, Bm25Params, BuildOptions, OnBadLine};
    match command {
        IndexCommand::Build {
            corpus,
            out,
            skip_bad_lines,
            force,
            threads,
            k1,
            b,
        } => {
            if !(k1 >= 0.0 && (0.0..=1.0).contains(&b)) {
                eprintln!("error: --k1 must be at least 0 and --b between 0 and 1");
                return ExitCode::from(2);
            }
            let options = BuildOptions {
                on_bad_line: if skip_bad_lines {
                    OnBadLine::Skip
                } else {
                    OnBadLine::Stop
                },
                threads,
                progress: true,
                overwrite: force,
                params: Bm25Params { k1, b },
                ..BuildOptions::default()
            };
            match Bm25Index::build(&corpus, &out, &options) {
                Ok(report) => {
                    for bad in report.skipped.iter().take(SHOWN_BAD_LINES) {
                        eprintln!("skipped {}:{}: {}", corpus.display(), bad.line, bad.message);
                    }
                    if report.skipped.len() > SHOWN_BAD_LINES {
                        eprintln!(
                            "... and {} more skipped lines",
                            report.skipped.len() - SHOWN_BAD_LINES
                        );
                    }
                    let secs = report.elapsed.as_secs_f64();
                    println!(
                        "indexed {} documents ({} tokens, {} lines skipped) into {} in {secs:.2} s ({:.0} documents/s)",
                        report.documents,
                        report.tokens,
                        report.skipped.len(),
                        report.path.display(),
                        report.documents as f64 / secs.max(1e-9)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        IndexCommand::Search { dir, query, k } => {
            let hits = Bm25Index::open(&dir).and_then(|index| index.search(&query, k));
            match hits {
                Ok(passages) => {
                    let mut stdout = std::io::stdout().lock();
                    for p in passages {
                        let line = json!({"id": p.id, "score": p.score, "text": p.text});
                        if writeln!(stdout, "{line}").is_err() {
                            break;
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
