//! `portolan`: the one binary.

mod config;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portolan_server::sandbox::JqSandbox;
use portolan_server::{AppState, ServerOptions};

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
    /// Evaluate jq expressions read from stdin (the server starts these itself).
    #[command(hide = true)]
    JqSandbox,
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            init_logging(&config.log)?;
            runtime()?.block_on(serve(config))
        }
        Command::JqSandbox => Ok(portolan_server::sandbox::serve_sandbox()?),
        Command::MigrateStore { from, to } => {
            init_logging("warn")?;
            runtime()?.block_on(migrate_store(from, to))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
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
        "copied {} blueprints, {} scorecards and {} entities into {target_name}; counts verified",
        report.blueprints.len(),
        report.scorecards,
        report.entities()
    );
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

async fn serve(config: config::ServeConfig) -> anyhow::Result<()> {
    let database = config.database.clone();
    let store = portolan_store::open(&database.location())
        .await
        .with_context(|| format!("cannot open the database {database}"))?;
    let mut state = AppState::new(Arc::clone(&store)).await.context("cannot prepare the catalog")?;
    let exe = std::env::current_exe().context("cannot find this program's path for the jq sandbox")?;
    state.catalog.set_sandbox(Arc::new(JqSandbox::new(exe, vec!["jq-sandbox".into()])));
    if config.demo {
        let summary = portolan_server::demo::load(&state.catalog).await.context("cannot load the demo catalog")?;
        tracing::info!(
            blueprints = summary.blueprints_created,
            entities = summary.entities_created,
            scorecards = summary.scorecards_created,
            "demo catalog loaded"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, %database, "portolan is listening on http://{address}");
    let worker = portolan_server::worker::Worker::start(state.catalog.clone(), config.lease_ms);
    let sweeper = portolan_server::sweeper::Sweeper::start(state.catalog.clone(), config.lease_ms);
    let router = portolan_server::router(state.clone(), &ServerOptions { body_limit: config.body_limit });
    portolan_server::serve(listener, router, async move {
        shutdown_signal().await;
        state.begin_shutdown();
    })
    .await?;
    worker.stop().await;
    sweeper.stop().await;
    tracing::info!("stopped");
    Ok(())
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
