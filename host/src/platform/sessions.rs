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
use crate::storage::sessions::{self as store, SessionRow};
use crate::storage::{audit, inbox, now_ms, tenants, throttle};

/// How long a half-signed-in admin has to give the TOTP code (or to enrol).
const TOTP_CHALLENGE_MS: i64 = 5 * 60 * 1000;

/// Wrong codes one sign-in challenge takes before it is gone (sign in again).
const CHALLENGE_ATTEMPTS: i64 = 3;

/// The window of the per-client failure limit.
const CLIENT_WINDOW_MS: i64 = 15 * 60 * 1000;

/// The window of the per-phone failure limit and of the code limits.
const HOUR_MS: i64 = 3_600_000;

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
    /// An admin without an authenticator yet: send this challenge with the activation code
    /// the county root gave them and a new password to `/api/v1/auth/totp/enrol`.
    TotpEnrolRequired { challenge: String, expires_at: i64 },
    /// The authenticator to add (shown to its holder only, this once); then send the
    /// challenge with its first code to `/api/v1/auth/totp`.
    TotpEnrol {
        challenge: String,
        expires_at: i64,
        /// `otpauth://totp/…`, for an authenticator app.
        otpauth_url: String,
        /// The same secret in base32, to type in by hand.
        secret: String,
    },
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

fn busy() -> PlatformError {
    PlatformError::TooMany("登录繁忙，请稍后再试 / sign-in is busy; try again in a moment".into())
}

fn codes_busy() -> PlatformError {
    PlatformError::TooMany(
        "验证码发送繁忙，请稍后再试或使用密码登录 / codes are busy; try again later or sign in with a password (auth.codes_per_hour_total)".into(),
    )
}

fn expired_challenge() -> PlatformError {
    PlatformError::Unauthenticated(
        "登录已过期，请重新登录 / the sign-in challenge expired; sign in again".into(),
    )
}

/// The rate-limit keys of one attempt (see [`throttle`]).
struct Keys {
    /// The client address, for any phone.
    client: String,
    /// The phone, from any client.
    phone: String,
    /// The phone from this client.
    pair: String,
}

impl Keys {
    fn new(db: &crate::storage::Db, phone: &str, client: &str) -> Keys {
        Keys {
            client: throttle::key(db, "c", &[client]),
            phone: throttle::key(db, "p", &[phone]),
            pair: throttle::key(db, "pc", &[phone, client]),
        }
    }
}

/// An attempt's hits, counted before its secret is checked (so parallel attempts cannot all
/// slip through before the first failure is written) and taken back if it succeeds.
struct Reserved {
    hits: Vec<(String, throttle::Hit, throttle::Rule)>,
    /// The phone-from-this-client key, cleared by a success.
    pair: String,
}

fn too_many_from_client(until: i64) -> PlatformError {
    let minutes = ((until - now_ms()) / 60_000 + 1).max(1);
    PlatformError::TooMany(format!(
        "此网络登录失败次数过多，请 {minutes} 分钟后再试 / too many failed sign-ins from this network; try again in {minutes} min"
    ))
}

impl Platform {
    /// The limit of failed sign-ins from one client address.
    fn client_rule(&self) -> throttle::Rule {
        throttle::Rule {
            limit: i64::from(self.config.auth.client_failures),
            window_ms: CLIENT_WINDOW_MS,
            lock_ms: 0,
            min_gap_ms: 0,
        }
    }

