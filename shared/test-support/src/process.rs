//! Service binaries as real processes.

use std::{
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use strata_server::ListenAddr;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A service binary running as a child process on a unix socket in its own temp dir.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    /// Where it listens.
    pub addr: ListenAddr,
    /// The data root it was started with (`STRATA_ROOT`).
    pub root: std::path::PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl ServiceProcess {
    /// Starts `bin --listen unix://DIR/svc.sock ARGS` with `STRATA_ROOT=DIR/root` and waits
    /// until its health check says SERVING (at most 30 s).
    pub async fn spawn(bin: &Path, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let mut me = Self::spawn_with_root(bin, args, &root).await;
        me.dir = Some(dir);
        me
    }

    /// Like [`Self::spawn`] over an existing data root (e.g. to restart after a kill); the
    /// socket lives in `root/../svc.sock`.
    pub async fn spawn_with_root(bin: &Path, args: &[&str], root: &Path) -> Self {
        let parent = root.parent().unwrap_or(root).to_path_buf();
        std::fs::create_dir_all(&parent).expect("create socket dir");
        let sock = parent.join("svc.sock");
        let addr = ListenAddr::Unix(sock.clone());
        let child = Command::new(bin)
            .arg("--listen")
            .arg(addr.to_string())
            .args(args)
            .env("STRATA_ROOT", root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut me = Self {
            child,
            addr,
            root: root.to_path_buf(),
            dir: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("{} exited before serving: {status}", bin.display());
            }
            if wait_until_serving(&me.addr, Duration::from_millis(500))
                .await
                .is_ok()
            {
                return me;
            }
            if Instant::now() > deadline {
                let _ = me.child.kill();
                panic!("{} did not become healthy within 30 s", bin.display());
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit; returns the status and how long it took. The
    /// wait runs off the async runtime so this process's clients keep answering the
    /// server's GOAWAY while it drains.
    pub async fn terminate(mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let _ = nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let pid = self.child.id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut child = std::mem::replace(&mut self.child, placeholder_child());
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .await
            .expect("waiter thread")
            .unwrap_or_else(|e| panic!("wait for {pid}: {e}"));
        (status, started.elapsed())
    }

    /// Sends SIGKILL and reaps the process; returns the temp dir holding its data root (when
    /// [`Self::spawn`] made one) so the caller can restart over the same root.
    pub fn kill(mut self) -> Option<tempfile::TempDir> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An already-reaped child to leave behind in a `ServiceProcess` whose real child was moved
/// out (its Drop then kills and waits on nothing that matters).
fn placeholder_child() -> Child {
    let mut c = Command::new("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn true");
    let _ = c.wait();
    c
}

/// Polls the standard health check until it says SERVING or `limit` passes. Polling with a
/// bound is readiness detection, not sleep-as-synchronisation: it returns the moment the
/// server answers.
pub async fn wait_until_serving(addr: &ListenAddr, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let channel = strata_server::client::lazy_channel(addr)?;
    let mut client = HealthClient::new(channel);
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
        {
            Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
            Ok(r) => last_error = format!("status {:?}", r.get_ref().status),
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("not serving after {limit:?}: {last_error}")
}
