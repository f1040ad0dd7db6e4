//! cli → telemetry → Config::load → app::build → run.

/// jemalloc: pingora allocates and frees buffers and header maps on every
/// request, and glibc's malloc cost ~20% more CPU per proxied request in
/// benches/load.py (docs/performance.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::Parser;

use authgate::cli::{Cli, Command};
use authgate::{app, config, keys, metrics};

/// SPEC §1: 2 for bad config or arguments, 1 for runtime failures.
const EXIT_BAD_CONFIG: u8 = 2;
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing();
    match cli.command {
        Command::Run { config } => run(&config),
        Command::CheckConfig { config } => check_config(&config),
        Command::HashPassword => hash_password(),
        Command::GenKeys { dir } => match keys::gen_keys(&dir) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("authgate gen-keys: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
        Command::Whoami { listen } => {
            if let Err(e) = listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| e.to_string())
                .and_then(|a| {
                    std::net::TcpListener::bind(a)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            {
                eprintln!("authgate whoami: cannot listen on {listen}: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            authgate::whoami::run(&listen)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AUTHGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let cfg = match config::Config::load(path) {
        Ok(c) => c,
        Err(p) => {
            eprintln!("{p}");
            eprintln!("{} problem(s) found.", p.0.len());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match app::Assets::check(&cfg) {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(p) => {
            eprintln!("{p}");
            eprintln!("{} problem(s) found.", p.0.len());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    pingora::tls::install_default_crypto_provider();
    metrics::init();
    let state = match app::prepare(path) {
        Ok(s) => s,
        Err(p) => {
            eprintln!("{p}");
            eprintln!("authgate: not started; fix the problems above (`authgate check-config -c {}` lists them).", path.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Err(e) = app::check_listen_addresses(&state.config) {
        eprintln!("authgate: {e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    let cfg = &state.config;
    tracing::info!(
        listen = %cfg.server.listen,
        admin = %cfg.server.admin_listen,
        routes = cfg.routes.len(),
        users = state.users().len(),
        "authgate starting."
    );
    let server = match app::build_server(state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("authgate: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    server.run_forever()
}

fn hash_password() -> ExitCode {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        match rpassword::prompt_password("Password: ") {
            Ok(p) => p,
            Err(e) => {
                eprintln!("authgate hash-password: cannot read the password: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
    } else {
        let mut line = String::new();
        if let Err(e) = stdin.lock().read_line(&mut line) {
            eprintln!("authgate hash-password: cannot read stdin: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        eprintln!("authgate hash-password: the password is empty; type it on stdin (e.g. `echo 'secret' | authgate hash-password`)");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    match authgate::auth::password::hash_password(&password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("authgate hash-password: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
