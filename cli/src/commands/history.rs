//! `strata history NAME`: the image's build steps, newest first, as `docker history` shows them.

use clap::Args;
use strata_image::{
    Timestamp,
    template::{Data, render_rows},
    view::HistoryView,
};
use strata_transfer::ImageStore;

use super::images::ListFormat;
use crate::GlobalArgs;

/// Column titles of `docker history` by template field.
fn headers() -> Data {
    Data::Map(
        [
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Data::string(v)))
        .collect(),
    )
}

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
    /// Output format: `table` (default), `json` (one object per line), or a Go template
    /// such as `{{.CreatedBy}}` (`table {{…}}` adds a header and aligns the columns).
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// Prints the history.
pub async fn run(global: &GlobalArgs, args: HistoryArgs) -> anyhow::Result<std::process::ExitCode> {
    let format = ListFormat::parse(&args.format)?;
    let conn = crate::connect::connect(global).await?;
    let store = ImageStore::new(conn.transport());
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
        match format {
            ListFormat::Table => view.table(&rows),
            ListFormat::Json => view.json_lines(&rows),
            ListFormat::Template { template, table } => {
                let rows = view
                    .json_lines(&rows)
                    .lines()
                    .map(Data::from_json)
                    .collect::<Result<Vec<_>, _>>()?;
                render_rows(
                    &template,
                    table,
                    &headers(),
                    &rows,
                    "*formatter.historyContext",
                )?
            }
        }
    };
    print!("{out}");
    Ok(std::process::ExitCode::SUCCESS)
}
