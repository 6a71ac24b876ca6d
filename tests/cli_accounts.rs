//! `voxgate accounts` and `voxgate keys` as an operator meets them: a real
//! SQLite file and key file in a scratch folder, secrets in and never out.

// Integration tests: helpers may unwrap (a failure should panic with the value)
// and share `pub` helpers through `common`.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

const PASSPHRASE: &str = "purple elephant dance";
const PASSPHRASE_2: &str = "seven silver swans";
const TOTP_B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

struct Store {
    dir: PathBuf,
}

impl Store {
    fn new(name: &str) -> Store {
        Store { dir: scratch(name) }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("state/voxgate.db")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("state/secret.key")
    }

    /// Run `voxgate <args…>` against this store, with `stdin` fed and the
    /// environment given; (exit code, stdout, stderr).
    fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
        let (cmd, rest) = args.split_first().unwrap();
        let mut c = Command::new(bin());
        c.arg(cmd)
            .arg("--database")
            .arg(self.db())
            .arg("--key-file")
            .arg(self.key())
            .args(rest)
            .current_dir(&self.dir)
            .env_remove("VOXGATE_SECRET_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `accounts add --phone NUMBER --passphrase-stdin` with [`PASSPHRASE`]; its output.
    fn add_with_passphrase(&self, number: &str) -> String {
        let args = add_with_stdin_passphrase(number);
        let (code, out, err) = self.run_with(&args, &format!("{PASSPHRASE}\n"), &[]);
        assert_eq!(code, 0, "{out}{err}");
        out
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(args, "", &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    }
}

/// The arguments of `accounts add --phone NUMBER --passphrase-stdin`.
fn add_with_stdin_passphrase(number: &str) -> [&str; 5] {
    ["accounts", "add", "--phone", number, "--passphrase-stdin"]
}

fn added_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("added "))
        .unwrap_or_else(|| panic!("no `added` line in {out}"))
        .trim()
        .to_string()
}

/// Every file of the store (database, WAL, shared memory) must be free of
/// every secret in clear.
fn assert_no_secret_on_disk(dir: &Path, secrets: &[&[u8]]) {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir.join("state")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        seen += 1;
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == *s),
                "{} holds a secret in clear",
                path.display()
            );
        }
    }
    assert!(
        seen >= 1 && dir.join("state/voxgate.db").exists(),
        "no database"
    );
}

