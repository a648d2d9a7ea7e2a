//! People (residents, staff, vendors) and the roles they hold at tenant nodes.
//!
//! Fields are stored in full; everything that leaves the host for a plugin or a list view is
//! masked by `identity::mask` unless a grant or a permission says otherwise.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Db, Result, StorageError, now_ms};

/// What a person is to the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PersonKind {
    /// 居民
    Resident,
    /// 工作人员 (grid workers, community staff, admins)
    Staff,
    /// 插件开发商
    Vendor,
}

impl PersonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonKind::Resident => "resident",
            PersonKind::Staff => "staff",
            PersonKind::Vendor => "vendor",
        }
    }

    pub fn parse(s: &str) -> Option<PersonKind> {
        Some(match s {
            "resident" => PersonKind::Resident,
            "staff" => PersonKind::Staff,
            "vendor" => PersonKind::Vendor,
            _ => return None,
        })
    }
}

/// A person's record as stored (full values: never hand this to a plugin or a list view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    /// Opaque id, `p-` and 20 hex digits.
    pub id: String,
    pub kind: PersonKind,
    /// Home tenant: the village, community, grid or household the person belongs to (staff:
    /// where they work).
    pub tenant: String,
    pub name: String,
    pub phone: Option<String>,
    /// 居民身份证号 (18 characters).
    pub id_number: Option<String>,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    pub household: Option<String>,
    pub address: Option<String>,
    pub tags: Vec<String>,
    /// `active`, or `erased` after an erasure request (fields anonymised).
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The fields of a person to create or update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub id_number: Option<String>,
    #[serde(default)]
    pub birth_date: Option<String>,
    #[serde(default)]
    pub household: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Tags that mark a special category of personal information (PIPL art. 28): masked unless
/// the plugin holds `identity.tags`, and never shown in list views.
pub const SENSITIVE_TAGS: &[&str] = &[
    "disabled",
    "party-member",
    "veteran",
    "low-income",
    "special-care",
];

/// The tags linli knows, with the Chinese words a roster may use for them (the import takes
/// either; the shell shows the first word).
pub const KNOWN_TAGS: &[(&str, &[&str])] = &[
    ("elderly", &["老年人", "老人"]),
    ("living-alone", &["独居", "独居老人"]),
    ("disabled", &["残疾人", "残疾"]),
    ("party-member", &["党员"]),
    ("veteran", &["退役军人"]),
    ("low-income", &["低收入", "低保"]),
    ("special-care", &["特殊关爱", "重点关爱"]),
];

/// A roster's word for a tag: a known tag's Chinese word becomes the tag, anything else is
/// taken as written, lower-cased (and then checked by [`valid_tag`]).
pub fn tag_for_word(word: &str) -> String {
    let word = word.trim();
    KNOWN_TAGS
        .iter()
        .find(|(_, words)| words.contains(&word))
        .map(|(tag, _)| (*tag).to_owned())
        .unwrap_or_else(|| word.to_lowercase())
}

/// Tags the import and the API accept (kebab-case; free tags must match `[a-z][a-z0-9-]{0,31}`).
pub fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 32
        && t.starts_with(|c: char| c.is_ascii_lowercase())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A new person id.
pub fn new_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("p-{}", &u[..20])
}

/// Check every field; the message names the field (zh / en).
pub fn validate(input: &PersonInput) -> std::result::Result<(), (String, String)> {
    let err = |field: &str, msg: String| Err((field.to_owned(), msg));
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 50 {
        return err(
            "name",
            "姓名须为 1–50 个字符 / name must be 1–50 characters".into(),
        );
    }
    if let Some(p) = &input.phone
        && !(p.len() == 11 && p.starts_with('1') && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return err(
            "phone",
            "手机号须为 11 位数字，以 1 开头 / phone must be 11 digits starting with 1".into(),
        );
    }
    if let Some(id) = &input.id_number
        && !valid_id_number(id)
    {
        return err(
            "id_number",
            "身份证号无效（18 位，校验码不符） / invalid resident ID number (18 characters with a valid check digit)".into(),
        );
    }
    if let Some(d) = &input.birth_date
        && !valid_date(d)
    {
        return err(
            "birth_date",
            "出生日期须为 YYYY-MM-DD / birth_date must be YYYY-MM-DD".into(),
        );
    }
    for (field, value, max) in [
        ("household", &input.household, 100),
        ("address", &input.address, 200),
    ] {
        if let Some(v) = value
            && (v.trim().is_empty() || v.chars().count() > max)
        {
            return err(
                field,
                format!("{field} 须为 1–{max} 个字符 / {field} must be 1–{max} characters"),
            );
        }
    }
    if input.tags.len() > 32 {
        return err("tags", "标签最多 32 个 / at most 32 tags".into());
    }
    if let Some(t) = input.tags.iter().find(|t| !valid_tag(t)) {
        let words: Vec<&str> = KNOWN_TAGS.iter().map(|(_, w)| w[0]).collect();
        return err(
            "tags",
            format!(
                "标签无效 / invalid tag {t:?}: 可用 {}，或小写字母、数字和 - 组成的标签 / use one of those or lower-case letters, digits and '-' (≤ 32)",
                words.join("、")
            ),
        );
    }
    Ok(())
}

