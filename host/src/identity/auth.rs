//! The secrets of signing in: argon2id password hashes, opaque session tokens (stored as
//! sha256), one-time SMS codes, TOTP for admins, and the SMS senders.

use std::future::Future;
use std::pin::Pin;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::SmsConfig;

/// Whether a presented secret (a bearer token, a hook token) is the expected one, in time
/// that depends on neither how much of it matched nor its length: both are hashed, and the
/// digests compared in constant time.
pub fn secrets_match(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into()
}

/// Shortest and longest password accepted.
pub const PASSWORD_CHARS: (usize, usize) = (8, 128);

/// Check a new password against the policy; the message says what is wrong (zh / en).
pub fn check_password_policy(pw: &str) -> Result<(), String> {
    let n = pw.chars().count();
    if n < PASSWORD_CHARS.0 || n > PASSWORD_CHARS.1 {
        return Err(format!(
            "密码须为 {}–{} 个字符 / a password must be {}–{} characters",
            PASSWORD_CHARS.0, PASSWORD_CHARS.1, PASSWORD_CHARS.0, PASSWORD_CHARS.1
        ));
    }
    let classes = [
        pw.chars().any(|c| c.is_ascii_lowercase()),
        pw.chars().any(|c| c.is_ascii_uppercase()),
        pw.chars().any(|c| c.is_ascii_digit()),
        pw.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return Err(
            "密码须包含字母、数字、符号中的至少两类 / a password needs at least two of: letters, digits, symbols".into(),
        );
    }
    Ok(())
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) with a random salt, in PHC format.
pub fn hash_password(pw: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Whether `pw` matches a stored PHC hash (false for an unreadable hash).
pub fn verify_password(pw: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
}

/// The argon2 computations allowed at once: each takes ~19 MiB and a core for tens of
/// milliseconds, so a flood of sign-ins must queue (and, past a few seconds, be told the
/// service is busy) rather than start one each on the blocking pool.
fn argon_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

/// No argon2 slot came free in time: the service is busy.
#[derive(Debug)]
pub struct Busy;

/// Run `work` (an argon2 computation) on the blocking pool once a slot is free.
async fn with_argon_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Busy> {
    let _permit = tokio::time::timeout(std::time::Duration::from_secs(5), argon_slots().acquire())
        .await
        .map_err(|_| Busy)?
        .map_err(|_| Busy)?;
    tokio::task::spawn_blocking(work).await.map_err(|_| Busy)
}

/// Whether `pw` matches `stored` — or, with nothing stored, a dummy check of the same cost,
/// so the time taken does not tell whether the account exists.
pub async fn check_password(pw: &str, stored: Option<&str>) -> Result<bool, Busy> {
    let pw = pw.to_owned();
    let stored = stored.map(str::to_owned);
    with_argon_slot(move || match stored {
        Some(h) => verify_password(&pw, &h),
        None => {
            dummy_verify(&pw);
            false
        }
    })
    .await
}

/// [`hash_password`] in an argon2 slot.
pub async fn hash_password_limited(pw: &str) -> Result<anyhow::Result<String>, Busy> {
    let pw = pw.to_owned();
    with_argon_slot(move || hash_password(&pw)).await
}

/// A hash with the same cost as a real one, verified when the account does not exist so
/// that the answer takes as long either way.
pub fn dummy_verify(pw: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let h = DUMMY.get_or_init(|| hash_password("linli-dummy-password-0").unwrap_or_default());
    let _ = verify_password(pw, h);
}

/// A new session token (`lls_` + 256 random bits) and its stored hash.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("lls_{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

/// How a token is stored and looked up.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A six-digit sign-in code.
pub fn new_code() -> String {
    format!("{:06}", rand::rngs::OsRng.next_u32() % 1_000_000)
}

/// How a code is stored: bound to the phone it was sent to.
pub fn code_hash(phone: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{phone}:{code}").as_bytes()))
}

/// The letters of an activation code: no 0/O, 1/I/L or U to misread when it is read out.
const ACTIVATION_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new activation code, `XXXX-XXXX-XXXX` (about 59 bits): what the county root hands a new
/// admin, in person, to enrol their own authenticator.
pub fn new_activation_code() -> String {
    let mut out = String::with_capacity(14);
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // Rejection sampling keeps every letter equally likely.
        let letter = loop {
            let b = (rand::rngs::OsRng.next_u32() & 0xff) as u8;
            if usize::from(b) < 240 {
                break ACTIVATION_ALPHABET[usize::from(b) % ACTIVATION_ALPHABET.len()];
            }
        };
        out.push(char::from(letter));
    }
    out
}

/// How an activation code is stored: hashed, bound to its person. `code` is as typed, with
/// dashes and spaces removed and upper-cased by the caller.
pub fn activation_hash(person: &str, code: &str) -> String {
    hex::encode(Sha256::digest(
        format!("linli-activation|{person}|{code}").as_bytes(),
    ))
}

/// A new TOTP secret (160 bits, base32 without padding).
pub fn new_totp_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    totp_rs::Secret::Raw(bytes.to_vec())
        .to_encoded()
        .to_string()
}

fn totp(secret_b32: &str, account: &str) -> anyhow::Result<totp_rs::TOTP> {
    let bytes = totp_rs::Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("TOTP secret: {e:?}"))?;
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        Some("linli".into()),
        account.to_owned(),
    )
    .map_err(|e| anyhow::anyhow!("TOTP: {e}"))
}

