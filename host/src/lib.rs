//! linli host: one community platform for a county, every local feature a sandboxed Wasm
//! plugin. See ARCHITECTURE.md at the repository root for the map and the invariants.

pub mod api;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod platform;
pub mod runtime;
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
    let app = api::router(platform);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
