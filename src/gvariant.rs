//! A small, zero-copy, bounds-checked decoder for the GVariant serialisation of the
//! fixed types OSTree stores on disk.
//!
//! OSTree objects are GVariants of a handful of known types; a general GVariant
//! library (and its allocations) is not needed. Every accessor here borrows from the
//! input buffer and checks each framing offset, so no input can make it read out of
//! bounds or panic: malformed data is an [`Error`].
//!
//! Facts used (GVariant specification, as OSTree writes it):
//! - framing offsets are little-endian, 1/2/4/8 bytes wide depending on the size of
//!   the container they frame;
//! - a structure stores the end offsets of its non-final variable-size members at its
//!   end, in reverse order;
//! - an array of variable-size elements stores each element's end offset at its end;
//! - integers inside OSTree objects are big-endian (OSTree byte-swaps them itself).

use std::fmt;

/// Malformed GVariant data. Carries a static description of the violated rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub &'static str);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed GVariant: {}", self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Width in bytes of the framing offsets of a container of `size` bytes.
fn offset_size(size: usize) -> usize {
    match size {
        0 => 0,
        1..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

/// Reads the little-endian framing offset of width `width` at `pos`.
fn read_offset(data: &[u8], pos: usize, width: usize) -> Result<usize> {
    let bytes = data.get(pos..pos + width).ok_or(Error("framing offset out of bounds"))?;
    let mut v: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    usize::try_from(v).map_err(|_| Error("framing offset too large"))
}

fn align_up(pos: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    (pos + align - 1) & !(align - 1)
}

/// One member of a structure type, as needed to lay it out.
#[derive(Debug, Clone, Copy)]
pub enum Member {
    /// A fixed-size member (`u`, `t`, …) of this size and alignment.
    Fixed { size: usize, align: usize },
    /// A variable-size member (`s`, `ay`, `a(…)`, `v`) of this alignment.
    Var { align: usize },
}

/// `u`, `t`, `s`, `ay`, `a(ayay)`… as [`Member`]s.
pub const U32: Member = Member::Fixed { size: 4, align: 4 };
pub const U64: Member = Member::Fixed { size: 8, align: 8 };
pub const VAR1: Member = Member::Var { align: 1 };
pub const VAR8: Member = Member::Var { align: 8 };

/// Splits a structure into its members' byte ranges.
///
/// `N` is the number of members; the result borrows from `data`.
pub fn structure<'a, const N: usize>(data: &'a [u8], members: [Member; N]) -> Result<[&'a [u8]; N]> {
    let osz = offset_size(data.len());
    // Number of framing offsets = variable-size members that are not last.
    let n_frames = members[..N.saturating_sub(1)].iter().filter(|m| matches!(m, Member::Var { .. })).count();
    let frames_len = n_frames
        .checked_mul(osz)
        .filter(|&l| l <= data.len())
        .ok_or(Error("structure too short for its framing offsets"))?;
    let body_end = data.len() - frames_len;
    let mut out: [&'a [u8]; N] = [&[]; N];
    let mut pos = 0usize;
    let mut frame = 0usize;
    for (i, m) in members.iter().enumerate() {
        let last = i + 1 == N;
        match *m {
            Member::Fixed { size, align } => {
                pos = align_up(pos, align);
                let end =
                    pos.checked_add(size).filter(|&e| e <= body_end).ok_or(Error("fixed-size member out of bounds"))?;
                out[i] = &data[pos..end];
                pos = end;
            }
            Member::Var { align } => {
                pos = align_up(pos, align);
                let end = if last {
                    body_end
                } else {
                    frame += 1;
                    read_offset(data, data.len() - frame * osz, osz)?
                };
                if pos > end || end > body_end {
                    return Err(Error("variable-size member out of bounds"));
                }
                out[i] = &data[pos..end];
                pos = end;
            }
        }
    }
    Ok(out)
}

/// An array whose elements have a variable size (`a(say)`, `a(ayay)`, `a{sv}` …):
/// element `i` is found in O(1) through the framing offsets.
#[derive(Debug, Clone, Copy)]
pub struct VarArray<'a> {
    data: &'a [u8],
    osz: usize,
    table: usize,
    len: usize,
    align: usize,
}

impl<'a> VarArray<'a> {
    /// Parses the framing of an array whose elements align to `align`.
    pub fn new(data: &'a [u8], align: usize) -> Result<Self> {
        if data.is_empty() {
            return Ok(VarArray { data, osz: 0, table: 0, len: 0, align });
        }
        let osz = offset_size(data.len());
        let table = read_offset(data, data.len() - osz, osz)?;
        if table > data.len() {
            return Err(Error("array offset table out of bounds"));
        }
        let table_len = data.len() - table;
        if table_len % osz != 0 || table_len == 0 {
            return Err(Error("array offset table has a bad size"));
        }
        Ok(VarArray { data, osz, table, len: table_len / osz, align })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of element `i`.
    pub fn get(&self, i: usize) -> Result<&'a [u8]> {
        if i >= self.len {
            return Err(Error("array index out of bounds"));
        }
        let start = if i == 0 {
            0
        } else {
            align_up(read_offset(self.data, self.table + (i - 1) * self.osz, self.osz)?, self.align)
        };
        let end = read_offset(self.data, self.table + i * self.osz, self.osz)?;
        if start > end || end > self.table {
            return Err(Error("array element out of bounds"));
        }
        Ok(&self.data[start..end])
    }

    /// Iterates over the elements; each item is checked like [`VarArray::get`].
    pub fn iter(&self) -> impl Iterator<Item = Result<&'a [u8]>> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }
}

/// Decodes an `s`: the bytes up to (not including) the mandatory trailing NUL.
/// OSTree names may hold any byte but NUL, so this returns bytes, not `str`.
pub fn string(data: &[u8]) -> Result<&[u8]> {
    match data.split_last() {
        Some((0, body)) if !body.contains(&0) => Ok(body),
        Some((0, _)) => Err(Error("string contains a NUL byte")),
        _ => Err(Error("string lacks its trailing NUL")),
    }
}

/// Decodes a big-endian `u` as OSTree stores it.
pub fn u32_be(data: &[u8]) -> Result<u32> {
    let b: [u8; 4] = data.try_into().map_err(|_| Error("u32 of wrong size"))?;
    Ok(u32::from_be_bytes(b))
}

/// Decodes a big-endian `t` as OSTree stores it.
pub fn u64_be(data: &[u8]) -> Result<u64> {
    let b: [u8; 8] = data.try_into().map_err(|_| Error("u64 of wrong size"))?;
    Ok(u64::from_be_bytes(b))
}

/// Splits a `v` into its value bytes and its type string.
pub fn variant(data: &[u8]) -> Result<(&[u8], &[u8])> {
    let sep = data.iter().rposition(|&b| b == 0).ok_or(Error("variant lacks its type separator"))?;
    let ty = &data[sep + 1..];
    if ty.is_empty() {
        return Err(Error("variant has an empty type"));
    }
    Ok((&data[..sep], ty))
}

/// One entry of an `a{sv}`: the key, the value's bytes and the value's type.
pub type DictEntry<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Decodes an `a{sv}` (a GVariant dictionary, as ostree writes its runtime
/// records) into its entries, in stored order.
pub fn dict(data: &[u8]) -> Result<Vec<DictEntry<'_>>> {
    let arr = VarArray::new(data, 8)?;
    let mut out = Vec::with_capacity(arr.len());
    for el in arr.iter() {
        let [key, value] = structure(el?, [VAR1, VAR8])?;
        let (value, ty) = variant(value)?;
        out.push((string(key)?, value, ty));
    }
    Ok(out)
}

/// Decodes an `a(ayay)` of extended attributes into (name, value) pairs. The
/// name keeps no trailing NUL (OSTree stores one; it is checked and stripped).
pub fn xattrs(data: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
    let arr = VarArray::new(data, 1)?;
    let mut out = Vec::with_capacity(arr.len());
    for el in arr.iter() {
        let [name, value] = structure(el?, [VAR1, VAR1])?;
        let name = string(name).map_err(|_| Error("xattr name is not NUL-terminated"))?;
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_sizes() {
        assert_eq!(offset_size(0), 0);
        assert_eq!(offset_size(255), 1);
        assert_eq!(offset_size(256), 2);
        assert_eq!(offset_size(65536), 4);
    }

    #[test]
    fn say_structure() {
        // ("ab", [1,2,3]): "ab\0" then 3 bytes then 1 offset byte = 3.
        let data = [b'a', b'b', 0, 1, 2, 3, 3];
        let [s, ay] = structure(&data, [VAR1, VAR1]).unwrap();
        assert_eq!(string(s).unwrap(), b"ab");
        assert_eq!(ay, &[1, 2, 3]);
    }

    #[test]
    fn var_array() {
        // ["a", "bc"] as `as`: "a\0" "bc\0" offsets [2, 5]
        let data = [b'a', 0, b'b', b'c', 0, 2, 5];
        let arr = VarArray::new(&data, 1).unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(string(arr.get(0).unwrap()).unwrap(), b"a");
        assert_eq!(string(arr.get(1).unwrap()).unwrap(), b"bc");
        assert!(arr.get(2).is_err());
    }

    #[test]
    fn rejects_bad_offsets() {
        assert!(VarArray::new(&[0, 9], 1).is_err());
        assert!(structure(&[b'a', 0, 7], [VAR1, VAR1]).is_err());
        assert!(string(b"abc").is_err());
        assert!(string(b"a\0c\0").is_err());
    }
}