pub fn valid_date(d: &str) -> bool {
    let b = d.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |s: &str| s.parse::<u32>().ok();
    match (num(&d[..4]), num(&d[5..7]), num(&d[8..])) {
        (Some(y), Some(m), Some(day)) => {
            let days = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
                2 => 28,
                _ => return false,
            };
            (1900..=2100).contains(&y) && (1..=days).contains(&day)
        }
        _ => false,
    }
}

/// GB 11643-1999: 17 digits and an ISO 7064 MOD 11-2 check character (0-9 or X).
pub fn valid_id_number(id: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let birth = format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14]);
    CHECK[(sum % 11) as usize] == b[17].to_ascii_uppercase() && valid_date(&birth)
}

const COLUMNS: &str = "id, kind, tenant_id, name, phone, id_number, birth_date, household, address, tags, status, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Person> {
    let kind: String = row.try_get("kind")?;
    let tags: String = row.try_get("tags")?;
    Ok(Person {
        id: row.try_get("id")?,
        kind: PersonKind::parse(&kind)
            .ok_or_else(|| StorageError::Invalid(format!("stored person kind {kind:?}")))?,
        tenant: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        id_number: row.try_get("id_number")?,
        birth_date: row.try_get("birth_date")?,
        household: row.try_get("household")?,
        address: row.try_get("address")?,
        tags: serde_json::from_str(&tags)
            .map_err(|e| StorageError::Invalid(format!("stored tags: {e}")))?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The one answer for a phone or ID number that cannot be used: the same whether its holder
/// lives in the caller's place or elsewhere in the county, so a refusal tells nothing about
/// who has it or where.
pub const TAKEN: &str = "手机号或身份证号已登记，不能重复登记；居民迁入须由其现属村社或乡镇办理 / this phone or ID number is already registered; a person moving here is transferred by their current village or the township";

/// How an upsert matched an existing person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    Created,
    /// Which fields changed (names, never values), and the home the person moved from.
    Updated {
        fields: Vec<&'static str>,
        moved_from: Option<String>,
    },
    Unchanged,
}

/// The person holding `input`'s ID number, else its phone; and whether the other natural key
/// belongs to someone else (then the input cannot be used at all).
async fn matching(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    input: &PersonInput,
) -> Result<(Option<Person>, bool)> {
    let mut found: Vec<Person> = Vec::new();
    for (column, value) in [("id_number", &input.id_number), ("phone", &input.phone)] {
        if let Some(v) = value {
            let sql = format!("SELECT {COLUMNS} FROM people WHERE {column} = $1");
            if let Some(row) = sqlx::query(&sql).bind(v).fetch_optional(&mut **tx).await? {
                let p = from_row(&row)?;
                if !found.iter().any(|f| f.id == p.id) {
                    found.push(p);
                }
            }
        }
    }
    let split = found.len() > 1;
    Ok((found.into_iter().next(), split))
}

/// The id of whoever holds `input`'s ID number, else its phone.
pub async fn holder_of(db: &Db, input: &PersonInput) -> Result<Option<String>> {
    for (column, value) in [("id_number", &input.id_number), ("phone", &input.phone)] {
        if let Some(v) = value {
            let sql = format!("SELECT id FROM people WHERE {column} = $1");
            if let Some(row) = sqlx::query(&sql).bind(v).fetch_optional(db.pool()).await? {
                return Ok(Some(row.try_get(0)?));
            }
        }
    }
    Ok(None)
}

/// Insert a new person; [`TAKEN`] if the phone or ID number is anyone's already. Never
/// touches an existing record. Runs inside the caller's transaction.
pub(crate) async fn create_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    kind: PersonKind,
    tenant: &str,
    input: &PersonInput,
    now: i64,
    created_by: &str,
) -> Result<String> {
    let (existing, split) = matching(tx, input).await?;
    if existing.is_some() || split {
        return Err(StorageError::Conflict(TAKEN.into()));
    }
    insert_in(tx, kind, tenant, input, now, created_by).await
}

