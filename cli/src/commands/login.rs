//! `strata login REGISTRY` / `strata logout REGISTRY`: credentials for push and pull.

use std::io::BufRead;

use anyhow::Context;
use clap::Args;
use strata_distribution::{ClientOptions, Credentials, Registry, auth};

use crate::GlobalArgs;

/// Flags of `strata login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry, e.g. localhost:5000 (default: docker.io).
    pub registry: Option<String>,
    /// User name.
    #[arg(short, long)]
    pub username: String,
    /// Password (prefer --password-stdin: command lines are visible to other users).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Use plain HTTP to check the credentials.
    #[arg(long)]
    pub insecure: bool,
}

/// Flags of `strata logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (default: docker.io).
    pub registry: Option<String>,
}

/// Checks the credentials against the registry and stores them.
pub async fn run(_global: &GlobalArgs, args: LoginArgs) -> anyhow::Result<std::process::ExitCode> {
    let registry = args.registry.unwrap_or_else(|| "docker.io".into());
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, _) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("failed to read the password")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    let credentials = Credentials {
        username: args.username,
        password,
    };
    let client = Registry::new(
        &registry,
        "library/strata-login-check",
        false,
        ClientOptions {
            insecure: args.insecure,
            credentials: Some(credentials.clone()),
            ..Default::default()
        },
    )?;
    client
        .ping()
        .await
        .with_context(|| format!("login to {registry} failed"))?;
    let path = auth::store(&registry, &credentials)?;
    eprintln!("credentials saved in {}", path.display());
    println!("Login Succeeded");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Forgets a registry's credentials.
pub async fn logout(
    _global: &GlobalArgs,
    args: LogoutArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let registry = args.registry.unwrap_or_else(|| "docker.io".into());
    if auth::remove(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
