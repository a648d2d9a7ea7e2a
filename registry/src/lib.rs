//! The linli plugin package format (`.lpkg`): a manifest, the component, and the publisher's
//! ed25519 signature over both.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic      8 bytes   "LINLIPKG"
//! version    u16       1
//! manifest   u32 len + JSON (UTF-8) — see [`Manifest`]
//! signature  u32 len + 64 bytes (ed25519 over sha256(manifest JSON))
//! component  u64 len + the Wasm component
//! ```
//!
//! The manifest carries the component's sha256, so the signature covers the component too.
//! Decoding checks every length against named limits before allocating, and [`Package::verify`]
//! checks the hash and the signature; nothing in a package is trusted before that.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"LINLIPKG";
const FORMAT_VERSION: u16 = 1;

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;
/// Largest component accepted, in bytes (matches the host's default `component_bytes`).
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// What a package says about the plugin inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin id, `[a-z][a-z0-9-]{0,62}`.
    pub id: String,
    /// Semantic version.
    pub version: String,
    /// The publishing vendor's name.
    pub publisher: String,
    /// The WIT contract the component targets, e.g. `linli:plugin@0.1.0`.
    pub contract: String,
    /// sha256 of the component, hex.
    pub component_sha256: String,
    /// Size of the component in bytes.
    pub component_size: u64,
}

/// Why a package was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackageError {
    #[error("不是 linli 插件包 / not a linli package (bad magic)")]
    BadMagic,
    #[error("不支持的包格式版本 / unsupported package format version {0}")]
    UnsupportedVersion(u16),
    #[error("包已截断 / package truncated while reading {0}")]
    Truncated(&'static str),
    #[error("包内 {what} 过大 / {what} of {size} bytes is over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("包尾部有多余数据 / {0} trailing bytes after the component")]
    TrailingBytes(usize),
    #[error("清单无效 / invalid manifest: {0}")]
    Manifest(String),
    #[error("组件与清单不符 / the component does not match the manifest's sha256/size")]
    ComponentMismatch,
    #[error("签名无效 / the signature does not verify with the given key")]
    BadSignature,
}

/// A decoded (not yet verified) package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub manifest: Manifest,
    manifest_json: Vec<u8>,
    signature: [u8; 64],
    pub component: Vec<u8>,
}

/// sha256 hex of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Package {
    /// Build and sign a package for `component`.
    pub fn sign(
        id: &str,
        version: &str,
        publisher: &str,
        component: Vec<u8>,
        key: &SigningKey,
    ) -> Result<Package, PackageError> {
        let manifest = Manifest {
            id: id.into(),
            version: version.into(),
            publisher: publisher.into(),
            contract: "linli:plugin@0.1.0".into(),
            component_sha256: sha256_hex(&component),
            component_size: component.len() as u64,
        };
        validate(&manifest)?;
        let manifest_json =
            serde_json::to_vec(&manifest).map_err(|e| PackageError::Manifest(e.to_string()))?;
        let signature = key.sign(&Sha256::digest(&manifest_json)).to_bytes();
        Ok(Package {
            manifest,
            manifest_json,
            signature,
            component,
        })
    }

    /// The package as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.component.len() + self.manifest_json.len() + 100);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.manifest_json.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.manifest_json);
        out.extend_from_slice(&64u32.to_le_bytes());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&(self.component.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.component);
        out
    }

    /// Parse a package. Checks structure and limits only; call [`Package::verify`] next.
    pub fn decode(bytes: &[u8]) -> Result<Package, PackageError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8, "magic")? != MAGIC {
            return Err(PackageError::BadMagic);
        }
        let version = u16::from_le_bytes(r.array("version")?);
        if version != FORMAT_VERSION {
            return Err(PackageError::UnsupportedVersion(version));
        }
        let manifest_len = u32::from_le_bytes(r.array("manifest length")?) as usize;
        if manifest_len > MAX_MANIFEST_BYTES {
            return Err(PackageError::TooLarge {
                what: "manifest",
                size: manifest_len as u64,
                limit: MAX_MANIFEST_BYTES as u64,
            });
        }
        let manifest_json = r.take(manifest_len, "manifest")?.to_vec();
        let signature_len = u32::from_le_bytes(r.array("signature length")?);
        if signature_len != 64 {
            return Err(PackageError::BadSignature);
        }
        let signature: [u8; 64] = r.array("signature")?;
        let component_len = u64::from_le_bytes(r.array("component length")?);
        if component_len > MAX_COMPONENT_BYTES {
            return Err(PackageError::TooLarge {
                what: "component",
                size: component_len,
                limit: MAX_COMPONENT_BYTES,
            });
        }
        let component = r.take(component_len as usize, "component")?.to_vec();
        if r.at != bytes.len() {
            return Err(PackageError::TrailingBytes(bytes.len() - r.at));
        }
        let manifest: Manifest = serde_json::from_slice(&manifest_json)
            .map_err(|e| PackageError::Manifest(e.to_string()))?;
        validate(&manifest)?;
        Ok(Package {
            manifest,
            manifest_json,
            signature,
            component,
        })
    }

    /// Check that the component matches the manifest and that `key` signed the manifest.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), PackageError> {
        if self.component.len() as u64 != self.manifest.component_size
            || sha256_hex(&self.component) != self.manifest.component_sha256
        {
            return Err(PackageError::ComponentMismatch);
        }
        key.verify(
            &Sha256::digest(&self.manifest_json),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| PackageError::BadSignature)
    }
}

