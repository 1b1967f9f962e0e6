//! `strata history NAME`: the image's build steps, newest first, as `docker history` shows them.

use clap::Args;
use strata_image::{Timestamp, view::HistoryView};
use strata_transfer::ImageStore;

use crate::GlobalArgs;

/// Flags of `strata history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The image: a tag, a digest, or an image ID (or a unique prefix of one).
    pub name: String,
    /// Print sizes and dates in human-readable form (-H=false for raw values).
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub human: bool,
    /// Do not truncate IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: `table` (default) or `json` (one object per line).
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// Prints the history.
pub async fn run(global: &GlobalArgs, args: HistoryArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.channel());
    let image = store.resolve(&args.name).await;
    conn.close().await?;
    let image = image?;
    let rows = strata_image::view::history_rows(&image.config, &image.id(), &image.layer_sizes())?;
    let view = HistoryView {
        human: args.human,
        no_trunc: args.no_trunc,
        now: Timestamp::now(),
    };
    let out = if args.quiet {
        view.quiet(&rows)
    } else {
        match args.format.as_str() {
            "" | "table" => view.table(&rows),
            "json" | "{{json .}}" => view.json_lines(&rows),
            other => anyhow::bail!("unsupported --format {other:?} (use table or json)"),
        }
    };
    print!("{out}");
    Ok(std::process::ExitCode::SUCCESS)
}