/// Seconds in one TOTP time step.
const TOTP_STEP_SECS: u64 = 30;

/// The time step whose TOTP code `code` is, if it is the current one or the one before or
/// after (one step of clock skew). A caller that accepts it records the step and refuses
/// codes of that step or earlier from then on ([`crate::storage::sessions::take_totp_step`]).
pub fn totp_step(secret_b32: &str, code: &str) -> Option<u64> {
    use subtle::ConstantTimeEq;
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret_b32, "x").ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs()
        / TOTP_STEP_SECS;
    // Check every candidate, so the time taken does not say which one matched.
    let mut found = None;
    for step in [now.saturating_sub(1), now, now + 1] {
        let expected = t.generate(step * TOTP_STEP_SECS);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

/// Whether `code` is a valid TOTP code for the secret now (see [`totp_step`]).
pub fn check_totp(secret_b32: &str, code: &str) -> bool {
    totp_step(secret_b32, code).is_some()
}

/// The code for a secret at `unix_secs` (tests use the next step's code for a second
/// sign-in within one step).
pub fn totp_at(secret_b32: &str, unix_secs: u64) -> anyhow::Result<String> {
    Ok(totp(secret_b32, "x")?.generate(unix_secs))
}

/// The current code for a secret (the CLI's `linli auth totp-code`, for demos and tests).
pub fn totp_now(secret_b32: &str) -> anyhow::Result<String> {
    totp(secret_b32, "x")?
        .generate_current()
        .map_err(|e| anyhow::anyhow!("clock: {e}"))
}

/// The `otpauth://` URL an authenticator app scans.
pub fn totp_url(secret_b32: &str, account: &str) -> anyhow::Result<String> {
    Ok(totp(secret_b32, account)?.get_url())
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends sign-in codes by SMS.
pub trait SmsSender: Send + Sync {
    fn send<'a>(&'a self, phone: &'a str, code: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Development sender: writes the code to the host log (phone masked).
pub struct LogSms;

impl SmsSender for LogSms {
    fn send<'a>(&'a self, phone: &'a str, code: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            tracing::info!(
                phone = %super::mask::phone(phone),
                code,
                "短信验证码（开发发送器，仅写日志） / SMS sign-in code (dev sender: log only)"
            );
            Ok(())
        })
    }
}

/// Posts `{"phone", "code", "template"}` to an SMS gateway.
pub struct HttpSms {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    template: Option<String>,
}

impl SmsSender for HttpSms {
    fn send<'a>(&'a self, phone: &'a str, code: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut req = self.client.post(&self.url).json(&serde_json::json!({
                "phone": phone,
                "code": code,
                "template": self.template,
            }));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "SMS gateway answered {}",
                resp.status()
            );
            Ok(())
        })
    }
}

/// The sender the configuration asks for.
pub fn sms_sender(config: &SmsConfig) -> anyhow::Result<Box<dyn SmsSender>> {
    Ok(match config {
        SmsConfig::Log => Box::new(LogSms),
        SmsConfig::Http {
            url,
            token,
            template,
        } => Box::new(HttpSms {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            url: url.clone(),
            token: token.clone(),
            template: template.clone(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let h = hash_password("Correct-horse-1").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("Correct-horse-1", &h));
        assert!(!verify_password("correct-horse-1", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(check_password_policy("short1").is_err());
        assert!(check_password_policy("alllowercase").is_err());
        assert!(check_password_policy("lower-and-symbols").is_ok());
    }

    #[test]
    fn tokens_and_codes() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), ha);
        assert!(!ha.contains(&a));
        let c = new_code();
        assert_eq!(c.len(), 6);
        assert_ne!(code_hash("13800138000", &c), code_hash("13800138001", &c));
    }

    #[test]
    fn secrets_match_only_the_same() {
        assert!(secrets_match(
            "demo-0123456789abcdef",
            "demo-0123456789abcdef"
        ));
        assert!(!secrets_match(
            "demo-0123456789abcdeg",
            "demo-0123456789abcdef"
        ));
        assert!(!secrets_match(
            "demo-0123456789abcde",
            "demo-0123456789abcdef"
        ));
        assert!(!secrets_match("", "demo-0123456789abcdef"));
    }

    #[test]
    fn activation_codes() {
        let c = new_activation_code();
        assert_eq!(c.len(), 14, "{c}");
        assert_eq!(c.matches('-').count(), 2);
        assert!(
            c.bytes()
                .all(|b| b == b'-' || ACTIVATION_ALPHABET.contains(&b))
        );
        assert_ne!(c, new_activation_code());
        let plain = c.replace('-', "");
        assert_ne!(
            activation_hash("p-1", &plain),
            activation_hash("p-2", &plain)
        );
    }

    #[test]
    fn totp_round_trip() {
        let s = new_totp_secret();
        let code = totp_now(&s).unwrap();
        assert!(check_totp(&s, &code));
        let wrong = format!(
            "{:06}",
            (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
        );
        assert!(!check_totp(&s, &wrong));
        assert!(!check_totp(&s, "12345"));
        assert!(totp_url(&s, "p-1").unwrap().starts_with("otpauth://totp/"));
    }
}
