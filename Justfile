# Everyday recipes. `just` is on crates.io: `cargo install just`. Every recipe is also a
# plain script under scripts/, so nothing here needs `just`.

# Build examples/hello with the embedded services and show its history.
demo:
    ./scripts/demo.sh

# The whole test suite (installs what is missing first).
test:
    ./scripts/test.sh

# Formatting and lints.
lint:
    cargo fmt --all --check
    cargo clippy --locked --workspace --all-targets -- -D warnings

# All four services in one process over $STRATA_ROOT (CLI commands then use it).
serve:
    cargo run -p strata-cli -- serve

# Install the system packages strata needs (idempotent).
setup:
    ./scripts/setup.sh
