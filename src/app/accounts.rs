//! `voxgate accounts …` and `voxgate keys rotate`: the account store from
//! the command line. Secrets go in (stdin, an environment variable, or —
//! visible in `ps` — an argument) and never come out: `show`, `list` and
//! `export` say only whether a passphrase or TOTP secret is set.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::progress::Progress;
use crate::backends::passphrase::strength;
use crate::config::{self, Config, EnrolmentRules};
use crate::phone::{self, Country, LineType, E164};
use crate::store::{
    sealed, AccountRecord, AccountUpdate, NewAccount, SecretKey, Store, TotpAlgorithm, TotpParams,
};

/// Where the store and key are: the config file's, or overrides.
pub struct StoreArgs {
    /// Config file; `None`: `voxgate.yaml` if it exists here, else defaults.
    pub config: Option<PathBuf>,
    /// The database file, overriding the config.
    pub database: Option<PathBuf>,
    /// The key file, overriding the config.
    pub key_file: Option<PathBuf>,
}

/// How a secret reaches the command.
#[derive(Default)]
pub struct SecretInput {
    /// Given on the command line (visible in `ps`).
    pub arg: Option<String>,
    /// Read the first line of standard input.
    pub stdin: bool,
    /// Read from this environment variable.
    pub env: Option<String>,
}

impl SecretInput {
    fn given(&self) -> bool {
        self.arg.is_some() || self.stdin || self.env.is_some()
    }

    fn read(&self, what: &str) -> anyhow::Result<Option<Zeroizing<String>>> {
        let n = usize::from(self.arg.is_some())
            + usize::from(self.stdin)
            + usize::from(self.env.is_some());
        if n > 1 {
            bail!("give the {what} one way only (argument, stdin or environment)");
        }
        let v =
            if let Some(a) = &self.arg {
                Zeroizing::new(a.clone())
            } else if self.stdin {
                let mut line = Zeroizing::new(String::new());
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .with_context(|| format!("reading the {what} from stdin"))?;
                Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string())
            } else if let Some(var) = &self.env {
                Zeroizing::new(std::env::var(var).with_context(|| {
                    format!("the {what}: environment variable {var} is not set")
                })?)
            } else {
                return Ok(None);
            };
        if v.trim().is_empty() {
            bail!("the {what} is empty");
        }
        Ok(Some(v))
    }
}

/// The fields `add` and `update` take.
#[derive(Default)]
pub struct AccountFields {
    /// `--phone`.
    pub phone: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--email`.
    pub email: Option<String>,
    /// `--line-type`.
    pub line_type: Option<String>,
    /// `--brand`.
    pub brand: Option<String>,
    /// `--field key=value`, repeated.
    pub fields: Vec<String>,
    /// The passphrase, however given.
    pub passphrase: SecretInput,
    /// The TOTP secret (base32), however given.
    pub totp: SecretInput,
    /// Draw a new TOTP secret and print its otpauth:// URI and QR code.
    pub totp_generate: bool,
    /// `--totp-algorithm sha1|sha256|sha512` (default sha1 when adding).
    pub totp_algorithm: Option<String>,
    /// `--totp-digits 6|7|8` (default 6 when adding).
    pub totp_digits: Option<u32>,
}

impl AccountFields {
    /// The TOTP parameters given, over `base` (the defaults, or the
    /// account's when updating); `None` when neither option was given.
    fn totp_params(&self, base: TotpParams) -> anyhow::Result<Option<TotpParams>> {
        if self.totp_algorithm.is_none() && self.totp_digits.is_none() {
            return Ok(None);
        }
        let mut p = base;
        if let Some(a) = &self.totp_algorithm {
            p.algorithm = a
                .parse::<TotpAlgorithm>()
                .map_err(|e| anyhow::anyhow!("--totp-algorithm: {e}"))?;
        }
        if let Some(d) = self.totp_digits {
            if !TotpParams::DIGITS.contains(&d) {
                bail!("--totp-digits: {d}; authenticator codes have 6, 7 or 8 digits");
            }
            p.digits = d;
        }
        Ok(Some(p))
    }
}

/// Output formats of `list` / `show` / `export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON object per account, in a JSON array.
    Json,
    /// A header row and one row per account.
    Csv,
}

