//! `strata`: the command line. Everything lives in the library; this only runs it.

fn main() -> std::process::ExitCode {
    strata_cli::main()
}
