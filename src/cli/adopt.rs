//! `graft adopt --project ID [PATH...]`: take files the repository
//! already has under the project's base path into management
//! (`POST /api/v1/projects/{id}/adopt`) and print what was adopted and
//! what was skipped, and why.

use anyhow::{Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::config::AdoptArgs;
use crate::cli::remote::Remote;

fn entries(answer: &Value, key: &str) -> Vec<Value> {
    answer[key].as_array().cloned().unwrap_or_default()
}

pub async fn adopt(args: &AdoptArgs) -> Result<()> {
    let remote = Remote::new(&args.remote)?;
    let body = if args.paths.is_empty() {
        json!({})
    } else {
        json!({ "paths": args.paths })
    };
    let request = remote
        .request(Method::POST, &format!("/projects/{}/adopt", args.project))
        .json(&body);
    let answer = remote.send(request).await?;
    let adopted = entries(&answer, "adopted");
    let skipped = entries(&answer, "skipped");
    for file in &adopted {
        println!("adopted  {}", file["path"].as_str().unwrap_or("?"));
    }
    for file in &skipped {
        println!(
            "skipped  {}: {}",
            file["path"].as_str().unwrap_or("?"),
            file["reason"].as_str().unwrap_or("?")
        );
    }
    println!(
        "project {}: {} file(s) adopted, {} skipped",
        args.project,
        adopted.len(),
        skipped.len()
    );
    if adopted.is_empty() && !args.paths.is_empty() {
        bail!("none of the named paths was adopted");
    }
    Ok(())
}
