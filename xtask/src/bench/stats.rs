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
    median(&mut paired(side, base, compare))
}

/// Per-round values of `compare(side, base)`, sorted: the spread behind a paired median.
pub(super) fn paired(side: &[f64], base: &[f64], compare: fn(f64, f64) -> f64) -> Vec<f64> {
    let mut per_round: Vec<f64> = side
        .iter()
        .zip(base)
        .map(|(s, b)| compare(*s, *b))
        .collect();
    per_round.sort_by(f64::total_cmp);
    per_round
}

/// "median m (middle half a…b, all c…d)" of per-round values.
pub(super) fn spread(per_round: &[f64], digits: usize) -> String {
    let mut v = per_round.to_vec();
    let (p25, p50, p75) = (
        percentile(&mut v, 0.25),
        percentile(&mut v, 0.5),
        percentile(&mut v, 0.75),
    );
    format!(
        "median {p50:.digits$} (middle half {p25:.digits$}…{p75:.digits$}, all {:.digits$}…{:.digits$})",
        v[0],
        v[v.len() - 1]
    )
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

/// Median over rounds of (side p50 / no-probes p50) within the same round, with its
/// spread; the verdict against the target (≤ 3% with the port watched).
pub(super) fn latency_paired_report(round_p50: &[Vec<f64>; 3]) {
    println!("  paired by round (per-round p50 over the same round's no-probes p50):");
    for (side, name) in [(1, "port unwatched"), (2, "port watched")] {
        let added = paired_median(&round_p50[side], &round_p50[0], |s, o| s - o);
        let ratios = paired(&round_p50[side], &round_p50[0], |s, o| s / o);
        println!(
            "    {name:<15} +{added:.2} µs, ratio {}",
            spread(&ratios, 3)
        );
    }
    let ratio = paired_median(&round_p50[2], &round_p50[0], |s, o| s / o);
    println!(
        "  watched port: target ≤ +3% at p50 (paired median): {}",
        verdict(ratio <= 1.03)
    );
}