/// `voxgate accounts <what>`.
pub enum AccountsCmd {
    /// Add one account.
    Add {
        /// Wanted id (else drawn).
        id: Option<String>,
        /// Its fields and secrets.
        fields: AccountFields,
    },
    /// Change one account.
    Update {
        /// Its id or number.
        account: String,
        /// The brand to find a number in.
        brand: Option<String>,
        /// What to change (`brand` here moves it).
        fields: AccountFields,
        /// Remove its passphrase.
        clear_passphrase: bool,
        /// Remove its TOTP secret.
        clear_totp: bool,
    },
    /// Print one account.
    Show {
        /// Its id or number.
        account: String,
        /// The brand to find a number in.
        brand: Option<String>,
        /// table or json.
        format: Format,
    },
    /// Print every account (of a brand).
    List {
        /// Only this brand.
        brand: Option<String>,
        /// table, json or csv.
        format: Format,
    },
    /// Remove one account.
    Remove {
        /// Its id or number.
        account: String,
        /// The brand to find a number in.
        brand: Option<String>,
    },
    /// Add accounts from a CSV file.
    Import {
        /// The file (header row first).
        file: PathBuf,
        /// Check every row and report, keep nothing.
        dry_run: bool,
    },
    /// Every account as CSV (or JSON) on stdout, without secrets.
    Export {
        /// Only this brand.
        brand: Option<String>,
        /// csv or json.
        format: Format,
    },
}

/// Load the config for a store command.
pub(crate) fn load_config(args: &StoreArgs) -> anyhow::Result<Config> {
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("voxgate.yaml")).filter(|p| p.exists()),
    };
    let mut cfg = match &path {
        Some(p) => {
            let mut c = Config::load(p)?;
            c.resolve_relative_to(p.parent().unwrap_or(Path::new("")));
            c
        }
        None => Config::default(),
    };
    if let Some(d) = &args.database {
        cfg.database = d.clone();
    }
    if let Some(k) = &args.key_file {
        cfg.secret_key_file = k.clone();
    }
    Ok(cfg)
}

/// The key, checked against the store; created on first use only when asked.
fn key_for(store: &Store, cfg: &Config, create: bool) -> anyhow::Result<SecretKey> {
    let key = SecretKey::load(&cfg.secret_key_file, create)?;
    store.check_key(&key)?;
    Ok(key)
}

fn parse_brand(b: Option<&str>) -> anyhow::Result<String> {
    let b = b.unwrap_or("").to_string();
    config::check_brand(&b).map_err(|e| anyhow::anyhow!(e))?;
    Ok(b)
}

fn parse_fields(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for f in raw {
        let Some((k, v)) = f.split_once('=') else {
            bail!("--field `{f}`: write key=value");
        };
        m.insert(k.trim().to_string(), v.to_string());
    }
    Ok(m)
}

fn parse_totp_secret(text: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let cleaned = Zeroizing::new(cleaned.trim_end_matches('=').to_string());
    let bytes = data_encoding::BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .map_err(|_| anyhow::anyhow!("the TOTP secret is not base32 (A–Z, 2–7)"))?;
    if bytes.len() < 10 {
        bail!(
            "the TOTP secret is {} bits; RFC 4226 asks for at least 80 (128 or more recommended)",
            bytes.len() * 8
        );
    }
    Ok(Zeroizing::new(bytes))
}

