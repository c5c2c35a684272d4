//! Object names: the SHA-256 OSTree names every object by, and the SHA-512
//! fs-verity digest composefs names its images by (bootc's native backend):
//! one type, so that a commit of either backend is one kind of name.

use std::fmt;
use std::str::FromStr;

/// A binary checksum: 32 bytes (SHA-256, OSTree's objects), or 64 (SHA-512, a
/// composefs image). Copied freely: a name is a value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum {
    len: u8,
    bytes: [u8; 64],
}

impl Checksum {
    /// A SHA-256 name.
    pub const fn sha256(b: [u8; 32]) -> Checksum {
        let mut bytes = [0u8; 64];
        let mut i = 0;
        while i < 32 {
            bytes[i] = b[i];
            i += 1;
        }
        Checksum { len: 32, bytes }
    }

    /// Reads a checksum stored as 32 raw bytes inside an OSTree object.
    pub fn from_bytes(b: &[u8]) -> Option<Checksum> {
        <[u8; 32]>::try_from(b).ok().map(Checksum::sha256)
    }

    /// Its raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The lowercase hex form (64 characters, or 128 for a SHA-512).
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(2 * self.len as usize);
        for &b in self.as_bytes() {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        }
        s
    }

    /// Whether `s` is a full, lowercase, 64-character checksum, as OSTree requires.
    pub fn is_valid_hex(s: &str) -> bool {
        s.len() == 64 && is_lower_hex(s)
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The string is not a 64- or 128-character lowercase hex checksum.
#[derive(Debug, thiserror::Error)]
#[error("invalid checksum {0:?}: expected 64 (or, for a composefs image, 128) lowercase hex characters")]
pub struct ParseChecksumError(pub String);

impl FromStr for Checksum {
    type Err = ParseChecksumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(s.len() == 64 || s.len() == 128) || !is_lower_hex(s) {
            return Err(ParseChecksumError(s.to_string()));
        }
        let mut out = Checksum { len: (s.len() / 2) as u8, bytes: [0u8; 64] };
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(h), Some(l)) => out.bytes[i] = (h << 4) | l,
                _ => return Err(ParseChecksumError(s.to_string())),
            }
        }
        Ok(out)
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
        // A composefs image's name: SHA-512.
        let long = hex.repeat(2);
        let c: Checksum = long.parse().unwrap();
        assert_eq!((c.to_hex(), c.as_bytes().len()), (long.clone(), 64));
        assert!(long[..100].parse::<Checksum>().is_err());
        assert_ne!(c, hex.parse::<Checksum>().unwrap());
        assert_eq!(Checksum::from_bytes(&[7; 32]), Some(Checksum::sha256([7; 32])));
        assert_eq!(Checksum::from_bytes(&[7; 64]), None, "OSTree objects hold SHA-256 names only");
    }
}
