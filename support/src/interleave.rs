//! Contenders measured in turns: short slices, every contender once per round in a shuffled
//! order, and ratios taken between slices of the same round.
//!
//! On a shared 2-core machine the speed of everything drifts by tens of percent over a minute
//! (another tenant, frequency scaling, the page cache). Criterion measures one contender for
//! seconds and then the next, so a drift between the two lands in their ratio. Here a round
//! takes a fraction of a second, so both sides of a ratio see the same machine; the spread of
//! the per-round ratios shows how steady the comparison is.

use std::time::Duration;

/// Runs the operation `iters` times and returns the time it took (criterion's `iter_custom`
/// shape, so the benches' operations serve both).
pub type Timed<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// One side of a comparison.
pub struct Contender<'a> {
    pub name: String,
    pub run: Timed<'a>,
}

impl<'a> Contender<'a> {
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) -> Duration + 'a) -> Self {
        Contender {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// The rates of each contender, one per round (operations per second).
pub struct Rates {
    pub names: Vec<String>,
    pub per_round: Vec<Vec<f64>>,
}

/// How many iterations fill about `slice`, found by doubling from one (warms the contender up
/// on the way).
fn calibrate(run: &mut Timed<'_>, slice: Duration) -> u64 {
    let mut iters = 1u64;
    loop {
        let took = run(iters);
        if took >= slice / 4 || iters >= 1 << 40 {
            let per = took.as_secs_f64() / iters as f64;
            return ((slice.as_secs_f64() / per.max(1e-12)) as u64).max(1);
        }
        iters *= 2;
    }
}

/// `rounds` rounds of one slice of about `slice` per contender, in an order shuffled per round
/// (a fixed seed: the same sequence every run).
pub fn interleave(contenders: &mut [Contender<'_>], slice: Duration, rounds: usize) -> Rates {
    let iters: Vec<u64> = contenders
        .iter_mut()
        .map(|c| calibrate(&mut c.run, slice))
        .collect();
    let mut per_round = vec![Vec::with_capacity(rounds); contenders.len()];
    let mut order: Vec<usize> = (0..contenders.len()).collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..rounds {
        // Fisher-Yates with xorshift64.
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let took = (contenders[i].run)(iters[i]);
            per_round[i].push(iters[i] as f64 / took.as_secs_f64());
        }
    }
    Rates {
        names: contenders.iter().map(|c| c.name.clone()).collect(),
        per_round,
    }
}

/// The value at quantile `q` (0 to 1) of `values`, by nearest rank.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Per contender: the median rate, and the median ratio to the `baseline` contender's rate in
/// the same round with the middle half of those ratios (p25 to p75).
pub struct Summary {
    pub name: String,
    pub median_rate: f64,
    pub ratio: f64,
    pub ratio_p25: f64,
    pub ratio_p75: f64,
}

impl Rates {
    pub fn summarize(&self, baseline: usize) -> Vec<Summary> {
        let base = &self.per_round[baseline];
        self.names
            .iter()
            .zip(&self.per_round)
            .map(|(name, rates)| {
                let ratios: Vec<f64> = rates.iter().zip(base).map(|(r, b)| r / b).collect();
                Summary {
                    name: name.clone(),
                    median_rate: quantile(rates, 0.5),
                    ratio: quantile(&ratios, 0.5),
                    ratio_p25: quantile(&ratios, 0.25),
                    ratio_p75: quantile(&ratios, 0.75),
                }
            })
            .collect()
    }
}

/// Prints one Markdown table row per contender: the case, the contender, its median rate
/// (`unit` per second) and its ratio to the baseline.
pub fn print(case: &str, unit: &str, rates: &Rates, baseline: usize) {
    let base = &rates.names[baseline];
    for s in rates.summarize(baseline) {
        let ratio = if s.name == *base {
            "baseline".to_owned()
        } else {
            format!(
                "**{:.2}x** ({:.2} to {:.2})",
                s.ratio, s.ratio_p25, s.ratio_p75
            )
        };
        println!(
            "| {case} | {} | {} {unit}/s | {ratio} |",
            s.name,
            thousands(s.median_rate)
        );
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