/// A fresh TOTP secret (160 bits; as long as the hash for SHA-256/512, as
/// RFC 6238's seeds are); prints its otpauth:// URI (with the algorithm
/// and digits) and QR code.
fn generate_totp(
    label: &str,
    issuer: &str,
    params: TotpParams,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let (algorithm, len) = match params.algorithm {
        TotpAlgorithm::Sha1 => (totp_rs::Algorithm::SHA1, 20),
        TotpAlgorithm::Sha256 => (totp_rs::Algorithm::SHA256, 32),
        TotpAlgorithm::Sha512 => (totp_rs::Algorithm::SHA512, 64),
    };
    let mut secret = Zeroizing::new(vec![0u8; len]);
    rand::fill(&mut secret[..]);
    let mut totp = totp_rs::TOTP::new(
        algorithm,
        params.digits as usize,
        1,
        30,
        secret.to_vec(),
        Some(issuer.to_string()),
        label.to_string(),
    )
    .map_err(|e| anyhow::anyhow!("TOTP: {e}"))?;
    let uri = Zeroizing::new(totp.get_url());
    zeroize::Zeroize::zeroize(&mut totp.secret);
    let qr = qrcode::QrCode::new(uri.as_bytes()).context("drawing the QR code")?;
    let art = qr
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Scan this with the authenticator app (shown once; not stored in clear):"
    )?;
    writeln!(out, "{art}")?;
    writeln!(out, "{}", &*uri)?;
    Ok(secret)
}

