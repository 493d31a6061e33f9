//! Kubernetes resource quantities (`500m`, `1.5`, `256Mi`, `1e9`), parsed exactly.
//!
//! apimachinery stores a quantity as a fixed-point number and never as a float; so do we. A parsed
//! value is `mantissa / 10^scale`, held in an `i128`, which is wide enough for every quantity the
//! apiserver accepts (at most 2^63-1 with three decimal places). Rounding follows apimachinery:
//! [`Quantity::milli_ceil`] is `MilliValue()` and [`Quantity::value_ceil`] is `Value()`, both
//! rounding up.

use std::cmp::Ordering;
use std::fmt;

/// A quantity that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is not `<signedNumber><suffix>`.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Syntax,
    /// The value does not fit the range the apiserver accepts.
    #[error("quantity is too large")]
    OutOfRange,
}

/// An exact, parsed quantity.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    mantissa: i128,
    scale: u32,
}

/// Digits kept after the decimal point before rounding up (apimachinery keeps 3, we keep more so
/// that comparisons of already-rounded values stay exact; rounding happens in the accessors).
const MAX_SCALE: u32 = 18;
/// apimachinery caps every quantity at 2^63-1 in magnitude.
const MAX_MAGNITUDE: i128 = i64::MAX as i128;

impl Quantity {
    /// Parses the apimachinery serialisation format.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = s
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(number_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(QuantityError::Syntax);
        }

        let mut mantissa: i128 = 0;
        let mut scale: u32 = 0;
        for b in int_part.bytes() {
            mantissa = push_digit(mantissa, b)?;
        }
        for b in frac_part.bytes() {
            if scale == MAX_SCALE {
                // Further digits can only matter for rounding up; keep one sticky unit.
                if b != b'0' {
                    mantissa = mantissa.checked_add(1).ok_or(QuantityError::OutOfRange)?;
                    break;
                }
                continue;
            }
            mantissa = push_digit(mantissa, b)?;
            scale += 1;
        }

        let mut q = Quantity { mantissa, scale };
        match suffix {
            "" => {}
            "Ki" => q = q.mul_pow2(10)?,
            "Mi" => q = q.mul_pow2(20)?,
            "Gi" => q = q.mul_pow2(30)?,
            "Ti" => q = q.mul_pow2(40)?,
            "Pi" => q = q.mul_pow2(50)?,
            "Ei" => q = q.mul_pow2(60)?,
            "n" => q = q.shift10(-9)?,
            "u" => q = q.shift10(-6)?,
            "m" => q = q.shift10(-3)?,
            "k" => q = q.shift10(3)?,
            "M" => q = q.shift10(6)?,
            "G" => q = q.shift10(9)?,
            "T" => q = q.shift10(12)?,
            "P" => q = q.shift10(15)?,
            "E" => q = q.shift10(18)?,
            other => {
                let exp = other
                    .strip_prefix(['e', 'E'])
                    .ok_or(QuantityError::Syntax)?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(QuantityError::Syntax);
                }
                let exp: i32 = exp.parse().map_err(|_| QuantityError::OutOfRange)?;
                q = q.shift10(exp)?;
            }
        }
        if q.int_magnitude_exceeds(MAX_MAGNITUDE) {
            return Err(QuantityError::OutOfRange);
        }
        if negative {
            q.mantissa = -q.mantissa;
        }
        Ok(q)
    }

    /// The value in thousandths, rounded up (apimachinery `MilliValue`).
    pub fn milli_ceil(&self) -> i128 {
        self.scaled_ceil(3)
    }

    /// The integer value, rounded up (apimachinery `Value`).
    pub fn value_ceil(&self) -> i128 {
        self.scaled_ceil(0)
    }

    /// True when the quantity is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// True when the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    fn scaled_ceil(&self, digits: u32) -> i128 {
        if self.scale <= digits {
            // Exact: bounded by MAX_MAGNITUDE * 10^3, far inside i128.
            return self.mantissa * 10_i128.pow(digits - self.scale);
        }
        let div = 10_i128.pow(self.scale - digits);
        let q = self.mantissa.div_euclid(div);
        if self.mantissa.rem_euclid(div) == 0 {
            q
        } else {
            q + 1
        }
    }

    fn mul_pow2(self, bits: u32) -> Result<Self, QuantityError> {
        let mantissa = self
            .mantissa
            .checked_mul(1_i128 << bits)
            .ok_or(QuantityError::OutOfRange)?;
        Ok(Quantity { mantissa, ..self })
    }

    fn shift10(self, exp: i32) -> Result<Self, QuantityError> {
        let mut q = self;
        if exp >= 0 {
            let mut exp = exp.unsigned_abs();
            // Absorb the shift into the scale first; only multiply what is left.
            let absorbed = exp.min(q.scale);
            q.scale -= absorbed;
            exp -= absorbed;
            if exp > 0 {
                let factor = 10_i128.checked_pow(exp).ok_or(QuantityError::OutOfRange)?;
                q.mantissa = q
                    .mantissa
                    .checked_mul(factor)
                    .ok_or(QuantityError::OutOfRange)?;
            }
        } else {
            let exp = exp.unsigned_abs();
            let scale = q.scale.checked_add(exp).ok_or(QuantityError::OutOfRange)?;
            if scale > MAX_SCALE {
                // Smaller than anything the apiserver represents: keep a sticky unit so that a
                // non-zero value still rounds up to the smallest unit, as apimachinery does.
                let drop = scale - MAX_SCALE;
                let div = 10_i128.checked_pow(drop);
                q.mantissa = match div {
                    Some(div) if q.mantissa % div == 0 => q.mantissa / div,
                    Some(div) => q.mantissa / div + 1,
                    None => i128::from(q.mantissa != 0),
                };
                q.scale = MAX_SCALE;
            } else {
                q.scale = scale;
            }
        }
        Ok(q)
    }

    fn int_magnitude_exceeds(&self, limit: i128) -> bool {
        self.mantissa.unsigned_abs() / 10_u128.pow(self.scale) > limit.unsigned_abs()
    }
}