    /// Count this attempt against the client, the phone from this client and (passwords)
    /// the phone from everywhere, before anything is checked. A key already blocked refuses
    /// the attempt (429 for the client, 423 for the phone); a key this very attempt blocks
    /// lets it be checked, and locks if it fails. The same for registered and unknown phones.
    async fn reserve_attempt(
        &self,
        keys: &Keys,
        password: bool,
    ) -> Result<Reserved, PlatformError> {
        let a = &self.config.auth;
        let now = now_ms();
        let lockout_ms = a.lockout_secs as i64 * 1000;
        let mut rules = vec![
            (keys.client.clone(), self.client_rule()),
            (
                keys.pair.clone(),
                throttle::Rule {
                    limit: i64::from(a.max_failures),
                    window_ms: lockout_ms,
                    lock_ms: lockout_ms,
                    min_gap_ms: 0,
                },
            ),
        ];
        if password {
            rules.push((
                keys.phone.clone(),
                throttle::Rule {
                    limit: i64::from(a.account_failures),
                    window_ms: HOUR_MS,
                    lock_ms: lockout_ms,
                    min_gap_ms: 0,
                },
            ));
        }
        // A phone already locked (from this client, or everywhere) is refused before anything
        // of it is counted — only the knock counts, against the client.
        for (key, _) in rules.iter().skip(1) {
            if let Some(until) = throttle::blocked(&self.db, key, now).await? {
                self.metrics.sign_in_failed();
                if let throttle::Hit::Blocked { until, .. } =
                    throttle::hit(&self.db, &keys.client, self.client_rule(), now).await?
                {
                    return Err(too_many_from_client(until));
                }
                return Err(PlatformError::Locked { until });
            }
        }
        let mut hits: Vec<(String, throttle::Hit, throttle::Rule)> = Vec::new();
        for (key, rule) in rules {
            let hit = throttle::hit(&self.db, &key, rule, now).await?;
            if let throttle::Hit::Blocked {
                until,
                newly: false,
            } = hit
            {
                self.metrics.sign_in_failed();
                // Locked in between: take back what this refused attempt counted, but the
                // client's knock.
                for (taken, hit, rule) in hits.into_iter().skip(1) {
                    throttle::refund(&self.db, &taken, hit, rule).await?;
                }
                return Err(if key == keys.client {
                    too_many_from_client(until)
                } else {
                    PlatformError::Locked { until }
                });
            }
            hits.push((key, hit, rule));
        }
        Ok(Reserved {
            hits,
            pair: keys.pair.clone(),
        })
    }

    /// Settle a counted attempt with what checking it found: the person it signs in (its
    /// counts taken back), nobody (a failure: what its counts mean now), or an error (it was
    /// not checked, so it counts for nothing).
    async fn settle<T>(
        &self,
        keys: &Keys,
        reserved: Reserved,
        phone: &str,
        checked: Result<Option<T>, PlatformError>,
    ) -> Result<T, PlatformError> {
        match checked {
            Err(e) => {
                self.attempt_not_checked(reserved).await;
                Err(e)
            }
            Ok(None) => Err(self.attempt_failed(keys, reserved, phone).await),
            Ok(Some(found)) => {
                self.attempt_succeeded(reserved).await?;
                Ok(found)
            }
        }
    }

    /// The attempt succeeded: take its hits back, and forget this client's earlier failures
    /// for this phone (the person got it right).
    async fn attempt_succeeded(&self, reserved: Reserved) -> Result<(), PlatformError> {
        for (key, hit, rule) in reserved.hits {
            if key == reserved.pair {
                throttle::clear(&self.db, &key).await?;
            } else {
                throttle::refund(&self.db, &key, hit, rule).await?;
            }
        }
        Ok(())
    }

    /// The attempt could not be checked (busy, a database error): it counts for nothing.
    async fn attempt_not_checked(&self, reserved: Reserved) {
        for (key, hit, rule) in reserved.hits {
            if let Err(e) = throttle::refund(&self.db, &key, hit, rule).await {
                tracing::warn!(error = %e, "could not take back a sign-in attempt's count");
            }
        }
    }

    /// The attempt failed: what its hits mean now. Only a lock of a registered person's
    /// password sign-in is audited (once per lock): failures are not, so anonymous guessing
    /// does not grow the audit chain.
    async fn attempt_failed(&self, keys: &Keys, reserved: Reserved, phone: &str) -> PlatformError {
        self.metrics.sign_in_failed();
        let mut answer = wrong_credentials();
        for (key, hit, _) in reserved.hits {
            if let throttle::Hit::Blocked { until, .. } = hit {
                if key == keys.client {
                    answer = too_many_from_client(until);
                } else if !matches!(answer, PlatformError::TooMany(_)) {
                    answer = PlatformError::Locked { until };
                }
                if key == keys.phone {
                    self.audit_lock(phone, until).await;
                }
            }
        }
        answer
    }