fn new_account(
    id: Option<String>,
    f: &AccountFields,
    country: Country,
    rules: &EnrolmentRules,
) -> anyhow::Result<(NewAccount, bool)> {
    let Some(raw) = &f.phone else {
        bail!("--phone is required");
    };
    let phone = phone::normalise(raw, country)?;
    let brand = parse_brand(f.brand.as_deref())?;
    let line_type = f
        .line_type
        .as_deref()
        .map(str::parse::<LineType>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--line-type: {e}"))?;
    if f.totp_generate && f.totp.given() {
        bail!("--totp-generate and a given TOTP secret exclude each other");
    }
    let passphrase = f.passphrase.read("passphrase")?;
    if let Some(p) = &passphrase {
        strong_enough(p, &phone, rules)?;
    }
    let totp_secret = match f.totp.read("TOTP secret")? {
        Some(t) => Some(parse_totp_secret(&t)?),
        None => None,
    };
    let needs_key = passphrase.is_some() || totp_secret.is_some() || f.totp_generate;
    let totp_params = f.totp_params(TotpParams::default())?.unwrap_or_default();
    Ok((
        NewAccount {
            id,
            brand,
            phone: Some(phone),
            name: f.name.clone(),
            email: check_email(f.email.as_deref())?,
            line_type,
            passphrase,
            totp_secret,
            totp_params,
            fields: parse_fields(&f.fields)?,
        },
        needs_key,
    ))
}

/// The enrolment rules' verdict on a new passphrase for the account at
/// `phone` (the reason names the rule, never the passphrase).
fn strong_enough(p: &str, phone: &E164, rules: &EnrolmentRules) -> anyhow::Result<()> {
    strength::check(p, Some(phone), rules).map_err(|e| anyhow::anyhow!("passphrase refused: {e}"))
}

/// A new number for an account keeps its passphrase only when the
/// passphrase is not made of the new number's digits (enrolment's
/// [`strength::Weak::PhoneNumber`] rule): the caller ID must never be the
/// secret. The passphrase is opened in memory for the judgement only.
fn refuse_passphrase_from_number(
    store: &Store,
    cfg: &Config,
    id: &str,
    new_phone: &E164,
) -> anyhow::Result<()> {
    use crate::store::{AccountStore, SecretField};
    let key = key_for(store, cfg, false)
        .context("the account's passphrase is judged against its new number")?;
    let Some(bytes) = store.secret(id, SecretField::Passphrase, &key)? else {
        return Ok(());
    };
    let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    if strength::from_phone(&text, new_phone) {
        bail!(
            "passphrase refused: {} (with the new number); give a new one in the same \
             update (--passphrase-stdin) or --clear-passphrase",
            strength::Weak::PhoneNumber
        );
    }
    Ok(())
}

fn check_email(e: Option<&str>) -> anyhow::Result<Option<String>> {
    match e.map(str::trim) {
        None | Some("") => Ok(None),
        Some(e) => {
            let ok = e.split_once('@').is_some_and(|(u, d)| {
                !u.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
            }) && !e.contains(char::is_whitespace);
            if ok {
                Ok(Some(e.to_string()))
            } else {
                bail!("`{e}` is not an e-mail address")
            }
        }
    }
}

/// Run an `accounts` subcommand.
pub fn accounts(args: &StoreArgs, cmd: AccountsCmd) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args)?;
    let store = Store::open(&cfg.database)?;
    let country = cfg.default_country;
    let mut out = std::io::stdout().lock();
    match cmd {
        AccountsCmd::Add { id, fields } => {
            let (mut acc, needs_key) =
                new_account(id, &fields, country, &cfg.passphrase.enrolment)?;
            let key = if needs_key {
                Some(key_for(&store, &cfg, true)?)
            } else {
                None
            };
            if fields.totp_generate {
                let label = acc
                    .phone
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let issuer = if acc.brand.is_empty() {
                    "voxgate"
                } else {
                    &acc.brand
                };
                acc.totp_secret = Some(generate_totp(&label, issuer, acc.totp_params)?);
            }
            let id = store.add(&acc, key.as_ref())?;
            writeln!(out, "added {id}")?;
        }
        AccountsCmd::Update {
            account,
            brand,
            fields,
            clear_passphrase,
            clear_totp,
        } => {
            let cur = store.resolve(&account, &parse_brand(brand.as_deref())?, country)?;
            let mut u = AccountUpdate {
                phone: fields
                    .phone
                    .as_deref()
                    .map(|p| phone::normalise(p, country))
                    .transpose()?,
                brand: fields
                    .brand
                    .as_deref()
                    .map(|b| parse_brand(Some(b)))
                    .transpose()?,
                name: fields
                    .name
                    .clone()
                    .map(|n| Some(n).filter(|n| !n.is_empty())),
                email: fields
                    .email
                    .as_deref()
                    .map(|e| check_email(Some(e)))
                    .transpose()?,
                line_type: fields
                    .line_type
                    .as_deref()
                    .map(|t| {
                        if t.is_empty() {
                            Ok(None)
                        } else {
                            t.parse::<LineType>().map(Some)
                        }
                    })
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--line-type: {e}"))?,
                fields: parse_fields(&fields.fields)?,
                totp_params: fields.totp_params(cur.totp)?,
                ..Default::default()
            };
            if clear_passphrase && fields.passphrase.given() {
                bail!("--clear-passphrase and a new passphrase exclude each other");
            }
            if clear_totp && (fields.totp.given() || fields.totp_generate) {
                bail!("--clear-totp and a new TOTP secret exclude each other");
            }
            if fields.totp_generate && fields.totp.given() {
                bail!("--totp-generate and a given TOTP secret exclude each other");
            }
            if let Some(p) = fields.passphrase.read("passphrase")? {
                let phone = u.phone.as_ref().unwrap_or(&cur.phone);
                strong_enough(&p, phone, &cfg.passphrase.enrolment)?;
                u.passphrase = Some(Some(p));
            } else if clear_passphrase {
                u.passphrase = Some(None);
            } else if let Some(new_phone) = u
                .phone
                .as_ref()
                .filter(|p| cur.has_passphrase && **p != cur.phone)
            {
                refuse_passphrase_from_number(&store, &cfg, &cur.id, new_phone)?;
            }
            if let Some(t) = fields.totp.read("TOTP secret")? {
                u.totp_secret = Some(Some(parse_totp_secret(&t)?));
            } else if fields.totp_generate {
                let issuer = if cur.brand.is_empty() {
                    "voxgate".to_string()
                } else {
                    cur.brand.clone()
                };
                let params = u.totp_params.unwrap_or(cur.totp);
                u.totp_secret = Some(Some(generate_totp(cur.phone.as_str(), &issuer, params)?));
            } else if clear_totp {
                u.totp_secret = Some(None);
            }
            let needs_key =
                matches!(u.passphrase, Some(Some(_))) || matches!(u.totp_secret, Some(Some(_)));
            let key = if needs_key {
                Some(key_for(&store, &cfg, true)?)
            } else {
                None
            };
            let rec = store.update(&cur.id, &u, key.as_ref())?;
            writeln!(out, "updated {}", rec.id)?;
        }
        AccountsCmd::Show {
            account,
            brand,
            format,
        } => {
            let rec = store.resolve(&account, &parse_brand(brand.as_deref())?, country)?;
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&to_json(&rec))?)?,
                Format::Table | Format::Csv => {
                    for (k, v) in show_rows(&rec) {
                        writeln!(out, "{k:<12} {v}")?;
                    }
                }
            }
        }
        AccountsCmd::List { brand, format } => {
            let brand = brand.as_deref().map(|b| parse_brand(Some(b))).transpose()?;
            write_accounts(&store, brand.as_deref(), format, &mut out)?;
        }
        AccountsCmd::Export { brand, format } => {
            let brand = brand.as_deref().map(|b| parse_brand(Some(b))).transpose()?;
            let format = if format == Format::Table {
                Format::Csv
            } else {
                format
            };
            write_accounts(&store, brand.as_deref(), format, &mut out)?;
        }
        AccountsCmd::Remove { account, brand } => {
            let rec = store.resolve(&account, &parse_brand(brand.as_deref())?, country)?;
            store.remove(&rec.id)?;
            writeln!(out, "removed {}", rec.id)?;
        }
        AccountsCmd::Import { file, dry_run } => {
            return import(&store, &cfg, &file, dry_run, &mut out);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_rows(rec: &AccountRecord) -> Vec<(&'static str, String)> {
    let set = |b: bool| if b { "set" } else { "not set" }.to_string();
    let mut rows = vec![
        ("id", rec.id.clone()),
        ("phone", rec.phone.to_string()),
        ("brand", rec.brand.clone()),
        ("name", rec.name.clone().unwrap_or_default()),
        ("email", rec.email.clone().unwrap_or_default()),
        ("line_type", rec.effective_line_type().to_string()),
        ("passphrase", set(rec.has_passphrase)),
        ("totp", set(rec.has_totp)),
    ];
    if rec.has_totp {
        rows.push(("totp_algorithm", rec.totp.algorithm.to_string()));
        rows.push(("totp_digits", rec.totp.digits.to_string()));
    }
    for (k, v) in &rec.fields {
        rows.push(("field", format!("{k}={v}")));
    }
    rows
}

fn to_json(rec: &AccountRecord) -> serde_json::Value {
    serde_json::json!({
        "id": rec.id,
        "phone": rec.phone.as_str(),
        "brand": rec.brand,
        "name": rec.name,
        "email": rec.email,
        "line_type": rec.effective_line_type().as_str(),
        "passphrase": if rec.has_passphrase { "set" } else { "not set" },
        "totp": if rec.has_totp { "set" } else { "not set" },
        "totp_algorithm": rec.has_totp.then(|| rec.totp.algorithm.as_str()),
        "totp_digits": rec.has_totp.then_some(rec.totp.digits),
        "fields": rec.fields,
    })
}

/// The CSV columns of `export` (and `import`, which also takes
/// `passphrase` and `totp_secret`); other columns of an import are fields.
const CSV_COLUMNS: [&str; 6] = ["id", "phone", "brand", "name", "email", "line_type"];

fn write_accounts(
    store: &Store,
    brand: Option<&str>,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            writeln!(
                out,
                "{:<18} {:<16} {:<10} {:<10} {:<10} {:<9} name",
                "id", "phone", "brand", "line_type", "passphrase", "totp"
            )?;
            store.for_each(brand, |r| {
                let set = |b: bool| if b { "set" } else { "-" };
                // The TOTP column: its algorithm and digits when set.
                let totp = if r.has_totp {
                    format!("{}/{}", r.totp.algorithm, r.totp.digits)
                } else {
                    "-".to_string()
                };
                writeln!(
                    out,
                    "{:<18} {:<16} {:<10} {:<10} {:<10} {:<9} {}",
                    r.id,
                    r.phone.as_str(),
                    r.brand,
                    r.effective_line_type().as_str(),
                    set(r.has_passphrase),
                    totp,
                    r.name.as_deref().unwrap_or("")
                )
                .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))
            })?;
        }
        Format::Json => {
            writeln!(out, "[")?;
            let mut first = true;
            store.for_each(brand, |r| {
                let sep = if first { "" } else { "," };
                first = false;
                writeln!(out, "{sep}{}", to_json(&r))
                    .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))
            })?;
            writeln!(out, "]")?;
        }
        Format::Csv => {
            // Every field name across the accounts, as extra columns.
            let mut extra = std::collections::BTreeSet::new();
            store.for_each(brand, |r| {
                extra.extend(r.fields.keys().cloned());
                Ok(())
            })?;
            let mut w = csv::Writer::from_writer(out);
            let header: Vec<&str> = CSV_COLUMNS
                .iter()
                .copied()
                .chain(["passphrase", "totp", "totp_algorithm", "totp_digits"])
                .chain(extra.iter().map(String::as_str))
                .collect();
            w.write_record(&header)?;
            let mut failed = None;
            let walked = store.for_each(brand, |r| {
                let set = |b: bool| if b { "set" } else { "" };
                let mut row = vec![
                    r.id.clone(),
                    r.phone.to_string(),
                    r.brand.clone(),
                    r.name.clone().unwrap_or_default(),
                    r.email.clone().unwrap_or_default(),
                    r.line_type.map(|t| t.to_string()).unwrap_or_default(),
                    set(r.has_passphrase).to_string(),
                    set(r.has_totp).to_string(),
                    if r.has_totp {
                        r.totp.algorithm.to_string()
                    } else {
                        String::new()
                    },
                    if r.has_totp {
                        r.totp.digits.to_string()
                    } else {
                        String::new()
                    },
                ];
                row.extend(
                    extra
                        .iter()
                        .map(|k| r.fields.get(k).cloned().unwrap_or_default()),
                );
                if let Err(e) = w.write_record(&row) {
                    failed = Some(e);
                    return Err(crate::store::StoreError::Invalid("write failed".into()));
                }
                Ok(())
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            walked?;
            w.flush()?;
        }
    }
    Ok(())
}