fn push_digit(acc: i128, digit: u8) -> Result<i128, QuantityError> {
    if !digit.is_ascii_digit() {
        return Err(QuantityError::Syntax);
    }
    acc.checked_mul(10)
        .and_then(|v| v.checked_add(i128::from(digit - b'0')))
        .ok_or(QuantityError::OutOfRange)
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let scale = self.scale.max(other.scale);
        let widen = |q: &Quantity| q.mantissa.checked_mul(10_i128.pow(scale - q.scale));
        if let (Some(a), Some(b)) = (widen(self), widen(other)) {
            return a.cmp(&b);
        }
        // Near the 2^63 cap at a fine scale the product can overflow: compare floor(value)
        // first, then the fractional remainders at the common scale; every piece stays below
        // 10^18 * 10^18 < 2^127.
        let split = |q: &Quantity| {
            let div = 10_i128.pow(q.scale);
            let int = q.mantissa.div_euclid(div);
            let frac = q.mantissa.rem_euclid(div) * 10_i128.pow(scale - q.scale);
            (int, frac)
        };
        split(self).cmp(&split(other))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.mantissa);
        }
        let div = 10_i128.pow(self.scale);
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let abs = self.mantissa.unsigned_abs();
        let int = abs / div.unsigned_abs();
        let frac = abs % div.unsigned_abs();
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let digits = format!("{frac:0width$}", width = self.scale as usize);
        write!(f, "{sign}{int}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn cpu_milli_values() {
        let cases = [
            ("500m", 500),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1", 100),
            ("0.0001", 1), // rounded up, as MilliValue does
            ("2k", 2_000_000),
            ("100u", 1),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("+2", 2000),
            (".5", 500),
            ("5.", 5000),
            ("0", 0),
        ];
        for (text, milli) in cases {
            assert_eq!(q(text).milli_ceil(), milli, "{text}");
        }
    }

    #[test]
    fn memory_byte_values() {
        let cases = [
            ("256Mi", 256 * 1024 * 1024),
            ("1Gi", 1 << 30),
            ("1G", 1_000_000_000),
            ("129e6", 129_000_000),
            ("128974848", 128_974_848),
            ("1.5Ki", 1536),
            ("0.5", 1),
            ("1Ei", 1 << 60),
            ("8E", 8_000_000_000_000_000_000),
        ];
        for (text, bytes) in cases {
            assert_eq!(q(text).value_ceil(), bytes, "{text}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for text in [
            "", "m", "1.2.3", "12x", "1Mii", "--1", "1e", "1e+", "0x10", "1 Mi", "Mi", "1e-x", ".",
        ] {
            assert_eq!(
                Quantity::parse(text).err(),
                Some(QuantityError::Syntax),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_out_of_range() {
        for text in [
            "9223372036854775808",
            "16Ei",
            "1e19",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(
                Quantity::parse(text).err(),
                Some(QuantityError::OutOfRange),
                "{text}"
            );
        }
        assert!(Quantity::parse("9223372036854775807").is_ok());
        assert!(Quantity::parse("1e2147483647").is_err());
    }

    #[test]
    fn compares_across_units() {
        assert!(q("500m") < q("1"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert!(q("1G") < q("1Gi"));
        assert!(q("256Mi") > q("268435455"));
        assert_eq!(q("0.5"), q("500m"));
        assert!(q("-1") < q("0"));
        assert!(q("7E") < q("8E"));
        // Products that overflow i128 take the split path.
        assert!(q("9223372036854775807") > q("0.000000000000000001"));
        assert!(q("9223372036854775806.000000000000000001") < q("9223372036854775807"));
    }

    #[test]
    fn displays_decimal_value() {
        assert_eq!(q("500m").to_string(), "0.5");
        assert_eq!(q("2").to_string(), "2");
        assert_eq!(q("1Ki").to_string(), "1024");
        assert_eq!(q("-1.250").to_string(), "-1.25");
    }
}
