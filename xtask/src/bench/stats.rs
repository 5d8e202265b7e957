//! Turning samples into figures: percentiles, medians of per-round pairs, verdicts against
//! targets, and the connect() latency reports.
pub(super) fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

pub(super) fn median(samples: &mut [f64]) -> f64 {
    percentile(samples, 0.5)
}

pub(super) fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// Median over rounds of `compare(side, base)` within the same round: the machine drifts
/// between states, so sides are compared paired rather than only pooled.
pub(super) fn paired_median(side: &[f64], base: &[f64], compare: fn(f64, f64) -> f64) -> f64 {
    let mut per_round: Vec<f64> = side
        .iter()
        .zip(base)
        .map(|(s, b)| compare(*s, *b))
        .collect();
    median(&mut per_round)
}

/// connect() latency pooled over every block of each side.
pub(super) fn latency_report(off: &mut [f64], untracked: &mut [f64], tracked: &mut [f64]) {
    let (p50_off, p99_off) = (percentile(off, 0.5), percentile(off, 0.99));
    println!(
        "connect() on loopback, {} connects per side, interleaved:",
        off.len()
    );
    println!("  probes off:                 p50 {p50_off:.2} µs  p99 {p99_off:.2} µs");
    for (name, side) in [
        ("attached, port unwatched", untracked),
        ("attached, port watched", tracked),
    ] {
        let (p50, p99) = (percentile(side, 0.5), percentile(side, 0.99));
        println!(
            "  {name:<26} p50 {p50:.2} µs  p99 {p99:.2} µs  p50 +{:.2} µs (ratio {:.3}), p99 ratio {:.3}",
            p50 - p50_off,
            p50 / p50_off,
            p99 / p99_off
        );
    }
}

/// Median over rounds of (side p50 − no-probes p50) within the same round; the verdict.
pub(super) fn latency_paired_report(round_p50: &[Vec<f64>; 3]) {
    let paired = |side: usize| {
        (
            paired_median(&round_p50[side], &round_p50[0], |s, o| s - o),
            paired_median(&round_p50[side], &round_p50[0], |s, o| s / o),
        )
    };
    let (u_added, u_ratio) = paired(1);
    let (added, ratio) = paired(2);
    println!("  paired by round (median of per-round p50 differences):");
    println!("    port unwatched +{u_added:.2} µs (ratio {u_ratio:.3}); port watched +{added:.2} µs (ratio {ratio:.3})");
    println!(
        "  watched port: target ≤ +1 µs or ≤ 5% at p50 (paired): {}",
        verdict(added <= 1.0 || ratio <= 1.05)
    );
}
