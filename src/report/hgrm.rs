//! HdrHistogram interchange: the percentile-distribution text (`.hgrm`, the
//! format of the Java library's `outputPercentileDistribution`, which
//! HdrHistogram's plotter and other tools read) and the compressed V2
//! serialization in base64 (which every HdrHistogram implementation can
//! decode and merge).

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Write `h` (recorded in µs) as a percentile distribution in milliseconds.
pub fn percentile_distribution(h: &Histogram<u64>, w: &mut dyn Write) -> io::Result<()> {
    const SCALE: f64 = 1e3; // µs → ms
    writeln!(w, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            if q < 1.0 {
                writeln!(w, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q))?;
            } else {
                writeln!(w, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, stdev) = if h.is_empty() { (0.0, 0.0) } else { (h.mean() / SCALE, h.stdev() / SCALE) };
    writeln!(w, "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]")?;
    writeln!(w, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / SCALE, h.len())?;
    writeln!(w, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), h.distinct_values())
}

/// `h` in the compressed V2 format, base64-encoded.
pub fn to_base64(h: &Histogram<u64>) -> String {
    crate::tally::encode_hist(h)
}

/// Decode what [`to_base64`] wrote (or any V2 / V2-deflate histogram of a
/// bounded layout: see `tally::decode_hist`).
pub fn from_base64(text: &str) -> Result<Histogram<u64>, String> {
    crate::tally::decode_hist(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000_000, 3).unwrap();
        for us in 1..=10_000u64 {
            h.record(us * 100).unwrap();
        }
        h
    }

    #[test]
    fn base64_round_trip_keeps_every_count() {
        let h = sample();
        let back = from_base64(&to_base64(&h)).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert_eq!(back.max(), h.max());
        assert!(from_base64("bm90IGEgaGlzdG9ncmFt").is_err());
    }

    #[test]
    fn percentile_text_has_rows_and_footer() {
        let mut out = Vec::new();
        percentile_distribution(&sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> =
            text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).collect();
        assert!(rows.len() > 20);
        // the median of 0.1 ms … 1000 ms is about 500 ms
        let median = rows.iter().find(|r| r.split_whitespace().nth(1) == Some("0.500000000000")).unwrap();
        let v: f64 = median.split_whitespace().next().unwrap().parse().unwrap();
        assert!((v - 500.0).abs() < 1.0, "{median}");
        assert!(rows.last().unwrap().contains("1.000000000000"));
        assert!(text.contains("Total count    =        10000"));
    }
}
