//! Just enough of a BTF reader to find struct member offsets in the kernel's
//! /sys/kernel/btf/vmlinux: Rust eBPF has no CO-RE relocations, so the agent looks the
//! offsets up here and hands them to the probes through the `OFFSETS` map. The blob (5 MB
//! here) is kept as read, with only where each type starts beside it: names and members are
//! read from it on lookup, so finding a dozen offsets costs the blob and 4 bytes a type, all
//! freed once the offsets are written.
use std::{ops::Range, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source} (kernel BTF needs CONFIG_DEBUG_INFO_BTF=y)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a BTF blob: {0}")]
    Format(&'static str),
}

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
/// A type record's fixed part: name offset, info, size or type.
const TYPE_HEADER: usize = 12;
/// A struct or union member: name offset, type id, bit offset.
const MEMBER: usize = 12;

pub struct KernelBtf {
    data: Vec<u8>,
    /// Where each type's record starts in `data`; index = type id - 1 (id 0 is void).
    types: Vec<u32>,
    strings: Range<usize>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Format("truncated"))
}

/// (kind, member count, kind_flag) of a type's info word.
fn decode_info(info: u32) -> (u32, usize, bool) {
    (
        (info >> 24) & 0x1f,
        (info & 0xffff) as usize,
        info >> 31 == 1,
    )
}

impl KernelBtf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != BTF_MAGIC {
            return Err(BtfError::Format(
                "bad magic (only little-endian BTF is supported)",
            ));
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let (type_off, type_len) = (u32_at(&data, 8)? as usize, u32_at(&data, 12)? as usize);
        let (str_off, str_len) = (u32_at(&data, 16)? as usize, u32_at(&data, 20)? as usize);
        let type_range = hdr_len + type_off..hdr_len + type_off + type_len;
        let strings = hdr_len + str_off..hdr_len + str_off + str_len;
        if type_range.end > data.len() {
            return Err(BtfError::Format("type section out of bounds"));
        }
        if strings.end > data.len() {
            return Err(BtfError::Format("string section out of bounds"));
        }
        let types = type_offsets(&data, type_range)?;
        Ok(KernelBtf {
            data,
            types,
            strings,
        })
    }

    fn str_at(&self, off: u32) -> &str {
        let strings = &self.data[self.strings.clone()];
        let rest = strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// (name offset, kind, members' start, member count, kind_flag) of type `index`.
    fn header(&self, index: usize) -> Option<(u32, u32, usize, usize, bool)> {
        let at = *self.types.get(index)? as usize;
        let name_off = u32_at(&self.data, at).ok()?;
        let (kind, vlen, kind_flag) = decode_info(u32_at(&self.data, at + 4).ok()?);
        Some((name_off, kind, at + TYPE_HEADER, vlen, kind_flag))
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous structs and unions.
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u64> {
        let index = (0..self.types.len()).find(|&i| {
            self.header(i).is_some_and(|(name_off, kind, ..)| {
                kind == KIND_STRUCT && name_off != 0 && self.str_at(name_off) == name
            })
        })?;
        self.find_member(index, member, 0).map(|bits| bits / 8)
    }

    fn find_member(&self, index: usize, member: &str, depth: u32) -> Option<u64> {
        let (_, _, members, vlen, kind_flag) = self.header(index)?;
        if depth > 8 {
            return None;
        }
        for i in 0..vlen {
            let m = members + MEMBER * i;
            let name_off = u32_at(&self.data, m).ok()?;
            let offset = u32_at(&self.data, m + 8).ok()?;
            let bit_offset = if kind_flag {
                offset & 0x00ff_ffff
            } else {
                offset
            };
            if name_off != 0 {
                if self.str_at(name_off) == member {
                    return Some(u64::from(bit_offset));
                }
                continue;
            }
            let inner = self.resolve_composite(u32_at(&self.data, m + 4).ok()?)?;
            if let Some(bits) = self.find_member(inner, member, depth + 1) {
                return Some(u64::from(bit_offset) + bits);
            }
        }
        None
    }

    fn resolve_composite(&self, type_id: u32) -> Option<usize> {
        let index = (type_id as usize).checked_sub(1)?;
        let (_, kind, ..) = self.header(index)?;
        matches!(kind, KIND_STRUCT | KIND_UNION).then_some(index)
    }
}

/// Where each type record in `section` of `data` starts, checked to lie within it.
fn type_offsets(data: &[u8], section: Range<usize>) -> Result<Vec<u32>, BtfError> {
    let b = &data[section.clone()];
    let mut starts = Vec::new();
    let mut at = 0;
    while at + TYPE_HEADER <= b.len() {
        let (kind, vlen, _) = decode_info(u32_at(b, at + 4)?);
        let extra = match kind {
            1 | 14 | 17 => 4,     // INT, VAR, DECL_TAG
            3 => 12,              // ARRAY
            6 | 13 => 8 * vlen,   // ENUM, FUNC_PROTO
            15 | 19 => 12 * vlen, // DATASEC, ENUM64
            KIND_STRUCT | KIND_UNION => MEMBER * vlen,
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, quals, FUNC, FLOAT, TYPE_TAG
            _ => return Err(BtfError::Format("unknown BTF kind")),
        };
        if at + TYPE_HEADER + extra > b.len() {
            return Err(BtfError::Format("truncated"));
        }
        starts.push(u32::try_from(section.start + at).map_err(|_| BtfError::Format("too large"))?);
        at += TYPE_HEADER + extra;
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_offsets_in_running_kernel() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            eprintln!("no kernel BTF here; skipping");
            return;
        };
        let sk_err = btf.member_offset("sock", "sk_err").expect("sock.sk_err");
        assert!(sk_err > 0 && sk_err < 2048, "{sk_err}");
        assert!(btf.member_offset("task_struct", "exit_code").is_some());
        assert!(btf.member_offset("tcp_sock", "bytes_received").is_some());
        // A member of an anonymous union inside sock_common.
        assert!(btf.member_offset("sock_common", "skc_daddr").is_some());
        assert_eq!(btf.member_offset("sock", "no_such_member"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            KernelBtf::parse(b"not btf at all, really not".to_vec()),
            Err(BtfError::Format(_))
        ));
    }
}