/// What the CSV reader sends with each batch of rows.
struct BatchTag {
    /// The file line of each row.
    lines: Vec<u64>,
    /// Bytes of the file read when the batch was sent.
    bytes: u64,
    /// Rows the reader refused so far.
    bad: u64,
}

/// Rows per insert transaction of `accounts import`.
const IMPORT_BATCH: usize = 20_000;

/// `accounts import FILE.csv`: every bad row as `FILE:LINE: what is wrong`
/// on stderr, good rows kept (unless `--dry-run`), exit 1 if any was bad.
fn import(
    store: &Store,
    cfg: &Config,
    file: &Path,
    dry_run: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let name = file.display().to_string();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("{name}: cannot read"))?;
    let headers: Vec<String> = rdr
        .headers()
        .with_context(|| format!("{name}:1: cannot read the header row"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    if !headers.iter().any(|h| h == "phone") {
        bail!("{name}:1: the header row has no `phone` column");
    }
    let mut seen = std::collections::HashSet::new();
    for h in &headers {
        if !seen.insert(h) {
            bail!("{name}:1: column `{h}` appears twice");
        }
    }
    let has_secrets = headers
        .iter()
        .any(|h| h == "passphrase" || h == "totp_secret");
    let key = if has_secrets && !dry_run {
        Some(key_for(store, cfg, true)?)
    } else if has_secrets {
        // A dry run seals with a throw-away key: nothing is kept.
        Some(SecretKey::generate())
    } else {
        None
    };
    let country = cfg.default_country;
    let mut good = 0usize;
    // (line, message), printed in line order at the end: refused inserts
    // are only known when their batch is written.
    let mut problems: Vec<(u64, String)> = Vec::new();
    // Reading and checking rows (libphonenumber's validation is about half
    // the work) runs on its own thread, ahead of the inserts: batches of
    // IMPORT_BATCH rows, at most two waiting, keep memory flat on
    // million-row files.
    let size = std::fs::metadata(file).map_or(0, |m| m.len());
    let mut progress = Progress::new(&name, size, IMPORT_BATCH as u64);
    std::thread::scope(|s| -> anyhow::Result<()> {
        // Each batch carries its rows' lines, and how far into the file and
        // how many bad rows the reader was when it sent it (for progress).
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<NewAccount>, BatchTag)>(2);
        let reader = s.spawn(move || {
            let mut problems: Vec<(u64, String)> = Vec::new();
            let mut rows: Vec<NewAccount> = Vec::with_capacity(IMPORT_BATCH);
            let mut lines: Vec<u64> = Vec::with_capacity(IMPORT_BATCH);
            let mut record = csv::StringRecord::new();
            loop {
                let line = rdr.position().line() + 1;
                match rdr.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => {
                        let at = e.position().map_or(line, |p| p.line());
                        problems.push((at, csv_error(&e)));
                        continue;
                    }
                }
                let line = record.position().map_or(line, |p| p.line());
                match row_account(&headers, &record, country, &cfg.passphrase.enrolment) {
                    Ok(a) => {
                        rows.push(a);
                        lines.push(line);
                    }
                    Err(e) => problems.push((line, e)),
                }
                if rows.len() >= IMPORT_BATCH {
                    let batch = (
                        std::mem::replace(&mut rows, Vec::with_capacity(IMPORT_BATCH)),
                        BatchTag {
                            lines: std::mem::replace(&mut lines, Vec::with_capacity(IMPORT_BATCH)),
                            bytes: rdr.position().byte(),
                            bad: problems.len() as u64,
                        },
                    );
                    if tx.send(batch).is_err() {
                        // The writer stopped (its error is reported).
                        return problems;
                    }
                }
            }
            if !rows.is_empty() {
                let tag = BatchTag {
                    lines,
                    bytes: rdr.position().byte(),
                    bad: problems.len() as u64,
                };
                let _ = tx.send((rows, tag));
            }
            problems
        });
        let written = store.add_batches(rx, key.as_ref(), dry_run, |tag: BatchTag, outcomes| {
            for o in outcomes {
                match o.result {
                    Ok(_) => good += 1,
                    Err(e) => problems.push((tag.lines[o.index], e.to_string())),
                }
            }
            let bad = tag.bad + problems.len() as u64;
            progress.update(tag.bytes, good as u64, bad);
        });
        // On an error `rx` is gone: the reader stops at its next batch.
        let read = reader
            .join()
            .map_err(|_| anyhow::anyhow!("{name}: the CSV reader thread panicked"))?;
        written?;
        problems.extend(read);
        Ok(())
    })?;
    progress.finish();
    problems.sort_by_key(|(line, _)| *line);
    for (line, p) in &problems {
        eprintln!("{name}:{line}: {p}");
    }
    let bad = problems.len();
    let verb = if dry_run { "would import" } else { "imported" };
    writeln!(out, "{verb} {good} account(s); {bad} bad row(s)")?;
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} columns where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

