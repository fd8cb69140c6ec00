//! Money as integers: [`Usd`] counts nano-dollars, [`PricePerToken`] pico-dollars per token.
//! Nothing is ever accumulated in floats; floats appear only at the edges (config, JSON).

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// An amount of US dollars in nano-dollars (1e-9 USD). `i64` holds ±9.2 billion dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub i64);

/// Nano-dollars in one dollar.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

impl Usd {
    /// Zero dollars.
    pub const ZERO: Usd = Usd(0);

    /// From nano-dollars.
    pub const fn from_nanos(nanos: i64) -> Usd {
        Usd(nanos)
    }

    /// The amount in nano-dollars.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// From dollars as written in config or JSON, rounded to the nearest nano-dollar;
    /// `None` for NaN, infinities and amounts beyond the range.
    pub fn from_dollars(dollars: f64) -> Option<Usd> {
        let nanos = (dollars * NANOS_PER_USD as f64).round();
        if nanos.is_finite() && nanos.abs() < i64::MAX as f64 {
            Some(Usd(nanos as i64))
        } else {
            None
        }
    }

    /// The amount in dollars, for display and scripts only.
    pub fn dollars(self) -> f64 {
        self.0 as f64 / NANOS_PER_USD as f64
    }

    /// Adds without overflowing (saturates at the range).
    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// Subtracts without overflowing (saturates at the range).
    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, other: Usd) -> Usd {
        self.saturating_add(other)
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, other: Usd) {
        *self = self.saturating_add(other);
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, other: Usd) -> Usd {
        self.saturating_sub(other)
    }
}

impl SubAssign for Usd {
    fn sub_assign(&mut self, other: Usd) {
        *self = self.saturating_sub(other);
    }
}

impl std::iter::Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Usd::saturating_add)
    }
}

/// Exact decimal dollars, `0.000123450` → `"0.00012345"` (trailing zeros trimmed, at least
/// one decimal), for headers, JSON and CSV.
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / NANOS_PER_USD as u64;
        let frac = abs % NANOS_PER_USD as u64;
        let digits = format!("{frac:09}");
        let trimmed = digits.trim_end_matches('0');
        let trimmed = if trimmed.is_empty() { "0" } else { trimmed };
        write!(f, "{sign}{whole}.{trimmed}")
    }
}

/// A price per token in pico-dollars (1e-12 USD): $0.0375 per million tokens is 37,500.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PricePerToken(pub i64);

impl PricePerToken {
    /// From USD per token (LiteLLM's unit); `None` for negative, NaN or absurd prices.
    pub fn from_usd_per_token(usd: f64) -> Option<PricePerToken> {
        let pico = (usd * 1e12).round();
        (pico.is_finite() && (0.0..1e15).contains(&pico)).then_some(PricePerToken(pico as i64))
    }

    /// From USD per million tokens (our config's unit).
    pub fn from_usd_per_mtok(usd: f64) -> Option<PricePerToken> {
        let pico = (usd * 1e6).round();
        (pico.is_finite() && (0.0..1e15).contains(&pico)).then_some(PricePerToken(pico as i64))
    }

    /// USD per million tokens, for display.
    pub fn usd_per_mtok(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// The cost of `tokens` tokens, rounded up to the nano-dollar (never under-counts).
    pub fn cost(self, tokens: u64) -> Usd {
        let pico = i128::from(self.0) * i128::from(tokens);
        let nanos = (pico + 999) / 1000;
        Usd(i64::try_from(nanos).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_exact_decimal() {
        assert_eq!(Usd(0).to_string(), "0.0");
        assert_eq!(Usd(123_450).to_string(), "0.00012345");
        assert_eq!(Usd(2_500_000_000).to_string(), "2.5");
        assert_eq!(Usd(-1).to_string(), "-0.000000001");
    }

    #[test]
    fn prices_count_exactly_in_integers() {
        let gpt4o_input = PricePerToken::from_usd_per_token(0.0000025).unwrap_or_default();
        assert_eq!(gpt4o_input, PricePerToken(2_500_000));
        assert_eq!(gpt4o_input.cost(1_000_000), Usd::from_nanos(2_500_000_000));
        // $0.0375 per million tokens is 37.5 nano-dollars a token.
        let cheap = PricePerToken::from_usd_per_mtok(0.0375).unwrap_or_default();
        assert_eq!(cheap, PricePerToken(37_500));
        assert_eq!(cheap.cost(1), Usd(38), "half a nano-dollar rounds up");
        assert_eq!(cheap.cost(1000), Usd(37_500));
        assert_eq!(PricePerToken(1).cost(1), Usd(1), "a pico-dollar rounds up");
        assert!(PricePerToken::from_usd_per_token(-1.0).is_none());
        assert!(PricePerToken::from_usd_per_token(f64::NAN).is_none());
    }

    #[test]
    fn dollars_round_trip() {
        assert_eq!(Usd::from_dollars(50.0), Some(Usd(50 * NANOS_PER_USD)));
        assert_eq!(Usd::from_dollars(0.1).map(Usd::dollars), Some(0.1));
        assert!(Usd::from_dollars(f64::INFINITY).is_none());
    }
}
