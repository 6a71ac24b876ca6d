//! The `voxgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "voxgate",
    version,
    about = "IVR voice-flow engine for phone authentication"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Answer SIP calls (UDP and TCP on one address) and run the flows.
    Serve {
        /// Configuration file (YAML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, overrides the config (default 0.0.0.0:5060).
        #[arg(long)]
        listen: Option<String>,
        /// Flows directory, overrides the config.
        #[arg(long)]
        flows: Option<PathBuf>,
        /// Prompts directory, overrides the config.
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// Speech models directory, overrides the config (default models/).
        #[arg(long)]
        models: Option<PathBuf>,
        /// Write every call event as a JSON line to this file ("-" = stdout).
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Check flows and report every problem as file:line:col: message.
    Validate {
        /// Flow files or directories (default: flows/).
        paths: Vec<PathBuf>,
        /// Prompts directory used to check that prompt files exist.
        #[arg(long, default_value = "prompts")]
        prompts: PathBuf,
    },
    /// Run flow tests (*.test.yaml) offline with a scripted caller.
    Test {
        /// Test files or directories (default: flows/).
        paths: Vec<PathBuf>,
        /// Speech models for scripts that speak audio files.
        #[arg(long, default_value = "models")]
        models: PathBuf,
    },
    /// Hear recordings as a call would: telephone quality, endpointer,
    /// on-device recogniser. Prints what was heard and what it cost.
    Recognize {
        /// WAV files (any format hound reads).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Expect digits only (as `recognize` with `digits_only: true`).
        #[arg(long)]
        digits: bool,
        /// Expected phrases, comma-separated (as `recognize` with `phrases:`).
        #[arg(long, value_delimiter = ',')]
        phrases: Vec<String>,
        /// Speech models directory.
        #[arg(long, default_value = "models")]
        models: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve {
            config,
            listen,
            flows,
            prompts,
            models,
            events,
        } => {
            match voxgate::app::serve(voxgate::app::ServeArgs {
                config,
                listen,
                flows,
                prompts,
                models,
                events,
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("voxgate: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Validate { paths, prompts } => voxgate::app::validate(&paths, &prompts),
        Cmd::Test { paths, models } => voxgate::app::test(&paths, &models),
        Cmd::Recognize {
            files,
            digits,
            phrases,
            models,
        } => voxgate::app::recognize(&files, digits, &phrases, &models),
    }
}
