//! What the test bed's benchmarks share: their `-- --name N` options and the median of a run.

use std::time::Duration;

/// The number after `name` on the benchmark's command line (`cargo bench … -- --points 5000000`),
/// else `default`; panics with the option's name when it is not a number.
pub fn option(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number, not {v}")))
        .unwrap_or(default)
}

/// The median of `v` (the upper one of an even count); panics on an empty run.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_ignores_order() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(option("--not-given", 7), 7);
    }
}
