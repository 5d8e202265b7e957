use aya::{include_bytes_aligned, programs::TracePoint, Ebpf};
fn main() -> anyhow::Result<()> {
    let mut ebpf = Ebpf::load(include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil-probes")))?;
    for (name, p) in ebpf.programs() { println!("{name} {:?}", p.prog_type()); }
    let p: &mut TracePoint = ebpf.program_mut("inet_sock_set_state").unwrap().try_into()?;
    p.load()?;
    p.attach("sock", "inet_sock_set_state")?;
    println!("attached");
    Ok(())
}
