//! Attaching: struct offsets from BTF for `OFFSETS`, then for each capability the first
//! program that attaches and keys sockets as the connect program does; a classic tracepoint
//! only if its record layout is the expected one.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use aya::{
    programs::{BtfTracePoint, RawTracePoint, TracePoint},
    Btf, Ebpf,
};
use tracing::{debug, info, warn};
use vigil_agent_ebpf::{layouts::LAYOUTS, offsets};

use super::{
    btf::KernelBtf,
    catalog::{Attach, ProbeOption, SocketKeys, CORE_CAPABILITY, PROBES_BY_CAPABILITY},
    prerequisites::TRACEFS,
    Capabilities, ProbeError,
};

/// The probes' `OFFSETS` (each offset + 1; 0 = unknown), looked up in the kernel's BTF
/// before the object is loaded: the loader writes them into `.rodata`, where the verifier
/// sees constants. This reader is freed before aya parses BTF, so the two are never held at
/// once. Also returns the indices that are known.
pub(super) fn find_offsets(caps: &mut Capabilities) -> (Vec<u64>, BTreeSet<u32>) {
    let btf = match KernelBtf::from_sys_fs() {
        Ok(btf) => Some(btf),
        Err(e) => {
            warn!("{e}; errno, exit status and byte counts will be missing");
            None
        }
    };
    let mut table = vec![0u64; offsets::COUNT as usize];
    let mut known = BTreeSet::new();
    // A capability is there when all its members are: one report per capability.
    let mut missing: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for &(index, capability, path) in offsets::PATHS {
        let offset = btf.as_ref().and_then(|b| {
            path.iter()
                .map(|(s, m)| b.member_offset(s, m))
                .sum::<Option<u64>>()
        });
        let absent = missing.entry(capability).or_default();
        match offset {
            Some(offset) => {
                // Stored as offset + 1: 0 means unknown to the probes.
                table[index as usize] = offset + 1;
                known.insert(index);
            }
            None => {
                let (s, m) = path[path.len() - 1];
                absent.push(format!("{s}.{m}"));
            }
        }
    }
    for (capability, members) in missing {
        if members.is_empty() {
            caps.available.insert(capability);
        } else {
            caps.lost(
                capability,
                format!("struct members not found in BTF: {}", members.join(", ")),
            );
        }
    }
    (table, known)
}

/// Programs named in `VIGIL_DISABLE_PROBES` (comma-separated) are not attached: a way to
/// switch off a misbehaving probe, and how the tests exercise the fallbacks.
fn disabled_programs() -> Vec<String> {
    std::env::var("VIGIL_DISABLE_PROBES")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn attach_all(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    known: &BTreeSet<u32>,
    caps: &mut Capabilities,
) -> Result<(), ProbeError> {
    let disabled = disabled_programs();
    // Set by the core capability, which comes first.
    let mut keys = None;
    for &(capability, options) in PROBES_BY_CAPABILITY {
        let mut reasons = Vec::new();
        let mut attached = None;
        for option in options.iter() {
            let result = if disabled.iter().any(|d| d == option.program) {
                Err("disabled by VIGIL_DISABLE_PROBES".to_owned())
            } else if option.needs.iter().any(|n| !known.contains(n)) {
                Err("needs struct offsets missing from BTF".to_owned())
            } else if keys.is_some_and(|k| option.keys != SocketKeys::None && option.keys != k) {
                Err(format!(
                    "keys sockets {:?}, the connect program {keys:?}",
                    option.keys
                ))
            } else {
                attach_one(ebpf, btf, option)
            };
            match result {
                Ok(()) => {
                    attached = Some(option.program);
                    if capability == CORE_CAPABILITY {
                        keys = Some(option.keys);
                    }
                    break;
                }
                Err(reason) => reasons.push(format!("{}: {reason}", option.program)),
            }
        }
        if let Some(program) = attached {
            if reasons.is_empty() {
                debug!(capability, program, "attached");
            } else {
                // A fallback serves: say why the better program did not.
                let passed_over = reasons.join("; ");
                info!(capability, program, %passed_over, "attached a fallback");
            }
            caps.available.insert(capability);
            caps.programs.insert(capability, program);
        } else if capability == CORE_CAPABILITY {
            return Err(ProbeError::CoreProbe(reasons.join("; ")));
        } else {
            caps.lost(capability, reasons.join("; "));
        }
    }
    Ok(())
}

fn attach_one(ebpf: &mut Ebpf, btf: Option<&Btf>, option: &ProbeOption) -> Result<(), String> {
    let prog = ebpf
        .program_mut(option.program)
        .ok_or("program missing from the object")?;
    match option.attach {
        Attach::Btf(event) => {
            let btf = btf.ok_or("the kernel's BTF could not be read")?;
            let prog: &mut BtfTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            prog.load(event, btf).map_err(|e| format!("load: {e}"))?;
            prog.attach().map_err(|e| format!("attach: {e}"))?;
        }
        Attach::Raw(event) => {
            let prog: &mut RawTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            prog.load().map_err(|e| format!("load: {e}"))?;
            prog.attach(event).map_err(|e| format!("attach: {e}"))?;
        }
        Attach::Classic(category, event) => {
            check_layout(category, event)?;
            let prog: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            prog.load().map_err(|e| format!("load: {e}"))?;
            prog.attach(category, event)
                .map_err(|e| format!("attach: {e}"))?;
        }
    }
    Ok(())
}

/// The probes read fields at fixed offsets; refuse a tracepoint whose layout moved.
fn check_layout(category: &str, event: &str) -> Result<(), String> {
    let Some((_, _, expected)) = LAYOUTS
        .iter()
        .find(|(c, e, _)| *c == category && *e == event)
    else {
        return Ok(());
    };
    let path = Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let format = std::fs::read_to_string(&path)
        .map_err(|e| format!("tracepoint not available ({}: {e})", path.display()))?;
    for &(field, offset) in expected.iter() {
        match field_offset(&format, field) {
            Some(actual) if actual == offset => {}
            Some(actual) => {
                return Err(format!(
                    "field {field} at offset {actual}, probe expects {offset}"
                ))
            }
            None => return Err(format!("field {field} missing from {}", path.display())),
        }
    }
    Ok(())
}

/// Offset of `field` in a tracefs `format` file (`field:__u16 sport;\toffset:24;...`).
pub fn field_offset(format: &str, field: &str) -> Option<usize> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::field_offset;

    #[test]
    fn reads_offsets_from_format_files() {
        let format = "name: inet_sock_set_state\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
            \tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n";
        assert_eq!(field_offset(format, "skaddr"), Some(8));
        assert_eq!(field_offset(format, "saddr"), Some(32));
        assert_eq!(field_offset(format, "daddr"), None);
    }
}
