//! WeCom's callback crypto (企业微信回调加解密), as WeCom applies it to
//! every callback it sends to a URL it was given: the body is AES-256-CBC
//! encrypted and the request signed, so that the receiver can check that
//! the callback came from WeCom and was not altered.
//!
//! The scheme (`shared/reference/wechat-kf-api.md` §6):
//! - `msg_signature = hex(sha1(concat(sort([token, timestamp, nonce, encrypt]))))`;
//! - the key is `base64(EncodingAESKey + "=")` (43 characters → 32 bytes) and the
//!   IV its first 16 bytes;
//! - the plaintext is 16 random bytes, the message length (4 bytes, big
//!   endian), the message and the receive id (the corpid), padded by PKCS#7
//!   to a multiple of 32 bytes.
//!
//! The primitives come from RustCrypto's `aes`, `cbc` and `sha1` crates;
//! only the framing is written here. Randomness is an argument, so a
//! service seeded for a run encrypts the same way every time.

use aes::Aes256;
use base64::Engine;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};

/// WeCom pads to 32 bytes, not to the AES block size.
const PAD_TO: usize = 32;

/// Base64 as WeCom writes it: standard alphabet, padded; an
/// EncodingAESKey's last character may carry trailing bits.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Why a callback could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The EncodingAESKey is not 43 characters of base64 (32 bytes): fix
    /// the configuration.
    #[error(
        "EncodingAESKey must be 43 characters of base64 (it decodes to the 32-byte AES key); got {0} characters"
    )]
    BadKey(usize),
    /// The EncodingAESKey has a character base64 has not: which, and
    /// where (counted in characters from 1).
    #[error(
        "EncodingAESKey has {ch:?} at character {at}: it must be 43 characters of base64 (letters, digits, + and /)"
    )]
    BadKeyChar {
        /// The character.
        ch: char,
        /// Its place, from 1.
        at: usize,
    },
    /// The token is empty or too long (WeCom: 3 to 32 letters and digits).
    #[error("the callback Token must be 1 to 32 letters or digits")]
    BadToken,
    /// The ciphertext is not base64 or not whole blocks.
    #[error("the encrypted text is not base64 of whole AES blocks")]
    BadCiphertext,
    /// The decrypted frame is too short or its length field is wrong.
    #[error("the decrypted text is not a WeCom message frame")]
    BadFrame,
}

/// The keys of one callback receiver: its Token, its AES key and the receive
/// id (corpid) that ends every frame.
#[derive(Clone)]
pub struct CallbackCrypto {
    token: String,
    key: [u8; 32],
    receive_id: String,
}

impl std::fmt::Debug for CallbackCrypto {
    // the key stays out of logs
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackCrypto").field("receive_id", &self.receive_id).finish_non_exhaustive()
    }
}