fn validate(m: &Manifest) -> Result<(), PackageError> {
    let id_ok = !m.id.is_empty()
        && m.id.len() <= 63
        && m.id.starts_with(|c: char| c.is_ascii_lowercase())
        && m.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        return Err(PackageError::Manifest(format!("id {:?}", m.id)));
    }
    let parts: Vec<&str> = m.version.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        return Err(PackageError::Manifest(format!(
            "version {:?} is not MAJOR.MINOR.PATCH",
            m.version
        )));
    }
    if m.publisher.trim().is_empty() || m.publisher.chars().count() > 200 {
        return Err(PackageError::Manifest(
            "publisher must be 1–200 characters".into(),
        ));
    }
    if m.component_sha256.len() != 64 || !m.component_sha256.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(PackageError::Manifest(
            "component_sha256 must be 64 hex digits".into(),
        ));
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PackageError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(PackageError::Truncated(what))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(PackageError::Truncated(what))?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PackageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn package() -> Package {
        Package::sign(
            "hello",
            "0.1.0",
            "青山软件 Qingshan Soft",
            b"\0asm component".to_vec(),
            &key(1),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_verify() {
        let p = package();
        let decoded = Package::decode(&p.encode()).unwrap();
        assert_eq!(decoded, p);
        decoded.verify(&key(1).verifying_key()).unwrap();
        assert_eq!(
            decoded.verify(&key(2).verifying_key()),
            Err(PackageError::BadSignature)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let bytes = package().encode();
        // Flip the last byte of the component.
        let mut t = bytes.clone();
        *t.last_mut().unwrap() ^= 1;
        assert_eq!(
            Package::decode(&t).unwrap().verify(&key(1).verifying_key()),
            Err(PackageError::ComponentMismatch)
        );
        // Change the version inside the manifest (same length).
        let at = bytes.windows(5).position(|w| w == b"0.1.0").unwrap();
        let mut t = bytes.clone();
        t[at..at + 5].copy_from_slice(b"9.1.0");
        assert_eq!(
            Package::decode(&t).unwrap().verify(&key(1).verifying_key()),
            Err(PackageError::BadSignature)
        );
    }

    #[test]
    fn malformed_packages_are_refused() {
        let bytes = package().encode();
        assert_eq!(Package::decode(b"NOTAPKG!xx"), Err(PackageError::BadMagic));
        assert_eq!(
            Package::decode(&bytes[..bytes.len() - 1]),
            Err(PackageError::Truncated("component"))
        );
        assert_eq!(
            Package::decode(&bytes[..5]),
            Err(PackageError::Truncated("magic"))
        );
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(Package::decode(&extra), Err(PackageError::TrailingBytes(1)));
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert_eq!(
            Package::decode(&v2),
            Err(PackageError::UnsupportedVersion(2))
        );
        let mut huge = bytes[..10].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Package::decode(&huge),
            Err(PackageError::TooLarge {
                what: "manifest",
                ..
            })
        ));
        for (id, version) in [("Bad", "0.1.0"), ("ok", "1.0"), ("", "1.0.0")] {
            assert!(
                Package::sign(id, version, "p", vec![], &key(1)).is_err(),
                "{id} {version}"
            );
        }
    }
}
