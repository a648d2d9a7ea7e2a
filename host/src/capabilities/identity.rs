//! The `identity` capability: who is calling, residents' profiles (masked unless the
//! installation holds the field's grant), residents of the place the call is for, and role
//! checks. Every profile read and list is audited with the plugin, the caller, the assistant
//! in assisted mode, and whose data it was.
//!
//! Limits (each named in the error): resident ids ≤ 64 bytes, ≤ 16 tag filters of ≤ 32
//! bytes, a household filter ≤ 100 characters, pages ≤ `limits.list_page`.

use super::{denied, metadata_only};
use crate::identity::{Caller, mask};
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::linli::plugin::identity::{
    self, Field, FieldValue, Profile, ResidentCount, ResidentFilter, ResidentPage,
};
use crate::runtime::{CallContext, HostState};
use crate::storage::people::{self, Person, PersonKind, SENSITIVE_TAGS};
use crate::storage::{audit, tenants};

const MAX_ID_BYTES: usize = 64;
const MAX_TAG_FILTERS: usize = 16;

fn field_name(f: Field) -> &'static str {
    match f {
        Field::Name => "name",
        Field::Phone => "phone",
        Field::IdNumber => "id-number",
        Field::BirthDate => "birth-date",
        Field::Household => "household",
        Field::Address => "address",
        Field::Tags => "tags",
    }
}

fn internal(e: impl std::fmt::Display) -> WitError {
    WitError::Internal(format!("identity: {e}"))
}

impl HostState {
    fn identity_ready(&self) -> Result<(), WitError> {
        if !self.capabilities_enabled {
            return Err(metadata_only("identity"));
        }
        if self.call.granted("identity")
            || self.call.grants.iter().any(|g| g.starts_with("identity."))
        {
            Ok(())
        } else {
            Err(denied("identity"))
        }
    }
}

/// The helpers work on a clone of the call context, never on the store (which is not
/// `Sync`, so it must not be borrowed across an await).
impl CallContext {
    fn field_granted(&self, f: Field) -> bool {
        self.granted(&format!("identity.{}", field_name(f)))
    }

    fn person_ref(&self, p: &Person) -> identity::Person {
        identity::Person {
            id: p.id.clone(),
            display_name: if self.field_granted(Field::Name) {
                p.name.clone()
            } else {
                mask::name(&p.name)
            },
        }
    }

    fn caller_ref(&self) -> Option<&Caller> {
        self.caller.as_deref()
    }

    /// The tenant the call is for.
    fn served_tenant(&self) -> &str {
        self.served
            .last()
            .map_or(self.scope.tenant.as_str(), String::as_str)
    }

    /// Append an audit record of this call touching `subject`'s data.
    async fn audit_access(
        &self,
        action: &str,
        subject: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), WitError> {
        let (actor, assistant) = match self.caller_ref() {
            Some(c) => (
                c.person.id.as_str(),
                c.assistant.as_ref().map(|(a, _)| a.id.as_str()),
            ),
            None => ("anonymous", None),
        };
        let event = audit::Event {
            actor,
            assistant,
            plugin: Some(&self.scope.plugin),
            tenant: Some(self.served_tenant()),
            action,
            subject,
            outcome: "ok",
            detail,
        };
        // Fail closed: no trace, no data.
        audit::append(&self.db, &event)
            .await
            .map(|_| ())
            .map_err(internal)
    }

    /// The resident `id` if they live in the subtree the call is for.
    async fn resident_in_reach(&self, id: &str) -> Result<Person, WitError> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(WitError::Invalid(format!(
                "居民标识须为 1–{MAX_ID_BYTES} 字节 / a resident id is 1–{MAX_ID_BYTES} bytes"
            )));
        }
        let not_found = || WitError::NotFound(format!("居民不存在 / no such resident here: {id}"));
        let person = people::get(&self.db, id)
            .await
            .map_err(internal)?
            .filter(|p| p.status == "active" && p.kind == PersonKind::Resident)
            .ok_or_else(not_found)?;
        let path = tenants::path(&self.db, &person.tenant)
            .await
            .map_err(internal)?;
        if !path.iter().any(|t| t == self.served_tenant()) {
            return Err(not_found());
        }
        Ok(person)
    }

    fn value_of(&self, p: &Person, f: Field) -> FieldValue {
        let full = self.field_granted(f);
        let opt = |v: &Option<String>, m: fn(&str) -> String| match v {
            None => String::new(),
            Some(v) if full => v.clone(),
            Some(v) => m(v),
        };
        let value = match f {
            Field::Name => {
                if full {
                    p.name.clone()
                } else {
                    mask::name(&p.name)
                }
            }
            Field::Phone => opt(&p.phone, mask::phone),
            Field::IdNumber => opt(&p.id_number, mask::id_number),
            Field::BirthDate => opt(&p.birth_date, mask::birth_date),
            Field::Household => opt(&p.household, mask::household),
            Field::Address => opt(&p.address, mask::address),
            Field::Tags => {
                if full {
                    p.tags.join(",")
                } else {
                    mask::tags(&p.tags).join(",")
                }
            }
        };
        FieldValue {
            field: f,
            value,
            masked: !full,
        }
    }
}

impl identity::Host for HostState {
    async fn current_caller(&mut self) -> Result<Option<identity::Caller>, WitError> {
        self.identity_ready()?;
        let call = &self.call;
        Ok(call.caller_ref().map(|c| identity::Caller {
            person: call.person_ref(&c.person),
            tenant_path: c.tenant_path.clone(),
            roles: c.roles.clone(),
            assistant: c.assistant.as_ref().map(|(a, _)| call.person_ref(a)),
        }))
    }

