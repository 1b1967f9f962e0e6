//! `strata health`: each service's health, as an orchestrator's probe sees it.

use clap::Args;
use strata_proto::service_names;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::GlobalArgs;

/// Flags of `strata health`.
#[derive(Debug, Args)]
pub struct HealthArgs {}

/// Prints `SERVICE STATUS` lines; exits non-zero unless all are SERVING.
pub async fn run(global: &GlobalArgs, _args: HealthArgs) -> anyhow::Result<std::process::ExitCode> {
    let conn = crate::connect::connect(global).await?;
    let mut client = HealthClient::new(conn.transport());
    let mut all_ok = true;
    println!("{:<36} STATUS", "SERVICE");
    for name in [
        service_names::PARSER,
        service_names::LAYER_STORE,
        service_names::TAG_INDEX,
        service_names::EXECUTOR,
    ] {
        let status = match client
            .check(HealthCheckRequest {
                service: name.to_string(),
            })
            .await
        {
            Ok(r) => ServingStatus::try_from(r.get_ref().status)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_else(|_| "UNKNOWN".into()),
            Err(e) => format!("UNREACHABLE ({})", e.message()),
        };
        all_ok &= status == "SERVING";
        println!("{name:<36} {status}");
    }
    let mode = if conn.is_embedded() {
        "embedded"
    } else {
        "server"
    };
    println!("({mode} at {})", conn.addr);
    conn.close().await?;
    Ok(if all_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
