//! `voxgate console`: the console's operators (`add-user`, `remove-user`,
//! `list-users`) and `console serve`, the console on its own over the
//! database (without calls in progress; `serve` runs it beside the engine
//! when `console:` is configured).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::accounts::{load_config, StoreArgs};
use crate::flow::model::Flow;
use crate::store::{now_ms, Store};
use crate::web::console::{self, auth, ConsoleState, FlowGraph, GraphStep};

/// Shortest password accepted.
const MIN_PASSWORD: usize = 10;

/// What `voxgate console` does.
#[derive(Clone, Debug)]
pub enum ConsoleCmd {
    /// Add an operator; the password comes from the terminal (asked twice,
    /// not echoed) or from the first line of stdin.
    AddUser {
        /// Login name.
        name: String,
    },
    /// Remove an operator and end their sessions.
    RemoveUser {
        /// Login name.
        name: String,
    },
    /// List operators.
    ListUsers,
    /// Serve the console alone.
    Serve {
        /// Override `console.listen`.
        listen: Option<std::net::SocketAddr>,
    },
}

/// Run `cmd` on the database of `store`.
pub fn console_cmd(store: &StoreArgs, cmd: ConsoleCmd) -> anyhow::Result<ExitCode> {
    let cfg = load_config(store)?;
    let db = Store::open(&cfg.database)?;
    match cmd {
        ConsoleCmd::AddUser { name } => {
            if !crate::store::operators::valid_operator_name(&name) {
                bail!("operator name `{name}`: use 1-64 letters, digits, '.', '_', '-' or '@'");
            }
            if db.operator_hash(&name)?.is_some() {
                bail!(
                    "operator `{name}` already exists (remove-user first to change the password)"
                );
            }
            let password = read_password(&name)?;
            let hash =
                auth::hash_password(&password).map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
            db.add_operator(&name, &hash, now_ms())?;
            println!("operator {name} added");
        }
        ConsoleCmd::RemoveUser { name } => {
            if !db.remove_operator(&name)? {
                bail!("no operator `{name}`");
            }
            println!("operator {name} removed (their sessions ended)");
        }
        ConsoleCmd::ListUsers => {
            let ops = db.operators(now_ms())?;
            if ops.is_empty() {
                println!("no operators (add one with `voxgate console add-user NAME`)");
            }
            for o in ops {
                println!(
                    "{}\tadded {}\t{} live session(s)",
                    o.name,
                    crate::store::report::utc_day(o.created_at.div_euclid(86_400_000)),
                    o.sessions
                );
            }
        }
        ConsoleCmd::Serve { listen } => {
            let mut ccfg = cfg.console.clone().unwrap_or_default();
            if let Some(l) = listen {
                ccfg.listen = l;
            }
            let (flows, diags) = crate::flow::load::load_dir(&cfg.flows_dir);
            if !diags.is_empty() {
                eprintln!(
                    "{} problem(s) in the flows under {}; drawing the flows that loaded",
                    diags.len(),
                    cfg.flows_dir.display()
                );
            }
            let graphs: Vec<FlowGraph> = flows.iter().map(flow_graph).collect();
            let state = ConsoleState::new(
                Arc::new(db),
                ccfg.clone(),
                None,
                Arc::new(move || graphs.clone()),
            );
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(ccfg.listen)
                    .await
                    .with_context(|| {
                        format!("binding the console (console.listen) on {}", ccfg.listen)
                    })?;
                let addr = listener.local_addr()?;
                // Tests and scripts read the bound port from this line.
                println!("console listening on http://{addr}/");
                std::io::stdout().flush().ok();
                console::serve(listener, state)
                    .await
                    .context("console stopped")
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The password for `name`: typed twice on a terminal (echo off), or the
/// first line of stdin otherwise.
fn read_password(name: &str) -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let pw = if stdin.is_terminal() {
        let first = prompt(&format!("password for {name}: "))?;
        let again = prompt("again: ")?;
        if *first != *again {
            bail!("the passwords differ; nothing changed");
        }
        first
    } else {
        let mut line = Zeroizing::new(String::new());
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string())
    };
    if pw.chars().count() < MIN_PASSWORD {
        bail!("the password must have at least {MIN_PASSWORD} characters");
    }
    Ok(pw)
}

/// Ask on stderr and read a line from the terminal without echo.
fn prompt(text: &str) -> anyhow::Result<Zeroizing<String>> {
    eprint!("{text}");
    std::io::stderr().flush().ok();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is stdin, `old` a valid termios to fill.
    let have = unsafe { libc::tcgetattr(fd, &mut old) } == 0;
    if have {
        let mut quiet = old;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above, with a termios copied from the terminal's own.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = Zeroizing::new(String::new());
    let read = std::io::stdin().lock().read_line(&mut line);
    if have {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    }
    read.context("reading the password")?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

/// A flow as the console draws it.
pub fn flow_graph(f: &Flow) -> FlowGraph {
    FlowGraph {
        name: f.name.clone(),
        description: f.description.clone(),
        start: f.start.value.clone(),
        steps: f
            .steps
            .iter()
            .map(|s| GraphStep {
                id: s.id.value.clone(),
                kind: s.kind.name().to_string(),
                exits: s
                    .exits
                    .iter()
                    .map(|(e, to)| (e.as_str().to_string(), to.value.clone()))
                    .collect(),
            })
            .collect(),
    }
}