async fn insert_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    kind: PersonKind,
    tenant: &str,
    input: &PersonInput,
    now: i64,
    created_by: &str,
) -> Result<String> {
    let id = new_id();
    let tags = serde_json::to_string(&input.tags).expect("tags serialise");
    let sql = format!(
        "INSERT INTO people ({COLUMNS}, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11, $11, $12)"
    );
    sqlx::query(&sql)
        .bind(&id)
        .bind(kind.as_str())
        .bind(tenant)
        .bind(input.name.trim())
        .bind(input.phone.as_deref())
        .bind(input.id_number.as_deref())
        .bind(input.birth_date.as_deref())
        .bind(input.household.as_deref())
        .bind(input.address.as_deref())
        .bind(&tags)
        .bind(now)
        .bind(created_by)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Who registered `person` (a person id, `admin` or `system`), if recorded.
pub async fn created_by(db: &Db, person: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT created_by FROM people WHERE id = $1")
        .bind(person)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(r) => r.try_get(0)?,
        None => None,
    })
}

/// The bounds of an upsert: where the caller may manage people, which fields to keep as
/// stored, and who registers anyone new.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upsert<'a> {
    pub reach: &'a [String],
    pub keep: &'a [&'a str],
    pub created_by: &'a str,
}

/// Insert a person, or update the one with the same ID number (else the same phone): the
/// natural keys that make re-importing a roster update instead of duplicate. Runs inside the
/// caller's transaction.
///
/// `reach` is where the caller may manage people (the importing tenant's subtree): a match
/// whose home is outside it — or who is of another kind, or erased, or whose phone and ID
/// number belong to two different people — is refused with [`TAKEN`] and left untouched.
/// Fields named in `keep` (columns the sheet does not have) keep their stored values.
pub(crate) async fn upsert_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    kind: PersonKind,
    tenant: &str,
    input: &PersonInput,
    now: i64,
    how: &Upsert<'_>,
) -> Result<(String, Upserted)> {
    let Upsert {
        reach,
        keep,
        created_by,
    } = *how;
    let (existing, split) = matching(tx, input).await?;
    let merged;
    let input = match &existing {
        Some(p) if !keep.is_empty() => {
            let mut m = input.clone();
            let kept = |f: &str| keep.contains(&f);
            if kept("phone") {
                m.phone = p.phone.clone();
            }
            if kept("id_number") {
                m.id_number = p.id_number.clone();
            }
            if kept("birth_date") {
                m.birth_date = p.birth_date.clone();
            }
            if kept("household") {
                m.household = p.household.clone();
            }
            if kept("address") {
                m.address = p.address.clone();
            }
            if kept("tags") {
                m.tags = p.tags.clone();
            }
            merged = m;
            &merged
        }
        _ => input,
    };
    let Some(p) = existing else {
        return Ok((
            insert_in(tx, kind, tenant, input, now, created_by).await?,
            Upserted::Created,
        ));
    };
    if split || p.kind != kind || p.status != "active" || !reach.contains(&p.tenant) {
        return Err(StorageError::Conflict(TAKEN.into()));
    }
    let mut fields = Vec::new();
    let name = input.name.trim();
    for (field, same) in [
        ("tenant", p.tenant == tenant),
        ("name", p.name == name),
        ("phone", p.phone == input.phone),
        ("id_number", p.id_number == input.id_number),
        ("birth_date", p.birth_date == input.birth_date),
        ("household", p.household == input.household),
        ("address", p.address == input.address),
        ("tags", p.tags == input.tags),
    ] {
        if !same {
            fields.push(field);
        }
    }
    if fields.is_empty() {
        return Ok((p.id, Upserted::Unchanged));
    }
    let tags = serde_json::to_string(&input.tags).expect("tags serialise");
    sqlx::query(
        "UPDATE people SET tenant_id = $1, name = $2, phone = $3, id_number = $4, \
         birth_date = $5, household = $6, address = $7, tags = $8, updated_at = $9 \
         WHERE id = $10",
    )
    .bind(tenant)
    .bind(name)
    .bind(input.phone.as_deref())
    .bind(input.id_number.as_deref())
    .bind(input.birth_date.as_deref())
    .bind(input.household.as_deref())
    .bind(input.address.as_deref())
    .bind(&tags)
    .bind(now)
    .bind(&p.id)
    .execute(&mut **tx)
    .await?;
    let moved_from = (p.tenant != tenant).then_some(p.tenant);
    Ok((p.id, Upserted::Updated { fields, moved_from }))
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Person>> {
    let sql = format!("SELECT {COLUMNS} FROM people WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get_by_phone(db: &Db, phone: &str) -> Result<Option<Person>> {
    let sql = format!("SELECT {COLUMNS} FROM people WHERE phone = $1 AND status = 'active'");
    let row = sqlx::query(&sql)
        .bind(phone)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kind: Option<PersonKind>,
    /// All of these tags.
    pub tags: Vec<String>,
    pub household: Option<String>,
    /// Born on or before this date (`YYYY-MM-DD`): adults on a given day.
    pub born_on_or_before: Option<String>,
}

/// Active people matching `filter` in `tenants`, counted: how many, and in how many
/// households (a person with no household counts as one).
pub async fn count(db: &Db, tenants: &[String], filter: &Filter) -> Result<(u64, u64)> {
    let mut people = 0u64;
    let mut households = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = list(db, tenants, filter, after.as_deref(), 1000).await?;
        for p in &page {
            people += 1;
            households.insert(p.household.clone().unwrap_or_else(|| format!("\0{}", p.id)));
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.id.clone()),
            _ => return Ok((people, households.len() as u64)),
        }
    }
}