impl CallbackCrypto {
    /// Keys from the callback settings, checked.
    pub fn new(token: &str, encoding_aes_key: &str, receive_id: &str) -> Result<CallbackCrypto, CryptoError> {
        if token.is_empty() || token.len() > 32 || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CryptoError::BadToken);
        }
        if let Some((ch, at)) = crate::scenario::units::non_base64_char(encoding_aes_key) {
            return Err(CryptoError::BadKeyChar { ch, at });
        }
        let bad = || CryptoError::BadKey(encoding_aes_key.chars().count());
        if encoding_aes_key.len() != 43 {
            return Err(bad());
        }
        let bytes = B64.decode(format!("{encoding_aes_key}=")).map_err(|_| bad())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(CallbackCrypto { token: token.to_owned(), key, receive_id: receive_id.to_owned() })
    }

    /// The Token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `msg_signature` of a request carrying `encrypted` (the `echostr` of a
    /// URL check, or the `Encrypt` of a callback).
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypted];
        parts.sort_unstable();
        let mut sha = Sha1::new();
        for p in parts {
            sha.update(p.as_bytes());
        }
        sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `msg_signature` signs `encrypted` with this Token.
    pub fn verify(&self, msg_signature: &str, timestamp: &str, nonce: &str, encrypted: &str) -> bool {
        self.signature(timestamp, nonce, encrypted).eq_ignore_ascii_case(msg_signature)
    }

    /// Encrypt `message` in WeCom's frame, with `random` as its first 16
    /// bytes; base64.
    pub fn encrypt(&self, message: &[u8], random: [u8; 16]) -> String {
        let mut frame = Vec::with_capacity(16 + 4 + message.len() + self.receive_id.len() + PAD_TO);
        frame.extend_from_slice(&random);
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        frame.extend_from_slice(self.receive_id.as_bytes());
        let pad = PAD_TO - frame.len() % PAD_TO;
        frame.extend(std::iter::repeat_n(pad as u8, pad));
        let len = frame.len();
        let enc = cbc::Encryptor::<Aes256>::new(&self.key.into(), self.key[..16].into());
        let out = enc.encrypt_padded_mut::<NoPadding>(&mut frame, len).expect("whole blocks");
        B64.encode(out)
    }

    /// Decrypt a base64 frame: the message and the receive id it names.
    pub fn decrypt(&self, encrypted: &str) -> Result<(Vec<u8>, String), CryptoError> {
        let mut data = B64.decode(encrypted.trim()).map_err(|_| CryptoError::BadCiphertext)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptoError::BadCiphertext);
        }
        let dec = cbc::Decryptor::<Aes256>::new(&self.key.into(), self.key[..16].into());
        let plain = dec.decrypt_padded_mut::<NoPadding>(&mut data).map_err(|_| CryptoError::BadCiphertext)?;
        let pad = usize::from(*plain.last().ok_or(CryptoError::BadFrame)?);
        if !(1..=PAD_TO).contains(&pad) || pad > plain.len() {
            return Err(CryptoError::BadFrame);
        }
        let body = &plain[..plain.len() - pad];
        if body.len() < 20 {
            return Err(CryptoError::BadFrame);
        }
        let len = u32::from_be_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
        let rest = &body[20..];
        if len > rest.len() {
            return Err(CryptoError::BadFrame);
        }
        let receive_id = String::from_utf8(rest[len..].to_vec()).map_err(|_| CryptoError::BadFrame)?;
        Ok((rest[..len].to_vec(), receive_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WeCom's published sample (the URL check of its callback docs).
    fn sample() -> CallbackCrypto {
        CallbackCrypto::new("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7")
            .unwrap()
    }

    const ECHOSTR: &str =
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";

    #[test]
    fn wecoms_published_sample_verifies_and_decrypts() {
        let c = sample();
        assert_eq!(
            c.signature("1409659589", "263014780", ECHOSTR),
            "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
        );
        assert!(c.verify("5C45FF5E21C57E6AD56BAC8758B79B1D9AC89FD3", "1409659589", "263014780", ECHOSTR));
        assert!(!c.verify("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd4", "1409659589", "263014780", ECHOSTR));
        let (msg, receive_id) = c.decrypt(ECHOSTR).unwrap();
        assert_eq!(String::from_utf8(msg).unwrap(), "1616140317555161061");
        assert_eq!(receive_id, "wx5823bf96d3bd56c7");
    }

    #[test]
    fn encryption_round_trips_and_pads_to_32() {
        let c = sample();
        for len in [0, 1, 11, 12, 31, 32, 100, 5000] {
            let msg = vec![b'x'; len];
            let enc = c.encrypt(&msg, [7; 16]);
            let raw = B64.decode(&enc).unwrap();
            assert_eq!(raw.len() % 32, 0, "{len}");
            assert_eq!(c.decrypt(&enc).unwrap(), (msg, "wx5823bf96d3bd56c7".to_owned()));
        }
        // the same random prefix gives the same text; another gives another
        assert_eq!(c.encrypt(b"a", [1; 16]), c.encrypt(b"a", [1; 16]));
        assert_ne!(c.encrypt(b"a", [1; 16]), c.encrypt(b"a", [2; 16]));
    }

    #[test]
    fn bad_settings_and_bad_texts_are_errors() {
        assert_eq!(CallbackCrypto::new("t", "short", "c").unwrap_err(), CryptoError::BadKey(5));
        let long = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2CC";
        assert_eq!(CallbackCrypto::new("t", long, "c").unwrap_err(), CryptoError::BadKey(44));
        // the right length with a character base64 has not: which and where
        // (it said "must be 43 characters; got 43 characters")
        let not_b64 = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2!";
        let e = CallbackCrypto::new("t", not_b64, "c").unwrap_err();
        assert_eq!(e, CryptoError::BadKeyChar { ch: '!', at: 43 });
        assert!(e.to_string().starts_with("EncodingAESKey has '!' at character 43"), "{e}");
        let accented = "jWmYé7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
        let e = CallbackCrypto::new("t", accented, "c").unwrap_err();
        assert_eq!(e, CryptoError::BadKeyChar { ch: 'é', at: 5 });
        assert_eq!(CallbackCrypto::new("", &not_b64[..43], "c").unwrap_err(), CryptoError::BadToken);
        let c = sample();
        assert_eq!(c.decrypt("not base64!").unwrap_err(), CryptoError::BadCiphertext);
        assert_eq!(c.decrypt("AAAA").unwrap_err(), CryptoError::BadCiphertext);
        // another key decrypts to garbage that is not a frame (or names another id)
        let other =
            CallbackCrypto::new("QDG6eK", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "x").unwrap();
        assert!(other.decrypt(ECHOSTR).map_or(true, |(_, id)| id != "wx5823bf96d3bd56c7"));
    }
}
