//! The statistics the detector rests on: exact negative-binomial tails, and the false-alarm
//! arithmetic that turns a budget into thresholds.

use statrs::distribution::{Binomial, DiscreteCDF, NegativeBinomial, Poisson};

/// Largest evidence score, in nats: a p-value that underflows is "certain", not infinite.
pub const MAX_SCORE: f64 = 700.0;

/// Above this dispersion k a negative binomial is a Poisson for every purpose here.
const POISSON_ABOVE_K: f64 = 1e6;

/// `-ln P(X >= x)` for `X` negative binomial with mean `mean` and dispersion `k` (variance
/// `mean + mean² / k`): the evidence, in nats, that `x` is too many.
pub fn upper_score(x: f64, mean: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let mean = mean.max(1e-9);
    // sf(x - 1) = P(X > x - 1) = P(X >= x) for integer x (STACK.md: statrs sf is strict).
    let x = x.round() as u64;
    let p = if k >= POISSON_ABOVE_K {
        Poisson::new(mean).map(|d| d.sf(x - 1)).unwrap_or(0.0)
    } else {
        NegativeBinomial::new(k, k / (k + mean))
            .map(|d| d.sf(x - 1))
            .unwrap_or(0.0)
    };
    score_of(p)
}

/// The smallest count `x` with `P(X >= x) <= p` for `X` negative binomial with mean `mean`
/// and dispersion `k`: counts of at least `x` are rarer than `p`.
pub fn upper_quantile(p: f64, mean: f64, k: f64) -> u64 {
    let target = -p.clamp(1e-300, 1.0).ln();
    if target <= 0.0 {
        return 0;
    }
    // Exponential search for an x past the quantile, then bisection.
    let (mut lo, mut hi) = (0u64, (mean.ceil() as u64).max(1));
    while upper_score(hi as f64, mean, k) < target {
        lo = hi;
        hi = hi.saturating_mul(2);
        if hi >= 1 << 40 {
            return hi;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if upper_score(mid as f64, mean, k) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// `-ln P(X <= x)` for the same distribution: the evidence that `x` is too few.
pub fn lower_score(x: f64, mean: f64, k: f64) -> f64 {
    let mean = mean.max(1e-9);
    let x = x.max(0.0).round() as u64;
    let p = if k >= POISSON_ABOVE_K {
        Poisson::new(mean).map(|d| d.cdf(x)).unwrap_or(1.0)
    } else {
        NegativeBinomial::new(k, k / (k + mean))
            .map(|d| d.cdf(x))
            .unwrap_or(1.0)
    };
    score_of(p)
}

/// `-ln P(X >= x)` for `X` binomial with `n` trials of probability `p`: the evidence that
/// `x` of `n` events falling where a share `p` of them was expected is too many.
pub fn binomial_upper_score(x: u64, n: u64, p: f64) -> f64 {
    if x == 0 {
        return 0.0;
    }
    score_of(
        Binomial::new(p.clamp(0.0, 1.0), n)
            .map(|d| d.sf(x - 1))
            .unwrap_or(0.0),
    )
}

fn score_of(p: f64) -> f64 {
    if p > 0.0 {
        (-p.ln()).clamp(0.0, MAX_SCORE)
    } else {
        MAX_SCORE
    }
}

/// The threshold, in nats, that holds a family of `tests` tests run every bucket to at most
/// `false_alarms` false alarms in `buckets` buckets: the union (Bonferroni) bound
/// `P(one test fires) <= false_alarms / (buckets * tests)`.
///
/// For a CUSUM the same number is its decision interval h: Wald's bound gives an average run
/// length of at least `e^h` buckets between false alarms, so the same arithmetic applies.
/// Tests on consecutive buckets are strongly correlated, so the true false-alarm rate under
/// the model is well below the budget; the margin absorbs model error.
pub fn threshold(false_alarms: f64, buckets: f64, tests: f64) -> f64 {
    (buckets * tests / false_alarms.max(1e-9)).ln().max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upper_quantile_is_the_first_count_rarer_than_p() {
        for (mean, k) in [
            (0.2, 1e9),
            (3.0, 1e9),
            (3.0, 2.0),
            (40.0, 10.0),
            (500.0, 50.0),
        ] {
            for p in [0.1, 1e-3, 1e-6] {
                let x = upper_quantile(p, mean, k);
                assert!(
                    upper_score(x as f64, mean, k) >= -p.ln(),
                    "{mean} {k} {p}: {x}"
                );
                assert!(x == 0 || upper_score((x - 1) as f64, mean, k) < -p.ln());
            }
        }
        // Poisson(3): P(X >= 8) = 0.0119, P(X >= 9) = 0.0038.
        assert_eq!(upper_quantile(0.01, 3.0, 1e9), 9);
    }

    #[test]
    fn binomial_tail_matches_hand_computation() {
        // P(X >= 12 | 12 trials of 1/3) = 3^-12; P(X >= 1 | 2 of 1/2) = 3/4.
        assert!((binomial_upper_score(12, 12, 1.0 / 3.0) - 12.0 * 3f64.ln()).abs() < 1e-9);
        assert!((binomial_upper_score(1, 2, 0.5) + 0.75f64.ln()).abs() < 1e-9);
        assert_eq!(binomial_upper_score(0, 5, 0.5), 0.0);
    }

    #[test]
    fn poisson_tail_matches_hand_computation() {
        // P(X >= 3 | Poisson 1) = 1 - e^-1 (1 + 1 + 1/2)
        let p = 1.0 - (-1.0f64).exp() * 2.5;
        assert!((upper_score(3.0, 1.0, 1e9) + p.ln()).abs() < 1e-9);
        assert_eq!(upper_score(0.0, 1.0, 1e9), 0.0);
    }

    #[test]
    fn overdispersion_weakens_evidence() {
        let poisson = upper_score(30.0, 10.0, 1e9);
        let nb = upper_score(30.0, 10.0, 2.0);
        assert!(poisson > nb * 2.0, "poisson {poisson} nb {nb}");
        // Negative binomial with k=1 is geometric: P(X >= x) = (m/(1+m))^x.
        let m: f64 = 4.0;
        assert!((upper_score(5.0, m, 1.0) + 5.0 * (m / (1.0 + m)).ln()).abs() < 1e-9);
    }

    #[test]
    fn impossible_counts_are_capped_not_infinite() {
        assert_eq!(upper_score(10_000.0, 1e-6, 1e9), MAX_SCORE);
        assert!(lower_score(0.0, 10_000.0, 1e9) > 100.0);
        assert!(lower_score(10.0, 10.0, 5.0) < 1.0);
    }

    #[test]
    fn thresholds_grow_with_the_log_of_the_budget() {
        let month = 30.0 * 1440.0;
        let h1 = threshold(1.0, month, 4.0);
        let h2 = threshold(0.5, month, 4.0);
        assert!((h2 - h1 - 2f64.ln()).abs() < 1e-12);
        assert!((h1 - (month * 4.0).ln()).abs() < 1e-12);
    }
}
