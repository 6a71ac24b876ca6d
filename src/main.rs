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
        /// Expect a digit answer of exactly N digits, as a digit passphrase
        /// of N digits is heard (implies --digits): a caller who says
        /// numbers ("forty five") is decoded again reading numbers.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=64))]
        digit_count: Option<u8>,
        /// Expected phrases, comma-separated (as `recognize` with `phrases:`).
        #[arg(long, value_delimiter = ',')]
        phrases: Vec<String>,
        /// Speech models directory.
        #[arg(long, default_value = "models")]
        models: PathBuf,
    },
    /// Judge a set of passphrase recordings as verify_passphrase would
    /// (bench/passphrase.sh builds the set): true- and false-accept rates,
    /// a sweep of the confidence gate, CPU per check. No transcript is printed.
    EvaluatePassphrases {
        /// manifest.tsv: file, enrolled, accept|reject, set, condition, kind.
        manifest: PathBuf,
        /// Speech models directory.
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Beam width of the decoder (1 = greedy).
        #[arg(long, default_value_t = 1)]
        beam: usize,
        /// The confidence gate of word passphrases to report (as
        /// passphrase.min_confidence).
        #[arg(long, default_value_t = voxgate::config::MIN_CONFIDENCE_WORDS)]
        min_confidence: f32,
        /// The gate of digit passphrases (passphrase.min_confidence_digits).
        #[arg(long, default_value_t = voxgate::config::MIN_CONFIDENCE_DIGITS)]
        min_confidence_digits: f32,
        /// Do not give the enrolled word phrase to the recogniser as its hint.
        #[arg(long)]
        no_hint: bool,
        /// Encode the whole 30 s window (`passphrase.encoder_window: full`)
        /// instead of max(5 s, utterance + 1 s) spliced onto a silent
        /// window's encoding (asr::window), as `serve` does by default.
        #[arg(long)]
        full_window: bool,
        /// Only the recordings of these sets (comma-separated), e.g. a quick
        /// run on `allison_digits`.
        #[arg(long, value_delimiter = ',')]
        sets: Vec<String>,
        /// Only the recordings of these conditions (comma-separated).
        #[arg(long, value_delimiter = ',')]
        conditions: Vec<String>,
        /// Write one line per check (numbers only, never a transcript) to
        /// this TSV, for sweeping the gates offline.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// Measure the decision latency after the end of speech, with and
        /// without speculative decoding, instead of the accept rates.
        #[arg(long)]
        latency: bool,
        /// With --latency: the pause (ms) before a speculative decode.
        #[arg(long)]
        speculate_after_ms: Option<u64>,
        /// Confirm the word checks tiny.en accepts with Whisper base
        /// (models/whisper-base), with and without the hint, and report both.
        #[arg(long)]
        confirm: bool,
        /// With --latency: also run speculation decoding every pause (no
        /// gating), to compare.
        #[arg(long)]
        every_pause: bool,
        /// verify_passphrase's incomplete_timeout (ms, 200-5000 as in a
        /// flow): the end-of-speech wait while the audio cannot hold the
        /// enrolled passphrase; 0: off.
        #[arg(long, default_value_t = DEFAULT_INCOMPLETE_MS, value_parser = incomplete_ms)]
        incomplete_timeout_ms: u64,
    },
    /// Manage the accounts callers are looked up in (the SQLite store).
    ///
    /// Secrets: a passphrase or TOTP secret given as an argument
    /// (--passphrase, --totp-secret) is visible to every user in `ps` and in
    /// shell history. Prefer --passphrase-stdin, or --passphrase-env VAR /
    /// --totp-secret-env VAR. Secrets are sealed (XChaCha20-Poly1305) under
    /// the key from VOXGATE_SECRET_KEY or the key file, and never printed.
    Accounts {
        #[command(flatten)]
        store: StoreOpts,
        // Boxed: its field options dwarf the other commands.
        #[command(subcommand)]
        cmd: Box<AccountsSub>,
    },
    /// The operator console's users, and the console on its own
    /// (`console serve`; `serve` runs it beside the engine when `console:`
    /// is configured). Passwords are stored as Argon2id hashes only.
    Console {
        #[command(flatten)]
        store: StoreOpts,
        #[command(subcommand)]
        cmd: ConsoleSub,
    },
    /// One-time codes of an account (or a number): show what was sent and
    /// its state, or cancel the live ones so a new code goes out at once.
    /// Codes themselves are never shown: the store keeps only their MAC.
    Codes {
        #[command(flatten)]
        store: StoreOpts,
        #[command(subcommand)]
        cmd: CodesSub,
    },
    /// The authentication funnel from the call records: calls passed,
    /// failed, abandoned, transferred (and without authentication), in
    /// total, by method and by day. Times are stored in UTC and --from/--to
    /// are UTC days (YYYY-MM-DD), both included.
    Report {
        #[command(flatten)]
        store: StoreOpts,
        /// First UTC day, included (YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Last UTC day, included (YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
        /// Caller's country: ISO 3166 code (US, GB) or calling code (+1, +44).
        #[arg(long)]
        country: Option<String>,
        /// Only this brand's calls.
        #[arg(long)]
        brand: Option<String>,
        /// Only this flow's calls.
        #[arg(long)]
        flow: Option<String>,
        /// Only calls decided by a code sent by this channel (sms, voice, email).
        #[arg(long)]
        channel: Option<String>,
        /// text, csv or json.
        #[arg(long, value_enum, default_value = "text")]
        format: voxgate::app::report::ReportFormat,
    },
    /// The secret key that seals passphrases and TOTP secrets (and signs
    /// transfer assertions).
    Keys {
        #[command(flatten)]
        store: StoreOpts,
        #[command(subcommand)]
        cmd: KeysSub,
    },
}

