//! Kubernetes resource quantities (`100m`, `1`, `512Mi`, `1Gi`, `2k`, `1e3`) as integers.
//!
//! k8s-openapi keeps a `Quantity` as the string the user wrote; the scheduler (to add and
//! compare requests) and the kubelet (to set cgroup limits) need numbers. A quantity is a decimal number followed by an optional suffix:
//! - decimal SI: `n` (1e-9), `u` (1e-6), `m` (1e-3), none, `k`, `M`, `G`, `T`, `P`, `E`;
//! - binary SI: `Ki` (2^10), `Mi`, `Gi`, `Ti`, `Pi`, `Ei`;
//! - a decimal exponent: `e3`, `E-2`.
//!
//! What it keeps true (tests below): the result is exact for every value that fits, rounded
//! **up** to the next whole unit (Kubernetes rounds `Value()`/`MilliValue()` up too, so a request
//! is never under-counted). Not promised: values beyond `i64` (an error, not a wrap).

/// Why a quantity string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}: expected a number with an optional suffix such as 100m, 512Mi or 2Gi")]
pub struct ParseQuantityError(pub String);

/// The quantity in thousandths of its unit (CPU: millicores), rounded up.
pub fn parse_milli(text: &str) -> Result<i64, ParseQuantityError> {
    parse_scaled(text, 1000)
}

/// The quantity in whole units (memory: bytes; pods: a count), rounded up.
pub fn parse_units(text: &str) -> Result<i64, ParseQuantityError> {
    parse_scaled(text, 1)
}

/// `ceil(quantity * scale)`, exactly, with integer arithmetic.
fn parse_scaled(text: &str, scale: i128) -> Result<i64, ParseQuantityError> {
    let error = || ParseQuantityError(text.to_string());
    let trimmed = text.trim();
    let (negative, rest) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    // The number: digits with at most one decimal point.
    let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(error());
    }
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.checked_mul(10).and_then(|m| m.checked_add(i128::from(digit - b'0'))).ok_or_else(error)?;
    }
    // value = mantissa * numerator / denominator
    let mut numerator: i128 = scale;
    let mut denominator: i128 = pow10(fraction.len()).ok_or_else(error)?;
    let binary = |power: u32| 1i128 << (10 * power);
    match suffix {
        "" => {}
        "n" => denominator = denominator.checked_mul(1_000_000_000).ok_or_else(error)?,
        "u" => denominator = denominator.checked_mul(1_000_000).ok_or_else(error)?,
        "m" => denominator = denominator.checked_mul(1_000).ok_or_else(error)?,
        "k" => numerator *= 1_000,
        "M" => numerator *= 1_000_000,
        "G" => numerator *= 1_000_000_000,
        "T" => numerator *= 1_000_000_000_000,
        "P" => numerator *= 1_000_000_000_000_000,
        "E" => numerator *= 1_000_000_000_000_000_000,
        "Ki" => numerator *= binary(1),
        "Mi" => numerator *= binary(2),
        "Gi" => numerator *= binary(3),
        "Ti" => numerator *= binary(4),
        "Pi" => numerator *= binary(5),
        "Ei" => numerator *= binary(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| error())?;
            let factor = pow10(power.unsigned_abs() as usize).ok_or_else(error)?;
            if power >= 0 {
                numerator = numerator.checked_mul(factor).ok_or_else(error)?;
            } else {
                denominator = denominator.checked_mul(factor).ok_or_else(error)?;
            }
        }
        _ => return Err(error()),
    }
    let product = mantissa.checked_mul(numerator).ok_or_else(error)?;
    // Round away from zero, so that a request is never under-counted.
    let magnitude = (product + denominator - 1) / denominator;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| error())
}

/// A quantity given in thousandths, written as Kubernetes writes a canonical quantity:
/// `500m`, `2`, and with `binary` the largest exact binary suffix (`256Mi`, `1Gi`), else the
/// largest exact decimal one (`2k`, `3M`). Sums of quotas and limits are shown this way.
pub fn format_milli(milli: i64, binary: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    if units == 0 {
        return "0".to_string();
    }
    let suffixes: &[(&str, i64)] = if binary {
        &[("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)]
    } else {
        &[
            ("E", 1_000_000_000_000_000_000),
            ("P", 1_000_000_000_000_000),
            ("T", 1_000_000_000_000),
            ("G", 1_000_000_000),
            ("M", 1_000_000),
            ("k", 1_000),
        ]
    };
    match suffixes.iter().find(|(_, size)| units % size == 0) {
        Some((suffix, size)) => format!("{}{suffix}", units / size),
        None => units.to_string(),
    }
}

/// `10^n`, if it fits.
fn pow10(n: usize) -> Option<i128> {
    let mut value: i128 = 1;
    for _ in 0..n {
        value = value.checked_mul(10)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_read_as_millicores() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("1"), Ok(1000));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli("2.25"), Ok(2250));
        assert_eq!(parse_milli("1500u"), Ok(2), "1.5m rounds up to 2m");
        assert_eq!(parse_milli("250000000n"), Ok(250));
        assert_eq!(parse_milli("2k"), Ok(2_000_000));
        assert_eq!(parse_milli(".5"), Ok(500));
    }

    #[test]
    fn memory_quantities_read_as_bytes() {
        assert_eq!(parse_units("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_units("1Gi"), Ok(1 << 30));
        assert_eq!(parse_units("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_units("2k"), Ok(2000));
        assert_eq!(parse_units("1M"), Ok(1_000_000));
        assert_eq!(parse_units("128974848"), Ok(128_974_848));
        assert_eq!(parse_units("1e3"), Ok(1000));
        assert_eq!(parse_units("12E-1"), Ok(2), "1.2 rounds up");
        assert_eq!(parse_units("1Ei"), Ok(1 << 60));
        assert_eq!(parse_units("110"), Ok(110));
    }

    #[test]
    fn sums_are_written_canonically() {
        assert_eq!(format_milli(500, false), "500m");
        assert_eq!(format_milli(2000, false), "2");
        assert_eq!(format_milli(0, true), "0");
        assert_eq!(format_milli(256 * 1024 * 1024 * 1000, true), "256Mi");
        assert_eq!(format_milli(1500 * 1024 * 1000, true), "1500Ki");
        assert_eq!(format_milli(128_974_848_000, true), "123Mi");
        assert_eq!(format_milli(128_974_849_000, true), "128974849");
        assert_eq!(format_milli(3_000_000, false), "3k");
        for text in ["100m", "1", "512Mi", "1Gi", "2k"] {
            let milli = parse_milli(text).expect(text);
            assert_eq!(parse_milli(&format_milli(milli, text.ends_with('i'))), Ok(milli), "{text}");
        }
    }

    #[test]
    fn signs_are_honoured() {
        assert_eq!(parse_units("-1Ki"), Ok(-1024));
        assert_eq!(parse_units("+3"), Ok(3));
    }

    #[test]
    fn malformed_or_huge_quantities_are_errors_not_zero() {
        for bad in ["", "m", "abc", "1.2.3", "10 Mi", "5Xi", "1e", "1ee3", "10E", "100000000000Ei", "--1"] {
            assert!(parse_units(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
