//! The SHA-256 object name OSTree uses for everything.

use std::fmt;
use std::str::FromStr;

/// A binary SHA-256 checksum: the name of an OSTree object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(pub [u8; 32]);

impl Checksum {
    /// Reads a checksum stored as 32 raw bytes inside an object.
    pub fn from_bytes(b: &[u8]) -> Option<Checksum> {
        b.try_into().ok().map(Checksum)
    }

    /// The 64-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        }
        s
    }

    /// Whether `s` is a full, lowercase, 64-character checksum, as OSTree requires.
    pub fn is_valid_hex(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The string is not a 64-character lowercase hex checksum.
#[derive(Debug, thiserror::Error)]
#[error("invalid checksum {0:?}: expected 64 lowercase hex characters")]
pub struct ParseChecksumError(pub String);

impl FromStr for Checksum {
    type Err = ParseChecksumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !Checksum::is_valid_hex(s) {
            return Err(ParseChecksumError(s.to_string()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h << 4) | l,
                _ => return Err(ParseChecksumError(s.to_string())),
            }
        }
        Ok(Checksum(out))
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let hex = "595abc8b72862857b279b13953c06754534fc6f4f69d7e376f48aec3638da50d";
        let c: Checksum = hex.parse().unwrap();
        assert_eq!(c.to_hex(), hex);
        assert!("595ABC".parse::<Checksum>().is_err());
        assert!(hex.to_uppercase().parse::<Checksum>().is_err());
    }
}
