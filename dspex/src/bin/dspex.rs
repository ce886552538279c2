//! The `dspex` command-line tool.

use clap::{Parser, Subcommand};
use dspex::DynSignature;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Signature {
            signature,
            instructions,
        } => signature_command(&signature, instructions.as_deref()),
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
