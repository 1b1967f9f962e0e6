//! Link options for strata's executables, called from their `build.rs`.
//!
//! One option today: packed relative relocations (`-z pack-relative-relocs`, the DT_RELR
//! format of GNU ld 2.38+ and glibc 2.36+). A position-independent executable carries one
//! relocation per pointer in its data; the `strata` binary has ~62,000 of them, 1.5 MB of
//! `.rela.dyn` that the dynamic loader reads in full at every start, so all of it counts in
//! the resident memory of every strata process for as long as it runs. Packed, they take
//! 13 KB. Measured on a cold build of `examples/large-copy`: peak RSS ~2.4 MB lower
//! (BENCHMARKS.md, builds). Executables stay position-independent (ASLR is unchanged).
//!
//! The option is used only when a probe program linked with it runs on the building machine:
//! an older linker ignores it with a warning, and an older glibc cannot load the result; in
//! either case the executables are linked as before.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// Prints the `cargo::` directives for the calling package's executables.
pub fn link_executables() {
    println!("cargo::rerun-if-changed=build.rs");
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    if packed_relocations_work(&out_dir) {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    } else {
        println!(
            "cargo::warning=linking without packed relative relocations \
             (needs GNU ld 2.38+ and glibc 2.36+): binaries work, with ~2 MB more resident memory"
        );
    }
}

/// Whether this build may pack relocations: a native Linux/glibc target whose linker
/// passes [`probe`].
fn packed_relocations_work(out_dir: &Path) -> bool {
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return false;
    }
    if var("TARGET") != var("HOST") {
        // the probe could not run here
        return false;
    }
    let linker = env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    probe(&linker, out_dir)
}

/// A C program with a relocated pointer, linked by `linker` with the option, links without a
/// word (an old GNU ld only warns about an option it does not know) and runs (an old glibc
/// refuses it).
fn probe(linker: &str, dir: &Path) -> bool {
    let source = dir.join("relr_probe.c");
    let exe = dir.join("relr_probe");
    let program =
        "static int answer = 0;\nint *pointer = &answer;\nint main(void) { return *pointer; }\n";
    if std::fs::write(&source, program).is_err() {
        return false;
    }
    let linked = Command::new(linker)
        .arg("-pie")
        .arg("-fPIE")
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .arg("-Wl,-z,pack-relative-relocs")
        .output();
    let quiet_success = matches!(&linked, Ok(o) if o.status.success() && o.stderr.is_empty());
    quiet_success && Command::new(&exe).status().is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Held by every test for its whole run. Each writes an executable script and then runs
    /// it; while one test has its script open for writing, another test's fork (to spawn a
    /// linker) copies that descriptor into the child until it execs, and running the script
    /// then fails with ETXTBSY ("Text file busy"). One test at a time, no such window.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = env::temp_dir().join(format!(
            "strata-build-support-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A fake linker: `cc` with the arguments it gets, then `extra` (shell).
    fn fake_linker(dir: &Path, extra: &str) -> String {
        let path = dir.join("linker");
        std::fs::write(&path, format!("#!/bin/sh\ncc \"$@\" || exit 1\n{extra}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn a_linker_that_links_quietly_a_program_that_runs_means_the_option() {
        let _serial = serial();
        let dir = scratch("works");
        // the option itself dropped, so the answer does not depend on this machine's tools
        let path = dir.join("linker");
        std::fs::write(
            &path,
            "#!/bin/sh\nexec cc \"$1\" \"$2\" \"$3\" \"$4\" \"$5\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(probe(&path.to_string_lossy(), &dir));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_linker_means_no_option() {
        let _serial = serial();
        let dir = scratch("missing");
        assert!(!probe("/nonexistent/cc", &dir));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_linker_that_warns_means_no_option() {
        let _serial = serial();
        let dir = scratch("warns");
        let linker = fake_linker(
            &dir,
            "echo 'ld: warning: -z pack-relative-relocs ignored' >&2",
        );
        assert!(!probe(&linker, &dir));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_program_that_cannot_run_means_no_option() {
        let _serial = serial();
        let dir = scratch("cannot-run");
        // what an old glibc does with a packed binary: refuses to load it
        let linker = fake_linker(&dir, "printf '#!/bin/sh\\nexit 127\\n' > \"$5\"");
        assert!(!probe(&linker, &dir));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