/// One CSV row as an account; the error says what is wrong (never the secret).
fn row_account(
    headers: &[String],
    record: &csv::StringRecord,
    country: Country,
    rules: &EnrolmentRules,
) -> Result<NewAccount, String> {
    let mut a = NewAccount::default();
    for (h, v) in headers.iter().zip(record.iter()) {
        if v.is_empty() {
            continue;
        }
        match h.as_str() {
            "phone" => a.phone = Some(phone::normalise(v, country).map_err(|e| e.to_string())?),
            "id" => a.id = Some(v.to_string()),
            "brand" => {
                config::check_brand(v)?;
                a.brand = v.to_string();
            }
            "name" => a.name = Some(v.to_string()),
            "email" => a.email = check_email(Some(v)).map_err(|e| e.to_string())?,
            "line_type" => a.line_type = Some(v.parse()?),
            "passphrase" => a.passphrase = Some(Zeroizing::new(v.to_string())),
            "totp_secret" => a.totp_secret = Some(parse_totp_secret(v).map_err(|e| e.to_string())?),
            "totp_algorithm" => {
                a.totp_params.algorithm = v.parse().map_err(|e| format!("column `{h}`: {e}"))?
            }
            "totp_digits" => {
                a.totp_params.digits = v
                    .parse::<u32>()
                    .ok()
                    .filter(|d| TotpParams::DIGITS.contains(d))
                    .ok_or_else(|| format!("column `{h}`: `{v}` is not 6, 7 or 8"))?
            }
            "totp" => {
                return Err(
                    "column `totp`: use `totp_secret` (base32) to import a TOTP secret".into(),
                )
            }
            other => {
                a.fields.insert(other.to_string(), v.to_string());
            }
        }
    }
    let Some(phone) = &a.phone else {
        return Err("no phone number".into());
    };
    if let Some(p) = &a.passphrase {
        strong_enough(p, phone, rules).map_err(|e| e.to_string())?;
    }
    Ok(a)
}

