//! Command line (SPEC §1). clap types only.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "authgate",
    version,
    about = "Reverse-proxy authentication gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway.
    Run {
        /// Config file.
        #[arg(short, long, default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate the config and every file it names; print all problems.
    CheckConfig {
        #[arg(short, long, default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Read a password from stdin and print its argon2id PHC string.
    HashPassword,
    /// Write tls-cert.pem, tls-key.pem and jwt-signing-key.pem (never overwrites).
    GenKeys {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// A tiny upstream that echoes each request as JSON.
    Whoami {
        #[arg(long)]
        listen: String,
    },
}
