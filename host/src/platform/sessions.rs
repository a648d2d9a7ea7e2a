//! Signing in and out: password or SMS code, then TOTP for admins; sessions, rotation,
//! lockout; and assisted mode (帮办代办), which is a session of a staff member acting for a
//! resident.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::{Platform, PlatformError};
use crate::identity::auth::{self, code_hash, new_token, token_hash};
use crate::identity::{ActingFor, Me, Permission, PlaceName, Principal, Session, mask, needs_totp};
use crate::storage::people::{self, Person, PersonKind};
use crate::storage::sessions::{self as store, CodeLimits, SessionRow};
use crate::storage::{audit, inbox, now_ms, tenants};

/// How long a half-signed-in admin has to give the TOTP code.
const TOTP_CHALLENGE_MS: i64 = 5 * 60 * 1000;

/// The answer to a successful first factor.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum SignIn {
    /// Signed in: send `Authorization: Bearer <token>` from now on.
    Session {
        token: String,
        expires_at: i64,
        person: String,
    },
    /// An admin: send this challenge with the authenticator's code to `/api/v1/auth/totp`.
    TotpRequired { challenge: String, expires_at: i64 },
}

/// How a sign-in attempt is identified in the audit log.
#[derive(Debug, Clone, Copy)]
enum Method {
    Password,
    Code,
    Totp,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Code => "sms-code",
            Method::Totp => "totp",
        }
    }
}

fn wrong_credentials() -> PlatformError {
    PlatformError::Unauthenticated("手机号或密码/验证码错误 / wrong phone, password or code".into())
}

fn valid_phone(phone: &str) -> bool {
    phone.len() == 11 && phone.starts_with('1') && phone.bytes().all(|b| b.is_ascii_digit())
}

impl Platform {
    /// First factor by password.
    pub async fn sign_in_password(
        &self,
        phone: &str,
        password: &str,
    ) -> Result<SignIn, PlatformError> {
        let person = match people::get_by_phone(&self.db, phone).await? {
            Some(p) => p,
            None => {
                auth::dummy_verify(password);
                return Err(wrong_credentials());
            }
        };
        let creds = self.check_not_locked(&person).await?;
        let ok = creds
            .password_hash
            .as_deref()
            .is_some_and(|h| auth::verify_password(password, h));
        if !ok {
            return Err(self.failed(&person, Method::Password).await);
        }
        self.first_factor_ok(&person, Method::Password).await
    }