    /// First factor by password. `client` is the caller's address (the rate limits'); the
    /// answers for a phone nobody has are the same as for a registered one.
    pub async fn sign_in_password(
        &self,
        phone: &str,
        password: &str,
        client: &str,
    ) -> Result<SignIn, PlatformError> {
        let keys = Keys::new(&self.db, phone, client);
        let reserved = self.reserve_attempt(&keys, true).await?;
        let checked = async {
            let person = people::get_by_phone(&self.db, phone).await?;
            let creds = match &person {
                Some(p) => store::credentials(&self.db, &p.id)
                    .await?
                    .unwrap_or_default(),
                None => store::Credentials::default(),
            };
            // Against the stored hash — or, for nobody, a dummy of the same cost, so the time
            // taken tells nothing either.
            let stored = match (&person, &creds.password_hash) {
                (Some(_), Some(hash)) => Some(hash.clone()),
                _ => None,
            };
            let ok = auth::check_password(password, stored.as_deref())
                .await
                .map_err(|_| busy())?;
            Ok(person.filter(|_| ok).map(|p| (p, creds)))
        }
        .await;
        let (person, creds) = self.settle(&keys, reserved, phone, checked).await?;
        self.first_factor_ok(&person, &creds, Method::Password)
            .await
    }

    /// Send a sign-in code to `phone` if a person has it. The answer is the same either way,
    /// and so are the limits (per client address and in all first, then per phone), the time
    /// taken (the SMS goes out after the answer) and what is stored: only a registered
    /// phone gets a code row.
    pub async fn request_code(&self, phone: &str, client: &str) -> Result<(), PlatformError> {
        if !valid_phone(phone) {
            return Err(PlatformError::Invalid(
                "手机号须为 11 位数字 / phone must be 11 digits".into(),
            ));
        }
        let a = &self.config.auth;
        let now = now_ms();
        let per_client = throttle::Rule {
            limit: i64::from(a.codes_per_client_per_hour) + 1,
            window_ms: HOUR_MS,
            lock_ms: 0,
            min_gap_ms: 0,
        };
        if let throttle::Hit::Blocked { .. } = throttle::hit(
            &self.db,
            &throttle::key(&self.db, "sc", &[client]),
            per_client,
            now,
        )
        .await?
        {
            return Err(PlatformError::TooMany(
                "此网络请求验证码过多，请稍后再试 / too many codes asked for from this network; try again later (auth.codes_per_client_per_hour)".into(),
            ));
        }
        let total_key = throttle::key(&self.db, "sg", &["all"]);
        if let Some(_until) = throttle::blocked(&self.db, &total_key, now).await? {
            return Err(codes_busy());
        }
        let per_phone = throttle::Rule {
            limit: i64::from(a.codes_per_hour) + 1,
            window_ms: HOUR_MS,
            lock_ms: 0,
            min_gap_ms: a.code_resend_secs as i64 * 1000,
        };
        if let throttle::Hit::Blocked { until, .. } = throttle::hit(
            &self.db,
            &throttle::key(&self.db, "sp", &[phone]),
            per_phone,
            now,
        )
        .await?
        {
            let secs = (until - now) / 1000 + 1;
            return Err(PlatformError::TooMany(format!(
                "验证码发送过于频繁，请 {secs} 秒后再试 / too many codes for this phone; try again in {secs} s (auth.code_resend_secs, auth.codes_per_hour)"
            )));
        }
        let Some(_person) = people::get_by_phone(&self.db, phone).await? else {
            return Ok(());
        };
        // The county's total counts codes actually sent.
        let total = throttle::Rule {
            limit: i64::from(a.codes_per_hour_total) + 1,
            window_ms: HOUR_MS,
            lock_ms: 0,
            min_gap_ms: 0,
        };
        if let throttle::Hit::Blocked { .. } =
            throttle::hit(&self.db, &total_key, total, now).await?
        {
            tracing::warn!(
                "sign-in codes: the county's hourly total is reached (auth.codes_per_hour_total)"
            );
            return Err(codes_busy());
        }
        let code = auth::new_code();
        store::put_code(
            &self.db,
            phone,
            &code_hash(phone, &code),
            a.code_ttl_secs as i64 * 1000,
        )
        .await?;
        // Sent after the answer: waiting for the gateway would tell a registered phone
        // from an unknown one by the time taken.
        // If it cannot be sent, the code is dropped and the phone's and the county's counts
        // taken back, so a gateway outage does not use up anyone's codes.
        let sms = self.sms.clone();
        let db = self.db.clone();
        let failures = self.metrics.sms_failures();
        let phone = phone.to_owned();
        let phone_key = throttle::key(&self.db, "sp", &[&phone]);
        tokio::spawn(async move {
            if let Err(e) = sms.send(&phone, &code).await {
                failures.inc();
                tracing::error!(phone = %mask::phone(&phone), error = %e, "SMS not sent");
                let undo = async {
                    store::drop_code(&db, &phone).await?;
                    throttle::refund(&db, &phone_key, throttle::Hit::Counted, per_phone).await?;
                    throttle::refund(&db, &total_key, throttle::Hit::Counted, total).await
                };
                if let Err(e) = undo.await {
                    tracing::warn!(error = %e, "could not take back an unsent code");
                }
            }
        });
        Ok(())
    }