#[derive(clap::Args)]
struct StoreOpts {
    /// Configuration file (default: ./voxgate.yaml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database file, overrides the config's `database:`.
    #[arg(long, global = true)]
    database: Option<PathBuf>,
    /// Key file, overrides the config's `secret_key_file:`.
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct FieldOpts {
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// E-mail address (codes by e-mail).
    #[arg(long)]
    email: Option<String>,
    /// mobile, landline, voip, toll_free or unknown (default: from the number).
    #[arg(long)]
    line_type: Option<String>,
    /// Extra field readable by flows as account.KEY (repeatable; empty value removes it on update).
    #[arg(long = "field", value_name = "KEY=VALUE")]
    fields: Vec<String>,
    /// The spoken passphrase. VISIBLE IN `ps`: prefer --passphrase-stdin or --passphrase-env.
    #[arg(long, conflicts_with_all = ["passphrase_stdin", "passphrase_env"])]
    passphrase: Option<String>,
    /// Read the passphrase from the first line of standard input.
    #[arg(long)]
    passphrase_stdin: bool,
    /// Read the passphrase from this environment variable.
    #[arg(long, value_name = "VAR")]
    passphrase_env: Option<String>,
    /// TOTP secret, base32. VISIBLE IN `ps`: prefer --totp-secret-env.
    #[arg(long, conflicts_with_all = ["totp_secret_env", "totp_generate"])]
    totp_secret: Option<String>,
    /// Read the base32 TOTP secret from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "totp_generate")]
    totp_secret_env: Option<String>,
    /// Draw a new TOTP secret; prints its otpauth:// URI and a QR code for an authenticator app.
    #[arg(long)]
    totp_generate: bool,
    /// TOTP hash: sha1 (default; every authenticator app), sha256 or sha512.
    #[arg(long, value_name = "ALG", value_parser = ["sha1", "sha256", "sha512"])]
    totp_algorithm: Option<String>,
    /// Digits per TOTP code: 6 (default), 7 or 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(6..=8))]
    totp_digits: Option<u32>,
}

impl FieldOpts {
    fn into_fields(
        self,
        phone: Option<String>,
        brand: Option<String>,
    ) -> voxgate::app::accounts::AccountFields {
        use voxgate::app::accounts::{AccountFields, SecretInput};
        AccountFields {
            phone,
            name: self.name,
            email: self.email,
            line_type: self.line_type,
            brand,
            fields: self.fields,
            passphrase: SecretInput {
                arg: self.passphrase,
                stdin: self.passphrase_stdin,
                env: self.passphrase_env,
            },
            totp: SecretInput {
                arg: self.totp_secret,
                stdin: false,
                env: self.totp_secret_env,
            },
            totp_generate: self.totp_generate,
            totp_algorithm: self.totp_algorithm,
            totp_digits: self.totp_digits,
        }
    }
}

#[derive(Subcommand)]
enum AccountsSub {
    /// Add an account.
    Add {
        /// The number on file (E.164, or national in default_country).
        #[arg(long)]
        phone: String,
        /// Account id (default: drawn, acc_…).
        #[arg(long)]
        id: Option<String>,
        /// The brand it belongs to (default: none).
        #[arg(long)]
        brand: Option<String>,
        #[command(flatten)]
        fields: FieldOpts,
    },
    /// Change an account (named by id, or by number within --brand).
    Update {
        /// Account id or number.
        account: String,
        /// Brand to find the number in.
        #[arg(long)]
        brand: Option<String>,
        /// New number.
        #[arg(long)]
        phone: Option<String>,
        /// Move the account to this brand.
        #[arg(long)]
        new_brand: Option<String>,
        /// Remove the passphrase.
        #[arg(long)]
        clear_passphrase: bool,
        /// Remove the TOTP secret.
        #[arg(long)]
        clear_totp: bool,
        #[command(flatten)]
        fields: FieldOpts,
    },
    /// Show an account (secrets only as set / not set).
    Show {
        /// Account id or number.
        account: String,
        /// Brand to find the number in.
        #[arg(long)]
        brand: Option<String>,
        /// table or json.
        #[arg(long, value_enum, default_value = "table")]
        format: voxgate::app::accounts::Format,
    },
    /// List accounts.
    List {
        /// Only this brand.
        #[arg(long)]
        brand: Option<String>,
        /// table, json or csv.
        #[arg(long, value_enum, default_value = "table")]
        format: voxgate::app::accounts::Format,
    },
    /// Remove an account.
    Remove {
        /// Account id or number.
        account: String,
        /// Brand to find the number in.
        #[arg(long)]
        brand: Option<String>,
    },
    /// Import accounts from CSV (header row: phone required; id, brand, name, email,
    /// line_type, passphrase, totp_secret; any other column is a field).
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Check every row, keep nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export accounts (never secrets) to stdout.
    Export {
        /// Only this brand.
        #[arg(long)]
        brand: Option<String>,
        /// csv or json.
        #[arg(long, value_enum, default_value = "csv")]
        format: voxgate::app::accounts::Format,
    },
}

#[derive(Subcommand)]
enum ConsoleSub {
    /// Add an operator; the password is asked on the terminal (twice, not
    /// shown) or read from the first line of stdin.
    AddUser {
        /// Login name (letters, digits, . _ - @).
        name: String,
    },
    /// Remove an operator and end their sessions.
    RemoveUser {
        /// Login name.
        name: String,
    },
    /// List the operators.
    ListUsers,
    /// Serve the console alone over the database (no calls in progress).
    Serve {
        /// Where to listen (default: console.listen, else 127.0.0.1:8090).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum CodesSub {
    /// The codes kept for an account or number, newest first.
    Show(WhoseOpts),
    /// Cancel the live codes of an account or number.
    Cancel(WhoseOpts),
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct WhoseOpts {
    /// The account id.
    #[arg(long)]
    account: Option<String>,
    /// The number a code went to when no account was known.
    #[arg(long)]
    number: Option<String>,
}

impl WhoseOpts {
    fn whose(self) -> voxgate::app::codes::Whose {
        use voxgate::app::codes::Whose;
        match (self.account, self.number) {
            (Some(a), _) => Whose::Account(a),
            (None, Some(n)) => Whose::Number(n),
            // clap's group requires one of them.
            (None, None) => Whose::Account(String::new()),
        }
    }
}

#[derive(Subcommand)]
enum KeysSub {
    /// Draw a new key and re-seal every secret under it (one transaction).
    Rotate {
        /// Where to write the new key (required when the key comes from VOXGATE_SECRET_KEY).
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
    /// Print the public key (JWK set) that verifies transfer assertions.
    Public,
    /// Check a transfer assertion (JWT) and print its claims; exit 1 if refused.
    Verify {
        /// The token, as the agent received it in X-Voxgate-Assertion.
        token: String,
    },
}

fn store_args(o: StoreOpts) -> voxgate::app::accounts::StoreArgs {
    voxgate::app::accounts::StoreArgs {
        config: o.config,
        database: o.database,
        key_file: o.key_file,
    }
}

fn report(r: anyhow::Result<ExitCode>) -> ExitCode {
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("voxgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    voxgate::app::keep_large_allocations();
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
            digit_count,
            phrases,
            models,
        } => voxgate::app::recognize(
            &files,
            digits || digit_count.is_some(),
            digit_count.map(usize::from),
            &phrases,
            &models,
        ),
        Cmd::Accounts { store, cmd } => {
            use voxgate::app::accounts::{accounts, AccountsCmd};
            let cmd = match *cmd {
                AccountsSub::Add {
                    phone,
                    id,
                    brand,
                    fields,
                } => AccountsCmd::Add {
                    id,
                    fields: fields.into_fields(Some(phone), brand),
                },
                AccountsSub::Update {
                    account,
                    brand,
                    phone,
                    new_brand,
                    clear_passphrase,
                    clear_totp,
                    fields,
                } => AccountsCmd::Update {
                    account,
                    brand,
                    fields: fields.into_fields(phone, new_brand),
                    clear_passphrase,
                    clear_totp,
                },
                AccountsSub::Show {
                    account,
                    brand,
                    format,
                } => AccountsCmd::Show {
                    account,
                    brand,
                    format,
                },
                AccountsSub::List { brand, format } => AccountsCmd::List { brand, format },
                AccountsSub::Remove { account, brand } => AccountsCmd::Remove { account, brand },
                AccountsSub::Import { file, dry_run } => AccountsCmd::Import { file, dry_run },
                AccountsSub::Export { brand, format } => AccountsCmd::Export { brand, format },
            };
            report(accounts(&store_args(store), cmd))
        }
        Cmd::EvaluatePassphrases {
            manifest,
            models,
            beam,
            min_confidence,
            min_confidence_digits,
            no_hint,
            full_window,
            sets,
            conditions,
            dump,
            latency,
            speculate_after_ms,
            confirm,
            every_pause,
            incomplete_timeout_ms,
        } => report(voxgate::app::evaluate::evaluate(
            &manifest,
            &voxgate::app::evaluate::EvalOptions {
                models,
                beam,
                min_confidence,
                min_confidence_digits,
                hint: !no_hint,
                short_window: !full_window,
                sets,
                conditions,
                dump,
                latency,
                speculate_after: speculate_after_ms.map(std::time::Duration::from_millis),
                confirm,
                every_pause,
                incomplete_timeout: (incomplete_timeout_ms > 0)
                    .then(|| std::time::Duration::from_millis(incomplete_timeout_ms)),
            },
        )),
        Cmd::Console { store, cmd } => {
            use voxgate::app::console::{console_cmd, ConsoleCmd};
            let cmd = match cmd {
                ConsoleSub::AddUser { name } => ConsoleCmd::AddUser { name },
                ConsoleSub::RemoveUser { name } => ConsoleCmd::RemoveUser { name },
                ConsoleSub::ListUsers => ConsoleCmd::ListUsers,
                ConsoleSub::Serve { listen } => ConsoleCmd::Serve { listen },
            };
            report(console_cmd(&store_args(store), cmd))
        }
        Cmd::Codes { store, cmd } => match cmd {
            CodesSub::Show(w) => report(voxgate::app::codes::show(&store_args(store), &w.whose())),
            CodesSub::Cancel(w) => {
                report(voxgate::app::codes::cancel(&store_args(store), &w.whose()))
            }
        },
        Cmd::Report {
            store,
            from,
            to,
            country,
            brand,
            flow,
            channel,
            format,
        } => report(voxgate::app::report::report(
            &store_args(store),
            &voxgate::app::report::ReportArgs {
                from,
                to,
                country,
                brand,
                flow,
                channel,
                format,
            },
        )),
        Cmd::Keys { store, cmd } => match cmd {
            KeysSub::Rotate { new_key_file } => report(voxgate::app::accounts::rotate_keys(
                &store_args(store),
                new_key_file.as_deref(),
            )),
            KeysSub::Public => report(voxgate::app::accounts::public_key(&store_args(store))),
            KeysSub::Verify { token } => report(voxgate::app::accounts::verify_assertion(
                &store_args(store),
                &token,
            )),
        },
    }
}

/// `--incomplete-timeout-ms` when not given: a flow's default.
const DEFAULT_INCOMPLETE_MS: u64 = voxgate::asr::IncompleteWait::DEFAULT_TIMEOUT.as_millis() as u64;

/// `--incomplete-timeout-ms`: 0 (off) or a flow's range, 200-5000.
fn incomplete_ms(s: &str) -> Result<u64, String> {
    let ms: u64 = s.parse().map_err(|e| format!("{e}"))?;
    if ms == 0 || (200..=5000).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("{ms} ms: 0 (off) or 200-5000"))
    }
}