/// Active people whose home tenant is one of `tenants`, matching `filter`, ordered by id,
/// after `after` (a cursor: the last id of the previous page), at most `limit`.
pub async fn list(
    db: &Db,
    tenants: &[String],
    filter: &Filter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Person>> {
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql =
        format!("SELECT {COLUMNS} FROM people WHERE status = 'active' AND tenant_id IN (");
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    sql.push_str(
        &tenants
            .iter()
            .map(|_| next())
            .collect::<Vec<_>>()
            .join(", "),
    );
    sql.push(')');
    if filter.kind.is_some() {
        sql.push_str(&format!(" AND kind = {}", next()));
    }
    if filter.household.is_some() {
        sql.push_str(&format!(" AND household = {}", next()));
    }
    if filter.born_on_or_before.is_some() {
        sql.push_str(&format!(
            " AND birth_date IS NOT NULL AND birth_date <= {}",
            next()
        ));
    }
    if after.is_some() {
        sql.push_str(&format!(" AND id > {}", next()));
    }
    // Tags are filtered below (a JSON array in a TEXT column on both backends), so page
    // through more rows than asked for until enough match.
    sql.push_str(&format!(" ORDER BY id LIMIT {}", next()));
    let mut out = Vec::new();
    let mut cursor = after.map(str::to_owned);
    loop {
        let mut q = sqlx::query(&sql);
        for t in tenants {
            q = q.bind(t);
        }
        if let Some(k) = filter.kind {
            q = q.bind(k.as_str());
        }
        if let Some(h) = &filter.household {
            q = q.bind(h);
        }
        if let Some(b) = &filter.born_on_or_before {
            q = q.bind(b);
        }
        if let Some(c) = &cursor {
            q = q.bind(c);
        }
        let batch = i64::from(limit.max(1)) * if filter.tags.is_empty() { 1 } else { 4 };
        let rows = q.bind(batch).fetch_all(db.pool()).await?;
        let fetched = rows.len() as i64;
        for row in &rows {
            let p = from_row(row)?;
            cursor = Some(p.id.clone());
            if filter.tags.iter().all(|t| p.tags.contains(t)) {
                out.push(p);
                if out.len() >= limit as usize {
                    return Ok(out);
                }
            }
        }
        if fetched < batch {
            return Ok(out);
        }
    }
}

/// Replace a person's fields with anonymous values (erasure on request), keep the row so the
/// audit log's references still resolve, and end their sessions and roles.
pub async fn anonymise(db: &Db, id: &str) -> Result<()> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        let n = sqlx::query(
            "UPDATE people SET name = '已注销', phone = NULL, id_number = NULL, birth_date = NULL, \
             household = NULL, address = NULL, tags = '[]', status = 'erased', updated_at = $1 \
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StorageError::NotFound(format!("person {id}")));
        }
        for table in ["sessions", "credentials", "role_assignments", "inbox"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE person_id = $1"))
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("UPDATE sessions SET expires_at = 0 WHERE acting_for = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    })
}

// ---- roles ---------------------------------------------------------------------------------

/// A role held at a tenant node (and so in its whole subtree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleAt {
    pub tenant: String,
    pub role: String,
}

pub async fn roles_of(db: &Db, person: &str) -> Result<Vec<RoleAt>> {
    let rows = sqlx::query(
        "SELECT tenant_id, role FROM role_assignments WHERE person_id = $1 ORDER BY tenant_id, role",
    )
    .bind(person)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RoleAt {
                tenant: r.try_get(0)?,
                role: r.try_get(1)?,
            })
        })
        .collect()
}

