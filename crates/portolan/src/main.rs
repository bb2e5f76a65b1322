//! `portolan`: the one binary.

mod as_code;
mod backup;
mod config;
mod demo_task;

// glibc's malloc spent a third of a large import's CPU time and kept freed memory (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portolan_server::sandbox::JqSandbox;
use portolan_server::services::SystemClock;
use portolan_server::{AppState, ServerOptions, Settings};

#[derive(Parser)]
#[command(name = "portolan", version, about = "Portolan: software catalog, scorecards and self-service actions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the portal server.
    Serve(config::ServeArgs),
    /// Claim runs of RUNNER actions from a server and run their commands.
    Runner(RunnerArgs),
    /// Evaluate jq expressions read from stdin (the server starts these itself).
    #[command(hide = true)]
    JqSandbox,
    /// The demo actions' work, run by the demo's runner with the payload on stdin.
    #[command(hide = true)]
    DemoTask { task: String },
    /// Manage accounts and tokens directly in the database (works while the server runs).
    Admin(AdminArgs),
    /// Check or export the audit log.
    Audit(AuditArgs),
    /// Apply catalog-as-code files (blueprints, entities, scorecards, actions, permissions) to a
    /// running server: everything is checked first, then planned, then applied in order.
    Apply(as_code::ApplyArgs),
    /// Write the catalog (or some blueprints of it) as files `apply` takes back.
    Export(as_code::ExportArgs),
    /// Write a consistent copy of a SQLite deployment (database, audit key file, checkpoints)
    /// while the server runs, and check it.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new or empty data directory: copied, migrated and checked (secrets
    /// open with the key, the audit log verifies) beside it first, then moved in.
    Restore(backup::RestoreArgs),
    /// Ask a running server whether it is ready, for a container's health check: exits 0 when
    /// it answers 2xx, 1 otherwise.
    Probe {
        /// The address to ask
        #[arg(default_value = "http://127.0.0.1:7700/readyz")]
        url: String,
    },
    /// Copy a SQLite deployment into an empty PostgreSQL database and verify the copy.
    MigrateStore {
        /// Data directory of the SQLite deployment.
        #[arg(long)]
        from: std::path::PathBuf,
        /// PostgreSQL URL of the target database.
        #[arg(long, env = "PORTOLAN_DATABASE_URL", hide_env_values = true)]
        to: String,
    },
}

/// For `admin` and `audit`: the settings go before or after the subcommand (`audit --data DIR
/// verify` or `audit verify --data DIR`); those only `serve` uses are accepted but not listed.
fn data_command_arg(arg: clap::Arg) -> clap::Arg {
    hide_serve_only(arg).global(true)
}

/// For the commands that take `serve`'s settings to find the data: those only `serve` uses are
/// accepted but not listed.
fn hide_serve_only(arg: clap::Arg) -> clap::Arg {
    const SERVE_ONLY: [&str; 9] = [
        "listen",
        "body_limit",
        "demo",
        "admin_password",
        "admin_password_file",
        "public_url",
        "rate_limit_per_minute",
        "audit_checkpoint_minutes",
        "nats_url",
    ];
    let serve_only = SERVE_ONLY.contains(&arg.get_id().as_str());
    arg.hide(serve_only)
}

#[derive(clap::Args)]
#[command(mut_args = data_command_arg)]
struct AdminArgs {
    #[command(flatten)]
    config: config::ServeArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Args)]
