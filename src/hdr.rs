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

use std::io::Read;

use hdrhistogram::Histogram;

/// The cookies of hdrhistogram's V2 serialisation, plain and deflated
/// (`hdrhistogram::serialization`: the base cookie with the word-size bits).
pub(crate) const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
pub(crate) const V2_DEFLATE_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// A V2 header: cookie, payload length, normalising offset, significant
/// digits, lowest and highest trackable values, integer-to-double ratio.
pub(crate) const V2_HEADER: usize = 40;

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

    /// Count one sample. True if it went to the highest bucket counted so
    /// far (or a higher one): only such a sample can be a new maximum, so a
    /// caller that keeps the exact maximum compares it only then.
    #[inline]
    pub fn record(&mut self, value: u64) -> bool {
        let i = Self::index(value);
        // one comparison for both the range and the array's bounds
        let Some(c) = self.counts.get_mut(i) else {
            return self.record_top();
        };
        *c += 1;
        self.n += 1;
        if i < self.hi {
            return false;
        }
        self.hi = i;
        true
    }

    /// A sample beyond the array: counted in the top bucket.
    #[cold]
    #[inline(never)]
    fn record_top(&mut self) -> bool {
        self.counts[self.top] += 1;
        self.n += 1;
        self.hi = self.hi.max(self.top);
        true
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

    /// Add the samples of a serialised histogram (V2, plain or deflated, as
    /// `tally::encode_hist` writes them) of `template`'s layout, straight
    /// from its run-length counts. hdrhistogram's deserializer builds a
    /// histogram first: an array of every bucket, zeroed (page faults and
    /// all), then walked bucket by bucket by [`Counts::add_histogram`]:
    /// a quarter of the time of merging small shards.
    /// A count at an index past these counts goes to the top bucket, as
    /// [`Counts::add_histogram`] puts it. On an error nothing is added.
    pub fn add_serialized(&mut self, bytes: &[u8], template: &Histogram<u64>) -> Result<(), String> {
        let inflated;
        let v2 = match be_u32(bytes, 0) {
            Some(V2_COOKIE) => bytes,
            Some(V2_DEFLATE_COOKIE) => {
                let len = be_u32(bytes, 4).ok_or("a truncated histogram")? as usize;
                let body = bytes.get(8..8 + len).ok_or("a truncated histogram")?;
                // a count takes at most 9 bytes: anything longer is not a
                // histogram of this layout (nor worth inflating further)
                let most = V2_HEADER + 9 * self.counts.len();
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(body)
                    .take(most as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("a histogram that does not inflate: {e}"))?;
                if out.len() > most {
                    return Err("a histogram longer than its layout allows".into());
                }
                inflated = out;
                &inflated
            }
            _ => return Err("not an HdrHistogram V2".into()),
        };
        let field = |at| be_u32(v2, at).ok_or("a truncated histogram");
        let (cookie, len, offset, digits) = (field(0)?, field(4)? as usize, field(8)?, field(12)?);
        let low = v2.get(16..24).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        let ratio = v2.get(32..40).map(|b| f64::from_be_bytes(b.try_into().expect("8 bytes")));
        if cookie != V2_COOKIE || offset != 0 || ratio != Some(1.0) {
            return Err("not a plain HdrHistogram V2".into());
        }
        if u32::from(template.sigfig()) != digits || low != Some(template.low()) {
            return Err(format!(
                "a histogram of {digits} significant digits from {low:?}, not of this layout"
            ));
        }
        let mut payload = v2.get(V2_HEADER..V2_HEADER + len).ok_or("a truncated histogram")?;
        // read whole before anything is added
        let mut runs: Vec<(usize, u64)> = Vec::new();
        let mut i = 0usize;
        while !payload.is_empty() {
            let (raw, used) = varint(payload).ok_or("a truncated count")?;
            payload = &payload[used..];
            let n = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            if n < 0 {
                i = i.saturating_add(n.unsigned_abs() as usize);
            } else {
                if n > 0 {
                    runs.push((if i < self.counts.len() { i } else { self.top }, n as u64));
                }
                i = i.saturating_add(1);
            }
        }
        for (i, n) in runs {
            self.counts[i] = self.counts[i].saturating_add(n);
            self.hi = self.hi.max(i);
            self.n = self.n.saturating_add(n);
        }
        Ok(())
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

    /// The samples serialised as hdrhistogram's `V2DeflateSerializer`
    /// serialises `self.to_histogram(template)`, byte for byte, without
    /// building that histogram (an array of every bucket, zeroed, filled,
    /// then walked again to encode): the counts up to the highest one, runs
    /// of zeros as one negative number, zigzag LEB128, deflated by zlib at
    /// the default level. `None` without samples.
    pub fn to_v2_deflate(&self, template: &Histogram<u64>) -> Option<Vec<u8>> {
        if self.n == 0 {
            return None;
        }
        let mut v2 = Vec::with_capacity(V2_HEADER + 64);
        v2.extend_from_slice(&V2_COOKIE.to_be_bytes());
        v2.extend_from_slice(&0u32.to_be_bytes()); // the payload's length, below
        v2.extend_from_slice(&0u32.to_be_bytes());
        v2.extend_from_slice(&u32::from(template.sigfig()).to_be_bytes());
        v2.extend_from_slice(&template.low().to_be_bytes());
        v2.extend_from_slice(&template.high().to_be_bytes());
        v2.extend_from_slice(&1f64.to_be_bytes());
        let counts = &self.counts[..=self.hi];
        let mut i = 0;
        while i < counts.len() {
            let mut zeros = 0;
            while i + zeros < counts.len() && counts[i + zeros] == 0 {
                zeros += 1;
            }
            let n = if zeros > 1 {
                i += zeros;
                -(zeros as i64)
            } else {
                i += 1;
                i64::try_from(counts[i - 1]).unwrap_or(i64::MAX)
            };
            put_varint(&mut v2, ((n << 1) ^ (n >> 63)) as u64);
        }
        let payload = (v2.len() - V2_HEADER) as u32;
        v2[4..8].copy_from_slice(&payload.to_be_bytes());
        let mut out = Vec::with_capacity(8 + v2.len() / 2);
        out.extend_from_slice(&V2_DEFLATE_COOKIE.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        let mut z = flate2::write::ZlibEncoder::new(out, flate2::Compression::default());
        std::io::Write::write_all(&mut z, &v2).expect("compressing into memory cannot fail");
        let mut out = z.finish().expect("compressing into memory cannot fail");
        let len = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&len.to_be_bytes());
        Some(out)
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

pub(crate) fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// [`varint`]'s inverse, as hdrhistogram writes it.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    for _ in 0..8 {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        out.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    out.push(v as u8);
}

/// hdrhistogram's LEB128 of at most 9 bytes (the ninth whole) and the
/// bytes it took; `None` if `b` ends inside it.
pub(crate) fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for k in 0..8 {
        let byte = *b.get(k)?;
        v |= u64::from(byte & 0x7f) << (7 * k);
        if byte & 0x80 == 0 {
            return Some((v, k + 1));
        }
    }
    Some((v | u64::from(*b.get(8)?) << 56, 9))
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
        // straight from the serialised forms, as hdrhistogram reads them
        use hdrhistogram::serialization::{Serializer, V2DeflateSerializer, V2Serializer};
        let mut plain = Vec::new();
        V2Serializer::new().serialize(&theirs, &mut plain).unwrap();
        let mut deflated = Vec::new();
        V2DeflateSerializer::new().serialize(&theirs, &mut deflated).unwrap();
        assert_eq!(
            ours.to_v2_deflate(&template).unwrap(),
            deflated,
            "serialised otherwise than hdrhistogram"
        );
        assert_eq!(Counts::<M>::new(&template).to_v2_deflate(&template), None);
        for bytes in [&plain, &deflated] {
            let mut read = Counts::<M>::new(&template);
            read.add_serialized(bytes, &template).unwrap();
            assert!(read == ours, "counts read from the serialised histogram differ");
            // twice: the samples add up
            read.add_serialized(bytes, &template).unwrap();
            assert_eq!(read.len(), 2 * ours.len());
            // cut anywhere, or of another layout: refused, nothing added
            for cut in [0, 3, 8, 39, 41, bytes.len() / 2, bytes.len() - 1] {
                let mut none = Counts::<M>::new(&template);
                assert!(none.add_serialized(&bytes[..cut], &template).is_err(), "cut at {cut}");
                assert!(none.is_empty());
            }
        }
        // a deflated body that inflates past what the layout can hold
        let mut bomb = Vec::new();
        bomb.extend_from_slice(&V2_DEFLATE_COOKIE.to_be_bytes());
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &vec![0u8; V2_HEADER + 9 * template.distinct_values() + 10])
            .unwrap();
        let body = z.finish().unwrap();
        bomb.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bomb.extend_from_slice(&body);
        let err = Counts::<M>::new(&template).add_serialized(&bomb, &template).unwrap_err();
        assert!(err.contains("longer than its layout"), "{err}");
        let other = Histogram::<u64>::new_with_bounds(2, template.high(), template.sigfig()).unwrap();
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&other, &mut bytes).unwrap();
        assert!(Counts::<M>::new(&template).add_serialized(&bytes, &template).is_err());
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
