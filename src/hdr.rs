//! Counting samples in hdrhistogram's bucket layout without its
//! per-sample upkeep.
//!
//! hdrhistogram's `record` checks the range, keeps a minimum, a maximum and
//! a total, and goes through a `Result`: about 60 instructions a sample,
//! a tenth of the simulator's instructions (five or six samples a
//! session). [`Counts`] keeps the same counts array, indexed the
//! way hdrhistogram indexes it (a handful of instructions), and builds the
//! `Histogram` when one is asked for: quantiles, serialisation and merging
//! stay hdrhistogram's. The tests hold the two equal over the whole range.

use hdrhistogram::Histogram;

/// Samples of microseconds counted as hdrhistogram counts them for a
/// histogram with lowest discernible value 1 whose sub-bucket count is
/// `2^SUB_MAG` (`SUB_MAG` = ⌈log₂(2·10^sigfig)⌉: 11 for 3 significant
/// digits, 8 for 2). Values beyond the array go to the top bucket, as
/// hdrhistogram's `saturating_record` puts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts<const SUB_MAG: u32> {
    counts: Box<[u64]>,
    /// Index of the histogram's highest trackable value.
    top: usize,
    /// Every count above this index is zero.
    hi: usize,
    n: u64,
}

impl<const SUB_MAG: u32> Counts<SUB_MAG> {
    const HALF_MAG: u32 = SUB_MAG - 1;
    const HALF: usize = 1 << Self::HALF_MAG;
    const MASK: u64 = (1 << SUB_MAG) - 1;

    /// Empty counts in the layout of `template` (which must have lowest
    /// value 1 and `SUB_MAG` matching its significant digits).
    pub fn new(template: &Histogram<u64>) -> Self {
        let sub_mag = (2.0 * 10f64.powi(i32::from(template.sigfig()))).log2().ceil() as u32;
        assert!(
            template.low() == 1 && sub_mag == SUB_MAG,
            "a histogram layout Counts<{SUB_MAG}> does not have"
        );
        Counts {
            counts: vec![0; template.distinct_values()].into_boxed_slice(),
            top: Self::index(template.high()),
            hi: 0,
            n: 0,
        }
    }

    /// Index of `value`'s bucket in hdrhistogram's counts array.
    #[inline]
    fn index(value: u64) -> usize {
        let bucket = 64 - SUB_MAG - (value | Self::MASK).leading_zeros();
        ((bucket as usize + 1) << Self::HALF_MAG) + (value >> bucket) as usize - Self::HALF
    }

    /// The lowest value of bucket `index`.
    fn value(index: usize) -> u64 {
        if index < Self::HALF << 1 {
            return index as u64;
        }
        let bucket = (index >> Self::HALF_MAG) - 1;
        (((index & (Self::HALF - 1)) + Self::HALF) as u64) << bucket
    }

    /// Where `value` is counted.
    #[inline]
    fn slot(&self, value: u64) -> usize {
        let i = Self::index(value);
        if i < self.counts.len() { i } else { self.top }
    }

    /// Count one sample.
    #[inline]
    pub fn record(&mut self, value: u64) {
        let i = self.slot(value);
        self.counts[i] += 1;
        self.hi = self.hi.max(i);
        self.n += 1;
    }

    /// Samples counted.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// No sample counted.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Forget every sample.
    pub fn clear(&mut self) {
        if self.n > 0 {
            self.counts[..=self.hi].fill(0);
            self.n = 0;
            self.hi = 0;
        }
    }

    /// Add the samples of `h` (of this layout, as serialised ones are).
    pub fn add_histogram(&mut self, h: &Histogram<u64>) {
        for v in h.iter_recorded() {
            let i = self.slot(v.value_iterated_to());
            self.counts[i] += v.count_at_value();
            self.hi = self.hi.max(i);
            self.n += v.count_at_value();
        }
    }

    /// What `to_histogram(template).value_at_quantile(q)` gives, without
    /// building the histogram.
    pub fn value_at_quantile(&self, q: f64, template: &Histogram<u64>) -> u64 {
        let q = q.min(1.0);
        let rank = ((q * self.n as f64).ceil() as u64).max(1);
        let mut below = 0;
        for (i, &n) in self.counts[..=self.hi].iter().enumerate() {
            below += n;
            if below >= rank {
                let v = Self::value(i);
                return if q == 0.0 { template.lowest_equivalent(v) } else { template.highest_equivalent(v) };
            }
        }
        0
    }

    /// The samples as a histogram of `template`'s layout.
    pub fn to_histogram(&self, template: &Histogram<u64>) -> Histogram<u64> {
        let mut h = Histogram::new_from(template);
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 {
                h.saturating_record_n(Self::value(i), n);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// Values at every power of two and its neighbours, past the top, and
    /// log-uniform random ones.
    fn values() -> Vec<u64> {
        let mut values = vec![0, 1, 2, 127, 128, 255, 256, 1023, 1024, 2047, 2048, 2049, 1_000_000];
        for k in 0..64 {
            let p = 1u64 << k;
            values.extend([p - 1, p, p + 1, p.saturating_mul(3) / 2]);
        }
        values.extend([u64::MAX - 1, u64::MAX]);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        for _ in 0..20_000 {
            let bits = rng.random_range(0..64u32);
            values.push(rng.random::<u64>() >> bits);
        }
        values
    }

    fn same_as_hdrhistogram<const M: u32>(template: Histogram<u64>) {
        let mut ours = Counts::<M>::new(&template);
        let mut theirs = template.clone();
        let mut values = values();
        values.extend([template.high() - 1, template.high(), template.high() + 1, template.high() * 2]);
        for (k, &v) in values.iter().enumerate() {
            ours.record(v);
            theirs.saturating_record(v);
            if k < 300 || k % 5_000 == 0 {
                assert_eq!(ours.to_histogram(&template), theirs, "after recording {v}");
            }
        }
        let h = ours.to_histogram(&template);
        assert_eq!(h, theirs);
        assert_eq!((h.len(), ours.len()), (values.len() as u64, values.len() as u64));
        for q in [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0, 2.0] {
            assert_eq!(h.value_at_quantile(q), theirs.value_at_quantile(q));
            assert_eq!(ours.value_at_quantile(q, &template), theirs.value_at_quantile(q), "quantile {q}");
        }
        assert_eq!(
            Counts::<M>::new(&template).value_at_quantile(0.5, &template),
            template.value_at_quantile(0.5)
        );
        let mut again = Counts::<M>::new(&template);
        again.add_histogram(&theirs);
        assert!(again == ours, "counts rebuilt from the histogram differ");
        again.clear();
        assert!(again.is_empty() && again.to_histogram(&template).is_empty());
        assert!(again == Counts::<M>::new(&template), "clear leaves counts behind");
    }

    #[test]
    fn counts_as_hdrhistogram_does_at_3_significant_digits() {
        same_as_hdrhistogram::<11>(Histogram::new_with_bounds(1, 10_000_000_000_000, 3).unwrap());
    }

    #[test]
    fn counts_as_hdrhistogram_does_at_2_significant_digits() {
        same_as_hdrhistogram::<8>(Histogram::new_with_bounds(1, 10_000_000_000, 2).unwrap());
    }

    #[test]
    #[should_panic(expected = "layout")]
    fn refuses_a_layout_it_does_not_index() {
        Counts::<11>::new(&Histogram::new_with_bounds(1, 1_000_000, 2).unwrap());
    }
}
