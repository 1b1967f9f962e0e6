//! `strata parse` and `strata check`: the parser service's view of a Dockerfile.

use std::{collections::HashMap, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, ValueEnum};
use strata_proto::parser::{
    ParseDockerfileRequest, ParseDockerfileResponse, parser_client::ParserClient,
};

use crate::GlobalArgs;

/// Output formats of `strata parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParseFormat {
    /// The typed tree as JSON (strata.parser.v1.ParseDockerfileResponse).
    Json,
    /// BuildKit's AST dump, as its parser tests print it.
    BuildkitDump,
}

/// Flags of `strata parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The Dockerfile ("-" for standard input).
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ParseFormat::Json)]
    pub format: ParseFormat,
    /// Build arguments, NAME=VALUE (repeatable).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    pub target: Option<String>,
}

/// Flags of `strata check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The Dockerfile ("-" for standard input).
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: PathBuf,
    /// Build arguments, NAME=VALUE (repeatable).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    pub target: Option<String>,
}

/// Splits `NAME=VALUE` build args; a bare `NAME` takes the value from the environment, as
/// `docker build --build-arg NAME` does.
pub fn build_args(raw: &[String]) -> anyhow::Result<HashMap<String, String>> {
    raw.iter()
        .map(|a| match a.split_once('=') {
            Some(("", _)) => anyhow::bail!("invalid --build-arg {a:?}: empty name"),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Ok((a.clone(), std::env::var(a).unwrap_or_default())),
        })
        .collect()
}

fn read_dockerfile(path: &PathBuf) -> anyhow::Result<(Vec<u8>, String)> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .context("failed to read standard input")?;
        return Ok((buf, "Dockerfile".into()));
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    Ok((bytes, path.display().to_string()))
}

async fn parse(
    global: &GlobalArgs,
    file: &PathBuf,
    build_args_raw: &[String],
    target: &Option<String>,
    include_ast_dump: bool,
) -> anyhow::Result<ParseDockerfileResponse> {
    let (content, filename) = read_dockerfile(file)?;
    let conn = crate::connect::connect_stateless(global).await?;
    let mut client = ParserClient::new(conn.transport()).max_decoding_message_size(256 << 20);
    let result = client
        .parse_dockerfile(ParseDockerfileRequest {
            content,
            filename,
            build_args: build_args(build_args_raw)?,
            target: target.clone().unwrap_or_default(),
            platform: None,
            include_ast_dump,
            base_images: HashMap::new(),
        })
        .await;
    conn.close().await?;
    match result {
        Ok(r) => Ok(r.into_inner()),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            anyhow::bail!("{}", status.message())
        }
        Err(status) => Err(status).context("the parser service failed"),
    }
}

/// Prints the tree or the AST dump.
pub async fn run_parse(global: &GlobalArgs, args: ParseArgs) -> anyhow::Result<ExitCode> {
    let dump = args.format == ParseFormat::BuildkitDump;
    let response = parse(global, &args.file, &args.build_args, &args.target, dump).await?;
    if dump {
        print!("{}", response.ast_dump);
        if !response.ast_dump.ends_with('\n') {
            println!();
        }
        // the syntax parsed (BuildKit dumps it too), the instructions did not
        if !response.error.is_empty() {
            eprintln!("warning: not a valid Dockerfile: {}", response.error);
        }
    } else {
        println!("{}", serde_json::to_string_pretty(&response)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints lint warnings like `docker build --check`; exits 1 when there are any.
pub async fn run_check(global: &GlobalArgs, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let response = parse(global, &args.file, &args.build_args, &args.target, false).await?;
    let file = args.file.display().to_string();
    if response.warnings.is_empty() {
        println!("Check complete, no warnings found.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Check complete, {} warning{} found:",
        response.warnings.len(),
        if response.warnings.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    for w in &response.warnings {
        println!();
        let rule = if w.rule.is_empty() {
            "Warning"
        } else {
            &w.rule
        };
        match &w.span {
            Some(s) if s.start_line > 0 => println!("WARNING: {rule} - {file}:{}", s.start_line),
            _ => println!("WARNING: {rule} - {file}"),
        }
        if !w.url.is_empty() {
            println!("  {}", w.url);
        }
        println!("  {}", w.message);
    }
    Ok(ExitCode::FAILURE)
}
