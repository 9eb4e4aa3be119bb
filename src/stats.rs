//! Summaries over seeds: seed lists (`0-9`, `0,3,100-109`) and median, minimum, maximum.
use crate::{Error, Result};

/// Parses a seed list: comma-separated seeds and inclusive ranges, e.g. `0-9`, `7`,
/// `0,3,100-109`. Rejects empty items, reversed ranges, repeats and more than 10,000 seeds.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    const MAX: usize = 10_000;
    let bad = |msg: String| Error::invalid("study.seeds", msg);
    let num = |v: &str, item: &str| {
        v.trim().parse::<u64>().map_err(|_| {
            bad(format!(
                "`{item}` is not a seed or a range A-B of seeds (non-negative integers)"
            ))
        })
    };
    let mut seeds = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(bad(format!(
                "empty item in `{s}`; expected e.g. `0-9` or `0,3,100-109`"
            )));
        }
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (num(a, item)?, num(b, item)?),
            None => {
                let v = num(item, item)?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(bad(format!("range `{item}` is reversed; write {hi}-{lo}")));
        }
        if (hi - lo) as u128 + seeds.len() as u128 >= MAX as u128 {
            return Err(bad(format!("more than {MAX} seeds in `{s}`")));
        }
        for v in lo..=hi {
            if !seen.insert(v) {
                return Err(bad(format!("seed {v} is listed twice in `{s}`")));
            }
            seeds.push(v);
        }
    }
    Ok(seeds)
}

/// Median (mean of the two middle values for an even count), minimum and maximum; NaN for none.
pub fn median_min_max(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    (med, v[0], v[n - 1])
}