#[command(mut_args = data_command_arg)]
struct AuditArgs {
    #[command(flatten)]
    config: config::ServeArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and check each record's MAC under the audit key; exit non-zero at the
    /// first record that was edited, deleted, reordered, inserted or rewritten, naming it. Held to
    /// a checkpoint, a log cut short or rewritten before it is caught too.
    Verify {
        /// A checkpoint (from `portolan audit checkpoint` or the server) the log must still reach
        /// unchanged [default: the newest in the checkpoint directory]
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// Without a checkpoint, accept this many records at the start of the log without a MAC
        /// (written before the log had an audit key); otherwise a log whose MACs were all
        /// stripped could not be told from one that never had them
        #[arg(long, default_value_t = 0)]
        allow_unkeyed: u64,
    },
    /// Print every record as a JSON line, oldest first.
    Export {
        /// Only records after this sequence number
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
    /// Verify the whole log, then print a checkpoint of its head signed with the audit key (JSON);
    /// keep it outside the database for `audit verify --checkpoint`.
    Checkpoint,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user (or a service account) who can sign in. The password is read from
    /// PORTOLAN_NEW_PASSWORD or, with --password-stdin, from the first line of stdin.
    CreateUser {
        /// Their `_user` identifier, used to sign in
        identifier: String,
        /// What they may do: admins manage everything, members what their teams' grants allow
        #[arg(long, default_value = "member", value_parser = ["admin", "member"])]
        role: String,
        /// A team they belong to (repeat for more)
        #[arg(long = "team")]
        teams: Vec<String>,
        /// Their e-mail address
        #[arg(long)]
        email: Option<String>,
        /// A service account: no password, tokens only
        #[arg(long)]
        service: bool,
        /// Read the password from the first line of stdin instead of PORTOLAN_NEW_PASSWORD
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create an API token for an account and print it (shown only this once).
    CreateToken {
        /// The account the token acts as
        #[arg(long)]
        user: String,
        /// A name for the token, to tell it apart when listing or revoking
        #[arg(long)]
        name: String,
        /// Days until the token expires [default: never]
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Make or rotate an account's client credentials, for clients written for Port: they trade
    /// them at POST /v1/auth/access_token. Prints the client id and the secret (shown only now).
    #[command(name = "create-credentials")]
    ClientCredentials {
        /// The account they act as
        #[arg(long)]
        user: String,
    },
}

#[derive(clap::Args)]
struct RunnerArgs {
    /// The server's base URL
    #[arg(long, env = "PORTOLAN_SERVER")]
    server: String,
    /// A runner token (create one with POST /api/v1/runners/tokens)
    #[arg(long, env = "PORTOLAN_RUNNER_TOKEN", hide_env_values = true)]
    token: String,
    /// Claim only runs needing these labels (default: all the token allows)
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// A task this runner runs, as NAME=PROGRAM [ARG...] (repeat for more); actions name tasks,
    /// and a run whose task is not configured here fails
    #[arg(long = "task", value_parser = portolan_runner::parse_task)]
    tasks: Vec<(String, Vec<String>)>,
    /// A TOML file of tasks: `NAME = ["PROGRAM", "ARG", ...]` per line
    #[arg(long)]
    tasks_file: Option<std::path::PathBuf>,
    /// Run tasks with an empty environment (but PATH and the run's PORTOLAN_* variables)
    #[arg(long)]
    clear_env: bool,
    /// Runs worked on at once
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Directory commands run in
    #[arg(long)]
    work_dir: Option<std::path::PathBuf>,
    /// Log filter
    #[arg(long, env = "PORTOLAN_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            init_serve_logging(&config)?;
            runtime()?.block_on(serve(config))
        }
        Command::Runner(args) => {
            init_logging(&args.log)?;
            runtime()?.block_on(run_runner(args))
        }
        Command::JqSandbox => Ok(portolan_server::sandbox::serve_sandbox()?),
        Command::DemoTask { task } => {
            // The message alone: it lands in the run's log, where a backtrace helps no one.
            if let Err(err) = runtime()?.block_on(demo_task::run(&task)) {
                eprintln!("error: {err:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Apply(args) => {
            if !runtime()?.block_on(as_code::apply(args))? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Export(args) => runtime()?.block_on(as_code::export(args)),
        Command::Audit(args) => {
            warnings_to_stderr();
            runtime()?.block_on(audit(args))
        }
        Command::Admin(args) => {
            warnings_to_stderr();
            runtime()?.block_on(admin(args))
        }
        Command::Backup(args) => {
            warnings_to_stderr();
            runtime()?.block_on(backup::backup(args))
        }
        Command::Restore(args) => {
            warnings_to_stderr();
            runtime()?.block_on(backup::restore(args))
        }
        Command::Probe { url } => {
            if let Err(err) = runtime()?.block_on(probe(&url)) {
                eprintln!("not ready: {err:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::MigrateStore { from, to } => {
            init_logging("warn")?;
            runtime()?.block_on(migrate_store(from, to))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

async fn probe(url: &str) -> anyhow::Result<()> {
    portolan_server::outbound::install_crypto();
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()?;
    let response = client.get(url).send().await.with_context(|| format!("{url} does not answer"))?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}: {}", response.text().await.unwrap_or_default());
    }
    Ok(())
}

async fn migrate_store(from: std::path::PathBuf, to: String) -> anyhow::Result<()> {
    if !from.join(portolan_store::sqlite::DATABASE_FILE).exists() {
        anyhow::bail!("{} holds no Portolan database", from.display());
    }
    if !portolan_store::is_postgres_url(&to) {
        anyhow::bail!("--to must be a postgres:// URL");
    }
    let target_name = config::Database::Postgres(to.clone());
    let source = portolan_store::open(&from.to_string_lossy()).await.context("cannot open the source")?;
    let target = portolan_store::open(&to).await.with_context(|| format!("cannot open {target_name}"))?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let report = portolan_server::services::migrate::copy_store(source.as_ref(), target.as_ref(), now).await?;
    for (blueprint, entities) in &report.blueprints {
        println!("{blueprint:<24} {entities:>9} entities");
    }
    println!(
        "copied {} blueprints, {} scorecards, {} entities, {} actions, {} secrets, {} accounts, {} integrations and {} runs \
         into {target_name}; entity counts verified",
        report.blueprints.len(),
        report.scorecards,
        report.entities(),
        report.actions,
        report.secrets,
        report.accounts,
        report.integrations,
        report.runs
    );
    Ok(())
}

async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    use portolan_server::services::audit as log;
    let config = args.config.resolve()?;
    let database = config.database.clone();
    let store = portolan_store::open_existing(&database.location())
        .await
        .with_context(|| format!("cannot open the database {database}"))?;
    let options = config.audit_options(false);
    let secrets_key = config.secrets_key.as_ref().map(|k| k.0.as_str());
    let key = log::audit_key(store.as_ref(), secrets_key, &options).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some((key, origin @ log::KeyOrigin::Database)) = &key {
        eprintln!("warning: audit key {} is {origin}; configure audit_key_file", key.id());
    }
    match args.command {
        AuditCommand::Verify { checkpoint, allow_unkeyed } => {
            let checkpoint = match checkpoint {
                Some(path) => Some((log::read_checkpoint(&path).map_err(anyhow::Error::msg)?, path)),
                None => {
                    let newest = options.checkpoint_dir.as_deref().and_then(|d| log::checkpoint_files(d).pop());
                    match newest {
                        Some(path) => Some((log::read_checkpoint(&path).map_err(anyhow::Error::msg)?, path)),
                        None => None,
                    }
                }
            };
            let (checkpoint, checkpoint_file) = checkpoint.unzip();
            let key_ref = key.as_ref().map(|(k, _)| k);
            match log::verify(store.as_ref(), key_ref, checkpoint).await {
                Ok(Ok(verified))
                    if key.is_some() && verified.checkpoint.is_none() && verified.unkeyed > allow_unkeyed =>
                {
                    eprintln!(
                        "the audit log cannot be trusted: its first {} records have no MAC and no checkpoint says \
                         where the audit key began (someone who can write the database could have stripped them); \
                         verify against a checkpoint, or pass --allow-unkeyed {} if they predate the key",
                        verified.unkeyed, verified.unkeyed
                    );
                    std::process::exit(1);
                }
                Ok(Ok(verified)) => {
                    let mut said = format!(
                        "the audit log is intact: {} records, each chained to the one before",
                        verified.records
                    );
                    if let Some((key, origin)) = &key {
                        said.push_str(&format!(" and signed with audit key {} ({origin})", key.id()));
                    }
                    if verified.unkeyed > 0 {
                        said.push_str(&format!(
                            "; the first {} predate the audit key, so only their chain is checked",
                            verified.unkeyed
                        ));
                    }
                    match (&verified.checkpoint, &checkpoint_file) {
                        (Some(c), Some(path)) => said.push_str(&format!(
                            "; it still reaches {} (record {}) from {}",
                            c.describe(),
                            c.seq,
                            path.display()
                        )),
                        _ => said.push_str(
                            "; no checkpoint was given, so records removed from the end would go unnoticed \
                             (see `portolan audit checkpoint`)",
                        ),
                    }
                    println!("{said}");
                }
                Ok(Err(broken)) => {
                    eprintln!("the audit log is broken: {broken}");
                    std::process::exit(1);
                }
                Err(err) => anyhow::bail!("cannot read the audit log: {err}"),
            }
        }
        AuditCommand::Checkpoint => {
            let Some((key, _)) = key else {
                anyhow::bail!("no audit key was found (configure audit_key or audit_key_file)");
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            match log::sign_checkpoint(store.as_ref(), &key, None, now).await {
                Ok(Ok(checkpoint)) => println!("{}", serde_json::to_string_pretty(&checkpoint)?),
                Ok(Err(broken)) => {
                    eprintln!("the audit log is broken, so no checkpoint was signed: {broken}");
                    std::process::exit(1);
                }
                Err(err) => anyhow::bail!("cannot read the audit log: {err}"),
            }
        }
        AuditCommand::Export { after } => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut after = after;
            loop {
                let page = log::export_page(store.as_ref(), after, 5_000).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                for record in &page {
                    writeln!(out, "{}", serde_json::to_string(record)?)?;
                }
                match page.last() {
                    Some(last) => after = last.seq,
                    None => break,
                }
            }
            out.flush()?;
        }
    }
    Ok(())
}

async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    use portolan_server::services::identity::NewAccount;
    use portolan_server::services::{Actor, Origin};
    let config = args.config.resolve()?;
    let state = open_state(&config, false, settings(&config, String::new(), None)).await?;
    let actor = Actor::system("portolan-cli", Origin::Cli);
    match args.command {
        AdminCommand::CreateUser { identifier, role, teams, email, service, password_stdin } => {
            let password = if service {
                None
            } else if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                Some(std::env::var("PORTOLAN_NEW_PASSWORD").context(
                    "give the password in PORTOLAN_NEW_PASSWORD or on stdin with --password-stdin (or pass --service)",
                )?)
            };
            let role = portolan_model::permission::Role::parse(&role).context("role is admin or member")?;
            let new =
                NewAccount { identifier, teams, email, role: Some(role), password, service, ..NewAccount::default() };
            let account = state.identity.create_account(&actor, new).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {} account '{}' ({})", account.kind.as_str(), account.user, account.role.as_str());
        }
        AdminCommand::CreateToken { user, name, expires_in_days } => {
            let (record, token) = state
                .identity
                .create_api_token(&actor, Some(&user), &name, expires_in_days)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("token {} for '{}' (shown only now):", record.id, record.user);
            println!("{token}");
        }
        AdminCommand::ClientCredentials { user } => {
            let (credentials, secret) =
                state.identity.rotate_client_credentials(&actor, &user).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("client credentials of '{}' (the secret is shown only now):", credentials.user);
            println!("PORT_CLIENT_ID={}", credentials.client_id);
            println!("PORT_CLIENT_SECRET={secret}");
        }
    }
    Ok(())
}

/// The services over the configured database with these settings; only `serve` (`create`) makes
/// a database where there is none.
async fn open_state(config: &config::ServeConfig, create: bool, settings: Settings) -> anyhow::Result<AppState> {
    let database = config.database.clone();
    let store = match create {
        true => portolan_store::open(&database.location()).await,
        false => portolan_store::open_existing(&database.location()).await,
    }
    .with_context(|| format!("cannot open the database {database}"))?;
    AppState::build(store, Arc::new(SystemClock), settings).await.context("cannot prepare the catalog")
}

/// The server's settings from its configuration; `public_url` is where it is reached (the
/// configured one, else its listening address) and `jq` the sandbox it runs jq in.
fn settings(config: &config::ServeConfig, public_url: String, jq: Option<Arc<JqSandbox>>) -> Settings {
    let email = config.smtp.as_ref().map(|(url, from)| portolan_server::email::EmailSettings {
        url: url.0.clone(),
        from: from.clone().unwrap_or_else(|| {
            let host = url::Url::parse(&public_url).ok().and_then(|u| u.host_str().map(str::to_string));
            format!("Portolan <portolan@{}>", host.unwrap_or_else(|| "localhost".into()))
        }),
    });
    Settings {
        runner_lease_ms: config.lease_ms,
        secrets_key: config.secrets_key.clone().map(|k| k.0),
        webhook_allow_private: config.webhook_allow_private,
        nats_url: config.nats_url.clone(),
        ci_poll_ms: Settings::default().ci_poll_ms,
        kpi_retention_days: config.kpi_retention_days,
        audit: config.audit_options(true),
        public_url,
        oidc: config.oidc.as_ref().map(|oidc| portolan_server::services::oidc::OidcSettings {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            client_secret: oidc.client_secret.0.clone(),
            groups_claim: oidc.groups_claim.clone(),
            admin_group: oidc.admin_group.clone(),
        }),
        email,
        slack: config.slack.as_ref().map(|slack| portolan_server::slack::api::SlackSettings {
            signing_secret: slack.signing_secret.0.clone(),
            bot_token: slack.bot_token.as_ref().map(|t| t.0.clone()),
            api_url: slack.api_url.clone(),
        }),
        sessions: portolan_server::services::identity::SessionPolicy {
            idle_ms: i64::from(config.session_idle_minutes) * 60_000,
            absolute_ms: i64::from(config.session_max_hours) * 3_600_000,
        },
        jq,
    }
}

/// For the commands that print a result: warnings go to stderr, so stdout carries only what the
/// command prints (a token, say).
fn warnings_to_stderr() {
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
}

/// The server's logs, as text or JSON lines, and its traces when a collector is configured. Each
/// has its own filter: the store's spans (`debug`) go to the collector only, so that without one
/// they cost nothing.
fn init_serve_logging(config: &config::ServeConfig) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("invalid log filter {:?}", config.log))?;
    let lines = match config.log_format {
        config::LogFormat::Text => {
            use std::io::IsTerminal;
            tracing_subscriber::fmt::layer().with_target(false).with_ansi(std::io::stdout().is_terminal()).boxed()
        }
        config::LogFormat::Json => tracing_subscriber::fmt::layer().json().with_current_span(false).boxed(),
    };
    let traces = match &config.otlp_endpoint {
        Some(endpoint) => Some(
            portolan_server::telemetry::OtlpLayer::start(endpoint, "portolan")
                .context("cannot start the trace exporter")?
                .with_filter(tracing_subscriber::EnvFilter::new("info,portolan_store=debug")),
        ),
        None => None,
    };
    tracing_subscriber::registry().with(lines.with_filter(filter)).with(traces).init();
    Ok(())
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    Ok(())
}

async fn run_runner(args: RunnerArgs) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let mut tasks = std::collections::BTreeMap::new();
    if let Some(file) = &args.tasks_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let listed: std::collections::BTreeMap<String, Vec<String>> = toml::from_str(&text)
            .with_context(|| format!("{} is not a table of NAME = [PROGRAM, ARG...]", file.display()))?;
        for (name, command) in listed {
            portolan_model::action::check_task_name(&name).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!command.is_empty(), "task '{name}' in {} names no program", file.display());
            tasks.insert(name, command);
        }
    }
    tasks.extend(args.tasks);
    if tasks.is_empty() {
        tracing::warn!("no tasks configured (--task NAME=PROGRAM or --tasks-file): every claimed run will fail");
    }
    let env = match (args.clear_env, std::env::var("PATH")) {
        (true, Ok(path)) => vec![("PATH".to_string(), path)],
        _ => Vec::new(),
    };
    let config = portolan_runner::RunnerConfig {
        server: args.server,
        token: args.token,
        labels: args.labels,
        concurrency: args.concurrency,
        tasks,
        work_dir: args.work_dir,
        inherit_env: !args.clear_env,
        env,
    };
    let names: Vec<&String> = config.tasks.keys().collect();
    tracing::info!(server = %config.server, labels = ?config.labels, tasks = ?names, "runner started");
    portolan_runner::run(config, stopped).await?;
    Ok(())
}