/// `voxgate keys rotate`: a new key, every secret re-sealed under it in one
/// transaction, then the key file replaced. With `VOXGATE_SECRET_KEY` set,
/// the new key goes to `--new-key-file` (the operator moves it into the
/// environment) instead.
pub fn rotate_keys(args: &StoreArgs, new_key_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args)?;
    let store = Store::open(&cfg.database)?;
    let old = key_for(&store, &cfg, false)?;
    let from_env = std::env::var_os(sealed::KEY_ENV).is_some();
    let target = match (new_key_file, from_env) {
        (Some(p), _) => p.to_path_buf(),
        (None, true) => bail!(
            "the key comes from {}; give --new-key-file PATH for the new one",
            sealed::KEY_ENV
        ),
        (None, false) => cfg.secret_key_file.clone(),
    };
    let new = SecretKey::generate();
    // The new key is on disk (beside the target) before the database
    // depends on it; a crash in between leaves the old key working.
    let pending = target.with_extension("new");
    sealed::write_key_file(&pending, &new)?;
    let n = match store.rotate_key(&old, &new) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            return Err(e.into());
        }
    };
    std::fs::rename(&pending, &target)
        .with_context(|| format!("moving the new key into {}", target.display()))?;
    println!(
        "re-sealed {n} secret(s) under a new key; key file {}",
        target.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `voxgate keys public`: the JWK (RFC 8037, Ed25519) agent desktops verify
/// transfer assertions with. Public by nature: printing it leaks nothing.
pub fn public_key(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args)?;
    let store = Store::open(&cfg.database)?;
    let key = key_for(&store, &cfg, false)?;
    let jwk = crate::backends::handoff::public_jwk(&key);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "keys": [jwk] }))?
    );
    Ok(ExitCode::SUCCESS)
}

/// `voxgate keys verify TOKEN`: check a transfer assertion as an agent
/// desktop would (signature, expiry with no leeway, issuer, audience) and
/// print its claims; exit 1 when it is refused.
pub fn verify_assertion(args: &StoreArgs, token: &str) -> anyhow::Result<ExitCode> {
    let cfg = load_config(args)?;
    let store = Store::open(&cfg.database)?;
    let key = key_for(&store, &cfg, false)?;
    let (issuer, audience) = cfg
        .transfer
        .assertion
        .as_ref()
        .map_or(("voxgate".to_string(), None), |a| {
            (a.issuer.clone(), a.audience.clone())
        });
    match crate::backends::handoff::verify_assertion(
        token.trim(),
        &key,
        &issuer,
        audience.as_deref(),
    ) {
        Ok(claims) => {
            println!("{}", serde_json::to_string_pretty(&claims)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}
