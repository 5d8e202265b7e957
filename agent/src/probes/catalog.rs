//! What the agent asks of the kernel: for each capability the programs that can serve it,
//! best first. (The struct offsets they read, and where BTF has them, are in
//! `vigil_agent_ebpf::offsets`.)
use vigil_agent_ebpf::offsets;

pub(super) enum Attach {
    /// A BTF-typed tracepoint (tp_btf): needs the kernel's BTF.
    Btf(&'static str),
    Classic(&'static str, &'static str),
    Raw(&'static str),
}

/// How a program keys the socket table: the programs serving the capabilities must agree,
/// so the core program (the first to attach) decides, and options keyed otherwise are
/// passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SocketKeys {
    /// BTF-typed programs: the socket's distance from the table (`typed_key`).
    Typed,
    /// Classic and raw tracepoints: the socket's address.
    Address,
    /// The program looks up no socket.
    None,
}

/// One way to get a capability: a program, where it attaches, how it keys sockets, and the
/// BTF offsets it needs.
pub(super) struct ProbeOption {
    pub program: &'static str,
    pub attach: Attach,
    pub keys: SocketKeys,
    pub needs: &'static [u32],
}

impl ProbeOption {
    const fn btf(program: &'static str, event: &'static str, needs: &'static [u32]) -> Self {
        ProbeOption {
            program,
            attach: Attach::Btf(event),
            keys: SocketKeys::Typed,
            needs,
        }
    }

    const fn raw(program: &'static str, event: &'static str, needs: &'static [u32]) -> Self {
        ProbeOption {
            program,
            attach: Attach::Raw(event),
            keys: SocketKeys::Address,
            needs,
        }
    }

    const fn classic(program: &'static str, category: &'static str, event: &'static str) -> Self {
        ProbeOption {
            program,
            attach: Attach::Classic(category, event),
            keys: SocketKeys::Address,
            needs: &[],
        }
    }
}

/// The capability whose loss stops the agent: without it no connect is seen.
pub(super) const CORE_CAPABILITY: &str = "connect_outcomes";

/// Each capability with its options, best first: BTF-typed tracepoints build no record and
/// read the socket with plain loads; without BTF, the classic state program with raw ones
/// beside it (no record either, but a helper call per field).
pub(super) const PROBES_BY_CAPABILITY: &[(&str, &[ProbeOption])] = &[
    (
        CORE_CAPABILITY,
        &[
            ProbeOption::btf(
                "inet_sock_set_state_btf",
                "inet_sock_set_state",
                offsets::SOCK_FIELDS,
            ),
            ProbeOption::classic("inet_sock_set_state", "sock", "inet_sock_set_state"),
        ],
    ),
    (
        "syn_retransmits",
        &[
            ProbeOption::btf("tcp_retransmit_skb_btf", "tcp_retransmit_skb", &[]),
            ProbeOption::raw("tcp_retransmit_skb", "tcp_retransmit_skb", &[]),
        ],
    ),
    (
        "resets_received",
        &[
            ProbeOption::btf("tcp_receive_reset_btf", "tcp_receive_reset", &[]),
            ProbeOption::raw("tcp_receive_reset", "tcp_receive_reset", &[]),
        ],
    ),
    (
        "resets_sent",
        &[
            ProbeOption::btf("tcp_send_reset_btf", "tcp_send_reset", &[]),
            ProbeOption::raw("tcp_send_reset", "tcp_send_reset", &[]),
        ],
    ),
    (
        "request_sent_time",
        &[
            ProbeOption::btf("tcp_sendmsg_locked_btf", "tcp_sendmsg_locked", &[]),
            ProbeOption::raw("tcp_sendmsg_locked", "tcp_sendmsg_locked", &[]),
        ],
    ),
    (
        "first_byte",
        &[
            ProbeOption::btf(
                "tcp_probe_btf",
                "tcp_probe",
                &[offsets::SKB_LEN, offsets::SKB_DATA],
            ),
            ProbeOption::raw(
                "tcp_probe_raw",
                "tcp_probe",
                &[offsets::SKB_LEN, offsets::SKB_DATA],
            ),
            ProbeOption::classic("tcp_probe", "tcp", "tcp_probe"),
        ],
    ),
    (
        "owner_exits",
        &[ProbeOption {
            program: "sched_process_exit",
            attach: Attach::Classic("sched", "sched_process_exit"),
            keys: SocketKeys::None,
            needs: &[],
        }],
    ),
];
