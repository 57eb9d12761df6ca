//! One part of a data set for an array job ([`Shard`]): `--shard I/N` of `ldctq score` and `ldctq bench`.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::str::FromStr;

/// Part `index` (0-based) of `count` contiguous parts of a list of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// A shard, checked: `count >= 1` and `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::InvalidInput(format!(
                "shard {index}/{count}: expected I/N with 0 <= I < N (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )));
        }
        Ok(Self { index, count })
    }

    /// The items of this shard among `n`: contiguous, in order, together covering `0..n` exactly once
    /// over the `count` shards. Boundaries fall on multiples of `batch`, so that a run batching `batch`
    /// consecutive items (of one size) forms the same batches sharded as unsharded, and gives the same
    /// numbers. Shards differ by at most one batch; with fewer batches than shards some are empty.
    pub fn range(&self, n: usize, batch: usize) -> Range<usize> {
        let batch = batch.max(1);
        let batches = n.div_ceil(batch);
        let edge = |i: usize| (i * batches / self.count * batch).min(n);
        edge(self.index)..edge(self.index + 1)
    }
}

impl FromStr for Shard {
    type Err = Error;
    /// `I/N`, e.g. `0/4`.
    fn from_str(s: &str) -> Result<Self> {
        let parsed =
            s.split_once('/').and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) => Self::new(index, count),
            None => Err(Error::InvalidInput(format!("shard {s:?}: expected I/N, e.g. 0/4"))),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_item_once_on_batch_boundaries() {
        for n in [0, 1, 7, 8, 9, 100, 257] {
            for count in 1..=7 {
                for batch in [1, 3, 8] {
                    let ranges: Vec<_> =
                        (0..count).map(|i| Shard::new(i, count).unwrap().range(n, batch)).collect();
                    assert_eq!(ranges[0].start, 0);
                    assert_eq!(ranges[count - 1].end, n);
                    for w in ranges.windows(2) {
                        assert_eq!(w[0].end, w[1].start, "n {n} count {count} batch {batch}");
                    }
                    for r in &ranges {
                        assert!(r.start % batch == 0 || r.start == n, "{r:?} not on a batch boundary");
                    }
                    let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                    let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(hi - lo <= batch, "n {n} count {count} batch {batch}: {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        assert_eq!(Shard::new(2, 4).unwrap().to_string(), "2/4");
        for bad in ["4/4", "1/0", "1", "a/2", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