    /// First factor by SMS code.
    pub async fn sign_in_code(
        &self,
        phone: &str,
        code: &str,
        client: &str,
    ) -> Result<SignIn, PlatformError> {
        let keys = Keys::new(&self.db, phone, client);
        let reserved = self.reserve_attempt(&keys, false).await?;
        let checked = async {
            let person = people::get_by_phone(&self.db, phone).await?;
            let ok = match &person {
                Some(_) => {
                    store::take_code(
                        &self.db,
                        phone,
                        &code_hash(phone, code),
                        i64::from(self.config.auth.code_attempts),
                    )
                    .await?
                }
                None => false,
            };
            Ok(person.filter(|_| ok))
        }
        .await;
        let person = self.settle(&keys, reserved, phone, checked).await?;
        let creds = store::credentials(&self.db, &person.id)
            .await?
            .unwrap_or_default();
        self.first_factor_ok(&person, &creds, Method::Code).await
    }

    /// One audit record when a registered phone's password sign-in locks.
    async fn audit_lock(&self, phone: &str, until: i64) {
        let Ok(Some(person)) = people::get_by_phone(&self.db, phone).await else {
            return;
        };
        tracing::warn!(person = %person.id, "password sign-in locked after repeated failures");
        let event = audit::Event {
            actor: "anonymous",
            tenant: Some(&person.tenant),
            action: "auth.lock",
            subject: Some(&person.id),
            outcome: "locked",
            detail: serde_json::json!({ "until": until, "rule": "auth.account_failures" }),
            ..audit::Event::default()
        };
        if let Err(e) = audit::append(&self.db, &event).await {
            tracing::error!(error = %e, "could not audit a sign-in lock");
        }
    }

    /// Second factor for admins: the challenge from the first factor and a TOTP code (of the
    /// authenticator, or of the one being enrolled).
    pub async fn sign_in_totp(
        &self,
        challenge: &str,
        code: &str,
        client: &str,
    ) -> Result<SignIn, PlatformError> {
        let hash = token_hash(challenge);
        let (person, attempt) = self.reserve_second_factor(&hash, "totp", client).await?;
        let creds = store::credentials(&self.db, &person.id)
            .await?
            .unwrap_or_default();
        let (secret, enrolling) = match (&creds.totp_secret, &creds.totp_pending) {
            (Some(s), _) => (s.clone(), false),
            (None, Some(p)) => (p.clone(), true),
            (None, None) => return Err(expired_challenge()),
        };
        let Some(step) = auth::totp_step(&secret, code) else {
            return Err(self
                .second_factor_failed(&person, &hash, attempt, client)
                .await);
        };
        // Each code signs in once: a replayed one (or an earlier one) is a failure too.
        if !store::take_totp_step(&self.db, &person.id, step as i64).await? {
            return Err(match self.second_factor_failed(&person, &hash, attempt, client).await {
                PlatformError::Unauthenticated(_) => PlatformError::Unauthenticated(
                    "此动态口令已用过，请等待下一个口令 / this code has been used already; wait for the next one".into(),
                ),
                other => other,
            });
        }
        if enrolling && !store::confirm_pending_totp(&self.db, &person.id, &secret).await? {
            return Err(expired_challenge());
        }
        if !store::delete_session(&self.db, &hash).await? {
            // Two requests raced with one challenge: only the first signs in.
            return Err(expired_challenge());
        }
        store::second_factor_passed(&self.db, &person.id).await?;
        if enrolling {
            self.audit_as(
                &Principal::Person(Arc::new(self.bare_session(&person))),
                audit::Event {
                    tenant: Some(&person.tenant),
                    action: "auth.totp-enrol",
                    subject: Some(&person.id),
                    outcome: "ok",
                    detail: serde_json::json!({ "by": "holder" }),
                    ..audit::Event::default()
                },
            )
            .await?;
        }
        self.new_session(&person, Method::Totp, true, creds.generation)
            .await
    }

