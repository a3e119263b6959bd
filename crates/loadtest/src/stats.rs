//! Percentiles and time buckets.

/// The `p`-th percentile (0–100) of sorted samples, by nearest rank; `None` when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summary of a set of latency samples (ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// How many samples.
    pub count: usize,
    /// Mean.
    pub avg: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// The summary of `samples` (sorted in place); `None` when empty.
    pub fn of(samples: &mut [f64]) -> Option<Self> {
        samples.sort_by(f64::total_cmp);
        let at = |p| percentile(samples, p);
        Some(Self {
            count: samples.len(),
            avg: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
            p50: at(50.0)?,
            p90: at(90.0)?,
            p95: at(95.0)?,
            p99: at(99.0)?,
            max: *samples.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 95.0), Some(95.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summaries_sort_and_average() {
        let mut samples = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        let latency = Latency::of(&mut samples).unwrap();
        assert_eq!(
            (latency.count, latency.avg, latency.p50, latency.max),
            (5, 3.0, 3.0, 5.0)
        );
        assert_eq!(latency.p99, 5.0);
        assert!(Latency::of(&mut []).is_none());
    }
}