/// Give `person` `role` at `tenant`, inside the caller's transaction. `conflicts` are roles
/// the person must not hold anywhere at the same time (the three-admins separation).
pub(crate) async fn assign_role_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    person: &str,
    tenant: &str,
    role: &str,
    conflicts: &[&str],
    granted_by: &str,
    now: i64,
) -> Result<bool> {
    {
        for other in conflicts {
            let held = sqlx::query(
                "SELECT tenant_id FROM role_assignments WHERE person_id = $1 AND role = $2",
            )
            .bind(person)
            .bind(*other)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(row) = held {
                let at: String = row.try_get(0)?;
                return Err(StorageError::Conflict(format!(
                    "三员分立：此人已是 {at} 的 {other}，不能再任 {role} / separation of the three admins: this person is already {other} at {at} and cannot also be {role}"
                )));
            }
        }
        let exists = sqlx::query(
            "SELECT 1 FROM role_assignments WHERE person_id = $1 AND tenant_id = $2 AND role = $3",
        )
        .bind(person)
        .bind(tenant)
        .bind(role)
        .fetch_optional(&mut **tx)
        .await?;
        if exists.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO role_assignments (person_id, tenant_id, role, granted_by, granted_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(person)
        .bind(tenant)
        .bind(role)
        .bind(granted_by)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(true)
    }
}

/// Take `role` at `tenant` from `person`, inside the caller's transaction; whether they held it.
pub(crate) async fn revoke_role_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    person: &str,
    tenant: &str,
    role: &str,
) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM role_assignments WHERE person_id = $1 AND tenant_id = $2 AND role = $3",
    )
    .bind(person)
    .bind(tenant)
    .bind(role)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers() {
        assert!(valid_id_number("11010519491231002X"));
        assert!(!valid_id_number("110105194912310021"));
        assert!(!valid_id_number("11010519491231002"));
        assert!(!valid_id_number("11010519491331002X"), "month 13");
    }

    #[test]
    fn tags_from_words() {
        assert_eq!(tag_for_word(" 老年人 "), "elderly");
        assert_eq!(tag_for_word("低保"), "low-income");
        assert_eq!(tag_for_word("Veteran"), "veteran");
        // An unknown word is kept as written, for `valid_tag` to refuse.
        assert_eq!(tag_for_word("五保户"), "五保户");
        assert!(!valid_tag(&tag_for_word("五保户")));
        for (tag, words) in KNOWN_TAGS {
            assert!(valid_tag(tag) && !words.is_empty(), "{tag}");
        }
    }

    #[test]
    fn fields() {
        let ok = PersonInput {
            name: "张三".into(),
            phone: Some("13800138000".into()),
            birth_date: Some("1949-12-31".into()),
            tags: vec!["elderly".into()],
            ..Default::default()
        };
        assert!(validate(&ok).is_ok());
        let bad_phone = PersonInput {
            phone: Some("2380013800".into()),
            ..ok.clone()
        };
        assert_eq!(validate(&bad_phone).unwrap_err().0, "phone");
        let bad_tag = PersonInput {
            tags: vec!["Elderly".into()],
            ..ok.clone()
        };
        assert_eq!(validate(&bad_tag).unwrap_err().0, "tags");
        let bad_date = PersonInput {
            birth_date: Some("1949-02-30".into()),
            ..ok
        };
        assert_eq!(validate(&bad_date).unwrap_err().0, "birth_date");
    }
}