    /// An admin's first sign-in: the challenge, the activation code the county root gave
    /// them, and a new password of their own (the one they were given stops working). The
    /// answer holds their authenticator's secret, shown this once; the first code from it
    /// (`/api/v1/auth/totp`) finishes the enrolment and signs them in.
    pub async fn enrol_totp_self(
        &self,
        challenge: &str,
        activation_code: &str,
        new_password: &str,
        client: &str,
    ) -> Result<SignIn, PlatformError> {
        // The policy is checked before anything is counted (a bad password is the holder's
        // typo); the costly hashing only after the challenge was found and the try counted.
        auth::check_password_policy(new_password).map_err(PlatformError::Invalid)?;
        let hash = token_hash(challenge);
        let (person, attempt) = self.reserve_second_factor(&hash, "enrol", client).await?;
        let password_hash = self.hash_new_password(new_password).await?;
        let secret = auth::new_totp_secret();
        let code = activation_code
            .trim()
            .to_ascii_uppercase()
            .replace([' ', '-'], "");
        if !store::take_activation(
            &self.db,
            &person.id,
            &auth::activation_hash(&person.id, &code),
            &password_hash,
            &secret,
        )
        .await?
        {
            return Err(self
                .second_factor_failed(&person, &hash, attempt, client)
                .await);
        }
        store::second_factor_passed(&self.db, &person.id).await?;
        store::set_stage(&self.db, &hash, "totp").await?;
        // Other sessions of the person (signed in with the password they were given) end.
        store::end_sessions_of(&self.db, &person.id, Some(&hash)).await?;
        let expires_at = store::session(&self.db, &hash)
            .await?
            .map_or(now_ms(), |s| s.expires_at);
        Ok(SignIn::TotpEnrol {
            challenge: challenge.to_owned(),
            expires_at,
            // Named in the authenticator app by the phone the holder signs in with.
            otpauth_url: auth::totp_url(&secret, person.phone.as_deref().unwrap_or(&person.id))?,
            secret,
        })
    }

    /// Before a second factor (or an activation code) is checked: the client is not over its
    /// limit, the challenge exists at `stage` and takes one more try (three in all), and the
    /// person's second factor is not locked and takes one more failure — all counted now, so
    /// parallel guesses cannot slip through before the first failure is written.
    async fn reserve_second_factor(
        &self,
        challenge_hash: &str,
        stage: &str,
        client: &str,
    ) -> Result<(Person, store::Reservation), PlatformError> {
        let now = now_ms();
        let client_key = throttle::key(&self.db, "c", &[client]);
        if let Some(until) = throttle::blocked(&self.db, &client_key, now).await? {
            return Err(too_many_from_client(until));
        }
        let row = store::session(&self.db, challenge_hash)
            .await?
            .filter(|s| s.stage == stage)
            .ok_or_else(expired_challenge)?;
        if !store::challenge_try(&self.db, challenge_hash, CHALLENGE_ATTEMPTS).await? {
            return Err(PlatformError::Unauthenticated(
                "动态口令错误次数过多，请重新登录 / too many wrong codes for this sign-in; sign in again".into(),
            ));
        }
        let person = people::get(&self.db, &row.person_id)
            .await?
            .filter(|p| p.status == "active")
            .ok_or_else(expired_challenge)?;
        let a = &self.config.auth;
        match store::reserve_totp_attempt(
            &self.db,
            &person.id,
            a.max_failures,
            a.lockout_secs as i64 * 1000,
        )
        .await?
        {
            Err(until) => {
                self.metrics.sign_in_failed();
                Err(PlatformError::Locked { until })
            }
            Ok(attempt) => Ok((person, attempt)),
        }
    }