    async fn get_profile(
        &mut self,
        resident_id: String,
        fields: Vec<Field>,
    ) -> Result<Profile, WitError> {
        self.identity_ready()?;
        let call = self.call.clone();
        let person = call.resident_in_reach(&resident_id).await?;
        let mut wanted: Vec<Field> = Vec::with_capacity(7);
        for f in fields {
            if !wanted.contains(&f) {
                wanted.push(f);
            }
        }
        let values: Vec<FieldValue> = wanted.iter().map(|f| call.value_of(&person, *f)).collect();
        let full: Vec<&str> = values
            .iter()
            .filter(|v| !v.masked)
            .map(|v| field_name(v.field))
            .collect();
        let masked: Vec<&str> = values
            .iter()
            .filter(|v| v.masked)
            .map(|v| field_name(v.field))
            .collect();
        call.audit_access(
            "identity.get-profile",
            Some(&person.id),
            serde_json::json!({ "full": full, "masked": masked }),
        )
        .await?;
        Ok(Profile {
            id: person.id,
            fields: values,
        })
    }

    async fn list_residents(
        &mut self,
        filter: ResidentFilter,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<ResidentPage, WitError> {
        self.identity_ready()?;
        let call = self.call.clone();
        let max = self.limits.list_page;
        check_filter(&call, &filter)?;
        if let Some(c) = &cursor
            && (c.len() > MAX_ID_BYTES || !c.starts_with("p-"))
        {
            return Err(WitError::Invalid("游标无效 / bad cursor".into()));
        }
        let limit = if limit == 0 { max } else { limit.min(max) };
        let subtree = tenants::subtree(&call.db, call.served_tenant())
            .await
            .map_err(internal)?;
        let query = people::Filter {
            kind: Some(PersonKind::Resident),
            tags: filter.tags.clone(),
            household: filter.household.clone(),
            born_on_or_before: filter.born_on_or_before.clone(),
        };
        let page = people::list(&call.db, &subtree, &query, cursor.as_deref(), limit + 1)
            .await
            .map_err(internal)?;
        let more = page.len() > limit as usize;
        let ids: Vec<String> = page
            .into_iter()
            .take(limit as usize)
            .map(|p| p.id)
            .collect();
        call.audit_access(
            "identity.list-residents",
            None,
            serde_json::json!({ "tags": filter.tags, "household": filter.household.is_some(), "count": ids.len() }),
        )
        .await?;
        Ok(ResidentPage {
            next_cursor: if more { ids.last().cloned() } else { None },
            ids,
        })
    }

    async fn count_residents(&mut self, filter: ResidentFilter) -> Result<ResidentCount, WitError> {
        self.identity_ready()?;
        let call = self.call.clone();
        check_filter(&call, &filter)?;
        let subtree = tenants::subtree(&call.db, call.served_tenant())
            .await
            .map_err(internal)?;
        let query = people::Filter {
            kind: Some(PersonKind::Resident),
            tags: filter.tags.clone(),
            household: filter.household.clone(),
            born_on_or_before: filter.born_on_or_before.clone(),
        };
        let (residents, households) = people::count(&call.db, &subtree, &query)
            .await
            .map_err(internal)?;
        call.audit_access(
            "identity.count-residents",
            None,
            serde_json::json!({ "tags": filter.tags, "household": filter.household.is_some(),
                "born_on_or_before": filter.born_on_or_before, "residents": residents, "households": households }),
        )
        .await?;
        Ok(ResidentCount {
            residents,
            households,
        })
    }

    async fn has_role(&mut self, role: String) -> Result<bool, WitError> {
        self.identity_ready()?;
        if role.len() > MAX_ID_BYTES {
            return Err(WitError::Invalid(format!(
                "角色名最长 {MAX_ID_BYTES} 字节 / role names are at most {MAX_ID_BYTES} bytes"
            )));
        }
        Ok(self
            .call
            .caller_ref()
            .is_some_and(|c| c.roles.contains(&role)))
    }
}

/// The limits and grants of a resident filter (named in each error).
fn check_filter(call: &CallContext, filter: &ResidentFilter) -> Result<(), WitError> {
    if filter.tags.len() > MAX_TAG_FILTERS {
        return Err(WitError::Quota(format!(
            "最多 {MAX_TAG_FILTERS} 个标签条件 / at most {MAX_TAG_FILTERS} tag filters"
        )));
    }
    if let Some(t) = filter.tags.iter().find(|t| !people::valid_tag(t)) {
        return Err(WitError::Invalid(format!("标签无效 / invalid tag {t:?}")));
    }
    if filter
        .tags
        .iter()
        .any(|t| SENSITIVE_TAGS.contains(&t.as_str()))
        && !call.field_granted(Field::Tags)
    {
        return Err(denied("identity.tags"));
    }
    if filter
        .household
        .as_ref()
        .is_some_and(|h| h.chars().count() > 100)
    {
        return Err(WitError::Invalid(
            "户过滤条件最长 100 字 / household filter over 100 characters".into(),
        ));
    }
    if filter.household.is_some() && !call.field_granted(Field::Household) {
        return Err(denied("identity.household"));
    }
    if let Some(d) = &filter.born_on_or_before {
        if !people::valid_date(d) {
            return Err(WitError::Invalid(format!(
                "出生日期条件须为 YYYY-MM-DD / born-on-or-before must be YYYY-MM-DD, not {d:?}"
            )));
        }
        if !call.field_granted(Field::BirthDate) {
            return Err(denied("identity.birth-date"));
        }
    }
    Ok(())
}
