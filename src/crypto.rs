//! Sealing of stored secrets: AES-256-GCM with a random 12-byte IV,
//! stored as `v1:iv:authTag:ciphertext` with hex parts. `v1` names the format
//! version; rotation tells old from new by trying the keys, so a half-finished
//! rotation is impossible (it runs in one transaction) and a re-run is harmless.
//!
//! Plain AES-GCM, no associated data, so any standard implementation (e.g.
//! Node's `createDecipheriv('aes-256-gcm')` + `setAuthTag`) opens a value
//! graft sealed and the reverse. Values sealed by earlier builds bound the
//! prefix `v1` as associated data; `open` still reads those.
//!
//! Also where the process's TLS crypto provider is installed, so the
//! forge clients and git's push share it without one importing the other.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

const PREFIX: &str = "v1";
/// What earlier builds authenticated alongside the ciphertext.
const LEGACY_ASSOCIATED_DATA: &[u8] = b"v1";
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// Installs the process-wide rustls crypto provider (aws-lc-rs) once.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first: fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "ENCRYPTION_KEY must be 32 random bytes written as 64 hex characters or 44 base64 characters \
         ({0}); generate one with `graft keys generate`"
    )]
    BadKey(String),
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "sealed value could not be opened: the key is wrong or the value was tampered with \
         (authentication tag mismatch)"
    )]
    Unauthentic,
    #[error("could not gather randomness from the operating system: {0}")]
    Random(String),
}

/// A 256-bit key. Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct Key {
    cipher: Aes256Gcm,
    /// Root of [`Key::derive`]; the raw key never leaves this module.
    derive_root: [u8; KEY_LEN],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// Parses 32 bytes given as hex (64 characters) or base64 (standard or
    /// URL-safe, padded or not). Anything shorter is refused, never padded.
    pub fn parse(text: &SecretString) -> Result<Self, CryptoError> {
        let text = text.expose_secret().trim();
        let bytes = decode_key_text(text)?;
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::BadKey(format!(
                "it decodes to {} bytes, not {KEY_LEN}",
                bytes.len()
            )));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| CryptoError::BadKey("wrong length".into()))?;
        let mut derive_root = [0u8; KEY_LEN];
        derive_root.copy_from_slice(&bytes);
        Ok(Key {
            cipher,
            derive_root,
        })
    }

    /// A 32-byte sub-key for another purpose (e.g. signing session
    /// cookies): HMAC-SHA256 of `label` under this key, so the sub-key
    /// reveals nothing about the encryption key and differs per label.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.derive_root)
            .expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts `plaintext` under a fresh random IV.
    pub fn seal(&self, plaintext: &str) -> Result<String, CryptoError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv).map_err(|e| CryptoError::Random(e.to_string()))?;
        let mut buffer = plaintext.as_bytes().to_vec();
        let nonce = Nonce::from(iv);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, b"", buffer.as_mut_slice().into())
            .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
        Ok(format!(
            "{PREFIX}:{}:{}:{}",
            hex::encode(iv),
            hex::encode(tag.as_slice()),
            hex::encode(&buffer)
        ))
    }

    /// Decrypts a value produced by [`Key::seal`]; a wrong key or any change
    /// to the stored text is reported as [`CryptoError::Unauthentic`].
    pub fn open(&self, sealed: &str) -> Result<SecretString, CryptoError> {
        let mut parts = sealed.split(':');
        let (Some(prefix), Some(iv), Some(tag), Some(body), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CryptoError::Malformed(
                "expected four ':'-separated parts: v1:iv:authTag:ciphertext",
            ));
        };
        if prefix != PREFIX {
            return Err(CryptoError::Malformed(
                "unknown format prefix (expected v1)",
            ));
        }
        let iv: [u8; IV_LEN] = hex::decode(iv)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CryptoError::Malformed("IV must be 12 bytes of hex"))?;
        let tag: [u8; TAG_LEN] = hex::decode(tag)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CryptoError::Malformed("auth tag must be 16 bytes of hex"))?;
        let ciphertext =
            hex::decode(body).map_err(|_| CryptoError::Malformed("ciphertext is not hex"))?;
        let opened = [b"".as_slice(), LEGACY_ASSOCIATED_DATA]
            .into_iter()
            .find_map(|associated| {
                let mut buffer = ciphertext.clone();
                self.cipher
                    .decrypt_inout_detached(
                        &Nonce::from(iv),
                        associated,
                        buffer.as_mut_slice().into(),
                        &Tag::from(tag),
                    )
                    .ok()
                    .map(|()| buffer)
            })
            .ok_or(CryptoError::Unauthentic)?;
        let text = String::from_utf8(opened).map_err(|_| CryptoError::Unauthentic)?;
        Ok(SecretString::from(text))
    }
}

