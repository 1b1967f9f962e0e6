//! `strata login REGISTRY` / `strata logout REGISTRY`: credentials for push and pull.

use std::io::BufRead;

use anyhow::Context;
use clap::Args;
use strata_distribution::{ClientOptions, Credentials, Registry, auth};

use crate::GlobalArgs;

/// Flags of `strata login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry, e.g. localhost:5000 (default: docker.io); a URL names its host
    /// (`http://` also means plain HTTP).
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

/// The registry a `login`/`logout` argument names, as Docker reads it: a URL's scheme and
/// path are dropped (`https://host:5000/v2/` is `host:5000`). Returns (host, whether the
/// argument said `http://`).
fn registry_host(arg: &str) -> (String, bool) {
    let lower = arg.to_ascii_lowercase();
    let (rest, http) = if lower.starts_with("http://") {
        (&arg[7..], true)
    } else if lower.starts_with("https://") {
        (&arg[8..], false)
    } else {
        (arg, false)
    };
    let host = rest.split('/').next().unwrap_or(rest);
    (host.to_string(), http)
}

/// Reads a password typed at the terminal, without echoing it.
fn prompt_password() -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::io::Write;
    let stdin = std::io::stdin();
    eprint!("Password: ");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).context("failed to read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("failed to turn echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    read.context("failed to read the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Checks the credentials against the registry and stores them.
pub async fn run(_global: &GlobalArgs, args: LoginArgs) -> anyhow::Result<std::process::ExitCode> {
    let (registry, http) = registry_host(args.registry.as_deref().unwrap_or("docker.io"));
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("failed to read the password")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                anyhow::bail!(
                    "cannot ask for a password: standard input is not a terminal (use --password-stdin)"
                );
            }
            prompt_password()?
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
            insecure: args.insecure || http,
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
    let (registry, _) = registry_host(args.registry.as_deref().unwrap_or("docker.io"));
    if auth::remove(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::registry_host;

    #[test]
    fn a_registry_url_names_its_host_as_docker_reads_it() {
        for (arg, host, http) in [
            ("localhost:5000", "localhost:5000", false),
            ("localhost:5000/", "localhost:5000", false),
            ("http://localhost:5000/", "localhost:5000", true),
            ("HTTPS://reg.example/v2/", "reg.example", false),
            ("docker.io", "docker.io", false),
        ] {
            assert_eq!(registry_host(arg), (host.to_string(), http), "{arg}");
        }
    }
}