#[test]
fn add_show_list_update_remove_and_secrets_never_come_out() {
    let s = Store::new("acc-crud");
    let (code, out, err) = s.run_with(
        &[
            "accounts",
            "add",
            "--phone",
            "(650) 253-0000",
            "--name",
            "Ada Lovelace",
            "--brand",
            "acme",
            "--passphrase-stdin",
            "--totp-secret-env",
            "TOTP_FOR_TEST",
            "--field",
            "dob=19701201",
        ],
        &format!("{PASSPHRASE}\n"),
        &[("TOTP_FOR_TEST", TOTP_B32)],
    );
    assert_eq!(code, 0, "{out}{err}");
    let id = added_id(&out);
    // The key file was created on first use, private to its owner.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let show = s.ok(&["accounts", "show", &id]);
    assert!(show.contains("+16502530000"), "{show}");
    assert!(show.contains("Ada Lovelace"), "{show}");
    assert!(
        show.lines()
            .any(|l| l.starts_with("passphrase") && l.ends_with(" set")),
        "{show}"
    );
    assert!(
        show.lines()
            .any(|l| l.starts_with("totp") && l.ends_with(" set")),
        "{show}"
    );
    // By number, in its brand; not found in another.
    let by_number = s.ok(&[
        "accounts",
        "show",
        "+1 650 253 0000",
        "--brand",
        "acme",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&by_number).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["passphrase"], "set");
    assert_eq!(v["fields"]["dob"], "19701201");
    let (code, _, err) = s.run(&["accounts", "show", "+16502530000", "--brand", "globex"]);
    assert_ne!(code, 0);
    assert!(err.contains("no account"), "{err}");

    s.ok(&[
        "accounts",
        "add",
        "--phone",
        "+442079460018",
        "--name",
        "Grace",
        "--line-type",
        "landline",
    ]);
    let table = s.ok(&["accounts", "list"]);
    assert!(
        table.contains("Grace") && table.contains("Ada Lovelace"),
        "{table}"
    );
    let only_acme = s.ok(&["accounts", "list", "--brand", "acme", "--format", "csv"]);
    assert_eq!(only_acme.lines().count(), 2, "{only_acme}");
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["accounts", "list", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    // A duplicate number in the same brand is refused with the reason.
    let (code, _, err) = s.run(&[
        "accounts",
        "add",
        "--phone",
        "650-253-0000",
        "--brand",
        "acme",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists in brand `acme`"), "{err}");
    // An invalid number is refused with the reason.
    let (code, _, err) = s.run(&["accounts", "add", "--phone", "+1 555 0100"]);
    assert_ne!(code, 0);
    assert!(err.contains("not a valid number"), "{err}");

    // Update: a new passphrase by environment, a new e-mail.
    let (code, out, err) = s.run_with(
        &[
            "accounts",
            "update",
            &id,
            "--passphrase-env",
            "NEW_PP",
            "--email",
            "ada@example.org",
        ],
        "",
        &[("NEW_PP", PASSPHRASE_2)],
    );
    assert_eq!(code, 0, "{out}{err}");
    let show = s.ok(&["accounts", "show", &id]);
    assert!(show.contains("ada@example.org"), "{show}");
    s.ok(&["accounts", "update", &id, "--clear-totp"]);
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["accounts", "show", &id, "--format", "json"])).unwrap();
    assert_eq!(v["totp"], "not set");

    // Export: no secrets, only whether they are set.
    let export = s.ok(&["accounts", "export"]);
    assert!(
        export.starts_with("id,phone,brand,name,email,line_type,passphrase,totp"),
        "{export}"
    );
    for out in [&export, &show, &table] {
        assert!(
            !out.contains(PASSPHRASE) && !out.contains(PASSPHRASE_2) && !out.contains(TOTP_B32),
            "{out}"
        );
    }
    assert_no_secret_on_disk(
        &s.dir,
        &[
            PASSPHRASE.as_bytes(),
            PASSPHRASE_2.as_bytes(),
            b"Hello!\xde\xad\xbe\xef",
        ],
    );

    s.ok(&["accounts", "remove", &id]);
    let (code, _, err) = s.run(&["accounts", "remove", &id]);
    assert_ne!(code, 0);
    assert!(err.contains("no account"), "{err}");
}

#[test]
fn import_keeps_good_rows_and_reports_bad_ones_by_line() {
    let s = Store::new("acc-import");
    let csv = s.dir.join("accounts.csv");
    std::fs::write(
        &csv,
        format!(
            "phone,name,brand,passphrase,line_type,dob\n\
             +16502530001,Bob,acme,{PASSPHRASE},mobile,1980\n\
             not a number,X,,,,\n\
             +16502530002,Carol,acme,,fax,\n\
             +16502530003,Dan,acme,,,1990,surplus\n\
             +1 650 253 0001,Dup,acme,,,\n\
             +16502530004,Eve,,,,\n"
        ),
    )
    .unwrap();
    // A dry run reports the same problems and keeps nothing.
    let (code, out, err) = s.run(&["accounts", "import", csv.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("would import 2 account(s); 4 bad row(s)"),
        "{out}"
    );
    let (code, out, _) = s.run(&["accounts", "list", "--format", "csv"]);
    assert_eq!((code, out.lines().count()), (0, 1), "{out}");

    let (code, out, err) = s.run(&["accounts", "import", csv.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("imported 2 account(s); 4 bad row(s)"), "{out}");
    let name = csv.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("{name}:3: `not a number` is not a phone number"),
            format!(
                "{name}:4: `fax` is not a line type (mobile, landline, voip, toll_free, unknown)"
            ),
            format!("{name}:5: 7 columns where the header has 6"),
            format!("{name}:6: an account with number +16502530001 already exists in brand `acme`"),
        ],
        "{err}"
    );
    let list = s.ok(&["accounts", "list", "--format", "json"]);
    assert!(
        list.contains("Bob") && list.contains("Eve") && !list.contains("Carol"),
        "{list}"
    );
    assert!(!err.contains(PASSPHRASE) && !out.contains(PASSPHRASE));
    assert_no_secret_on_disk(&s.dir, &[PASSPHRASE.as_bytes()]);

    // A file without a phone column is refused whole, at its header.
    std::fs::write(&csv, "name\nx\n").unwrap();
    let (code, _, err) = s.run(&["accounts", "import", csv.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{name}:1: the header row has no `phone` column")),
        "{err}"
    );
}

#[test]
fn keys_rotate_reseals_and_a_wrong_or_missing_key_is_refused() {
    let s = Store::new("acc-keys");
    let out = s.add_with_passphrase("+16502530000");
    let id = added_id(&out);
    let old_key = std::fs::read_to_string(s.key()).unwrap();
    let out = s.ok(&["keys", "rotate"]);
    assert!(out.contains("re-sealed 1 secret(s)"), "{out}");
    let new_key = std::fs::read_to_string(s.key()).unwrap();
    assert_ne!(old_key, new_key);
    assert!(!out.contains(new_key.trim()), "the key is never printed");
    // The rotated key still seals and opens: a new secret can be added.
    let (code, out, err) = s.run_with(
        &["accounts", "update", &id, "--passphrase-stdin"],
        &format!("{PASSPHRASE_2}\n"),
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");

    // The old key (say, restored from a backup) is refused, never used.
    let (code, _, err) = s.run_with(
        &["accounts", "update", &id, "--passphrase-stdin"],
        "x y z\n",
        &[("VOXGATE_SECRET_KEY", old_key.trim())],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("not the one this database's secrets were sealed with"),
        "{err}"
    );
    // A malformed key names its source, not its value.
    let (code, _, err) = s.run_with(
        &["keys", "rotate"],
        "",
        &[("VOXGATE_SECRET_KEY", "c2hvcnQ=")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("VOXGATE_SECRET_KEY: not a secret key"),
        "{err}"
    );
    // No key at all: refused, no plaintext fallback, no new key drawn by rotate.
    std::fs::remove_file(s.key()).unwrap();
    let (code, _, err) = s.run(&["keys", "rotate"]);
    assert_eq!(code, 2);
    assert!(err.contains("no secret key"), "{err}");
    assert!(!s.key().exists());
    assert_no_secret_on_disk(&s.dir, &[PASSPHRASE.as_bytes(), PASSPHRASE_2.as_bytes()]);
}

#[test]
fn totp_generate_prints_an_otpauth_uri_and_a_qr_code_once() {
    let s = Store::new("acc-totp");
    let out = s.ok(&[
        "accounts",
        "add",
        "--phone",
        "+442079460018",
        "--brand",
        "acme",
        "--totp-generate",
    ]);
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth URI in {out}"));
    assert!(uri.contains("issuer=acme"), "{uri}");
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    assert!(secret.len() >= 32, "160-bit secret expected: {secret}");
    // The QR code is drawn with block characters.
    assert!(
        out.contains('█') || out.contains('▀') || out.contains('▄'),
        "{out}"
    );
    let show = s.ok(&["accounts", "show", "+442079460018", "--brand", "acme"]);
    assert!(!show.contains(secret), "{show}");
    assert!(
        show.lines()
            .any(|l| l.starts_with("totp") && l.ends_with(" set")),
        "{show}"
    );
}

#[test]
fn help_warns_that_arguments_are_visible_in_ps() {
    let s = Store::new("acc-help");
    let out = s.ok(&["accounts", "--help"]);
    assert!(out.contains("visible to every user in `ps`"), "{out}");
    assert!(out.contains("--passphrase-stdin"), "{out}");
    let add = s.ok(&["accounts", "add", "--help"]);
    assert!(add.contains("VISIBLE IN `ps`"), "{add}");
    assert!(add.contains("--passphrase-env"), "{add}");
}

#[test]
fn broken_database_files_are_clear_errors() {
    let s = Store::new("acc-broken");
    std::fs::create_dir_all(s.dir.join("state")).unwrap();
    std::fs::write(s.db(), vec![7u8; 4096]).unwrap();
    let (code, _, err) = s.run(&["accounts", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("corrupt or not a voxgate database"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn serve_refuses_to_start_with_the_wrong_key() {
    let s = Store::new("acc-serve-key");
    s.add_with_passphrase("+16502530000");
    let cfg = s.dir.join("voxgate.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{}\nflows_dir: {}\nprompts_dir: {}\n",
            free_port(),
            root().join("flows").display(),
            root().join("prompts").display()
        ),
    )
    .unwrap();
    let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes, not the key
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("VOXGATE_SECRET_KEY", other)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not the one this database's secrets were sealed with"),
        "{err}"
    );
}

#[test]
fn import_reads_a_header_with_a_byte_order_mark() {
    // Spreadsheets save CSV as UTF-8 with a BOM before the first column name.
    let s = Store::new("acc-bom");
    let csv = s.dir.join("bom.csv");
    std::fs::write(&csv, "\u{feff}phone,name\n+16502530001,Bob\n").unwrap();
    let (code, out, err) = s.run(&["accounts", "import", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported 1 account(s); 0 bad row(s)"), "{out}");
}

/// A CSV of `n` valid US numbers (+1 650 253 xxxx style, distinct) and
/// `bad` rows with a number no plan has, interleaved.
fn big_csv(path: &Path, n: usize, bad: usize) {
    let mut text = String::from("phone,name\n");
    for i in 0..n {
        text.push_str(&format!("+1650{:07},Caller {i}\n", 2_000_000 + i));
        if i < bad {
            text.push_str("not-a-number,Bad\n");
        }
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_long_import_reports_progress_as_plain_lines_off_a_terminal() {
    let s = Store::new("acc-progress-lines");
    let csv = s.dir.join("big.csv");
    // More than one insert batch (20,000 rows), so there is progress to tell.
    big_csv(&csv, 45_000, 3);
    let (code, out, err) = s.run(&["accounts", "import", csv.to_str().unwrap()]);
    assert_eq!(code, 1, "three bad rows: {out}{err}");
    assert!(
        out.contains("imported 45000 account(s); 3 bad row(s)"),
        "{out}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("rows done")).collect();
    // One line per 20,000 rows: no bar, no escape codes off a terminal.
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].contains("(20000 good, 3 bad)"), "{err}");
    assert!(lines[1].contains("40000 good"), "{err}");
    assert!(!err.contains('\u{1b}'), "escape codes in a pipe: {err:?}");
}

#[test]
fn a_long_import_draws_a_bar_on_a_terminal() {
    // util-linux `script` gives the command a pseudo-terminal (the test
    // command installs util-linux).
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is missing: scripts/test.sh installs it");
    }
    let s = Store::new("acc-progress-bar");
    let csv = s.dir.join("big.csv");
    big_csv(&csv, 25_000, 0);
    let cmd = format!(
        "{} accounts --database {} --key-file {} import {}",
        bin().display(),
        s.db().display(),
        s.key().display(),
        csv.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("imported 25000 account(s); 0 bad row(s)"),
        "{text}"
    );
    // The bar: a percentage and the row count, drawn with escape codes,
    // and no plain progress lines.
    assert!(
        text.contains('%') && text.contains("rows, 0 bad"),
        "{text:?}"
    );
    assert!(text.contains('\u{1b}'), "{text:?}");
    assert!(!text.contains("rows done"), "{text:?}");
}

#[test]
fn weak_passphrases_are_refused_at_enrolment_without_being_shown() {
    let s = Store::new("acc-weak");
    // add: too few digits, a run, the caller ID's own digits, one word.
    for (weak, why) in [
        (
            "4242",
            "a digit passphrase needs at least 6 digits (this one has 4)",
        ),
        ("one two three four five six", "a run of consecutive digits"),
        ("6502530000", "part of the account's phone number"),
        ("hello", "at least 2 different words"),
    ] {
        let args = add_with_stdin_passphrase("+16502530000");
        let (code, out, err) = s.run_with(&args, &format!("{weak}\n"), &[]);
        assert_ne!(code, 0, "{weak}: {out}{err}");
        assert!(
            err.contains("passphrase refused: ") && err.contains(why),
            "{weak}: {err}"
        );
        assert!(!err.contains(weak) && !out.contains(weak), "{err}{out}");
    }
    let (code, out, _) = s.run(&["accounts", "list", "--format", "csv"]);
    assert_eq!((code, out.lines().count()), (0, 1), "nothing added: {out}");

    // update: the new passphrase is judged against the account's number.
    let id = added_id(&s.add_with_passphrase("+16502530000"));
    let args = ["accounts", "update", &id, "--passphrase-stdin"];
    let (code, _, err) = s.run_with(&args, "253000\n", &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("part of the account's phone number"), "{err}");
    let (code, out, err) = s.run_with(&args, "863989\n", &[]);
    assert_eq!(code, 0, "{out}{err}");

    // A new number is judged against the kept passphrase: 863989 is in
    // +1 650 286 3989, so the account keeps its old number.
    let moved = ["accounts", "update", &id, "--phone", "+16502863989"];
    let (code, out, err) = s.run(&moved);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("part of the account's phone number") && err.contains("--clear-passphrase"),
        "{err}"
    );
    assert!(
        !err.contains("863989") && !out.contains("863989"),
        "{err}{out}"
    );
    let shown = s.ok(&["accounts", "show", &id]);
    assert!(shown.contains("+16502530000"), "{shown}");
    // The number it has already is no change: no key is needed to keep it.
    let hidden = s.dir.join("secret.key.away");
    std::fs::rename(s.key(), &hidden).unwrap();
    let (code, out, err) = s.run(&["accounts", "update", &id, "--phone", "+16502530000"]);
    std::fs::rename(&hidden, s.key()).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    // Another number keeps it, and a new number with the passphrase cleared
    // is taken (not that one: the store must not hold 863989 at the end).
    s.ok(&["accounts", "update", &id, "--phone", "+16502530099"]);
    s.ok(&[
        "accounts",
        "update",
        &id,
        "--phone",
        "+16502530098",
        "--clear-passphrase",
    ]);
    let shown = s.ok(&["accounts", "show", &id]);
    assert!(
        shown.contains("+16502530098") && shown.contains("not set"),
        "{shown}"
    );

    // import: a weak row is reported at its line; the others are kept.
    let csv = s.dir.join("weak.csv");
    std::fs::write(
        &csv,
        "phone,passphrase\n+16502530011,000000\n+16502530012,863989\n+16502530013,white horse\n",
    )
    .unwrap();
    let (code, out, err) = s.run(&["accounts", "import", csv.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("imported 2 account(s); 1 bad row(s)"), "{out}");
    assert_eq!(
        err.trim(),
        format!(
            "{}:2: passphrase refused: the passphrase has fewer than 3 different digits",
            csv.display()
        )
    );

    // A deployment that takes digit passphrases only.
    std::fs::write(
        s.dir.join("voxgate.yaml"),
        "passphrase:\n  enrolment: { words: refuse, min_digits: 8 }\n",
    )
    .unwrap();
    let args = add_with_stdin_passphrase("+16502530020");
    let (code, _, err) = s.run_with(&args, &format!("{PASSPHRASE}\n"), &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("word passphrases are refused here"), "{err}");
    let (code, _, err) = s.run_with(&args, "863989\n", &[]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("at least 8 digits (this one has 6)"), "{err}");
    let (code, out, err) = s.run_with(&args, "86398917\n", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_no_secret_on_disk(&s.dir, &[b"86398917", b"863989"]);
}