    /// Send a sign-in code to `phone` (if a person has it; the answer is the same either way).
    pub async fn request_code(&self, phone: &str) -> Result<(), PlatformError> {
        if !valid_phone(phone) {
            return Err(PlatformError::Invalid(
                "手机号须为 11 位数字 / phone must be 11 digits".into(),
            ));
        }
        let a = &self.config.auth;
        let code = auth::new_code();
        let limits = CodeLimits {
            resend_ms: a.code_resend_secs as i64 * 1000,
            per_window: i64::from(a.codes_per_hour),
            window_ms: 3_600_000,
            ttl_ms: a.code_ttl_secs as i64 * 1000,
        };
        store::put_code(&self.db, phone, &code_hash(phone, &code), limits).await?;
        if people::get_by_phone(&self.db, phone).await?.is_some() {
            self.sms.send(phone, &code).await.map_err(|e| {
                tracing::error!(phone = %mask::phone(phone), error = %e, "SMS not sent");
                PlatformError::Host(anyhow::anyhow!(
                    "短信发送失败 / the SMS could not be sent: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// First factor by SMS code.
    pub async fn sign_in_code(&self, phone: &str, code: &str) -> Result<SignIn, PlatformError> {
        let Some(person) = people::get_by_phone(&self.db, phone).await? else {
            return Err(wrong_credentials());
        };
        self.check_not_locked(&person).await?;
        let ok = store::take_code(
            &self.db,
            phone,
            &code_hash(phone, code),
            i64::from(self.config.auth.code_attempts),
        )
        .await?;
        if !ok {
            return Err(self.failed(&person, Method::Code).await);
        }
        self.first_factor_ok(&person, Method::Code).await
    }

    /// Second factor for admins: the challenge from the first factor and a TOTP code.
    pub async fn sign_in_totp(&self, challenge: &str, code: &str) -> Result<SignIn, PlatformError> {
        let hash = token_hash(challenge);
        let row = store::session(&self.db, &hash)
            .await?
            .filter(|s| s.stage == "totp")
            .ok_or_else(|| {
                PlatformError::Unauthenticated(
                    "登录已过期，请重新登录 / the sign-in challenge expired; sign in again".into(),
                )
            })?;
        let person = people::get(&self.db, &row.person_id)
            .await?
            .ok_or_else(wrong_credentials)?;
        let creds = self.check_not_locked(&person).await?;
        let Some(step) = creds
            .totp_secret
            .as_deref()
            .and_then(|s| auth::totp_step(s, code))
        else {
            return Err(self.failed(&person, Method::Totp).await);
        };
        // Each code signs in once: a replayed one (or an earlier one) is a failure too.
        if !store::take_totp_step(&self.db, &person.id, step as i64).await? {
            return Err(match self.failed(&person, Method::Totp).await {
                locked @ PlatformError::Locked { .. } => locked,
                _ => PlatformError::Unauthenticated(
                    "此动态口令已用过，请等待下一个口令 / this code has been used already; wait for the next one".into(),
                ),
            });
        }
        store::delete_session(&self.db, &hash).await?;
        store::clear_failures(&self.db, &person.id).await?;
        self.new_session(&person, Method::Totp).await
    }

    async fn check_not_locked(&self, person: &Person) -> Result<store::Credentials, PlatformError> {
        let creds = store::credentials(&self.db, &person.id)
            .await?
            .unwrap_or_default();
        if creds.locked_until > now_ms() {
            self.audit_sign_in(person, "locked", Method::Password).await;
            return Err(PlatformError::Locked {
                until: creds.locked_until,
            });
        }
        Ok(creds)
    }

    /// Count a failure (locking the account at `auth.max_failures`) and say so.
    async fn failed(&self, person: &Person, method: Method) -> PlatformError {
        let a = &self.config.auth;
        let locked = store::record_failure(
            &self.db,
            &person.id,
            a.max_failures,
            a.lockout_secs as i64 * 1000,
        )
        .await;
        self.audit_sign_in(person, "failed", method).await;
        match locked {
            Ok(Some(until)) => {
                tracing::warn!(person = %person.id, "account locked after repeated sign-in failures");
                PlatformError::Locked { until }
            }
            Ok(None) => wrong_credentials(),
            Err(e) => e.into(),
        }
    }

    async fn audit_sign_in(&self, person: &Person, outcome: &str, method: Method) {
        let event = audit::Event {
            actor: &person.id,
            tenant: Some(&person.tenant),
            action: "auth.sign-in",
            subject: Some(&person.id),
            outcome,
            detail: serde_json::json!({ "method": method.as_str() }),
            ..audit::Event::default()
        };
        if let Err(e) = audit::append(&self.db, &event).await {
            tracing::error!(error = %e, "could not audit a sign-in");
        }
    }

    async fn first_factor_ok(
        &self,
        person: &Person,
        method: Method,
    ) -> Result<SignIn, PlatformError> {
        store::clear_failures(&self.db, &person.id).await?;
        let roles = people::roles_of(&self.db, &person.id).await?;
        if !needs_totp(&roles) {
            return self.new_session(person, method).await;
        }
        let creds = store::credentials(&self.db, &person.id)
            .await?
            .unwrap_or_default();
        if creds.totp_secret.is_none() {
            return Err(PlatformError::Forbidden(
                "管理员须先登记动态口令，请联系安全管理员 / admins need an enrolled authenticator (TOTP); ask a security admin".into(),
            ));
        }
        let (challenge, hash) = new_token();
        let expires_at = now_ms() + TOTP_CHALLENGE_MS;
        store::create_session(
            &self.db,
            &hash,
            &SessionRow {
                person_id: person.id.clone(),
                stage: "totp".into(),
                acting_for: None,
                reason: None,
                created_at: now_ms(),
                expires_at,
            },
        )
        .await?;
        Ok(SignIn::TotpRequired {
            challenge,
            expires_at,
        })
    }

    async fn new_session(&self, person: &Person, method: Method) -> Result<SignIn, PlatformError> {
        let (token, hash) = new_token();
        let now = now_ms();
        let expires_at = now + self.config.auth.session_ttl_secs as i64 * 1000;
        store::create_session(
            &self.db,
            &hash,
            &SessionRow {
                person_id: person.id.clone(),
                stage: "full".into(),
                acting_for: None,
                reason: None,
                created_at: now,
                expires_at,
            },
        )
        .await?;
        self.audit_sign_in(person, "ok", method).await;
        Ok(SignIn::Session {
            token,
            expires_at,
            person: person.id.clone(),
        })
    }

    /// The signed-in session behind `token` (only a full session: not a TOTP challenge).
    pub async fn session(&self, token: &str) -> Result<Arc<Session>, PlatformError> {
        let hash = token_hash(token);
        let expired = || {
            PlatformError::Unauthenticated(
                "未登录或登录已失效 / not signed in, or the session ended".into(),
            )
        };
        let row = store::session(&self.db, &hash)
            .await?
            .filter(|s| s.stage == "full")
            .ok_or_else(expired)?;
        let person = people::get(&self.db, &row.person_id)
            .await?
            .filter(|p| p.status == "active")
            .ok_or_else(expired)?;
        let acting_for = match (&row.acting_for, &row.reason) {
            (Some(id), reason) => {
                let resident = people::get(&self.db, id)
                    .await?
                    .filter(|p| p.status == "active")
                    .ok_or_else(expired)?;
                Some((resident, reason.clone().unwrap_or_default()))
            }
            (None, _) => None,
        };
        let roles = people::roles_of(&self.db, &person.id).await?;
        Ok(Arc::new(Session {
            token_hash: hash,
            person,
            roles,
            acting_for,
            expires_at: row.expires_at,
        }))
    }

    /// End a session (its token stops working at once).
    pub async fn sign_out(&self, session: &Session) -> Result<(), PlatformError> {
        store::delete_session(&self.db, &session.token_hash).await?;
        let principal = Principal::Person(Arc::new(session.clone()));
        self.audit_as(
            &principal,
            audit::Event {
                tenant: Some(&session.person.tenant),
                action: if session.acting_for.is_some() {
                    "assist.end"
                } else {
                    "auth.sign-out"
                },
                subject: session.acting_for.as_ref().map(|(r, _)| r.id.as_str()),
                outcome: "ok",
                detail: serde_json::json!({}),
                ..audit::Event::default()
            },
        )
        .await
    }

    /// Swap a session's token for a new one with a fresh expiry; the old token stops
    /// working. Assisted sessions keep their end time.
    pub async fn rotate(&self, session: &Session) -> Result<SignIn, PlatformError> {
        let (token, hash) = new_token();
        let expires_at = if session.acting_for.is_some() {
            session.expires_at
        } else {
            now_ms() + self.config.auth.session_ttl_secs as i64 * 1000
        };
        if !store::rotate_session(&self.db, &session.token_hash, &hash, expires_at).await? {
            return Err(PlatformError::Unauthenticated(
                "登录已失效 / the session ended".into(),
            ));
        }
        Ok(SignIn::Session {
            token,
            expires_at,
            person: session.person.id.clone(),
        })
    }

    /// Who the session is.
    pub async fn me(&self, session: &Session) -> Result<Me, PlatformError> {
        let place = tenants::path_tenants(&self.db, &session.person.tenant)
            .await?
            .into_iter()
            .map(|t| PlaceName {
                id: t.id,
                name_zh: t.name_zh,
                name_en: t.name_en,
            })
            .collect();
        Ok(Me {
            person: session.person.clone(),
            place,
            roles: session.roles.clone(),
            acting_for: session.acting_for.as_ref().map(|(r, reason)| ActingFor {
                id: r.id.clone(),
                name: mask::name(&r.name),
                tenant: r.tenant.clone(),
                reason: reason.clone(),
            }),
            expires_at: session.expires_at,
        })
    }

    /// Change one's own password.
    pub async fn change_password(
        &self,
        session: &Session,
        old: &str,
        new: &str,
    ) -> Result<(), PlatformError> {
        if session.acting_for.is_some() {
            return Err(PlatformError::Forbidden(
                "帮办时不能修改密码 / not in assisted mode".into(),
            ));
        }
        let creds = self.check_not_locked(&session.person).await?;
        let ok = creds
            .password_hash
            .as_deref()
            .is_some_and(|h| auth::verify_password(old, h));
        if !ok {
            return Err(self.failed(&session.person, Method::Password).await);
        }
        self.store_password(&session.person.id, new).await?;
        self.audit_as(
            &Principal::Person(Arc::new(session.clone())),
            audit::Event {
                tenant: Some(&session.person.tenant),
                action: "auth.password-change",
                subject: Some(&session.person.id),
                outcome: "ok",
                detail: serde_json::json!({}),
                ..audit::Event::default()
            },
        )
        .await
    }

    pub(super) async fn store_password(&self, person: &str, pw: &str) -> Result<(), PlatformError> {
        auth::check_password_policy(pw).map_err(PlatformError::Invalid)?;
        let pw = pw.to_owned();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(|e| PlatformError::Host(e.into()))??;
        store::set_secret(&self.db, person, store::Secret::Password, Some(&hash)).await?;
        Ok(())
    }

    // ---- assisted mode -------------------------------------------------------------------

    /// A grid worker or community staff member starts acting for `resident` (帮办代办) for
    /// `minutes` with a stated `reason`. Returns a token for a session in which plugins see
    /// the resident as the caller and the staff member as the assistant. The resident is
    /// told in their inbox, and everything done with the token is audited as assisted.
    pub async fn start_assist(
        &self,
        staff: &Session,
        resident: &str,
        reason: &str,
        minutes: u32,
    ) -> Result<SignIn, PlatformError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(PlatformError::Invalid(
                "须说明帮办事由（1–200 字） / a reason of 1–200 characters is required".into(),
            ));
        }
        let max = self.config.auth.assist_max_minutes;
        if minutes == 0 || minutes > max {
            return Err(PlatformError::Invalid(format!(
                "帮办时长须为 1–{max} 分钟 / minutes must be 1–{max} (auth.assist_max_minutes)"
            )));
        }
        let principal = Principal::Person(Arc::new(staff.clone()));
        // By person id, or by phone (what a grid worker knows of an elder).
        let by_phone = resident.len() == 11 && resident.bytes().all(|b| b.is_ascii_digit());
        let no_such =
            || PlatformError::NotFound(format!("居民不存在 / no such resident: {resident}"));
        let found = if by_phone {
            people::get_by_phone(&self.db, resident).await?
        } else {
            people::get(&self.db, resident).await?
        };
        let target = found
            .filter(|p| p.status == "active" && p.kind == PersonKind::Resident)
            .ok_or_else(no_such)?;
        let path = tenants::path(&self.db, &target.tenant).await?;
        if !principal.allows(Permission::Assist, &path) {
            // A phone number outside one's places tells nothing about who has it.
            return Err(if by_phone {
                no_such()
            } else {
                PlatformError::Forbidden(
                    "只能为本人负责的网格或社区的居民帮办 / you can assist only residents of the places you serve".into(),
                )
            });
        }
        let (token, hash) = new_token();
        let now = now_ms();
        let expires_at = (now + i64::from(minutes) * 60_000).min(staff.expires_at);
        store::create_session(
            &self.db,
            &hash,
            &SessionRow {
                person_id: staff.person.id.clone(),
                stage: "full".into(),
                acting_for: Some(target.id.clone()),
                reason: Some(reason.to_owned()),
                created_at: now,
                expires_at,
            },
        )
        .await?;
        let staff_name = mask::name(&staff.person.name);
        let body_zh = format!("工作人员{staff_name}正在为您代办：{reason}。如有疑问请联系社区。");
        let body_en = format!(
            "Staff member {staff_name} is acting for you: {reason}. Contact your community if this is unexpected."
        );
        inbox::push(
            &self.db,
            &inbox::NewMessage {
                person: &target.id,
                tenant: Some(&target.tenant),
                source: "host",
                title_zh: "帮办代办通知",
                title_en: "Someone is acting for you",
                body_zh: &body_zh,
                body_en: &body_en,
            },
        )
        .await?;
        self.audit_as(
            &principal,
            audit::Event {
                tenant: Some(&target.tenant),
                action: "assist.start",
                subject: Some(&target.id),
                outcome: "ok",
                detail: serde_json::json!({ "reason": reason, "minutes": minutes, "expires_at": expires_at }),
                ..audit::Event::default()
            },
        )
        .await?;
        Ok(SignIn::Session {
            token,
            expires_at,
            person: staff.person.id.clone(),
        })
    }

    /// A person's inbox (the resident's own in assisted mode), newest first.
    pub async fn inbox(&self, session: &Session) -> Result<Vec<inbox::Message>, PlatformError> {
        let person = session
            .acting_for
            .as_ref()
            .map_or(&session.person.id, |(r, _)| &r.id);
        Ok(inbox::list(&self.db, person, 200).await?)
    }
}