fn decode_key_text(text: &str) -> Result<Vec<u8>, CryptoError> {
    if text.is_empty() {
        return Err(CryptoError::BadKey("it is empty".into()));
    }
    if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(text).map_err(|e| CryptoError::BadKey(e.to_string()));
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| CryptoError::BadKey("it is neither hex nor base64".into()))
}

/// A fresh key as standard base64, for `graft keys generate`.
pub fn generate_key_text() -> Result<String, CryptoError> {
    let mut bytes = [0u8; KEY_LEN];
    getrandom::fill(&mut bytes).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The keys the process holds: the current one, and during a rotation the
/// previous one, so values sealed before the rotation can still be read.
#[derive(Clone, Debug)]
pub struct Keyring {
    pub current: Key,
    pub previous: Option<Key>,
}

impl Keyring {
    pub fn seal(&self, plaintext: &str) -> Result<String, CryptoError> {
        self.current.seal(plaintext)
    }

    pub fn open(&self, sealed: &str) -> Result<SecretString, CryptoError> {
        match self.current.open(sealed) {
            Err(CryptoError::Unauthentic) => match &self.previous {
                Some(previous) => previous.open(sealed),
                None => Err(CryptoError::Unauthentic),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::parse(&SecretString::from(text.to_string())).unwrap()
    }

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seal_then_open_round_trips_and_uses_the_documented_format() {
        let k = key(HEX_KEY);
        let sealed = k.seal("glpat-secret").unwrap();
        let parts: Vec<&str> = sealed.split(':').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "v1");
        assert_eq!(parts[1].len(), 24, "12-byte IV as hex");
        assert_eq!(parts[2].len(), 32, "16-byte tag as hex");
        assert_eq!(parts[3].len(), 2 * "glpat-secret".len());
        assert!(!sealed.contains("glpat-secret"));
        assert_eq!(k.open(&sealed).unwrap().expose_secret(), "glpat-secret");
    }

    #[test]
    fn values_interoperate_with_standard_aes_gcm() {
        let k = key(HEX_KEY);
        // Sealed by Node: createCipheriv('aes-256-gcm', HEX_KEY, iv) with
        // no associated data, tag from getAuthTag().
        let from_node = "v1:0f0e0d0c0b0a090807060504:092ae93dc0446f49ce68753d77873139:c35cc13d2ffac9dc84b29c3157feec";
        assert_eq!(
            k.open(from_node).unwrap().expose_secret(),
            "glpat-from-node"
        );
        // And what graft seals, plain AES-GCM opens.
        let sealed = k.seal("ghs_token").unwrap();
        let parts: Vec<Vec<u8>> = sealed
            .split(':')
            .skip(1)
            .map(|p| hex::decode(p).unwrap())
            .collect();
        let mut buffer = parts[2].clone();
        let iv: [u8; IV_LEN] = parts[0].clone().try_into().unwrap();
        let tag: [u8; TAG_LEN] = parts[1].clone().try_into().unwrap();
        Aes256Gcm::new_from_slice(&hex::decode(HEX_KEY).unwrap())
            .unwrap()
            .decrypt_inout_detached(
                &Nonce::from(iv),
                b"",
                buffer.as_mut_slice().into(),
                &Tag::from(tag),
            )
            .unwrap();
        assert_eq!(buffer, b"ghs_token");
    }

    #[test]
    fn values_sealed_by_earlier_builds_still_open() {
        let k = key(HEX_KEY);
        let iv = [7u8; IV_LEN];
        let mut buffer = b"old-secret".to_vec();
        let tag = Aes256Gcm::new_from_slice(&hex::decode(HEX_KEY).unwrap())
            .unwrap()
            .encrypt_inout_detached(&Nonce::from(iv), b"v1", buffer.as_mut_slice().into())
            .unwrap();
        let legacy = format!(
            "v1:{}:{}:{}",
            hex::encode(iv),
            hex::encode(tag.as_slice()),
            hex::encode(&buffer)
        );
        assert_eq!(k.open(&legacy).unwrap().expose_secret(), "old-secret");
    }

    #[test]
    fn every_seal_uses_a_fresh_iv() {
        let k = key(HEX_KEY);
        assert_ne!(k.seal("x").unwrap(), k.seal("x").unwrap());
    }

    #[test]
    fn base64_keys_are_accepted_in_every_alphabet() {
        let generated = generate_key_text().unwrap();
        let k = key(&generated);
        let url_safe = generated.replace('+', "-").replace('/', "_");
        let sealed = k.seal("v").unwrap();
        assert_eq!(key(&url_safe).open(&sealed).unwrap().expose_secret(), "v");
        assert_eq!(
            key(url_safe.trim_end_matches('='))
                .open(&sealed)
                .unwrap()
                .expose_secret(),
            "v"
        );
    }

    #[test]
    fn short_or_garbled_keys_are_refused_with_a_hint() {
        for bad in [
            "",
            "hunter2",
            "c2hvcnQ=",
            &HEX_KEY[..62],
            "not base64 at all!!",
        ] {
            let err = Key::parse(&SecretString::from(bad.to_string())).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, CryptoError::BadKey(_)), "{bad}: {msg}");
            assert!(msg.contains("graft keys generate"), "{msg}");
        }
    }

    #[test]
    fn tampering_with_any_part_is_detected_not_a_panic() {
        let k = key(HEX_KEY);
        let sealed = k.seal("secret value").unwrap();
        let parts: Vec<String> = sealed.split(':').map(str::to_string).collect();
        for i in 1..4 {
            let mut changed = parts.clone();
            let first = changed[i].remove(0);
            changed[i].insert(0, if first == '0' { '1' } else { '0' });
            assert_eq!(
                k.open(&changed.join(":")).err(),
                Some(CryptoError::Unauthentic)
            );
        }
        for malformed in [
            "",
            "v1:00",
            "v2:a:b:c",
            "v1:zz:zz:zz",
            &format!("{sealed}:extra"),
        ] {
            assert!(
                matches!(k.open(malformed), Err(CryptoError::Malformed(_))),
                "{malformed}"
            );
        }
    }

    #[test]
    fn a_wrong_key_is_unauthentic() {
        let sealed = key(HEX_KEY).seal("s").unwrap();
        let other = key(&generate_key_text().unwrap());
        assert_eq!(other.open(&sealed).err(), Some(CryptoError::Unauthentic));
    }

    #[test]
    fn keyring_reads_values_sealed_under_the_previous_key() {
        let old = key(HEX_KEY);
        let sealed = old.seal("s").unwrap();
        let ring = Keyring {
            current: key(&generate_key_text().unwrap()),
            previous: Some(old),
        };
        assert_eq!(ring.open(&sealed).unwrap().expose_secret(), "s");
        assert!(ring.current.open(&ring.seal("t").unwrap()).is_ok());
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        assert_eq!(format!("{:?}", key(HEX_KEY)), "Key(<redacted>)");
    }
}
