//! `berth routes`: fetch `/v1/routes` from a running controller and print it readably (or, with `-o json|yaml`,
//! as it is).

use std::time::Duration;

use crate::api::Routes;
use crate::cli::{RoutesArgs, RoutesOutput, controller_url};
use crate::{Error, Result, report};

pub fn routes(args: RoutesArgs) -> Result<()> {
    let url = format!("{}/v1/routes", controller_url(&args.controller));
    let view = fetch(&url)?;
    match args.output {
        RoutesOutput::Text => {}
        RoutesOutput::Json => {
            println!("{}", serde_json::to_string_pretty(&view).unwrap_or_default());
            return Ok(());
        }
        RoutesOutput::Yaml => {
            // Through JSON's data model: serde_yaml would write enums (a route's path) as YAML tags, which the
            // JSON output does not have and other tools read differently.
            let value = serde_json::to_value(&view).unwrap_or_default();
            print!("{}", serde_yaml::to_string(&value).unwrap_or_default());
            return Ok(());
        }
    }
    let errors: Vec<String> = view.errors.into_iter().map(|e| e.text).collect();
    let warnings: Vec<String> = view.warnings.into_iter().map(|e| e.text).collect();
    for source in view.sources.iter().filter(|s| s.stale) {
        let since = source.since.as_deref().unwrap_or("a while");
        let error = source.error.as_deref().unwrap_or("unknown error");
        println!("source {}: stale since {since}: {error}; serving the last objects it delivered", source.name);
    }
    let version = Some(view.table.version);
    print!("{}", report::render(&view.table, version, &view.addresses, &errors, &warnings, &view.health));
    Ok(())
}

fn fetch(url: &str) -> Result<Routes> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response =
        agent.get(url).call().map_err(|error| Error::Fetch { url: url.to_string(), error: Box::new(error) })?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_string()
        .map_err(|error| Error::Fetch { url: url.to_string(), error: Box::new(error) })?;
    if !status.is_success() {
        let reason = format!("HTTP {status}: {}", body.trim());
        return Err(Error::BadResponse { url: url.to_string(), reason });
    }
    serde_json::from_str(&body)
        .map_err(|error| Error::BadResponse { url: url.to_string(), reason: format!("not a routes document: {error}") })
}
