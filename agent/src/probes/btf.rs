//! Just enough of a BTF reader to find struct member offsets in the kernel's
//! /sys/kernel/btf/vmlinux: Rust eBPF has no CO-RE relocations, so the agent looks the
//! offsets up here and hands them to the probes through the `OFFSETS` map.
use std::{collections::HashMap, path::Path};

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

struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

struct Type {
    name_off: u32,
    kind: u32,
    members: Vec<Member>,
}

pub struct KernelBtf {
    strings: Vec<u8>,
    /// Index = type id - 1 (id 0 is void).
    types: Vec<Type>,
    by_name: HashMap<String, usize>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Format("truncated"))
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
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != BTF_MAGIC {
            return Err(BtfError::Format(
                "bad magic (only little-endian BTF is supported)",
            ));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let types_at = hdr_len + type_off;
        let type_bytes = data
            .get(types_at..types_at + type_len)
            .ok_or(BtfError::Format("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Format("string section out of bounds"))?
            .to_vec();
        let types = parse_types(type_bytes)?;
        let mut btf = KernelBtf {
            strings,
            types,
            by_name: HashMap::new(),
        };
        for (index, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name_off != 0 {
                let name = btf.str_at(t.name_off).to_owned();
                btf.by_name.entry(name).or_insert(index);
            }
        }
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous structs and unions.
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u64> {
        let index = *self.by_name.get(name)?;
        self.find_member(index, member, 0).map(|bits| bits / 8)
    }

    fn find_member(&self, index: usize, member: &str, depth: u32) -> Option<u64> {
        let t = self.types.get(index)?;
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if m.name_off != 0 {
                if self.str_at(m.name_off) == member {
                    return Some(u64::from(m.bit_offset));
                }
                continue;
            }
            let inner = self.resolve_composite(m.type_id)?;
            if let Some(bits) = self.find_member(inner, member, depth + 1) {
                return Some(u64::from(m.bit_offset) + bits);
            }
        }
        None
    }

    fn resolve_composite(&self, type_id: u32) -> Option<usize> {
        let index = (type_id as usize).checked_sub(1)?;
        let t = self.types.get(index)?;
        matches!(t.kind, KIND_STRUCT | KIND_UNION).then_some(index)
    }
}

fn parse_types(b: &[u8]) -> Result<Vec<Type>, BtfError> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 12 <= b.len() {
        let name_off = u32_at(b, at)?;
        let info = u32_at(b, at + 4)?;
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
        at += 12;
        let mut members = Vec::new();
        let extra = match kind {
            1 | 14 | 17 => 4,     // INT, VAR, DECL_TAG
            3 => 12,              // ARRAY
            6 | 13 => 8 * vlen,   // ENUM, FUNC_PROTO
            15 | 19 => 12 * vlen, // DATASEC, ENUM64
            KIND_STRUCT | KIND_UNION => {
                for i in 0..vlen {
                    let m = at + 12 * i;
                    let offset = u32_at(b, m + 8)?;
                    members.push(Member {
                        name_off: u32_at(b, m)?,
                        type_id: u32_at(b, m + 4)?,
                        bit_offset: if kind_flag == 1 {
                            offset & 0x00ff_ffff
                        } else {
                            offset
                        },
                    });
                }
                12 * vlen
            }
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, quals, FUNC, FLOAT, TYPE_TAG
            _ => return Err(BtfError::Format("unknown BTF kind")),
        };
        at += extra;
        types.push(Type {
            name_off,
            kind,
            members,
        });
    }
    Ok(types)
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
            KernelBtf::parse(b"not btf at all, really not"),
            Err(BtfError::Format(_))
        ));
    }
}
