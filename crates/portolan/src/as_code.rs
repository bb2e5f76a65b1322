//! `portolan apply` and `portolan export`: the catalog as files, against a running server.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use portolan_server::services::manifests::files::read_tree;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct ServerArgs {
    /// The server's base URL
    #[arg(long, env = "PORTOLAN_SERVER", default_value = "http://127.0.0.1:7700")]
    server: String,
    /// An API token of an admin (create one with `portolan admin create-token`)
    #[arg(long, env = "PORTOLAN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// Files or folders (read recursively: every .yaml, .yml and .json file)
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    paths: Vec<PathBuf>,
    /// Names this set of files, for --prune [default: the paths given, made absolute]
    #[arg(long)]
    source: Option<String>,
    /// Check and show the plan; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Also delete what an earlier apply of the same source created and the files no longer hold
    #[arg(long)]
    prune: bool,
    /// List unchanged objects too
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Only these blueprints (with their scorecards, entities and actions); repeatable
    #[arg(long = "blueprint")]
    blueprints: Vec<String>,
    /// The folder to write to (created if missing)
    dir: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

fn client(server: &ServerArgs) -> anyhow::Result<(reqwest::Client, String)> {
    portolan_server::outbound::install_crypto();
    let client = reqwest::Client::builder().build()?;
    Ok((client, server.server.trim_end_matches('/').to_string()))
}

/// The JSON reply, or the server's error message as the error.
async fn reply(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_else(|_| json!({}));
    if status.is_success() {
        return Ok(body);
    }
    let message = body["message"].as_str().unwrap_or("no message");
    bail!("the server answered {status}: {message}")
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<bool> {
    let cwd = std::env::current_dir()?;
    let tree = read_tree(&args.paths, &cwd);
    if !tree.problems.is_empty() {
        for problem in &tree.problems {
            println!("{problem}");
        }
        println!("nothing was applied");
        return Ok(false);
    }
    let read = tree.documents;
    let source = match &args.source {
        Some(source) => source.clone(),
        None => args
            .paths
            .iter()
            .map(|p| std::path::absolute(p).map(|p| p.display().to_string()))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
    };
    let documents: Vec<Value> =
        read.iter().map(|(file, d)| json!({"file": file, "line": d.line, "document": d.value})).collect();
    let body = json!({"source": source, "documents": documents, "dryRun": args.dry_run, "prune": args.prune});
    let (client, base) = client(&args.server)?;
    let response = client
        .post(format!("{base}/api/v1/apply"))
        .bearer_auth(&args.server.token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let checked = response.status() == reqwest::StatusCode::UNPROCESSABLE_ENTITY;
    let body: Value = response.json().await.unwrap_or_else(|_| json!({}));
    let problems = body["details"].as_array().filter(|d| d.iter().all(|p| p.get("file").is_some()));
    if let (true, Some(problems)) = (checked, problems) {
        for problem in problems {
            let path = problem["path"].as_str().unwrap_or_default();
            let file = problem["file"].as_str().unwrap_or_default();
            let line = match problem["document"].as_u64().and_then(|i| read.get(usize::try_from(i).ok()?)) {
                Some((_, document)) => document.line_of(path),
                None => u32::try_from(problem["line"].as_u64().unwrap_or(0)).unwrap_or(0),
            };
            let at = if path.is_empty() { String::new() } else { format!(" {path}:") };
            println!("{file}:{line}:{at} {}", problem["message"].as_str().unwrap_or_default());
        }
        println!("{}", body["message"].as_str().unwrap_or("the documents have problems; nothing was applied"));
        return Ok(false);
    }
    if !body["ok"].as_bool().unwrap_or(false) {
        println!("{}", body["message"].as_str().unwrap_or("the server refused the apply"));
        for detail in body["details"].as_array().into_iter().flatten() {
            println!(
                "  {}: {}",
                detail["path"].as_str().unwrap_or_default(),
                detail["message"].as_str().unwrap_or_default()
            );
        }
        return Ok(false);
    }
    print_plan(&body, args.verbose);
    Ok(true)
}

fn print_plan(report: &Value, verbose: bool) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for change in report["changes"].as_array().into_iter().flatten() {
        let op = change["op"].as_str().unwrap_or_default();
        *counts.entry(op).or_default() += 1;
        let sign = match op {
            "create" => "+",
            "update" => "~",
            "delete" => "-",
            _ if verbose => "=",
            _ => continue,
        };
        let (kind, name, file) = (
            change["kind"].as_str().unwrap_or_default(),
            change["name"].as_str().unwrap_or_default(),
            change["file"].as_str().unwrap_or_default(),
        );
        println!("{sign} {op} {kind} {name} ({file})");
        for difference in change["diff"].as_array().into_iter().flatten() {
            let show = |v: &Value| if v.is_null() { "(none)".to_string() } else { v.to_string() };
            println!(
                "    {}: {} -> {}",
                difference["pointer"].as_str().unwrap_or_default(),
                show(&difference["before"]),
                show(&difference["after"])
            );
        }
    }
    let n = |op: &str| counts.get(op).copied().unwrap_or(0);
    let verb = if report["dryRun"].as_bool().unwrap_or(false) { "Plan (dry run, nothing changed)" } else { "Applied" };
    println!(
        "{verb}: {} to create, {} to update, {} unchanged, {} to delete",
        n("create"),
        n("update"),
        n("unchanged"),
        n("delete")
    );
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let (client, base) = client(&args.server)?;
    let mut url = url::Url::parse(&format!("{base}/api/v1/export")).context("--server is not a URL")?;
    if !args.blueprints.is_empty() {
        url.query_pairs_mut().append_pair("blueprints", &args.blueprints.join(","));
    }
    let request = client.get(url).bearer_auth(&args.server.token);
    let body = reply(request.send().await.with_context(|| format!("cannot reach {base}"))?).await?;
    let mut files: BTreeMap<PathBuf, Vec<&Value>> = BTreeMap::new();
    for document in body["documents"].as_array().into_iter().flatten() {
        files.entry(export_file(document)).or_default().push(document);
    }
    let mut count = 0;
    for (relative, documents) in &files {
        let path = args.dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        let mut text = String::new();
        for document in documents {
            text.push_str("---\n");
            text.push_str(&serde_saphyr::to_string(document)?);
            count += 1;
        }
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    println!("{count} documents written to {} files under {}", files.len(), args.dir.display());
    Ok(())
}

/// Where a document goes: a blueprint with its permissions and scorecards, a blueprint's
/// entities together, an action with its permissions.
fn export_file(document: &Value) -> PathBuf {
    let spec = &document["spec"];
    let text = |v: &Value| v.as_str().unwrap_or("_").replace(['/', '\\'], "_");
    match document["kind"].as_str().unwrap_or_default() {
        "Blueprint" => PathBuf::from("blueprints").join(format!("{}.yaml", text(&spec["identifier"]))),
        "Scorecard" => PathBuf::from("blueprints").join(format!("{}.yaml", text(&spec["blueprint"]))),
        "Entity" => PathBuf::from("entities").join(format!("{}.yaml", text(&spec["blueprint"]))),
        "Action" => PathBuf::from("actions").join(format!("{}.yaml", text(&spec["identifier"]))),
        _ if spec.get("action").is_some() => PathBuf::from("actions").join(format!("{}.yaml", text(&spec["action"]))),
        _ => PathBuf::from("blueprints").join(format!("{}.yaml", text(&spec["blueprint"]))),
    }
}