    /// A wrong second factor (already counted by [`Self::reserve_second_factor`]): locked if
    /// this failure locked it (audited once), the challenge gone after its third, else 401.
    async fn second_factor_failed(
        &self,
        person: &Person,
        challenge_hash: &str,
        attempt: store::Reservation,
        client: &str,
    ) -> PlatformError {
        self.metrics.sign_in_failed();
        let client_key = throttle::key(&self.db, "c", &[client]);
        if let Err(e) = throttle::hit(&self.db, &client_key, self.client_rule(), now_ms()).await {
            return e.into();
        }
        if let store::Reservation::Locks(until) = attempt {
            tracing::warn!(person = %person.id, "second factor locked after repeated failures");
            let _ = store::delete_session(&self.db, challenge_hash).await;
            let event = audit::Event {
                actor: &person.id,
                tenant: Some(&person.tenant),
                action: "auth.lock",
                subject: Some(&person.id),
                outcome: "locked",
                detail: serde_json::json!({ "until": until, "rule": "auth.max_failures", "factor": "totp" }),
                ..audit::Event::default()
            };
            if let Err(e) = audit::append(&self.db, &event).await {
                tracing::error!(error = %e, "could not audit a sign-in lock");
            }
            return PlatformError::Locked { until };
        }
        match store::session(&self.db, challenge_hash).await {
            Ok(Some(row)) if row.attempts < CHALLENGE_ATTEMPTS => wrong_credentials(),
            Ok(_) => {
                let _ = store::delete_session(&self.db, challenge_hash).await;
                PlatformError::Unauthenticated(
                    "动态口令错误次数过多，请重新登录 / too many wrong codes for this sign-in; sign in again".into(),
                )
            }
            Err(e) => e.into(),
        }
    }

    /// A session value for auditing as `person` outside a session (their own enrolment).
    fn bare_session(&self, person: &Person) -> Session {
        Session {
            token_hash: String::new(),
            person: person.clone(),
            roles: Vec::new(),
            acting_for: None,
            expires_at: 0,
            mfa: false,
            created_at: 0,
        }
    }

    async fn first_factor_ok(
        &self,
        person: &Person,
        creds: &store::Credentials,
        method: Method,
    ) -> Result<SignIn, PlatformError> {
        let roles = people::roles_of(&self.db, &person.id).await?;
        if !needs_totp(&roles) {
            return self
                .new_session(person, method, false, creds.generation)
                .await;
        }
        // The second factor's lock shows only to someone who knew the first.
        if creds.locked_until > now_ms() {
            return Err(PlatformError::Locked {
                until: creds.locked_until,
            });
        }
        // An authenticator shown to its holder but not yet confirmed is confirmed at a `totp`
        // challenge too.
        let stage = if creds.totp_secret.is_some() || creds.totp_pending.is_some() {
            "totp"
        } else if creds.activation_hash.is_some() && creds.activation_expires_at > now_ms() {
            "enrol"
        } else {
            return Err(PlatformError::Forbidden(
                "管理员须先登记动态口令：请向县级管理员索取激活码 / admins need an authenticator: ask the county administrator for an activation code".into(),
            ));
        };
        let (challenge, hash) = new_token();
        let expires_at = now_ms() + TOTP_CHALLENGE_MS;
        let made = store::create_session_if(
            &self.db,
            &hash,
            &SessionRow {
                person_id: person.id.clone(),
                stage: stage.into(),
                acting_for: None,
                reason: None,
                created_at: now_ms(),
                expires_at,
                mfa: false,
                attempts: 0,
            },
            creds.generation,
        )
        .await?;
        if !made {
            // The password changed while this sign-in was checking the old one.
            return Err(wrong_credentials());
        }
        Ok(if stage == "totp" {
            SignIn::TotpRequired {
                challenge,
                expires_at,
            }
        } else {
            SignIn::TotpEnrolRequired {
                challenge,
                expires_at,
            }
        })
    }

