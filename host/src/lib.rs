//! linli host: one community platform for a county, every local feature a sandboxed Wasm
//! plugin. See ARCHITECTURE.md at the repository root for the map and the invariants.

pub mod api;
pub mod capabilities;
pub mod cli;
pub mod commands;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod mqtt;
pub mod platform;
pub mod runtime;
pub mod shell;
pub mod storage;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

/// Serve the application on `listener` until `shutdown` resolves, then finish the requests
/// in flight. Tests bind `127.0.0.1:0` and pass their own shutdown future.
pub async fn serve(
    listener: TcpListener,
    platform: Arc<platform::Platform>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let upkeep = tokio::spawn(housekeeping(platform.clone()));
    let witness = tokio::spawn(checkpoints(platform.clone()));
    let app = api::router(platform).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    upkeep.abort();
    witness.abort();
    served?;
    Ok(())
}

/// Hourly (first run a minute after start): [`platform::Platform::housekeeping`].
async fn housekeeping(platform: Arc<platform::Platform>) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(3600),
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(error) = platform.housekeeping().await {
            tracing::warn!(%error, "housekeeping failed; retrying in an hour");
        }
    }
}

/// Every `audit.checkpoint_interval_secs`: a signed checkpoint of the audit chain's head
/// into `audit.checkpoint_dir` when the chain has grown.
async fn checkpoints(platform: Arc<platform::Platform>) {
    let secs = platform.config.audit.checkpoint_interval_secs;
    if secs == 0 {
        return;
    }
    let mut every = tokio::time::interval(std::time::Duration::from_secs(secs));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(error) = platform.write_checkpoint().await {
            tracing::warn!(%error, "could not write an audit checkpoint");
        }
    }
}
