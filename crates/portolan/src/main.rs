//! `portolan`: the one binary.

mod config;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            init_logging(&config.log)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(serve(config))
        }
    }
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
    let state = AppState::new(Arc::clone(&store)).await.context("cannot prepare the catalog")?;
    if config.demo {
        let summary = portolan_server::demo::load(&state.catalog).await.context("cannot load the demo catalog")?;
        tracing::info!(
            blueprints = summary.blueprints_created,
            entities = summary.entities_created,
            "demo catalog loaded"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, %database, "portolan is listening on http://{address}");
    let router = portolan_server::router(state, &ServerOptions { body_limit: config.body_limit });
    portolan_server::serve(listener, router, shutdown_signal()).await?;
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
