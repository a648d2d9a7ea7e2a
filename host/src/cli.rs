//! The `linli` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{Config, LogFormat, Overrides};
use crate::identity::Principal;
use crate::platform::{GrantChoice, ImportFormat, Platform};
use crate::storage::devices::{DeviceInput, DeviceKind, DeviceStatus};
use crate::storage::installs::Status;
use crate::storage::people::{PersonInput, PersonKind};
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
    /// Residents and staff: register, import a roster, give roles.
    #[command(subcommand)]
    Person(PersonCommand),
    /// Sign-in helpers for operators.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The device registry: register, list, import, rotate secrets, remove.
    #[command(subcommand)]
    Device(DeviceCommand),
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Register a device; prints its secret (shown once).
    Add {
        /// Device id, `[a-z0-9][a-z0-9-]{0,62}`, unique in the county.
        id: String,
        /// The tenant node it belongs to.
        #[arg(long)]
        tenant: String,
        /// gate, barrier, parking-sensor, meter, emergency-button, wearable,
        /// environment-sensor, smoke-detector, elevator, charging-pile, loudspeaker.
        #[arg(long, value_parser = parse_device_kind)]
        kind: DeviceKind,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        location: String,
        #[arg(long, default_value = "")]
        vendor: String,
        #[arg(long, default_value = "")]
        model: String,
        /// For an emergency button or wearable: its wearer (person id or phone).
        #[arg(long)]
        person: Option<String>,
    },
    /// List the devices in a tenant's subtree.
    List {
        #[arg(long)]
        tenant: String,
        /// Only this kind.
        #[arg(long, value_parser = parse_device_kind)]
        kind: Option<DeviceKind>,
    },
    /// Import devices from a CSV or XLSX list (all rows or none); prints new secrets once.
    Import {
        file: PathBuf,
        #[arg(long)]
        tenant: String,
    },
    /// Give a device a new secret (printed once); the old one stops working.
    RotateSecret { id: String },
    /// Remove a device from the registry.
    Remove { id: String },
    /// Play a device: send its messages through the broker (`devices.mqtt_url`) as the
    /// device would, or, with no broker configured, straight into the host's pipeline.
    Simulate {
        id: String,
        /// An emergency button press: {"type":"press"}.
        #[arg(long, conflicts_with_all = ["plate", "json"])]
        press: bool,
        /// A plate read at a gate or barrier: {"type":"plate","plate":…,"direction":"in"}.
        #[arg(long, conflicts_with = "json")]
        plate: Option<String>,
        /// Any JSON message for the device's kind.
        #[arg(long)]
        json: Option<String>,
        /// Send it this many times.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Pause between messages, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// How the simulated device answers the commands plugins send it.
        #[arg(long, value_enum, default_value_t = crate::mqtt::SimAnswer::Ok)]
        answer: crate::mqtt::SimAnswer,
        /// How long to wait for commands after the last message, in milliseconds (default:
        /// 5000 for gates and barriers, 0 otherwise; with a broker only: without one, the
        /// plugins run here and every command is answered before this returns).
        #[arg(long)]
        listen_ms: Option<u64>,
    },
    /// The newest commands sent to a device, with how each ended.
    Commands {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn parse_device_kind(s: &str) -> Result<DeviceKind, String> {
    DeviceKind::parse(s).ok_or_else(|| {
        let kinds: Vec<_> = DeviceKind::ALL.iter().map(|k| k.as_str()).collect();
        format!(
            "未知设备类型 / unknown device kind {s:?}; kinds: {}",
            kinds.join(", ")
        )
    })
}

#[derive(Debug, Subcommand)]
enum PersonCommand {
    /// Register one person.
    Create {
        /// Home tenant (village, community, grid…; staff: where they work).
        #[arg(long)]
        tenant: String,
        /// resident, staff or vendor.
        #[arg(long, default_value = "resident", value_parser = parse_person_kind)]
        kind: PersonKind,
        #[arg(long)]
        name: String,
        /// 11-digit mobile number (the sign-in name).
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        id_number: Option<String>,
        /// Initial password.
        #[arg(long)]
        password: Option<String>,
        /// Comma-separated tags (elderly or 老年人, living-alone or 独居, disabled or 残疾人, …).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Import residents from a CSV or XLSX roster (all rows or none).
    Import {
        file: PathBuf,
        #[arg(long)]
        tenant: String,
    },
    /// Give a person a role at a tenant. An admin role (system-admin, security-admin,
    /// audit-admin) to someone without an authenticator prints an activation code: hand it
    /// to them in person; at their first sign-in they set their own password and enrol their
    /// own authenticator with it.
    Role {
        /// Person id (p-…) or phone.
        person: String,
        #[arg(long)]
        tenant: String,
        /// grid-worker, community-staff, system-admin, security-admin, audit-admin, vendor.
        #[arg(long)]
        role: String,
    },
    /// Lift a sign-in lockout.
    Unlock {
        /// Person id (p-…) or phone.
        person: String,
    },
    /// A new activation code for an admin who lost their authenticator: the old one stops
    /// working and their sessions end.
    Activate {
        /// Person id (p-…) or phone.
        person: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Print the current TOTP code of a demo admin (their authenticator is the published demo
    /// secret). A real admin's authenticator is theirs alone: this refuses it.
    TotpCode {
        /// Person id (p-…) or phone.
        person: String,
    },
}

fn parse_person_kind(s: &str) -> Result<PersonKind, String> {
    PersonKind::parse(s).ok_or_else(|| format!("expected resident, staff or vendor, got {s:?}"))
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain (keyed with the audit key) and every signed checkpoint in
    /// audit.checkpoint_dir: exits 1 and names the first broken record if any record was
    /// edited or deleted, or records were cut off the end.
    Verify {
        /// Also check against this checkpoint file (e.g. one kept off the machine).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Write a signed checkpoint of the chain's head into audit.checkpoint_dir and print it:
    /// keep a copy where the database's writers cannot reach.
    Checkpoint,
    /// Delete records older than audit.retention_days, keeping the chain verifiable.
    Prune,
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
        /// What to grant, comma-separated: required, all, or capability names.
        #[arg(long, value_delimiter = ',')]
        grant: Vec<String>,
    },
    /// Grant a capability to an installed plugin.
    Grant {
        plugin: String,
        capability: String,
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a capability (revoking a required one suspends the plugin).
    Revoke {
        plugin: String,
        capability: String,
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
    /// Deliver one of a plugin's scheduled ticks now (a schedule run by hand); the running
    /// host's outbox worker hands it to the plugin.
    Tick {
        plugin: String,
        #[arg(long)]
        tenant: String,
        /// The schedule's name, from the plugin's metadata.
        schedule: String,
        /// The time the tick stands for, in ms since the epoch (default: now).
        #[arg(long)]
        at: Option<i64>,
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A person id (`p-…`) as is, or the id of the person with this phone.
async fn person_id(platform: &Platform, who: &str) -> anyhow::Result<String> {
    if who.starts_with("p-") {
        return Ok(who.to_owned());
    }
    crate::storage::people::get_by_phone(&platform.db, who)
        .await?
        .map(|p| p.id)
        .ok_or_else(|| anyhow::anyhow!("没有手机号为 {who} 的人员 / nobody has the phone {who}"))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let platform = Platform::open(config).await?;
    // The local CLI has the database itself: it acts as the bootstrap admin.
    let root = Principal::Root;
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
                .create_tenant(&root, &id, parent.as_deref(), kind, &name_zh, &name_en)
                .await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
            Ok(())
        }
        Command::Tenant(TenantCommand::List) => {
            for t in platform.tenants(&root).await? {
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
        Command::Audit(AuditCommand::Verify { checkpoint }) => {
            let extra = match &checkpoint {
                Some(path) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    anyhow::ensure!(bytes.len() <= 4096, "{}: larger than 4 KiB", path.display());
                    let c: crate::storage::audit::Checkpoint = serde_json::from_slice(&bytes)
                        .with_context(|| {
                            format!("{}: not a linli audit checkpoint", path.display())
                        })?;
                    Some(c)
                }
                None => None,
            };
            let mut verdict = platform.verify_audit(&root).await?;
            if let (crate::storage::audit::Verdict::Intact { .. }, Some(c)) = (&verdict, &extra)
                && let Some(reason) = crate::storage::audit::check_against(&platform.db, c).await?
            {
                verdict = crate::storage::audit::Verdict::Broken { seq: c.seq, reason };
            }
            match verdict {
                crate::storage::audit::Verdict::Intact { records } => {
                    let witnessed = platform.checkpoints()?.len() + usize::from(extra.is_some());
                    let checkpoints = if witnessed == 1 {
                        "checkpoint"
                    } else {
                        "checkpoints"
                    };
                    println!(
                        "审计日志完整 / audit log intact: {records} records, checked against {witnessed} signed {checkpoints}"
                    );
                    Ok(())
                }
                crate::storage::audit::Verdict::Broken { seq, reason } => {
                    anyhow::bail!("审计日志被篡改 / audit log broken at record {seq}: {reason}")
                }
            }
        }
        Command::Audit(AuditCommand::Checkpoint) => {
            match platform.write_checkpoint().await? {
                Some(c) => println!("{}", serde_json::to_string_pretty(&c)?),
                None => anyhow::bail!("审计日志为空 / the audit log is empty"),
            }
            Ok(())
        }
        Command::Audit(AuditCommand::List { after, limit }) => {
            let query = crate::storage::audit::Query {
                after,
                limit,
                ..Default::default()
            };
            for r in platform.audit_records(&root, query).await? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Prune) => {
            let n = platform.prune_audit().await?;
            println!(
                "pruned {n} records older than {} days",
                platform.config.audit.retention_days
            );
            Ok(())
        }
        Command::Plugin(PluginCommand::Install {
            file,
            tenant,
            grant,
        }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let grants = GrantChoice::parse(&grant).map_err(anyhow::Error::msg)?;
            let report = match platform.install(&root, &tenant, &bytes, &grants).await {
                Err(crate::platform::PlatformError::GrantsNeeded(diff)) => {
                    eprintln!("{}", serde_json::to_string_pretty(&diff)?);
                    anyhow::bail!(
                        "需要授权，请加 --grant required 或列出能力 / grants needed: add --grant required (or name capabilities); missing: {}",
                        diff.missing_required.join(", ")
                    );
                }
                other => other?,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Plugin(PluginCommand::List { tenant }) => {
            let list = platform.installations(&root, tenant.as_deref()).await?;
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
                .set_status(&root, &tenant, &plugin, Status::Suspended, Some(&reason))
                .await?;
            println!("{}", serde_json::to_string_pretty(&i)?);
            Ok(())
        }
        Command::Plugin(PluginCommand::Resume { plugin, tenant }) => {
            let i = platform
                .set_status(&root, &tenant, &plugin, Status::Active, None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&i)?);
            Ok(())
        }
        Command::Plugin(PluginCommand::Tick {
            plugin,
            tenant,
            schedule,
            at,
        }) => {
            let at = at.unwrap_or_else(crate::storage::now_ms);
            let added = platform.queue_tick(&tenant, &plugin, &schedule, at).await?;
            // Deliver it here as well, so the command works with no host running.
            let delivered = platform.deliver_outbox().await?;
            println!(
                "{}",
                serde_json::json!({ "queued": added, "due_at_ms": at, "delivered": delivered })
            );
            Ok(())
        }
        Command::Plugin(PluginCommand::Uninstall {
            plugin,
            tenant,
            purge_data,
        }) => {
            let purged = platform
                .uninstall(&root, &tenant, &plugin, purge_data)
                .await?;
            println!("uninstalled {plugin} from {tenant} (purged {purged} keys)");
            Ok(())
        }
        Command::Plugin(PluginCommand::Grant {
            plugin,
            capability,
            tenant,
        }) => {
            let i = platform
                .set_grant(&root, &tenant, &plugin, &capability, true)
                .await?;
            println!("{plugin}@{tenant} grants: {}", i.grants.join(", "));
            Ok(())
        }
        Command::Plugin(PluginCommand::Revoke {
            plugin,
            capability,
            tenant,
        }) => {
            let i = platform
                .set_grant(&root, &tenant, &plugin, &capability, false)
                .await?;
            println!("{plugin}@{tenant} grants: {}", i.grants.join(", "));
            Ok(())
        }
        Command::Person(PersonCommand::Create {
            tenant,
            kind,
            name,
            phone,
            id_number,
            password,
            tags,
        }) => {
            let input = PersonInput {
                name,
                phone,
                id_number,
                tags: tags
                    .iter()
                    .map(|t| crate::storage::people::tag_for_word(t))
                    .collect(),
                ..PersonInput::default()
            };
            let p = platform
                .create_person(&root, &tenant, kind, &input, password.as_deref())
                .await?;
            println!("{}", p.id);
            Ok(())
        }
        Command::Person(PersonCommand::Import { file, tenant }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let report = platform
                .import_people(&root, &tenant, import_format(&file), &bytes)
                .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.imported {
                anyhow::bail!(
                    "{} 行有错误，未导入任何数据 / {} rows have errors; nothing was imported",
                    report.errors.len(),
                    report.errors.len()
                );
            }
            Ok(())
        }
        Command::Person(PersonCommand::Role {
            person,
            tenant,
            role,
        }) => {
            let id = person_id(&platform, &person).await?;
            let given = platform.assign_role(&root, &id, &tenant, &role).await?;
            println!("{}", serde_json::to_string_pretty(&given)?);
            Ok(())
        }
        Command::Person(PersonCommand::Unlock { person }) => {
            let id = person_id(&platform, &person).await?;
            platform.unlock(&root, &id).await?;
            println!("unlocked {id}");
            Ok(())
        }
        Command::Person(PersonCommand::Activate { person }) => {
            let id = person_id(&platform, &person).await?;
            let given = platform.reactivate(&root, &id).await?;
            println!("{}", serde_json::to_string_pretty(&given)?);
            Ok(())
        }
        Command::Device(command) => device_command(&platform, &root, command).await,
        Command::Auth(AuthCommand::TotpCode { person }) => {
            let id = person_id(&platform, &person).await?;
            let secret = crate::storage::sessions::credentials(&platform.db, &id)
                .await?
                .and_then(|c| c.totp_secret)
                .ok_or_else(|| {
                    anyhow::anyhow!("{id} 未登记动态口令 / has no authenticator enrolled")
                })?;
            if secret != crate::platform::DEMO_TOTP_SECRET {
                anyhow::bail!(
                    "{id} 的动态口令只属于本人，不能在此读出 / {id}'s authenticator belongs to its holder; only the demo admins' codes are printed here"
                );
            }
            println!("{}", crate::identity::auth::totp_now(&secret)?);
            Ok(())
        }
    }
}

/// `linli device …`, as the local operator.
async fn device_command(
    platform: &Platform,
    root: &Principal,
    command: DeviceCommand,
) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Add {
            id,
            tenant,
            kind,
            name,
            location,
            vendor,
            model,
            person,
        } => {
            let person = match person {
                Some(p) => Some(person_id(platform, &p).await?),
                None => None,
            };
            let input = DeviceInput {
                id,
                kind,
                name,
                location,
                vendor,
                model,
                person,
                status: DeviceStatus::Active,
            };
            let made = platform.create_device(root, &tenant, &input).await?;
            println!("{}", serde_json::to_string_pretty(&made)?);
        }
        DeviceCommand::List { tenant, kind } => {
            let filter = crate::storage::devices::Filter {
                kinds: kind.map(|k| vec![k]),
                ..Default::default()
            };
            let mut after: Option<String> = None;
            loop {
                let (page, next) = platform
                    .devices(root, &tenant, &filter, after.as_deref(), 500)
                    .await?;
                for d in &page {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        d.id,
                        d.kind.as_str(),
                        d.tenant,
                        d.status.as_str(),
                        d.name,
                        d.location
                    );
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        DeviceCommand::Import { file, tenant } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let report = platform
                .import_devices(root, &tenant, import_format(&file), &bytes)
                .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.imported {
                anyhow::bail!(
                    "{} 行有错误，未导入任何数据 / {} rows have errors; nothing was imported",
                    report.errors.len(),
                    report.errors.len()
                );
            }
        }
        DeviceCommand::RotateSecret { id } => {
            let made = platform.rotate_device_secret(root, &id).await?;
            println!("{}", made.secret);
        }
        DeviceCommand::Remove { id } => {
            platform.delete_device(root, &id).await?;
            println!("removed {id}");
        }
        DeviceCommand::Simulate {
            id,
            press,
            plate,
            json,
            count,
            interval_ms,
            answer,
            listen_ms,
        } => {
            let device = platform.device(root, &id).await?;
            let payload = match (press, plate, json) {
                (true, _, _) => serde_json::json!({ "type": "press" }).to_string(),
                (_, Some(plate), _) => {
                    serde_json::json!({ "type": "plate", "plate": plate, "direction": "in" })
                        .to_string()
                }
                (_, _, Some(json)) => json,
                _ => anyhow::bail!(
                    "请给出 --press、--plate 或 --json / say what to send: --press, --plate or --json"
                ),
            };
            let opened = std::cell::Cell::new(false);
            let show = |c: &serde_json::Value| {
                if c["command"] == "open" && answer == crate::mqtt::SimAnswer::Ok {
                    opened.set(true);
                }
                println!(
                    "{id} ← {} {}  ({})",
                    c["command"].as_str().unwrap_or("?"),
                    c["payload"],
                    match answer {
                        crate::mqtt::SimAnswer::Ok => "执行并应答 / carried out, acknowledged",
                        crate::mqtt::SimAnswer::Refuse => "拒绝 / refused",
                        crate::mqtt::SimAnswer::None => "不应答 / not answered",
                    }
                );
            };
            let interval = std::time::Duration::from_millis(interval_ms);
            if platform.config.devices.mqtt_url.is_some() {
                // Gates answer a plate at once; other kinds get commands later, if at all.
                let at_gate = matches!(device.kind, DeviceKind::Gate | DeviceKind::Barrier);
                let listen = listen_ms.unwrap_or(if at_gate { 5000 } else { 0 });
                crate::mqtt::play_device(
                    &platform.config.devices,
                    &device.tenant,
                    &id,
                    (0..count)
                        .map(|i| crate::mqtt::with_message_id(&payload, i).into_bytes())
                        .collect(),
                    interval,
                    std::time::Duration::from_millis(listen),
                    answer,
                    show,
                )
                .await?;
                println!("{id}: published {payload} ×{count}");
            } else {
                // No broker: the message goes straight into the pipeline here, and this
                // process plays the device's side of the commands plugins send meanwhile.
                let (tenant, dev) = (device.tenant.as_str(), id.as_str());
                let responder = async {
                    loop {
                        match platform.pending_commands(Some(tenant), dev).await {
                            Ok(pending) => {
                                for c in pending {
                                    let wire = crate::commands::wire(&c);
                                    show(&wire);
                                    if let Some(a) = crate::mqtt::sim_answer(answer, &wire)
                                        && let Err(e) = platform
                                            .answer_command(
                                                Some(tenant),
                                                dev,
                                                a.to_string().as_bytes(),
                                            )
                                            .await
                                    {
                                        eprintln!("{dev}: answer not taken: {e}");
                                    }
                                }
                            }
                            Err(e) => eprintln!("{dev}: {e}"),
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                };
                let sender = async {
                    for i in 0..count {
                        if i > 0 {
                            tokio::time::sleep(interval).await;
                        }
                        let message = crate::mqtt::with_message_id(&payload, i);
                        let done = platform
                            .ingest(Some(tenant), dev, message.as_bytes())
                            .await?;
                        println!("{}", serde_json::to_string(&done)?);
                    }
                    anyhow::Ok(())
                };
                // The sender's plugins wait for the answers, so when it is done, so are they.
                tokio::select! {
                    r = sender => r?,
                    () = responder => {}
                }
            }
            if matches!(device.kind, DeviceKind::Gate | DeviceKind::Barrier) {
                println!(
                    "{id}: {}",
                    if opened.get() {
                        "已开闸放行 / opened"
                    } else {
                        "未开闸 / stayed closed"
                    }
                );
            }
        }
        DeviceCommand::Commands { id, limit } => {
            for c in platform.device_commands(root, &id, limit).await? {
                println!("{}", serde_json::to_string(&c)?);
            }
        }
    }
    Ok(())
}

/// XLSX by the file's extension, CSV otherwise.
fn import_format(file: &std::path::Path) -> ImportFormat {
    if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"))
    {
        ImportFormat::Xlsx
    } else {
        ImportFormat::Csv
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
        tracing::info!("no admin_token configured: admin calls need a signed-in admin account");
    }
    println!("linli 正在服务 / serving on http://{addr}");
    if platform.config.seed_demo && platform.demo_seeded().await? {
        print!("{}", crate::platform::demo_accounts());
    }
    tokio::spawn(platform.clone().run_outbox());
    tokio::spawn(platform.clone().run_schedules());
    tokio::spawn(crate::storage::audit::run_sealer(
        platform.db.clone(),
        std::time::Duration::from_millis(500),
    ));
    match &platform.config.devices.mqtt_url {
        Some(url) => {
            tracing::info!(%url, prefix = %platform.config.devices.topic_prefix, "linking to the MQTT broker");
            let link = platform.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::mqtt::run(link).await {
                    tracing::error!(error = %e, "the MQTT link stopped");
                }
            });
        }
        None => tracing::info!(
            "no devices.mqtt_url: devices send over HTTP (POST /api/v1/device-messages/{{id}}); no broker link"
        ),
    }
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