async fn serve(config: config::ServeConfig) -> anyhow::Result<()> {
    let database = config.database.clone();
    let exe = std::env::current_exe().context("cannot find this program's path for the jq sandbox")?;
    let sandbox = JqSandbox::with_limits(exe.clone(), vec!["jq-sandbox".into()], config.jq.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
    let state = open_state(&config, true, settings(&config, public_url.clone(), Some(Arc::new(sandbox)))).await?;
    if let Some(slack) = &config.slack {
        tracing::info!(api = %slack.api_url, sends = slack.bot_token.is_some(), "the Slack app is on");
    }
    if let Some(oidc) = &config.oidc {
        tracing::info!(issuer = %oidc.issuer, "single sign-on is on");
    }
    let admin_password = config.admin_password.clone().map(|p| p.0);
    if let Some(generated) = state.identity.bootstrap_admin(admin_password).await.map_err(|e| anyhow::anyhow!("{e}"))? {
        // Printed, never logged: it is the only copy.
        println!(
            "\nCreated the first admin account.\n  username: admin\n  password: {generated}\nSign in and change it; it is not shown again.\n"
        );
    }
    let (stop_runner, runner_stopped) = tokio::sync::watch::channel(false);
    let mut demo_runner = None;
    if config.demo {
        let summary = portolan_server::demo::load(&state).await.context("cannot load the demo catalog")?;
        tracing::info!(
            blueprints = summary.blueprints_created,
            entities = summary.entities_created,
            scorecards = summary.scorecards_created,
            actions = summary.actions_written,
            accounts = summary.accounts_created,
            history = summary.history_created,
            dashboards = summary.dashboards_created,
            "demo catalog loaded"
        );
        let source =
            portolan_server::demo::integrations::start_source().await.context("cannot serve the demo inventory")?;
        let ingest_url = portolan_server::demo::integrations::load(&state, &source)
            .await
            .context("cannot load the demo integrations")?;
        if let Some(url) = ingest_url {
            // Printed, never logged: the URL is the webhook's credential, shown this once.
            println!(
                "\nThe demo's deployment webhook (integration deploy-events) takes notices at\n  {url}\nwith the header X-Deploy-Token: {}. It is not shown again; make a new one on /integrations.\n",
                portolan_server::demo::integrations::DEPLOY_TOKEN
            );
        }
        demo_runner = Some(start_demo_runner(&state, &config, &exe, &public_url, runner_stopped).await?);
    }
    tracing::info!(%address, %database, "portolan is listening on http://{address}");
    let worker = portolan_server::worker::Worker::start(state.clone(), config.lease_ms);
    let sweeper = portolan_server::sweeper::Sweeper::start(state.clone(), config.lease_ms);
    let router = portolan_server::router(
        state.clone(),
        &ServerOptions {
            body_limit: config.body_limit,
            rate_limit_per_minute: config.rate_limit_per_minute,
            connections: config.connections.clone(),
        },
    );
    let store = state.core.store().clone();
    portolan_server::serve_with(listener, router, config.connections.clone(), async move {
        shutdown_signal().await;
        state.begin_shutdown();
        let _ = stop_runner.send(true);
    })
    .await?;
    if let Some(runner) = demo_runner {
        let _ = runner.await;
    }
    worker.stop().await;
    sweeper.stop().await;
    // Last: SQLite folds its write-ahead log back into the database file, so the data directory
    // is one file again (as a copy of it would want).
    store.close().await;
    portolan_server::telemetry::flush().await;
    tracing::info!("stopped");
    Ok(())
}

/// The demo's own runner: in process, with a fresh token for the `demo` label, running only the
/// demo tasks (this program's `demo-task`), in a workspace of their own with a cleared environment.
const DEMO_RUNNER: &str = "demo runner";

async fn start_demo_runner(
    state: &AppState,
    config: &config::ServeConfig,
    exe: &std::path::Path,
    public_url: &str,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let workspace = match &config.database {
        config::Database::Sqlite(dir) => dir.join("demo-workspace"),
        config::Database::Postgres(_) => std::env::temp_dir().join("portolan-demo-workspace"),
    };
    std::fs::create_dir_all(&workspace).with_context(|| format!("cannot create {}", workspace.display()))?;
    let workspace = workspace.canonicalize()?;
    let actor = portolan_server::services::Actor::demo();
    // The token of the previous start is of no use: a new one is made each start.
    for old in state.actions.list_runner_tokens(&actor).await? {
        if old.name == DEMO_RUNNER && old.revoked_at.is_none() {
            state.actions.revoke_runner_token(&actor, &old.id).await?;
        }
    }
    let (_, token) = state
        .actions
        .create_runner_token(&actor, DEMO_RUNNER, vec![portolan_server::demo::RUNNER_LABEL.into()])
        .await
        .context("cannot create the demo runner's token")?;
    let exe = exe.to_string_lossy().into_owned();
    let tasks = demo_task::TASKS
        .iter()
        .map(|task| (task.to_string(), vec![exe.clone(), "demo-task".into(), task.to_string()]))
        .collect();
    let runner = portolan_runner::RunnerConfig {
        server: public_url.to_string(),
        token,
        labels: vec![],
        concurrency: 4,
        tasks,
        work_dir: Some(workspace.clone()),
        inherit_env: false,
        env: vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), workspace.to_string_lossy().into_owned()),
            ("LANG".into(), "C.UTF-8".into()),
        ],
    };
    tracing::info!(workspace = %workspace.display(), "demo runner started");
    Ok(tokio::spawn(async move {
        if let Err(err) = portolan_runner::run(runner, stopped).await {
            tracing::error!(%err, "the demo runner stopped");
        }
    }))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing requests in flight");
}