    /// A session for `person`, made only if their credentials are still those of
    /// `generation` (read when the secret was checked): a password changed or reset while a
    /// sign-in was checking the old one leaves that sign-in with nothing.
    async fn new_session(
        &self,
        person: &Person,
        method: Method,
        mfa: bool,
        generation: i64,
    ) -> Result<SignIn, PlatformError> {
        let (token, hash) = new_token();
        let now = now_ms();
        let expires_at = now + self.config.auth.session_ttl_secs as i64 * 1000;
        let made = store::create_session_if(
            &self.db,
            &hash,
            &SessionRow {
                person_id: person.id.clone(),
                stage: "full".into(),
                acting_for: None,
                reason: None,
                created_at: now,
                expires_at,
                mfa,
                attempts: 0,
            },
            generation,
        )
        .await?;
        if !made {
            return Err(wrong_credentials());
        }
        let event = audit::Event {
            actor: &person.id,
            tenant: Some(&person.tenant),
            action: "auth.sign-in",
            subject: Some(&person.id),
            outcome: "ok",
            detail: serde_json::json!({ "method": method.as_str() }),
            ..audit::Event::default()
        };
        audit::append(&self.db, &event).await?;
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
        let roles = people::roles_of(&self.db, &person.id).await?;
        // An admin role needs a session that passed the second factor: one signed in before
        // the role was given does not carry it (sign in again).
        if needs_totp(&roles) && !row.mfa {
            return Err(PlatformError::Unauthenticated(
                "此账号现为管理员，请重新登录并输入动态口令 / this account is now an admin: sign in again with your authenticator".into(),
            ));
        }
        let acting_for = match (&row.acting_for, &row.reason) {
            (Some(id), reason) => {
                let resident = people::get(&self.db, id)
                    .await?
                    .filter(|p| p.status == "active")
                    .ok_or_else(expired)?;
                // Assisted mode lasts only while the assistant may still assist there.
                let path = tenants::path(&self.db, &resident.tenant).await?;
                let assistant = Principal::Person(Arc::new(Session {
                    token_hash: String::new(),
                    person: person.clone(),
                    roles: roles.clone(),
                    acting_for: None,
                    expires_at: row.expires_at,
                    mfa: row.mfa,
                    created_at: row.created_at,
                }));
                if !assistant.allows(Permission::Assist, &path) {
                    store::delete_session(&self.db, &hash).await?;
                    return Err(PlatformError::Unauthenticated(
                        "帮办已结束：您已不再负责该居民所在的网格或社区 / assisted mode ended: you no longer serve the resident's place".into(),
                    ));
                }
                Some((resident, reason.clone().unwrap_or_default()))
            }
            (None, _) => None,
        };
        Ok(Arc::new(Session {
            token_hash: hash,
            person,
            roles,
            acting_for,
            expires_at: row.expires_at,
            mfa: row.mfa,
            created_at: row.created_at,
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
            // Rotation extends a session, but never past auth.session_max_secs from its
            // sign-in.
            (now_ms() + self.config.auth.session_ttl_secs as i64 * 1000)
                .min(session.created_at + self.config.auth.session_max_secs as i64 * 1000)
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
        let creds = store::credentials(&self.db, &session.person.id)
            .await?
            .unwrap_or_default();
        let ok = match creds.password_hash.as_deref() {
            Some(hash) => auth::check_password(old, Some(hash))
                .await
                .map_err(|_| busy())?,
            None => false,
        };
        if !ok {
            return Err(wrong_credentials());
        }
        self.store_password(&session.person.id, new).await?;
        // Everywhere else this person is signed in (or acted for) ends; this session stays.
        store::end_sessions_of(&self.db, &session.person.id, Some(&session.token_hash)).await?;
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
        let hash = self.hash_new_password(pw).await?;
        store::set_secret(&self.db, person, store::Secret::Password, Some(&hash)).await?;
        Ok(())
    }

    /// Check a new password against the policy and hash it (off the async threads).
    pub(super) async fn hash_new_password(&self, pw: &str) -> Result<String, PlatformError> {
        auth::check_password_policy(pw).map_err(PlatformError::Invalid)?;
        Ok(auth::hash_password_limited(pw)
            .await
            .map_err(|_| busy())??)
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
            // Someone outside one's places is answered as nobody: the answer tells nothing
            // about who has a phone number or an id.
            return Err(no_such());
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
                mfa: staff.mfa,
                attempts: 0,
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
