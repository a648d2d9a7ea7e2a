//! The `linli` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{Config, LogFormat, Overrides};
use crate::platform::Platform;
use crate::storage::installs::Status;
use crate::storage::tenants::TenantKind;

/// linli (邻里): one community platform for a county; every feature a sandboxed Wasm plugin.
#[derive(Debug, Parser)]
#[command(name = "linli", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// TOML configuration file (defaults < file < LINLI_* environment < flags).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, compiled-component cache).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (postgres://… or sqlite:…); default: SQLite in the data dir.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP: the plugin gateway, the admin API, health and metrics.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Directory of *.wasm plugins to install in the demo county on first start.
        #[arg(long, value_name = "DIR")]
        demo_plugins: Option<PathBuf>,
    },
    /// Manage tenants (county, township, village, …).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage installed plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Read and check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain: exits 1 and names the first broken record if any record was
    /// edited or deleted.
    Verify,
    /// Print records, oldest first, as JSON lines.
    List {
        /// Records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Id, [a-z0-9][a-z0-9-]{0,62}.
        id: String,
        /// county, township, community, village or grid.
        #[arg(long, value_parser = parse_kind)]
        kind: TenantKind,
        /// Parent tenant id (none for a county).
        #[arg(long)]
        parent: Option<String>,
        /// Chinese name.
        #[arg(long)]
        name_zh: String,
        /// English name.
        #[arg(long)]
        name_en: String,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Install (or upgrade) a plugin component at a tenant.
    Install {
        /// The component (.wasm).
        file: PathBuf,
        /// Tenant id.
        #[arg(long)]
        tenant: String,
    },
    /// List installed plugins.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Suspend a plugin at a tenant.
    Suspend {
        plugin: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended plugin at a tenant.
    Resume {
        plugin: String,
        #[arg(long)]
        tenant: String,
    },
    /// Uninstall a plugin from a tenant.
    Uninstall {
        plugin: String,
        #[arg(long)]
        tenant: String,
        /// Also delete its data at this tenant.
        #[arg(long)]
        purge_data: bool,
    },
}

fn parse_kind(s: &str) -> Result<TenantKind, String> {
    TenantKind::parse(s)
        .ok_or_else(|| format!("expected county, township, community, village or grid, got {s:?}"))
}

/// Parse the command line and run it.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut overrides = Overrides {
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
        ..Overrides::default()
    };
    if let Command::Serve {
        listen,
        demo_plugins,
    } = &cli.command
    {
        overrides.listen = *listen;
        overrides.demo_plugins_dir = demo_plugins.clone();
    }
    let config = match Config::load(cli.global.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(
        config.log_format,
        matches!(cli.command, Command::Serve { .. }),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("错误 / error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("LINLI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let platform = Platform::open(config).await?;
    match command {
        Command::Serve { .. } => serve(platform).await,
        Command::Tenant(TenantCommand::Create {
            id,
            kind,
            parent,
            name_zh,
            name_en,
        }) => {
            let t = platform
                .create_tenant(&id, parent.as_deref(), kind, &name_zh, &name_en)
                .await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
            Ok(())
        }
        Command::Tenant(TenantCommand::List) => {
            for t in platform.tenants().await? {
                println!(
                    "{:<20} {:<10} {:<20} {} / {}",
                    t.id,
                    t.kind.as_str(),
                    t.parent_id.as_deref().unwrap_or("-"),
                    t.name_zh,
                    t.name_en
                );
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Verify) => match platform.verify_audit().await? {
            crate::storage::audit::Verdict::Intact { records } => {
                println!("审计日志完整 / audit log intact: {records} records");
                Ok(())
            }
            crate::storage::audit::Verdict::Broken { seq, reason } => {
                anyhow::bail!("审计日志被篡改 / audit log broken at record {seq}: {reason}")
            }
        },
        Command::Audit(AuditCommand::List { after, limit }) => {
            for r in platform.audit_records(after, limit).await? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Install { file, tenant }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let report = platform.install(&tenant, &bytes).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Plugin(PluginCommand::List { tenant }) => {
            let list = platform.installations(tenant.as_deref()).await?;
            if list.is_empty() {
                println!("(没有已安装的插件 / no plugins installed)");
            }
            for i in list {
                println!(
                    "{:<16} {:<20} {:<10} {:<10} {}",
                    i.tenant,
                    i.plugin,
                    i.version,
                    match i.status {
                        Status::Active => "active",
                        Status::Suspended => "suspended",
                    },
                    i.metadata.title_zh
                );
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Suspend {
            plugin,
            tenant,
            reason,
        }) => {
            let reason = reason.unwrap_or_else(|| "管理员暂停 / suspended by an admin".into());
            let i = platform
                .set_status(&tenant, &plugin, Status::Suspended, Some(&reason))
                .await?;
            println!("{}", serde_json::to_string_pretty(&i)?);
            Ok(())
        }
        Command::Plugin(PluginCommand::Resume { plugin, tenant }) => {
            let i = platform
                .set_status(&tenant, &plugin, Status::Active, None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&i)?);
            Ok(())
        }
        Command::Plugin(PluginCommand::Uninstall {
            plugin,
            tenant,
            purge_data,
        }) => {
            let purged = platform.uninstall(&tenant, &plugin, purge_data).await?;
            println!("uninstalled {plugin} from {tenant} (purged {purged} keys)");
            Ok(())
        }
    }
}

async fn serve(platform: Arc<Platform>) -> anyhow::Result<()> {
    platform.seed_demo().await?;
    let listener = TcpListener::bind(platform.config.listen)
        .await
        .with_context(|| format!("binding {}", platform.config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "linli serving");
    if platform.config.admin_token.is_none() {
        tracing::warn!("no admin_token configured: the admin API refuses every call");
    }
    println!("linli 正在服务 / serving on http://{addr}");
    crate::serve(listener, platform, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
