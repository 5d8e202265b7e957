//! vigil-collector is not built yet (issue: the collector). It exits with a clear message so
//! nothing mistakes it for a working collector.
fn main() {
    eprintln!("vigil-collector: not built yet; only vigil-agent works in this version");
    std::process::exit(2);
}
