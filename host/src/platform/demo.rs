//! The demo county: tenants, residents and staff with known credentials, and the demo
//! plugins installed with their required grants (and `identity`, masked). Seeded once, on
//! an empty database, when `seed_demo` is on; on later starts the demo plugins still
//! installed are upgraded from their files when those changed.

use std::path::Path;

use anyhow::Context as _;

use super::{GrantChoice, Platform, SignIn};
use crate::identity::Principal;
use crate::runtime::bindings::{Header, Request};
use crate::storage::devices::{DeviceInput, DeviceKind, DeviceStatus};
use crate::storage::installs;
use crate::storage::people::{PersonInput, PersonKind};
use crate::storage::tenants::{self, TenantKind};

/// The password of every demo account that has one.
pub const DEMO_PASSWORD: &str = "linli-demo-2026";
/// The TOTP secret of every demo admin (base32), so `linli auth totp-code` can answer.
pub const DEMO_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// The first demo resident's phone: its presence tells that the demo was seeded.
pub const DEMO_PHONE: &str = "13800000001";

/// (tenant, phone, name, kind, id number, household, address, tags, password?, role)
type DemoPerson = (
    &'static str,
    &'static str,
    &'static str,
    PersonKind,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static [&'static str],
    bool,
    Option<(&'static str, &'static str)>,
);

/// (id, tenant, kind, name, location, wearer's phone)
type DemoDevice = (
    &'static str,
    &'static str,
    DeviceKind,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// The demo devices: a barrier and a parking space at 东村, 李桂兰's emergency button and
/// 张秀英's wristband, a gate at 西村.
pub const DEMO_DEVICES: &[DemoDevice] = &[
    (
        "dongcun-gate-1",
        "dongcun",
        DeviceKind::Barrier,
        "东村村口道闸",
        "东村村委会东侧入口",
        None,
    ),
    (
        "dongcun-space-1",
        "dongcun",
        DeviceKind::ParkingSensor,
        "村委会停车场 1 号车位",
        "东村村委会停车场",
        None,
    ),
    (
        "dongcun-sos-li",
        "dongcun",
        DeviceKind::EmergencyButton,
        "李桂兰家紧急呼叫按钮",
        "东村二组8号",
        Some("13800000003"),
    ),
    (
        "dongcun-band-zhang",
        "dongcun",
        DeviceKind::Wearable,
        "张秀英的健康手环",
        "东村一组3号",
        Some("13800000001"),
    ),
    (
        "xicun-gate-1",
        "xicun",
        DeviceKind::Gate,
        "西村文化礼堂门禁",
        "西村文化礼堂",
        None,
    ),
];

/// The demo community staff member (东村), who opens the demo topic.
pub const DEMO_STAFF_PHONE: &str = "13900000002";

/// The demo car: 张秀英's, registered with the parking plugin in 东村.
pub const DEMO_PLATE: &str = "浙A12345";

/// The demo people. Phones are the sign-in names.
pub const DEMO_PEOPLE: &[DemoPerson] = &[
    (
        "dongcun",
        "13800000001",
        "张秀英",
        PersonKind::Resident,
        Some("330122194803150028"),
        Some("东村一组3号"),
        Some("青山县东溪镇东村一组3号"),
        &["elderly"],
        true,
        None,
    ),
    (
        "dongcun",
        "13800000003",
        "李桂兰",
        PersonKind::Resident,
        Some("330122194201010044"),
        Some("东村二组8号"),
        Some("青山县东溪镇东村二组8号"),
        &["elderly", "living-alone", "disabled"],
        false,
        None,
    ),
    (
        "xicun",
        "13800000002",
        "王建国",
        PersonKind::Resident,
        Some("330122198607120030"),
        Some("西村五组1号"),
        Some("青山县东溪镇西村五组1号"),
        &["party-member"],
        true,
        None,
    ),
    (
        "dongcun",
        "13900000001",
        "刘网格",
        PersonKind::Staff,
        Some("330122197505050057"),
        None,
        None,
        &[],
        true,
        Some(("dongcun", "grid-worker")),
    ),
    (
        "dongcun",
        "13900000002",
        "陈社区",
        PersonKind::Staff,
        Some("330122198008080065"),
        None,
        None,
        &[],
        true,
        Some(("dongcun", "community-staff")),
    ),
    (
        "dongxi",
        "13900000011",
        "赵系统",
        PersonKind::Staff,
        None,
        None,
        None,
        &[],
        true,
        Some(("dongxi", "system-admin")),
    ),
    (
        "dongxi",
        "13900000012",
        "钱安全",
        PersonKind::Staff,
        None,
        None,
        None,
        &[],
        true,
        Some(("dongxi", "security-admin")),
    ),
    (
        "qingshan",
        "13900000013",
        "孙审计",
        PersonKind::Staff,
        None,
        None,
        None,
        &[],
        true,
        Some(("qingshan", "audit-admin")),
    ),
];

impl Platform {
    /// On an empty database: create the demo county (one township, two villages, a grid),
    /// its people, and install every `*.wasm` in `demo_plugins_dir` in both villages. Returns
    /// whether it seeded.
    ///
    /// On a database that already holds the demo county, the demo plugins it still has
    /// installed are upgraded in place from the directory when their component changed
    /// (rebuilt after a pull): data and grants stay, nothing is installed anew, and one that
    /// now needs more grants keeps its old version with a warning.
    ///
    /// Replicas starting together on an empty database seed it once: the first claims the
    /// work (`host_markers`), the others wait for it to finish and then carry on as on a
    /// seeded database.
    pub async fn seed_demo(&self) -> anyhow::Result<bool> {
        use crate::storage::markers::{self, Claim};
        if !self.config.seed_demo {
            return Ok(false);
        }
        const MARKER: &str = "demo-seed";
        let me = format!(
            "pid-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let mut waited = false;
        loop {
            match markers::claim(&self.db, MARKER, &me, 10 * 60_000).await? {
                Claim::Ours => break,
                Claim::Done => {
                    if self.demo_seeded().await? {
                        self.upgrade_demo_plugins().await?;
                    }
                    return Ok(false);
                }
                Claim::Busy => {
                    if !waited {
                        tracing::info!("another replica is seeding the demo county; waiting");
                        waited = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            }
        }
        if tenants::count(&self.db).await? > 0 {
            // A database from before the claim, or one set up by hand.
            markers::done(&self.db, MARKER).await?;
            if self.demo_seeded().await? {
                self.upgrade_demo_plugins().await?;
            }
            return Ok(false);
        }
        match self.seed_demo_county().await {
            Ok(()) => {
                markers::done(&self.db, MARKER).await?;
                Ok(true)
            }
            Err(e) => {
                let _ = markers::release(&self.db, MARKER, &me).await;
                Err(e)
            }
        }
    }

    /// Create the demo county on an empty database (see [`Self::seed_demo`]).
    async fn seed_demo_county(&self) -> anyhow::Result<()> {
        let system = Principal::System;
        let tree = [
            (
                "qingshan",
                None,
                TenantKind::County,
                "青山县",
                "Qingshan County",
            ),
            (
                "dongxi",
                Some("qingshan"),
                TenantKind::Township,
                "东溪镇",
                "Dongxi Town",
            ),
            (
                "dongcun",
                Some("dongxi"),
                TenantKind::Village,
                "东村",
                "Dong Village",
            ),
            (
                "xicun",
                Some("dongxi"),
                TenantKind::Village,
                "西村",
                "Xi Village",
            ),
            (
                "dongcun-1",
                Some("dongcun"),
                TenantKind::Grid,
                "东村第一网格",
                "Dong Village Grid 1",
            ),
        ];
        for (id, parent, kind, zh, en) in tree {
            self.create_tenant(&system, id, parent, kind, zh, en)
                .await?;
        }
        for (tenant, phone, name, kind, id_number, household, address, tags, password, role) in
            DEMO_PEOPLE
        {
            let input = PersonInput {
                name: (*name).into(),
                phone: Some((*phone).into()),
                id_number: id_number.map(str::to_owned),
                birth_date: id_number
                    .map(|id| format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14])),
                household: household.map(str::to_owned),
                address: address.map(str::to_owned),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            };
            let person = self
                .create_person(
                    &system,
                    tenant,
                    *kind,
                    &input,
                    password.then_some(DEMO_PASSWORD),
                )
                .await
                .with_context(|| format!("demo person {phone}"))?;
            if let Some((at, role)) = role {
                // The demo admins share a published secret, so `linli auth totp-code`
                // answers for them; real admins enrol their own with an activation code.
                if crate::identity::THREE_ADMINS.contains(role) {
                    self.enrol_totp(&system, &person.id, Some(DEMO_TOTP_SECRET))
                        .await?;
                }
                self.assign_role(&system, &person.id, at, role).await?;
            }
        }
        for (id, tenant, kind, name, location, wearer) in DEMO_DEVICES {
            let person = match wearer {
                Some(phone) => crate::storage::people::get_by_phone(&self.db, phone)
                    .await?
                    .map(|p| p.id),
                None => None,
            };
            let input = DeviceInput {
                id: (*id).into(),
                kind: *kind,
                name: (*name).into(),
                location: (*location).into(),
                vendor: "演示厂商 Demo Devices".into(),
                model: "DEMO-1".into(),
                person,
                status: DeviceStatus::Active,
            };
            self.create_device(&system, tenant, &input)
                .await
                .with_context(|| format!("demo device {id}"))?;
        }
        tracing::info!(
            "seeded the demo county: qingshan > dongxi > dongcun (grid dongcun-1), xicun; {} people, {} devices",
            DEMO_PEOPLE.len(),
            DEMO_DEVICES.len()
        );
        if let Some(dir) = &self.config.demo_plugins_dir {
            for path in wasm_files(dir)? {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let grants = GrantChoice {
                    required: true,
                    names: vec!["identity".into(), "log".into()],
                    names_if_asked: true,
                    ..GrantChoice::default()
                };
                for village in ["dongcun", "xicun"] {
                    self.install(&system, village, &bytes, &grants)
                        .await
                    .map(|r| {
                        tracing::info!(village, plugin = %r.installation.plugin, version = %r.installation.version, grants = ?r.installation.grants, "demo plugin installed")
                    })
                    .unwrap_or_else(|e| {
                        tracing::warn!(village, file = %path.display(), error = %e, "demo plugin not installed")
                    });
                }
            }
            self.seed_demo_topic().await;
            self.seed_demo_elder().await;
            self.seed_demo_car().await;
        } else {
            tracing::warn!("no demo_plugins_dir configured: the demo county has no plugins");
        }
        Ok(())
    }

    /// Whether this database holds the demo county (its first resident is there).
    pub async fn demo_seeded(&self) -> anyhow::Result<bool> {
        Ok(crate::storage::people::get_by_phone(&self.db, DEMO_PHONE)
            .await?
            .is_some())
    }

    /// Upgrade the demo plugins installed in the demo villages whose file changed.
    async fn upgrade_demo_plugins(&self) -> anyhow::Result<()> {
        let Some(dir) = &self.config.demo_plugins_dir else {
            return Ok(());
        };
        for path in wasm_files(dir)? {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let (hash, _, metadata) = match self.inspect("dongcun", Vec::new(), &bytes).await {
                Ok(inspected) => inspected,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "demo plugin not loadable");
                    continue;
                }
            };
            for village in ["dongcun", "xicun"] {
                let Some(row) = installs::get(&self.db, village, &metadata.id).await? else {
                    continue;
                };
                if row.component_hash == hash {
                    continue;
                }
                match self
                    .install(&Principal::System, village, &bytes, &GrantChoice::default())
                    .await
                {
                    Ok(r) => {
                        tracing::info!(village, plugin = %metadata.id, from = %row.version, to = %r.installation.version, "demo plugin upgraded")
                    }
                    Err(e) => {
                        tracing::warn!(village, plugin = %metadata.id, error = %e, "demo plugin not upgraded; it keeps its installed version")
                    }
                }
            }
        }
        Ok(())
    }

    /// With the elderly-care plugin in 东村: its community staff member puts 李桂兰 on the
    /// roster with her emergency button, 张秀英 as her emergency contact.
    async fn seed_demo_elder(&self) {
        let result: anyhow::Result<()> = async {
            if installs::get(&self.db, "dongcun", "elderly-care")
                .await?
                .is_none()
            {
                return Ok(());
            }
            let person = |phone: &'static str| async move {
                crate::storage::people::get_by_phone(&self.db, phone)
                    .await?
                    .map(|p| p.id)
                    .ok_or_else(|| anyhow::anyhow!("demo person {phone} missing"))
            };
            let body = serde_json::json!({
                "person": person("13800000003").await?,
                "button": "dongcun-sos-li",
                "contacts": person("13800000001").await?,
            });
            let r = self.as_demo_staff("elderly-care", "/elders", &body).await?;
            anyhow::ensure!(
                r.status == 201,
                "the plugin answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            // Ids only: the log never names a person.
            tracing::info!("demo elder on the roster in dongcun: button dongcun-sos-li");
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "demo elder not enrolled");
        }
    }

    /// With the parking plugin in 东村: its community staff member registers 张秀英's car,
    /// 浙A12345, so the demo gate opens for it (and for no unknown car).
    async fn seed_demo_car(&self) {
        let result: anyhow::Result<()> = async {
            if installs::get(&self.db, "dongcun", "parking")
                .await?
                .is_none()
            {
                return Ok(());
            }
            let owner = crate::storage::people::get_by_phone(&self.db, "13800000001")
                .await?
                .ok_or_else(|| anyhow::anyhow!("demo person 13800000001 missing"))?;
            let body = serde_json::json!({ "person": owner.id, "plate": DEMO_PLATE });
            let r = self
                .as_demo_staff("parking", "/admin/plates", &body)
                .await?;
            anyhow::ensure!(
                r.status == 200,
                "the plugin answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            tracing::info!("demo car registered in dongcun (a plate of the demo household)");
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "demo car not registered");
        }
    }

    /// POST `body` to `plugin` at 东村 as its demo community staff member.
    async fn as_demo_staff(
        &self,
        plugin: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<crate::runtime::bindings::Response> {
        let SignIn::Session { token, .. } = self
            .sign_in_password(DEMO_STAFF_PHONE, DEMO_PASSWORD, "demo-seed")
            .await?
        else {
            anyhow::bail!("the demo staff member needs no second factor");
        };
        let session = self.session(&token).await?;
        let request = Request {
            method: "POST".into(),
            path: path.into(),
            query: String::new(),
            headers: vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: serde_json::to_vec(body)?,
        };
        let r = self
            .handle_request(Some(&session), "dongcun", plugin, "demo-seed", request)
            .await;
        self.sign_out(&session).await?;
        Ok(r?)
    }

    /// With the consultation plugin in 东村: its community staff member opens a topic that
    /// is open for a week, through the plugin like anyone would (signed in, audited).
    async fn seed_demo_topic(&self) {
        let result: anyhow::Result<()> = async {
            if installs::get(&self.db, "dongcun", "consultation").await?.is_none() {
                return Ok(());
            }
            let now = crate::storage::now_ms() + 8 * 3600 * 1000;
            let local = |ms: i64| {
                let secs = ms / 1000;
                let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
                let rest = secs.rem_euclid(86_400);
                format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}", rest / 3600, rest % 3600 / 60)
            };
            let body = serde_json::json!({
                "title": "是否用村集体资金修缮村东道路",
                "description": "村东道路年久失修，雨天积水。村委会提议用村集体资金约 12 万元修缮，请各位村民发表意见并投票。",
                "options": "同意\n不同意\n弃权",
                "eligibility": "adults",
                "ballot": "secret",
                "quorum": "majority",
                "allow_change": true,
                "opens_at": local(now - 3_600_000),
                "closes_at": local(now + 7 * 86_400_000),
            });
            let r = self.as_demo_staff("consultation", "/topics", &body).await?;
            anyhow::ensure!(
                r.status == 201,
                "the plugin answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            tracing::info!("demo topic opened in dongcun: {}", String::from_utf8_lossy(&r.body));
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "demo topic not opened");
        }
    }
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `*.wasm` files directly in `dir`, sorted.
fn wasm_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading demo plugins dir {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The demo accounts as a table for the run command to print (zh first, then English).
pub fn demo_accounts() -> String {
    let mut out = format!(
        "演示账号 / demo accounts (密码 / password: {DEMO_PASSWORD}; 管理员另需动态口令 / admins also need a TOTP code: `linli auth totp-code <phone>`)\n"
    );
    for (tenant, phone, name, kind, _, _, _, tags, password, role) in DEMO_PEOPLE {
        let what = match role {
            Some((at, role)) => format!("{role} @ {at}"),
            None => format!("{} @ {tenant}", kind.as_str()),
        };
        let extra = if *password {
            String::new()
        } else {
            " (无密码，短信验证码登录 / no password: sign in by SMS code)".to_owned()
        };
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", tags.join(", "))
        };
        out.push_str(&format!("    {phone}  {name}  {what}{tags}{extra}\n"));
    }
    out.push_str(&format!(
        "演示设备 / demo devices: linli device simulate dongcun-sos-li --press   (李桂兰的紧急呼叫 / 李桂兰's emergency button)\n\
         \x20                        linli device simulate dongcun-gate-1 --plate {DEMO_PLATE}   (已登记车辆 / a registered car; try any other plate)\n"
    ));
    out
}
